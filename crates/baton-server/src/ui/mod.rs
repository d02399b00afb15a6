//! The web UI at `/`: pages rendered on the server (askama) from the same store and `Tasks` as the
//! API. Every page is whole HTML and every action a plain form, so everything reads and works
//! without JavaScript; a small script of baton's own (`assets/ui.js`) makes the pages live: the
//! task page appends timeline entries the server renders and streams (`/ui/tasks/{id}/stream`),
//! the task list reloads its rows as statuses change. Every asset is compiled into the binary.

mod actions;
mod automation;
mod pages;
mod session;
mod timeline;

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;

use crate::Api;
pub(crate) use session::COOKIE;
pub(crate) use session::cookie;

/// The UI's routes, each behind a signed-in session but the login page and the assets.
pub(crate) fn routes(api: Api) -> Router<Api> {
    Router::new()
        .route("/", get(pages::tasks))
        .route("/login", get(pages::login).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/tasks", post(actions::create))
        .route("/tasks/new", get(pages::new_task))
        .route("/tasks/{id}", get(pages::task))
        .route("/tasks/{id}/diff", get(pages::diff))
        .route("/tasks/{id}/decide", post(actions::decide))
        .route("/tasks/{id}/pick", post(actions::pick))
        .route("/tasks/{id}/findings/{finding}", post(actions::settle))
        .route("/tasks/{id}/message", post(actions::message))
        .route("/tasks/{id}/cancel", post(actions::cancel))
        .route("/tasks/{id}/resume", post(actions::resume))
        .route("/templates", get(pages::templates))
        .route("/templates/{name}/start", post(actions::start_template))
        .route("/templates/{name}/delete", post(actions::delete_template))
        .route("/schedules", get(automation::schedules))
        .route("/schedules/{name}/pause", post(automation::pause))
        .route("/schedules/{name}/resume", post(automation::resume))
        .route("/hooks", get(automation::hooks))
        .route("/budget", get(pages::budget))
        .route("/budget/topup", post(actions::top_up))
        .route("/budget/policy", post(actions::set_policy))
        .route("/ui/tasks/{id}/header", get(pages::header))
        .route("/ui/tasks/{id}/stream", get(stream))
        .route("/assets/ui.css", get(|| asset("text/css; charset=utf-8", include_str!("../../assets/ui.css"))))
        .route("/assets/ui.js", get(|| asset("text/javascript; charset=utf-8", include_str!("../../assets/ui.js"))))
        .layer(axum::middleware::from_fn_with_state(api, session::require))
        .layer(axum::middleware::from_fn(guarded))
}

/// What every page tells the browser: run only this server's script and style (no inline ones,
/// so text from a task that slipped past the escaping still could not run), send forms only here,
/// be framed by no one, and take each answer for the type it says.
async fn guarded(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                  form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

async fn asset(kind: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    /// Entries of events from this seq on.
    from: Option<u64>,
}

/// `GET /ui/tasks/{id}/stream?from=SEQ`: the timeline entries of the task's events from `from` on,
/// rendered, one server-sent message each (its id the event's seq), as they are journaled.
async fn stream(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, pages::Failure> {
    let id = api.store.resolve(&id).await.map_err(pages::Failure::store)?;
    let events = crate::stream::journal(api, id, query.from.unwrap_or(0)).map(|recorded| {
        let entries = timeline::entry(&recorded).into_iter().collect();
        let html = pages::EntriesFragment { entries }.render().unwrap_or_default();
        Ok(SseEvent::default().id(recorded.seq.to_string()).data(html.trim()))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")))
}
