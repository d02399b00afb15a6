//! The tools of MCP servers the repository declares (`[mcp.NAME]` in its `baton.toml`), offered
//! as `NAME__tool` with the schemas the servers give. Each server runs inside the sandbox session
//! of the machine that calls it — the writer's, or the reader's where the worktree is read-only —
//! under the task's network policy, spoken to over its standard input and output. A server that
//! fails to start, dies, or misses a deadline makes that call an error and is started afresh for
//! the next one.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::{Effect, Secret, ServerTransport, ToolReach, ToolServer, ToolSpec};
use baton_mcp::McpError;
use baton_sandbox::{AttachedProcess, RunRequest, SandboxSession};
use serde_json::{Map, Value};

use crate::ToolError;

/// Between a server's name and its tool's.
pub const SEPARATOR: &str = "__";
/// How long a server has to start and list its tools.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The most of a call's output the model is given; the middle of more is cut.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The end of a failed server's standard error that its error quotes.
const STDERR_TAIL_CHARS: usize = 2048;

/// The declared servers and the values of the variables they are handed.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    pub(crate) servers: BTreeMap<String, ToolServer>,
    pub(crate) env: Vec<Secret>,
}

/// The servers running on one machine.
#[derive(Debug, Default)]
pub(crate) struct Running {
    servers: BTreeMap<String, Started>,
    /// Why a server did not start: it is not started again for its tools' list (a server that
    /// hangs would hold up every step), only for a call to one of them.
    failed: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Started {
    client: baton_mcp::ToolServer,
    /// A server run in the sandbox; none for one over HTTP.
    process: Option<AttachedProcess>,
}

/// Where a machine's servers run or are reached: its session, and its egress proxy's socket.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) session: &'a dyn SandboxSession,
    pub(crate) egress: Option<&'a std::path::Path>,
}

impl Declared {
    /// The server and tool a name like `NAME__tool` calls, if a declared server has that name.
    pub(crate) fn split<'a>(&self, name: &'a str) -> Option<(&'a str, &'a str)> {
        let (server, tool) = name.split_once(SEPARATOR)?;
        self.servers.contains_key(server).then_some((server, tool))
    }

    /// How far the tool `name` reaches, if it is a served one.
    pub(crate) fn reach(&self, name: &str) -> Option<ToolReach> {
        let (server, tool) = self.split(name)?;
        Some(self.servers[server].reach(tool))
    }

    /// The value of the variable `name` of baton's environment, as handed to the toolbox.
    fn value(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|secret| secret.name == name).map(|secret| secret.value.as_str())
    }

    fn start(&self, place: Place<'_>, name: &str) -> Result<Started, ToolError> {
        match &self.servers[name].transport {
            ServerTransport::Command { argv, env } => {
                let env = env.iter().filter_map(|n| self.value(n).map(|value| (n.clone(), value.to_owned()))).collect();
                let request = RunRequest { argv: argv.clone(), env, ..RunRequest::shell("", START_DEADLINE) };
                let attached = place
                    .session
                    .attach(&request)
                    .map_err(|error| ToolError::new(format!("the MCP server `{name}` cannot start: {error}")))?;
                match baton_mcp::ToolServer::connect(attached.stdout, attached.stdin, START_DEADLINE) {
                    Ok(client) => Ok(Started { client, process: Some(attached.process) }),
                    Err(error) => Err(ToolError::new(format!(
                        "the MCP server `{name}` did not start: {error}{}",
                        said(&attached.process)
                    ))),
                }
            }
            ServerTransport::Http { url, headers } => {
                let Some(egress) = place.egress else {
                    return Err(ToolError::new(format!(
                        "the MCP server `{name}` at {url} is out of reach: the task has no network (allow its host under [network] allow)"
                    )));
                };
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .filter_map(|(header, variable)| {
                        self.value(variable).map(|value| (header.clone(), value.to_owned()))
                    })
                    .collect();
                match baton_mcp::ToolServer::connect_http(egress, url, &headers, START_DEADLINE) {
                    Ok(client) => Ok(Started { client, process: None }),
                    Err(error) => {
                        Err(ToolError::new(format!("the MCP server `{name}` at {url} did not answer: {error}")))
                    }
                }
            }
        }
    }
}

impl Running {
    /// The tools of every declared server, started where they are not running; a server that
    /// cannot start is skipped (its tools are not offered) and named in the returned errors.
    pub(crate) fn specs(&mut self, declared: &Declared, place: Place<'_>) -> (Vec<(ToolSpec, ToolReach)>, Vec<String>) {
        let mut specs = Vec::new();
        let mut failures = Vec::new();
        for (name, server) in &declared.servers {
            if let Some(why) = self.failed.get(name) {
                failures.push(why.clone());
                continue;
            }
            if !self.servers.contains_key(name) {
                match declared.start(place, name) {
                    Ok(started) => {
                        self.servers.insert(name.clone(), started);
                    }
                    Err(error) => {
                        self.failed.insert(name.clone(), error.0.clone());
                        failures.push(error.0);
                        continue;
                    }
                }
            }
            for tool in self.servers[name].client.tools() {
                let full = format!("{name}{SEPARATOR}{}", tool.name);
                // Providers take tool names of letters, digits, `_` and `-`, 64 at most.
                let valid = full.len() <= 64 && full.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    failures
                        .push(format!("the MCP tool `{full}` is not offered: its name is not one a model can call"));
                    continue;
                }
                let spec = ToolSpec {
                    name: full,
                    description: tool.description.clone(),
                    parameters: tool.input_schema.to_string(),
                };
                specs.push((spec, server.reach(&tool.name)));
            }
        }
        (specs, failures)
    }

    /// Calls `tool` of server `name` with the JSON `arguments`, starting the server first if it is
    /// not running. A server that failed is stopped, to be started afresh for the next call.
    pub(crate) fn call(
        &mut self,
        declared: &Declared,
        place: Place<'_>,
        name: &str,
        tool: &str,
        arguments: &str,
    ) -> Result<(String, Effect), ToolError> {
        let arguments: Map<String, Value> = match serde_json::from_str(arguments) {
            Ok(Value::Object(map)) => map,
            Ok(Value::Null) => Map::new(),
            _ => {
                return Err(ToolError::new(format!(
                    "invalid arguments for {name}{SEPARATOR}{tool}: not a JSON object"
                )));
            }
        };
        if !self.servers.contains_key(name) {
            let started = declared.start(place, name)?;
            self.failed.remove(name);
            self.servers.insert(name.to_owned(), started);
        }
        let deadline = Duration::from_secs(declared.servers[name].timeout_secs);
        let started = &self.servers[name];
        match started.client.call(tool, arguments, deadline) {
            Ok(output) if output.is_error => Err(ToolError::new(cut_middle(&output.text))),
            Ok(output) => Ok((cut_middle(&output.text), Effect::None)),
            Err(error) => {
                let Some(started) = self.servers.remove(name) else { return Err(ToolError::new(error.to_string())) };
                if let Some(process) = &started.process {
                    process.stop();
                }
                Err(ToolError::new(failure(name, &error, &started)))
            }
        }
    }
}

/// What a failed call tells the model: what happened, how the server ended, its last words.
fn failure(name: &str, error: &McpError, started: &Started) -> String {
    let Some(process) = &started.process else {
        return format!("the MCP server `{name}` failed during the call: {error}");
    };
    // A server that died has its exit code by now, or very soon.
    for _ in 0..20 {
        if process.exit_code().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    format!("the MCP server `{name}` failed during the call: {error}{}", said(process))
}

/// How the server ended and the end of its standard error, for an error message.
fn said(process: &AttachedProcess) -> String {
    let ended = match process.exit_code() {
        Some(code) => format!(" (it exited with code {code})"),
        None => String::new(),
    };
    let stderr = process.stderr_tail();
    let tail = stderr.trim();
    if tail.is_empty() {
        return ended;
    }
    let start = tail.char_indices().rev().nth(STDERR_TAIL_CHARS).map_or(0, |(index, _)| index);
    format!("{ended}; its standard error ends:\n{}", &tail[start..])
}

/// `text` with its middle cut out when it is longer than the model is given.
fn cut_middle(text: &str) -> String {
    if text.len() <= MAX_OUTPUT_BYTES {
        return text.to_owned();
    }
    let head = floor_char_boundary(text, MAX_OUTPUT_BYTES / 2);
    let tail = ceil_char_boundary(text, text.len() - MAX_OUTPUT_BYTES / 4);
    format!("{}\n[... {} bytes cut ...]\n{}", &text[..head], tail - head, &text[tail..])
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_loses_its_middle_and_keeps_whole_characters() {
        let text = "é".repeat(MAX_OUTPUT_BYTES);
        let cut = cut_middle(&text);
        assert!(cut.len() < MAX_OUTPUT_BYTES && cut.contains("bytes cut"), "{}", cut.len());
        assert!(cut.starts_with('é') && cut.ends_with('é'));
        assert_eq!(cut_middle("short"), "short");
    }

    #[test]
    fn only_a_declared_servers_names_are_served() {
        let server = ToolServer {
            transport: ServerTransport::Command { argv: vec!["node".into()], env: Vec::new() },
            read_only: vec!["echo".into()],
            timeout_secs: 5,
        };
        let declared = Declared { servers: [("everything".to_owned(), server)].into(), env: Vec::new() };
        assert_eq!(declared.split("everything__echo"), Some(("everything", "echo")));
        assert_eq!(declared.reach("everything__echo"), Some(ToolReach::ReadOnly));
        assert_eq!(declared.reach("everything__add"), Some(ToolReach::Writes));
        assert_eq!(declared.split("other__echo"), None);
        assert_eq!(declared.split("read_file"), None);
    }
}
