//! The three wire formats, from the server's side: how a scripted reply is written as a stream or as
//! one JSON body, how errors look, and where a request keeps its last tool result.

use serde_json::{Value, json};

use super::script::Reply;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sse {
    pub event: Option<&'static str>,
    pub data: String,
}

impl Sse {
    fn named(event: &'static str, data: Value) -> Sse {
        Sse { event: Some(event), data: data.to_string() }
    }

    pub fn to_text(&self) -> String {
        match self.event {
            Some(event) => format!("event: {event}\ndata: {}\n\n", self.data),
            None => format!("data: {}\n\n", self.data),
        }
    }
}

/// How an overloaded provider answers.
pub enum Overload {
    Http {
        status: u16,
        body: Value,
    },
    /// The stream starts, then an error event ends it.
    InStream(Vec<Sse>),
}

pub trait Wire: Send + Sync {
    fn name(&self) -> &'static str;
    fn stream(&self, reply: &Reply, model: &str) -> Vec<Sse>;
    fn whole(&self, reply: &Reply, model: &str) -> Value;

    /// The OpenAI error shape, which both OpenAI protocols use.
    fn error_body(&self, status: u16, message: &str) -> Value {
        openai_error(status, message)
    }

    /// OpenAI's overloaded servers answer 503 before streaming anything.
    fn overloaded(&self, _model: &str) -> Overload {
        Overload::Http { status: 503, body: openai_error(503, "The server is overloaded. Please try again later.") }
    }

    /// A refusal of a prompt of `tokens` tokens that does not fit a `window`, as OpenAI words it.
    fn context_overflow(&self, tokens: u64, window: u64) -> Value {
        let message = format!(
            "This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."
        );
        json!({"error": {"message": message, "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
    }

    fn last_tool_result(&self, body: &Value) -> Option<String>;

    /// Why the provider would refuse the request's conversation, in its words.
    fn check(&self, body: &Value) -> Result<(), String>;
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn openai_error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", "invalid_api_key"),
        429 => ("requests", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        _ => ("server_error", "server_error"),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

pub struct Responses;

impl Responses {
    fn reasoning_item(text: &str) -> Value {
        json!({
            "type": "reasoning", "id": "rs_scripted",
            "summary": [{"type": "summary_text", "text": text}],
            "encrypted_content": format!("scripted-encrypted:{text}"),
        })
    }

    fn message_item(text: &str) -> Value {
        json!({
            "type": "message", "id": "msg_scripted", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })
    }

    fn call_item(index: usize, call: &super::script::ToolCall, arguments: &str, status: &str) -> Value {
        json!({
            "type": "function_call", "id": format!("fc_scripted_{index}"), "call_id": call.id,
            "name": call.name, "arguments": arguments, "status": status,
        })
    }

    fn response(reply: &Reply, model: &str, status: &str, output: Vec<Value>) -> Value {
        let usage = reply.usage;
        let incomplete = reply.hits_max_tokens().then(|| json!({"reason": "max_output_tokens"}));
        json!({
            "id": "resp_scripted", "object": "response", "created_at": 0, "status": status, "model": model,
            "output": output, "incomplete_details": incomplete, "error": null,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "store": false,
            "usage": {
                "input_tokens": usage.input + usage.cache_read,
                "input_tokens_details": {"cached_tokens": usage.cache_read},
                "output_tokens": usage.output,
                "output_tokens_details": {"reasoning_tokens": usage.reasoning},
                "total_tokens": usage.input + usage.cache_read + usage.output,
            },
        })
    }

    fn output(reply: &Reply) -> Vec<Value> {
        let mut output = Vec::new();
        if let Some(reasoning) = &reply.reasoning {
            output.push(Responses::reasoning_item(reasoning));
        }
        if let Some(text) = &reply.text {
            output.push(Responses::message_item(text));
        }
        for (i, call) in reply.tool_calls.iter().enumerate() {
            output.push(Responses::call_item(i, call, &call.arguments, "completed"));
        }
        output
    }
}

impl Wire for Responses {
    fn name(&self) -> &'static str {
        "openai-responses"
    }

    fn check(&self, body: &Value) -> Result<(), String> {
        super::check::responses(body)
    }

    fn stream(&self, reply: &Reply, model: &str) -> Vec<Sse> {
        let mut events = Vec::new();
        let mut push = |event: &'static str, mut data: Value| {
            data["type"] = json!(event);
            data["sequence_number"] = json!(events.len());
            events.push(Sse::named(event, data));
        };
        let status = if reply.hits_max_tokens() { "incomplete" } else { "completed" };
        push("response.created", json!({"response": Responses::response(reply, model, "in_progress", vec![])}));
        push("response.in_progress", json!({"response": Responses::response(reply, model, "in_progress", vec![])}));
        let mut index = 0;
        if let Some(reasoning) = &reply.reasoning {
            push(
                "response.output_item.added",
                json!({"output_index": index, "item": {"type": "reasoning", "id": "rs_scripted", "summary": []}}),
            );
            for piece in reply.pieces(reasoning) {
                push(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": "rs_scripted", "output_index": index, "summary_index": 0, "delta": piece}),
                );
            }
            push(
                "response.reasoning_summary_text.done",
                json!({"item_id": "rs_scripted", "output_index": index, "summary_index": 0, "text": reasoning}),
            );
            push(
                "response.output_item.done",
                json!({"output_index": index, "item": Responses::reasoning_item(reasoning)}),
            );
            index += 1;
        }
        if let Some(text) = &reply.text {
            let item_id = "msg_scripted";
            push(
                "response.output_item.added",
                json!({"output_index": index, "item": {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress", "content": []}}),
            );
            push(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            for piece in reply.pieces(text) {
                push(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}),
                );
            }
            push(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            );
            push(
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}),
            );
            push("response.output_item.done", json!({"output_index": index, "item": Responses::message_item(text)}));
            index += 1;
        }
        for (i, call) in reply.tool_calls.iter().enumerate() {
            let item_id = format!("fc_scripted_{i}");
            push(
                "response.output_item.added",
                json!({"output_index": index, "item": Responses::call_item(i, call, "", "in_progress")}),
            );
            for piece in reply.pieces(&call.arguments) {
                push(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": index, "delta": piece}),
                );
            }
            push(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": index, "arguments": call.arguments}),
            );
            push(
                "response.output_item.done",
                json!({"output_index": index, "item": Responses::call_item(i, call, &call.arguments, "completed")}),
            );
            index += 1;
        }
        let done = if reply.hits_max_tokens() { "response.incomplete" } else { "response.completed" };
        push(done, json!({"response": Responses::response(reply, model, status, Responses::output(reply))}));
        events
    }

    fn whole(&self, reply: &Reply, model: &str) -> Value {
        let status = if reply.hits_max_tokens() { "incomplete" } else { "completed" };
        Responses::response(reply, model, status, Responses::output(reply))
    }

    fn last_tool_result(&self, body: &Value) -> Option<String> {
        let input = body.get("input")?.as_array()?;
        let last =
            input.iter().rev().find(|item| item.get("type").and_then(Value::as_str) == Some("function_call_output"))?;
        last.get("output").map(text_of)
    }
}

pub struct Chat;

impl Chat {
    fn chunk(model: &str, delta: Value, finish: Value) -> Value {
        json!({
            "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn usage(reply: &Reply) -> Value {
        let usage = reply.usage;
        json!({
            "prompt_tokens": usage.input + usage.cache_read,
            "completion_tokens": usage.output,
            "total_tokens": usage.input + usage.cache_read + usage.output,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
        })
    }

    fn finish(reply: &Reply) -> &'static str {
        if reply.hits_max_tokens() {
            "length"
        } else if reply.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }
}

impl Wire for Chat {
    fn name(&self) -> &'static str {
        "openai-chat"
    }

    fn check(&self, body: &Value) -> Result<(), String> {
        super::check::chat(body)
    }

    fn stream(&self, reply: &Reply, model: &str) -> Vec<Sse> {
        let data = |value: Value| Sse { event: None, data: value.to_string() };
        let mut events = vec![data(Chat::chunk(model, json!({"role": "assistant", "content": ""}), Value::Null))];
        if let Some(reasoning) = &reply.reasoning {
            for piece in reply.pieces(reasoning) {
                events.push(data(Chat::chunk(model, json!({"reasoning_content": piece}), Value::Null)));
            }
        }
        if let Some(text) = &reply.text {
            for piece in reply.pieces(text) {
                events.push(data(Chat::chunk(model, json!({"content": piece}), Value::Null)));
            }
        }
        for (index, call) in reply.tool_calls.iter().enumerate() {
            let start = json!({"tool_calls": [{"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}]});
            events.push(data(Chat::chunk(model, start, Value::Null)));
            for piece in reply.pieces(&call.arguments) {
                let delta = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
                events.push(data(Chat::chunk(model, delta, Value::Null)));
            }
        }
        events.push(data(Chat::chunk(model, json!({}), json!(Chat::finish(reply)))));
        events.push(data(json!({
            "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [], "usage": Chat::usage(reply),
        })));
        events.push(Sse { event: None, data: "[DONE]".to_owned() });
        events
    }

    fn whole(&self, reply: &Reply, model: &str) -> Value {
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        let mut message = json!({"role": "assistant", "content": reply.text, "refusal": null});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        json!({
            "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": Chat::finish(reply)}],
            "usage": Chat::usage(reply),
        })
    }

    fn last_tool_result(&self, body: &Value) -> Option<String> {
        let messages = body.get("messages")?.as_array()?;
        let last = messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("tool"))?;
        last.get("content").map(text_of)
    }
}

pub struct Anthropic;

impl Anthropic {
    fn stop_reason(reply: &Reply) -> &'static str {
        if reply.hits_max_tokens() {
            "max_tokens"
        } else if reply.tool_calls.is_empty() {
            "end_turn"
        } else {
            "tool_use"
        }
    }

    fn message_start(reply: &Reply, model: &str) -> Sse {
        let usage = reply.usage;
        Sse::named(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_scripted", "type": "message", "role": "assistant", "content": [], "model": model,
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": usage.input, "cache_creation_input_tokens": usage.cache_write,
                          "cache_read_input_tokens": usage.cache_read, "output_tokens": 1},
            }}),
        )
    }

    fn tool_input(arguments: &str) -> Value {
        serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
    }
}

impl Wire for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn check(&self, body: &Value) -> Result<(), String> {
        super::check::anthropic(body)
    }

    fn stream(&self, reply: &Reply, model: &str) -> Vec<Sse> {
        let mut events = vec![Anthropic::message_start(reply, model), Sse::named("ping", json!({"type": "ping"}))];
        let mut index = 0;
        let mut block = |events: &mut Vec<Sse>, start: Value, deltas: Vec<Value>| {
            events.push(Sse::named(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            ));
            for delta in deltas {
                events.push(Sse::named(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": delta}),
                ));
            }
            events.push(Sse::named("content_block_stop", json!({"type": "content_block_stop", "index": index})));
            index += 1;
        };
        if let Some(reasoning) = &reply.reasoning {
            let mut deltas: Vec<Value> =
                reply.pieces(reasoning).into_iter().map(|p| json!({"type": "thinking_delta", "thinking": p})).collect();
            deltas.push(json!({"type": "signature_delta", "signature": "scripted-signature"}));
            block(&mut events, json!({"type": "thinking", "thinking": "", "signature": ""}), deltas);
        }
        if let Some(text) = &reply.text {
            let deltas = reply.pieces(text).into_iter().map(|p| json!({"type": "text_delta", "text": p})).collect();
            block(&mut events, json!({"type": "text", "text": ""}), deltas);
        }
        for call in &reply.tool_calls {
            let deltas = reply
                .pieces(&call.arguments)
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            block(&mut events, json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}), deltas);
        }
        events.push(Sse::named(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": Anthropic::stop_reason(reply), "stop_sequence": null},
                   "usage": {"output_tokens": reply.usage.output}}),
        ));
        events.push(Sse::named("message_stop", json!({"type": "message_stop"})));
        events
    }

    fn whole(&self, reply: &Reply, model: &str) -> Value {
        let mut content = Vec::new();
        if let Some(reasoning) = &reply.reasoning {
            content.push(json!({"type": "thinking", "thinking": reasoning, "signature": "scripted-signature"}));
        }
        if let Some(text) = &reply.text {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in &reply.tool_calls {
            content.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": Anthropic::tool_input(&call.arguments)}));
        }
        let usage = reply.usage;
        json!({
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": Anthropic::stop_reason(reply), "stop_sequence": null,
            "usage": {"input_tokens": usage.input, "cache_creation_input_tokens": usage.cache_write,
                      "cache_read_input_tokens": usage.cache_read, "output_tokens": usage.output},
        })
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": message}})
    }

    fn context_overflow(&self, tokens: u64, window: u64) -> Value {
        self.error_body(400, &format!("prompt is too long: {tokens} tokens > {window} maximum"))
    }

    fn overloaded(&self, model: &str) -> Overload {
        Overload::InStream(vec![
            Anthropic::message_start(&Reply::default(), model),
            Sse::named(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
        ])
    }

    fn last_tool_result(&self, body: &Value) -> Option<String> {
        let messages = body.get("messages")?.as_array()?;
        messages.iter().rev().find_map(|message| {
            let blocks = message.get("content")?.as_array()?;
            let result = blocks.iter().rev().find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))?;
            match result.get("content")? {
                Value::Array(parts) => {
                    Some(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect())
                }
                other => Some(text_of(other)),
            }
        })
    }
}
