//! A task's journal as server-sent events, from where the client left off: the event id is the
//! journal seq, so a client that reconnects with `Last-Event-ID` gets exactly the events after it,
//! each once, in order. The stream reads the store (the journal is the truth, whoever wrote it),
//! wakes at once for events this process's workers journal and polls for the others'; it ends
//! after the event that ends the task, and keeps an idle connection alive with comments.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use baton_core::{Event, Recorded, TaskId};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::{Api, ApiError, Params};

/// How often the store is read when nothing woke the stream: events written by another process.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FollowQuery {
    /// Events after this seq (as `Last-Event-ID`, which wins when both are given).
    after: Option<u64>,
}

struct Follow {
    api: Api,
    id: TaskId,
    next: u64,
    pending: VecDeque<Recorded>,
    journaled: broadcast::Receiver<(TaskId, u64)>,
    ended: bool,
}

/// The task's journal as server-sent events (id = seq, type = the event's kind, data = the
/// recorded event), from the start or after `Last-Event-ID` / `after`; it ends after the task's
/// last event.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/events/stream", tag = "events",
    params(("id" = String, Path, description = "The task's id or a unique prefix of it"), FollowQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this seq")),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub(crate) async fn follow(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(query): Params<FollowQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = crate::task_id(&api, &id).await?;
    let last = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().ok().and_then(|text| text.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_last_event_id",
                "Last-Event-ID is not a seq".into(),
            )
        })?),
        None => query.after,
    };
    let events = journal(api, id, last.map_or(0, |seq| seq + 1)).map(|recorded| Ok(sse_event(&recorded)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive")))
}

/// The task's events from seq `next` on, as they are journaled, until the task has ended and
/// every event has gone out, or the server closes.
pub(crate) fn journal(api: Api, id: TaskId, next: u64) -> impl Stream<Item = Recorded> {
    let journaled = api.journaled.subscribe();
    let closing = api.closing.clone().cancelled_owned();
    let state = Follow { api, id, next, pending: VecDeque::new(), journaled, ended: false };
    futures_util::stream::unfold(state, |mut state| async move {
        let recorded = state.next_event().await?;
        Some((recorded, state))
    })
    .take_until(closing)
}

impl Follow {
    /// The next event to send, waiting for it if need be; `None` once the task has ended and every
    /// event has gone out (or the store cannot be read).
    async fn next_event(&mut self) -> Option<Recorded> {
        loop {
            if let Some(recorded) = self.pending.pop_front() {
                self.next = recorded.seq + 1;
                self.ended = matches!(recorded.event, Event::Finished { .. } | Event::Cancelled { .. });
                return Some(recorded);
            }
            if self.ended {
                return None;
            }
            let events = self.api.store.events(&self.id, self.next).await.ok()?;
            if !events.is_empty() {
                self.pending.extend(events);
                continue;
            }
            self.wait().await;
        }
    }

    /// Until this process journals an event of the task, or the poll interval passes.
    async fn wait(&mut self) {
        let deadline = tokio::time::sleep(POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                received = self.journaled.recv() => match received {
                    Ok((task, _)) if task != self.id => continue,
                    // This task's event, or some were missed: read the store either way.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => {
                        (&mut deadline).await;
                        return;
                    }
                },
            }
        }
    }
}

fn sse_event(recorded: &Recorded) -> SseEvent {
    let data = serde_json::to_string(recorded).unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    SseEvent::default().id(recorded.seq.to_string()).event(recorded.event.kind()).data(data)
}

/// The statuses of all tasks, for dashboards: every task once at the start, then each task again
/// whenever its status is seen to change (it is looked at whenever this process journals anything,
/// and every half second; changes quicker than that are merged into the latest). An event's id is the change's time in milliseconds; its type is
/// `status` and its data the task's summary.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events",
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub(crate) async fn statuses(State(api): State<Api>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let journaled = api.journaled.subscribe();
    let closing = api.closing.clone().cancelled_owned();
    let state = Statuses { api, known: std::collections::HashMap::new(), pending: VecDeque::new(), journaled };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        let summary = state.next_change().await?;
        let data = serde_json::to_string(&summary).unwrap_or_default();
        let event = SseEvent::default().id(summary.updated_at.as_millis().to_string()).event("status").data(data);
        Some((Ok(event), state))
    })
    .take_until(closing);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
}

struct Statuses {
    api: Api,
    /// The status last sent for each task.
    known: std::collections::HashMap<TaskId, baton_core::Status>,
    pending: VecDeque<baton_store::TaskSummary>,
    journaled: broadcast::Receiver<(TaskId, u64)>,
}

impl Statuses {
    async fn next_change(&mut self) -> Option<baton_store::TaskSummary> {
        loop {
            if let Some(summary) = self.pending.pop_front() {
                return Some(summary);
            }
            // Oldest first, so a dashboard sees tasks in the order they came.
            for summary in self.api.store.list(None).await.ok()?.into_iter().rev() {
                if self.known.get(&summary.id) != Some(&summary.status) {
                    self.known.insert(summary.id.clone(), summary.status);
                    self.pending.push_back(summary);
                }
            }
            if self.pending.is_empty() {
                let deadline = tokio::time::sleep(POLL);
                tokio::select! {
                    _ = deadline => {}
                    _ = self.journaled.recv() => {}
                }
            }
        }
    }
}
