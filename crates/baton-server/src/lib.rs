//! baton's HTTP API under `/api/v1`: create tasks, list them, read one, page through its journal
//! and follow it live over server-sent events. JSON everywhere; every error is
//! `{"error": {"code", "message"}}` with the status that fits. No domain logic lives here: tasks
//! are read from the [`Store`] and new ones are handed to [`Tasks`], whose implementation (the
//! `baton` command) creates and queues them for the scheduler.

mod account;
mod auth;
mod hooks;
mod metrics;
mod openapi;
mod schedules;
mod stream;
mod templates;
mod ui;
mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use baton_core::{Status, TaskId};
use baton_store::{Store, StoreError};
use serde::Deserialize;
use tokio::sync::broadcast;

pub use auth::{Access, Limits};
pub use metrics::Meter;
pub use openapi::document;
pub use views::{Change, LimitChange, NewTask, Settled, TaskView};
use views::{ErrorBody, ErrorDetail, EventPage, Health, SummaryView, TaskPage};

/// What the API asks of whoever runs tasks; each error is worded for the client.
#[async_trait::async_trait]
pub trait Tasks: Send + Sync {
    /// Validates a new task as the command line would and queues it for `owner` (the caller's
    /// token): its id, or why it was refused.
    async fn create(&self, task: NewTask, owner: Option<String>) -> Result<TaskId, String>;

    /// Saves `task` as the template `name`, checked as a new task is: the template, or why not.
    async fn save_template(&self, name: String, task: NewTask) -> Result<baton_core::Template, Refused>;

    /// Starts a task from the template `name` for `owner`, queued: its id.
    async fn start_template(&self, name: &str, owner: Option<String>) -> Result<TaskId, Refused>;

    /// Checks `schedule` (its rule, zone, template and limits) and keeps it, firing from now on.
    async fn save_schedule(&self, schedule: baton_core::Schedule) -> Result<(), Refused>;

    /// When `schedule` falls due after `after`: the next `count` times.
    fn next_firings(
        &self,
        schedule: &baton_core::Schedule,
        after: baton_core::Timestamp,
        count: usize,
    ) -> Vec<baton_core::Timestamp>;

    /// Tells the schedules at once that one was resumed.
    fn wake_schedules(&self);

    /// Starts task `id` from template `template` with `request` for `owner`, queued (a hook's
    /// delivery); when task `id` exists already (a redelivery finishing a start), nothing more.
    async fn start_delivered(
        &self,
        id: &TaskId,
        template: &str,
        request: String,
        owner: Option<String>,
    ) -> Result<(), Refused>;

    /// Makes a paused task runnable again.
    async fn resume(&self, task: &TaskId) -> Result<(), Refused>;

    /// Whether the forge of task `task`'s remote says the commenter `login` (`id` where the forge
    /// names users by number) may write to the repository. Refused `Invalid` when there is no forge
    /// to ask: the task is not pushed, or its remote's forge is unknown.
    async fn may_write(&self, task: &TaskId, login: &str, id: Option<u64>) -> Result<bool, Refused>;

    /// Opens or updates the pull request of a task that is not running, journaled either way.
    async fn publish_pull_request(&self, task: &TaskId) -> Result<(), Refused>;

    /// Ends a task that has not ended: it is journaled as cancelled at once; a run in progress
    /// stops at its next journal write, and the machine goes when nothing runs on it.
    async fn cancel(&self, task: &TaskId, reason: &str) -> Result<(), Refused>;

    /// Answers the open decision `decision` of a waiting task (`approved` false: denied); the task
    /// is then runnable again.
    async fn decide(&self, task: &TaskId, decision: &str, answer: String, approved: bool) -> Result<(), Refused>;

    /// Picks the attempt that becomes the task's result, for a task waiting for a pick; the task
    /// is then runnable again.
    async fn pick(&self, task: &TaskId, attempt: &str) -> Result<(), Refused>;

    /// Settles a review finding as a human: resolved, or dismissed as irrelevant.
    async fn settle(&self, task: &TaskId, finding: &str, settled: Settled, note: String) -> Result<(), Refused>;

    /// Changes a task's limits; a task paused by a limit it no longer reaches runs again.
    async fn limit(&self, task: &TaskId, change: &LimitChange) -> Result<(), Refused>;

    /// Sends the user's follow-up to a task that has not ended, or continues an ended one with it.
    async fn follow_up(&self, task: &TaskId, text: &str) -> Result<FollowedUp, Refused>;

    /// The files the task changed against its base commit, with lines added and removed.
    async fn changed_files(&self, task: &TaskId) -> Result<Vec<baton_core::FileChange>, Refused>;

    /// The task's change against its base commit, as a unified diff: up to its branch's head, or
    /// to `upto`, one of its checkpoints.
    async fn diff(&self, task: &TaskId, upto: Option<&str>) -> Result<String, Refused>;

    /// How busy this process's scheduler is.
    fn load(&self) -> Load;
}

/// How busy the scheduler is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Tasks running in this process now.
    pub busy: usize,
    /// How many may.
    pub slots: usize,
    /// Runs started since this process began.
    pub runs_started: u64,
}

/// Where a follow-up went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowedUp {
    /// To `task` (the one it was sent to, or the newest task continuing its branch) as its
    /// follow-up `number`: the agent reads it before its next model call.
    Delivered { task: TaskId, number: u64 },
    /// The task had ended: `task`, a new task continuing its branch, has it as its request.
    Continued { task: TaskId },
}

/// Why a request about an existing task was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Something it names does not exist (404).
    Missing(String),
    /// What it asks for is not valid (422).
    Invalid(String),
    /// Not in a state that allows it (409).
    Conflict(String),
    /// It could not be done (500).
    Failed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing(message)
            | Refused::Invalid(message)
            | Refused::Conflict(message)
            | Refused::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        match refused {
            Refused::Missing(message) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            Refused::Invalid(message) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message),
            Refused::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            Refused::Failed(message) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", message),
        }
    }
}

/// What the API serves from.
#[derive(Clone)]
pub struct Api {
    pub store: Arc<dyn Store>,
    pub tasks: Arc<dyn Tasks>,
    /// `(task, seq)` of every event journaled by this process's workers, so live streams wake at
    /// once; events written by other processes are found by polling.
    pub journaled: broadcast::Sender<(TaskId, u64)>,
    pub access: Access,
    pub limits: Arc<Limits>,
    /// Cancelled when the server stops: live streams end then, so that it can.
    pub closing: tokio_util::sync::CancellationToken,
    /// Counts what this process's runs journal, for `/metrics`.
    pub meter: Arc<Meter>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// The API's routes and the web UI's.
pub fn router(api: Api) -> Router {
    let endpoints = Router::new()
        .route("/api/v1/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/account", get(account::show))
        .route("/api/v1/account/topup", axum::routing::post(account::top_up))
        .route("/api/v1/account/policy", axum::routing::put(account::set_policy))
        .route("/api/v1/account/entries", get(account::entries))
        .route("/api/v1/tasks", get(list).post(create))
        .route("/api/v1/events/stream", get(stream::statuses))
        .route("/api/v1/hooks", get(hooks::list))
        .route("/api/v1/hooks/{name}", axum::routing::post(hooks::receive))
        .route("/api/v1/hooks/{name}/deliveries", get(hooks::deliveries))
        .route("/api/v1/schedules", get(schedules::list).post(schedules::create))
        .route("/api/v1/schedules/{name}", get(schedules::show).delete(schedules::delete))
        .route("/api/v1/schedules/{name}/pause", axum::routing::post(schedules::pause))
        .route("/api/v1/schedules/{name}/resume", axum::routing::post(schedules::resume))
        .route("/api/v1/templates", get(templates::list).post(templates::create))
        .route("/api/v1/templates/{name}", get(templates::show).delete(templates::delete))
        .route("/api/v1/templates/{name}/tasks", axum::routing::post(templates::start))
        .route("/api/v1/tasks/{id}", get(show))
        .route("/api/v1/tasks/{id}/resume", axum::routing::post(resume))
        .route("/api/v1/tasks/{id}/pr", axum::routing::post(pull_request))
        .route("/api/v1/tasks/{id}/cancel", axum::routing::post(cancel))
        .route("/api/v1/tasks/{id}/decisions/{decision}", axum::routing::post(decide))
        .route("/api/v1/tasks/{id}/pick", axum::routing::post(pick))
        .route("/api/v1/tasks/{id}/findings/{finding}", axum::routing::post(settle))
        .route("/api/v1/tasks/{id}/budget", axum::routing::patch(limit))
        .route("/api/v1/tasks/{id}/messages", axum::routing::post(message))
        .route("/api/v1/tasks/{id}/diff", get(diff))
        .route("/api/v1/tasks/{id}/events", get(events))
        .route("/api/v1/tasks/{id}/events/stream", get(stream::follow))
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth::authorize));
    Router::new()
        .merge(endpoints)
        .merge(ui::routes(api.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint takes another method".into(),
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// The largest request body read, in bytes; a larger one gets 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// Serves `api` on `listener` until `shutdown`, then lets requests in flight finish. An open API
/// is served on a loopback address only, where it still lets every local user run commands in its
/// sandboxes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    admits(api.access, listener.local_addr()?)?;
    axum::serve(listener, router(api)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// Now, by this machine's clock.
fn now() -> baton_core::Timestamp {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    baton_core::Timestamp(since.as_millis() as i64)
}

/// A query string, refused with the API's error shape (400) when it does not parse.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Params<T>, ApiError> {
        let Query(query) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", rejection.body_text()))?;
        Ok(Params(query))
    }
}

/// Whether `access` may be served on `address`: an open API on loopback only.
pub fn admits(access: Access, address: std::net::SocketAddr) -> std::io::Result<()> {
    if access == Access::Open && !address.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{address} is not a loopback address: without tokens baton serves 127.0.0.1 or ::1 only"),
        ));
    }
    Ok(())
}

/// A JSON request body, refused with the API's error shape: 413 past [`BODY_LIMIT`], 400 when it
/// is not the JSON wanted. An empty body reads as `{}`.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Body<T>, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_body" };
            ApiError::new(rejection.status(), code, rejection.body_text())
        })?;
        let text: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(text)
            .map(Body)
            .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string()))
    }
}

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String) -> ApiError {
        ApiError { status, code, message }
    }

    /// Its status and what it says, for a page.
    pub(crate) fn parts(&self) -> (StatusCode, &str) {
        (self.status, &self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(_)
            | StoreError::NoSuchTemplate(_)
            | StoreError::NoSuchSchedule(_)
            | StoreError::NoSuchHook(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            StoreError::ScheduleNotPaused(_) => ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string()),
            StoreError::Ambiguous { .. } => ApiError::new(StatusCode::BAD_REQUEST, "ambiguous_id", error.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

/// Whether the service answers; no token needed.
#[utoipa::path(get, path = "/api/v1/healthz", tag = "service", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_owned() })
}

async fn task_id(api: &Api, id: &str) -> Result<TaskId, ApiError> {
    Ok(api.store.resolve(id).await?)
}

/// Creates a task as `baton run` would and queues it.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = NewTask,
    responses((status = 201, body = TaskView, description = "Created and queued")))]
async fn create(
    State(api): State<Api>,
    axum::Extension(caller): axum::Extension<auth::Caller>,
    Body(task): Body<NewTask>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let id = api
        .tasks
        .create(task, caller.0)
        .await
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_task", message))?;
    let state = api.store.load(&id).await?;
    let _ = api.journaled.send((id, 0));
    Ok((StatusCode::CREATED, Json(TaskView::of(&state))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only tasks with this status.
    status: Option<String>,
    /// Only tasks whose request, id or branch contains this, ignoring case.
    text: Option<String>,
    /// Only tasks changed at or after this time (milliseconds since the epoch).
    since: Option<i64>,
    /// Tasks on one page (default 50, at most 500).
    limit: Option<usize>,
    /// Where the page starts: the `next_cursor` of the page before.
    cursor: Option<String>,
}

/// Where a page of the task list starts: after the task created at `.0` with id `.1` (the list
/// runs newest first, then by id).
fn parse_cursor(text: &str) -> Result<(baton_core::Timestamp, String), ApiError> {
    let invalid = || {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", format!("cursor {text:?} is not one this server gave"))
    };
    let (at, id) = text.split_once('.').ok_or_else(invalid)?;
    Ok((baton_core::Timestamp(at.parse().map_err(|_| invalid())?), id.to_owned()))
}

/// Tasks, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery), responses((status = 200, body = TaskPage)))]
async fn list(State(api): State<Api>, Params(query): Params<ListQuery>) -> Result<Json<TaskPage>, ApiError> {
    let status = match &query.status {
        Some(name) => Some(
            name.parse::<Status>()
                .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_status", error.to_string()))?,
        ),
        None => None,
    };
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let text = query.text.as_deref().map(str::to_lowercase);
    let mut tasks: Vec<_> = api
        .store
        .list(status)
        .await?
        .into_iter()
        .filter(|task| query.since.is_none_or(|since| task.updated_at.as_millis() >= since))
        .filter(|task| {
            text.as_deref().is_none_or(|text| {
                [task.request.as_str(), task.id.as_str(), task.branch.as_str()]
                    .iter()
                    .any(|field| field.to_lowercase().contains(text))
            })
        })
        .filter(|task| {
            after.as_ref().is_none_or(|(at, id)| {
                task.created_at < *at || (task.created_at == *at && task.id.as_str() > id.as_str())
            })
        })
        .take(limit + 1)
        .collect();
    let more = tasks.len() > limit;
    tasks.truncate(limit);
    let next = match tasks.last() {
        Some(last) if more => Some(format!("{}.{}", last.created_at.as_millis(), last.id)),
        _ => None,
    };
    Ok(Json(TaskPage { tasks: tasks.iter().map(SummaryView::of).collect(), next_cursor: next }))
}

/// A task: its state, without the transcript.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "The task's id or a unique prefix of it")), responses((status = 200, body = TaskView)))]
async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

/// Makes a paused task runnable again.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/resume", tag = "tasks", params(("id" = String, Path, description = "The task's id or a unique prefix of it")), responses((status = 200, body = TaskView)))]
async fn resume(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.resume(&id).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

/// Opens the task's draft pull request on its remote's forge, or brings it up to date: for a task
/// pushed to a remote (a task on a URL, or created with `push`) that is not running. What the forge
/// said is journaled; the task shows the pull request.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/pr", tag = "tasks", params(("id" = String, Path, description = "The task's id or a unique prefix of it")), responses((status = 200, body = TaskView)))]
async fn pull_request(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.publish_pull_request(&id).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

/// Ends a task that has not ended.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "The task's id or a unique prefix of it")),
    request_body(content = Option<CancelBody>, description = "Optional"), responses((status = 200, body = TaskView)))]
async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<CancelBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.cancel(&id, body.reason.as_deref().unwrap_or("cancelled over the API")).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// As the agent will read it.
    #[serde(default)]
    answer: String,
    /// Refuse: the command that waits does not run (or the plan or credential is refused).
    #[serde(default)]
    deny: bool,
}

/// Answers, approves or denies the open decision of a waiting task.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/decisions/{decision}", tag = "tasks",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it"),
           ("decision" = String, Path, description = "The task's open `decision`")),
    request_body = DecisionBody, responses((status = 200, body = TaskView)))]
async fn decide(
    State(api): State<Api>,
    Path((id, decision)): Path<(String, String)>,
    Body(body): Body<DecisionBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.decide(&id, &decision, body.answer, !body.deny).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PickBody {
    /// The key of a verified attempt, like `attempt-2` (the open decision lists them).
    attempt: String,
}

/// Picks the attempt that becomes the task's result, for a task started with `"pick": "human"`
/// whose attempts have all ended; it is merged into the task's branch and checked there.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/pick", tag = "tasks",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it")),
    request_body = PickBody, responses((status = 200, body = TaskView)))]
async fn pick(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<PickBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.pick(&id, &body.attempt).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SettleBody {
    status: Settled,
    /// Why, for the journal and the agent.
    #[serde(default)]
    note: String,
}

/// Settles a review finding: resolved, or dismissed.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/findings/{finding}", tag = "tasks",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it"),
           ("finding" = String, Path, description = "The finding's id, like f1")),
    request_body = SettleBody, responses((status = 200, body = TaskView)))]
async fn settle(
    State(api): State<Api>,
    Path((id, finding)): Path<(String, String)>,
    Body(body): Body<SettleBody>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.settle(&id, &finding, body.status, body.note).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

/// Changes a task's limits; absent fields are kept, `null` lifts a limit.
#[utoipa::path(patch, path = "/api/v1/tasks/{id}/budget", tag = "tasks", params(("id" = String, Path, description = "The task's id or a unique prefix of it")),
    request_body = LimitChange, responses((status = 200, body = TaskView)))]
async fn limit(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(change): Body<LimitChange>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.limit(&id, &change).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    /// What the user adds, as the agent will read it (at most 64 KiB).
    text: String,
}

/// A follow-up that was accepted, and the task that has it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct MessageSent {
    /// Its number among the task's follow-ups; none when it started a continuing task.
    number: Option<u64>,
    /// The task that has it: the one it was sent to, the newest one continuing that one's branch,
    /// or the new one it started (whose `continues` names the task it was sent to).
    task: TaskView,
}

/// Sends a follow-up from the user. A task that has not ended gets it before its next model call
/// (a paused one runs again): 202. One that ended done or failed is continued: a new task on its
/// branch has it as its request, queued: 201. A cancelled one, or a subtask, refuses: 409.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/messages", tag = "tasks",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it")),
    request_body = MessageBody,
    responses((status = 202, body = MessageSent), (status = 201, body = MessageSent)))]
async fn message(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<MessageBody>,
) -> Result<(StatusCode, Json<MessageSent>), ApiError> {
    let id = task_id(&api, &id).await?;
    let (status, task, number) = match api.tasks.follow_up(&id, &body.text).await? {
        FollowedUp::Delivered { task, number } => (StatusCode::ACCEPTED, task, Some(number)),
        FollowedUp::Continued { task } => (StatusCode::CREATED, task, None),
    };
    let task = TaskView::of(&api.store.load(&task).await?);
    Ok((status, Json(MessageSent { number, task })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DiffQuery {
    /// Up to this checkpoint's commit instead of the branch's head.
    commit: Option<String>,
}

/// The task's committed change against its base, as a unified diff.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/diff", tag = "tasks",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it"), DiffQuery),
    responses((status = 200, content_type = "text/x-diff", body = String)))]
async fn diff(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(query): Params<DiffQuery>,
) -> Result<Response, ApiError> {
    let id = task_id(&api, &id).await?;
    let text = api.tasks.diff(&id, query.commit.as_deref()).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/x-diff; charset=utf-8")], text).into_response())
}

/// Events returned by one page at most.
const PAGE: usize = 500;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Events after this seq; all of them without it.
    after: Option<u64>,
}

/// A page of the task's journal (at most 500 events).
#[utoipa::path(get, path = "/api/v1/tasks/{id}/events", tag = "events",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it"), EventsQuery),
    responses((status = 200, body = EventPage)))]
async fn events(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(query): Params<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let id = task_id(&api, &id).await?;
    let from = query.after.map_or(0, |after| after + 1);
    let mut events = api.store.events(&id, from).await?;
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    let next = events.last().map(|last| last.seq);
    Ok(Json(EventPage { events, last_seq: next, more }))
}
