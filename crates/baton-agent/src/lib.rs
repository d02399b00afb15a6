//! What a build leg is told: the system prompt (a product asset: exact about the tools, the checks,
//! the scope and finishing), the repository's own instructions, and the brief that opens the leg.

mod context;

use std::fmt::Write as _;
use std::path::Path;

use baton_core::TaskSpec;

pub use context::{
    ContextBudget, RECALL, elide, fallback_narrative, fit_output, handoff_brief, handoff_request, recall, recall_spec,
    shorten,
};

const BUILD_PROMPT: &str = include_str!("build.md");

/// Instructions files are cut to this many bytes each, so a huge one cannot crowd out the task.
const MAX_INSTRUCTIONS: usize = 32 * 1024;

/// The repository's instructions for the build role: the `AGENTS.md` nearest to the scope (or the
/// root one), then `.baton/BUILD.md`, each as written.
pub fn instructions(worktree: &Path, spec: &TaskSpec) -> String {
    let mut found = Vec::new();
    let start = spec.scope.first().map(|scope| worktree.join(scope)).unwrap_or_else(|| worktree.to_owned());
    let mut dir =
        if start.is_dir() { start } else { start.parent().map(Path::to_owned).unwrap_or_else(|| worktree.to_owned()) };
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("AGENTS.md")) {
            let shown = dir.strip_prefix(worktree).map(|p| p.join("AGENTS.md")).unwrap_or_default();
            found.push((shown.display().to_string(), text));
            break;
        }
        if dir == worktree || !dir.starts_with(worktree) {
            break;
        }
        match dir.parent() {
            Some(parent) => dir = parent.to_owned(),
            None => break,
        }
    }
    if let Ok(text) = std::fs::read_to_string(worktree.join(".baton/BUILD.md")) {
        found.push((".baton/BUILD.md".to_owned(), text));
    }
    let mut out = String::new();
    for (name, text) in found {
        let cut: String = text.chars().take(MAX_INSTRUCTIONS).collect();
        let _ = write!(out, "\n\n## Repository instructions ({name})\n\n{}", cut.trim());
    }
    out
}

/// The build role's system prompt, with the repository's instructions appended.
pub fn system_prompt(instructions: &str) -> String {
    format!("{}{instructions}", BUILD_PROMPT.trim_end())
}

/// The message that opens the first leg: the request, and what will decide that it is done.
pub fn brief(spec: &TaskSpec) -> String {
    let mut out = format!("# Task\n\n{}\n", spec.request.trim());
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
    use std::path::PathBuf;

    use baton_core::{Budget, CheckSpec};

    use super::*;

    fn spec(scope: Vec<String>) -> TaskSpec {
        TaskSpec {
            request: "Fix the parser".into(),
            repo: PathBuf::from("/repo"),
            base_ref: "HEAD".into(),
            checks: vec![CheckSpec { name: "test".into(), command: "pytest -q".into(), timeout_secs: 600 }],
            scope,
            protect: vec![],
            budget: Budget::default(),
            model: None,
            context_window: None,
        }
    }

    #[test]
    fn the_nearest_agents_md_and_the_build_file_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg/sub")).unwrap();
        std::fs::create_dir_all(root.join(".baton")).unwrap();
        std::fs::write(root.join("AGENTS.md"), "root rules").unwrap();
        std::fs::write(root.join("pkg/AGENTS.md"), "package rules").unwrap();
        std::fs::write(root.join(".baton/BUILD.md"), "build rules").unwrap();
        let nested = instructions(root, &spec(vec!["pkg/sub".into()]));
        assert!(nested.contains("(pkg/AGENTS.md)\n\npackage rules") && !nested.contains("root rules"), "{nested}");
        assert!(nested.ends_with("(.baton/BUILD.md)\n\nbuild rules"), "{nested}");
        let top = instructions(root, &spec(vec![]));
        assert!(top.contains("(AGENTS.md)\n\nroot rules"), "{top}");
        assert!(system_prompt(&top).ends_with("build rules"));
    }

    #[test]
    fn the_brief_names_the_checks_and_the_scope() {
        let text = brief(&spec(vec!["src".into()]));
        assert!(text.starts_with("# Task\n\nFix the parser\n"));
        assert!(text.contains("- `pytest -q` (timeout 600 s)"));
        assert!(text.ends_with("Change files under: src.\n"));
    }
}
