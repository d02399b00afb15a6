//! The UI's forms: each does what its API call does, through the same `Tasks` and store, and sends
//! the browser back to the page it came from with a line saying what happened.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use baton_core::{Scope, TokenHash};
use serde::Deserialize;

use super::pages::{Failure, LoginPage, NewTaskPage, TaskForm, render};
use super::session::{COOKIE, Session, Submitted};
use crate::account::{AutoReloadView, PolicyView, TopUp};
use crate::{Api, FollowedUp, NewTask, Settled};

/// Back to `path`, saying `notice`.
pub(crate) fn back(path: &str, notice: &str) -> Response {
    let query = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
    Redirect::to(&format!("{path}?{query}")).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// `POST /login`: a valid, active token signs in.
pub(crate) async fn login(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return (StatusCode::BAD_REQUEST, render(&LoginPage { error: Some("Give a token.".into()) })).into_response();
    };
    let secret = form.token.trim();
    // Only token characters reach the cookie header.
    if !secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return (StatusCode::BAD_REQUEST, render(&LoginPage { error: Some("That is not a token.".into()) }))
            .into_response();
    }
    match api.store.token(&TokenHash::of(secret)).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let page = LoginPage { error: Some("That token is unknown or revoked.".into()) };
            return (StatusCode::UNAUTHORIZED, render(&page)).into_response();
        }
        Err(error) => return Failure::store(error).into_response(),
    }
    let cookie = format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct Nothing {}

/// `POST /logout`: the cookie goes.
pub(crate) async fn logout(Submitted(_, Nothing {}): Submitted<Nothing>) -> Response {
    let mut response = Redirect::to("/login").into_response();
    let cleared = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Lines of a text area, blank ones left out.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect()
}

/// An optional number from a text field: empty is none.
fn number<T: std::str::FromStr>(text: &str, field: &str) -> Result<Option<T>, String> {
    match text.trim() {
        "" => Ok(None),
        text => text.parse().map(Some).map_err(|_| format!("{field}: `{text}` is not a number")),
    }
}

impl TaskForm {
    fn to_task(&self) -> Result<NewTask, String> {
        let text = |value: &str| Some(value.trim().to_owned()).filter(|value| !value.is_empty());
        let pick = match self.pick.as_str() {
            "" => None,
            other => Some(other.parse::<baton_core::Pick>()?),
        };
        Ok(NewTask {
            request: self.request.clone(),
            repo: self.repo.trim().to_owned(),
            push: false,
            base: text(&self.base),
            checks: lines(&self.checks),
            check_timeout_secs: number(&self.check_timeout_secs, "check timeout")?,
            model: text(&self.model),
            scope: lines(&self.scope),
            protect: lines(&self.protect),
            budget: text(&self.budget),
            window_secs: number(&self.window_secs, "window")?,
            max_steps: number(&self.max_steps, "most steps")?,
            context_window: number(&self.context_window, "context window")?,
            review: Some(!self.no_review),
            plan: self.plan,
            approve_plan: self.approve_plan,
            captain_model: text(&self.captain_model),
            review_model: text(&self.review_model),
            priority: number(&self.priority, "priority")?,
            attempts: number(&self.attempts, "attempts")?,
            pick,
        })
    }
}

/// `POST /tasks`: a task from the form, queued; a refused one shows the form again with why.
pub(crate) async fn create(
    State(api): State<Api>,
    Submitted(session, form): Submitted<TaskForm>,
) -> Result<Response, Failure> {
    session.may(Scope::Write)?;
    let name = form.template_name.trim().to_owned();
    if !name.is_empty() {
        let saved = match form.to_task() {
            Ok(task) => api.tasks.save_template(name, task).await.map_err(|refused| refused.to_string()),
            Err(message) => Err(message),
        };
        return Ok(match saved {
            Ok(template) => back("/templates", &format!("Template {} saved.", template.name)),
            Err(message) => {
                let notice = Some(format!("Not saved: {message}"));
                let page = NewTaskPage { me: session.name, csrf: session.csrf, notice, form };
                (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
            }
        });
    }
    let made = match form.to_task() {
        Ok(task) => api.tasks.create(task, session.name.clone()).await,
        Err(message) => Err(message),
    };
    match made {
        Ok(id) => {
            let _ = api.journaled.send((id.clone(), 0));
            Ok(back(&format!("/tasks/{id}"), "Created and queued."))
        }
        Err(message) => {
            let page = NewTaskPage {
                me: session.name,
                csrf: session.csrf,
                notice: Some(format!("Not created: {message}")),
                form,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
        }
    }
}

/// The task `id` names, for a caller who may steer tasks.
async fn steered(api: &Api, session: &Session, id: &str) -> Result<baton_core::TaskId, Failure> {
    session.may(Scope::Write)?;
    api.store.resolve(id).await.map_err(Failure::store)
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    decision: String,
    #[serde(default)]
    answer: String,
    /// `approve` or `deny`: the button pressed.
    verdict: String,
}

/// `POST /tasks/{id}/decide`.
pub(crate) async fn decide(
    State(api): State<Api>,
    Path(id): Path<String>,
    Submitted(session, form): Submitted<DecideForm>,
) -> Result<Response, Failure> {
    let id = steered(&api, &session, &id).await?;
    let approved = form.verdict != "deny";
    api.tasks.decide(&id, &form.decision, form.answer, approved).await?;
    let verb = if approved { "answered" } else { "denied" };
    Ok(back(&format!("/tasks/{id}"), &format!("{} {verb}; the task goes on.", form.decision)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PickForm {
    attempt: String,
}

/// `POST /tasks/{id}/pick`.
pub(crate) async fn pick(
    State(api): State<Api>,
    Path(id): Path<String>,
    Submitted(session, form): Submitted<PickForm>,
) -> Result<Response, Failure> {
    let id = steered(&api, &session, &id).await?;
    api.tasks.pick(&id, &form.attempt).await?;
    Ok(back(&format!("/tasks/{id}"), &format!("{} picked; it is merged and checked.", form.attempt)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SettleForm {
    status: Settled,
    #[serde(default)]
    note: String,
}

/// `POST /tasks/{id}/findings/{finding}`.
pub(crate) async fn settle(
    State(api): State<Api>,
    Path((id, finding)): Path<(String, String)>,
    Submitted(session, form): Submitted<SettleForm>,
) -> Result<Response, Failure> {
    let id = steered(&api, &session, &id).await?;
    api.tasks.settle(&id, &finding, form.status, form.note).await?;
    let verb = match form.status {
        Settled::Resolved => "resolved",
        Settled::Dismissed => "dismissed",
    };
    Ok(back(&format!("/tasks/{id}"), &format!("{finding} {verb}.")))
}

#[derive(Debug, Deserialize)]
pub(crate) struct MessageForm {
    text: String,
}

/// `POST /tasks/{id}/message`: a follow-up; an ended task is continued by a new one.
pub(crate) async fn message(
    State(api): State<Api>,
    Path(id): Path<String>,
    Submitted(session, form): Submitted<MessageForm>,
) -> Result<Response, Failure> {
    let id = steered(&api, &session, &id).await?;
    Ok(match api.tasks.follow_up(&id, &form.text).await? {
        FollowedUp::Delivered { task, number } => back(
            &format!("/tasks/{task}"),
            &format!("Follow-up {number} sent; the agent reads it before its next model call."),
        ),
        FollowedUp::Continued { task } => {
            let _ = api.journaled.send((task.clone(), 0));
            back(
                &format!("/tasks/{task}"),
                &format!("Task {id} had ended: this task continues its branch with your follow-up."),
            )
        }
    })
}

/// `POST /templates/{name}/start`: a task from the template, for the caller.
pub(crate) async fn start_template(
    State(api): State<Api>,
    Path(name): Path<String>,
    Submitted(session, Nothing {}): Submitted<Nothing>,
) -> Result<Response, Failure> {
    session.may(Scope::Write)?;
    let id = api.tasks.start_template(&name, session.name.clone()).await?;
    let _ = api.journaled.send((id.clone(), 0));
    Ok(back(&format!("/tasks/{id}"), &format!("Started from template {name}.")))
}

/// `POST /templates/{name}/delete`.
pub(crate) async fn delete_template(
    State(api): State<Api>,
    Path(name): Path<String>,
    Submitted(session, Nothing {}): Submitted<Nothing>,
) -> Result<Response, Failure> {
    session.may(Scope::Write)?;
    api.store.delete_template(&name).await.map_err(Failure::store)?;
    Ok(back("/templates", &format!("Template {name} deleted.")))
}

/// `POST /tasks/{id}/cancel`.
pub(crate) async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    Submitted(session, Nothing {}): Submitted<Nothing>,
) -> Result<Response, Failure> {
    let id = steered(&api, &session, &id).await?;
    api.tasks.cancel(&id, "cancelled in the web UI").await?;
    Ok(back(&format!("/tasks/{id}"), "Cancelled."))
}

/// `POST /tasks/{id}/resume`.
pub(crate) async fn resume(
    State(api): State<Api>,
    Path(id): Path<String>,
    Submitted(session, Nothing {}): Submitted<Nothing>,
) -> Result<Response, Failure> {
    let id = steered(&api, &session, &id).await?;
    api.tasks.resume(&id).await?;
    Ok(back(&format!("/tasks/{id}"), "Resumed."))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TopUpForm {
    credits: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    grant: String,
}

/// `POST /budget/topup` (admin).
pub(crate) async fn top_up(
    State(api): State<Api>,
    Submitted(session, form): Submitted<TopUpForm>,
) -> Result<Response, Failure> {
    session.may(Scope::Admin)?;
    let body = TopUp { credits: form.credits.trim().to_owned(), grant: !form.grant.is_empty(), note: form.note };
    let account = crate::account::credit(&api, body).await?;
    Ok(back("/budget", &format!("Added; the balance is {} credits.", account.balance)))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PolicyForm {
    #[serde(default)]
    monthly_cap: String,
    #[serde(default)]
    threshold: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    max_per_month: String,
    #[serde(default)]
    overage: String,
}

/// `POST /budget/policy` (admin): the account's rules, checked as the API checks them.
pub(crate) async fn set_policy(
    State(api): State<Api>,
    Submitted(session, form): Submitted<PolicyForm>,
) -> Result<Response, Failure> {
    session.may(Scope::Admin)?;
    let unprocessable = |message: String| Failure::new(StatusCode::UNPROCESSABLE_ENTITY, message);
    let auto_reload = match form.threshold.trim() {
        "" => None,
        threshold => Some(AutoReloadView {
            threshold: threshold.to_owned(),
            target: form.target.trim().to_owned(),
            max_per_month: number(&form.max_per_month, "times a month").map_err(unprocessable)?.unwrap_or(1),
        }),
    };
    let cap = form.monthly_cap.trim();
    let view = PolicyView {
        monthly_cap: (!cap.is_empty()).then(|| cap.to_owned()),
        auto_reload,
        overage: !form.overage.is_empty(),
    };
    api.store.set_policy(view.to_policy()?).await.map_err(Failure::store)?;
    Ok(back("/budget", "The rules are saved."))
}
