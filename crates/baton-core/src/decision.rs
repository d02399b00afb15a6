//! Decision points: where a task stops and waits for a human, spending nothing, until someone
//! answers. The agent asks (`ask_human`), or a policy asks on its behalf before a destructive
//! command runs.

use serde::{Deserialize, Serialize};

use crate::money::Credits;

/// A question put to a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `d1`, `d2`, … in the order the task asked.
    pub id: String,
    pub kind: DecisionKind,
    pub question: String,
    /// Suggested answers; any text is accepted.
    pub options: Vec<String>,
    /// Why the question needs a human.
    pub why: String,
    /// The tool call that waits for the answer.
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DecisionKind {
    /// The agent asked with `ask_human`.
    Ask,
    /// A command matched a rule of the approval policy and waits for approval.
    Destructive { rule: String, command: String },
    /// The captain's plan waits for approval before any subtask starts.
    PlanApproval,
    /// The agent asks for a credential by name: approved, the value of that variable in baton's
    /// environment is given to its commands (never to the model or the journal).
    Credential { name: String },
    /// The task's credit limit would be crossed: a human may raise it (the answer is the new limit).
    BudgetOverrun { limit: Credits, spent: Credits, needed: Credits },
    /// A task's attempts have ended and a human picks the one that becomes its result; the
    /// options are the verified attempts, `recommended` the one baton's rule would pick.
    Pick { recommended: String },
}

impl DecisionKind {
    /// Its name, as it is serialized.
    pub fn name(&self) -> &'static str {
        match self {
            DecisionKind::Ask => "ask",
            DecisionKind::Destructive { .. } => "destructive",
            DecisionKind::PlanApproval => "plan_approval",
            DecisionKind::Credential { .. } => "credential",
            DecisionKind::BudgetOverrun { .. } => "budget_overrun",
            DecisionKind::Pick { .. } => "pick",
        }
    }
}

/// A human's answer. For a destructive command, `approved` says whether it may run; for a
/// question, the answer is the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub answer: String,
    pub approved: bool,
}

/// Commands that need a human's approval before they run: the built-in rules and the user's own
/// (regular expressions matched anywhere in the command), except commands `allow` matches whole:
/// an `allow` pattern found anywhere would also trust whatever a command chains after it.
#[derive(Debug, Clone)]
pub struct ApprovalPolicy {
    rules: Vec<(String, regex::Regex)>,
    allow: Vec<regex::Regex>,
    /// At its credit limit a task asks a human to raise it instead of pausing.
    pub ask_on_budget_overrun: bool,
}

/// What baton asks about unless told otherwise, besides recursive deletes outside the workspace:
/// history rewritten on a remote, databases dropped, disks formatted or overwritten.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    ("force push", r"\bgit\s+push\b[^;&|]*\s(--force\b|--force-with-lease\b|-f\b|\+\S)"),
    ("database dropped", r"(?i)\bdrop\s+(database|schema|table)\b"),
    ("disk formatted or overwritten", r"\bmkfs(\.\w+)?\b|\bdd\b[^;&|]*\bof=/dev/"),
];

const DELETE_OUTSIDE: &str = "recursive delete outside the workspace";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval rule `{name}`: {reason}")]
pub struct BadRule {
    pub name: String,
    pub reason: String,
}

/// Whether `command` runs `rm` recursively on a path outside `/workspace`: absolute elsewhere, in
/// a home directory, or climbing out with `..`.
fn deletes_outside_workspace(command: &str) -> bool {
    command.split([';', '&', '|', '\n']).any(|part| {
        let mut words = part.split_whitespace().map(|w| w.trim_matches(['\'', '"']));
        if !words.by_ref().any(|w| w == "rm") {
            return false;
        }
        let (flags, paths): (Vec<&str>, Vec<&str>) = words.partition(|w| w.starts_with('-'));
        let recursive = flags.iter().any(|f| f.contains(['r', 'R']) || *f == "--recursive");
        let outside = |path: &&str| {
            // The sandbox's /tmp is its own and fresh; only the workspace outlives it.
            let inside = ["/workspace", "/tmp"].iter().any(|dir| path == dir || path.starts_with(&format!("{dir}/")));
            (path.starts_with('/') && !inside)
                || path.starts_with('~')
                || path.starts_with("$HOME")
                || path.split('/').any(|c| c == "..")
        };
        recursive && paths.iter().any(outside)
    })
}

impl ApprovalPolicy {
    /// The built-in rules, plus `extra` rules `(name, pattern)`, minus commands matching `allow`.
    pub fn new(extra: &[(String, String)], allow: &[String]) -> Result<ApprovalPolicy, BadRule> {
        let compile = |name: &str, pattern: &str| {
            regex::Regex::new(pattern).map_err(|e| BadRule { name: name.to_owned(), reason: e.to_string() })
        };
        let builtin = DEFAULT_RULES.iter().map(|(name, pattern)| (name.to_string(), pattern.to_string()));
        let rules = builtin
            .chain(extra.iter().cloned())
            .map(|(name, pattern)| compile(&name, &pattern).map(|regex| (name, regex)))
            .collect::<Result<_, _>>()?;
        let allow =
            allow.iter().map(|pattern| compile("allow", &format!("^(?:{pattern})$"))).collect::<Result<_, _>>()?;
        Ok(ApprovalPolicy { rules, allow, ask_on_budget_overrun: false })
    }

    /// The rule `command` breaks, if it needs approval.
    pub fn needs_approval(&self, command: &str) -> Option<&str> {
        if self.allow.iter().any(|allow| allow.is_match(command)) {
            return None;
        }
        if deletes_outside_workspace(command) {
            return Some(DELETE_OUTSIDE);
        }
        self.rules.iter().find(|(_, regex)| regex.is_match(command)).map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_name_is_its_serialized_type() {
        let kinds = [
            DecisionKind::Ask,
            DecisionKind::Destructive { rule: "r".into(), command: "c".into() },
            DecisionKind::PlanApproval,
            DecisionKind::Credential { name: "N".into() },
            DecisionKind::BudgetOverrun { limit: Credits::ZERO, spent: Credits::ZERO, needed: Credits::ZERO },
            DecisionKind::Pick { recommended: "attempt-1".into() },
        ];
        for kind in kinds {
            assert_eq!(serde_json::to_value(&kind).unwrap()["type"], kind.name());
        }
    }

    #[test]
    fn destructive_commands_are_caught_and_ordinary_ones_pass() {
        let policy = ApprovalPolicy::new(&[], &[]).unwrap();
        let caught = [
            ("git push --force origin main", "force push"),
            ("cd x && git push -f", "force push"),
            ("git push origin +main", "force push"),
            ("rm -rf /", "recursive delete outside the workspace"),
            ("rm -fr ~/projects", "recursive delete outside the workspace"),
            ("rm -r -f ../other", "recursive delete outside the workspace"),
            ("rm -rf /workspace/build /etc", "recursive delete outside the workspace"),
            ("cd /tmp && rm --recursive '/var/lib'", "recursive delete outside the workspace"),
            ("psql -c 'DROP DATABASE prod'", "database dropped"),
            ("mkfs.ext4 /dev/sda1", "disk formatted or overwritten"),
            ("dd if=/dev/zero of=/dev/sda bs=1M", "disk formatted or overwritten"),
        ];
        for (command, rule) in caught {
            assert_eq!(policy.needs_approval(command), Some(rule), "{command}");
        }
        for command in [
            "git push origin main",
            "rm -rf target",
            "rm -rf /workspace/build",
            "rm -f /tmp/x.log",
            "rm file.txt",
            "cargo test",
            "echo drop tables later",
            "dd if=a of=b",
        ] {
            assert_eq!(policy.needs_approval(command), None, "{command}");
        }
        let trusting = ApprovalPolicy::new(
            &[("deploy".into(), r"\bkubectl\s+apply\b".into())],
            &[r"^git push -f origin scratch$".into()],
        )
        .unwrap();
        assert_eq!(trusting.needs_approval("git push -f origin scratch"), None);
        assert_eq!(trusting.needs_approval("kubectl apply -f x.yaml"), Some("deploy"));
        let bad = ApprovalPolicy::new(&[("broken".into(), "(".into())], &[]).unwrap_err();
        assert!(bad.to_string().starts_with("approval rule `broken`: regex parse error"), "{bad}");
    }

    #[test]
    fn an_allow_pattern_trusts_the_whole_command_it_matches_and_nothing_chained_to_it() {
        let trusting =
            ApprovalPolicy::new(&[], &["git push -f origin scratch".into(), "make (test|lint)".into()]).unwrap();
        assert_eq!(trusting.needs_approval("git push -f origin scratch"), None);
        assert_eq!(trusting.needs_approval("make lint"), None);
        for chained in [
            "git push -f origin scratch; git push -f origin main",
            "git push -f origin main && git push -f origin scratch",
            "make test; rm -rf ~/",
        ] {
            assert!(trusting.needs_approval(chained).is_some(), "{chained}");
        }
    }
}
