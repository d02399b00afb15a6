//! A task's journal as a timeline for people: one entry per event that tells something, a line
//! that says what happened and, folded under it, what there is to read (a command's output, the
//! model's text, a handoff's narrative and ledger, a check's output). Bookkeeping (holds, charges)
//! shows as the cost it added.

use baton_core::{Event, Recorded, total};

/// One line of the timeline.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub seq: u64,
    pub at: String,
    /// What kind of entry, for its look: `leg`, `model`, `tool`, `check`, `checkpoint`, `review`,
    /// `decision`, `message`, `stop`, `money`, `note`.
    pub class: &'static str,
    pub title: String,
    /// Text to read under the title, folded.
    pub body: Option<String>,
    /// Whether it went wrong (a failed tool call or check, a refused connection).
    pub failed: bool,
}

/// The longest text folded under an entry; the rest is in the journal.
const MAX_BODY: usize = 16 * 1024;

fn clipped(text: &str) -> Option<String> {
    let text = text.trim_end();
    if text.is_empty() {
        return None;
    }
    if text.len() <= MAX_BODY {
        return Some(text.to_owned());
    }
    let mut end = MAX_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}\n… ({} more bytes in the journal)", &text[..end], text.len() - end))
}

/// What a tool call is about, in a few words: a shell command, or the path it works on.
fn about(name: &str, arguments: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(arguments).unwrap_or_default();
    let field = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let said = field("command").or_else(|| field("path")).or_else(|| field("question")).or_else(|| field("summary"));
    match said {
        Some(text) => format!("{name}: {}", text.lines().next().unwrap_or_default()),
        None => name.to_owned(),
    }
}

/// The entry for one event; `None` for those that only keep the books of others.
pub(crate) fn entry(recorded: &Recorded) -> Option<Entry> {
    let (class, title, body, failed): (&'static str, String, Option<String>, bool) = match &recorded.event {
        Event::TaskCreated { spec, branch, .. } => {
            ("note", format!("created on branch {branch}"), clipped(&spec.request), false)
        }
        Event::Started => ("note", "started".into(), None, false),
        Event::Resumed { detail } => ("note", format!("resumed: {detail}"), None, false),
        Event::WaitingForHuman { question } => ("decision", format!("waiting for a human: {question}"), None, false),
        Event::VerificationStarted => ("check", "the checks run on a clean machine".into(), None, false),
        Event::ReviewStarted => ("review", "verified; a reviewer reads the change".into(), None, false),
        Event::Paused { reason, detail } => ("stop", format!("paused: {reason}"), clipped(detail), true),
        Event::Finished { reason, detail } => {
            ("stop", format!("finished: {reason}"), clipped(detail), reason.as_str() != "verified")
        }
        Event::Cancelled { detail } => ("stop", format!("cancelled: {detail}"), None, true),
        Event::LegStarted { leg, model, brief, role, .. } => {
            ("leg", format!("leg {leg} begins: {role}, {model}"), clipped(brief), false)
        }
        Event::ModelCallStarted { .. } | Event::Reserved { .. } | Event::EnvironmentPrepared { .. } => return None,
        Event::ModelCallFinished { step, response } => {
            let reasoning: String = response
                .parts
                .iter()
                .filter_map(|part| match part {
                    baton_core::Part::Reasoning { text, .. } if !text.is_empty() => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            let calls: Vec<&str> = response.tool_calls().map(|(_, name, _)| name).collect();
            let mut body = response.text();
            if !reasoning.is_empty() {
                body = format!("{body}\n\n(reasoning) {reasoning}");
            }
            let title = match calls.as_slice() {
                [] => format!("step {step}: the model answered"),
                calls => format!("step {step}: the model calls {}", calls.join(", ")),
            };
            ("model", title, clipped(&body), false)
        }
        Event::ModelCallFailed { step, error } => {
            ("model", format!("step {step}: the model call failed"), clipped(error), true)
        }
        Event::ToolCallStarted { name, arguments, .. } => ("tool", about(name, arguments), clipped(arguments), false),
        Event::ToolCallFinished { output, is_error, .. } => {
            let first = output.lines().next().unwrap_or_default();
            let title = if *is_error { format!("failed: {first}") } else { format!("→ {first}") };
            ("tool", title, clipped(output), *is_error)
        }
        Event::Feedback { text } => ("note", "baton told the agent".into(), clipped(text), false),
        Event::MessageReceived { number, text } => {
            ("message", format!("follow-up {number} from the user"), clipped(text), false)
        }
        Event::Nudged { reason, .. } => ("note", format!("nudged: {reason}"), None, false),
        Event::CheckFinished { name, exit_code, passed, output, duration_ms, .. } => {
            let verdict = if *passed { "passed" } else { "failed" };
            let title = format!("check `{name}` {verdict} (exit {exit_code}, {duration_ms} ms)");
            ("check", title, clipped(output), !passed)
        }
        Event::ConnectionRefused { host, port, phase } => {
            ("note", format!("connection to {host}:{port} refused ({phase:?})"), None, true)
        }
        Event::ProtectedRestored { paths } => {
            ("check", format!("protected files restored: {}", paths.join(", ")), None, false)
        }
        Event::Checkpointed { commit, evidence } => {
            ("checkpoint", format!("checkpoint {}", short(commit)), clipped(evidence), false)
        }
        Event::Pushed { commit, remote, error } => match error {
            None => ("checkpoint", format!("pushed {} to {remote}", short(commit)), None, false),
            Some(error) => {
                ("checkpoint", format!("push of {} to {remote} refused", short(commit)), clipped(error), true)
            }
        },
        Event::PullRequestPublished { pull_request, .. } => (
            "checkpoint",
            format!("pull request #{} shows {}", pull_request.number, short(&pull_request.commit)),
            Some(pull_request.url.clone()),
            false,
        ),
        Event::PullRequestFailed { commit, error } => {
            ("checkpoint", format!("the pull request could not show {}", short(commit)), clipped(error), true)
        }
        Event::HandoffStarted { reason, .. } => ("leg", format!("handoff: {reason}"), None, false),
        Event::HandoffWritten { handoff } => {
            let body = format!("{}\n\n{}", handoff.narrative.trim(), handoff.ledger.render());
            ("leg", format!("handoff written by leg {}", handoff.from_leg), clipped(&body), false)
        }
        Event::Settled { charges, .. } => ("money", format!("{} credits charged", total(charges)), None, false),
        Event::Overran { key, held, charged } => {
            ("money", format!("{key} cost {charged} credits, more than the {held} held"), None, true)
        }
        Event::ModelAttemptBilled { attempt, error, usage, .. } => {
            let billed = match usage {
                Some(usage) => format!("charged its reported usage ({} in, {} out)", usage.input, usage.output),
                None => "its usage is unknown: charged at the call's hold".to_owned(),
            };
            ("money", format!("attempt {attempt} of a model call failed; {billed}"), clipped(error), true)
        }
        Event::BudgetChanged { .. } => ("money", "the limits were changed".into(), None, false),
        Event::BudgetLow { text } => ("money", "the budget runs low".into(), clipped(text), false),
        Event::DecisionRequested { decision } => {
            ("decision", format!("{} asks: {}", decision.id, decision.question), clipped(&decision.why), false)
        }
        Event::DecisionMade { id, answer } => {
            let verb = if answer.approved { "answered" } else { "denied" };
            ("decision", format!("{id} {verb}: {}", answer.answer), None, !answer.approved)
        }
        Event::FindingsReported { round, findings, .. } => {
            let listed: Vec<String> = findings
                .iter()
                .map(|f| format!("{} {:?} {}:{}: {}", f.id, f.severity, f.file, f.lines.0, f.title))
                .collect();
            let title = format!("review round {round}: {} findings", findings.len());
            ("review", title, clipped(&listed.join("\n")), false)
        }
        Event::FindingUpdated { id, status, note, by } => {
            ("review", format!("{id} {} by {by}", status.as_str()), clipped(note), false)
        }
        Event::PlanSubmitted { subtasks } => {
            let listed: Vec<String> = subtasks.iter().map(|s| format!("{}: {}", s.key, s.request)).collect();
            ("leg", format!("plan of {} subtasks", subtasks.len()), clipped(&listed.join("\n")), false)
        }
        Event::SubtaskCreated { key, task } => ("leg", format!("{key} runs as task {task}"), None, false),
        Event::SubtaskEnded { key, outcome } => {
            let verdict = if outcome.verified { "verified" } else { "not verified" };
            ("leg", format!("{key} ended {verdict}"), clipped(&outcome.detail), !outcome.verified)
        }
        Event::AttemptPicked { key, reason } => ("leg", format!("{key} picked"), clipped(reason), false),
        Event::Continued { task } => ("note", format!("continued by task {task}"), None, false),
    };
    Some(Entry { seq: recorded.seq, at: recorded.at.to_string(), class, title, body, failed })
}

/// A commit's first 12 characters.
fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use baton_core::{Effect, Timestamp};

    use super::*;

    #[test]
    fn a_command_shows_what_ran_and_its_output_folded() {
        let started = Event::ToolCallStarted {
            step: 3,
            call_id: "c".into(),
            name: "shell".into(),
            arguments: r#"{"command": "pytest -q\nmore"}"#.into(),
        };
        let entry = entry(&Recorded { seq: 7, at: Timestamp(0), event: started }).unwrap();
        assert_eq!((entry.class, entry.title.as_str()), ("tool", "shell: pytest -q"));
        let finished = Event::tool_call_finished("c".into(), "x".repeat(MAX_BODY + 10), true, Effect::None);
        let entry = super::entry(&Recorded { seq: 8, at: Timestamp(0), event: finished }).unwrap();
        assert!(entry.failed && entry.body.unwrap().ends_with("(10 more bytes in the journal)"));
        let hold = Event::Reserved { key: "k".into(), charges: Vec::new() };
        assert!(super::entry(&Recorded { seq: 9, at: Timestamp(0), event: hold }).is_none());
    }
}
