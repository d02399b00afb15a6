use std::path::PathBuf;

use baton_core::{FoldError, Refusal, TaskId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use baton's data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the journal database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot reach the PostgreSQL store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("`{0}` is not a PostgreSQL URL (postgres://user@host:port/database)")]
    NotPostgres(String),
    #[error("the journal database has schema version {found}, newer than this baton knows ({known}); upgrade baton")]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "the journal database has schema version {found}, older than this baton's ({known}); run `baton migrate --store URL` first"
    )]
    OlderSchema { found: i64, known: i64 },
    #[error("no task `{0}`")]
    NotFound(String),
    #[error("task id prefix `{prefix}` is ambiguous: it matches {first}, {second} and maybe more")]
    Ambiguous { prefix: String, first: TaskId, second: TaskId },
    #[error(
        "task {task}: another writer appended first (expected to write seq {expected}, the journal is at {actual})"
    )]
    Conflict { task: TaskId, expected: u64, actual: u64 },
    #[error("task {task}: event {seq} was refused: {source}")]
    Rejected { task: TaskId, seq: u64, source: FoldError },
    #[error("task {task}: an event cannot be written: {reason}")]
    Unencodable { task: TaskId, reason: String },
    #[error("task {task}: event {seq} is corrupt: {reason}")]
    CorruptEvent { task: TaskId, seq: u64, reason: String },
    #[error("task {task}: the summary row is corrupt: {reason}")]
    CorruptSummary { task: String, reason: String },
    #[error("task {task}: the journal does not describe a valid task: {source}")]
    Unfoldable { task: TaskId, source: FoldError },
    #[error("blob {hash}: {reason}")]
    Blob { hash: String, reason: String },
    #[error("task {task}: {refusal}")]
    Refused { task: TaskId, refusal: Refusal },
    #[error("task {task}: the lease of epoch {epoch} is no longer held ({holder} lost it); nothing was written")]
    Fenced { task: TaskId, holder: String, epoch: u64 },
    #[error("task {task}: {reason}")]
    Unbalanced { task: TaskId, reason: String },
    #[error("the account's records are unreadable: {0}")]
    CorruptAccount(String),
    #[error("a token named `{0}` exists already (names are never reused, even once revoked)")]
    TokenExists(String),
    #[error("no token named `{0}` is active")]
    NoSuchToken(String),
    #[error("a template named `{0}` exists already")]
    TemplateExists(String),
    #[error("no template named `{0}`")]
    NoSuchTemplate(String),
    #[error("template `{name}` is unreadable: {reason}")]
    CorruptTemplate { name: String, reason: String },
    #[error("a schedule named `{0}` exists already")]
    ScheduleExists(String),
    #[error("no schedule named `{0}`")]
    NoSuchSchedule(String),
    #[error("schedule `{0}` is not paused")]
    ScheduleNotPaused(String),
    #[error("schedule `{0}` changed meanwhile (paused, deleted, or its firings taken by another server)")]
    ScheduleChanged(String),
    #[error("schedule `{name}` is unreadable: {reason}")]
    CorruptSchedule { name: String, reason: String },
    #[error("a hook named `{0}` exists already")]
    HookExists(String),
    #[error("no hook named `{0}`")]
    NoSuchHook(String),
    #[error("hook `{name}` is unreadable: {reason}")]
    CorruptHook { name: String, reason: String },
    #[error("a subscription named `{0}` exists already")]
    SubscriptionExists(String),
    #[error("no subscription named `{0}`")]
    NoSuchSubscription(String),
    #[error("subscription `{0}` changed meanwhile (its notices taken by another server, or it was removed)")]
    SubscriptionChanged(String),
    #[error("subscription `{name}` is unreadable: {reason}")]
    CorruptSubscription { name: String, reason: String },
    #[error("journal database error: {0}")]
    Database(#[from] sqlx::Error),
}
