//! What the API takes and gives: a new task as a client describes it, and a task as it reads.

use baton_core::{Credits, Status, Stop, TaskState, Timestamp};
use serde::{Deserialize, Serialize};

/// A task to create: the fields of `baton run`. Unknown fields are refused, so a client learns at
/// once what this server does not support.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub request: String,
    /// The repository, a path on the server's machine.
    pub repo: String,
    /// The ref to start from (default `HEAD`).
    pub base: Option<String>,
    /// Acceptance commands; at least one.
    pub checks: Vec<String>,
    /// How long each check may run, in seconds (default 600).
    pub check_timeout_secs: Option<u64>,
    /// `provider/model`; the server's default model without it.
    pub model: Option<String>,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub protect: Vec<String>,
    /// Most credits the task may spend, like `"2.5"`.
    pub budget: Option<String>,
    /// Longest wall-clock time, in seconds.
    pub window_secs: Option<u64>,
    pub max_steps: Option<u64>,
    pub context_window: Option<u64>,
    /// Whether a reviewer reads the verified change (default true).
    pub review: Option<bool>,
    #[serde(default)]
    pub plan: bool,
    /// Among queued tasks, higher runs first (then the oldest); 0 by default.
    pub priority: Option<i32>,
}

/// A task as the API shows it: its state without the transcript.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: String,
    pub status: Status,
    pub stop: Option<Stop>,
    /// The open question while it waits for a human.
    pub question: Option<String>,
    /// The id of the open decision, to answer with `POST /tasks/{id}/decisions/{decision}`.
    pub decision: Option<String>,
    pub request: String,
    pub repo: String,
    pub branch: String,
    pub base_commit: String,
    pub last_commit: Option<String>,
    pub priority: i32,
    pub steps: u32,
    pub legs: u32,
    pub handoffs: u32,
    /// Credits spent by the task and its subtasks, as a decimal string.
    pub spent: String,
    pub checks: Vec<CheckView>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The seq the next event will have: events run from 0 to this less one.
    pub next_seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub name: String,
    pub passed: bool,
    pub exit_code: i32,
}

impl TaskView {
    pub fn of(state: &TaskState) -> TaskView {
        let work = &state.work;
        TaskView {
            id: state.id.to_string(),
            status: state.status(),
            stop: state.stop.clone(),
            question: state.question.clone(),
            decision: work.decisions.iter().find(|(_, answer)| answer.is_none()).map(|(asked, _)| asked.id.clone()),
            request: state.spec.request.clone(),
            repo: state.spec.repo.display().to_string(),
            branch: state.branch.clone(),
            base_commit: state.base_commit.clone(),
            last_commit: work.last_commit.clone(),
            priority: state.spec.priority,
            steps: work.steps,
            legs: work.leg,
            handoffs: work.handoffs,
            spent: Credits::to_string(&state.money.spent_in_all()),
            checks: work
                .last_checks
                .iter()
                .map(|check| CheckView { name: check.name.clone(), passed: check.passed, exit_code: check.exit_code })
                .collect(),
            created_at: state.created_at,
            updated_at: state.updated_at,
            next_seq: state.next_seq,
        }
    }
}

/// How a human settles a review finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Settled {
    /// The change addresses it.
    Resolved,
    /// It does not apply.
    Dismissed,
}

/// What a partial update does to one field: absent keeps it, `null` clears it, a value sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Change<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Change<T>, D::Error> {
        // A field that is present: `null` or a value (absent ones never get here, see `default`).
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Change::Clear, Change::Set))
    }
}

/// A change to a task's limits (`PATCH /tasks/{id}/budget`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitChange {
    /// Most credits the task may spend, like `"2.5"`.
    #[serde(default)]
    pub credits: Change<String>,
    /// Longest wall-clock time, in seconds.
    #[serde(default)]
    pub window_secs: Change<u64>,
    /// Most agent steps.
    #[serde(default)]
    pub max_steps: Change<u64>,
}
