use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;

use super::script::{Expect, Fault, Reply, Script};
use super::wire::{Anthropic, Chat, Overload, Responses, Sse, Wire};

/// A request as the server received it, and what it was answered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub protocol: String,
    pub path: String,
    /// The `authorization` or `x-api-key` header, if any.
    pub credential: Option<String>,
    pub body: Value,
    /// The turn the request was matched to, if any.
    pub turn: Option<usize>,
    /// `reply`, or the fault or refusal it got instead.
    pub served: String,
    /// When it arrived, in microseconds since the server started: what a benchmark measures an
    /// agent's steps by, the same way for every agent.
    pub received_us: u64,
}

#[derive(Debug, Default)]
struct Cursor {
    turn: usize,
    faults_used: usize,
}

struct Shared {
    script: Script,
    cursor: Mutex<Cursor>,
    /// Bodies already answered with a reply, and the turn that answered them.
    answered: Mutex<std::collections::HashMap<String, usize>>,
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<Vec<String>>,
    started: std::time::Instant,
}

/// Locks a mutex even if a panicking handler poisoned it: the data (a log, a cursor) stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running server; it stops when dropped.
#[derive(Debug)]
pub struct ScriptedServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("turns", &self.script.turns.len()).finish()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// Serves `script` on an ephemeral port of 127.0.0.1.
    pub async fn start(script: Script) -> std::io::Result<ScriptedServer> {
        ScriptedServer::bind(script, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn bind(script: Script, addr: SocketAddr) -> std::io::Result<ScriptedServer> {
        let shared = Arc::new(Shared {
            script,
            cursor: Mutex::default(),
            answered: Mutex::default(),
            requests: Mutex::default(),
            failures: Mutex::default(),
            started: std::time::Instant::now(),
        });
        let router = Router::new()
            .route("/v1/responses", post(responses))
            .route("/responses", post(responses))
            .route("/v1/chat/completions", post(chat))
            .route("/chat/completions", post(chat))
            .route("/v1/messages", post(messages))
            .route("/_testkit/requests", get(list))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(ScriptedServer { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash or path.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Expectations that requests did not meet, and requests past the end of the script.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.shared.failures).clone()
    }

    /// Turns not yet answered with their reply.
    pub fn remaining_turns(&self) -> usize {
        self.shared.script.turns.len().saturating_sub(lock(&self.shared.cursor).turn)
    }
}

async fn responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &Responses, "/v1/responses", &headers, &body).await
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &Chat, "/v1/chat/completions", &headers, &body).await
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &Anthropic, "/v1/messages", &headers, &body).await
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(lock(&shared.requests).clone()).into_response()
}

/// What the script says to do with one request.
enum Action {
    Refuse(String),
    /// The prompt does not fit the script's context window: `(tokens, window)`.
    Overflow(u64, u64),
    Fault(usize, Fault),
    Reply(Option<usize>, Reply),
}

/// A request's tokens as the scripted server counts them: the o200k tokens of every string in the
/// body (roles, texts, tool schemas, ids), which is close to what a provider bills.
pub fn count_tokens(body: &Value) -> u64 {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let mut tokens = 0;
    visit_strings(body, &mut |text| tokens += bpe.encode_ordinary(text).len() as u64);
    tokens
}

/// Every string of a request's body, unescaped, one per line: the text a model reads.
pub fn text_of(body: &Value) -> String {
    let mut out = String::new();
    visit_strings(body, &mut |text| {
        out.push_str(text);
        out.push('\n');
    });
    out
}

fn visit_strings(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| visit_strings(item, visit)),
        Value::Object(map) => map.values().for_each(|item| visit_strings(item, visit)),
        _ => {}
    }
}

/// Why a request does not meet `expect`; empty when it does.
fn unmet(expect: &Expect, wire: &dyn Wire, body: &Value, raw: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(protocol) = &expect.protocol
        && protocol != wire.name()
    {
        problems.push(format!("expected protocol {protocol}, got {}", wire.name()));
    }
    if let Some(model) = &expect.model
        && body.get("model").and_then(Value::as_str) != Some(model)
    {
        problems.push(format!("expected model {model}, got {}", body.get("model").unwrap_or(&Value::Null)));
    }
    if let Some(needle) = &expect.body_contains
        && !raw.contains(needle.as_str())
    {
        problems.push(format!("expected the request body to contain {needle:?}"));
    }
    if let Some(needle) = &expect.last_tool_result_contains {
        match wire.last_tool_result(body) {
            Some(result) if result.contains(needle.as_str()) => {}
            Some(result) => {
                problems.push(format!("expected the last tool result to contain {needle:?}, it is {result:?}"))
            }
            None => problems.push(format!("expected a tool result containing {needle:?}, the request has none")),
        }
    }
    problems
}

fn next_action(shared: &Shared, wire: &dyn Wire, body: &Value, raw: &str) -> Action {
    if let Some(window) = shared.script.context_window {
        let tokens = count_tokens(body);
        if tokens > window {
            return Action::Overflow(tokens, window);
        }
    }
    if let Some(rule) = shared.script.rules.iter().find(|rule| unmet(&rule.when, wire, body, raw).is_empty()) {
        return Action::Reply(None, rule.reply.clone());
    }
    if shared.script.replay_identical
        && let Some(&turn) = lock(&shared.answered).get(raw)
    {
        return Action::Reply(Some(turn), shared.script.turns[turn].reply.clone());
    }
    let mut cursor = lock(&shared.cursor);
    let Some(turn) = shared.script.turns.get(cursor.turn) else {
        return Action::Refuse(format!(
            "the script has no turn left for this request (it has {})",
            shared.script.turns.len()
        ));
    };
    let index = cursor.turn;
    let problems = unmet(&turn.expect, wire, body, raw);
    if !problems.is_empty() {
        return Action::Refuse(format!("turn {index}: {}", problems.join("; ")));
    }
    if let Some(fault) = turn.faults.get(cursor.faults_used) {
        cursor.faults_used += 1;
        return Action::Fault(index, fault.clone());
    }
    cursor.turn += 1;
    cursor.faults_used = 0;
    if shared.script.replay_identical {
        lock(&shared.answered).insert(raw.to_owned(), index);
    }
    Action::Reply(Some(index), turn.reply.clone())
}

async fn serve(shared: &Shared, wire: &dyn Wire, path: &str, headers: &HeaderMap, raw: &Bytes) -> Response {
    let raw_text = String::from_utf8_lossy(raw);
    let credential = ["authorization", "x-api-key"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).map(str::to_owned));
    let mut record = RecordedRequest {
        protocol: wire.name().to_owned(),
        path: path.to_owned(),
        credential,
        body: Value::Null,
        turn: None,
        served: String::new(),
        received_us: u64::try_from(shared.started.elapsed().as_micros()).unwrap_or(u64::MAX),
    };
    let body: Value = match serde_json::from_str(&raw_text) {
        Ok(body) => body,
        Err(e) => {
            record.served = format!("refused: the body is not JSON ({e})");
            lock(&shared.requests).push(record);
            return json_response(StatusCode::BAD_REQUEST, &wire.error_body(400, "the request body is not JSON"), None);
        }
    };
    record.body = body.clone();
    if let Err(message) = wire.check(&body) {
        lock(&shared.failures).push(format!("invalid request: {message}"));
        record.served = format!("invalid: {message}");
        lock(&shared.requests).push(record);
        return json_response(StatusCode::BAD_REQUEST, &wire.error_body(400, &message), None);
    }
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("scripted").to_owned();
    let action = next_action(shared, wire, &body, &raw_text);
    let response = match action {
        Action::Refuse(reason) => {
            lock(&shared.failures).push(reason.clone());
            record.served = format!("refused: {reason}");
            json_response(StatusCode::IM_A_TEAPOT, &wire.error_body(418, &format!("scripted server: {reason}")), None)
        }
        Action::Overflow(tokens, window) => {
            record.served = format!("context_overflow: {tokens} tokens > {window}");
            json_response(StatusCode::BAD_REQUEST, &wire.context_overflow(tokens, window), None)
        }
        Action::Fault(turn, fault) => {
            record.turn = Some(turn);
            record.served = format!("fault: {fault:?}");
            fault_response(wire, &fault, &body, streaming, turn, shared).await
        }
        Action::Reply(turn, reply) => {
            let reply = Reply { usage: reply.usage.for_request(&body), ..reply };
            record.turn = turn;
            record.served = if turn.is_some() { "reply" } else { "rule" }.to_owned();
            if let Some(ms) = reply.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if streaming {
                sse_response(wire.stream(&reply, &model))
            } else {
                json_response(StatusCode::OK, &wire.whole(&reply, &model), None)
            }
        }
    };
    lock(&shared.requests).push(record);
    response
}

async fn fault_response(
    wire: &dyn Wire,
    fault: &Fault,
    body: &Value,
    streaming: bool,
    turn: usize,
    shared: &Shared,
) -> Response {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("scripted");
    match fault {
        Fault::Status { status, retry_after, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = message.clone().unwrap_or_else(|| format!("scripted {status}"));
            json_response(status, &wire.error_body(status.as_u16(), &message), *retry_after)
        }
        Fault::Overloaded => match wire.overloaded(model) {
            Overload::Http { status, body } => {
                json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), &body, None)
            }
            Overload::InStream(events) => sse_response(events),
        },
        Fault::CutAfter { bytes } => {
            let reply = &shared.script.turns[turn].reply;
            let reply = &Reply { usage: reply.usage.for_request(body), ..reply.clone() };
            let full = if streaming {
                wire.stream(reply, model).iter().map(Sse::to_text).collect::<String>()
            } else {
                wire.whole(reply, model).to_string()
            };
            let cut = full.as_bytes()[..(*bytes).min(full.len())].to_vec();
            abort_after(Bytes::from(cut), Duration::ZERO, streaming)
        }
        Fault::CutBeforeLastEvent => {
            let reply = &shared.script.turns[turn].reply;
            let reply = Reply { usage: reply.usage.for_request(body), ..reply.clone() };
            let mut events = wire.stream(&reply, model);
            events.pop();
            abort_after(Bytes::from(events.iter().map(Sse::to_text).collect::<String>()), Duration::ZERO, true)
        }
        Fault::Stall { ms } => abort_after(Bytes::new(), Duration::from_millis(*ms), true),
        Fault::Pings { ms } => {
            let pings = (*ms / 50).max(1);
            let chunks = stream::iter(0..pings).then(|_| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, std::io::Error>(Bytes::from_static(b": ping\n\n"))
            });
            let chunks = chunks.chain(stream::once(async { Err(std::io::Error::other("scripted connection cut")) }));
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(Body::from_stream(chunks))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Fault::ContextOverflow => {
            let tokens = count_tokens(body);
            let window = shared.script.context_window.unwrap_or(tokens.saturating_sub(1));
            json_response(StatusCode::BAD_REQUEST, &wire.context_overflow(tokens, window), None)
        }
        Fault::MalformedEvent => {
            sse_response(vec![Sse { event: Some("response.output_text.delta"), data: "{\"type\": oops".to_owned() }])
        }
    }
}

fn json_response(status: StatusCode, body: &Value, retry_after: Option<u64>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(seconds) = retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A stream of events, one chunk each, so a client sees them arrive separately.
fn sse_response(events: Vec<Sse>) -> Response {
    let chunks = stream::iter(events.into_iter().map(|event| Ok::<_, Infallible>(Bytes::from(event.to_text()))));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Sends `head`, waits, then breaks the connection the way a crashed upstream does: the chunked body
/// never gets its closing chunk.
fn abort_after(head: Bytes, wait: Duration, event_stream: bool) -> Response {
    let chunks = stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(stream::once(async move {
        tokio::time::sleep(wait).await;
        Err(std::io::Error::other("scripted connection cut"))
    }));
    let content_type = if event_stream { "text/event-stream" } else { "application/json" };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
