//! Templates over the API: saved task definitions, and tasks started from them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use baton_core::Template;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::{Api, ApiError, Body, NewTask, TaskView};

/// A template as the API shows it: its name and the task definition it keeps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    /// `name`, `request`, `repo`, `base`, `checks`, `check_timeout_secs`, `scope`, `protect`,
    /// `budget`, `model`, `review`, `plan`, `attempts`, `pick`, `priority`, …
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub template: Template,
}

/// A template to save: a name and the fields of a new task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTemplate {
    /// 1 to 64 of A-Z, a-z, 0-9, `-`, `_`, `.`.
    name: String,
    task: NewTask,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateList {
    templates: Vec<TemplateView>,
}

/// Every template, by name.
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", responses((status = 200, body = TemplateList)))]
pub(crate) async fn list(State(api): State<Api>) -> Result<Json<TemplateList>, ApiError> {
    let templates = api.store.templates().await?;
    Ok(Json(TemplateList { templates: templates.into_iter().map(|template| TemplateView { template }).collect() }))
}

/// Saves a task definition under a name (409 when the name is taken).
#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", request_body = NewTemplate,
    responses((status = 201, body = TemplateView)))]
pub(crate) async fn create(
    State(api): State<Api>,
    Body(body): Body<NewTemplate>,
) -> Result<(StatusCode, Json<TemplateView>), ApiError> {
    let template = api.tasks.save_template(body.name, body.task).await?;
    Ok((StatusCode::CREATED, Json(TemplateView { template })))
}

/// One template.
#[utoipa::path(get, path = "/api/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "The template's name")), responses((status = 200, body = TemplateView)))]
pub(crate) async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Json<TemplateView>, ApiError> {
    Ok(Json(TemplateView { template: api.store.template(&name).await? }))
}

/// Deletes a template; tasks started from it stay.
#[utoipa::path(delete, path = "/api/v1/templates/{name}", tag = "templates",
    params(("name" = String, Path, description = "The template's name")), responses((status = 204)))]
pub(crate) async fn delete(State(api): State<Api>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    api.store.delete_template(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a task from a template, queued for the caller.
#[utoipa::path(post, path = "/api/v1/templates/{name}/tasks", tag = "templates",
    params(("name" = String, Path, description = "The template's name")),
    responses((status = 201, body = TaskView, description = "Created and queued")))]
pub(crate) async fn start(
    State(api): State<Api>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let id = api.tasks.start_template(&name, caller.0).await?;
    let state = api.store.load(&id).await?;
    let _ = api.journaled.send((id, 0));
    Ok((StatusCode::CREATED, Json(TaskView::of(&state))))
}
