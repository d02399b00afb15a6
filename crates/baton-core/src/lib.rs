//! The pure domain of baton: what a task is, the events of its journal, and the state machine that
//! folds those events into the task's state.
//!
//! Nothing here does IO, reads the clock or draws random numbers: timestamps and entropy come in as
//! arguments, so every function can be replayed and property-tested.

mod access;
mod account;
mod chat;
mod coverage;
mod decision;
mod environment;
mod event;
mod hook;
mod id;
mod ledger;
mod money;
mod notice;
mod review;
mod schedule;
mod secret;
mod source;
mod spec;
mod state;
mod status;
mod steady;
mod template;
mod time;

pub use access::{Scope, TOKEN_PREFIX, Token, TokenHash, check_token_name, token_secret};
pub use account::{AutoReload, Charge, ChargeKind, Entry, EntryKind, Month, Policy, Position, Rates, Refusal, total};
pub use chat::{FinishReason, Message, ModelRequest, ModelResponse, Part, Replay, Role, ToolCall, ToolSpec, Usage};
pub use coverage::{Coverage, Span, digest};
pub use decision::{Answer, ApprovalPolicy, BadRule, DEFAULT_RULES, Decision, DecisionKind};
pub use environment::{
    ENVIRONMENT_FILE, Environment, EnvironmentError, Input, MAX_ENVIRONMENT_FILE, OwnCredentials, Phase,
    ServerTransport, Service, ToolReach, ToolServer,
};
pub use event::{EVENT_SCHEMA_VERSION, Event, PromptSize, PullRequestRef, Recorded};
pub use hook::{Delivery, DeliveryOutcome, Hook, HookKind, HookRule};
pub use id::{InvalidTaskId, TaskId};
pub use ledger::{Effect, FileChange, Handoff, HandoffDue, Ledger, PlanStep, StepStatus, Urgency, fence_for};
pub use money::{Credits, InvalidCredits};
pub use notice::{Format, Notice, NoticeKind, Notification, NotificationState, Subscription};
pub use review::{
    CheckMark, DiffStat, Finding, FindingStatus, LegRole, Severity, Subtask, SubtaskOutcome, SubtaskState,
};
pub use schedule::{CatchUp, DEFAULT_MAX_FAILURES, Firing, FiringOutcome, Schedule, ScheduleMode};
pub use secret::{Secret, redact};
pub use source::{RemoteUrl, RepoSource, UrlError};
pub use spec::{Budget, CheckSpec, Continued, MAX_ATTEMPTS, Pick, SpecError, TaskSpec, branch_name, slug};
pub use state::{CheckResult, FoldError, LegRecord, Money, Overrun, Stop, TaskState, Work, fold};
pub use status::{Lifecycle, Status, StopReason, TransitionError, UnknownName};
pub use template::{Template, check_name};
pub use time::Timestamp;

/// A hash that is the same in every process and every release of baton (std's `DefaultHasher` is
/// not promised to stay the same across Rust releases), for hashes a journal keeps: the first 8
/// bytes of the SHA-256 of `parts`, each length-prefixed so that no two lists of parts collide.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod stable_hash_tests {
    /// Pinned: a journal written by one build of baton is read by the next.
    #[test]
    fn the_stable_hash_is_pinned_and_parts_do_not_run_together() {
        assert_eq!(super::stable_hash(&[b"shell", b"{\"command\":\"ls\"}"]), PINNED);
        assert_ne!(super::stable_hash(&[b"ab", b"c"]), super::stable_hash(&[b"a", b"bc"]));
    }

    const PINNED: u64 = 14_312_261_841_476_121_047;
}
