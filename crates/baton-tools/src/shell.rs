//! `shell`: a command in the task's sandbox session. The call succeeds whatever the command's exit
//! code: a failing command is information for the model, not a broken tool. `background: true`
//! starts a command that keeps running (a dev server, a long test run) with its output in a log file
//! the agent can read, in the same sandbox as the commands after it.

use std::time::Duration;

use std::sync::Mutex;

use baton_core::Secret;
use baton_sandbox::{BackgroundProcess, RunRequest, SandboxSession, Stopped};
use serde::Deserialize;

use crate::{Effect, ToolError};

/// Without `timeout_s`, a command may run this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest `timeout_s` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

fn timeout(requested: Option<u64>) -> Result<Duration, ToolError> {
    match requested {
        Some(0) => Err(ToolError::new("timeout_s must be at least 1".to_owned())),
        Some(seconds) if Duration::from_secs(seconds) > MAX_TIMEOUT => {
            Err(ToolError::new(format!("timeout_s may be at most {}", MAX_TIMEOUT.as_secs())))
        }
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Ok(DEFAULT_TIMEOUT),
    }
}

/// What the harness needs to know of a `shell` call before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCall {
    pub command: String,
    /// How long it may keep a sandbox busy: its timeout, or nothing for a background process or
    /// a timeout the tool would refuse.
    pub busy: Duration,
}

/// The `shell` call a tool call is, if it is one with valid arguments.
pub fn shell_call(name: &str, arguments: &str) -> Option<ShellCall> {
    let args = serde_json::from_str::<ShellArgs>(arguments).ok().filter(|_| name == "shell")?;
    let busy = if args.background { Duration::ZERO } else { timeout(args.timeout_s).unwrap_or(Duration::ZERO) };
    Some(ShellCall { command: args.command, busy })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShellArgs {
    command: String,
    timeout_s: Option<u64>,
    #[serde(default)]
    background: bool,
}

/// A background process: its number, the command that started it, and the process.
type Started = (usize, String, Box<dyn BackgroundProcess>);

/// Background processes started by `shell`.
#[derive(Debug, Default)]
pub(crate) struct BackgroundProcesses {
    running: Mutex<Vec<Started>>,
    started: Mutex<usize>,
}

impl BackgroundProcesses {
    /// Stops every background process.
    pub(crate) fn stop_all(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for (_, _, process) in running.drain(..) {
            process.stop();
        }
    }

    /// One line per background process that ended since the last call, and forgets them.
    fn ended(&self) -> String {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut notes = String::new();
        running.retain(|(n, command, process)| match process.read_new().exit_code {
            Some(code) => {
                notes.push_str(&format!("[background process {n} (`{command}`) exited with code {code}]\n"));
                false
            }
            None => true,
        });
        notes
    }
}

fn start_background(
    session: &dyn SandboxSession,
    processes: &BackgroundProcesses,
    mut request: RunRequest,
    command: &str,
) -> Result<String, ToolError> {
    let n = {
        let mut started = processes.started.lock().unwrap_or_else(|e| e.into_inner());
        *started += 1;
        *started
    };
    let (log, pid) = (format!("/tmp/baton-background-{n}.log"), format!("/tmp/baton-background-{n}.pid"));
    request.argv = vec!["/bin/bash".into(), "-c".into(), format!("echo $$ > {pid}; exec > {log} 2>&1; {command}")];
    let process = session.spawn(&request).map_err(|e| ToolError::new(e.to_string()))?;
    processes.running.lock().unwrap_or_else(|e| e.into_inner()).push((n, command.to_owned(), process));
    Ok(format!(
        "started background process {n}; its output goes to {log} (read it with `tail {log}`); stop it and its children with `kill -- -$(cat {pid})`"
    ))
}

pub(crate) fn shell(
    session: &dyn SandboxSession,
    processes: &BackgroundProcesses,
    secrets: &[Secret],
    args: ShellArgs,
) -> Result<(String, Effect), ToolError> {
    if args.command.trim().is_empty() {
        return Err(ToolError::new("the command is empty".to_owned()));
    }
    let timeout = timeout(args.timeout_s)?;
    let mut request = RunRequest::shell(&args.command, timeout);
    request.env = secrets.iter().map(|s| (s.name.clone(), s.value.clone())).collect();
    let notes = processes.ended();
    if args.background {
        return Ok((format!("{notes}{}", start_background(session, processes, request, &args.command)?), Effect::None));
    }
    let outcome = session.run(&request).map_err(|e| ToolError::new(e.to_string()))?;
    let seconds = outcome.duration.as_secs_f64();
    let status = match (outcome.stopped, outcome.out_of_memory) {
        (Some(Stopped::Timeout), _) => format!("stopped after {} s: the timeout ran out", timeout.as_secs()),
        (Some(Stopped::OutputLimit), _) => "stopped: the command printed more output than baton keeps".to_owned(),
        (None, true) => {
            format!("exit code {} in {seconds:.1} s; a process ran out of memory and was killed", outcome.exit_code)
        }
        (None, false) if outcome.exit_code > 128 => {
            format!("exit code {} (killed by signal {}) in {seconds:.1} s", outcome.exit_code, outcome.exit_code - 128)
        }
        (None, false) => format!("exit code {} in {seconds:.1} s", outcome.exit_code),
    };
    // Slowness the agent should not blame on the code: the task's share of the processors ran out.
    let status = match outcome.cpu_throttled.filter(|held| held.as_secs_f64() >= 0.1) {
        Some(held) => format!("{status}; held back {:.1} s at the task's CPU share", held.as_secs_f64()),
        None => status,
    };
    // The model sees head and tail, and the journal keeps what the model was shown; nothing reads
    // the spooled copy, so it goes at once.
    let _ = std::fs::remove_file(&outcome.output_file);
    let text = outcome.output.text();
    let body = if text.is_empty() { "(no output)".to_owned() } else { text };
    Ok((format!("{notes}{status}\n{body}"), Effect::None))
}
