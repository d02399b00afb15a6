use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Where a task is in its life. `Done`, `Failed` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    /// Waiting for a human's answer to a decision point.
    Waiting,
    /// Stopped with its work saved; resumable.
    Paused,
    /// The harness is running the acceptance checks.
    Verifying,
    /// A reviewer is reading the verified diff.
    Reviewing,
    Done,
    Failed,
    Cancelled,
}

/// Why a task stopped running, for a pause or for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Verified,
    ChecksFailed,
    BudgetExhausted,
    TimeWindowExhausted,
    Stuck,
    Cancelled,
    EnvironmentError,
    ModelError,
    /// Legs kept filling their context and handing off without progress.
    HandoffLoop,
    /// A subtask of the plan stopped without being verified.
    SubtaskStopped,
}

/// A name that is not one of the known statuses or stop reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{name}` (expected one of: {expected})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub expected: String,
}

/// An event that the task's current lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a {from} task cannot take a `{event}` event")]
    NotAllowed { from: Status, event: &'static str },
    #[error("stop reason `{reason}` does not fit a `{event}` event")]
    ReasonMismatch { reason: StopReason, event: &'static str },
}

/// The part of a task's state that the state machine decides: its status, and why it stopped when
/// it is stopped. `stop_reason` is `Some` exactly when the status is paused or terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub status: Status,
    pub stop_reason: Option<StopReason>,
}

impl Lifecycle {
    /// The lifecycle of a task that has just been created.
    pub const CREATED: Lifecycle = Lifecycle { status: Status::Queued, stop_reason: None };

    /// The lifecycle after `event`, or why `event` is not allowed now.
    pub fn apply(self, event: &Event) -> Result<Lifecycle, TransitionError> {
        use Status::*;
        let from = self.status;
        let not_allowed = || TransitionError::NotAllowed { from, event: event.kind() };
        let mismatch = |reason| TransitionError::ReasonMismatch { reason, event: event.kind() };
        let to = |status| Ok(Lifecycle { status, stop_reason: None });
        let stopped = |status, reason| Ok(Lifecycle { status, stop_reason: Some(reason) });
        match (event, from) {
            (Event::TaskCreated { .. }, _) => Err(not_allowed()),
            // Settling a finding is bookkeeping, after the end too (a nit left open by a done task).
            (Event::FindingUpdated { .. }, _) => Ok(self),
            // An ended task's branch goes on in another task (once), unless it was thrown away.
            (Event::Continued { .. }, Done | Failed) => Ok(self),
            // Bookkeeping, after the end too (`baton pr` on a task that ended), but not for a
            // task thrown away.
            (Event::PullRequestPublished { .. } | Event::PullRequestFailed { .. }, Cancelled) => Err(not_allowed()),
            (Event::PullRequestPublished { .. } | Event::PullRequestFailed { .. }, _) => Ok(self),
            (_, Done | Failed | Cancelled) => Err(not_allowed()),
            (Event::Started, Queued) => to(Running),
            (Event::Resumed { .. }, Waiting | Paused | Verifying | Reviewing) => to(Running),
            (Event::WaitingForHuman { .. } | Event::DecisionRequested { .. }, Running) => to(Waiting),
            (Event::DecisionMade { .. }, Waiting) => to(Running),
            (Event::VerificationStarted, Running) => to(Verifying),
            (Event::ReviewStarted, Verifying) => to(Reviewing),
            (Event::Paused { reason, .. }, Running | Waiting | Verifying | Reviewing) => match reason {
                StopReason::Verified | StopReason::Cancelled => Err(mismatch(*reason)),
                _ => stopped(Paused, *reason),
            },
            (Event::Finished { reason, .. }, Running | Verifying | Reviewing) => match reason {
                StopReason::Verified if from == Running => Err(not_allowed()),
                StopReason::Verified => stopped(Done, *reason),
                StopReason::Cancelled => Err(mismatch(*reason)),
                _ => stopped(Failed, *reason),
            },
            (Event::Cancelled { .. }, _) => stopped(Cancelled, StopReason::Cancelled),
            (Event::BudgetChanged { .. }, _) => Ok(self),
            (
                Event::Reserved { .. }
                | Event::Settled { .. }
                | Event::Overran { .. }
                | Event::ModelAttemptBilled { .. },
                Running | Verifying | Reviewing,
            ) => Ok(self),
            // A leg works the same way building (running) or reviewing.
            (
                Event::LegStarted { .. }
                | Event::ModelCallStarted { .. }
                | Event::ModelCallFinished { .. }
                | Event::ModelCallFailed { .. }
                | Event::ToolCallStarted { .. }
                | Event::ToolCallFinished { .. }
                | Event::Feedback { .. }
                | Event::MessageReceived { .. },
                Running | Reviewing,
            )
            | (Event::FindingsReported { .. }, Reviewing) => Ok(self),
            (
                Event::Nudged { .. }
                | Event::BudgetLow { .. }
                | Event::PlanSubmitted { .. }
                | Event::SubtaskCreated { .. }
                | Event::SubtaskEnded { .. }
                | Event::AttemptPicked { .. }
                | Event::HandoffStarted { .. }
                | Event::HandoffWritten { .. },
                Running,
            )
            | (Event::CheckFinished { .. } | Event::ProtectedRestored { .. }, Verifying)
            | (Event::EnvironmentPrepared { .. } | Event::ConnectionRefused { .. }, Running | Verifying | Reviewing)
            | (Event::Checkpointed { .. } | Event::Pushed { .. }, Running | Verifying | Reviewing) => Ok(self),
            _ => Err(not_allowed()),
        }
    }
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Running,
        Status::Waiting,
        Status::Paused,
        Status::Verifying,
        Status::Reviewing,
        Status::Done,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Waiting => "waiting",
            Status::Paused => "paused",
            Status::Verifying => "verifying",
            Status::Reviewing => "reviewing",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Done | Status::Failed | Status::Cancelled)
    }

    /// Queued, running, verifying or reviewing: it goes on as soon as a worker takes it up,
    /// waiting for no one.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Queued | Status::Running | Status::Verifying | Status::Reviewing)
    }

    /// Paused or terminal: the states that carry a stop reason.
    pub fn is_stopped(self) -> bool {
        self == Status::Paused || self.is_terminal()
    }
}

impl StopReason {
    pub const ALL: [StopReason; 10] = [
        StopReason::Verified,
        StopReason::ChecksFailed,
        StopReason::BudgetExhausted,
        StopReason::TimeWindowExhausted,
        StopReason::Stuck,
        StopReason::Cancelled,
        StopReason::EnvironmentError,
        StopReason::ModelError,
        StopReason::HandoffLoop,
        StopReason::SubtaskStopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Verified => "verified",
            StopReason::ChecksFailed => "checks_failed",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::TimeWindowExhausted => "time_window_exhausted",
            StopReason::Stuck => "stuck",
            StopReason::Cancelled => "cancelled",
            StopReason::EnvironmentError => "environment_error",
            StopReason::ModelError => "model_error",
            StopReason::HandoffLoop => "handoff_loop",
            StopReason::SubtaskStopped => "subtask_stopped",
        }
    }
}

fn parse_name<T: Copy>(
    kind: &'static str,
    all: &[T],
    name_of: fn(T) -> &'static str,
    text: &str,
) -> Result<T, UnknownName> {
    all.iter().copied().find(|item| name_of(*item) == text).ok_or_else(|| UnknownName {
        kind,
        name: text.to_owned(),
        expected: all.iter().map(|item| name_of(*item)).collect::<Vec<_>>().join(", "),
    })
}

impl FromStr for Status {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Status, UnknownName> {
        parse_name("status", &Status::ALL, Status::as_str, text)
    }
}

impl FromStr for StopReason {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<StopReason, UnknownName> {
        parse_name("stop reason", &StopReason::ALL, StopReason::as_str, text)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(lifecycle: Lifecycle, events: &[Event]) -> Result<Lifecycle, TransitionError> {
        events.iter().try_fold(lifecycle, |l, e| l.apply(e))
    }

    fn paused(reason: StopReason) -> Event {
        Event::Paused { reason, detail: String::new() }
    }

    fn finished(reason: StopReason) -> Event {
        Event::Finished { reason, detail: String::new() }
    }

    #[test]
    fn happy_path_ends_done_and_verified() {
        let events = [Event::Started, Event::VerificationStarted, Event::ReviewStarted, finished(StopReason::Verified)];
        let end = after(Lifecycle::CREATED, &events).unwrap();
        assert_eq!(end, Lifecycle { status: Status::Done, stop_reason: Some(StopReason::Verified) });
    }

    #[test]
    fn claimed_done_is_not_verified() {
        // A running task cannot jump to done: only a verification can make it so.
        let running = after(Lifecycle::CREATED, &[Event::Started]).unwrap();
        assert_eq!(
            running.apply(&finished(StopReason::Verified)),
            Err(TransitionError::NotAllowed { from: Status::Running, event: "finished" })
        );
    }

    #[test]
    fn pause_and_resume_clear_the_stop_reason() {
        let events = [Event::Started, paused(StopReason::BudgetExhausted)];
        let paused_state = after(Lifecycle::CREATED, &events).unwrap();
        assert_eq!(paused_state.stop_reason, Some(StopReason::BudgetExhausted));
        let resumed = paused_state.apply(&Event::Resumed { detail: "topped up".into() }).unwrap();
        assert_eq!(resumed, Lifecycle { status: Status::Running, stop_reason: None });
    }

    #[test]
    fn an_ended_tasks_pull_request_is_bookkeeping_unless_it_was_thrown_away() {
        let events = [Event::Started, Event::VerificationStarted, Event::ReviewStarted, finished(StopReason::Verified)];
        let done = after(Lifecycle::CREATED, &events).unwrap();
        let failed = Event::PullRequestFailed { commit: "c".into(), error: "the forge said no".into() };
        assert_eq!(done.apply(&failed), Ok(done));
        let cancelled = Lifecycle::CREATED.apply(&Event::Cancelled { detail: String::new() }).unwrap();
        assert_eq!(
            cancelled.apply(&failed),
            Err(TransitionError::NotAllowed { from: Status::Cancelled, event: "pull_request_failed" })
        );
    }

    #[test]
    fn terminal_states_take_nothing() {
        let cancelled = Lifecycle::CREATED.apply(&Event::Cancelled { detail: String::new() }).unwrap();
        for event in
            [Event::Started, Event::Resumed { detail: String::new() }, Event::Cancelled { detail: String::new() }]
        {
            assert_eq!(
                cancelled.apply(&event),
                Err(TransitionError::NotAllowed { from: Status::Cancelled, event: event.kind() })
            );
        }
    }

    #[test]
    fn reasons_must_fit_their_event() {
        let running = after(Lifecycle::CREATED, &[Event::Started]).unwrap();
        assert_eq!(
            running.apply(&paused(StopReason::Verified)),
            Err(TransitionError::ReasonMismatch { reason: StopReason::Verified, event: "paused" })
        );
        assert_eq!(
            running.apply(&finished(StopReason::Cancelled)),
            Err(TransitionError::ReasonMismatch { reason: StopReason::Cancelled, event: "finished" })
        );
        let failed = running.apply(&finished(StopReason::ChecksFailed)).unwrap();
        assert_eq!(failed, Lifecycle { status: Status::Failed, stop_reason: Some(StopReason::ChecksFailed) });
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
            assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{status}\""));
        }
        for reason in StopReason::ALL {
            assert_eq!(reason.as_str().parse::<StopReason>(), Ok(reason));
            assert_eq!(serde_json::to_string(&reason).unwrap(), format!("\"{reason}\""));
        }
        let err = "finished".parse::<Status>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown status `finished` (expected one of: queued, running, waiting, paused, verifying, reviewing, done, failed, cancelled)"
        );
    }
}
