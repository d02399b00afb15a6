//! Anthropic Messages (`POST {base}/v1/messages`), with `cache_control` breakpoints on the system
//! prompt, the tools and the stable prefix of the conversation, and thinking blocks sent back
//! verbatim with their signatures.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::{FinishReason, ModelRequest, Part, Replay, Role, Usage};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Decoder, ErrorBody, Protocol, auth_header, classify, json_value, parse_event, tools_json};
use crate::StreamEvent;
use crate::error::ModelError;

#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicMessages;

const NAME: &str = "anthropic";
const API_VERSION: &str = "2023-06-01";

fn cache_breakpoint() -> Value {
    json!({"type": "ephemeral"})
}

fn blocks(role: Role, parts: &[Part]) -> Result<Vec<Value>, ModelError> {
    let mut results = Vec::new();
    let mut others = Vec::new();
    for part in super::answered(parts) {
        match (role, part) {
            (_, Part::Text { text }) if text.is_empty() => {}
            (_, Part::Text { text }) => others.push(json!({"type": "text", "text": text})),
            (_, Part::ToolResult { call_id, output, is_error }) => results.push(json!({
                "type": "tool_result", "tool_use_id": call_id, "content": output, "is_error": is_error
            })),
            (_, Part::ToolCall { id, name, arguments }) => {
                // The API takes only an object; a malformed call is shown to the model as it was.
                let input = serde_json::from_str::<Value>(arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({"invalid_json": arguments}));
                others.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            }
            (Role::Assistant, Part::Reasoning { replay: Some(replay), .. }) if replay.protocol == NAME => {
                others.push(json_value("a stored thinking block", &replay.item)?)
            }
            (_, Part::Reasoning { .. }) => {}
        }
    }
    // Tool results must open the user message that answers the calls.
    results.extend(others);
    Ok(results)
}

impl Protocol for AnthropicMessages {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path(&self) -> &'static str {
        "/v1/messages"
    }

    fn headers(&self, api_key: Option<&str>) -> Result<HeaderMap, ModelError> {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        if let Some(key) = api_key {
            auth_header(&mut headers, "x-api-key", key)?;
        }
        Ok(headers)
    }

    fn body(&self, request: &ModelRequest) -> Result<Value, ModelError> {
        let mut messages: Vec<Value> = Vec::new();
        for (i, message) in request.messages.iter().enumerate() {
            let mut content = blocks(message.role, &message.parts)?;
            if i + 1 == request.stable_prefix
                && let Some(last) = content.last_mut()
            {
                last["cache_control"] = cache_breakpoint();
            }
            if content.is_empty() {
                continue;
            }
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            // A turn left empty (an answer that was only reasoning) is skipped; the API joins the
            // turns of one role around it, and so does baton, so the request reads as it is taken.
            match messages.last_mut() {
                Some(last) if last["role"] == role => {
                    if let Some(joined) = last["content"].as_array_mut() {
                        joined.extend(content);
                    }
                }
                _ => messages.push(json!({"role": role, "content": content})),
            }
        }
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_output_tokens,
            "messages": messages,
            "stream": true,
        });
        if !request.system.is_empty() {
            body["system"] = json!([{"type": "text", "text": request.system, "cache_control": cache_breakpoint()}]);
        }
        if !request.tools.is_empty() {
            let mut tools = tools_json(
                request,
                |tool, schema| json!({"name": tool.name, "description": tool.description, "input_schema": schema}),
            )?;
            if let Some(last) = tools.last_mut() {
                last["cache_control"] = cache_breakpoint();
            }
            body["tools"] = Value::Array(tools);
        }
        Ok(body)
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::<AnthropicDecoder>::default()
    }

    fn error(&self, status: u16, retry_after: Option<Duration>, body: &str) -> ModelError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(error) => error_from(error, status, retry_after),
            None => classify(
                status,
                retry_after,
                ErrorBody {
                    kind: String::new(),
                    code: String::new(),
                    message: body.trim().chars().take(500).collect(),
                },
                false,
            ),
        }
    }
}

fn error_from(error: &Value, status: u16, retry_after: Option<Duration>) -> ModelError {
    let field = |name| error.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let body = ErrorBody { kind: field("type"), code: String::new(), message: field("message") };
    let lower = body.message.to_ascii_lowercase();
    let overflow = lower.contains("prompt is too long") || lower.contains("exceed context limit");
    classify(status, retry_after, body, overflow)
}

/// The HTTP status that goes with an error type sent inside the stream.
fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[derive(Debug)]
enum Block {
    Text,
    Tool { received: usize },
    Thinking { text: String, signature: String },
}

#[derive(Debug, Default)]
struct AnthropicDecoder {
    blocks: BTreeMap<u64, Block>,
    usage: Usage,
    finish: Option<FinishReason>,
    done: bool,
}

impl AnthropicDecoder {
    fn merge_usage(&mut self, usage: &Value) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        if let Some(n) = count("input_tokens") {
            self.usage.input = n;
        }
        if let Some(n) = count("cache_read_input_tokens") {
            self.usage.cache_read = n;
        }
        if let Some(n) = count("cache_creation_input_tokens") {
            self.usage.cache_write = n;
        }
        if let Some(n) = count("output_tokens") {
            self.usage.output = n;
        }
    }
}

/// The parts of a Messages event the decoder reads.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    index: u64,
    delta: Option<Delta>,
    content_block: Option<Value>,
    message: Option<Value>,
    usage: Option<Value>,
    error: Option<Value>,
}

/// A `content_block_delta`'s or `message_delta`'s delta.
#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    partial_json: Option<String>,
    thinking: Option<String>,
    signature: Option<String>,
    stop_reason: Option<String>,
}

/// The event types the decoder acts on.
const HANDLED: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
];

impl Decoder for AnthropicDecoder {
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let Some(event) = parse_event::<Event>(name, data, HANDLED)? else { return Ok(()) };
        let kind = event.kind.as_deref().unwrap_or(name);
        let index = event.index;
        let missing = |what: &str| ModelError::Protocol(format!("`{kind}` without {what}"));
        match kind {
            "content_block_delta" => {
                let delta = event.delta.ok_or_else(|| missing("a delta"))?;
                match (delta.kind.as_deref(), self.blocks.get_mut(&index)) {
                    (Some("text_delta"), _) => out.push(StreamEvent::TextDelta(delta.text.unwrap_or_default())),
                    (Some("input_json_delta"), Some(Block::Tool { received })) => {
                        let arguments = delta.partial_json.unwrap_or_default();
                        *received += arguments.len();
                        out.push(StreamEvent::ToolCallDelta { index, arguments });
                    }
                    (Some("thinking_delta"), Some(Block::Thinking { text: thinking, .. })) => {
                        let delta = delta.thinking.unwrap_or_default();
                        thinking.push_str(&delta);
                        out.push(StreamEvent::ReasoningDelta(delta));
                    }
                    (Some("signature_delta"), Some(Block::Thinking { signature, .. })) => {
                        signature.push_str(delta.signature.as_deref().unwrap_or_default())
                    }
                    (Some("input_json_delta" | "thinking_delta" | "signature_delta"), _) => {
                        return Err(ModelError::Protocol(format!("a delta for content block {index} of another kind")));
                    }
                    _ => {}
                }
            }
            "message_start" => {
                if let Some(usage) = event.message.as_ref().and_then(|m| m.get("usage")) {
                    self.merge_usage(usage);
                }
            }
            "content_block_start" => {
                let block = event.content_block.ok_or_else(|| missing("a content block"))?;
                let field = |key| block.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
                let started = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = field("text");
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text));
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        out.push(StreamEvent::ToolCallStart { index, id: field("id"), name: field("name") });
                        Block::Tool { received: 0 }
                    }
                    Some("thinking") => Block::Thinking { text: field("thinking"), signature: field("signature") },
                    Some("redacted_thinking") => {
                        out.push(StreamEvent::ReasoningReplay(Replay {
                            protocol: NAME.to_owned(),
                            item: block.to_string(),
                        }));
                        return Ok(());
                    }
                    _ => return Ok(()),
                };
                self.blocks.insert(index, started);
            }
            "content_block_stop" => match self.blocks.remove(&index) {
                Some(Block::Tool { received }) => {
                    if received == 0 {
                        out.push(StreamEvent::ToolCallDelta { index, arguments: "{}".to_owned() });
                    }
                    out.push(StreamEvent::ToolCallEnd { index });
                }
                Some(Block::Thinking { text, signature }) => {
                    let item = json!({"type": "thinking", "thinking": text, "signature": signature}).to_string();
                    out.push(StreamEvent::ReasoningReplay(Replay { protocol: NAME.to_owned(), item }));
                }
                Some(Block::Text) | None => {}
            },
            "message_delta" => {
                // The final count (message_start's is partial), told at once: if the stream
                // breaks before `message_stop`, the caller knows what was billed.
                if let Some(usage) = &event.usage {
                    self.merge_usage(usage);
                    out.push(StreamEvent::Usage(self.usage));
                }
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.finish = Some(match reason.as_str() {
                        "end_turn" | "stop_sequence" => FinishReason::EndTurn,
                        "tool_use" => FinishReason::ToolUse,
                        "max_tokens" => FinishReason::MaxTokens,
                        "refusal" => FinishReason::ContentFilter,
                        other => FinishReason::Other(other.to_owned()),
                    });
                }
            }
            "message_stop" => {
                out.push(StreamEvent::Usage(self.usage));
                out.push(StreamEvent::Finished(self.finish.take().unwrap_or(FinishReason::EndTurn)));
                self.done = true;
            }
            "error" => {
                let error = event.error.ok_or_else(|| missing("an error"))?;
                let kind = error.get("type").and_then(Value::as_str).unwrap_or_default();
                return Err(error_from(&error, status_of(kind), None));
            }
            _ => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
