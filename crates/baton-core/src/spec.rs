use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::id::TaskId;
use crate::money::Credits;
use crate::source::{RemoteUrl, RepoSource};

/// What a user asks for: the unit of work before anything has happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub request: String,
    /// The user's repository (an absolute path; baton reads it and never writes its checkout), or
    /// a remote's URL.
    pub repo: RepoSource,
    /// Where the task branch is pushed at every checkpoint: the remote of a remote task, or the
    /// remote of a local one that was given `--push`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<RemoteUrl>,
    /// The ref the task starts from, as the user wrote it (`HEAD`, `main`, a commit).
    pub base_ref: String,
    pub checks: Vec<CheckSpec>,
    /// Paths, relative to the repository root, that the task is meant to change. Empty: anywhere.
    pub scope: Vec<String>,
    /// Globs of files the agent may not change (the tests that judge it): restored from the base
    /// commit before the checks run, and any change to them reported.
    #[serde(default)]
    pub protect: Vec<String>,
    pub budget: Budget,
    /// `provider/model` the task runs with, when it was chosen at creation.
    #[serde(default)]
    pub model: Option<String>,
    /// The model's context window in tokens, when the user set it; otherwise the model table's.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Handoffs the task may make before it pauses, when the user set it; otherwise baton's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_handoffs: Option<u32>,
    /// Whether a reviewer reads every verified change before the task is done.
    #[serde(default = "reviewed")]
    pub review: bool,
    /// Whether a captain first plans the work as subtasks, which then run as child tasks.
    #[serde(default)]
    pub plan: bool,
    /// Whether a human approves the captain's plan before any subtask starts.
    #[serde(default)]
    pub approve_plan: bool,
    /// `provider/model` for roles that do not use `model`.
    #[serde(default)]
    pub role_models: std::collections::BTreeMap<crate::review::LegRole, String>,
    /// The task this one is a subtask of.
    #[serde(default)]
    pub parent: Option<String>,
    /// The text of the environment file the user gave (`--env FILE`), used instead of the
    /// repository's `baton.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Commits merged into the branch before the first leg: the results of a subtask's other
    /// dependencies (the first is its base). A conflict is the first leg's to resolve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merges: Vec<String>,
    /// Among queued tasks, higher runs first (then the oldest); 0 by default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Best of N: the request is tried this many times from the same base, each attempt a child
    /// task, and the best result becomes this task's (1: no attempts, the task does the work).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub attempts: u32,
    /// Who picks among the attempts.
    #[serde(default, skip_serializing_if = "Pick::is_rule")]
    pub pick: Pick,
    /// Who asked for it: the name of the API token that created it (none from the command line).
    /// A server's per-owner limit and fair order go by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The ended task whose branch this one continues, for a follow-up the user sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<Continued>,
}

/// What a continuing task knows of the run before it: the earlier task's request and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continued {
    pub task: String,
    pub request: String,
    /// Its stop reason and what it said when it stopped.
    pub ended: String,
}

/// Who picks the attempt that becomes a best-of-N task's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// baton, by its rule: verified, then the fewest open findings, the smallest change, the
    /// cheapest, the earliest.
    #[default]
    Rule,
    /// A human, once every attempt has ended (the task waits for the pick as for any decision).
    Human,
}

impl Pick {
    fn is_rule(&self) -> bool {
        *self == Pick::Rule
    }
}

impl std::str::FromStr for Pick {
    type Err = String;

    fn from_str(text: &str) -> Result<Pick, String> {
        match text {
            "rule" => Ok(Pick::Rule),
            "human" => Ok(Pick::Human),
            other => Err(format!("`{other}`: give `rule` or `human`")),
        }
    }
}

/// The most attempts a task may make.
pub const MAX_ATTEMPTS: u32 = 10;

fn is_zero(priority: &i32) -> bool {
    *priority == 0
}

fn one() -> u32 {
    1
}

fn is_one(attempts: &u32) -> bool {
    *attempts == 1
}

fn reviewed() -> bool {
    true
}

/// An acceptance command that the harness itself runs in the task's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    pub command: String,
    pub timeout_secs: u64,
}

/// Limits on what a task may spend. `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Budget {
    pub credits: Option<Credits>,
    pub wall_clock_secs: Option<u64>,
    pub steps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the request is empty")]
    EmptyRequest,
    #[error("the repository path `{0}` is not absolute")]
    RelativeRepo(PathBuf),
    #[error("the base ref is empty")]
    EmptyBaseRef,
    #[error("check `{0}` has an empty command")]
    EmptyCheckCommand(String),
    #[error("a check has an empty name")]
    EmptyCheckName,
    #[error("two checks are named `{0}`; check names must be unique")]
    DuplicateCheck(String),
    #[error("check `{0}` has a zero timeout")]
    ZeroCheckTimeout(String),
    #[error("scope path `{0}` must be relative to the repository root and stay inside it")]
    ScopeOutsideRepo(String),
    #[error("the {0} budget is zero or negative; omit it for no limit")]
    NonPositiveBudget(&'static str),
    #[error("{0} attempts: give 1 to {MAX_ATTEMPTS}")]
    Attempts(u32),
    #[error("a task either plans (subtasks that add up) or makes attempts (the best of several), not both")]
    PlanAndAttempts,
    #[error("a human picks among attempts only: give --attempts 2 or more with --pick human")]
    PickWithoutAttempts,
    #[error("only a planned task has a plan to approve: give --plan with --approve-plan")]
    ApprovalWithoutPlan,
}

impl TaskSpec {
    /// A request on `repo` from `HEAD`, with nothing else set: no checks, no scope, no limits, the
    /// model chosen later, reviewed, not planned.
    pub fn new(request: impl Into<String>, repo: impl Into<RepoSource>) -> TaskSpec {
        TaskSpec {
            request: request.into(),
            repo: repo.into(),
            push: None,
            base_ref: "HEAD".to_owned(),
            checks: Vec::new(),
            scope: Vec::new(),
            protect: Vec::new(),
            budget: Budget::default(),
            model: None,
            context_window: None,
            max_handoffs: None,
            review: true,
            plan: false,
            approve_plan: false,
            role_models: Default::default(),
            parent: None,
            environment: None,
            merges: Vec::new(),
            priority: 0,
            attempts: 1,
            pick: Pick::Rule,
            owner: None,
            continues: None,
        }
    }

    /// Checks what can be checked without touching the filesystem or git.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.request.trim().is_empty() {
            return Err(SpecError::EmptyRequest);
        }
        if let RepoSource::Local(path) = &self.repo
            && !path.is_absolute()
        {
            return Err(SpecError::RelativeRepo(path.clone()));
        }
        if self.base_ref.trim().is_empty() {
            return Err(SpecError::EmptyBaseRef);
        }
        for (i, check) in self.checks.iter().enumerate() {
            if check.name.trim().is_empty() {
                return Err(SpecError::EmptyCheckName);
            }
            if check.command.trim().is_empty() {
                return Err(SpecError::EmptyCheckCommand(check.name.clone()));
            }
            if check.timeout_secs == 0 {
                return Err(SpecError::ZeroCheckTimeout(check.name.clone()));
            }
            if self.checks[..i].iter().any(|earlier| earlier.name == check.name) {
                return Err(SpecError::DuplicateCheck(check.name.clone()));
            }
        }
        if let Some(path) = self.scope.iter().chain(&self.protect).find(|path| !stays_inside(path)) {
            return Err(SpecError::ScopeOutsideRepo(path.clone()));
        }
        let budget = &self.budget;
        if budget.credits.is_some_and(|c| c.micros() <= 0) {
            return Err(SpecError::NonPositiveBudget("credits"));
        }
        if budget.wall_clock_secs == Some(0) {
            return Err(SpecError::NonPositiveBudget("wall-clock"));
        }
        if budget.steps == Some(0) {
            return Err(SpecError::NonPositiveBudget("steps"));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err(SpecError::Attempts(self.attempts));
        }
        if self.plan && self.attempts > 1 {
            return Err(SpecError::PlanAndAttempts);
        }
        if self.pick == Pick::Human && self.attempts == 1 {
            return Err(SpecError::PickWithoutAttempts);
        }
        if self.approve_plan && !self.plan {
            return Err(SpecError::ApprovalWithoutPlan);
        }
        Ok(())
    }
}

/// True for a non-empty relative path with no `..`, root or prefix component.
fn stays_inside(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// A short, branch-safe summary of a request: lowercase ASCII words joined by `-`, at most 32
/// characters, cut at a word boundary; `task` when nothing usable remains.
pub fn slug(request: &str) -> String {
    const MAX: usize = 32;
    let mut slug = String::new();
    let words = request
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_ascii_lowercase);
    for word in words {
        let extra = word.len() + usize::from(!slug.is_empty());
        if slug.len() + extra > MAX {
            if slug.is_empty() {
                slug.push_str(&word[..MAX]);
            }
            break;
        }
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&word);
    }
    if slug.is_empty() { "task".to_owned() } else { slug }
}

/// The task's own branch: `baton/<slug>-<short id>`.
pub fn branch_name(request: &str, id: &TaskId) -> String {
    format!("baton/{}-{}", slug(request), id.short())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskSpec {
        TaskSpec {
            checks: vec![CheckSpec { name: "test".into(), command: "cargo test".into(), timeout_secs: 600 }],
            scope: vec!["src".into()],
            protect: vec!["tests/**".into()],
            ..TaskSpec::new("Fix the parser", std::path::PathBuf::from("/repo"))
        }
    }

    #[test]
    fn a_sound_spec_validates() {
        assert_eq!(spec().validate(), Ok(()));
    }

    #[test]
    fn each_defect_is_named() {
        type Breakage = fn(&mut TaskSpec);
        let cases: Vec<(Breakage, SpecError)> = vec![
            (|s| s.request = "  \n".into(), SpecError::EmptyRequest),
            (|s| s.repo = PathBuf::from("repo").into(), SpecError::RelativeRepo("repo".into())),
            (|s| s.base_ref = "".into(), SpecError::EmptyBaseRef),
            (|s| s.checks[0].command = " ".into(), SpecError::EmptyCheckCommand("test".into())),
            (|s| s.checks[0].name = "".into(), SpecError::EmptyCheckName),
            (|s| s.checks.push(s.checks[0].clone()), SpecError::DuplicateCheck("test".into())),
            (|s| s.checks[0].timeout_secs = 0, SpecError::ZeroCheckTimeout("test".into())),
            (|s| s.scope.push("../etc".into()), SpecError::ScopeOutsideRepo("../etc".into())),
            (|s| s.scope.push("/etc".into()), SpecError::ScopeOutsideRepo("/etc".into())),
            (|s| s.scope.push("src/../../x".into()), SpecError::ScopeOutsideRepo("src/../../x".into())),
            (|s| s.budget.credits = Some(Credits::ZERO), SpecError::NonPositiveBudget("credits")),
            (|s| s.budget.steps = Some(0), SpecError::NonPositiveBudget("steps")),
            (|s| s.pick = Pick::Human, SpecError::PickWithoutAttempts),
            (|s| s.approve_plan = true, SpecError::ApprovalWithoutPlan),
        ];
        for (break_it, expected) in cases {
            let mut spec = spec();
            break_it(&mut spec);
            assert_eq!(spec.validate(), Err(expected));
        }
    }

    #[test]
    fn slugs_are_short_and_branch_safe() {
        assert_eq!(slug("Fix the parser: handle `..` paths!"), "fix-the-parser-handle-paths");
        assert_eq!(slug("日本語 only"), "only");
        assert_eq!(slug("¿?"), "task");
        assert_eq!(slug(&"a".repeat(100)), "a".repeat(32));
        assert_eq!(slug("one two three four five six seven eight"), "one-two-three-four-five-six");
        let id = TaskId::from_entropy(0xfeed_beef);
        assert_eq!(branch_name("Add tests", &id), format!("baton/add-tests-{}", id.short()));
    }
}
