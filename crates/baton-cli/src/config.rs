//! The user's configuration file: `--config`/`BATON_CONFIG`, else `$XDG_CONFIG_HOME/baton/config.toml`,
//! else `~/.config/baton/config.toml`. A missing file means defaults; each crate reads its own
//! sections of the text.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

#[derive(Debug, Default, Clone)]
pub struct Config {
    /// Where the text came from, for error messages; `None` when there is no file.
    pub path: Option<PathBuf>,
    pub text: String,
}

pub fn load(explicit: Option<&Path>) -> anyhow::Result<Config> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let path = match explicit {
        // Named on purpose, so it must exist.
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            return Ok(Config { path: Some(path.to_owned()), text });
        }
        None => match (env("XDG_CONFIG_HOME"), env("HOME")) {
            (Some(config), _) => config.join("baton/config.toml"),
            (None, Some(home)) => home.join(".config/baton/config.toml"),
            (None, None) => return Ok(Config::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Config { path: Some(path), text }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
    }
}

/// `[approval]`: commands that wait for a human before they run, beyond the built-in rules, and
/// commands trusted without asking.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Approval {
    /// Rule name → regular expression.
    #[serde(default)]
    ask: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    allow: Vec<String>,
    /// Ask a human to raise a task's credit limit instead of pausing at it.
    #[serde(default)]
    budget_overrun: bool,
}

/// `[sandbox]`: the machine a task's commands run in.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Sandbox {
    /// The size of each new task's disk in MiB (root only); 0: no disk of its own.
    disk_mib: Option<u64>,
    /// The share of the processors each command's tree may use, in cores (`0.5`, `2`).
    cpus: Option<f64>,
    /// Host directories shown read-only at their own paths in every sandbox (MCP servers or
    /// tools installed on the host), even where the sandbox would hide them.
    #[serde(default)]
    host_paths: Vec<PathBuf>,
}

/// `[network]`: the hosts every sandboxed command of a task may reach (the agent's, the clean
/// machine's setup and checks), through baton's proxy. Nothing by default.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Network {
    /// `host`, `host:port`, `*.domain`, or an address.
    #[serde(default)]
    allow: Vec<String>,
    /// Fixed addresses for names (`"packages.internal" = "10.0.0.5:8080"`), consulted before DNS.
    #[serde(default)]
    resolve: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Sections {
    approval: Option<Approval>,
    sandbox: Option<Sandbox>,
    network: Option<Network>,
}

impl Config {
    /// The approval policy: the built-in rules with the file's `[approval]` on top.
    pub fn approval(&self) -> anyhow::Result<baton_core::ApprovalPolicy> {
        let sections: Sections = toml::from_str(&self.text).with_context(|| self.context())?;
        let approval = sections.approval.unwrap_or_default();
        let rules: Vec<(String, String)> = approval.ask.into_iter().collect();
        let mut policy = baton_core::ApprovalPolicy::new(&rules, &approval.allow).with_context(|| self.context())?;
        policy.ask_on_budget_overrun = approval.budget_overrun;
        Ok(policy)
    }

    /// The file's `[sandbox]` and `[network]` settings over `sandbox`.
    pub fn sandbox(&self, sandbox: &mut baton_sandbox::SandboxConfig) -> anyhow::Result<()> {
        let sections: Sections = toml::from_str(&self.text).with_context(|| self.context())?;
        if let Some(network) = sections.network.filter(|n| !n.allow.is_empty() || !n.resolve.is_empty()) {
            let mut resolve = Vec::new();
            for (name, address) in network.resolve {
                let Ok(address) = address.parse() else {
                    bail!(
                        "{}: [network] resolve: {name} = \"{address}\" is not an address with a port",
                        self.context()
                    );
                };
                resolve.push((name, address));
            }
            if let Some(rule) = network.allow.iter().find(|rule| rule.trim().is_empty() || rule.contains('/')) {
                bail!("{}: [network] allow: {rule:?} is not a host, host:port or *.domain", self.context());
            }
            sandbox.network = Some(baton_sandbox::EgressPolicy { allow: network.allow, resolve });
        }
        let settings = sections.sandbox.unwrap_or_default();
        if let Some(cpus) = settings.cpus {
            // A cgroup's quota is at least a millisecond per 100 ms period.
            if !(0.01..=4096.0).contains(&cpus) {
                bail!("{}: [sandbox] cpus = {cpus} is not a share of the processors (0.01 to 4096)", self.context());
            }
            sandbox.limits.cpu_millis = Some((cpus * 1000.0).round() as u64);
        }
        for path in &settings.host_paths {
            let shown = path.canonicalize().ok().filter(|p| p.is_dir() && p.is_absolute() && p != Path::new("/"));
            let Some(shown) = shown else {
                bail!("{}: [sandbox] host_paths: {} is not a directory of the host", self.context(), path.display());
            };
            // What the sandbox hides (the data directory with every task's journal, the homes with
            // their owners' keys) stays hidden: a shown path neither holds one nor lies in one.
            let mut hidden = sandbox.hidden.iter().filter_map(|hidden| hidden.canonicalize().ok());
            if let Some(hidden) = hidden.find(|hidden| hidden.starts_with(&shown) || shown.starts_with(hidden)) {
                bail!(
                    "{}: [sandbox] host_paths: {} would show what every sandbox hides ({})",
                    self.context(),
                    path.display(),
                    hidden.display()
                );
            }
            sandbox.toolchains.push(shown);
        }
        match settings.disk_mib {
            Some(0) => sandbox.disk_bytes = None,
            // Below this ext4 has no room for its own journal.
            Some(mib @ 1..8) => bail!("{}: [sandbox] disk_mib = {mib} is too small (at least 8)", self.context()),
            Some(mib) => match mib.checked_mul(1 << 20) {
                Some(bytes) => sandbox.disk_bytes = Some(bytes),
                None => bail!("{}: [sandbox] disk_mib = {mib} is too large", self.context()),
            },
            None => {}
        }
        Ok(())
    }

    /// Names the file in an error about its content.
    pub fn context(&self) -> String {
        match &self.path {
            Some(path) => format!("config file {}", path.display()),
            None => "built-in configuration".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(text: &str) -> anyhow::Result<baton_sandbox::SandboxConfig> {
        let config = Config { path: Some(PathBuf::from("c.toml")), text: text.to_owned() };
        let mut sandbox = baton_sandbox::SandboxConfig::new(PathBuf::from("/init"), Path::new("/data"));
        config.sandbox(&mut sandbox).map(|()| sandbox)
    }

    #[test]
    fn the_sandbox_section_sets_the_disk_and_the_cpu_share_and_refuses_nonsense() {
        let set = sandbox("[sandbox]\ndisk_mib = 64\ncpus = 0.5\n").unwrap();
        assert_eq!((set.disk_bytes, set.limits.cpu_millis), (Some(64 << 20), Some(500)));
        assert_eq!(sandbox("[sandbox]\ndisk_mib = 0\n").unwrap().disk_bytes, None);
        assert_eq!(sandbox("").unwrap().disk_bytes, Some(baton_sandbox::DEFAULT_DISK_BYTES));
        let networked =
            sandbox("[network]\nallow = [\"pypi.org\"]\nresolve = { \"pkgs.test\" = \"127.0.0.1:8080\" }\n");
        let policy = networked.unwrap().network.unwrap();
        assert_eq!(
            (policy.allow, policy.resolve),
            (vec!["pypi.org".to_owned()], vec![("pkgs.test".to_owned(), "127.0.0.1:8080".parse().unwrap())])
        );
        assert!(sandbox("").unwrap().network.is_none(), "no network unless allowed");
        for (text, says) in [
            ("[network]\nresolve = { a = \"somewhere\" }\n", "not an address with a port"),
            ("[network]\nallow = [\"http://x/\"]\n", "is not a host"),
            ("[sandbox]\ndisk_mib = 4\n", "too small"),
            ("[sandbox]\ncpus = 0\n", "not a share"),
            ("[sandbox]\ncpus = -1\n", "not a share"),
            ("[sandbox]\ndisk = 4\n", "unknown field"),
            ("[sandbox]\ndisk_mib = 18446744073709551615\n", "too large"),
        ] {
            let error = format!("{:#}", sandbox(text).unwrap_err());
            assert!(error.contains(says) && error.contains("c.toml"), "{text}: {error}");
        }
    }
}
