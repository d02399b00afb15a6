use serde::{Deserialize, Serialize};

use crate::account::Charge;
use crate::chat::{ModelResponse, Usage};
use crate::decision::{Answer, Decision};
use crate::environment::Phase;
use crate::ledger::{Effect, Handoff};
use crate::money::Credits;
use crate::review::{Finding, FindingStatus, LegRole, Subtask, SubtaskOutcome};
use crate::spec::{Budget, TaskSpec};
use crate::status::StopReason;
use crate::time::Timestamp;

/// The schema version written with every event. Bump it when an event's shape changes, and teach
/// the store's decoder to upgrade the older shape: old journals must stay readable.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Something that happened to a task. A task's journal is the ordered list of its events, and the
/// journal alone determines the task's state (see [`crate::fold`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Always the first event (seq 0). The base commit is resolved once, so the task is pinned to
    /// it even if the base ref moves later.
    TaskCreated { spec: Box<TaskSpec>, base_commit: String, branch: String },
    /// Work begins for the first time.
    Started,
    /// Work continues after a pause, a decision, a failed verification or a review.
    Resumed { detail: String },
    /// A decision point: the task waits for a human, spending nothing.
    WaitingForHuman { question: String },
    /// The harness runs the acceptance checks.
    VerificationStarted,
    /// The checks passed and a reviewer reads the diff.
    ReviewStarted,
    /// Stopped with everything saved; resumable.
    Paused { reason: StopReason, detail: String },
    /// Ended for good: `verified` means done, any other reason means failed.
    Finished { reason: StopReason, detail: String },
    /// Ended for good by a user.
    Cancelled { detail: String },

    // The work of a running task. None of these changes the task's status.
    /// A leg begins: a fresh model context with this system prompt, opened by `brief` (the request
    /// for the first leg, a handoff for later ones).
    LegStarted {
        leg: u32,
        model: String,
        system: String,
        brief: String,
        #[serde(default)]
        role: LegRole,
    },
    /// A model call is about to be made (intent before effect), with the prompt's estimated size and
    /// the context window it is measured against.
    ModelCallStarted {
        step: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<PromptSize>,
    },
    /// The model answered; the answer joins the transcript.
    ModelCallFinished { step: u32, response: ModelResponse },
    /// The call failed for good (after the client's own retries).
    ModelCallFailed { step: u32, error: String },
    /// A tool call is about to run (intent before effect).
    ToolCallStarted { step: u32, call_id: String, name: String, arguments: String },
    /// What the tool call produced; the result joins the transcript, the effect the ledger.
    ToolCallFinished {
        call_id: String,
        output: String,
        is_error: bool,
        #[serde(default, skip_serializing_if = "Effect::is_none")]
        effect: Effect,
        /// The output's [`digest`](crate::digest); absent in journals written before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<u64>,
    },
    /// A message from the harness to the agent (check results, a reminder), added to the transcript.
    Feedback { text: String },
    /// A follow-up from the user (`POST /tasks/{id}/messages`), number `number` of the task's,
    /// added to the transcript before the next model call.
    MessageReceived { number: u64, text: String },
    /// The agent made no progress for a while; it is told so once before the task pauses as stuck.
    Nudged { reason: String, text: String },
    /// One acceptance check ran in the sandbox, on the environment of this hash.
    CheckFinished {
        name: String,
        exit_code: i32,
        passed: bool,
        output: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        environment: String,
    },
    /// The task's machines are built on the environment of this hash (its snapshot, if it has one,
    /// reused or built: `detail` says which, and how long the build took).
    EnvironmentPrepared {
        hash: String,
        /// The key of the snapshot beneath its machines, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
        detail: String,
    },
    /// The egress proxy refused a connection of a command in `phase`.
    ConnectionRefused { host: String, port: u16, phase: Phase },
    /// Protected files the agent changed were put back as they are in the base commit.
    ProtectedRestored { paths: Vec<String> },
    /// The work so far is committed on the task branch.
    Checkpointed { commit: String, evidence: String },
    /// The task branch was pushed to `remote` at `commit`, or the push failed with `error` (the
    /// next checkpoint tries again).
    Pushed {
        commit: String,
        remote: crate::RemoteUrl,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The task's pull request on its forge was opened or brought up to date with its commit, and
    /// the follow-ups it had not answered yet were answered there by a comment naming the commit
    /// (`answered`, their texts), unless that comment failed (`reply_error`).
    PullRequestPublished {
        pull_request: PullRequestRef,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        answered: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_error: Option<String>,
    },
    /// Opening or updating the pull request failed (the task's work is pushed all the same).
    PullRequestFailed { commit: String, error: String },
    /// The leg's context is nearly full (or the provider refused it): the leg is about to write its
    /// handoff. `window` is the smaller context window baton uses from now on when the provider
    /// refused a prompt that baton's estimate said would fit.
    HandoffStarted {
        reason: String,
        emergency: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window: Option<u64>,
    },
    /// The handoff is written; the next leg starts from it (a `leg_started` follows in the same write).
    HandoffWritten { handoff: Box<Handoff> },
    /// Credits held for a charged action about to start, with the charges it is estimated at. The
    /// store admits it against the account's policy in the same transaction, or refuses the write.
    Reserved { key: String, charges: Vec<Charge> },
    /// The action ended: its hold is released and what it really cost is charged (nothing for a
    /// call the provider refused).
    Settled { key: String, charges: Vec<Charge> },
    /// The action settled just before cost more than it held: the provider billed more than any
    /// tokenizer's count of the prompt, or billed retried attempts too. All of it is charged; the
    /// task pauses before its next action, so the limits are checked again before it goes on.
    Overran { key: String, held: Credits, charged: Credits },
    /// An attempt of a model call failed after the provider may have billed it: `usage` as the
    /// stream reported it before it broke, or `None` when it said nothing (charged at the hold).
    ModelAttemptBilled {
        step: u32,
        attempt: u32,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    /// The task's limits were changed by a user (raised after a pause, typically).
    BudgetChanged { budget: Budget },
    /// Most of a limit is used: the agent is told what remains, once per change of limits.
    BudgetLow { text: String },
    /// A decision point: the task waits for a human, spending nothing.
    DecisionRequested { decision: Decision },
    /// A human answered; the task may go on.
    DecisionMade { id: String, answer: Answer },
    /// A review leg reported what it found in the diff up to `reviewed` (a commit); empty: clean.
    FindingsReported { round: u32, reviewed: String, findings: Vec<Finding> },
    /// A build leg or a human resolved a finding or declared it irrelevant.
    FindingUpdated { id: String, status: FindingStatus, note: String, by: String },
    /// The captain's plan, validated: the subtasks in the order they run.
    PlanSubmitted { subtasks: Vec<Subtask> },
    /// A subtask of the plan became a child task.
    SubtaskCreated { key: String, task: String },
    /// Of a task's attempts, this one's result becomes the task's, for `reason`.
    AttemptPicked { key: String, reason: String },
    /// A child task ended, or stopped.
    SubtaskEnded { key: String, outcome: SubtaskOutcome },
    /// The task had ended when the user sent it a follow-up: `task` continues its branch with it.
    Continued { task: String },
}

/// A task's pull request, as the forge last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRef {
    /// GitHub's and Gitea's number, GitLab's `iid`.
    pub number: u64,
    /// Its page.
    pub url: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    pub draft: bool,
    /// The commit it shows.
    pub commit: String,
}

impl Event {
    /// A tool call's result, with its output's digest taken now.
    pub fn tool_call_finished(call_id: String, output: String, is_error: bool, effect: Effect) -> Event {
        let digest = Some(crate::digest(&output));
        Event::ToolCallFinished { call_id, output, is_error, effect, digest }
    }

    /// The event's type name, as written in the journal's `kind` column and in its JSON `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::TaskCreated { .. } => "task_created",
            Event::Started => "started",
            Event::Resumed { .. } => "resumed",
            Event::WaitingForHuman { .. } => "waiting_for_human",
            Event::VerificationStarted => "verification_started",
            Event::ReviewStarted => "review_started",
            Event::Paused { .. } => "paused",
            Event::Finished { .. } => "finished",
            Event::Cancelled { .. } => "cancelled",
            Event::LegStarted { .. } => "leg_started",
            Event::ModelCallStarted { .. } => "model_call_started",
            Event::ModelCallFinished { .. } => "model_call_finished",
            Event::ModelCallFailed { .. } => "model_call_failed",
            Event::ToolCallStarted { .. } => "tool_call_started",
            Event::ToolCallFinished { .. } => "tool_call_finished",
            Event::Feedback { .. } => "feedback",
            Event::MessageReceived { .. } => "message_received",
            Event::Nudged { .. } => "nudged",
            Event::CheckFinished { .. } => "check_finished",
            Event::EnvironmentPrepared { .. } => "environment_prepared",
            Event::ConnectionRefused { .. } => "connection_refused",
            Event::ProtectedRestored { .. } => "protected_restored",
            Event::Checkpointed { .. } => "checkpointed",
            Event::Pushed { .. } => "pushed",
            Event::PullRequestPublished { .. } => "pull_request_published",
            Event::PullRequestFailed { .. } => "pull_request_failed",
            Event::HandoffStarted { .. } => "handoff_started",
            Event::HandoffWritten { .. } => "handoff_written",
            Event::Reserved { .. } => "reserved",
            Event::Settled { .. } => "settled",
            Event::Overran { .. } => "overran",
            Event::ModelAttemptBilled { .. } => "model_attempt_billed",
            Event::BudgetChanged { .. } => "budget_changed",
            Event::BudgetLow { .. } => "budget_low",
            Event::DecisionRequested { .. } => "decision_requested",
            Event::DecisionMade { .. } => "decision_made",
            Event::FindingsReported { .. } => "findings_reported",
            Event::FindingUpdated { .. } => "finding_updated",
            Event::PlanSubmitted { .. } => "plan_submitted",
            Event::SubtaskCreated { .. } => "subtask_created",
            Event::SubtaskEnded { .. } => "subtask_ended",
            Event::AttemptPicked { .. } => "attempt_picked",
            Event::Continued { .. } => "continued",
        }
    }
}

/// A prompt's estimated tokens, and the input room of the leg's context window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSize {
    pub tokens: u64,
    pub room: u64,
}

/// An event as the journal holds it: its position in the task's journal and when it was appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub seq: u64,
    pub at: Timestamp,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_matches_the_serialised_tag() {
        let events = [
            Event::Started,
            Event::Resumed { detail: "x".into() },
            Event::WaitingForHuman { question: "q".into() },
            Event::VerificationStarted,
            Event::ReviewStarted,
            Event::Paused { reason: StopReason::Stuck, detail: "d".into() },
            Event::Finished { reason: StopReason::ModelError, detail: "d".into() },
            Event::Cancelled { detail: "d".into() },
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.kind());
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        }
    }
}
