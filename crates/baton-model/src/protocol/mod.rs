//! The wire formats. A [`Protocol`] turns a [`ModelRequest`] into an HTTP request and makes a
//! [`Decoder`] that turns the provider's server-sent events into [`StreamEvent`]s; the transport does
//! everything else.

mod anthropic;
mod chat;
mod responses;

use std::time::Duration;

use baton_core::{ModelRequest, Part, ToolSpec};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub use anthropic::AnthropicMessages;
pub use chat::ChatCompletions;
pub use responses::OpenAiResponses;

use crate::StreamEvent;
use crate::error::ModelError;

pub trait Protocol: Send + Sync + 'static {
    /// The name that tags reasoning items this protocol can take back.
    fn name(&self) -> &'static str;
    /// The endpoint, relative to the provider's base URL.
    fn path(&self) -> &'static str;
    fn headers(&self, api_key: Option<&str>) -> Result<HeaderMap, ModelError>;
    /// The JSON body of a streaming request.
    fn body(&self, request: &ModelRequest) -> Result<Value, ModelError>;
    fn decoder(&self) -> Box<dyn Decoder>;
    /// The typed error for a response with a failing HTTP status.
    fn error(&self, status: u16, retry_after: Option<Duration>, body: &str) -> ModelError;
}

/// A message's parts without the reasoning at its end. Reasoning is sent back only with what it led
/// to: an answer cut off while the model was still thinking leaves it orphaned, and providers refuse
/// it on its own (Responses: a reasoning item "without its required following item"; Anthropic: an
/// assistant turn whose final block is `thinking`), on every later request of the leg.
pub(crate) fn answered(parts: &[Part]) -> &[Part] {
    let said = |part: &Part| match part {
        Part::Reasoning { .. } => false,
        Part::Text { text } => !text.is_empty(),
        Part::ToolCall { .. } | Part::ToolResult { .. } => true,
    };
    let end = parts.iter().rposition(said).map_or(0, |last| last + 1);
    &parts[..end]
}

/// Reads one response's server-sent events.
pub trait Decoder: Send {
    /// Handles one event (`name` is empty when the event has no `event:` line), appending what it
    /// carries to `out`. Unknown events are ignored; malformed ones are a [`ModelError::Protocol`].
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), ModelError>;
    /// True once the event that ends a complete response has arrived.
    fn is_done(&self) -> bool;
}

/// Parses an event's data into the decoder's typed view of it: fields it does not name are skipped
/// without being built, which is most of the cost of a stream. Data that is not JSON is an error;
/// JSON of an unexpected shape is an error only for an event the decoder acts on (its type is in
/// `handled`, or it has no type and `handled` is empty); any other event is ignored (`None`).
pub(crate) fn parse_event<'a, T: serde::Deserialize<'a>>(
    name: &str,
    data: &'a str,
    handled: &[&str],
) -> Result<Option<T>, ModelError> {
    let typed_error = match serde_json::from_str(data) {
        Ok(typed) => return Ok(Some(typed)),
        Err(e) => e,
    };
    let value: Value = serde_json::from_str(data).map_err(|e| {
        let shown: String = data.chars().take(200).collect();
        ModelError::Protocol(format!("event `{name}` is not valid JSON ({e}): {shown}"))
    })?;
    let kind = value.get("type").and_then(Value::as_str);
    let acted_on = match kind {
        Some(kind) => handled.contains(&kind),
        None => handled.is_empty(),
    };
    if acted_on {
        let kind = kind.unwrap_or(name);
        return Err(ModelError::Protocol(format!("event `{kind}` has an unexpected shape: {typed_error}")));
    }
    Ok(None)
}

/// The request's tools as each protocol writes them; `shape` gets a tool and its parsed schema.
pub(crate) fn tools_json(
    request: &ModelRequest,
    shape: impl Fn(&ToolSpec, Value) -> Value,
) -> Result<Vec<Value>, ModelError> {
    request
        .tools
        .iter()
        .map(|tool| Ok(shape(tool, json_value(&format!("the schema of tool `{}`", tool.name), &tool.parameters)?)))
        .collect()
}

/// The typed error for a failing response of an OpenAI-style server.
pub(crate) fn openai_error(status: u16, retry_after: Option<Duration>, body: &str) -> ModelError {
    let body = openai_error_body(body);
    let overflow = says_context_overflow(&body.code, &body.message);
    classify(status, retry_after, body, overflow)
}

/// A tool schema or tool-call arguments, from JSON text to a JSON value for a request body.
pub(crate) fn json_value(what: &str, text: &str) -> Result<Value, ModelError> {
    serde_json::from_str(text).map_err(|e| ModelError::InvalidRequest(format!("{what} is not valid JSON: {e}")))
}

pub(crate) fn auth_header(headers: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), ModelError> {
    let value = value
        .parse()
        .map_err(|_| ModelError::InvalidRequest(format!("the API key cannot be sent in the {name} header")))?;
    headers.insert(name, value);
    Ok(())
}

/// What a provider said about a failure, read from its error body.
pub(crate) struct ErrorBody {
    pub kind: String,
    pub code: String,
    pub message: String,
}

/// Maps a failure to its typed error; the per-protocol parts are the body shape and `overflow`, which
/// recognises that provider's way of saying the prompt is too long.
pub(crate) fn classify(status: u16, retry_after: Option<Duration>, body: ErrorBody, overflow: bool) -> ModelError {
    let ErrorBody { kind, code, message } = body;
    let message = if message.is_empty() { format!("{kind} {code}").trim().to_owned() } else { message };
    match status {
        _ if overflow => ModelError::ContextOverflow { message },
        401 | 403 => ModelError::Auth { status, message },
        429 if code == "insufficient_quota" => ModelError::QuotaExceeded { message },
        429 => ModelError::RateLimited { retry_after, message },
        529 => ModelError::Overloaded { retry_after, message },
        _ if kind == "overloaded_error" => ModelError::Overloaded { retry_after, message },
        500..=599 => ModelError::Server { status, retry_after, message },
        _ => ModelError::BadRequest { status, message },
    }
}

/// Phrases with which OpenAI-style servers (OpenAI itself, vLLM, llama.cpp, LM Studio) report a prompt
/// that is too long for the model.
pub(crate) fn says_context_overflow(code: &str, message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    code == "context_length_exceeded"
        || code == "exceed_context_size_error"
        || message.contains("maximum context length")
        || message.contains("context window")
        || message.contains("exceeds the available context size")
}

/// Reads `{"error": {"message", "type", "code"}}`, the OpenAI error shape; anything else is kept as the
/// message.
pub(crate) fn openai_error_body(body: &str) -> ErrorBody {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name| error.and_then(|e| e.get(name)).and_then(Value::as_str).unwrap_or_default().to_owned();
    match error {
        Some(Value::String(message)) => {
            ErrorBody { kind: String::new(), code: String::new(), message: message.clone() }
        }
        Some(_) => ErrorBody { kind: field("type"), code: field("code"), message: field("message") },
        None => {
            ErrorBody { kind: String::new(), code: String::new(), message: body.trim().chars().take(500).collect() }
        }
    }
}
