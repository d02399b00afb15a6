//! Schedules over the API: list, create, read with their firings, pause, resume, delete. They
//! fire while `baton serve` runs; when they fire next is the domain's to say (`Tasks::next_firings`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use baton_core::{Firing, Schedule, Timestamp};
use baton_store::{Firings, SavedSchedule};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Api, ApiError, Body, now};

/// How many next firing times a schedule shows.
const NEXT: usize = 5;
/// How many of its latest firings one schedule shows.
const LATEST: u32 = 50;

/// A schedule, where it stands, and when it fires next.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    /// `schedule` (name, template, cron, timezone, mode, catch_up, runs_per_day, run_budget,
    /// month_budget, max_failures, owner), `paused` (why, or null), `cursor`, `resumed_at`, `created_at`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    saved: SavedSchedule,
    /// When it fires next (Unix milliseconds); none while paused.
    next: Vec<i64>,
    /// Its latest firings, newest first (on `GET /schedules/{name}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    firings: Option<Vec<Firing>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

/// Why a schedule is paused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseBody {
    #[serde(default)]
    reason: Option<String>,
}

pub(crate) fn view(api: &Api, saved: SavedSchedule, firings: Option<Vec<Firing>>) -> ScheduleView {
    let next = if saved.paused.is_some() {
        Vec::new()
    } else {
        api.tasks
            .next_firings(&saved.schedule, saved.cursor.max(now()), NEXT)
            .into_iter()
            .map(Timestamp::as_millis)
            .collect()
    };
    ScheduleView { saved, next, firings }
}

/// Every schedule, by name.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", responses((status = 200, body = ScheduleList)))]
pub(crate) async fn list(State(api): State<Api>) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = api.store.schedules().await?.into_iter().map(|saved| view(&api, saved, None)).collect();
    Ok(Json(ScheduleList { schedules }))
}

/// Saves a schedule (409 when its name is taken, 422 for a rule, zone, template or limit that
/// will not do); it fires from now on.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules",
    request_body(content = Object, description = "name, template, cron, timezone, mode (fresh|continue), catch_up (skip|once), runs_per_day, run_budget, month_budget, max_failures, owner"),
    responses((status = 201, body = ScheduleView)))]
pub(crate) async fn create(
    State(api): State<Api>,
    Body(schedule): Body<Schedule>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let name = schedule.name.clone();
    api.tasks.save_schedule(schedule).await?;
    let saved = api.store.schedule(&name).await?;
    Ok((StatusCode::CREATED, Json(view(&api, saved, None))))
}

/// One schedule, with its latest firings.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")), responses((status = 200, body = ScheduleView)))]
pub(crate) async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<ScheduleView>, ApiError> {
    let saved = api.store.schedule(&name).await?;
    let firings = api.store.firings(&name, Firings::All, Timestamp(0), LATEST).await?;
    Ok(Json(view(&api, saved, Some(firings))))
}

/// Deletes a schedule and its firings; tasks it started stay.
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")), responses((status = 204)))]
pub(crate) async fn delete(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    api.store.delete_schedule(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stops a schedule firing until it is resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/pause", tag = "schedules", request_body = PauseBody,
    params(("name" = String, Path, description = "The schedule's name")), responses((status = 200, body = ScheduleView)))]
pub(crate) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
    Body(body): Body<PauseBody>,
) -> Result<Json<ScheduleView>, ApiError> {
    let reason = body.reason.filter(|reason| !reason.trim().is_empty()).unwrap_or_else(|| "paused over the API".into());
    let saved = api.store.pause_schedule(&name, &reason, now()).await?;
    Ok(Json(view(&api, saved, None)))
}

/// Lets a paused schedule fire again, from now on (409 when it is not paused).
#[utoipa::path(post, path = "/api/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "The schedule's name")), responses((status = 200, body = ScheduleView)))]
pub(crate) async fn resume(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<ScheduleView>, ApiError> {
    let saved = api.store.resume_schedule(&name, now()).await?;
    api.tasks.wake_schedules();
    Ok(Json(view(&api, saved, None)))
}
