//! The API's OpenAPI document, generated from the handlers and the types they take and give, and
//! served at `/api/v1/openapi.json`. The errors every operation may answer are added to each one
//! here rather than repeated on each handler.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::account::{AccountView, AutoReloadView, EntriesPage, EntryView, PolicyView, TopUp};
use crate::views::{
    CheckMarkView, CheckView, DecisionView, DiffView, ErrorBody, ErrorDetail, EventPage, FindingView, Health, LegView,
    LimitChange, MoneyView, NewTask, PlanStepView, PullRequestView, Settled, StopView, SubtaskView, SummaryView,
    TaskPage, TaskView,
};
use crate::{CancelBody, DecisionBody, MessageBody, MessageSent, PickBody, SettleBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "baton",
        description = "Long-running coding tasks with LLM agents: create them, follow their journals, steer them, and read what they changed."
    ),
    paths(
        crate::healthz,
        crate::metrics::metrics,
        crate::create,
        crate::list,
        crate::show,
        crate::resume,
        crate::pull_request,
        crate::cancel,
        crate::decide,
        crate::pick,
        crate::settle,
        crate::limit,
        crate::message,
        crate::diff,
        crate::events,
        crate::stream::follow,
        crate::stream::statuses,
        crate::account::show,
        crate::account::top_up,
        crate::account::set_policy,
        crate::account::entries,
        crate::templates::list,
        crate::templates::create,
        crate::templates::show,
        crate::templates::delete,
        crate::templates::start,
        crate::hooks::receive,
        crate::hooks::list,
        crate::hooks::deliveries,
        crate::schedules::list,
        crate::schedules::create,
        crate::schedules::show,
        crate::schedules::delete,
        crate::schedules::pause,
        crate::schedules::resume,
    ),
    components(schemas(
        AccountView, AutoReloadView, CancelBody, CheckMarkView, CheckView, PullRequestView, DecisionBody, DecisionView, DiffView, FindingView, LegView, MoneyView,
        PickBody, PlanStepView, EntriesPage, EntryView, ErrorBody,
        ErrorDetail, EventPage, Health, LimitChange, MessageBody, MessageSent, NewTask, PolicyView, Settled, SettleBody, StopView,
        SubtaskView, SummaryView, TaskPage, TaskView, TopUp, crate::templates::TemplateView,
        crate::templates::NewTemplate, crate::templates::TemplateList, crate::hooks::DeliveryView,
        crate::hooks::HookList, crate::hooks::DeliveryLog, crate::schedules::ScheduleView, crate::schedules::ScheduleList,
        crate::schedules::PauseBody
    )),
    modifiers(&Bearer, &Errors),
    security(("bearer" = [])),
    tags(
        (name = "tasks", description = "Create, read and steer tasks"),
        (name = "events", description = "Tasks' journals, paged and live"),
        (name = "account", description = "Credits and the rules of spending them"),
        (name = "templates", description = "Saved task definitions, and tasks started from them"),
        (name = "schedules", description = "Cron rules that start tasks from templates, within limits"),
        (name = "hooks", description = "Deliveries from forges and other signers, which start and steer tasks"),
        (name = "service", description = "Health and metrics"),
    )
)]
struct Document;

/// The OpenAPI document of this API.
pub fn document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}

pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Bearer tokens (`baton token create`).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme =
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("`baton token create`")).build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// What any operation may answer besides its success, each with an [`ErrorBody`]; the health
/// check answers only itself.
const ERRORS: [(&str, &str); 9] = [
    ("400", "The request is malformed: its JSON, query or an ambiguous id prefix"),
    ("401", "No token, or an unknown or revoked one"),
    ("403", "The token's scope does not cover this"),
    ("404", "No such task, finding or decision"),
    ("409", "The task is not in a state that allows this"),
    ("413", "The body is over 1 MiB"),
    ("422", "Well-formed but invalid: a task, an amount or a policy refused"),
    ("429", "Too many requests from this token; see Retry-After"),
    ("500", "The server could not do it"),
];

struct Errors;

impl Modify for Errors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/api/v1/healthz" {
                continue;
            }
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                for (status, description) in ERRORS {
                    let content = ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
                        .build();
                    let response =
                        ResponseBuilder::new().description(description).content("application/json", content).build();
                    operation.responses.responses.entry(status.to_owned()).or_insert(RefOr::T(response));
                }
            }
        }
    }
}
