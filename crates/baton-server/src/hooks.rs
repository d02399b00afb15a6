//! Incoming hooks over HTTP: `POST /api/v1/hooks/{name}` takes a forge's (or any signer's)
//! delivery, verifies it over the raw body with the hook's secret, and does what the hook's rules
//! say — a task from a template, or a follow-up on the task of a branch. It needs no token: the
//! signature is its authentication. Every delivery is logged with what came of it; a redelivery
//! (the same sender id) starts nothing again.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_core::{Delivery, DeliveryOutcome, TaskId};
use baton_hooks::{Action, Refusal};
use baton_store::{Claim, SavedHook, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Api, ApiError, Refused, now};

/// What a delivery came to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// `started`, `followed_up`, `ignored` or `duplicate`.
    outcome: String,
    detail: String,
    /// The task started or followed up.
    task: Option<String>,
}

/// Takes a hook's delivery: 201 when it started a task, 200 when it followed one up or was
/// received before, 202 when no rule acts on it; 401 for a missing or wrong signature, 400 for a
/// delivery that cannot be read, 404 for an unknown hook, 422 when its task cannot be started.
#[utoipa::path(post, path = "/api/v1/hooks/{name}", tag = "hooks", security(()),
    params(("name" = String, Path, description = "The hook's name")),
    request_body(content = Object, description = "The sender's payload, signed in its dialect"),
    responses((status = 201, body = DeliveryView), (status = 200, body = DeliveryView), (status = 202, body = DeliveryView)))]
pub(crate) async fn receive(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let mut delivery = Delivery {
        hook: name.clone(),
        id: String::new(),
        event: String::new(),
        outcome: DeliveryOutcome::Refused,
        status: 0,
        detail: String::new(),
        task: None,
        received_at: now(),
    };
    let saved = match api.store.hook(&name).await {
        Ok(saved) => saved,
        Err(error @ StoreError::NoSuchHook(_)) => {
            return refuse(&api, delivery, StatusCode::NOT_FOUND, "not_found", error.to_string()).await;
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    let unix_now = now().as_millis().div_euclid(1000);
    if let Err(refusal) = baton_hooks::verify(saved.hook.kind, saved.secret.as_bytes(), &header, &body, unix_now) {
        return refused(&api, delivery, refusal).await;
    }
    let received = match baton_hooks::read(saved.hook.kind, &header, &body) {
        Ok(received) => received,
        Err(refusal) => return refused(&api, delivery, refusal).await,
    };
    delivery.id = received.id.clone();
    delivery.event = received.event.clone();
    let action = baton_hooks::decide(&saved.hook.rules, &received.happening);
    // The task's id is chosen before the claim, so a redelivery after a crash starts this same one.
    if let Action::Start { .. } = action {
        delivery.task = Some(new_task_id().to_string());
    }
    delivery.outcome = DeliveryOutcome::Accepted;
    let seq = match api.store.claim_delivery(&delivery).await {
        Ok(Claim::New(seq)) => seq,
        Ok(Claim::Seen { seq, earlier }) if earlier.outcome == DeliveryOutcome::Accepted => {
            // Received before by a server that stopped before it acted: act now, as it would have.
            delivery.task = earlier.task.clone();
            return act(&api, &saved, seq, delivery, action).await;
        }
        Ok(Claim::Seen { earlier, .. }) => {
            let detail = format!("received before ({}): nothing more is done", earlier.outcome);
            delivery.task = earlier.task;
            return settled(&api, None, delivery, DeliveryOutcome::Duplicate, StatusCode::OK, detail).await;
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    act(&api, &saved, seq, delivery, action).await
}

/// Does what the rules decided for the claimed delivery `seq`, and logs what came of it.
async fn act(api: &Api, saved: &SavedHook, seq: i64, mut delivery: Delivery, action: Action) -> Response {
    match action {
        Action::Ignore(reason) => {
            settled(api, Some(seq), delivery, DeliveryOutcome::Ignored, StatusCode::ACCEPTED, reason).await
        }
        Action::Start { template, fields } => {
            let Some(id) = delivery.task.as_deref().and_then(|task| TaskId::parse(task).ok()) else {
                let reason = "no task id was chosen".to_owned();
                return settled(
                    api,
                    Some(seq),
                    delivery,
                    DeliveryOutcome::Failed,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    reason,
                )
                .await;
            };
            let request = match api.store.template(&template).await {
                Ok(found) => baton_hooks::request(&found.request, &fields),
                Err(error) => {
                    delivery.task = None;
                    let status = StatusCode::UNPROCESSABLE_ENTITY;
                    return settled(api, Some(seq), delivery, DeliveryOutcome::Failed, status, error.to_string()).await;
                }
            };
            let owner = Some(format!("hook:{}", saved.hook.name));
            match api.tasks.start_delivered(&id, &template, request, owner).await {
                Ok(()) => {
                    let _ = api.journaled.send((id.clone(), 0));
                    let detail = format!("started task {id} from template {template}");
                    settled(api, Some(seq), delivery, DeliveryOutcome::Started, StatusCode::CREATED, detail).await
                }
                Err(refused) => {
                    delivery.task = None;
                    let status = StatusCode::UNPROCESSABLE_ENTITY;
                    settled(api, Some(seq), delivery, DeliveryOutcome::Failed, status, refused.to_string()).await
                }
            }
        }
        Action::FollowUp { branch, text, author } => {
            let summaries = match api.store.list(None).await {
                Ok(summaries) => summaries,
                Err(error) => return ApiError::from(error).into_response(),
            };
            // The newest task of the branch: a follow-up to it reaches the newest of its line.
            let Some(task) = summaries.into_iter().find(|summary| summary.branch == branch) else {
                let reason = format!("no task works on branch {branch:?}");
                return settled(api, Some(seq), delivery, DeliveryOutcome::Ignored, StatusCode::ACCEPTED, reason).await;
            };
            // Only those who may push to the repository steer its tasks.
            let ignored = match api.tasks.may_write(&task.id, &author.login, author.id).await {
                Ok(true) => None,
                Ok(false) => Some(format!("{} may not write to the repository of task {}", author.login, task.id)),
                Err(Refused::Invalid(why)) => Some(format!("{why}, so the comment is not acted on")),
                Err(refused) => {
                    let status = StatusCode::BAD_GATEWAY;
                    return settled(api, Some(seq), delivery, DeliveryOutcome::Failed, status, refused.to_string())
                        .await;
                }
            };
            if let Some(reason) = ignored {
                return settled(api, Some(seq), delivery, DeliveryOutcome::Ignored, StatusCode::ACCEPTED, reason).await;
            }
            match api.tasks.follow_up(&task.id, &text).await {
                Ok(sent) => {
                    let (id, detail) = match sent {
                        crate::FollowedUp::Delivered { task, number } => {
                            let detail = format!("follow-up {number} sent to task {task}");
                            (task, detail)
                        }
                        crate::FollowedUp::Continued { task } => {
                            let detail = format!("task {task} continues branch {branch} with the comment");
                            (task, detail)
                        }
                    };
                    delivery.task = Some(id.to_string());
                    settled(api, Some(seq), delivery, DeliveryOutcome::FollowedUp, StatusCode::OK, detail).await
                }
                Err(refused) => {
                    let status = match refused {
                        Refused::Conflict(_) => StatusCode::CONFLICT,
                        _ => StatusCode::UNPROCESSABLE_ENTITY,
                    };
                    settled(api, Some(seq), delivery, DeliveryOutcome::Failed, status, refused.to_string()).await
                }
            }
        }
    }
}

/// Logs what the delivery came to (settling its claim `seq`, or as a row of its own) and answers.
async fn settled(
    api: &Api,
    seq: Option<i64>,
    mut delivery: Delivery,
    outcome: DeliveryOutcome,
    status: StatusCode,
    detail: String,
) -> Response {
    delivery.outcome = outcome;
    delivery.status = status.as_u16();
    delivery.detail = detail;
    let logged = match seq {
        Some(seq) => {
            api.store.settle_delivery(seq, outcome, delivery.status, &delivery.detail, delivery.task.as_deref()).await
        }
        None => api.store.log_delivery(&delivery).await.map(drop),
    };
    if let Err(error) = logged {
        return ApiError::from(error).into_response();
    }
    if status.is_client_error() || status.is_server_error() {
        let code = if status == StatusCode::CONFLICT { "conflict" } else { "not_started" };
        return ApiError::new(status, code, delivery.detail).into_response();
    }
    let view = DeliveryView { outcome: outcome.as_str().to_owned(), detail: delivery.detail, task: delivery.task };
    (status, Json(view)).into_response()
}

async fn refused(api: &Api, delivery: Delivery, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Unauthenticated(reason) => {
            refuse(api, delivery, StatusCode::UNAUTHORIZED, "unauthorized", reason).await
        }
        Refusal::Malformed(reason) => refuse(api, delivery, StatusCode::BAD_REQUEST, "invalid_delivery", reason).await,
    }
}

/// Logs a delivery that was not acted on, and answers with the reason.
async fn refuse(api: &Api, mut delivery: Delivery, status: StatusCode, code: &'static str, reason: String) -> Response {
    delivery.status = status.as_u16();
    delivery.detail = reason.clone();
    if let Err(error) = api.store.log_delivery(&delivery).await {
        return ApiError::from(error).into_response();
    }
    ApiError::new(status, code, reason).into_response()
}

fn new_task_id() -> TaskId {
    let mut entropy = [0u8; 8];
    // Without entropy the clock stands in: ids stay unique per millisecond.
    let entropy = match getrandom::fill(&mut entropy) {
        Ok(()) => u64::from_le_bytes(entropy),
        Err(_) => now().as_millis() as u64,
    };
    TaskId::from_entropy(entropy)
}

/// A hook as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HookList {
    /// Each hook's `name`, `kind`, `rules` and `created_at`.
    #[schema(value_type = Vec<Object>)]
    hooks: Vec<SavedHook>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryLog {
    /// Newest first: `hook`, `id`, `event`, `outcome`, `status`, `detail`, `task`, `received_at`.
    #[schema(value_type = Vec<Object>)]
    deliveries: Vec<Delivery>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct LogQuery {
    /// At most this many (1 to 1000, 100 when not given).
    limit: Option<u32>,
}

/// Every hook.
#[utoipa::path(get, path = "/api/v1/hooks", tag = "hooks", responses((status = 200, body = HookList)))]
pub(crate) async fn list(State(api): State<Api>) -> Result<Json<HookList>, ApiError> {
    Ok(Json(HookList { hooks: api.store.hooks().await? }))
}

/// A hook's latest deliveries and what each came to.
#[utoipa::path(get, path = "/api/v1/hooks/{name}/deliveries", tag = "hooks",
    params(("name" = String, Path, description = "The hook's name"), LogQuery), responses((status = 200, body = DeliveryLog)))]
pub(crate) async fn deliveries(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Json<DeliveryLog>, ApiError> {
    api.store.hook(&name).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(DeliveryLog { deliveries: api.store.deliveries(Some(&name), limit).await? }))
}
