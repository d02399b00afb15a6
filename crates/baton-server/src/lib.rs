//! baton's HTTP API under `/api/v1`: create tasks, list them, read one, page through its journal
//! and follow it live over server-sent events. JSON everywhere; every error is
//! `{"error": {"code", "message"}}` with the status that fits. No domain logic lives here: tasks
//! are read from the [`Store`] and new ones are handed to [`Tasks`], whose implementation (the
//! `baton` command) creates and queues them for the scheduler.

mod stream;
mod views;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use baton_core::{Status, TaskId};
use baton_store::{Store, StoreError};
use serde::Deserialize;
use tokio::sync::broadcast;

pub use views::{NewTask, TaskView};

/// What the API asks of whoever runs tasks; each error is worded for the client.
#[async_trait::async_trait]
pub trait Tasks: Send + Sync {
    /// Validates a new task as the command line would and queues it: its id, or why it was refused.
    async fn create(&self, task: NewTask) -> Result<TaskId, String>;

    /// Makes a paused task runnable again.
    async fn resume(&self, task: &TaskId) -> Result<(), Refused>;

    /// Ends a task that has not ended: it is journaled as cancelled at once; a run in progress
    /// stops at its next journal write, and the machine goes when nothing runs on it.
    async fn cancel(&self, task: &TaskId, reason: &str) -> Result<(), Refused>;

    /// Answers the open decision `decision` of a waiting task (`approved` false: denied); the task
    /// is then runnable again.
    async fn decide(&self, task: &TaskId, decision: &str, answer: String, approved: bool) -> Result<(), Refused>;

    /// The task's change against its base commit, as a unified diff.
    async fn diff(&self, task: &TaskId) -> Result<String, Refused>;

    /// Tasks running in this process now, and how many may.
    fn slots(&self) -> (usize, usize);
}

/// Why a request about an existing task was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not in a state that allows it (409).
    Conflict(String),
    /// It could not be done (500).
    Failed(String),
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> ApiError {
        match refused {
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
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/v1/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/tasks", get(list).post(create))
        .route("/api/v1/events/stream", get(stream::statuses))
        .route("/api/v1/tasks/{id}", get(show))
        .route("/api/v1/tasks/{id}/resume", axum::routing::post(resume))
        .route("/api/v1/tasks/{id}/cancel", axum::routing::post(cancel))
        .route("/api/v1/tasks/{id}/decisions/{decision}", axum::routing::post(decide))
        .route("/api/v1/tasks/{id}/diff", get(diff))
        .route("/api/v1/tasks/{id}/events", get(events))
        .route("/api/v1/tasks/{id}/events/stream", get(stream::follow))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint".into()) })
        .with_state(api)
}

/// Serves `api` on `listener` until `shutdown`, then lets requests in flight finish. Only a
/// loopback address is served: the API has no authentication yet, so anyone who can reach it can
/// run commands in its sandboxes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{address} is not a loopback address: without tokens (not yet supported) baton serves 127.0.0.1 or ::1 only"
            ),
        ));
    }
    axum::serve(listener, router(api)).with_graceful_shutdown(shutdown.cancelled_owned()).await
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
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string()),
            StoreError::Ambiguous { .. } => ApiError::new(StatusCode::BAD_REQUEST, "ambiguous_id", error.to_string()),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Prometheus' text format: tasks by status, slots and the queue.
async fn metrics(State(api): State<Api>) -> Result<Response, ApiError> {
    use std::fmt::Write as _;
    let tasks = api.store.list(None).await?;
    let mut out = String::from("# HELP baton_tasks Tasks by status.\n# TYPE baton_tasks gauge\n");
    for status in Status::ALL {
        let count = tasks.iter().filter(|task| task.status == status).count();
        let _ = writeln!(out, "baton_tasks{{status=\"{status}\"}} {count}");
    }
    let (busy, slots) = api.tasks.slots();
    let queued = tasks.iter().filter(|task| task.status == Status::Queued).count();
    let _ = write!(
        out,
        "# HELP baton_slots Tasks this server may run at once.\n# TYPE baton_slots gauge\nbaton_slots {slots}\n\
         # HELP baton_slots_busy Tasks this server runs now.\n# TYPE baton_slots_busy gauge\nbaton_slots_busy {busy}\n\
         # HELP baton_queue_depth Tasks queued and not started.\n# TYPE baton_queue_depth gauge\nbaton_queue_depth {queued}\n"
    );
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}

async fn task_id(api: &Api, id: &str) -> Result<TaskId, ApiError> {
    Ok(api.store.resolve(id).await?)
}

async fn create(State(api): State<Api>, body: axum::body::Bytes) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let task: NewTask = serde_json::from_slice(&body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string()))?;
    let id = api
        .tasks
        .create(task)
        .await
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_task", message))?;
    let state = api.store.load(&id).await?;
    let _ = api.journaled.send((id, 0));
    Ok((StatusCode::CREATED, Json(TaskView::of(&state))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
}

async fn list(State(api): State<Api>, Query(query): Query<ListQuery>) -> Result<Json<serde_json::Value>, ApiError> {
    let status = match &query.status {
        Some(name) => Some(
            name.parse::<Status>()
                .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_status", error.to_string()))?,
        ),
        None => None,
    };
    let tasks = api.store.list(status).await?;
    Ok(Json(serde_json::json!({ "tasks": tasks })))
}

async fn show(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

async fn resume(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    api.tasks.resume(&id).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    let body: CancelBody = if body.is_empty() {
        CancelBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string()))?
    };
    api.tasks.cancel(&id, body.reason.as_deref().unwrap_or("cancelled over the API")).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    /// As the agent will read it.
    #[serde(default)]
    answer: String,
    /// Refuse: the command that waits does not run (or the plan or credential is refused).
    #[serde(default)]
    deny: bool,
}

async fn decide(
    State(api): State<Api>,
    Path((id, decision)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id(&api, &id).await?;
    let body: DecisionBody = serde_json::from_slice(&body)
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", error.to_string()))?;
    api.tasks.decide(&id, &decision, body.answer, !body.deny).await?;
    Ok(Json(TaskView::of(&api.store.load(&id).await?)))
}

async fn diff(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = task_id(&api, &id).await?;
    let text = api.tasks.diff(&id).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/x-diff; charset=utf-8")], text).into_response())
}

/// Events returned by one page at most.
const PAGE: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Events after this seq; all of them without it.
    after: Option<u64>,
}

async fn events(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = task_id(&api, &id).await?;
    let from = query.after.map_or(0, |after| after + 1);
    let mut events = api.store.events(&id, from).await?;
    let more = events.len() > PAGE;
    events.truncate(PAGE);
    let next = events.last().map(|last| last.seq);
    Ok(Json(serde_json::json!({ "events": events, "last_seq": next, "more": more })))
}
