//! Durable storage for baton: the append-only journal of every task, a summary row per task for
//! listing, and a content-addressed blob store for payloads too large to keep inline.
//!
//! The journal is the single source of truth. Appends name the seq they expect to write, so two
//! writers can never both take the same slot, and they are checked against the task's state machine
//! in the same transaction, so an invalid transition never reaches the journal.

mod account;
mod blob;
mod codec;
mod db;
mod error;
mod hooks;
mod migrate;
mod notices;
mod schedules;
mod store;
mod templates;
mod tokens;

use async_trait::async_trait;
use baton_core::{
    Credits, Delivery, DeliveryOutcome, Entry, EntryKind, Event, Firing, FiringOutcome, Hook, Notice, Notification,
    NotificationState, Policy, Position, Recorded, Schedule, Status, StopReason, Subscription, TaskId, TaskState,
    Template, Timestamp, Token, TokenHash, fold,
};

pub use blob::{BlobHash, BlobStore, InvalidBlobHash};
pub use codec::INLINE_PAYLOAD_LIMIT;
pub use error::StoreError;
pub use migrate::Migrated;
pub use schedules::Firings;
pub use store::{SqlStore, redacted};

/// One row of `baton task list`: what can be shown without replaying a journal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskSummary {
    pub id: TaskId,
    pub request: String,
    pub branch: String,
    pub status: Status,
    pub stop_reason: Option<StopReason>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub next_seq: u64,
}

/// A follow-up the user sent to a task: number `number` of the task's, from 1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FollowUp {
    pub number: u64,
    pub text: String,
    pub at: Timestamp,
}

/// The right to run a task, held by one process at a time until `expires_at` unless renewed. Every
/// append made under it is checked against the task's current epoch, so a holder that lost it (a
/// process frozen past its expiry, then woken) can no longer write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task: TaskId,
    pub holder: String,
    /// Grows each time the lease changes hands.
    pub epoch: u64,
    pub expires_at: Timestamp,
}

/// What [`Store::claim_next`] looks for.
#[derive(Debug, Clone, Copy)]
pub struct NextClaim<'a> {
    pub holder: &'a str,
    pub at: Timestamp,
    pub ttl_ms: i64,
    /// Queued tasks of an owner with this many live leases are passed over.
    pub per_owner: Option<u32>,
    /// Tasks the caller will not run now (running already, waiting, refused).
    pub skip: &'a [TaskId],
}

/// A schedule as the store keeps it: its definition and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SavedSchedule {
    pub schedule: Schedule,
    /// Why it is paused (by a person, or by itself after failed runs); `None` while it fires.
    pub paused: Option<String>,
    /// Its firings up to this time have been considered (started, skipped or missed).
    pub cursor: Timestamp,
    /// Runs that failed before this time do not count towards its next pause.
    pub resumed_at: Timestamp,
    pub created_at: Timestamp,
}

/// A hook as the store keeps it: its definition and the secret its deliveries are signed with
/// (never shown by the API or serialized).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SavedHook {
    #[serde(flatten)]
    pub hook: Hook,
    #[serde(skip)]
    pub secret: String,
    pub created_at: Timestamp,
}

/// A subscription as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SavedSubscription {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// What its notifications are signed with (never shown or serialized).
    #[serde(skip)]
    pub secret: String,
    /// The notices up to this one have been queued for it (or passed over).
    pub cursor: i64,
    /// Notifications given up on since the last one delivered.
    pub failures: u32,
    /// Why it no longer sends, when it does not.
    pub disabled: Option<String>,
    pub created_at: Timestamp,
}

/// What claiming a verified delivery by its sender's id found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The first with this id: logged as given, under this number.
    New(i64),
    /// Received before, logged under `seq` (nothing was written now).
    Seen { seq: i64, earlier: Delivery },
}

/// Where journals live. SQLite is the embedded default; other backends implement the same trait so
/// callers never change.
#[async_trait]
pub trait Store: Send + Sync {
    /// Appends `events` at `expected_seq`, which must be the journal's next seq (0 to create the
    /// task, whose first event must be `task_created`). Returns the next seq after the append.
    ///
    /// Fails with [`StoreError::Conflict`] if another writer got there first, with
    /// [`StoreError::Rejected`] if an event is not allowed by the task's state machine, and with
    /// [`StoreError::Refused`] if the account's policy refuses a `reserved` event; in every case
    /// nothing is written. `reserved` and `settled` events hold and charge the account in the same
    /// transaction.
    async fn append(
        &self,
        task: &TaskId,
        expected_seq: u64,
        at: Timestamp,
        events: &[Event],
    ) -> Result<u64, StoreError>;

    /// As [`Store::append`], and only while `lease` is the task's current lease (same holder and
    /// epoch; expiry is the holder's to watch): otherwise [`StoreError::Fenced`] and nothing is
    /// written.
    async fn append_leased(
        &self,
        lease: &Lease,
        expected_seq: u64,
        at: Timestamp,
        events: &[Event],
    ) -> Result<u64, StoreError>;

    /// Takes the task's lease for `holder` until `at + ttl_ms`, if it is free, expired or already
    /// `holder`'s (then it is renewed, same epoch); `None` while another holder has it.
    async fn claim(&self, task: &TaskId, holder: &str, at: Timestamp, ttl_ms: i64)
    -> Result<Option<Lease>, StoreError>;

    /// Takes the lease of the next task to run for `next.holder`, the way
    /// [`Store::claim`] takes one: first a task left interrupted (running, verifying or reviewing
    /// with no live lease: its holder died or let go), then queued ones by priority, higher first;
    /// among equals owners take turns (an owner's next task waits behind every other owner's task
    /// with as few of its owner's before it, live ones included), oldest first. Processes claiming
    /// at once each get a different task (PostgreSQL: `FOR UPDATE SKIP LOCKED`); `None` when there
    /// is none.
    async fn claim_next(&self, next: &NextClaim<'_>) -> Result<Option<Lease>, StoreError>;

    /// Wakes `wake` each time any process makes a task runnable (creates or resumes one, or lets
    /// its lease go), from now on for as long as the runtime runs: PostgreSQL's `LISTEN`,
    /// reconnected when lost. A store that cannot tell (SQLite, PostgreSQL behind a pooler in
    /// transaction mode) never wakes it: callers poll as well.
    async fn watch_runnable(&self, wake: std::sync::Arc<tokio::sync::Notify>);

    /// Every lease not expired at `at`.
    async fn live_leases(&self, at: Timestamp) -> Result<Vec<Lease>, StoreError>;

    /// Renews `lease` until `at + ttl_ms`; `None` when it is no longer this holder's.
    async fn renew(&self, lease: &Lease, at: Timestamp, ttl_ms: i64) -> Result<Option<Lease>, StoreError>;

    /// The task's lease as it stands (released and expired ones included), if it ever had one.
    async fn lease(&self, task: &TaskId) -> Result<Option<Lease>, StoreError>;

    /// Takes `stale` (the lease of a holder known to be dead) for `holder` before it expires, with
    /// a new epoch; `None` if it changed meanwhile.
    async fn take_over(
        &self,
        stale: &Lease,
        holder: &str,
        at: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError>;

    /// Gives `lease` up, if it is still held.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The task's events from `from_seq` on, in order.
    async fn events(&self, task: &TaskId, from_seq: u64) -> Result<Vec<Recorded>, StoreError>;

    /// All tasks, newest first, optionally only those with `status`.
    async fn list(&self, status: Option<Status>) -> Result<Vec<TaskSummary>, StoreError>;

    /// The one task whose id starts with `prefix`.
    async fn resolve(&self, prefix: &str) -> Result<TaskId, StoreError>;

    /// The account's position at `at`: balance, holds, the month's spend and reloads, policy.
    async fn account(&self, at: Timestamp) -> Result<Position, StoreError>;

    async fn set_policy(&self, policy: Policy) -> Result<(), StoreError>;

    /// Adds credits to the account (a grant or a top-up, positive).
    async fn credit(&self, at: Timestamp, kind: EntryKind, amount: Credits, note: &str)
    -> Result<Position, StoreError>;

    /// The newest `limit` entries of the account's ledger, newest first.
    async fn entries(&self, limit: u32) -> Result<Vec<Entry>, StoreError>;

    /// Keeps a follow-up for the task, numbered after the ones before; its number. A run journals
    /// it (`message_received`) before its next model call.
    async fn send_follow_up(&self, task: &TaskId, at: Timestamp, text: &str) -> Result<u64, StoreError>;

    /// The task's follow-ups numbered after `after`, in order.
    async fn follow_ups(&self, task: &TaskId, after: u64) -> Result<Vec<FollowUp>, StoreError>;

    /// Keeps `token` under `hash`; [`StoreError::TokenExists`] if its name was ever used.
    async fn add_token(&self, token: &Token, hash: &TokenHash) -> Result<(), StoreError>;

    /// Every token, revoked ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<Token>, StoreError>;

    /// Revokes the active token `name` at `at`; [`StoreError::NoSuchToken`] if there is none.
    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<Token, StoreError>;

    /// The active (unrevoked) token whose secret hashes to `hash`.
    async fn token(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError>;

    /// Keeps `template` under its name; [`StoreError::TemplateExists`] if the name is taken.
    async fn add_template(&self, template: &Template, at: Timestamp) -> Result<(), StoreError>;

    /// Every template, by name.
    async fn templates(&self) -> Result<Vec<Template>, StoreError>;

    /// The template `name`; [`StoreError::NoSuchTemplate`] if there is none.
    async fn template(&self, name: &str) -> Result<Template, StoreError>;

    /// Deletes the template `name` (tasks started from it stay); [`StoreError::NoSuchTemplate`] if
    /// there is none.
    async fn delete_template(&self, name: &str) -> Result<(), StoreError>;

    /// Keeps `schedule` under its name, firing from `at` on; [`StoreError::ScheduleExists`] if the
    /// name is taken.
    async fn add_schedule(&self, schedule: &Schedule, at: Timestamp) -> Result<(), StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<SavedSchedule>, StoreError>;

    /// The schedule `name`; [`StoreError::NoSuchSchedule`] if there is none.
    async fn schedule(&self, name: &str) -> Result<SavedSchedule, StoreError>;

    /// Deletes the schedule `name` and its firings (tasks it started stay).
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError>;

    /// Pauses the schedule `name` for `reason` (which replaces an earlier one's) at `at`, with a
    /// `schedule.paused` notice.
    async fn pause_schedule(&self, name: &str, reason: &str, at: Timestamp) -> Result<SavedSchedule, StoreError>;

    /// Resumes the paused schedule `name` at `at`: firings from then on; runs before do not count
    /// towards its next pause. [`StoreError::ScheduleNotPaused`] if it was not paused.
    async fn resume_schedule(&self, name: &str, at: Timestamp) -> Result<SavedSchedule, StoreError>;

    /// Moves the active schedule's cursor from `from` to `to` and records `firings` (which fell in
    /// between), in one step; [`StoreError::ScheduleChanged`] and nothing recorded if its cursor is
    /// no longer `from` or it was paused or deleted meanwhile.
    async fn advance_schedule(
        &self,
        name: &str,
        from: Timestamp,
        to: Timestamp,
        firings: &[Firing],
    ) -> Result<(), StoreError>;

    /// Records what the claimed firing at `at` came to.
    async fn settle_firing(
        &self,
        name: &str,
        at: Timestamp,
        outcome: FiringOutcome,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// The schedule's firings at or after `since`, newest first, at most `limit`.
    async fn firings(
        &self,
        name: &str,
        which: Firings,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<Firing>, StoreError>;

    /// Keeps `hook` with the `secret` its deliveries are signed with; [`StoreError::HookExists`]
    /// if the name is taken.
    async fn add_hook(&self, hook: &Hook, secret: &str, at: Timestamp) -> Result<(), StoreError>;

    /// Every hook, by name.
    async fn hooks(&self) -> Result<Vec<SavedHook>, StoreError>;

    /// The hook `name`; [`StoreError::NoSuchHook`] if there is none.
    async fn hook(&self, name: &str) -> Result<SavedHook, StoreError>;

    /// Deletes the hook `name` (its deliveries stay in the log).
    async fn delete_hook(&self, name: &str) -> Result<(), StoreError>;

    /// Logs a delivery that claims nothing (refused, or a duplicate); its number.
    async fn log_delivery(&self, delivery: &Delivery) -> Result<i64, StoreError>;

    /// Logs a verified delivery under its sender's id, unless that id was claimed before.
    async fn claim_delivery(&self, delivery: &Delivery) -> Result<Claim, StoreError>;

    /// Records what the logged delivery `seq` came to (and its task, when it has one now).
    async fn settle_delivery(
        &self,
        seq: i64,
        outcome: DeliveryOutcome,
        status: u16,
        detail: &str,
        task: Option<&str>,
    ) -> Result<(), StoreError>;

    /// The newest `limit` deliveries, to `hook` or to any.
    async fn deliveries(&self, hook: Option<&str>, limit: u32) -> Result<Vec<Delivery>, StoreError>;

    /// The notices after `after`, oldest first, at most `limit`.
    async fn notices(&self, after: i64, limit: u32) -> Result<Vec<Notice>, StoreError>;

    /// Keeps `subscription` with its signing `secret`; it hears of notices from now on.
    async fn subscribe(&self, subscription: &Subscription, secret: &str, at: Timestamp) -> Result<(), StoreError>;

    async fn subscriptions(&self) -> Result<Vec<SavedSubscription>, StoreError>;

    async fn subscription(&self, name: &str) -> Result<SavedSubscription, StoreError>;

    /// Removes the subscription; what it still had to send is given up, its log stays.
    async fn unsubscribe(&self, name: &str) -> Result<(), StoreError>;

    /// Moves the subscription's cursor from `from` to `to` and queues `notifications` (of the
    /// notices in between), in one step; [`StoreError::SubscriptionChanged`] if the cursor moved.
    async fn enqueue(&self, name: &str, from: i64, to: i64, notifications: &[Notification]) -> Result<(), StoreError>;

    /// Pending notifications due at `at`, oldest first.
    async fn due_notifications(&self, at: Timestamp, limit: u32) -> Result<Vec<Notification>, StoreError>;

    /// The newest `limit` notifications, of one subscription or of all.
    async fn notifications(&self, subscription: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError>;

    /// Records an attempt at the pending notification `seq` (see `notices::attempted`).
    #[allow(clippy::too_many_arguments)]
    async fn notification_attempted(
        &self,
        seq: i64,
        state: NotificationState,
        next_at: Timestamp,
        error: Option<&str>,
        at: Timestamp,
        disable_after: u32,
    ) -> Result<(), StoreError>;

    /// Stores bytes by content and returns their hash; storing the same bytes twice is a no-op.
    async fn put_blob(&self, bytes: &[u8]) -> Result<BlobHash, StoreError>;

    /// The bytes stored under `hash`, checked against it.
    async fn get_blob(&self, hash: &BlobHash) -> Result<Vec<u8>, StoreError>;

    /// The task's state, rebuilt from its journal alone.
    async fn load(&self, task: &TaskId) -> Result<TaskState, StoreError> {
        let journal = self.events(task, 0).await?;
        fold(task.clone(), &journal).map_err(|source| StoreError::Unfoldable { task: task.clone(), source })
    }
}
