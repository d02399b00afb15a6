//! The agent's tools. Their names and JSON schemas are a contract: replays, evaluations and other
//! clients depend on them, so they change only on purpose. Every call returns a result or a precise
//! error the model can act on; no input, however hostile, makes a tool panic.

mod files;
mod patch;
mod search;
mod served;
mod shell;
mod workspace;

pub use baton_core::{Effect, PlanStep, Span, StepStatus};
use baton_core::{Secret, ToolReach, ToolServer, ToolSpec, redact};
use baton_sandbox::{Sandbox, SandboxSession};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use served::SEPARATOR as SERVED_SEPARATOR;
pub use shell::{DEFAULT_TIMEOUT, MAX_TIMEOUT, ShellCall, shell_call};
pub use workspace::{MAX_FILE_BYTES, MOUNT, Workspace};

/// A failure the model is told about, worded for it to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    pub fn new(message: String) -> ToolError {
        ToolError(message)
    }
}

/// The answer to one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    pub output: String,
    pub is_error: bool,
    pub effect: Effect,
}

impl ToolResult {
    fn ok(output: String, effect: Effect) -> ToolResult {
        ToolResult { output, is_error: false, effect }
    }

    fn error(error: ToolError) -> ToolResult {
        ToolResult { output: error.0, is_error: true, effect: Effect::None }
    }
}

/// Parses a call's arguments, naming the tool and the defect.
fn arguments<T: DeserializeOwned>(tool: &str, text: &str) -> Result<T, ToolError> {
    let invalid = |e: serde_json::Error| ToolError::new(format!("invalid arguments for {tool}: {e}"));
    let value: Value = serde_json::from_str(text).map_err(invalid)?;
    if !value.is_object() {
        return Err(ToolError::new(format!("invalid arguments for {tool}: expected a JSON object, got {value}")));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// A task's tools. The file tools, `search`, `update_plan` and `finish` work on the workspace from the
/// host, each path resolved beneath it by the kernel; `shell` runs in the task's sandbox and exists
/// only when there is one. Every output is stripped of the task's secrets before it is returned.
#[derive(Debug)]
pub struct Toolbox {
    workspace: Workspace,
    writer: CommandSandbox,
    /// Where the commands of roles that only read run: the worktree mounted read-only.
    reader: CommandSandbox,
    background: shell::BackgroundProcesses,
    /// The MCP servers the repository declares.
    declared: served::Declared,
    /// Granted during a leg too (a credential a human approved), so behind a lock; shared with
    /// whatever else must keep them out of what it records (the engine's journal).
    secrets: SharedSecrets,
}

/// The secrets of a task, as granted so far.
pub type SharedSecrets = std::sync::Arc<std::sync::RwLock<Vec<Secret>>>;

/// A sandbox and the session its commands share, started by the first `shell` call and kept for
/// the toolbox's life.
#[derive(Debug, Default)]
struct CommandSandbox {
    sandbox: Option<Box<dyn Sandbox>>,
    session: std::sync::Mutex<Option<Box<dyn SandboxSession>>>,
    /// The MCP servers running in the session.
    served: std::sync::Mutex<served::Running>,
}

impl CommandSandbox {
    /// Runs `work` in the sandbox's session, started first if it is not running.
    fn with_session<T>(&self, work: impl FnOnce(&dyn SandboxSession) -> Result<T, ToolError>) -> Result<T, ToolError> {
        let Some(sandbox) = &self.sandbox else { return Err(ToolError::new("this task has no sandbox".to_owned())) };
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            *session = Some(sandbox.session().map_err(|e| ToolError::new(e.to_string()))?);
        }
        let session = session.as_deref().ok_or_else(|| ToolError::new("the sandbox session is gone".to_owned()))?;
        work(session)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanArgs {
    steps: Vec<PlanStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishArgs {
    summary: String,
}

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec { name: name.to_owned(), description: description.to_owned(), parameters: parameters.to_string() }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

impl Toolbox {
    /// The tools that need no sandbox.
    pub fn new(workspace: Workspace) -> Toolbox {
        Toolbox {
            workspace,
            writer: CommandSandbox::default(),
            reader: CommandSandbox::default(),
            background: Default::default(),
            declared: Default::default(),
            secrets: Default::default(),
        }
    }

    /// Adds `shell`, running in `sandbox` with `secrets` in its environment.
    pub fn with_sandbox(self, sandbox: Box<dyn Sandbox>, secrets: Vec<Secret>) -> Toolbox {
        let writer = CommandSandbox { sandbox: Some(sandbox), ..CommandSandbox::default() };
        Toolbox { writer, secrets: std::sync::Arc::new(std::sync::RwLock::new(secrets)), ..self }
    }

    /// Adds the sandbox (its worktree read-only) where `call_reading` runs `shell`.
    pub fn with_reader(self, sandbox: Box<dyn Sandbox>) -> Toolbox {
        Toolbox { reader: CommandSandbox { sandbox: Some(sandbox), ..CommandSandbox::default() }, ..self }
    }

    /// Adds the tools of the MCP servers `servers` (the repository's `[mcp.NAME]`), run in the
    /// sandboxes with the variables of `env` their declarations name (redacted like any secret).
    pub fn with_tool_servers(
        self,
        servers: std::collections::BTreeMap<String, ToolServer>,
        env: Vec<Secret>,
    ) -> Toolbox {
        for secret in &env {
            self.grant(secret.clone());
        }
        Toolbox { declared: served::Declared { servers, env }, ..self }
    }

    /// The tools of the declared MCP servers as the writer's sandbox runs them, each with how far
    /// it reaches, and why a server offers none (it would not start).
    pub fn served_specs(&self) -> (Vec<(ToolSpec, ToolReach)>, Vec<String>) {
        self.served_specs_on(&self.writer)
    }

    /// [`Toolbox::served_specs`] in the sandbox of roles that only read.
    pub fn served_specs_reading(&self) -> (Vec<(ToolSpec, ToolReach)>, Vec<String>) {
        self.served_specs_on(&self.reader)
    }

    fn served_specs_on(&self, commands: &CommandSandbox) -> (Vec<(ToolSpec, ToolReach)>, Vec<String>) {
        if self.declared.servers.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let egress = commands.sandbox.as_ref().and_then(|sandbox| sandbox.egress_socket());
        let listed = commands.with_session(|session| {
            let mut running = commands.served.lock().unwrap_or_else(|e| e.into_inner());
            Ok(running.specs(&self.declared, served::Place { session, egress: egress.as_deref() }))
        });
        listed.unwrap_or_else(|error| (Vec::new(), vec![error.0]))
    }

    /// How far the tool `name` reaches, when it is one of a declared MCP server.
    pub fn served_reach(&self, name: &str) -> Option<ToolReach> {
        self.declared.reach(name)
    }

    /// Connections the network policy refused the agent's commands since the last call.
    pub fn take_refused_connections(&self) -> Vec<baton_sandbox::RefusedConnection> {
        [&self.writer, &self.reader]
            .iter()
            .filter_map(|commands| commands.sandbox.as_ref())
            .flat_map(|sandbox| sandbox.take_refused_connections())
            .collect()
    }

    /// Ends what the agent left running: its background processes, then its sessions (the next
    /// `shell` call starts a fresh one).
    pub fn stop_sessions(&self) {
        self.background.stop_all();
        for commands in [&self.writer, &self.reader] {
            *commands.served.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
            *commands.session.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Whether `path` (as the agent would write it) names something in the worktree, resolved
    /// beneath it: never a probe of the host's files.
    pub fn exists(&self, path: &str) -> bool {
        self.workspace.relative(path).and_then(|relative| self.workspace.file_type(&relative)).is_ok()
    }

    /// The start of a file of the worktree that baton reads for itself, such as an instruction file
    /// (see [`Workspace::read_own`]); `path` is as the agent would write it.
    pub fn read_own(&self, path: &std::path::Path, cap: u64) -> Option<String> {
        let relative = self.workspace.relative(path.to_str()?).ok()?;
        self.workspace.read_own(&relative, cap)
    }

    /// Adds a secret: set in the environment of later `shell` commands, redacted from every output.
    pub fn grant(&self, secret: Secret) {
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        secrets.retain(|s| s.name != secret.name);
        secrets.push(secret);
    }

    fn secrets(&self) -> Vec<Secret> {
        self.secrets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The task's secrets, also as granted later.
    pub fn shared_secrets(&self) -> SharedSecrets {
        self.secrets.clone()
    }

    /// The names, descriptions and JSON schemas of the tools this toolbox offers.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = Toolbox::workspace_specs();
        if self.writer.sandbox.is_some() {
            specs.insert(
                0,
                spec(
                    "shell",
                    "Run a bash command in the task's sandbox, in /workspace. Commands share one machine: files in /tmp and servers on 127.0.0.1 stay until baton's run of the task ends (across handoffs); packages you install persist for the whole task. There is no network beyond the task's allow-list. Output over 64 KiB is cut in the middle. With background: true the command keeps running (a dev server, a long test run) and its output goes to a log file.",
                    object(
                        json!({"command": {"type": "string"}, "timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT.as_secs(), "description": "Default 600."}, "background": {"type": "boolean"}}),
                        &["command"],
                    ),
                ),
            );
        }
        specs
    }

    fn workspace_specs() -> Vec<ToolSpec> {
        let path = json!({"type": "string", "description": "Relative to /workspace."});
        vec![
            spec(
                "read_file",
                "Read a text file with line numbers. Long files come in pages: pass start_line and end_line (1-based, inclusive) for more.",
                object(
                    json!({"path": path, "start_line": {"type": "integer", "minimum": 1}, "end_line": {"type": "integer", "minimum": 1}}),
                    &["path"],
                ),
            ),
            spec(
                "write_file",
                "Create or replace a whole file. Missing directories are created.",
                object(json!({"path": path, "content": {"type": "string"}}), &["path", "content"]),
            ),
            spec(
                "edit_file",
                "Replace an exact piece of a file. `old` must occur exactly once unless replace_all is true; include enough surrounding lines to make it unique.",
                object(
                    json!({"path": path, "old": {"type": "string"}, "new": {"type": "string"}, "replace_all": {"type": "boolean"}}),
                    &["path", "old", "new"],
                ),
            ),
            spec(
                "apply_patch",
                "Apply a patch to several files at once, all or nothing. Format: `*** Begin Patch`, then per file `*** Add File: PATH` (lines starting with +), `*** Delete File: PATH`, or `*** Update File: PATH` (optionally `*** Move to: PATH`) with hunks that start with `@@` and hold context lines (space), removed lines (-) and added lines (+); then `*** End Patch`.",
                object(json!({"patch": {"type": "string"}}), &["patch"]),
            ),
            spec(
                "search",
                "Search file contents with a regular expression (Rust regex syntax), skipping what .gitignore ignores and binary files. Results are `path:line: text`.",
                object(
                    json!({"pattern": {"type": "string"}, "path": {"type": "string", "description": "A file or directory to search in; default the whole workspace."}, "glob": {"type": "string", "description": "Only files matching this glob, like `*.rs` or `src/**/*.py`."}}),
                    &["pattern"],
                ),
            ),
            spec(
                "list_dir",
                "List a directory's entries, recursing `depth` levels (default 1). Directories end with /.",
                object(json!({"path": path, "depth": {"type": "integer", "minimum": 1, "maximum": 5}}), &["path"]),
            ),
            spec(
                "update_plan",
                "Replace the plan: the steps of the task and where each stands. Keep exactly one step in_progress while working.",
                object(
                    json!({"steps": {"type": "array", "items": object(
                        json!({"title": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "in_progress", "done"]}}),
                        &["title", "status"],
                    )}}),
                    &["steps"],
                ),
            ),
            spec(
                "finish",
                "Say the task is done, with a summary of what changed and why. baton then runs the acceptance checks; if they fail you get their output and continue.",
                object(json!({"summary": {"type": "string"}}), &["summary"]),
            ),
        ]
    }

    /// Runs one call. Unknown tools and malformed arguments are errors for the model, like any other.
    pub fn call(&self, name: &str, arguments_json: &str) -> ToolResult {
        self.call_on(&self.writer, name, arguments_json)
    }

    /// Runs one call for a role that only reads: `shell` commands see the worktree read-only.
    pub fn call_reading(&self, name: &str, arguments_json: &str) -> ToolResult {
        self.call_on(&self.reader, name, arguments_json)
    }

    fn call_on(&self, commands: &CommandSandbox, name: &str, arguments_json: &str) -> ToolResult {
        let mut result = match self.dispatch(commands, name, arguments_json) {
            Ok((output, effect)) => ToolResult::ok(output, effect),
            Err(error) => ToolResult::error(error),
        };
        let secrets = self.secrets();
        if !secrets.is_empty() {
            result.output = redact(&result.output, &secrets);
        }
        result
    }

    fn dispatch(
        &self,
        commands: &CommandSandbox,
        name: &str,
        arguments_json: &str,
    ) -> Result<(String, Effect), ToolError> {
        if let ("shell", Some(_)) = (name, &commands.sandbox) {
            let args = arguments(name, arguments_json)?;
            return commands.with_session(|session| shell::shell(session, &self.background, &self.secrets(), args));
        }
        if let Some((server, tool)) = self.declared.split(name) {
            let egress = commands.sandbox.as_ref().and_then(|sandbox| sandbox.egress_socket());
            return commands.with_session(|session| {
                let mut running = commands.served.lock().unwrap_or_else(|e| e.into_inner());
                let place = served::Place { session, egress: egress.as_deref() };
                running.call(&self.declared, place, server, tool, arguments_json)
            });
        }
        match name {
            "search" => arguments(name, arguments_json).and_then(|a| search::search(&self.workspace, a)),
            "read_file" => arguments(name, arguments_json).and_then(|a| files::read_file(&self.workspace, a)),
            "write_file" => arguments(name, arguments_json).and_then(|a| files::write_file(&self.workspace, a)),
            "edit_file" => arguments(name, arguments_json).and_then(|a| files::edit_file(&self.workspace, a)),
            "apply_patch" => arguments(name, arguments_json).and_then(|a| patch::apply_patch(&self.workspace, a)),
            "list_dir" => arguments(name, arguments_json).and_then(|a| files::list_dir(&self.workspace, a)),
            "update_plan" => arguments::<PlanArgs>(name, arguments_json).and_then(|a| {
                let in_progress = a.steps.iter().filter(|s| s.status == StepStatus::InProgress).count();
                if in_progress > 1 {
                    return Err(ToolError::new(format!("{in_progress} steps are in_progress; keep at most one")));
                }
                Ok((format!("plan updated: {} steps", a.steps.len()), Effect::Plan(a.steps)))
            }),
            "finish" => arguments::<FinishArgs>(name, arguments_json).and_then(|a| {
                if a.summary.trim().is_empty() {
                    return Err(ToolError::new("the summary is empty; say what changed and why".to_owned()));
                }
                Ok(("finish recorded; baton now runs the acceptance checks".to_owned(), Effect::Finish(a.summary)))
            }),
            other => {
                let known: Vec<String> = self.specs().into_iter().map(|s| s.name).collect();
                Err(ToolError::new(format!("there is no tool `{other}`; the tools are: {}", known.join(", "))))
            }
        }
    }
}
