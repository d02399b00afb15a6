//! The UI's pages for work that starts itself: schedules (when they fire next, what their
//! firings came to, pause and resume) and hooks (their rules, and every delivery's outcome).

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use baton_core::{HookRule, Scope, Timestamp};
use baton_store::Firings;

use super::actions::{Nothing, back};
use super::pages::{Failure, NoticeQuery, headline, render};
use super::session::{Session, Submitted};
use crate::{Api, now};

/// Firings shown per schedule, and deliveries on the hooks page.
const LATEST_FIRINGS: u32 = 8;
const LATEST_DELIVERIES: u32 = 100;

struct ScheduleRow {
    name: String,
    template: String,
    rule: String,
    limits: String,
    paused: Option<String>,
    next: Vec<String>,
    firings: Vec<FiringRow>,
}

struct FiringRow {
    at: String,
    outcome: String,
    detail: String,
    task: Option<String>,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    schedules: Vec<ScheduleRow>,
}

/// `GET /schedules`.
pub(crate) async fn schedules(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, Failure> {
    let mut rows = Vec::new();
    for saved in api.store.schedules().await.map_err(Failure::store)? {
        let schedule = &saved.schedule;
        let firings = api
            .store
            .firings(&schedule.name, Firings::All, Timestamp(0), LATEST_FIRINGS)
            .await
            .map_err(Failure::store)?
            .into_iter()
            .map(|firing| FiringRow {
                at: firing.at.to_string(),
                outcome: firing.outcome.to_string(),
                detail: headline(&firing.detail, 120),
                task: firing.task.filter(|_| firing.outcome == baton_core::FiringOutcome::Started),
            })
            .collect();
        let next = match saved.paused {
            Some(_) => Vec::new(),
            None => {
                api.tasks.next_firings(schedule, saved.cursor.max(now()), 3).iter().map(|at| at.to_string()).collect()
            }
        };
        let limits: Vec<String> = [
            schedule.runs_per_day.map(|n| format!("{n} runs a day")),
            schedule.run_budget.map(|c| format!("{c} credits a run")),
            schedule.month_budget.map(|c| format!("{c} credits a month")),
            Some(format!("pauses after {} failed runs", schedule.max_failures)),
        ]
        .into_iter()
        .flatten()
        .collect();
        rows.push(ScheduleRow {
            name: schedule.name.clone(),
            template: schedule.template.clone(),
            rule: format!(
                "{} ({}, {}, catch-up {})",
                schedule.cron, schedule.timezone, schedule.mode, schedule.catch_up
            ),
            limits: limits.join(", "),
            paused: saved.paused.clone(),
            next,
            firings,
        });
    }
    Ok(render(&SchedulesPage { me: session.name, csrf: session.csrf, notice: query.notice, schedules: rows }))
}

/// `POST /schedules/{name}/pause`.
pub(crate) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
    Submitted(session, Nothing {}): Submitted<Nothing>,
) -> Result<Response, Failure> {
    session.may(Scope::Write)?;
    let by = session.name.as_deref().unwrap_or("the open server");
    api.store.pause_schedule(&name, &format!("paused by {by} in the UI"), now()).await.map_err(Failure::store)?;
    Ok(back("/schedules", &format!("Schedule {name} paused.")))
}

/// `POST /schedules/{name}/resume`.
pub(crate) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
    Submitted(session, Nothing {}): Submitted<Nothing>,
) -> Result<Response, Failure> {
    session.may(Scope::Write)?;
    api.store.resume_schedule(&name, now()).await.map_err(Failure::store)?;
    api.tasks.wake_schedules();
    Ok(back("/schedules", &format!("Schedule {name} resumed: it fires from now on.")))
}

struct HookRow {
    name: String,
    kind: String,
    rules: Vec<String>,
}

struct DeliveryRow {
    at: String,
    hook: String,
    id: String,
    event: String,
    outcome: String,
    status: u16,
    detail: String,
    task: Option<String>,
}

#[derive(Template)]
#[template(path = "hooks.html")]
struct HooksPage {
    me: Option<String>,
    csrf: String,
    notice: Option<String>,
    hooks: Vec<HookRow>,
    deliveries: Vec<DeliveryRow>,
}

/// `GET /hooks`.
pub(crate) async fn hooks(
    State(api): State<Api>,
    Extension(session): Extension<Session>,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, Failure> {
    let hooks = api
        .store
        .hooks()
        .await
        .map_err(Failure::store)?
        .into_iter()
        .map(|saved| HookRow {
            name: saved.hook.name,
            kind: saved.hook.kind.to_string(),
            rules: saved.hook.rules.iter().map(rule).collect(),
        })
        .collect();
    let deliveries = api
        .store
        .deliveries(None, LATEST_DELIVERIES)
        .await
        .map_err(Failure::store)?
        .into_iter()
        .map(|delivery| DeliveryRow {
            at: delivery.received_at.to_string(),
            hook: delivery.hook,
            id: delivery.id,
            event: delivery.event,
            outcome: delivery.outcome.to_string(),
            status: delivery.status,
            detail: headline(&delivery.detail, 160),
            task: delivery.task,
        })
        .collect();
    Ok(render(&HooksPage { me: session.name, csrf: session.csrf, notice: query.notice, hooks, deliveries }))
}

fn rule(rule: &HookRule) -> String {
    match rule {
        HookRule::IssueLabelled { label, template } => {
            format!("an issue labelled “{label}” starts template {template}")
        }
        HookRule::Comment { mention } => {
            format!("a pull request comment starting “{mention}” follows up its branch's task")
        }
        HookRule::Any { template } => format!("every delivery starts template {template}"),
    }
}
