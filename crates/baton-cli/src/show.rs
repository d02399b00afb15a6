//! How tasks and events look on a terminal and in `--json`.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use baton_core::{
    Budget, Charge, Credits, Entry, Event, Handoff, Ledger, Position, Recorded, TaskState, Timestamp, total,
};
use baton_store::TaskSummary;
use serde::Serialize;

pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock(); // JSON escapes control characters itself
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Standard output for text meant for a terminal. What it prints comes from tasks — the model's
/// words, commands' output, file names and contents — so control characters (C0 but newline and
/// tab, DEL, C1) are shown as escapes (`\u{1b}`) instead of acted on: an OSC 52 sequence would
/// set the user's clipboard, others retitle the window or rewrite what was printed before.
pub fn terminal() -> Terminal<std::io::StdoutLock<'static>> {
    Terminal(std::io::stdout().lock())
}

pub struct Terminal<W>(W);

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// `write!` hands over whole `str` pieces, so a character is never split between calls.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(buf);
        if !text.chars().any(is_control) {
            return self.0.write_all(buf);
        }
        let shown: String =
            text.chars().map(|c| if is_control(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect();
        self.0.write_all(shown.as_bytes())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn is_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

fn time(at: Timestamp) -> String {
    let when = UNIX_EPOCH + Duration::from_millis(at.as_millis().max(0) as u64);
    humantime::format_rfc3339_seconds(when).to_string()
}

/// The first line of a text, cut to `max` characters with an ellipsis.
pub fn headline(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max - 1).collect();
    format!("{cut}…")
}

pub fn summaries(tasks: &[TaskSummary]) -> anyhow::Result<()> {
    let mut out = terminal();
    if tasks.is_empty() {
        writeln!(out, "no tasks")?;
        return Ok(());
    }
    writeln!(out, "{:<12}  {:<26}  {:<20}  REQUEST", "ID", "STATUS", "UPDATED")?;
    for task in tasks {
        let status = match task.stop_reason {
            Some(reason) if task.status.as_str() != reason.as_str() => format!("{} ({reason})", task.status),
            _ => task.status.to_string(),
        };
        writeln!(
            out,
            "{:<12}  {:<26}  {:<20}  {}",
            task.id,
            status,
            time(task.updated_at),
            headline(&task.request, 60)
        )?;
    }
    Ok(())
}

pub fn state(state: &TaskState, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(state);
    }
    let spec = &state.spec;
    let status = match &state.stop {
        Some(stop) if stop.detail.is_empty() => format!("{} ({})", state.status(), stop.reason),
        Some(stop) => format!("{} ({}: {})", state.status(), stop.reason, stop.detail),
        None => state.status().to_string(),
    };
    let checks = if spec.checks.is_empty() {
        "none".to_owned()
    } else {
        spec.checks
            .iter()
            .map(|c| format!("`{}` (timeout {}s)", c.command, c.timeout_secs))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scope = if spec.scope.is_empty() { "anywhere".to_owned() } else { spec.scope.join(", ") };
    let budget = limits(&spec.budget);

    let mut out = terminal();
    let rows = [
        ("task", state.id.to_string()),
        ("status", status),
        ("request", headline(&spec.request, 200)),
        ("repo", spec.repo.to_string()),
        ("base", format!("{} ({})", spec.base_ref, &state.base_commit)),
        ("branch", state.branch.clone()),
        ("checks", checks),
        ("scope", scope),
        ("budget", budget),
        ("legs", format!("{} ({} handoffs, {} steps)", state.work.leg, state.work.handoffs, state.work.steps)),
        (
            "plan",
            format!(
                "{} of {} steps done",
                state.work.plan.iter().filter(|s| s.status == baton_core::StepStatus::Done).count(),
                state.work.plan.len()
            ),
        ),
        ("spent", spending(state)),
        ("created", time(state.created_at)),
        ("updated", time(state.updated_at)),
        ("events", state.next_seq.to_string()),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<8} {value}")?;
    }
    if let (Some(commit), Some(evidence)) = (&state.work.last_commit, &state.work.last_evidence) {
        writeln!(out, "commit   {} {evidence}", &commit[..commit.len().min(12)])?;
    }
    if let Some(remote) = &spec.push {
        let pushed = state.work.pushed.as_deref().map_or("nothing yet", |commit| &commit[..commit.len().min(12)]);
        writeln!(out, "pushed   {pushed} to {remote}")?;
    }
    if let Some(pull) = &state.work.pull_request {
        let draft = if pull.draft { ", draft" } else { "" };
        writeln!(out, "pr       #{} {} ({}{draft})", pull.number, pull.url, pull.state)?;
    }
    if let Some(hash) = &state.work.environment {
        let snapshot = state
            .work
            .snapshot
            .as_deref()
            .map_or(String::new(), |key| format!(" (snapshot {})", &key[..key.len().min(12)]));
        writeln!(out, "environment {}{snapshot}", &hash[..hash.len().min(12)])?;
    }
    if let Some(parent) = &state.spec.parent {
        writeln!(out, "parent   {parent}")?;
    }
    if let Some(earlier) = &state.spec.continues {
        writeln!(out, "continues {} (a follow-up to it)", earlier.task)?;
    }
    if let Some(later) = &state.work.continued_by {
        writeln!(out, "continued by {later}")?;
    }
    for subtask in &state.work.subtasks {
        let status = match (&subtask.task, &subtask.outcome) {
            (_, Some(outcome)) if outcome.verified => "verified".to_owned(),
            (_, Some(outcome)) => format!("stopped: {}", outcome.detail),
            (Some(_), None) => "running".to_owned(),
            (None, None) => "not started".to_owned(),
        };
        let task = subtask.task.as_deref().unwrap_or("-");
        let after = if subtask.plan.depends_on.is_empty() {
            String::new()
        } else {
            format!(" after {}", subtask.plan.depends_on.join(", "))
        };
        let size = subtask.outcome.as_ref().map_or(String::new(), |outcome| {
            let diff = outcome
                .diff
                .map_or(String::new(), |d| format!("{} files +{} -{}, ", d.files, d.insertions, d.deletions));
            format!(" ({diff}{} open findings, {} credits)", outcome.open_findings, outcome.spent)
        });
        writeln!(
            out,
            "subtask  {} {task}{after}: {} — {status}{size}",
            subtask.plan.key,
            headline(&subtask.plan.request, 60)
        )?;
    }
    if let Some(picked) = &state.work.picked {
        writeln!(out, "picked   {picked}")?;
    }
    for finding in &state.work.findings {
        let commit = finding.commit.as_deref().map_or(String::new(), |c| format!(" in {}", &c[..c.len().min(12)]));
        writeln!(
            out,
            "finding {} {:?} {:?}{commit}: {} ({}:{}-{}){}",
            finding.id,
            finding.severity,
            finding.status,
            finding.title,
            finding.file,
            finding.lines.0,
            finding.lines.1,
            if finding.note.is_empty() { String::new() } else { format!(" — {}", finding.note) }
        )?;
    }
    for (decision, answer) in &state.work.decisions {
        let status = match answer {
            None => format!("WAITING — answer with `baton decide {} --answer TEXT` (add --deny to refuse)", state.id),
            Some(answer) if answer.approved => format!("answered: {}", answer.answer),
            Some(answer) => format!("denied: {}", answer.answer),
        };
        writeln!(out, "decision {}: {} ({}) — {status}", decision.id, decision.question, decision.why)?;
    }
    if state.work.decisions.is_empty()
        && let Some(question) = &state.question
    {
        writeln!(out, "question {question}")?;
    }
    Ok(())
}

/// A template's definition, a field a line.
pub fn template(template: &baton_core::Template) -> anyhow::Result<()> {
    let mut out = terminal();
    let roles: Vec<String> = template.role_models.iter().map(|(role, model)| format!("{role}: {model}")).collect();
    let rows = [
        ("template", template.name.clone()),
        ("request", template.request.clone()),
        ("repo", template.repo.to_string()),
        ("base", template.base.clone()),
        ("checks", template.checks.join("; ")),
        ("scope", template.scope.join(", ")),
        ("protect", template.protect.join(", ")),
        ("limits", limits(&template.budget)),
        ("model", template.model.clone().unwrap_or_else(|| "the server's".into())),
        ("roles", roles.join(", ")),
        ("review", if template.review { "yes" } else { "no" }.into()),
        ("plan", if template.plan { "yes" } else { "no" }.into()),
        ("attempts", format!("{} ({:?} picks)", template.attempts, template.pick)),
        ("priority", template.priority.to_string()),
    ];
    for (name, value) in rows.iter().filter(|(_, value)| !value.is_empty()) {
        writeln!(out, "{name:<9} {value}")?;
    }
    Ok(())
}

/// A task's limits in words.
pub fn limits(budget: &Budget) -> String {
    let limits: Vec<String> = [
        budget.credits.map(|c| format!("{c} credits")),
        budget.wall_clock_secs.map(|s| format!("{} window", humantime::format_duration(Duration::from_secs(s)))),
        budget.steps.map(|s| format!("{s} steps")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if limits.is_empty() { "unlimited".to_owned() } else { limits.join(", ") }
}

fn charges(charges: &[Charge]) -> String {
    charges.iter().map(|c| format!("{} {}", c.kind.as_str(), c.amount)).collect::<Vec<_>>().join(", ")
}

pub fn event(recorded: &Recorded, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(recorded);
    }
    let detail = match &recorded.event {
        Event::TaskCreated { spec, branch, .. } => format!("{} → {branch}", headline(&spec.request, 60)),
        Event::Started | Event::VerificationStarted | Event::ReviewStarted => String::new(),
        Event::Resumed { detail } | Event::Cancelled { detail } => detail.clone(),
        Event::WaitingForHuman { question } => question.clone(),
        Event::Paused { reason, detail } | Event::Finished { reason, detail } => format!("{reason}: {detail}"),
        Event::LegStarted { leg, model, role, .. } => format!("leg {leg}: {role} with {model}"),
        Event::ModelCallStarted { step, prompt: None } => format!("step {step}"),
        Event::ModelCallStarted { step, prompt: Some(prompt) } => format!(
            "step {step}: prompt ~{} tokens, {}% of the context",
            prompt.tokens,
            prompt.tokens * 100 / prompt.room.max(1)
        ),
        Event::ModelCallFinished { step, response } => {
            let calls: Vec<&str> = response.tool_calls().map(|(_, name, _)| name).collect();
            let usage = response.usage;
            format!(
                "step {step}: {} | {} in, {} cached, {} out {}",
                if calls.is_empty() { "no tool call".to_owned() } else { calls.join(", ") },
                usage.input,
                usage.cache_read,
                usage.output,
                headline(&response.text(), 60)
            )
        }
        Event::ModelCallFailed { step, error } => format!("step {step}: {error}"),
        Event::ToolCallStarted { name, arguments, .. } => format!("{name} {arguments}"),
        Event::ToolCallFinished { output, is_error, .. } => {
            format!("{} {}", if *is_error { "error:" } else { "ok:" }, headline(output, 90))
        }
        Event::Feedback { text } | Event::BudgetLow { text } => text.clone(),
        Event::MessageReceived { number, text } => format!("follow-up {number} from the user: {text}"),
        Event::Nudged { reason, .. } => reason.clone(),
        Event::ProtectedRestored { paths } => format!("protected files changed and restored: {}", paths.join(", ")),
        Event::CheckFinished { name, exit_code, passed, duration_ms, .. } => format!(
            "`{name}` {} (exit code {exit_code}, {:.1} s)",
            if *passed { "passed" } else { "failed" },
            *duration_ms as f64 / 1000.0
        ),
        Event::Checkpointed { commit, evidence } => format!("{} {evidence}", &commit[..commit.len().min(12)]),
        Event::PullRequestPublished { pull_request, answered, reply_error } => {
            let commit = &pull_request.commit[..pull_request.commit.len().min(12)];
            let replied = match (answered.len(), reply_error) {
                (_, Some(error)) => format!("; the reply to its follow-ups failed: {error}"),
                (0, None) => String::new(),
                (count, None) => format!("; {count} follow-ups answered there"),
            };
            format!("pull request #{} ({}) shows {commit}{replied}", pull_request.number, pull_request.url)
        }
        Event::PullRequestFailed { commit, error } => {
            format!("the pull request could not show {}: {error}", &commit[..commit.len().min(12)])
        }
        Event::Pushed { commit, remote, error } => match error {
            None => format!("{} pushed to {remote}", &commit[..commit.len().min(12)]),
            Some(error) => format!("{} not pushed to {remote}: {error}", &commit[..commit.len().min(12)]),
        },
        Event::EnvironmentPrepared { detail, .. } => detail.clone(),
        Event::ConnectionRefused { host, port, phase } => {
            format!(
                "the network policy refused {host}:{port} ({})",
                serde_json::to_value(phase)?.as_str().unwrap_or("")
            )
        }
        Event::HandoffStarted { reason, emergency, .. } => {
            format!("{}{reason}", if *emergency { "emergency: " } else { "" })
        }
        Event::Reserved { key, charges: held } => format!("{key}: {} held ({})", total(held), charges(held)),
        Event::Settled { key, charges: paid } if paid.is_empty() => format!("{key}: released, nothing charged"),
        Event::Settled { key, charges: paid } => format!("{key}: {} charged ({})", total(paid), charges(paid)),
        Event::Overran { key, held, charged } => {
            format!("{key}: {charged} charged, more than the {held} held; the task pauses before its next action")
        }
        Event::ModelAttemptBilled { step, attempt, error, usage: Some(usage) } => format!(
            "step {step} attempt {attempt} failed ({error}); charged its reported usage: {} in, {} cache read, {} cache write, {} out",
            usage.input, usage.cache_read, usage.cache_write, usage.output
        ),
        Event::ModelAttemptBilled { step, attempt, error, usage: None } => {
            format!(
                "step {step} attempt {attempt} failed ({error}) after the provider took it; charged at the call's hold"
            )
        }
        Event::BudgetChanged { budget } => format!("limits now {}", limits(budget)),
        Event::PlanSubmitted { subtasks } => {
            format!(
                "plan: {}",
                subtasks
                    .iter()
                    .map(|s| format!("{} {}", s.key, headline(&s.request, 30)))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
        Event::SubtaskCreated { key, task } => format!("{key} → task {task}"),
        Event::AttemptPicked { key, reason } => format!("{key} picked: {reason}"),
        Event::Continued { task } => format!("continued by task {task}, with a follow-up"),
        Event::SubtaskEnded { key, outcome } => {
            format!("{key}: {}", if outcome.verified { "verified".to_owned() } else { outcome.detail.clone() })
        }
        Event::FindingsReported { round, findings, .. } if findings.is_empty() => {
            format!("review round {round}: clean")
        }
        Event::FindingsReported { round, findings, .. } => {
            let listed: Vec<String> =
                findings.iter().map(|f| format!("{} {:?} {}", f.id, f.severity, f.title)).collect();
            format!("review round {round}: {}", listed.join("; "))
        }
        Event::FindingUpdated { id, status, note, by } => format!("{id} {status:?} by {by}: {note}"),
        Event::DecisionRequested { decision } => format!("{}: {} ({})", decision.id, decision.question, decision.why),
        Event::DecisionMade { id, answer } => {
            format!("{id}: {} {}", if answer.approved { "approved" } else { "denied" }, answer.answer)
        }
        Event::HandoffWritten { handoff } => format!(
            "leg {} handed off at step {}: plan {}/{} done, {} files changed",
            handoff.from_leg,
            handoff.step,
            handoff.ledger.steps_done(),
            handoff.ledger.plan.len(),
            handoff.ledger.files_changed.len()
        ),
    };
    let mut out = terminal();
    writeln!(
        out,
        "{:>5}  {}  {:<20}  {}",
        recorded.seq,
        time(recorded.at),
        recorded.event.kind(),
        headline(&detail, 100)
    )?;
    out.flush()?;
    Ok(())
}

/// What the ledger gained since the one before it, so handoffs can be compared.
fn progress(before: Option<&Ledger>, now: &Ledger) -> String {
    let empty = Ledger::default();
    let before = before.unwrap_or(&empty);
    let new_files: Vec<&str> = now
        .files_changed
        .iter()
        .filter(|file| !before.files_changed.iter().any(|b| b.path == file.path))
        .map(|file| file.path.as_str())
        .collect();
    let checks = |ledger: &Ledger| {
        let passed = ledger.checks.iter().filter(|c| c.passed).count();
        if ledger.checks.is_empty() { "not run".to_owned() } else { format!("{passed}/{} passed", ledger.checks.len()) }
    };
    format!(
        "plan {}/{} → {}/{} done; files changed {} → {}{}; files read {} → {}; checks {} → {}",
        before.steps_done(),
        before.plan.len(),
        now.steps_done(),
        now.plan.len(),
        before.files_changed.len(),
        now.files_changed.len(),
        if new_files.is_empty() { String::new() } else { format!(" (new: {})", new_files.join(", ")) },
        before.files_read.len(),
        now.files_read.len(),
        checks(before),
        checks(now),
    )
}

pub fn handoffs(handoffs: &[Handoff]) -> anyhow::Result<()> {
    let mut out = terminal();
    if handoffs.is_empty() {
        writeln!(out, "no handoffs: the task has run in one leg")?;
        return Ok(());
    }
    let mut before = None;
    for handoff in handoffs {
        let kind = if handoff.emergency { "emergency handoff" } else { "handoff" };
        writeln!(
            out,
            "=== leg {} → {} · {kind} at step {} · {}",
            handoff.from_leg,
            handoff.from_leg + 1,
            handoff.step,
            handoff.reason
        )?;
        writeln!(out, "since the previous handoff: {}", progress(before, &handoff.ledger))?;
        if let Some(usage) = handoff.usage {
            writeln!(out, "summary call: {} in, {} cached, {} out", usage.input, usage.cache_read, usage.output)?;
        }
        if let Some(error) = &handoff.narrative_error {
            writeln!(out, "no narrative: {error}")?;
        }
        writeln!(out, "\n{}\n\n{}", handoff.narrative.trim(), handoff.ledger.render())?;
        before = Some(&handoff.ledger);
    }
    Ok(())
}

/// What a task has spent and holds, how fast, and where that pace leads.
fn spending(state: &TaskState) -> String {
    let money = &state.money;
    let mut out = format!("{} credits", money.spent);
    if !money.held.is_empty() {
        out.push_str(&format!(" (+{} held)", money.held_total()));
    }
    let steps = u64::from(state.work.steps);
    if steps == 0 || money.spent == Credits::ZERO {
        return out;
    }
    let per_step = money.spent.micros() / steps as i64;
    out.push_str(&format!("; {} per step", Credits::from_micros(per_step)));
    if let (Some(last), Some(started)) = (money.last_charge_at, state.work.started_at) {
        let minutes = (last.as_millis() - started.as_millis()) as f64 / 60_000.0;
        if minutes > 0.0 {
            let per_minute = (money.spent.micros() as f64 / minutes) as i64;
            out.push_str(&format!(", {} per minute", Credits::from_micros(per_minute)));
        }
    }
    // To finish: at the plan's pace when there is a plan, else up to the step limit.
    let plan = &state.work.plan;
    let done = plan.iter().filter(|s| s.status == baton_core::StepStatus::Done).count() as i64;
    if done > 0 && (done as usize) < plan.len() {
        let left = money.spent.micros() * (plan.len() as i64 - done) / done;
        out.push_str(&format!(
            "; about {} more to finish the plan ({done} of {} steps done)",
            Credits::from_micros(left),
            plan.len()
        ));
    } else if let Some(limit) = state.spec.budget.steps.filter(|limit| *limit > steps) {
        let left = per_step * (limit - steps) as i64;
        out.push_str(&format!(
            "; at most about {} more in the {} steps left",
            Credits::from_micros(left),
            limit - steps
        ));
    }
    out
}

pub fn position(position: &Position) -> anyhow::Result<()> {
    let policy = &position.policy;
    let mut out = terminal();
    let reload = match policy.auto_reload {
        Some(r) => format!(
            "to {} when below {}, at most {} a month ({} this month)",
            r.target, r.threshold, r.max_per_month, position.reloads_this_month
        ),
        None => "off".to_owned(),
    };
    let rows = [
        ("balance", format!("{} credits", position.balance)),
        ("held", format!("{} by actions in flight", position.reserved)),
        ("available", format!("{}", position.available())),
        ("month", format!("{}: {} spent", position.month, position.spent_this_month)),
        ("cap", policy.monthly_cap.map_or("none".to_owned(), |cap| format!("{cap} a month"))),
        ("reload", reload),
        (
            "overage",
            if policy.overage { "on: work goes on below zero" } else { "off: work stops when the credits are spent" }
                .to_owned(),
        ),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<9} {value}")?;
    }
    Ok(())
}

pub fn entries(entries: &[Entry]) -> anyhow::Result<()> {
    let mut out = terminal();
    if entries.is_empty() {
        writeln!(out, "no entries")?;
        return Ok(());
    }
    for entry in entries {
        let whom = match (&entry.task, &entry.key) {
            (Some(task), Some(key)) => format!("{task} {key}"),
            (Some(task), None) => task.clone(),
            _ => String::new(),
        };
        writeln!(
            out,
            "{}  {:<22} {:>14}  {whom} {}",
            time(entry.at),
            entry.kind.to_string(),
            entry.amount.to_string(),
            entry.note
        )?;
    }
    Ok(())
}

pub fn tokens(tokens: &[baton_core::Token]) -> anyhow::Result<()> {
    let mut out = terminal();
    if tokens.is_empty() {
        writeln!(out, "no tokens")?;
        return Ok(());
    }
    writeln!(out, "{:<24}  {:<6}  {:<20}  REVOKED", "NAME", "SCOPE", "CREATED")?;
    for token in tokens {
        let revoked = token.revoked_at.map_or_else(|| "-".to_owned(), time);
        writeln!(out, "{:<24}  {:<6}  {:<20}  {revoked}", token.name, token.scope, time(token.created_at))?;
    }
    Ok(())
}
