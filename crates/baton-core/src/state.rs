use serde::{Deserialize, Serialize};

use crate::account::{Charge, ChargeKind, add, total};
use crate::chat::{Message, ModelResponse, Part, Role};
use crate::coverage::Coverage;
use crate::decision::{Answer, Decision, DecisionKind};
use crate::event::{Event, Recorded};
use crate::id::TaskId;
use crate::ledger::{Effect, Handoff, PlanStep, StepStatus};
use crate::money::Credits;
use crate::review::{Finding, FindingStatus, LegRole, SubtaskState};
use crate::spec::TaskSpec;
use crate::status::{Lifecycle, Status, StopReason, TransitionError};
use crate::time::Timestamp;

/// Everything known about a task, derived from its journal alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub base_commit: String,
    pub branch: String,
    pub lifecycle: Lifecycle,
    /// Why the task stopped, with the human-readable detail; `None` while it is not stopped.
    pub stop: Option<Stop>,
    /// The open question while the task waits for a human.
    pub question: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The seq the next appended event must have.
    pub next_seq: u64,
    pub work: Work,
    pub money: Money,
}

/// What the task has spent and holds, from its `reserved` and `settled` events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Money {
    /// Charged to this task.
    pub spent: Credits,
    /// Spent by its subtasks' child tasks, as each ended.
    #[serde(default)]
    pub delegated: Credits,
    /// Charged so far, by kind.
    pub by_kind: std::collections::BTreeMap<ChargeKind, Credits>,
    /// Reservations not yet settled, by key, with the charges they were estimated at.
    pub held: std::collections::BTreeMap<String, Vec<Charge>>,
    /// When the latest charge was settled.
    pub last_charge_at: Option<Timestamp>,
    /// An action that cost more than it held, since the task last resumed: nothing more may
    /// start until it pauses and resumes.
    #[serde(default)]
    pub overrun: Option<Overrun>,
}

/// An action charged more than it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrun {
    pub key: String,
    pub held: Credits,
    pub charged: Credits,
}

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` cost more than baton held for it: {} held, {} charged", self.key, self.held, self.charged)
    }
}

impl Money {
    /// Spent by the task and its subtasks: what its credit limit holds over.
    pub fn spent_in_all(&self) -> Credits {
        add(self.spent, self.delegated)
    }

    pub fn held_total(&self) -> Credits {
        self.held.values().fold(Credits::ZERO, |sum, charges| add(sum, total(charges)))
    }

    fn apply(&mut self, at: Timestamp, event: &Event) {
        match event {
            Event::Reserved { key, charges } => {
                self.held.insert(key.clone(), charges.clone());
            }
            Event::Settled { key, charges } => {
                self.held.remove(key);
                for charge in charges {
                    self.spent = add(self.spent, charge.amount);
                    let by_kind = self.by_kind.entry(charge.kind).or_insert(Credits::ZERO);
                    *by_kind = add(*by_kind, charge.amount);
                }
                if !charges.is_empty() {
                    self.last_charge_at = Some(at);
                }
            }
            Event::Overran { key, held, charged } => {
                self.overrun = Some(Overrun { key: key.clone(), held: *held, charged: *charged })
            }
            Event::Resumed { .. } => self.overrun = None,
            Event::SubtaskEnded { outcome, .. } => self.delegated = add(self.delegated, outcome.spent),
            _ => {}
        }
    }
}

/// What the agent has done so far: enough to continue exactly where the journal ends.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Work {
    /// The current leg (0 before the first).
    pub leg: u32,
    pub model: String,
    pub system: String,
    /// The current leg's conversation, as the next model call sends it.
    pub transcript: Vec<Message>,
    /// Model calls answered, over the whole task.
    pub steps: u32,
    /// A model call was started and neither answered nor failed.
    pub model_call_in_flight: Option<u32>,
    /// Tool calls started and not finished.
    pub pending_tools: Vec<crate::ToolCall>,
    /// How many times the checks have run.
    pub verifications: u32,
    pub last_checks: Vec<CheckResult>,
    /// Protected files restored before the latest checks.
    pub restored: Vec<String>,
    pub last_commit: Option<String>,
    /// The last commit pushed to the task's remote.
    pub pushed: Option<String>,
    /// The task's pull request, when one was opened.
    pub pull_request: Option<crate::PullRequestRef>,
    /// How many of the task's follow-ups (a continuing task's request first, then the messages it
    /// received) its pull request has answered.
    pub follow_ups_answered: usize,
    /// What the last checkpoint says of itself (for a verified one: the checks and the environment).
    pub last_evidence: Option<String>,
    /// The hash of the environment the task's machines were last built on.
    pub environment: Option<String>,
    /// The key of that environment's snapshot, when it has one.
    pub snapshot: Option<String>,
    /// Model steps since the agent last made progress: changed a file or its plan, ran the checks,
    /// or learned something new (a tool result it had not seen in this leg).
    pub steps_without_progress: u32,
    /// Of the tool calls in the latest model step, how often the most repeated one (same tool,
    /// arguments and result) has happened in this leg.
    pub most_repeated_call: u32,
    /// Tool calls seen this leg, by a hash of tool, arguments and result, with their counts.
    pub seen_calls: std::collections::BTreeMap<u64, u32>,
    /// Every tool call id the task's answers have used (see [`Work::with_unique_call_ids`]).
    #[serde(default)]
    pub call_ids: std::collections::BTreeSet<String>,
    /// The agent was nudged since it last made progress.
    pub nudged: bool,
    /// The agent called `finish` and the checks have not run since.
    pub finish_requested: bool,
    /// When the task first started running: its wall-clock window counts from here.
    pub started_at: Option<Timestamp>,
    /// The current model step produced progress (folded into `steps_without_progress` on the next step).
    progress_this_step: bool,

    // The ledger's journal-side facts, and what the context budget needs.
    /// The agent's plan as its latest `update_plan` set it.
    pub plan: Vec<PlanStep>,
    /// Files read with `read_file`, over the whole task, in the order first read.
    pub files_read: Vec<String>,
    /// What the task's tools have shown, over all legs.
    #[serde(default)]
    pub coverage: Coverage,
    /// Results of the current leg that showed something the task had not seen.
    #[serde(default)]
    pub leg_new: u32,
    /// Results of the current leg that showed only what the task had seen.
    #[serde(default)]
    pub leg_seen: u32,
    /// The latest model step completed a plan step: a natural point to hand off.
    pub plan_step_completed: bool,
    /// The current leg changed a file (through a tool or a command), completed a plan step or ran
    /// the checks.
    pub leg_progress: bool,
    /// Legs in a row that ended in a handoff without progress and without seeing anything new.
    pub idle_legs: u32,
    /// Handoffs written over the whole task.
    pub handoffs: u32,
    /// A handoff was started and not written.
    pub handoff_in_flight: Option<crate::HandoffDue>,
    /// The latest handoff, the one the current leg started from.
    pub last_handoff: Option<Box<Handoff>>,
    /// The context window learned from a provider's refusal, smaller than the configured one.
    pub learned_window: Option<u64>,
    /// The agent was told its budget is running low, since the limits last changed.
    pub budget_warned: bool,
    /// The number of the user's last follow-up the agent was given.
    pub messages_delivered: u64,
    /// Every follow-up the user sent, for the briefs of later legs.
    pub messages: Vec<String>,
    /// Every decision point of the task, with its answer once given.
    pub decisions: Vec<(Decision, Option<Answer>)>,
    /// A human answered a budget overrun and the answer has not been acted on yet.
    pub overrun_answered: bool,
    /// Who works the current leg.
    pub role: LegRole,
    /// Every finding of every review round, with its current status.
    pub findings: Vec<Finding>,
    /// Review rounds so far.
    pub review_rounds: u32,
    /// The commit the latest review covered up to: the next review reads only what came after.
    pub reviewed: Option<String>,
    /// The captain's plan, once submitted, with each subtask's child task and outcome.
    pub subtasks: Vec<SubtaskState>,
    /// The attempt whose result became the task's, once picked.
    pub picked: Option<String>,
    /// The task that continues this one's branch, after it ended.
    #[serde(default)]
    pub continued_by: Option<String>,
    /// Every leg so far, in order.
    #[serde(default)]
    pub legs: Vec<LegRecord>,
    /// The commit of every checkpoint, in order.
    #[serde(default)]
    pub checkpoints: Vec<String>,
}

/// A leg as the journal opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegRecord {
    pub number: u32,
    pub role: LegRole,
    pub model: String,
    pub started_at: Timestamp,
    /// The task's step count when it began: its steps are the ones after.
    pub steps_before: u32,
}

/// Tools whose success changes the work itself.
const PROGRESS_TOOLS: &[&str] = &["write_file", "edit_file", "apply_patch", "update_plan"];

fn call_hash(name: &str, arguments: &str, digest: u64) -> u64 {
    crate::stable_hash(&[name.as_bytes(), arguments.as_bytes(), &digest.to_le_bytes()])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub exit_code: i32,
    pub passed: bool,
    pub output: String,
    pub duration_ms: u64,
    /// The hash of the environment it ran on.
    pub environment: String,
}

impl Work {
    /// `response` with every tool call id unique within the task. Providers that number calls per
    /// answer (`call_0` at every step), or send none (baton then makes `call_{index}`), would
    /// otherwise have a later call taken for an earlier one: its decision, its result, `recall`.
    /// A repeated id gets a suffix; the transcript then uses it for the call and its result alike.
    pub fn with_unique_call_ids(&self, mut response: ModelResponse) -> ModelResponse {
        let mut taken: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for part in &mut response.parts {
            let Part::ToolCall { id, .. } = part else { continue };
            let used = |candidate: &str| self.call_ids.contains(candidate) || taken.contains(candidate);
            if id.is_empty() || used(id) {
                let base = if id.is_empty() { "call".to_owned() } else { id.clone() };
                let fresh = (self.steps + 1..).map(|n| format!("{base}_s{n}")).find(|c| !used(c));
                *id = fresh.unwrap_or(base);
            }
            taken.insert(id.clone());
        }
        response
    }

    /// The tool calls of the latest model answer that have no result yet: after a crash between
    /// an answer and its tool calls, these still have to run.
    pub fn unanswered_calls(&self) -> Vec<crate::ToolCall> {
        let Some(at) = self.transcript.iter().rposition(|m| m.role == Role::Assistant) else { return Vec::new() };
        let answered: Vec<&str> = self.transcript[at + 1..]
            .iter()
            .flat_map(|m| &m.parts)
            .filter_map(|part| match part {
                Part::ToolResult { call_id, .. } => Some(call_id.as_str()),
                _ => None,
            })
            .collect();
        self.transcript[at]
            .parts
            .iter()
            .filter_map(crate::ToolCall::of_part)
            .filter(|call| !answered.contains(&call.id.as_str()))
            .collect()
    }

    /// Model steps without progress, the latest one included.
    pub fn stalled_steps(&self) -> u32 {
        if self.progress_this_step { 0 } else { self.steps_without_progress + 1 }
    }

    /// Adds a part to the user turn that answers the last assistant message, opening one if needed.
    fn tell(&mut self, part: Part) {
        match self.transcript.last_mut() {
            Some(Message { role: Role::User, parts }) => parts.push(part),
            _ => self.transcript.push(Message { role: Role::User, parts: vec![part] }),
        }
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::LegStarted { leg, model, system, brief, role } => {
                self.role = *role;
                self.leg_progress = false;
                (self.leg_new, self.leg_seen) = (0, 0);
                self.plan_step_completed = false;
                self.seen_calls.clear();
                self.most_repeated_call = 0;
                self.steps_without_progress = 0;
                self.nudged = false;
                self.leg = *leg;
                self.model.clone_from(model);
                self.system.clone_from(system);
                self.transcript = vec![Message { role: Role::User, parts: vec![Part::Text { text: brief.clone() }] }];
            }
            Event::ModelCallStarted { step, .. } => {
                self.model_call_in_flight = Some(*step);
                if self.steps > 0 {
                    self.steps_without_progress =
                        if self.progress_this_step { 0 } else { self.steps_without_progress + 1 };
                }
                if self.progress_this_step {
                    self.nudged = false;
                }
                self.progress_this_step = false;
                self.plan_step_completed = false;
                self.most_repeated_call = 0;
            }
            Event::ModelCallFinished { response, .. } => {
                self.call_ids.extend(response.tool_calls().map(|(id, _, _)| id.to_owned()));
                self.transcript.push(Message { role: Role::Assistant, parts: response.parts.clone() });
                self.steps += 1;
                self.model_call_in_flight = None;
            }
            Event::ModelCallFailed { .. } => self.model_call_in_flight = None,
            Event::ToolCallStarted { call_id, name, arguments, .. } => {
                let call = crate::ToolCall { id: call_id.clone(), name: name.clone(), arguments: arguments.clone() };
                self.pending_tools.push(call);
            }
            Event::ToolCallFinished { call_id, output, is_error, effect, digest } => {
                let digest = digest.unwrap_or_else(|| crate::digest(output));
                self.note(effect);
                if !is_error {
                    let new = match effect {
                        Effect::Read(span) => self.coverage.read(span),
                        _ => self.coverage.output(digest),
                    };
                    *(if new { &mut self.leg_new } else { &mut self.leg_seen }) += 1;
                }
                if let Some(at) = self.pending_tools.iter().position(|call| call.id == *call_id) {
                    let crate::ToolCall { name, arguments, .. } = self.pending_tools.remove(at);
                    // Compared as any identical run would print it: a re-run whose timings differ repeats.
                    let count = self.seen_calls.entry(call_hash(&name, &arguments, digest)).or_insert(0);
                    *count += 1;
                    self.most_repeated_call = self.most_repeated_call.max(*count);
                    let changed_work = !is_error && PROGRESS_TOOLS.contains(&name.as_str());
                    self.finish_requested |= !is_error && name == "finish";
                    if changed_work || *count == 1 && !is_error {
                        self.progress_this_step = true;
                    }
                }
                self.tell(Part::ToolResult { call_id: call_id.clone(), output: output.clone(), is_error: *is_error });
            }
            Event::Feedback { text } => self.tell(Part::Text { text: text.clone() }),
            Event::MessageReceived { number, text } => {
                self.messages_delivered = self.messages_delivered.max(*number);
                self.messages.push(text.clone());
                self.tell(Part::Text { text: format!("A follow-up from the user who gave you this task:\n{text}") });
            }
            Event::BudgetLow { text } => {
                self.budget_warned = true;
                self.tell(Part::Text { text: text.clone() });
            }
            Event::BudgetChanged { .. } => {
                self.budget_warned = false;
                self.overrun_answered = false;
            }
            Event::DecisionRequested { decision } => self.decisions.push((decision.clone(), None)),
            Event::PlanSubmitted { subtasks } => {
                self.subtasks = subtasks
                    .iter()
                    .map(|plan| SubtaskState { plan: plan.clone(), task: None, outcome: None })
                    .collect();
            }
            Event::SubtaskCreated { key, task } => {
                if let Some(subtask) = self.subtasks.iter_mut().find(|s| s.plan.key == *key) {
                    subtask.task = Some(task.clone());
                }
            }
            Event::SubtaskEnded { key, outcome } => {
                if let Some(subtask) = self.subtasks.iter_mut().find(|s| s.plan.key == *key) {
                    subtask.outcome = Some(outcome.clone());
                }
            }
            Event::AttemptPicked { key, .. } => self.picked = Some(key.clone()),
            Event::Continued { task } => self.continued_by = Some(task.clone()),
            Event::FindingsReported { round, reviewed, findings } => {
                self.review_rounds = *round;
                self.reviewed = Some(reviewed.clone());
                self.findings.extend(findings.iter().cloned());
            }
            Event::FindingUpdated { id, status, note, by } => {
                if let Some(finding) = self.findings.iter_mut().find(|f| f.id == *id) {
                    finding.status = *status;
                    finding.note = format!("{by}: {note}");
                }
            }
            Event::DecisionMade { id, answer } => {
                if let Some((decision, slot)) = self.decisions.iter_mut().find(|(d, _)| d.id == *id) {
                    *slot = Some(answer.clone());
                    self.overrun_answered = matches!(decision.kind, DecisionKind::BudgetOverrun { .. });
                }
            }
            Event::Paused { .. } => self.overrun_answered = false,
            Event::Nudged { text, .. } => {
                self.nudged = true;
                self.tell(Part::Text { text: text.clone() });
            }
            Event::VerificationStarted => {
                self.finish_requested = false;
                self.verifications += 1;
                self.last_checks.clear();
                self.restored.clear();
            }
            Event::EnvironmentPrepared { hash, snapshot, .. } => {
                self.environment = Some(hash.clone());
                self.snapshot.clone_from(snapshot);
            }
            Event::CheckFinished { name, exit_code, passed, output, duration_ms, environment } => {
                self.progress_this_step = true;
                self.leg_progress = true;
                self.last_checks.push(CheckResult {
                    name: name.clone(),
                    exit_code: *exit_code,
                    passed: *passed,
                    output: output.clone(),
                    duration_ms: *duration_ms,
                    environment: environment.clone(),
                })
            }
            Event::ProtectedRestored { paths } => self.restored.clone_from(paths),
            Event::Checkpointed { commit, evidence } => {
                self.checkpoints.push(commit.clone());
                // A checkpoint is only made when the worktree changed, by any tool or command.
                self.leg_progress = true;
                // Findings resolved since the last commit were resolved by this one.
                for finding in
                    self.findings.iter_mut().filter(|f| f.status == FindingStatus::Resolved && f.commit.is_none())
                {
                    finding.commit = Some(commit.clone());
                }
                self.last_commit = Some(commit.clone());
                self.last_evidence = Some(evidence.clone());
            }
            Event::Pushed { commit, error: None, .. } => self.pushed = Some(commit.clone()),
            Event::PullRequestPublished { pull_request, answered, .. } => {
                self.pull_request = Some(pull_request.clone());
                self.follow_ups_answered += answered.len();
            }
            // Resuming, a human decides the task may try again: earlier idle legs no longer count.
            Event::Resumed { .. } => self.idle_legs = 0,
            Event::HandoffStarted { reason, emergency, window } => {
                let urgency = if *emergency { crate::Urgency::Emergency } else { crate::Urgency::Planned };
                self.handoff_in_flight = Some(crate::HandoffDue { reason: reason.clone(), urgency });
                if let Some(window) = window {
                    self.learned_window = Some(self.learned_window.map_or(*window, |w| w.min(*window)));
                }
            }
            Event::HandoffWritten { handoff } => {
                self.handoff_in_flight = None;
                self.handoffs += 1;
                self.idle_legs = if self.leg_progress || self.leg_new > 0 { 0 } else { self.idle_legs + 1 };
                self.last_handoff = Some(handoff.clone());
            }
            _ => {}
        }
    }

    /// Folds a tool call's effect into the ledger's facts.
    fn note(&mut self, effect: &Effect) {
        match effect {
            Effect::Read(span) => {
                if !self.files_read.contains(&span.path) {
                    self.files_read.push(span.path.clone());
                }
            }
            // Which files changed is git's to say (the ledger's diffstat); that some did is progress.
            Effect::Changed(_) => self.leg_progress = true,
            Effect::Plan(steps) => {
                let done = |plan: &[PlanStep]| plan.iter().filter(|s| s.status == StepStatus::Done).count();
                if done(steps) > done(&self.plan) {
                    self.plan_step_completed = true;
                    self.leg_progress = true;
                }
                self.plan.clone_from(steps);
            }
            Effect::None | Effect::Finish(_) => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub reason: StopReason,
    pub detail: String,
}

/// A journal that does not describe a valid task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("the journal is empty")]
    Empty,
    #[error("the journal starts with `{0}` instead of `task_created`")]
    NotCreatedFirst(&'static str),
    #[error("expected event seq {expected}, found {found}")]
    Gap { expected: u64, found: u64 },
    #[error("event {seq}: {source}")]
    Transition { seq: u64, source: TransitionError },
}

impl TaskState {
    /// The state right after the journal's first event, which must be `task_created` at seq 0.
    pub fn created(id: TaskId, first: &Recorded) -> Result<TaskState, FoldError> {
        let Event::TaskCreated { spec, base_commit, branch } = &first.event else {
            return Err(FoldError::NotCreatedFirst(first.event.kind()));
        };
        if first.seq != 0 {
            return Err(FoldError::Gap { expected: 0, found: first.seq });
        }
        Ok(TaskState {
            id,
            spec: (**spec).clone(),
            base_commit: base_commit.clone(),
            branch: branch.clone(),
            lifecycle: Lifecycle::CREATED,
            stop: None,
            question: None,
            created_at: first.at,
            updated_at: first.at,
            next_seq: 1,
            work: Work::default(),
            money: Money::default(),
        })
    }

    pub fn status(&self) -> Status {
        self.lifecycle.status
    }

    /// Applies the next event of the journal, or says why it cannot follow.
    pub fn apply(&mut self, recorded: &Recorded) -> Result<(), FoldError> {
        if recorded.seq != self.next_seq {
            return Err(FoldError::Gap { expected: self.next_seq, found: recorded.seq });
        }
        let event = &recorded.event;
        self.lifecycle =
            self.lifecycle.apply(event).map_err(|source| FoldError::Transition { seq: recorded.seq, source })?;
        self.stop = match (event, self.lifecycle.stop_reason) {
            (
                Event::Paused { detail, .. } | Event::Finished { detail, .. } | Event::Cancelled { detail },
                Some(reason),
            ) => Some(Stop { reason, detail: detail.clone() }),
            // Bookkeeping after a stop (a checkpoint, new limits, a settled finding) keeps it.
            (_, Some(_)) => self.stop.take(),
            _ => None,
        };
        self.question = match (event, self.lifecycle.status) {
            (Event::WaitingForHuman { question }, _) => Some(question.clone()),
            (Event::DecisionRequested { decision }, _) => Some(decision.question.clone()),
            (_, Status::Waiting) => self.question.take(),
            _ => None,
        };
        self.work.apply(event);
        self.money.apply(recorded.at, event);
        if let Event::BudgetChanged { budget } = event {
            self.spec.budget = *budget;
        }
        self.updated_at = recorded.at;
        self.next_seq += 1;
        match event {
            Event::Started => self.work.started_at = Some(recorded.at),
            Event::LegStarted { leg, model, role, .. } => self.work.legs.push(LegRecord {
                number: *leg,
                role: *role,
                model: model.clone(),
                started_at: recorded.at,
                steps_before: self.work.steps,
            }),
            _ => {}
        }
        Ok(())
    }
}

/// Rebuilds a task's state from its journal.
pub fn fold<'a>(id: TaskId, journal: impl IntoIterator<Item = &'a Recorded>) -> Result<TaskState, FoldError> {
    let mut journal = journal.into_iter();
    let first = journal.next().ok_or(FoldError::Empty)?;
    let mut state = TaskState::created(id, first)?;
    for recorded in journal {
        state.apply(recorded)?;
    }
    Ok(state)
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;

    use super::*;

    fn created() -> Event {
        Event::TaskCreated {
            spec: Box::new(TaskSpec::new("do it", std::path::PathBuf::from("/repo"))),
            base_commit: "0".repeat(40),
            branch: "baton/do-it-00000000".into(),
        }
    }

    fn any_reason() -> impl Strategy<Value = StopReason> {
        proptest::sample::select(StopReason::ALL.to_vec())
    }

    /// Any event but creation, valid or not for the moment it lands in.
    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Started),
            "[a-z ]{0,8}".prop_map(|detail| Event::Resumed { detail }),
            "[a-z ?]{0,8}".prop_map(|question| Event::WaitingForHuman { question }),
            Just(Event::VerificationStarted),
            Just(Event::ReviewStarted),
            (any_reason(), "[a-z]{0,4}").prop_map(|(reason, detail)| Event::Paused { reason, detail }),
            (any_reason(), "[a-z]{0,4}").prop_map(|(reason, detail)| Event::Finished { reason, detail }),
            "[a-z]{0,4}".prop_map(|detail| Event::Cancelled { detail }),
            // Bookkeeping, which lands between the moves of the lifecycle (and after a stop).
            Just(Event::BudgetChanged { budget: crate::Budget::default() }),
            "[a-z]{4}".prop_map(|task| Event::Continued { task }),
        ]
    }

    /// Keeps only the candidates that the state machine accepts, so the result is a valid journal.
    fn valid_journal(candidates: Vec<(Event, i64)>) -> Vec<Recorded> {
        let mut journal = vec![Recorded { seq: 0, at: Timestamp(1_000), event: created() }];
        let mut lifecycle = Lifecycle::CREATED;
        let mut at = 1_000;
        for (event, step) in candidates {
            if let Ok(next) = lifecycle.apply(&event) {
                lifecycle = next;
                at += step;
                journal.push(Recorded { seq: journal.len() as u64, at: Timestamp(at), event });
            }
        }
        journal
    }

    fn assert_consistent(state: &TaskState) {
        let Lifecycle { status, stop_reason } = state.lifecycle;
        assert_eq!(stop_reason.is_some(), status.is_stopped(), "{status} with {stop_reason:?}");
        assert_eq!(state.stop.as_ref().map(|s| s.reason), stop_reason);
        assert_eq!(state.question.is_some(), status == Status::Waiting);
        match status {
            Status::Done => assert_eq!(stop_reason, Some(StopReason::Verified)),
            Status::Cancelled => assert_eq!(stop_reason, Some(StopReason::Cancelled)),
            Status::Failed | Status::Paused => {
                assert!(!matches!(stop_reason, Some(StopReason::Verified | StopReason::Cancelled)))
            }
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn fold_is_deterministic_and_equals_stepwise_application(
            candidates in proptest::collection::vec((any_event(), 0i64..10_000), 0..60)
        ) {
            let journal = valid_journal(candidates);
            let id = TaskId::from_entropy(7);
            let folded = fold(id.clone(), &journal).unwrap();
            prop_assert_eq!(&fold(id.clone(), &journal).unwrap(), &folded);

            let mut stepwise = TaskState::created(id, &journal[0]).unwrap();
            assert_consistent(&stepwise);
            for recorded in &journal[1..] {
                stepwise.apply(recorded).unwrap();
                assert_consistent(&stepwise);
            }
            prop_assert_eq!(&stepwise, &folded);
            prop_assert_eq!(folded.next_seq, journal.len() as u64);
            prop_assert_eq!(folded.updated_at, journal.last().unwrap().at);
        }

        #[test]
        fn invalid_events_are_rejected_without_changing_the_state(
            candidates in proptest::collection::vec((any_event(), 0i64..10), 0..40),
            intruder in any_event(),
        ) {
            let journal = valid_journal(candidates);
            let mut state = fold(TaskId::from_entropy(7), &journal).unwrap();
            let before = state.clone();
            let recorded = Recorded { seq: state.next_seq, at: Timestamp(i64::MAX), event: intruder };
            match state.lifecycle.apply(&recorded.event) {
                Ok(_) => prop_assert!(state.apply(&recorded).is_ok()),
                Err(_) => {
                    let rejected = matches!(state.apply(&recorded), Err(FoldError::Transition { .. }));
                    prop_assert!(rejected, "the state machine refused the event, so apply must too");
                    prop_assert_eq!(state, before);
                }
            }
        }

        #[test]
        fn journals_survive_a_serde_round_trip(
            candidates in proptest::collection::vec((any_event(), 0i64..10), 0..30)
        ) {
            let journal = valid_journal(candidates);
            let text = serde_json::to_string(&journal).unwrap();
            let back: Vec<Recorded> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &journal);
        }
    }

    #[test]
    fn the_ledger_facts_and_leg_progress_follow_the_journal() {
        use crate::coverage::Span;
        use crate::ledger::{Effect, Handoff, Ledger, PlanStep, StepStatus};
        let plan = |done: bool| {
            let status = if done { StepStatus::Done } else { StepStatus::InProgress };
            Effect::Plan(vec![PlanStep { title: "lexer".into(), status }])
        };
        let leg = |leg| Event::LegStarted {
            leg,
            model: "m".into(),
            system: "s".into(),
            brief: "b".into(),
            role: LegRole::Build,
        };
        let tool = |id: &str, effect: Effect| {
            [
                Event::ToolCallStarted { step: 1, call_id: id.into(), name: "t".into(), arguments: id.into() },
                Event::tool_call_finished(id.into(), "ok".into(), false, effect),
            ]
        };
        let handoff = || Event::HandoffWritten {
            handoff: Box::new(Handoff {
                from_leg: 1,
                step: 0,
                reason: "r".into(),
                emergency: false,
                narrative: "n".into(),
                narrative_error: None,
                usage: None,
                ledger: Ledger::default(),
            }),
        };
        let mut events = vec![created(), Event::Started, leg(1)];
        let read = |first, last| Effect::Read(Span { path: "a.rs".into(), first, last });
        events.extend(tool("a", read(1, 100)));
        events.extend(tool("b", plan(false)));
        events.extend(tool("c", Effect::Changed(vec!["a.rs".into()])));
        events.push(Event::ModelCallStarted { step: 2, prompt: None });
        events.extend(tool("d", plan(true)));
        let journal: Vec<Recorded> = events
            .into_iter()
            .enumerate()
            .map(|(seq, event)| Recorded { seq: seq as u64, at: Timestamp(0), event })
            .collect();
        let mut state = fold(TaskId::from_entropy(3), &journal).unwrap();
        let work = &state.work;
        assert_eq!(work.files_read, ["a.rs"]);
        assert!(work.plan_step_completed && work.leg_progress);
        assert_eq!(work.plan[0].status, StepStatus::Done);

        // A leg that reads on is not idle; one that only re-reads is; one whose commands changed the
        // worktree (a checkpoint) is not.
        let mut next = |event: Event| {
            let recorded = Recorded { seq: state.next_seq, at: Timestamp(0), event };
            state.apply(&recorded).unwrap();
            (state.work.leg_new, state.work.leg_seen, state.work.idle_legs)
        };
        next(Event::HandoffStarted { reason: "r".into(), emergency: true, window: Some(9000) });
        next(handoff());
        next(leg(2));
        for event in tool("e", read(50, 150)) {
            next(event);
        }
        assert_eq!(next(handoff()), (1, 0, 0), "lines 101-150 were new");
        next(leg(3));
        next(tool("f", read(1, 150))[0].clone());
        assert_eq!(next(tool("f", read(1, 150))[1].clone()), (0, 1, 0));
        next(Event::HandoffStarted { reason: "r".into(), emergency: true, window: Some(12_000) });
        assert_eq!(next(handoff()), (0, 1, 1), "a leg that saw nothing new is idle");
        next(leg(4));
        next(Event::Checkpointed { commit: "c".into(), evidence: "e".into() });
        next(handoff());
        let work = &state.work;
        assert_eq!(work.files_read, ["a.rs"]);
        assert_eq!((work.handoffs, work.idle_legs, work.learned_window), (4, 0, Some(9000)));
        assert!(work.handoff_in_flight.is_none());
    }

    #[test]
    fn what_subtasks_spent_counts_against_the_parent() {
        use crate::review::SubtaskOutcome;
        let mut money = Money::default();
        let ended = |micros| Event::SubtaskEnded {
            key: "s1".into(),
            outcome: SubtaskOutcome {
                verified: true,
                commit: None,
                detail: String::new(),
                spent: Credits::from_micros(micros),
                open_findings: 0,
                diff: None,
                checks: Vec::new(),
            },
        };
        let charge = Charge { kind: crate::account::ChargeKind::Input, amount: Credits::from_micros(5) };
        money.apply(Timestamp(1), &Event::Settled { key: "k".into(), charges: vec![charge] });
        money.apply(Timestamp(2), &ended(30));
        money.apply(Timestamp(3), &ended(7));
        assert_eq!(
            (money.spent, money.delegated, money.spent_in_all()),
            (Credits::from_micros(5), Credits::from_micros(37), Credits::from_micros(42))
        );
    }

    #[test]
    fn every_tool_call_id_is_unique_within_the_task() {
        let calls = |ids: &[&str]| ModelResponse {
            parts: ids
                .iter()
                .map(|id| Part::ToolCall { id: (*id).into(), name: "shell".into(), arguments: "{}".into() })
                .collect(),
            usage: Default::default(),
            finish: crate::chat::FinishReason::ToolUse,
        };
        let ids = |response: &ModelResponse| response.tool_calls().map(|(id, _, _)| id.to_owned()).collect::<Vec<_>>();
        let mut work = Work::default();
        let first = work.with_unique_call_ids(calls(&["call_0", "call_1"]));
        assert_eq!(ids(&first), ["call_0", "call_1"], "fresh ids are kept");
        work.call_ids.extend(ids(&first));
        work.steps = 1;
        // The next answer numbers its calls from 0 again, repeats one within itself, and has none.
        let second = work.with_unique_call_ids(calls(&["call_0", "call_7", "call_7", ""]));
        assert_eq!(ids(&second), ["call_0_s2", "call_7", "call_7_s2", "call_s2"]);
    }

    #[test]
    fn malformed_journals_are_named() {
        let id = TaskId::from_entropy(1);
        assert_eq!(fold(id.clone(), &[]), Err(FoldError::Empty));
        let started_first = [Recorded { seq: 0, at: Timestamp(0), event: Event::Started }];
        assert_eq!(fold(id.clone(), &started_first), Err(FoldError::NotCreatedFirst("started")));
        let gap = [
            Recorded { seq: 0, at: Timestamp(0), event: created() },
            Recorded { seq: 2, at: Timestamp(0), event: Event::Started },
        ];
        assert_eq!(fold(id.clone(), &gap), Err(FoldError::Gap { expected: 1, found: 2 }));
        let twice = [
            Recorded { seq: 0, at: Timestamp(0), event: created() },
            Recorded { seq: 1, at: Timestamp(0), event: created() },
        ];
        let err = fold(id, &twice).unwrap_err();
        assert_eq!(err.to_string(), "event 1: a queued task cannot take a `task_created` event");
    }
}
