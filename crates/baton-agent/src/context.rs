//! A leg's context budget: how full the prompt may get before the leg hands off, old tool outputs
//! elided with a way back (`recall`), and the handoff that opens the next leg.

use std::fmt::Write as _;

use baton_core::{Handoff, HandoffDue, Message, OwnCredentials, Part, Role, TaskSpec, ToolSpec, Urgency};
use serde::Deserialize;
use serde_json::{Value, json};

/// The room one leg has, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBudget {
    window: u64,
    /// Kept free for the answer.
    reserve: u64,
}

/// How full a prompt is, judged against the thresholds of [`ContextBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pressure {
    Low,
    /// Past half the room: the leg hands off at its next plan-step boundary.
    Boundary,
    /// Past the soft threshold: the leg hands off now, while there is room to write the handoff.
    Soft,
    /// Past the hard threshold: the next call may not fit; an emergency handoff from a shortened
    /// transcript.
    Hard,
}

/// Thresholds, in percent of the input room.
const BOUNDARY_PERCENT: u64 = 50;
const SOFT_PERCENT: u64 = 70;
const HARD_PERCENT: u64 = 90;

impl ContextBudget {
    /// A window of `window` tokens, of which up to `max_output` (at most a quarter of the window)
    /// is kept for the answer.
    pub fn new(window: u64, max_output: u64) -> ContextBudget {
        ContextBudget { window, reserve: max_output.min(window / 4) }
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    /// The output tokens a call may ask for.
    pub fn max_output(&self) -> u64 {
        self.reserve
    }

    /// The input tokens a request may use.
    pub fn input_limit(&self) -> u64 {
        self.window - self.reserve
    }

    fn pressure(&self, tokens: u64) -> Pressure {
        let percent = tokens.saturating_mul(100) / self.input_limit().max(1);
        match percent {
            p if p >= HARD_PERCENT => Pressure::Hard,
            p if p >= SOFT_PERCENT => Pressure::Soft,
            p if p >= BOUNDARY_PERCENT => Pressure::Boundary,
            _ => Pressure::Low,
        }
    }

    /// Whether the leg must hand off before sending a prompt of `tokens`: why, and how urgently
    /// (an emergency when the prompt may not fit any more).
    pub fn handoff_due(&self, tokens: u64, plan_step_completed: bool) -> Option<HandoffDue> {
        let percent = tokens * 100 / self.input_limit().max(1);
        let (reason, urgency) = match self.pressure(tokens) {
            Pressure::Hard => {
                (format!("the prompt reached {percent}% of the context (hard threshold)"), Urgency::Emergency)
            }
            Pressure::Soft => {
                (format!("the prompt reached {percent}% of the context (soft threshold)"), Urgency::Planned)
            }
            Pressure::Boundary if plan_step_completed => {
                (format!("a plan step is done and the prompt is at {percent}% of the context"), Urgency::Planned)
            }
            Pressure::Boundary | Pressure::Low => return None,
        };
        Some(HandoffDue { reason, urgency })
    }

    /// The most bytes one tool result may keep: a quarter of the input room, at a conservative
    /// three bytes per token, so no single output can fill a small context.
    pub fn max_result_bytes(&self) -> usize {
        (self.input_limit() / 4 * 3) as usize
    }

    /// The most a shortened transcript for an emergency handoff may use, leaving room for the
    /// handoff request itself.
    pub fn emergency_target(&self) -> u64 {
        self.input_limit() * BOUNDARY_PERCENT / 100
    }
}

/// Tool outputs (and string arguments of tool calls) longer than this are elided once old.
const ELIDE_ABOVE: usize = 1024;
/// The newest messages are never elided: the agent is still working with them.
const KEEP_RECENT: usize = 6;
/// Once the transcript passes this share of the input room, its oldest outputs are elided until it
/// is down to [`ELIDE_TO_PERCENT`]. The cutoff moves in such jumps, so between them the prompt keeps
/// its prefix and the provider's prompt cache stays warm.
const ELIDE_AT_PERCENT: u64 = 40;
const ELIDE_TO_PERCENT: u64 = 20;
/// Bytes per token assumed when sizing the transcript: few tokenizers pack fewer into a token.
const BYTES_PER_TOKEN: u64 = 3;
/// How much of an elided output stays visible.
const GLIMPSE: usize = 160;

/// The transcript as it is sent: large tool outputs and arguments older than the recent messages
/// replaced by short references, by size: a leg of small outputs keeps them all, a few large ones
/// go early. The transcript itself (the journal) keeps everything.
pub fn elide(messages: &[Message], budget: ContextBudget) -> Vec<Message> {
    let room = budget.input_limit().saturating_mul(BYTES_PER_TOKEN);
    let (at, to) = ((room * ELIDE_AT_PERCENT / 100) as usize, (room * ELIDE_TO_PERCENT / 100) as usize);
    elide_before(messages, cutoff(messages, at, to), ELIDE_ABOVE)
}

/// Where elision stops: replayed from the first message, so the same transcript always gives the
/// same cutoff and one more message moves it only when the transcript crosses `at` bytes again.
fn cutoff(messages: &[Message], at: usize, to: usize) -> usize {
    let size = |message: &Message| message.parts.iter().map(part_bytes).sum::<usize>();
    // Measured without copying the message: only its large parts change.
    let saved = |message: &Message| {
        let shrink =
            |part: &Part| elided(part, ELIDE_ABOVE).map_or(0, |(text, short)| text.len().saturating_sub(short.len()));
        message.parts.iter().map(shrink).sum::<usize>()
    };
    let (mut cutoff, mut sent) = (0, 0);
    for (at_message, message) in messages.iter().enumerate() {
        sent += size(message);
        if sent <= at {
            continue;
        }
        let keep_from = (at_message + 1).saturating_sub(KEEP_RECENT);
        while sent > to && cutoff < keep_from {
            sent -= saved(&messages[cutoff]);
            cutoff += 1;
        }
    }
    cutoff
}

fn part_bytes(part: &Part) -> usize {
    match part {
        Part::Text { text } => text.len(),
        Part::ToolCall { id, name, arguments } => id.len() + name.len() + arguments.len(),
        Part::ToolResult { call_id, output, .. } => call_id.len() + output.len(),
        Part::Reasoning { text, replay } => text.len() + replay.as_ref().map_or(0, |replay| replay.item.len()),
    }
}

fn elide_before(messages: &[Message], cutoff: usize, above: usize) -> Vec<Message> {
    let mut out = messages.to_vec();
    for part in out[..cutoff].iter_mut().flat_map(|message| &mut message.parts) {
        if let Some((_, short)) = elided(part, above) {
            match part {
                Part::ToolResult { output: text, .. } | Part::ToolCall { arguments: text, .. } => *text = short,
                Part::Text { .. } | Part::Reasoning { .. } => {}
            }
        }
    }
    out
}

/// An old part's large text (an output, a call's arguments) and what it is sent as instead; `None`
/// for a part that is sent whole.
fn elided(part: &Part, above: usize) -> Option<(&str, String)> {
    match part {
        Part::ToolResult { call_id, output, .. } if output.len() > above => Some((output, reference(call_id, output))),
        Part::ToolCall { arguments, .. } if arguments.len() > above => {
            Some((arguments, shorten_arguments(arguments, above)))
        }
        _ => None,
    }
}

fn reference(call_id: &str, output: &str) -> String {
    let lines = output.lines().count();
    let first = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let glimpse: String = first.chars().take(GLIMPSE).collect();
    format!(
        "[baton elided this output ({lines} lines, {} bytes) to keep the context small; `recall` with call_id {call_id:?} shows it again. It began: {glimpse}]",
        output.len()
    )
}

/// The call's arguments with long string values cut, still valid JSON when they were.
fn shorten_arguments(arguments: &str, above: usize) -> String {
    fn cut(value: &mut Value, above: usize) {
        match value {
            Value::String(text) if text.len() > above / 4 => {
                *text = format!("[baton elided {} bytes]", text.len());
            }
            Value::Array(items) => items.iter_mut().for_each(|item| cut(item, above)),
            Value::Object(map) => map.values_mut().for_each(|item| cut(item, above)),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(mut value) => {
            cut(&mut value, above);
            value.to_string()
        }
        // Malformed arguments stay as the model wrote them: they are rare and the error that
        // answered them refers to them.
        Err(_) => arguments.to_owned(),
    }
}

/// `output` cut to `max` bytes, keeping its head and tail: where an error shows up is rarely known.
pub fn fit_output(output: String, max: usize) -> String {
    if output.len() <= max {
        return output;
    }
    let floor = |mut at: usize| {
        while !output.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let head = floor(max / 2);
    let tail = floor(output.len() - max / 2);
    let tail = if tail < head { head } else { tail };
    format!(
        "{}\n[… baton cut {} bytes here to fit the context; narrow the command (grep, head, sed -n) or read a line range to see them …]\n{}",
        &output[..head],
        tail - head,
        &output[tail..]
    )
}

pub const RECALL: &str = "recall";
pub const ASK_HUMAN: &str = "ask_human";

/// The tool that puts a question to a human; the task waits, spending nothing, for the answer.
pub fn ask_human_spec() -> ToolSpec {
    let parameters = json!({
        "type": "object",
        "properties": {
            "question": {"type": "string", "description": "One clear question."},
            "options": {"type": "array", "items": {"type": "string"}, "description": "Suggested answers, if there are natural ones."},
            "why": {"type": "string", "description": "Why you cannot decide this yourself: what is at stake."}
        },
        "required": ["question", "why"],
        "additionalProperties": false
    });
    ToolSpec {
        name: ASK_HUMAN.to_owned(),
        description: "Ask the human who owns this task a question only they can answer (a product decision, a missing fact, a risky step). The task waits for the answer, so ask only when guessing would be worse.".to_owned(),
        parameters: parameters.to_string(),
    }
}

pub const REQUEST_CREDENTIAL: &str = "request_credential";

/// The tool that asks a human for a credential by name.
pub fn request_credential_spec() -> ToolSpec {
    let parameters = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The environment variable, like NPM_TOKEN."},
            "why": {"type": "string", "description": "What you need it for."}
        },
        "required": ["name", "why"],
        "additionalProperties": false
    });
    ToolSpec {
        name: REQUEST_CREDENTIAL.to_owned(),
        description: "Ask for a credential by name. If a human approves, it is set as that environment variable in your later shell commands; its value is never shown to you.".to_owned(),
        parameters: parameters.to_string(),
    }
}

/// A `request_credential` call's `(name, why)`, or the error for the model; one of baton's `own`
/// credentials is refused before a human is asked.
pub fn request_credential_args(arguments: &str, own: &OwnCredentials) -> Result<(String, String), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        name: String,
        why: String,
    }
    let args: Args =
        serde_json::from_str(arguments).map_err(|e| format!("invalid arguments for request_credential: {e}"))?;
    let valid = !args.name.is_empty()
        && !args.name.starts_with(|c: char| c.is_ascii_digit())
        && args.name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!(
            "`{}` is not an environment variable name (A-Z, 0-9 and _, not starting with a digit)",
            args.name
        ));
    }
    if own.contains(&args.name) {
        return Err(format!(
            "`{}` is one of baton's own credentials (its providers' keys, its git and forge tokens, its store), which no task is given",
            args.name
        ));
    }
    Ok((args.name, args.why))
}

/// An `ask_human` call's arguments: `(question, options, why)`, or the error for the model.
pub fn ask_human_args(arguments: &str) -> Result<(String, Vec<String>, String), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        question: String,
        #[serde(default)]
        options: Vec<String>,
        why: String,
    }
    let args: Args = serde_json::from_str(arguments).map_err(|e| format!("invalid arguments for ask_human: {e}"))?;
    if args.question.trim().is_empty() {
        return Err("the question is empty; ask one clear question".to_owned());
    }
    Ok((args.question, args.options, args.why))
}

/// The tool that shows an elided output again.
pub fn recall_spec() -> ToolSpec {
    let parameters = json!({
        "type": "object",
        "properties": {
            "call_id": {"type": "string", "description": "The call_id named in the elided output."},
            "start_line": {"type": "integer", "minimum": 1, "description": "First line to show (default 1)."},
            "line_count": {"type": "integer", "minimum": 1, "description": "Lines to show (default: all)."}
        },
        "required": ["call_id"],
        "additionalProperties": false
    });
    ToolSpec {
        name: RECALL.to_owned(),
        description:
            "Show again the output of an earlier tool call of this leg that baton elided to keep the context small."
                .to_owned(),
        parameters: parameters.to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecallArgs {
    call_id: String,
    start_line: Option<usize>,
    line_count: Option<usize>,
}

/// Answers a `recall` call from the leg's whole transcript; the error is for the model.
pub fn recall(messages: &[Message], arguments: &str) -> Result<String, String> {
    let args: RecallArgs = serde_json::from_str(arguments).map_err(|e| format!("invalid arguments for recall: {e}"))?;
    let output = messages
        .iter()
        .flat_map(|m| &m.parts)
        .find_map(|part| match part {
            Part::ToolResult { call_id, output, .. } if *call_id == args.call_id => Some(output),
            _ => None,
        })
        .ok_or_else(|| {
            format!("no tool call {:?} in this leg; recall shows outputs elided in the current leg only", args.call_id)
        })?;
    if args.start_line.is_none() && args.line_count.is_none() {
        return Ok(output.clone());
    }
    let lines: Vec<&str> = output.lines().collect();
    let start = args.start_line.unwrap_or(1);
    if start == 0 || start > lines.len() {
        return Err(format!("the output has {} lines; start_line {start} is outside 1..={}", lines.len(), lines.len()));
    }
    let end = args.line_count.map_or(lines.len(), |count| (start - 1 + count).min(lines.len()));
    Ok(format!("lines {start}-{end} of {}:\n{}", lines.len(), lines[start - 1..end].join("\n")))
}

/// What the leaving leg is asked for in its summarisation call.
pub fn handoff_request(reason: &str) -> String {
    format!(
        "baton: {reason}, so this leg ends here and a fresh leg continues the task. Write the handoff for the next leg now, as plain text (call no tool). The next leg will see the task, your handoff and baton's ledger (plan with statuses, every changed file, files read, last check results, HEAD), and nothing else of this conversation. Cover:\n\
         1. State of the objective: what works now, what does not yet.\n\
         2. Decisions and why (what you chose over what).\n\
         3. Failed attempts: what you tried that did not work, and why.\n\
         4. Next steps, in order, specific enough to act on without re-reading what you already read (name files, functions, commands).\n\
         Be concrete and brief; do not repeat the ledger."
    )
}

/// Lines of the leaving leg's own words kept when it could not write a narrative.
const FALLBACK_BYTES: usize = 4096;

/// A narrative built from the leg's own recent words, for when the summarisation call failed.
pub fn fallback_narrative(messages: &[Message]) -> String {
    let mut said = Vec::new();
    let mut size = 0;
    for message in messages.iter().rev().filter(|m| m.role == Role::Assistant) {
        for part in message.parts.iter().rev() {
            if let Part::Text { text } = part
                && !text.trim().is_empty()
                && size + text.len() <= FALLBACK_BYTES
            {
                size += text.len();
                said.push(text.trim());
            }
        }
    }
    if said.is_empty() {
        return "The leaving leg wrote no narrative; rely on the ledger.".to_owned();
    }
    said.reverse();
    format!("The leaving leg wrote no narrative; its last words were:\n\n{}", said.join("\n\n"))
}

/// The transcript of an emergency handoff: every large output elided, then the oldest exchanges
/// dropped (the brief stays) until `fits` says it fits.
pub fn shorten(messages: &[Message], fits: impl Fn(&[Message]) -> bool) -> Vec<Message> {
    let mut out = elide_before(messages, messages.len(), GLIMPSE);
    // Messages alternate user, assistant; dropping the pair after the brief keeps every tool
    // result next to its call.
    while !fits(&out) && out.len() > 3 {
        out.drain(1..3);
    }
    out
}

/// The message that opens a leg after a handoff: the task, the leaving leg's narrative, then the
/// ledger as baton keeps it.
pub fn handoff_brief(spec: &TaskSpec, handoff: &Handoff, idle_legs: u32) -> String {
    let mut out = crate::brief(spec);
    let kind = if handoff.emergency { "an emergency handoff" } else { "a handoff" };
    let _ = write!(
        out,
        "\n# Handoff\n\nYou continue this task in a fresh context, after {kind} from leg {} at step {} ({}). The work so far is committed on the task branch. Trust the ledger below: it is taken from the journal and git, not from memory.\n",
        handoff.from_leg, handoff.step, handoff.reason
    );
    if idle_legs > 0 {
        out.push_str("\nThe previous leg filled its context without changing a file, finishing a plan step, running the checks or seeing anything earlier legs had not. Do not re-read what the ledger lists unless you must; act on the next steps. Another such leg pauses the task.\n");
    }
    if let Some(error) = &handoff.narrative_error {
        let _ = writeln!(out, "\n(The leaving leg's summary failed: {error}.)");
    }
    let _ = write!(
        out,
        "\n## From the leaving leg\n\n{}\n\n# Ledger\n\n{}",
        handoff.narrative.trim(),
        handoff.ledger.render()
    );
    out
}

#[cfg(test)]
mod tests {
    use baton_core::{Ledger, PlanStep, StepStatus};

    use super::*;

    #[test]
    fn a_task_may_not_ask_for_batons_own_credentials() {
        // `WORK_KEY`: a provider's key, in the variable the configuration names instead of the usual one.
        let own = OwnCredentials::with(["WORK_KEY".to_owned()]);
        for name in
            ["BATON_STORE", "BATON_GIT_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "WORK_KEY"]
        {
            let arguments = serde_json::json!({"name": name, "why": "to help"}).to_string();
            let error = request_credential_args(&arguments, &own).unwrap_err();
            assert!(error.contains("one of baton's own credentials"), "{name}: {error}");
        }
        let arguments = serde_json::json!({"name": "NPM_TOKEN", "why": "private registry"}).to_string();
        assert_eq!(request_credential_args(&arguments, &own), Ok(("NPM_TOKEN".into(), "private registry".into())));
    }

    fn user(parts: Vec<Part>) -> Message {
        Message { role: Role::User, parts }
    }

    fn exchange(n: usize, output: &str) -> [Message; 2] {
        let id = format!("c{n}");
        [
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall { id: id.clone(), name: "shell".into(), arguments: "{}".into() }],
            },
            user(vec![Part::ToolResult { call_id: id, output: output.to_owned(), is_error: false }]),
        ]
    }

    fn transcript(exchanges: usize, output: &str) -> Vec<Message> {
        let mut out = vec![user(vec![Part::Text { text: "# Task".into() }])];
        (0..exchanges).for_each(|n| out.extend(exchange(n, output)));
        out
    }

    fn output_of(message: &Message) -> &str {
        match &message.parts[0] {
            Part::ToolResult { output, .. } => output,
            other => panic!("not a result: {other:?}"),
        }
    }

    #[test]
    fn pressure_follows_the_thresholds_of_the_input_room() {
        let budget = ContextBudget::new(32_768, 4096);
        assert_eq!(budget.input_limit(), 28_672);
        assert_eq!(budget.pressure(10_000), Pressure::Low);
        assert_eq!(budget.pressure(14_336), Pressure::Boundary);
        assert_eq!(budget.pressure(20_071), Pressure::Soft);
        assert_eq!(budget.pressure(25_805), Pressure::Hard);
        assert_eq!(budget.handoff_due(14_336, false), None);
        let due = |reason: &str, urgency| Some(HandoffDue { reason: reason.into(), urgency });
        assert_eq!(
            budget.handoff_due(14_336, true),
            due("a plan step is done and the prompt is at 50% of the context", Urgency::Planned)
        );
        assert_eq!(
            budget.handoff_due(20_071, false),
            due("the prompt reached 70% of the context (soft threshold)", Urgency::Planned)
        );
        assert_eq!(
            budget.handoff_due(25_805, false),
            due("the prompt reached 90% of the context (hard threshold)", Urgency::Emergency)
        );
        // A huge output limit cannot eat the window.
        assert_eq!(ContextBudget::new(1000, 900).max_output(), 250);
    }

    #[test]
    fn old_large_outputs_are_elided_in_jumps_by_size() {
        let budget = ContextBudget::new(32_768, 4096);
        let bytes = |messages: &[Message]| messages.iter().flat_map(|m| &m.parts).map(part_bytes).sum::<usize>();
        let is_elided = |message: &Message| output_of(message).starts_with("[baton elided");

        // Twenty outputs of 1.5 kB fit the room: none is elided, however old.
        let small = transcript(20, &"s".repeat(1500));
        assert_eq!(elide(&small, budget), small);

        let big = format!("first line\n{}", "x".repeat(4000));
        let messages = transcript(20, &big);
        let sent = elide(&messages, budget);
        assert!(output_of(&sent[2]).starts_with("[baton elided this output (2 lines, 4011 bytes)"));
        assert!(output_of(&sent[2]).ends_with("It began: first line]"));
        assert!(bytes(&sent) <= 28_672 * 3 * 40 / 100, "{} bytes sent", bytes(&sent));
        assert!(sent[36..].iter().step_by(2).all(|m| !is_elided(m)), "the newest outputs stay whole");
        // Growing one exchange at a time, the cutoff jumps a few times and otherwise stays, so the
        // sent prefix (the provider's cached part) stays too.
        let (at, to) = (28_672 * 3 * 40 / 100, 28_672 * 3 * 20 / 100);
        let cutoffs: Vec<usize> = (1..=messages.len()).map(|n| cutoff(&messages[..n], at, to)).collect();
        assert!(cutoffs.windows(2).all(|pair| pair[0] <= pair[1]), "{cutoffs:?}");
        let jumps = cutoffs.windows(2).filter(|pair| pair[0] != pair[1]).count();
        assert!((2..=5).contains(&jumps), "{jumps} jumps: {cutoffs:?}");
        for n in 1..messages.len() {
            if cutoffs[n - 1] == cutoffs[n] {
                assert_eq!(elide(&messages[..=n], budget)[..n], elide(&messages[..n], budget)[..], "{n}");
            }
        }
    }
    #[test]
    fn recall_shows_an_output_whole() {
        let big = format!("first line\n{}", "x".repeat(4000));
        let messages = transcript(20, &big);
        assert_eq!(recall(&messages, r#"{"call_id": "c3"}"#).unwrap(), big);
        assert_eq!(
            recall(&messages, r#"{"call_id": "c3", "start_line": 1, "line_count": 1}"#).unwrap(),
            "lines 1-1 of 2:\nfirst line"
        );
        assert!(recall(&messages, r#"{"call_id": "nope"}"#).unwrap_err().contains("no tool call \"nope\""));
        assert!(recall(&messages, r#"{"call_id": "c3", "start_line": 9}"#).unwrap_err().contains("outside 1..=2"));
        assert!(recall(&messages, "{").unwrap_err().starts_with("invalid arguments for recall"));
    }

    #[test]
    fn a_huge_output_keeps_its_head_and_tail() {
        let output = format!("{}{}", "a".repeat(5000), "é".repeat(5000));
        let fitted = fit_output(output.clone(), 1000);
        assert!(fitted.starts_with(&"a".repeat(500)) && fitted.ends_with(&"é".repeat(250)), "{fitted}");
        assert!(fitted.contains("baton cut 14000 bytes here"));
        assert_eq!(fit_output("short".into(), 1000), "short");
        assert_eq!(ContextBudget::new(32_768, 4096).max_result_bytes(), 21_504);
    }

    #[test]
    fn long_arguments_are_cut_and_stay_json() {
        let arguments = json!({"path": "a.txt", "content": "y".repeat(3000)}).to_string();
        let mut messages = transcript(0, "");
        messages.push(Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall { id: "w".into(), name: "write_file".into(), arguments: arguments.clone() }],
        });
        let short = elide_before(&messages, 2, ELIDE_ABOVE);
        let Part::ToolCall { arguments: cut, .. } = &short[1].parts[0] else { panic!() };
        let value: Value = serde_json::from_str(cut).unwrap();
        assert_eq!(value, json!({"path": "a.txt", "content": "[baton elided 3000 bytes]"}));
        assert_eq!(shorten_arguments("{not json", 1), "{not json");
    }

    #[test]
    fn an_emergency_transcript_keeps_the_brief_and_whole_exchanges() {
        let messages = transcript(10, &"z".repeat(500));
        let short = shorten(&messages, |m| m.len() <= 5);
        assert_eq!(short.len(), 5);
        assert_eq!(short[0], messages[0]);
        assert_eq!(short[1].role, Role::Assistant);
        assert!(output_of(&short[2]).starts_with("[baton elided"));
    }

    #[test]
    fn the_next_leg_gets_the_task_the_narrative_and_the_ledger() {
        let spec = TaskSpec::new("Fix the parser", std::path::PathBuf::from("/repo"));
        let handoff = Handoff {
            from_leg: 2,
            step: 40,
            reason: "the prompt reached 71% of the room".into(),
            emergency: false,
            narrative: "Next: fix lex.rs.".into(),
            narrative_error: None,
            usage: None,
            ledger: Ledger {
                plan: vec![PlanStep { title: "lexer".into(), status: StepStatus::InProgress }],
                ..Ledger::default()
            },
        };
        let text = handoff_brief(&spec, &handoff, 0);
        assert!(text.starts_with("# Task\n\nFix the parser\n"));
        assert!(text.contains("a handoff from leg 2 at step 40 (the prompt reached 71% of the room)"));
        assert!(text.contains(
            "## From the leaving leg\n\nNext: fix lex.rs.\n\n# Ledger\n\n## Plan\n\n1. [in_progress] lexer\n"
        ));
        assert!(!text.contains("without changing a file"));
        assert!(handoff_brief(&spec, &handoff, 1).contains("without changing a file"));
    }

    #[test]
    fn a_failed_summary_falls_back_to_the_legs_last_words() {
        let mut messages = transcript(1, "out");
        messages.push(Message { role: Role::Assistant, parts: vec![Part::Text { text: "Tests pass now.".into() }] });
        assert!(fallback_narrative(&messages).ends_with("Tests pass now."));
        assert!(fallback_narrative(&transcript(1, "out")).contains("no narrative"));
    }
}
