//! What a build leg is told: the system prompt (a product asset: exact about the tools, the checks,
//! the scope and finishing), the repository's own instructions, and the brief that opens the leg.

mod captain;
mod context;
mod grants;
mod review;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use baton_core::{Budget, Credits, LegRole, TaskSpec};

pub use context::{
    ASK_HUMAN, ContextBudget, RECALL, REQUEST_CREDENTIAL, ask_human_args, ask_human_spec, elide, fallback_narrative,
    fit_output, handoff_brief, handoff_request, recall, recall_spec, request_credential_args, request_credential_spec,
    shorten,
};

pub use captain::{SUBMIT_PLAN, captain_brief, captain_system, parse_plan, submit_plan_spec};
pub use grants::{may_call, may_call_served, tools_of};
pub use review::{
    REPORT_FINDINGS, RESOLVE_FINDING, findings_brief, parse_findings, parse_resolution, report_findings_spec,
    resolve_finding_spec, review_brief, review_system,
};

const BUILD_PROMPT: &str = include_str!("build.md");

/// Instruction files are read up to this many bytes each, so a huge one cannot crowd out the task.
pub const MAX_INSTRUCTIONS: u64 = 32 * 1024;

/// The repository's instructions for a role: the `AGENTS.md` nearest to the scope (or the root
/// one), then the role's own file (`.baton/BUILD.md`, `.baton/REVIEW.md`, `.baton/CAPTAIN.md`),
/// each as written. `read` gives a file's text by its path in the worktree, at most
/// [`MAX_INSTRUCTIONS`] bytes of it, or `None`; the caller owns the reading, which must not trust
/// the worktree (its files are the agent's).
pub fn instructions(spec: &TaskSpec, role: LegRole, read: impl Fn(&Path) -> Option<String>) -> String {
    let mut found = Vec::new();
    // From the scope's directory up (a scope that names a file has no AGENTS.md beneath it).
    let mut dir = spec.scope.first().map(PathBuf::from).unwrap_or_default();
    loop {
        let candidate = dir.join("AGENTS.md");
        if let Some(text) = read(&candidate) {
            found.push((candidate.display().to_string(), text));
            break;
        }
        if !dir.pop() {
            break;
        }
    }
    let role_file = format!(".baton/{}.md", role.as_str().to_uppercase());
    if let Some(text) = read(Path::new(&role_file)) {
        found.push((role_file, text));
    }
    let mut out = String::new();
    for (name, text) in found {
        let _ = write!(out, "\n\n## Repository instructions ({name})\n\n{}", text.trim());
    }
    out
}

/// The build role's system prompt, with the repository's instructions appended.
pub fn system_prompt(instructions: &str) -> String {
    format!("{}{instructions}", BUILD_PROMPT.trim_end())
}

/// Share of a limit, in percent, past which the agent is told what remains.
const LOW_PERCENT: u64 = 80;

/// What the agent is told when most of a limit is used: each limit past 80%, with what remains.
/// `spent` includes what is held; `elapsed_ms` counts from the task's start.
pub fn budget_note(budget: &Budget, spent: Credits, steps: u64, elapsed_ms: u64) -> Option<String> {
    let mut used = Vec::new();
    let low = |used: u64, limit: u64| limit > 0 && used.saturating_mul(100) >= limit.saturating_mul(LOW_PERCENT);
    if let Some(limit) = budget.credits
        && low(spent.micros().max(0) as u64, limit.micros().max(0) as u64)
    {
        used.push(format!("{spent} of {limit} credits"));
    }
    if let Some(limit) = budget.steps
        && low(steps, limit)
    {
        used.push(format!("{steps} of {limit} steps"));
    }
    if let Some(limit) = budget.wall_clock_secs
        && low(elapsed_ms, limit.saturating_mul(1000))
    {
        used.push(format!("{} of {} minutes", elapsed_ms / 60_000, limit.div_ceil(60)));
    }
    (!used.is_empty()).then(|| {
        format!(
            "baton: this task's budget is running low: {} used. Finish the step you are on, leave the work in a state that passes the checks, and call `finish` as soon as it does; at a limit the task pauses with its work committed.",
            used.join("; ")
        )
    })
}

/// What the brief says of the repository's declared environment: what baton runs on the clean
/// machine before the checks, and the named commands.
pub fn environment_brief(environment: &baton_core::Environment) -> String {
    let mut out = String::new();
    if !environment.after_checkout.is_empty() {
        out.push_str("\n# Environment\n\nThe checks run on a clean machine: a fresh checkout of your committed work, where baton first runs (from `baton.toml`, as the task's base commit has it):\n");
        for command in &environment.after_checkout {
            let _ = writeln!(out, "- `{command}`");
        }
    }
    if !environment.commands.is_empty() {
        out.push_str("\n# Commands\n\nThe repository names these commands (`baton.toml`):\n");
        for (name, command) in &environment.commands {
            let _ = writeln!(out, "- {name}: `{command}`");
        }
    }
    out
}

/// What the brief says of merges that conflicted (`path (merging what)`): the files hold git's
/// conflict markers, committed, and resolving them comes first.
pub fn conflicts_brief(conflicts: &[String]) -> String {
    if conflicts.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n# Merge conflicts\n\nbaton merged work done on other branches into this one, and these files conflicted. They hold git's conflict markers (`<<<<<<<`, `=======`, `>>>>>>>`), committed as they are. First resolve each one, keeping what both sides meant, with no marker left; then go on:\n",
    );
    for conflict in conflicts {
        let _ = writeln!(out, "- `{conflict}`");
    }
    out
}

/// What the user added after the request, for a leg that did not see it arrive (empty when
/// nothing was added).
pub fn messages_brief(messages: &[String]) -> String {
    if messages.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n# Follow-ups from the user\n\nSent while the task ran, oldest first; they add to the request:\n",
    );
    for message in messages {
        let _ = write!(out, "\n---\n{}\n", message.trim());
    }
    out
}

/// The message that opens a leg for follow-ups that came while the work was being verified: the
/// request, what the agent reported, and that the follow-ups come next.
pub fn follow_up_brief(spec: &TaskSpec, summary: &str) -> String {
    format!(
        "{}\n# Follow-up\n\nYour work passed the checks and is committed; you reported:\n\n{}\n\nThe user has since sent a follow-up, given to you next. Address it, then call `finish` again.\n",
        brief(spec),
        summary.trim()
    )
}

/// The message that opens the first leg: the request, and what will decide that it is done.
pub fn brief(spec: &TaskSpec) -> String {
    let mut out = String::new();
    if let Some(earlier) = &spec.continues {
        let _ = write!(
            out,
            "# Earlier work\n\nYour branch already holds the work of an earlier run on this request:\n\n{}\n\nThat run ended ({}). Its commits are in /workspace. The task below is the user's follow-up to it.\n\n",
            earlier.request.trim(),
            earlier.ended.trim()
        );
    }
    let _ = write!(out, "# Task\n\n{}\n", spec.request.trim());
    if spec.checks.is_empty() {
        out.push_str("\nNo acceptance checks are configured: finishing ends the task as claimed, unverified.\n");
    } else {
        out.push_str("\n# Acceptance checks\n\nWhen you call `finish`, baton runs these in /workspace; the task is done only when all pass:\n");
        for check in &spec.checks {
            let _ = writeln!(out, "- `{}` (timeout {} s)", check.command, check.timeout_secs);
        }
    }
    if !spec.scope.is_empty() {
        let _ = write!(out, "\n# Scope\n\nChange files under: {}.\n", spec.scope.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {

    use baton_core::{Budget, CheckSpec};

    use super::*;

    fn spec(scope: Vec<String>) -> TaskSpec {
        TaskSpec {
            checks: vec![CheckSpec { name: "test".into(), command: "pytest -q".into(), timeout_secs: 600 }],
            scope,
            ..TaskSpec::new("Fix the parser", std::path::PathBuf::from("/repo"))
        }
    }

    #[test]
    fn a_continuing_task_is_told_what_the_earlier_run_asked_and_how_it_ended() {
        let mut continuing = spec(vec![]);
        continuing.request = "Also handle tabs.".into();
        continuing.continues = Some(baton_core::Continued {
            task: "t-earlier".into(),
            request: "Fix the parser".into(),
            ended: "verified: parser fixed".into(),
        });
        let text = brief(&continuing);
        let (earlier, task) = text.split_once("# Task").unwrap();
        assert!(earlier.contains("Fix the parser") && earlier.contains("(verified: parser fixed)"), "{text}");
        assert!(task.starts_with("\n\nAlso handle tabs.") && task.contains("`pytest -q`"), "{text}");
        assert!(!brief(&spec(vec![])).contains("Earlier work"));
    }

    #[test]
    fn the_nearest_agents_md_and_the_build_file_are_used() {
        let files =
            [("AGENTS.md", "root rules"), ("pkg/AGENTS.md", "package rules"), (".baton/BUILD.md", "build rules")];
        let read =
            |path: &Path| files.iter().find(|(name, _)| Path::new(name) == path).map(|(_, text)| text.to_string());
        let nested = instructions(&spec(vec!["pkg/sub".into()]), LegRole::Build, read);
        assert!(nested.contains("(pkg/AGENTS.md)\n\npackage rules") && !nested.contains("root rules"), "{nested}");
        assert!(nested.ends_with("(.baton/BUILD.md)\n\nbuild rules"), "{nested}");
        let top = instructions(&spec(vec![]), LegRole::Build, read);
        assert!(top.contains("(AGENTS.md)\n\nroot rules"), "{top}");
        assert!(system_prompt(&top).ends_with("build rules"));
        // A scope that names a file finds the AGENTS.md of its directory.
        let file = instructions(&spec(vec!["pkg/parser.py".into()]), LegRole::Build, read);
        assert!(file.contains("package rules"), "{file}");
    }

    #[test]
    fn the_agent_hears_of_each_limit_past_four_fifths() {
        let budget = Budget { credits: Some("1".parse().unwrap()), wall_clock_secs: Some(3600), steps: Some(50) };
        assert_eq!(budget_note(&budget, "0.79".parse().unwrap(), 39, 2_000_000), None);
        let note = budget_note(&budget, "0.8".parse().unwrap(), 45, 3_000_000).unwrap();
        assert!(
            note.starts_with(
                "baton: this task's budget is running low: 0.80 of 1.00 credits; 45 of 50 steps; 50 of 60 minutes used."
            ),
            "{note}"
        );
        assert_eq!(budget_note(&Budget::default(), "100".parse().unwrap(), 1000, 99_999), None);
    }

    #[test]
    fn the_brief_names_the_checks_and_the_scope() {
        let text = brief(&spec(vec!["src".into()]));
        assert!(text.starts_with("# Task\n\nFix the parser\n"));
        assert!(text.contains("- `pytest -q` (timeout 600 s)"));
        assert!(text.ends_with("Change files under: src.\n"));
    }
}
