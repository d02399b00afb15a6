//! OpenAI Responses (`POST {base}/responses`). Requests are stateless (`store: false`), so reasoning
//! items travel back to the API with their encrypted content.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_core::{FinishReason, ModelRequest, Part, Replay, Role, Usage};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Decoder, ErrorBody, Protocol, auth_header, classify, json_value, openai_error, parse_event, says_context_overflow,
    tools_json,
};
use crate::StreamEvent;
use crate::error::ModelError;

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiResponses;

const NAME: &str = "openai-responses";

/// Reasoning models return encrypted reasoning only when asked, and other models refuse the ask.
fn is_reasoning_model(model: &str) -> bool {
    let model = model.rsplit('/').next().unwrap_or(model);
    model.starts_with('o') && model[1..].starts_with(|c: char| c.is_ascii_digit())
        || model.starts_with("gpt-5")
        || model.contains("codex")
}

impl Protocol for OpenAiResponses {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path(&self) -> &'static str {
        "/responses"
    }

    fn headers(&self, api_key: Option<&str>) -> Result<HeaderMap, ModelError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            auth_header(&mut headers, "authorization", &format!("Bearer {key}"))?;
        }
        Ok(headers)
    }

    fn body(&self, request: &ModelRequest) -> Result<Value, ModelError> {
        let mut input = Vec::new();
        for message in &request.messages {
            for part in super::answered(&message.parts) {
                let item = match (message.role, part) {
                    (Role::User, Part::Text { text }) => {
                        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
                    }
                    (Role::Assistant, Part::Text { text }) => {
                        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
                    }
                    (_, Part::ToolResult { call_id, output, .. }) => {
                        json!({"type": "function_call_output", "call_id": call_id, "output": output})
                    }
                    (_, Part::ToolCall { id, name, arguments }) => {
                        json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments})
                    }
                    (_, Part::Reasoning { replay: Some(replay), .. }) if replay.protocol == NAME => {
                        json_value("a stored reasoning item", &replay.item)?
                    }
                    (_, Part::Reasoning { .. }) => continue,
                };
                input.push(item);
            }
        }
        let mut body = json!({
            "model": request.model,
            "input": input,
            "max_output_tokens": request.max_output_tokens,
            "stream": true,
            "store": false,
        });
        if !request.system.is_empty() {
            body["instructions"] = Value::String(request.system.clone());
        }
        if is_reasoning_model(&request.model) {
            body["include"] = json!(["reasoning.encrypted_content"]);
        }
        if !request.tools.is_empty() {
            let tools = tools_json(
                request,
                |tool, parameters| json!({"type": "function", "name": tool.name, "description": tool.description, "parameters": parameters, "strict": false}),
            )?;
            body["tools"] = Value::Array(tools);
        }
        Ok(body)
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::<ResponsesDecoder>::default()
    }

    fn error(&self, status: u16, retry_after: Option<Duration>, body: &str) -> ModelError {
        openai_error(status, retry_after, body)
    }
}

#[derive(Debug, Default)]
struct ResponsesDecoder {
    /// Argument bytes received so far, per tool call (by output index).
    arguments: BTreeMap<u64, usize>,
    done: bool,
}

fn usage(value: &Value) -> Usage {
    let count = |path: &str| value.pointer(path).and_then(Value::as_u64).unwrap_or(0);
    let cached = count("/input_tokens_details/cached_tokens");
    Usage {
        input: count("/input_tokens").saturating_sub(cached),
        cache_read: cached,
        cache_write: 0,
        output: count("/output_tokens"),
        reasoning: count("/output_tokens_details/reasoning_tokens"),
    }
}

/// An error reported inside the stream, with a status chosen so [`classify`] retries what is
/// transient.
fn stream_error(error: &Value) -> ModelError {
    let field = |name| error.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let body = ErrorBody { kind: field("type"), code: field("code"), message: field("message") };
    let overflow = says_context_overflow(&body.code, &body.message);
    let status = match body.code.as_str() {
        "rate_limit_exceeded" => 429,
        "invalid_prompt" | "invalid_request_error" => 400,
        _ => 500,
    };
    classify(status, None, body, overflow)
}

/// The parts of a Responses event the decoder reads; the large objects (items, the whole response)
/// appear only a few times per stream, so they stay untyped.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    output_index: u64,
    delta: Option<String>,
    item: Option<Value>,
    response: Option<Value>,
    error: Option<Value>,
}

/// The event types the decoder acts on.
const HANDLED: &[&str] = &[
    "response.output_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.function_call_arguments.delta",
    "response.output_item.added",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
];

impl Decoder for ResponsesDecoder {
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        let Some(event) = parse_event::<Event>(name, data, HANDLED)? else { return Ok(()) };
        let kind = event.kind.as_deref().unwrap_or(name);
        let index = event.output_index;
        let missing = |what: &str| ModelError::Protocol(format!("`{kind}` without {what}"));
        match kind {
            "response.output_text.delta" => out.push(StreamEvent::TextDelta(event.delta.unwrap_or_default())),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                out.push(StreamEvent::ReasoningDelta(event.delta.unwrap_or_default()))
            }
            "response.function_call_arguments.delta" => {
                let delta = event.delta.unwrap_or_default();
                *self.arguments.entry(index).or_default() += delta.len();
                out.push(StreamEvent::ToolCallDelta { index, arguments: delta });
            }
            "response.output_item.added" => {
                let item = event.item.ok_or_else(|| missing("an item"))?;
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    let field = |key| item.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
                    out.push(StreamEvent::ToolCallStart { index, id: field("call_id"), name: field("name") });
                    self.arguments.insert(index, 0);
                }
            }
            "response.output_item.done" => {
                let item = event.item.ok_or_else(|| missing("an item"))?;
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => {
                        // Some servers send the arguments only here, whole.
                        let whole = item.get("arguments").and_then(Value::as_str).unwrap_or_default();
                        if self.arguments.get(&index) == Some(&0) && !whole.is_empty() {
                            out.push(StreamEvent::ToolCallDelta { index, arguments: whole.to_owned() });
                        }
                        out.push(StreamEvent::ToolCallEnd { index });
                    }
                    Some("reasoning") => out.push(StreamEvent::ReasoningReplay(Replay {
                        protocol: NAME.to_owned(),
                        item: item.to_string(),
                    })),
                    _ => {}
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = event.response.ok_or_else(|| missing("a response"))?;
                out.push(StreamEvent::Usage(response.get("usage").map(usage).unwrap_or_default()));
                let incomplete = response.pointer("/incomplete_details/reason").and_then(Value::as_str);
                let finish = match incomplete {
                    Some("max_output_tokens") => FinishReason::MaxTokens,
                    Some("content_filter") => FinishReason::ContentFilter,
                    Some(other) => FinishReason::Other(other.to_owned()),
                    None if self.arguments.is_empty() => FinishReason::EndTurn,
                    None => FinishReason::ToolUse,
                };
                out.push(StreamEvent::Finished(finish));
                self.done = true;
            }
            "response.failed" => {
                return Err(stream_error(event.response.as_ref().and_then(|r| r.get("error")).unwrap_or(&Value::Null)));
            }
            "error" => {
                // The error's fields sit either under `error` or at the top level of the event.
                let whole: Value = serde_json::from_str(data).unwrap_or_default();
                return Err(stream_error(event.error.as_ref().unwrap_or(&whole)));
            }
            _ => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasoning_models_are_recognised() {
        for model in ["o3", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1-codex", "openai/o1"] {
            assert!(super::is_reasoning_model(model), "{model}");
        }
        for model in ["gpt-4.1", "gpt-4o", "omni-moderation", "ollama"] {
            assert!(!super::is_reasoning_model(model), "{model}");
        }
    }
}
