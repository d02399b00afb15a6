//! OpenAI Chat Completions (`POST {base}/chat/completions`), the lingua franca of OpenAI-compatible
//! servers: Ollama, vLLM, llama.cpp, LM Studio, OpenRouter.

use std::collections::BTreeSet;
use std::time::Duration;

use baton_core::{FinishReason, ModelRequest, Part, Role, Usage};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Decoder, Protocol, auth_header, openai_error, parse_event, tools_json};
use crate::StreamEvent;
use crate::error::ModelError;

#[derive(Debug, Clone, Copy, Default)]
pub struct ChatCompletions;

impl Protocol for ChatCompletions {
    fn name(&self) -> &'static str {
        "openai-chat"
    }

    fn path(&self) -> &'static str {
        "/chat/completions"
    }

    fn headers(&self, api_key: Option<&str>) -> Result<HeaderMap, ModelError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            auth_header(&mut headers, "authorization", &format!("Bearer {key}"))?;
        }
        Ok(headers)
    }

    fn body(&self, request: &ModelRequest) -> Result<Value, ModelError> {
        let mut messages = Vec::new();
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        for message in &request.messages {
            match message.role {
                Role::User => {
                    for part in &message.parts {
                        match part {
                            Part::Text { text } => messages.push(json!({"role": "user", "content": text})),
                            Part::ToolResult { call_id, output, .. } => {
                                messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}))
                            }
                            Part::ToolCall { .. } | Part::Reasoning { .. } => {}
                        }
                    }
                }
                Role::Assistant => {
                    let text: String = message
                        .parts
                        .iter()
                        .filter_map(|p| match p {
                            Part::Text { text } => Some(text.as_str()),
                            _ => None,
                        })
                        .collect();
                    let calls: Vec<Value> = message
                        .parts
                        .iter()
                        .filter_map(|p| match p {
                            Part::ToolCall { id, name, arguments } => Some(json!({
                                "id": id, "type": "function", "function": {"name": name, "arguments": arguments}
                            })),
                            _ => None,
                        })
                        .collect();
                    let mut entry = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                    if !calls.is_empty() {
                        entry["tool_calls"] = Value::Array(calls);
                    }
                    messages.push(entry);
                }
            }
        }
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_output_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !request.tools.is_empty() {
            let tools = tools_json(
                request,
                |tool, parameters| json!({"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": parameters}}),
            )?;
            body["tools"] = Value::Array(tools);
        }
        Ok(body)
    }

    fn decoder(&self) -> Box<dyn Decoder> {
        Box::<ChatDecoder>::default()
    }

    fn error(&self, status: u16, retry_after: Option<Duration>, body: &str) -> ModelError {
        openai_error(status, retry_after, body)
    }
}

#[derive(Debug, Default)]
struct ChatDecoder {
    started: BTreeSet<u64>,
    finish: Option<FinishReason>,
    usage: Usage,
    done: bool,
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::EndTurn,
        "tool_calls" | "function_call" => FinishReason::ToolUse,
        "length" => FinishReason::MaxTokens,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

fn usage(value: &Value) -> Usage {
    let count = |path: &str| value.pointer(path).and_then(Value::as_u64).unwrap_or(0);
    let cached = count("/prompt_tokens_details/cached_tokens");
    Usage {
        input: count("/prompt_tokens").saturating_sub(cached),
        cache_read: cached,
        cache_write: 0,
        output: count("/completion_tokens"),
        reasoning: count("/completion_tokens_details/reasoning_tokens"),
    }
}

/// The parts of a Chat Completions chunk the decoder reads.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Value>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Vec<CallDelta>,
}

#[derive(Debug, Deserialize)]
struct CallDelta {
    index: Option<u64>,
    id: Option<String>,
    #[serde(default)]
    function: FunctionDelta,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

impl Decoder for ChatDecoder {
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), ModelError> {
        if data.trim() == "[DONE]" {
            out.extend(self.started.iter().map(|&index| StreamEvent::ToolCallEnd { index }));
            out.push(StreamEvent::Usage(self.usage));
            let inferred = if self.started.is_empty() { FinishReason::EndTurn } else { FinishReason::ToolUse };
            out.push(StreamEvent::Finished(self.finish.take().unwrap_or(inferred)));
            self.done = true;
            return Ok(());
        }
        let Some(chunk) = parse_event::<Chunk>(name, data, &[])? else { return Ok(()) };
        if chunk.error.is_some() {
            return Err(openai_error(500, None, data));
        }
        // Told at once: if the stream breaks before `[DONE]`, the caller knows what was billed.
        if let Some(reported) = chunk.usage.as_ref().filter(|u| u.is_object()) {
            self.usage = usage(reported);
            out.push(StreamEvent::Usage(self.usage));
        }
        let Some(choice) = chunk.choices.into_iter().next() else { return Ok(()) };
        let delta = choice.delta;
        for text in [delta.reasoning_content, delta.reasoning].into_iter().flatten().filter(|t| !t.is_empty()) {
            out.push(StreamEvent::ReasoningDelta(text));
        }
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::TextDelta(text));
        }
        for call in delta.tool_calls {
            let index = call.index.unwrap_or(self.started.len() as u64);
            if self.started.insert(index) {
                let id = call.id.unwrap_or_else(|| format!("call_{index}"));
                out.push(StreamEvent::ToolCallStart { index, id, name: call.function.name.unwrap_or_default() });
            }
            if let Some(arguments) = call.function.arguments.filter(|a| !a.is_empty()) {
                out.push(StreamEvent::ToolCallDelta { index, arguments });
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish = Some(finish_reason(&reason));
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
