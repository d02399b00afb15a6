//! A repository's declared environment: `baton.toml` at its root, `[environment]`. What baton does
//! to a clean machine before the checks run there, and the named commands the agent is told about.
//!
//! Today every environment is built on the host's own root (`base = "host"`); the declarations of
//! environments baton would build itself (`packages`, `initialize`, `startup`, `cache`, `inputs`,
//! other bases) are recognised and refused by name, so a repository that relies on them learns it
//! at once instead of having them ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The file, at the repository's root.
pub const ENVIRONMENT_FILE: &str = "baton.toml";
/// The largest `baton.toml` baton reads.
pub const MAX_ENVIRONMENT_FILE: u64 = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// Commands run in the clean machine's `/workspace`, in order, after the checkout and before
    /// the checks (e.g. generating a file the tests import, installing the project).
    pub after_checkout: Vec<String>,
    /// Named commands (test, lint, run the app), told to the agent.
    pub commands: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct EnvironmentError {
    file: &'static str,
    message: String,
}

impl EnvironmentError {
    fn new(message: String) -> EnvironmentError {
        EnvironmentError { file: ENVIRONMENT_FILE, message }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    environment: Option<Declared>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    base: Option<String>,
    #[serde(default)]
    after_checkout: Vec<String>,
    #[serde(default)]
    commands: BTreeMap<String, String>,
    packages: Option<toml::Value>,
    initialize: Option<toml::Value>,
    startup: Option<toml::Value>,
    cache: Option<toml::Value>,
    inputs: Option<toml::Value>,
}

impl Environment {
    /// Parses `baton.toml`'s text.
    pub fn parse(text: &str) -> Result<Environment, EnvironmentError> {
        let file: File = toml::from_str(text).map_err(|e| EnvironmentError::new(e.message().to_owned()))?;
        let Some(declared) = file.environment else { return Ok(Environment::default()) };
        if let Some(base) = declared.base.filter(|base| base != "host") {
            return Err(EnvironmentError::new(format!(
                "[environment] base = \"{base}\" is not supported yet: environments run on the host's root (base = \"host\")"
            )));
        }
        let unsupported = [
            ("packages", declared.packages.is_some()),
            ("initialize", declared.initialize.is_some()),
            ("startup", declared.startup.is_some()),
            ("cache", declared.cache.is_some()),
            ("inputs", declared.inputs.is_some()),
        ];
        let unsupported: Vec<&str> = unsupported.iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect();
        if !unsupported.is_empty() {
            return Err(EnvironmentError::new(format!(
                "[environment] {} not supported yet; prepare the clean machine with `after_checkout`",
                match unsupported.as_slice() {
                    [one] => format!("`{one}` is"),
                    many => format!("{} are", many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                }
            )));
        }
        if let Some(empty) = declared.after_checkout.iter().find(|c| c.trim().is_empty()) {
            return Err(EnvironmentError::new(format!("[environment] after_checkout has an empty command: {empty:?}")));
        }
        if let Some((name, _)) = declared.commands.iter().find(|(n, c)| n.trim().is_empty() || c.trim().is_empty()) {
            return Err(EnvironmentError::new(format!("[environment.commands] `{name}` needs a name and a command")));
        }
        Ok(Environment { after_checkout: declared.after_checkout, commands: declared.commands })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_environment_is_read_and_what_baton_cannot_do_is_refused_by_name() {
        let text = "[environment]\nbase = \"host\"\nafter_checkout = [\"python3 gen.py\"]\n\n[environment.commands]\ntest = \"python3 test_calc.py\"\n";
        let environment = Environment::parse(text).unwrap();
        assert_eq!(environment.after_checkout, vec!["python3 gen.py"]);
        assert_eq!(environment.commands["test"], "python3 test_calc.py");
        assert_eq!(Environment::parse("").unwrap(), Environment::default());
        for (text, says) in [
            ("[environment]\nbase = \"debian:bookworm\"\n", "base = \"debian:bookworm\" is not supported yet"),
            ("[environment]\npackages = [\"jq\"]\ninputs = [\"a.lock\"]\n", "`packages`, `inputs` are not supported"),
            ("[environment]\ninitialize = \"make\"\n", "`initialize` is not supported"),
            ("[environment]\nafter_checkout = [\" \"]\n", "empty command"),
            ("[environment]\nafter_chekout = []\n", "unknown field `after_chekout`"),
            ("[network]\nallow = []\n", "unknown field `network`"),
            ("[environment\n", "baton.toml: "),
            ("[environment.commands]\ntest = 3\n", "baton.toml: "),
        ] {
            let error = Environment::parse(text).unwrap_err().to_string();
            assert!(error.starts_with("baton.toml: ") && error.contains(says), "{text}: {error}");
        }
    }
}
