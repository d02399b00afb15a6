//! What the API takes and gives: a new task as a client describes it, and a task as it reads.

use baton_core::{Credits, Finding, Recorded, Status, TaskState, Timestamp};
use baton_store::TaskSummary;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A task to create: the fields of `baton run`. Unknown fields are refused, so a client learns at
/// once what this server does not support.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub request: String,
    /// The repository: a path on the server's machine, or a remote's URL (https://, ssh://,
    /// file://) whose mirror the server keeps, the task branch pushed to it at every checkpoint.
    pub repo: String,
    /// Push the task branch at every checkpoint to the local repository's remote `origin`.
    #[serde(default)]
    pub push: bool,
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
    /// With `plan`: a human approves the captain's plan before any subtask starts.
    #[serde(default)]
    pub approve_plan: bool,
    /// `provider/model` for the captain; `model` without it.
    pub captain_model: Option<String>,
    /// `provider/model` for the reviewer; `model` without it.
    pub review_model: Option<String>,
    /// Among queued tasks, higher runs first (then the oldest); 0 by default.
    pub priority: Option<i32>,
    /// Best of N: the request tried this many times (1 to 10), the best verified attempt kept.
    pub attempts: Option<u32>,
    /// Who picks among the attempts: `rule` (baton; the default) or `human` (the task waits for
    /// `POST /tasks/{id}/pick` once every attempt has ended).
    #[schema(value_type = Option<String>, example = "human")]
    pub pick: Option<baton_core::Pick>,
}

/// A task as the API shows it: its state without the transcript.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    #[schema(value_type = String, example = "running")]
    pub status: Status,
    /// Why a paused or ended task stopped.
    pub stop: Option<StopView>,
    /// The open question while it waits for a human.
    pub question: Option<String>,
    /// The id of the open decision, to answer with `POST /tasks/{id}/decisions/{decision}`.
    pub decision: Option<String>,
    pub request: String,
    pub repo: String,
    pub branch: String,
    pub base_commit: String,
    pub last_commit: Option<String>,
    /// The last commit pushed to the task's remote.
    pub pushed: Option<String>,
    /// The task's pull request, as the forge last reported it.
    pub pull_request: Option<PullRequestView>,
    pub priority: i32,
    /// The token that created it.
    pub owner: Option<String>,
    pub steps: u32,
    /// Every leg so far, in order: who worked it, with which model, from when.
    pub legs: Vec<LegView>,
    pub handoffs: u32,
    /// Credits spent by the task and its subtasks, as a decimal string.
    pub spent: String,
    /// What it spent, on what, what it holds and its limits.
    pub money: MoneyView,
    /// The last checks, as they ran.
    pub checks: Vec<CheckView>,
    /// The agent's plan, as it last set it.
    pub plan: Vec<PlanStepView>,
    /// Files the agent has read, in the order first read.
    pub files_read: Vec<String>,
    /// Every review finding, with its status.
    pub findings: Vec<FindingView>,
    /// Every decision point, answered or open.
    pub decisions: Vec<DecisionView>,
    /// A plan's subtasks or the task's attempts, each a child task.
    pub subtasks: Vec<SubtaskView>,
    /// The ended task whose branch this one continues, for a follow-up sent to it.
    pub continues: Option<String>,
    /// The task that continues this one's branch, after it ended.
    pub continued_by: Option<String>,
    /// Who picks among the attempts: `rule` or `human`.
    #[schema(value_type = String, example = "rule")]
    pub pick: baton_core::Pick,
    /// The attempt whose result became this task's.
    pub picked: Option<String>,
    /// Milliseconds since the epoch, like every time the API gives.
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
    #[schema(value_type = i64)]
    pub updated_at: Timestamp,
    /// The seq the next event will have: events run from 0 to this less one.
    pub next_seq: u64,
}

/// One leg of the relay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LegView {
    pub number: u32,
    /// `build`, `review` or `captain`.
    pub role: String,
    pub model: String,
    #[schema(value_type = i64)]
    pub started_at: Timestamp,
    /// The task's step count when it began.
    pub steps_before: u32,
}

/// A task's money, amounts as decimal strings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MoneyView {
    /// Charged to the task itself.
    pub spent: String,
    /// Spent by its subtasks and attempts.
    pub delegated: String,
    /// Reserved for actions under way.
    pub held: String,
    /// Charged so far by kind: `input`, `cached_input`, `cache_write`, `output`, `sandbox_seconds`,
    /// `check`, `review`.
    pub by_kind: std::collections::BTreeMap<String, String>,
    /// Its limits: credits, wall-clock seconds, steps (none: no limit).
    pub limit_credits: Option<String>,
    pub limit_window_secs: Option<u64>,
    pub limit_steps: Option<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanStepView {
    pub title: String,
    /// `pending`, `in_progress` or `completed`.
    pub status: String,
}

/// A review finding.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FindingView {
    pub id: String,
    /// `P0` (breaks something that matters) to `P3` (a nit).
    pub severity: String,
    pub title: String,
    pub body: String,
    pub file: String,
    pub first_line: u32,
    pub last_line: u32,
    /// The reviewer's confidence, in percent.
    pub confidence: u8,
    pub round: u32,
    /// `open`, `resolved` or `irrelevant`.
    pub status: String,
    /// Why it was settled, and by whom.
    pub note: String,
    /// The commit that resolved it.
    pub commit: Option<String>,
}

/// A question put to a human, and the answer once given.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionView {
    pub id: String,
    /// `ask`, `destructive`, `plan_approval`, `credential`, `budget_overrun` or `pick`.
    pub kind: String,
    pub question: String,
    pub options: Vec<String>,
    pub why: String,
    pub answer: Option<String>,
    /// Whether the answer approved; none while open.
    pub approved: Option<bool>,
}

/// A subtask or an attempt: its child task and how it ended.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubtaskView {
    pub key: String,
    /// The child task, once created.
    pub task: Option<String>,
    /// Whether it ended verified; none while it has not ended.
    pub verified: Option<bool>,
    pub detail: Option<String>,
    /// Its commit, once it has one.
    pub commit: Option<String>,
    /// Credits it spent, as a decimal string.
    pub spent: Option<String>,
    /// Review findings it left open.
    pub open_findings: Option<u32>,
    /// The size of its change against its base.
    pub diff: Option<DiffView>,
    /// Its last checks.
    pub checks: Vec<CheckMarkView>,
}

/// How big a change is: files, lines added, lines removed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiffView {
    pub files: u64,
    pub insertions: u64,
    pub deletions: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckMarkView {
    pub name: String,
    pub passed: bool,
}

/// Why a task stopped, and what it said.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StopView {
    /// `verified`, `checks_failed`, `budget_exhausted`, …
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PullRequestView {
    pub number: u64,
    pub url: String,
    /// `open`, `closed` or `merged`, when baton last published it.
    pub state: String,
    pub draft: bool,
    /// The commit it showed then.
    pub commit: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
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
            stop: state
                .stop
                .as_ref()
                .map(|stop| StopView { reason: stop.reason.to_string(), detail: stop.detail.clone() }),
            question: state.question.clone(),
            decision: work.decisions.iter().find(|(_, answer)| answer.is_none()).map(|(asked, _)| asked.id.clone()),
            request: state.spec.request.clone(),
            repo: state.spec.repo.to_string(),
            branch: state.branch.clone(),
            base_commit: state.base_commit.clone(),
            last_commit: work.last_commit.clone(),
            pushed: work.pushed.clone(),
            pull_request: work.pull_request.as_ref().map(|pull| PullRequestView {
                number: pull.number,
                url: pull.url.clone(),
                state: pull.state.clone(),
                draft: pull.draft,
                commit: pull.commit.clone(),
            }),
            priority: state.spec.priority,
            owner: state.spec.owner.clone(),
            steps: work.steps,
            legs: work
                .legs
                .iter()
                .map(|leg| LegView {
                    number: leg.number,
                    role: leg.role.as_str().to_owned(),
                    model: leg.model.clone(),
                    started_at: leg.started_at,
                    steps_before: leg.steps_before,
                })
                .collect(),
            handoffs: work.handoffs,
            spent: Credits::to_string(&state.money.spent_in_all()),
            money: MoneyView::of(state),
            plan: work
                .plan
                .iter()
                .map(|step| PlanStepView { title: step.title.clone(), status: step.status.as_str().to_owned() })
                .collect(),
            files_read: work.files_read.clone(),
            findings: work.findings.iter().map(FindingView::of).collect(),
            decisions: work
                .decisions
                .iter()
                .map(|(decision, answer)| DecisionView {
                    id: decision.id.clone(),
                    kind: decision.kind.name().to_owned(),
                    question: decision.question.clone(),
                    options: decision.options.clone(),
                    why: decision.why.clone(),
                    answer: answer.as_ref().map(|a| a.answer.clone()),
                    approved: answer.as_ref().map(|a| a.approved),
                })
                .collect(),
            checks: work
                .last_checks
                .iter()
                .map(|check| CheckView { name: check.name.clone(), passed: check.passed, exit_code: check.exit_code })
                .collect(),
            subtasks: work
                .subtasks
                .iter()
                .map(|subtask| {
                    let outcome = subtask.outcome.as_ref();
                    SubtaskView {
                        key: subtask.plan.key.clone(),
                        task: subtask.task.clone(),
                        verified: outcome.map(|o| o.verified),
                        detail: outcome.map(|o| o.detail.clone()),
                        commit: outcome.and_then(|o| o.commit.clone()),
                        spent: outcome.map(|o| o.spent.to_string()),
                        open_findings: outcome.map(|o| o.open_findings),
                        diff: outcome.and_then(|o| o.diff).map(|diff| DiffView {
                            files: diff.files,
                            insertions: diff.insertions,
                            deletions: diff.deletions,
                        }),
                        checks: outcome
                            .map(|o| o.checks.iter())
                            .into_iter()
                            .flatten()
                            .map(|check| CheckMarkView { name: check.name.clone(), passed: check.passed })
                            .collect(),
                    }
                })
                .collect(),
            continues: state.spec.continues.as_ref().map(|earlier| earlier.task.clone()),
            continued_by: work.continued_by.clone(),
            pick: state.spec.pick,
            picked: work.picked.clone(),
            created_at: state.created_at,
            updated_at: state.updated_at,
            next_seq: state.next_seq,
        }
    }
}

impl MoneyView {
    fn of(state: &TaskState) -> MoneyView {
        let money = &state.money;
        let budget = &state.spec.budget;
        MoneyView {
            spent: money.spent.to_string(),
            delegated: money.delegated.to_string(),
            held: money.held_total().to_string(),
            by_kind: money
                .by_kind
                .iter()
                .map(|(kind, amount)| (kind.as_str().to_owned(), amount.to_string()))
                .collect(),
            limit_credits: budget.credits.map(|credits| credits.to_string()),
            limit_window_secs: budget.wall_clock_secs,
            limit_steps: budget.steps,
        }
    }
}

impl FindingView {
    fn of(finding: &Finding) -> FindingView {
        FindingView {
            id: finding.id.clone(),
            severity: format!("{:?}", finding.severity),
            title: finding.title.clone(),
            body: finding.body.clone(),
            file: finding.file.clone(),
            first_line: finding.lines.0,
            last_line: finding.lines.1,
            confidence: finding.confidence,
            round: finding.round,
            status: finding.status.as_str().to_owned(),
            note: finding.note.clone(),
            commit: finding.commit.clone(),
        }
    }
}

/// How a human settles a review finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitChange {
    /// Most credits the task may spend, like `"2.5"`.
    #[serde(default)]
    #[schema(value_type = Option<String>, required = false)]
    pub credits: Change<String>,
    /// Longest wall-clock time, in seconds.
    #[serde(default)]
    #[schema(value_type = Option<u64>, required = false)]
    pub window_secs: Change<u64>,
    /// Most agent steps.
    #[serde(default)]
    #[schema(value_type = Option<u64>, required = false)]
    pub max_steps: Change<u64>,
}

/// One row of the task list: what is known without replaying its journal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SummaryView {
    pub id: String,
    pub request: String,
    pub branch: String,
    #[schema(value_type = String, example = "queued")]
    pub status: Status,
    pub stop_reason: Option<String>,
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
    #[schema(value_type = i64)]
    pub updated_at: Timestamp,
    pub next_seq: u64,
}

impl SummaryView {
    pub fn of(task: &TaskSummary) -> SummaryView {
        SummaryView {
            id: task.id.to_string(),
            request: task.request.clone(),
            branch: task.branch.clone(),
            status: task.status,
            stop_reason: task.stop_reason.map(|reason| reason.to_string()),
            created_at: task.created_at,
            updated_at: task.updated_at,
            next_seq: task.next_seq,
        }
    }
}

/// A page of the task list, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<SummaryView>,
    /// Where the next page starts (`cursor=`); none on the last page.
    pub next_cursor: Option<String>,
}

/// A page of a task's journal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPage {
    /// Each `{seq, at, event}`; `event` has a `kind` and the fields of that kind.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Recorded>,
    /// The seq of the last event on the page.
    pub last_seq: Option<u64>,
    /// Whether more events follow it.
    pub more: bool,
}

/// The service answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// An error: a code to branch on and a message for people.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(example = "not_found")]
    pub code: String,
    pub message: String,
}
