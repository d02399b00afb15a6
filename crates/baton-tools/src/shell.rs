//! `shell`: a command in the task's sandbox. The call succeeds whatever the command's exit code: a
//! failing command is information for the model, not a broken tool.

use std::time::Duration;

use baton_core::Secret;
use baton_sandbox::{RunRequest, Sandbox, Stopped};
use serde::Deserialize;

use crate::{Effect, ToolError};

/// Without `timeout_s`, a command may run this long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest `timeout_s` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShellArgs {
    command: String,
    timeout_s: Option<u64>,
}

pub(crate) fn shell(sandbox: &Sandbox, secrets: &[Secret], args: ShellArgs) -> Result<(String, Effect), ToolError> {
    if args.command.trim().is_empty() {
        return Err(ToolError::new("the command is empty".to_owned()));
    }
    let timeout = match args.timeout_s {
        Some(0) => return Err(ToolError::new("timeout_s must be at least 1".to_owned())),
        Some(seconds) if Duration::from_secs(seconds) > MAX_TIMEOUT => {
            return Err(ToolError::new(format!("timeout_s may be at most {}", MAX_TIMEOUT.as_secs())));
        }
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_TIMEOUT,
    };
    let mut request = RunRequest::shell(&args.command, timeout);
    request.env = secrets.iter().map(|s| (s.name.clone(), s.value.clone())).collect();
    let outcome = sandbox.run(&request).map_err(|e| ToolError::new(e.to_string()))?;
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
    // The model sees head and tail; keeping the whole output is the journal's business (the engine
    // stores it as a blob), so the tool does not hold on to the spooled copy.
    let _ = std::fs::remove_file(&outcome.output_file);
    let text = outcome.output.text();
    let body = if text.is_empty() { "(no output)".to_owned() } else { text };
    Ok((format!("{status}\n{body}"), Effect::None))
}
