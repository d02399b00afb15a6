//! A repository's declared environment: `baton.toml` at its root, `[environment]`. What a task's
//! machines are built from, what a clean machine runs before the checks, and the named commands
//! the agent is told about.
//!
//! The one base is the host's own root (`base = "host"`): the host's directories, read-only. On it,
//! `initialize` builds a snapshot (what it leaves in the machine's home and other writable places),
//! keyed by [`Environment::key`] over everything declared that decides its content: the base, the
//! commands, the secrets' names and the content of the `inputs`. Other bases and Debian `packages`
//! are refused by name with the reason, so a repository that relies on them learns it at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file, at the repository's root.
pub const ENVIRONMENT_FILE: &str = "baton.toml";
/// The largest `baton.toml` baton reads.
pub const MAX_ENVIRONMENT_FILE: u64 = 64 * 1024;
/// The largest `startup` readiness wait.
const MAX_READY_SECS: u64 = 600;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Commands run once, when the snapshot is built, in a machine whose `/workspace` holds only
    /// the `inputs`; what they leave in its home is the snapshot.
    pub initialize: Vec<String>,
    /// Names of variables of baton's own environment handed to `initialize` (a package index's
    /// token); their values are never recorded.
    pub secrets: Vec<String>,
    /// Repository files whose content enters the key (lockfiles), relative to its root.
    pub inputs: Vec<String>,
    /// Directories of the home (`~/.cache/pip`) kept from one build to the next.
    pub cache: Vec<String>,
    /// Commands run in the clean machine's `/workspace`, in order, after the checkout and before
    /// the checks (e.g. generating a file the tests import, installing the project).
    pub after_checkout: Vec<String>,
    /// Services started in every session, before anything else runs in it.
    pub startup: Vec<Service>,
    /// MCP servers whose tools the agent is offered (`[mcp.NAME]`), by name.
    pub mcp: BTreeMap<String, ToolServer>,
    /// Named commands (test, lint, run the app), told to the agent.
    pub commands: BTreeMap<String, String>,
}

/// A process `startup` keeps running in each session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub command: String,
    /// A command that exits 0 once the service is ready, tried until `timeout_secs`.
    pub ready: Option<String>,
    pub timeout_secs: u64,
}

/// Which part of a task's life a command ran in, for the journal's record of what it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Initialize,
    AfterCheckout,
    Startup,
    /// The agent's own commands.
    Agent,
    /// The acceptance checks.
    Check,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Initialize => "initialize",
            Phase::AfterCheckout => "after_checkout",
            Phase::Startup => "startup",
            Phase::Agent => "agent",
            Phase::Check => "check",
        })
    }
}

/// A file of `inputs`, as the key's commit has it: its git object names its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub path: String,
    pub object: String,
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

/// An MCP server the repository declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolServer {
    pub transport: ServerTransport,
    /// Its tools that roles which only read (the captain, the reviewer) may call too.
    pub read_only: Vec<String>,
    /// How long one call may take.
    pub timeout_secs: u64,
}

/// How baton speaks to an MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerTransport {
    /// A program run inside the task's sandbox, spoken to over its standard input and output.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Names of variables of baton's own environment handed to it (their values are redacted
        /// from everything the task records).
        env: Vec<String>,
    },
    /// A server reached over streamable HTTP through the task's egress proxy, under its policy.
    Http {
        url: String,
        /// Header name → the name of the variable of baton's own environment holding its value.
        headers: BTreeMap<String, String>,
    },
}

impl ServerTransport {
    /// The names of the variables of baton's environment the server is given.
    pub fn variables(&self) -> Vec<&String> {
        match self {
            ServerTransport::Command { env, .. } => env.iter().collect(),
            ServerTransport::Http { headers, .. } => headers.values().collect(),
        }
    }
}

/// Whether a tool only reads: who may call it depends on that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolReach {
    /// Declared read-only: roles that only read may call it too.
    ReadOnly,
    /// May change things: builders only.
    Writes,
}

impl ToolServer {
    /// How far the server's tool `tool` reaches, as the declaration says.
    pub fn reach(&self, tool: &str) -> ToolReach {
        if self.read_only.iter().any(|name| name == tool) { ToolReach::ReadOnly } else { ToolReach::Writes }
    }
}

/// Variables of baton's own credentials besides `BATON_*` (its git token, its store's URL with the
/// database's password): the forges' tokens, the providers' keys. Nothing a repository declares is
/// handed one, nor a task that asks for it.
const BATONS_OWN: &[&str] = &[
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "FORGEJO_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_COMPATIBLE_API_KEY",
    "ANTHROPIC_API_KEY",
];

/// The variables holding baton's own credentials: `BATON_*`, the usual ones ([`BATONS_OWN`]) and
/// those its configuration names instead (a provider's `api_key_env`, a forge's `token_env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCredentials {
    configured: Vec<String>,
}

impl OwnCredentials {
    /// The usual variables and `configured` besides.
    pub fn with(configured: impl IntoIterator<Item = String>) -> OwnCredentials {
        OwnCredentials { configured: configured.into_iter().collect() }
    }

    pub fn contains(&self, name: &str) -> bool {
        name.starts_with("BATON_") || BATONS_OWN.contains(&name) || self.configured.iter().any(|own| own == name)
    }

    /// `name`, unless it names one of baton's own credentials.
    fn refuse(&self, list: &str, name: String) -> Result<String, EnvironmentError> {
        if self.contains(&name) {
            return Err(EnvironmentError::new(format!(
                "{list}: {name} is one of baton's own credentials, which are never handed to what a repository declares"
            )));
        }
        Ok(name)
    }
}

/// The longest an MCP call may be given.
const MAX_TOOL_SECS: u64 = 600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    environment: Option<Declared>,
    #[serde(default)]
    mcp: BTreeMap<String, DeclaredServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredServer {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    url: Option<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    read_only: Vec<String>,
    timeout_secs: Option<u64>,
}

/// `[mcp.NAME]` as declared: a name that makes tool names `NAME__tool`, and a program.
fn tool_server(name: &str, declared: DeclaredServer, own: &OwnCredentials) -> Result<ToolServer, EnvironmentError> {
    let refuse = |why: &str| Err(EnvironmentError::new(format!("[mcp.{name}] {why}")));
    let named = !name.is_empty()
        && name.len() <= 24
        && !name.contains("__")
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !named {
        return refuse("needs a name of 1 to 24 of a-z, 0-9, '_', '-' without \"__\" (its tools are NAME__tool)");
    }
    let timeout_secs = declared.timeout_secs.unwrap_or(60);
    if timeout_secs == 0 || timeout_secs > MAX_TOOL_SECS {
        return refuse(&format!("timeout_secs must be between 1 and {MAX_TOOL_SECS}"));
    }
    let transport = match (declared.command, declared.url) {
        (Some(command), None) if !command.trim().is_empty() && declared.headers.is_empty() => {
            let list = format!("[mcp.{name}] env");
            let env = declared
                .env
                .iter()
                .map(|n| variable_name(&list, n).and_then(|n| own.refuse(&list, n)))
                .collect::<Result<_, _>>()?;
            ServerTransport::Command { argv: std::iter::once(command).chain(declared.args).collect(), env }
        }
        (None, Some(url)) if declared.args.is_empty() && declared.env.is_empty() => {
            let web = url.starts_with("http://") || url.starts_with("https://");
            if !web || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return refuse("`url` must be an http:// or https:// URL");
            }
            let list = format!("[mcp.{name}] headers");
            let mut headers = BTreeMap::new();
            for (header, variable) in declared.headers {
                if header.is_empty() || !header.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return refuse(&format!("headers: {header:?} is not a header name"));
                }
                headers.insert(header, own.refuse(&list, variable_name(&list, &variable)?)?);
            }
            ServerTransport::Http { url, headers }
        }
        _ => {
            return refuse(
                "needs either `command` (with `args` and `env`: a program run inside the task's sandbox) or \
                 `url` (with `headers`: a server reached over HTTP through the task's egress proxy)",
            );
        }
    };
    Ok(ToolServer { transport, read_only: declared.read_only, timeout_secs })
}

/// A string or a list of strings: `initialize = "make deps"` or `initialize = ["a", "b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Commands {
    One(String),
    Many(Vec<String>),
}

impl Commands {
    fn into_vec(self) -> Vec<String> {
        match self {
            Commands::One(one) => vec![one],
            Commands::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredService {
    command: String,
    ready: Option<String>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Declared {
    base: Option<String>,
    packages: Option<toml::Value>,
    initialize: Option<Commands>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    cache: Vec<String>,
    after_checkout: Option<Commands>,
    #[serde(default)]
    startup: Vec<DeclaredService>,
    #[serde(default)]
    commands: BTreeMap<String, String>,
}

fn no_empty_command(list: &str, commands: &[String]) -> Result<(), EnvironmentError> {
    match commands.iter().find(|c| c.trim().is_empty()) {
        Some(empty) => Err(EnvironmentError::new(format!("[environment] {list} has an empty command: {empty:?}"))),
        None => Ok(()),
    }
}

/// A path relative to the repository's root that stays beneath it.
fn input_path(path: &str) -> Result<String, EnvironmentError> {
    let refuse = |why: &str| Err(EnvironmentError::new(format!("[environment] inputs: {path:?} {why}")));
    if path.is_empty() || path.starts_with('/') {
        return refuse("must be a path relative to the repository's root");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| *p == ".." || *p == "." || p.is_empty()) || path.contains(['\n', '\0']) {
        return refuse("must name a file beneath the repository's root, without `.`, `..` or empty parts");
    }
    Ok(path.to_owned())
}

/// A directory of the home: `~/x` (the home is `/root` in every machine).
fn cache_path(path: &str) -> Result<String, EnvironmentError> {
    let refuse = || {
        Err(EnvironmentError::new(format!(
            "[environment] cache: {path:?} must be a directory of the home, like \"~/.cache/pip\""
        )))
    };
    let Some(rest) = path.strip_prefix("~/") else { return refuse() };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if parts.iter().any(|p| *p == ".." || *p == "." || p.is_empty()) || path.contains(['\n', '\0', ',', ':']) {
        return refuse();
    }
    Ok(format!("/root/{}", parts.join("/")))
}

/// `name` if it is a variable's name; `list` says where it was declared.
fn variable_name(list: &str, name: &str) -> Result<String, EnvironmentError> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(EnvironmentError::new(format!("{list}: {name:?} is not a variable name")))
    }
}

impl Environment {
    /// Parses `baton.toml`'s text; a declaration naming one of baton's `own` credentials is refused.
    pub fn parse(text: &str, own: &OwnCredentials) -> Result<Environment, EnvironmentError> {
        let file: File = toml::from_str(text).map_err(|e| EnvironmentError::new(e.message().to_owned()))?;
        let mcp = file.mcp.into_iter().map(|(name, declared)| Ok((name.clone(), tool_server(&name, declared, own)?)));
        let mcp = mcp.collect::<Result<BTreeMap<_, _>, EnvironmentError>>()?;
        let Some(declared) = file.environment else { return Ok(Environment { mcp, ..Environment::default() }) };
        if let Some(base) = declared.base.filter(|base| base != "host") {
            return Err(EnvironmentError::new(format!(
                "[environment] base = \"{base}\" is not supported: environments are built on the host's root \
                 (base = \"host\"), which baton does not rebuild, so it is not reproducible across machines"
            )));
        }
        if declared.packages.is_some() {
            return Err(EnvironmentError::new(
                "[environment] `packages` is not supported: Debian packages need a Debian base, and on \
                 base = \"host\" the host's directories are read-only; install into the home from `initialize` \
                 (pip install --user, a release archive into ~/.local)"
                    .into(),
            ));
        }
        let initialize = declared.initialize.map(Commands::into_vec).unwrap_or_default();
        let after_checkout = declared.after_checkout.map(Commands::into_vec).unwrap_or_default();
        no_empty_command("initialize", &initialize)?;
        no_empty_command("after_checkout", &after_checkout)?;
        if let Some((name, _)) = declared.commands.iter().find(|(n, c)| n.trim().is_empty() || c.trim().is_empty()) {
            return Err(EnvironmentError::new(format!("[environment.commands] `{name}` needs a name and a command")));
        }
        let mut startup = Vec::new();
        for service in declared.startup {
            no_empty_command("startup", std::slice::from_ref(&service.command))?;
            let timeout_secs = service.timeout_secs.unwrap_or(60);
            if timeout_secs == 0 || timeout_secs > MAX_READY_SECS {
                return Err(EnvironmentError::new(format!(
                    "[environment.startup] `{}`: timeout_secs must be between 1 and {MAX_READY_SECS}",
                    service.command
                )));
            }
            startup.push(Service { command: service.command, ready: service.ready, timeout_secs });
        }
        Ok(Environment {
            initialize,
            secrets: declared
                .secrets
                .iter()
                .map(|n| variable_name("[environment] secrets", n).and_then(|n| own.refuse("[environment] secrets", n)))
                .collect::<Result<_, _>>()?,
            inputs: declared.inputs.iter().map(|p| input_path(p)).collect::<Result<_, _>>()?,
            cache: declared.cache.iter().map(|p| cache_path(p)).collect::<Result<_, _>>()?,
            after_checkout,
            startup,
            mcp,
            commands: declared.commands,
        })
    }

    /// Whether there is a snapshot to build: without `initialize`, machines are the host's root.
    pub fn has_snapshot(&self) -> bool {
        !self.initialize.is_empty()
    }

    /// The snapshot's key: a hash of everything that decides its content, and nothing else (the
    /// checks, `after_checkout`, `startup` and the commands change what runs on it, not what it
    /// holds). `inputs` are the declared files as the commit has them, in declaration order; a file
    /// the commit lacks has an empty object.
    pub fn snapshot_key(&self, inputs: &[Input]) -> String {
        let mut hasher = Sha256::new();
        // Every string is framed by its length: no two declarations hash the same text.
        let mut field = |name: &str, values: &mut dyn Iterator<Item = &str>| {
            let values: Vec<&str> = values.collect();
            hasher.update(format!("{name} {}\n", values.len()));
            for value in values {
                hasher.update(format!("{}:", value.len()));
                hasher.update(value);
            }
        };
        field("format", &mut ["1"].into_iter());
        field("base", &mut ["host"].into_iter());
        field("initialize", &mut self.initialize.iter().map(String::as_str));
        field("secrets", &mut self.secrets.iter().map(String::as_str));
        field("inputs", &mut inputs.iter().flat_map(|input| [input.path.as_str(), input.object.as_str()]));
        hex(hasher)
    }

    /// The environment's hash, which provenance records: the snapshot's key and everything else
    /// that decides the machine the checks run on (`after_checkout`, `startup`). The named
    /// commands are advice to the agent, not part of it.
    pub fn hash(&self, inputs: &[Input]) -> String {
        let mut hasher = Sha256::new();
        let mut framed = |value: &str| {
            hasher.update(format!("{}:", value.len()));
            hasher.update(value);
        };
        framed(&self.snapshot_key(inputs));
        framed(&self.after_checkout.len().to_string());
        self.after_checkout.iter().for_each(|command| framed(command));
        framed(&self.startup.len().to_string());
        for service in &self.startup {
            framed(&service.command);
            framed(service.ready.as_deref().unwrap_or(""));
            framed(&service.timeout_secs.to_string());
        }
        hex(hasher)
    }
}

fn hex(hasher: Sha256) -> String {
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As baton parses it with `[providers.anthropic] api_key_env = "WORK_KEY"` configured.
    fn parse(text: &str) -> Result<Environment, EnvironmentError> {
        Environment::parse(text, &OwnCredentials::with(["WORK_KEY".to_owned()]))
    }

    #[test]
    fn a_declared_environment_is_read_and_what_baton_cannot_do_is_refused_by_name() {
        let text = "[environment]\nbase = \"host\"\ninitialize = \"pip install --user -r requirements.txt\"\n\
                    secrets = [\"INDEX_TOKEN\"]\ninputs = [\"requirements.txt\"]\ncache = [\"~/.cache/pip\"]\n\
                    after_checkout = [\"python3 gen.py\"]\n\n[[environment.startup]]\ncommand = \"redis-server\"\n\
                    ready = \"redis-cli ping\"\n\n[environment.commands]\ntest = \"python3 test_calc.py\"\n";
        let environment = parse(text).unwrap();
        assert_eq!(environment.initialize, vec!["pip install --user -r requirements.txt"]);
        assert_eq!(environment.secrets, vec!["INDEX_TOKEN"]);
        assert_eq!(environment.inputs, vec!["requirements.txt"]);
        assert_eq!(environment.cache, vec!["/root/.cache/pip"]);
        assert_eq!(environment.after_checkout, vec!["python3 gen.py"]);
        let redis = Service { command: "redis-server".into(), ready: Some("redis-cli ping".into()), timeout_secs: 60 };
        assert_eq!(environment.startup, vec![redis]);
        assert_eq!(environment.commands["test"], "python3 test_calc.py");
        assert!(environment.has_snapshot());
        assert_eq!(parse("").unwrap(), Environment::default());
        for (text, says) in [
            ("[environment]\nbase = \"debian:bookworm\"\n", "base = \"debian:bookworm\" is not supported"),
            ("[environment]\npackages = [\"jq\"]\n", "`packages` is not supported"),
            ("[environment]\ninitialize = [\"make\", \"\"]\n", "initialize has an empty command"),
            ("[environment]\nafter_checkout = [\" \"]\n", "after_checkout has an empty command"),
            ("[environment]\ninputs = [\"../secrets\"]\n", "beneath the repository's root"),
            ("[environment]\ninputs = [\"/etc/passwd\"]\n", "relative to the repository's root"),
            ("[environment]\ncache = [\"/var/cache\"]\n", "a directory of the home"),
            ("[environment]\ncache = [\"~/../etc\"]\n", "a directory of the home"),
            ("[environment]\nsecrets = [\"A-B\"]\n", "not a variable name"),
            ("[environment]\nsecrets = [\"BATON_STORE\"]\n", "BATON_STORE is one of baton's own credentials"),
            ("[environment]\nsecrets = [\"ANTHROPIC_API_KEY\"]\n", "ANTHROPIC_API_KEY is one of baton's own"),
            ("[environment]\nsecrets = [\"WORK_KEY\"]\n", "WORK_KEY is one of baton's own credentials"),
            ("[[environment.startup]]\ncommand = \"x\"\ntimeout_secs = 0\n", "timeout_secs must be between"),
            ("[[environment.startup]]\nready = \"x\"\n", "missing field `command`"),
            ("[environment]\nafter_chekout = []\n", "unknown field `after_chekout`"),
            ("[network]\nallow = []\n", "unknown field `network`"),
            ("[environment\n", "baton.toml: "),
            ("[environment.commands]\ntest = 3\n", "baton.toml: "),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.starts_with("baton.toml: ") && error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn mcp_servers_are_read_by_name_and_bad_ones_refused() {
        let text = "[mcp.everything]\ncommand = \"node\"\nargs = [\"server.js\", \"stdio\"]\nenv = [\"API_KEY\"]\n\
                    read_only = [\"echo\"]\ntimeout_secs = 20\n";
        let environment = parse(text).unwrap();
        let server = ToolServer {
            transport: ServerTransport::Command {
                argv: vec!["node".into(), "server.js".into(), "stdio".into()],
                env: vec!["API_KEY".into()],
            },
            read_only: vec!["echo".into()],
            timeout_secs: 20,
        };
        assert_eq!(environment.mcp["everything"], server);
        let http =
            "[mcp.docs]\nurl = \"http://docs.internal:8000/mcp\"\nheaders = { Authorization = \"DOCS_TOKEN\" }\n";
        let docs = &parse(http).unwrap().mcp["docs"];
        let headers = [("Authorization".to_owned(), "DOCS_TOKEN".to_owned())].into();
        assert_eq!(docs.transport, ServerTransport::Http { url: "http://docs.internal:8000/mcp".into(), headers });
        assert_eq!(docs.transport.variables(), [&"DOCS_TOKEN".to_owned()]);
        assert!(!environment.has_snapshot(), "an MCP server alone builds nothing");
        for (text, says) in [
            ("[mcp.a__b]\ncommand = \"x\"\n", "[mcp.a__b] needs a name"),
            ("[mcp.Docs]\ncommand = \"x\"\n", "[mcp.Docs] needs a name"),
            ("[mcp.docs]\nargs = [\"x\"]\n", "[mcp.docs] needs either `command`"),
            ("[mcp.docs]\ncommand = \"x\"\nurl = \"http://docs:8000/mcp\"\n", "needs either"),
            ("[mcp.docs]\nurl = \"file:///etc/passwd\"\n", "`url` must be an http"),
            ("[mcp.docs]\nurl = \"http://d/mcp\"\nheaders = { \"A B\" = \"T\" }\n", "not a header name"),
            ("[mcp.docs]\nurl = \"http://d/mcp\"\nheaders = { A = \"not-a-var\" }\n", "[mcp.docs] headers"),
            ("[mcp.docs]\ncommand = \"x\"\ntimeout_secs = 0\n", "timeout_secs must be between"),
            ("[mcp.docs]\ncommand = \"x\"\nenv = [\"A-B\"]\n", "[mcp.docs] env: \"A-B\" is not a variable name"),
            ("[mcp.docs]\ncommand = \"x\"\nheaders = { A = \"T\" }\n", "needs either"),
            ("[mcp.docs]\ncommand = \"x\"\ncwd = \"/\"\n", "unknown field `cwd`"),
            ("[mcp.docs]\ncommand = \"x\"\nenv = [\"BATON_GIT_TOKEN\"]\n", "BATON_GIT_TOKEN is one of baton's own"),
            ("[mcp.docs]\nurl = \"http://d/mcp\"\nheaders = { A = \"OPENAI_API_KEY\" }\n", "baton's own credentials"),
            ("[mcp.docs]\ncommand = \"x\"\nenv = [\"WORK_KEY\"]\n", "WORK_KEY is one of baton's own"),
            ("[mcp.docs]\nurl = \"http://d/mcp\"\nheaders = { A = \"WORK_KEY\" }\n", "WORK_KEY is one of baton's own"),
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn the_key_changes_with_what_the_snapshot_holds_and_only_with_that() {
        let environment =
            parse("[environment]\ninitialize = \"pip install --user -r r.txt\"\ninputs = [\"r.txt\"]\n").unwrap();
        let inputs = |object: &str| vec![Input { path: "r.txt".into(), object: object.into() }];
        let key = environment.snapshot_key(&inputs("aaaa"));
        assert_eq!(key.len(), 64);
        assert_eq!(key, environment.snapshot_key(&inputs("aaaa")));
        assert_ne!(key, environment.snapshot_key(&inputs("bbbb")), "a changed input keeps the key");
        let mut more = environment.clone();
        more.initialize.push("make".into());
        assert_ne!(key, more.snapshot_key(&inputs("aaaa")), "a changed initialize keeps the key");
        let mut secret = environment.clone();
        secret.secrets.push("TOKEN".into());
        assert_ne!(key, secret.snapshot_key(&inputs("aaaa")));
        let mut checks = environment.clone();
        checks.after_checkout.push("make".into());
        checks.commands.insert("test".into(), "make test".into());
        assert_eq!(key, checks.snapshot_key(&inputs("aaaa")), "what runs on the snapshot is not what it holds");
        let hash = environment.hash(&inputs("aaaa"));
        assert_ne!(hash, checks.hash(&inputs("aaaa")), "the environment's hash misses after_checkout");
        assert_ne!(hash, environment.hash(&inputs("bbbb")));
        let mut advice = environment.clone();
        advice.commands.insert("lint".into(), "ruff".into());
        assert_eq!(hash, advice.hash(&inputs("aaaa")));
    }
}
