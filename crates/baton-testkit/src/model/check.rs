//! What each provider refuses in a request's conversation, checked as the provider checks it and
//! worded as the provider words it (HTTP 400): tool results paired with their calls, reasoning
//! followed by what it led to, content where content is required. A client that passes here sends
//! conversations a real provider accepts; one that does not fails its test with the provider's
//! own message.

use serde_json::Value;

fn kind(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn text<'a>(item: &'a Value, field: &str) -> &'a str {
    item.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn array<'a>(body: &'a Value, field: &str) -> Result<&'a [Value], String> {
    body.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("Missing required parameter: '{field}'."))
}

/// OpenAI Chat Completions: every tool message answers a call of the assistant message before it,
/// and every call is answered before the conversation goes on.
pub fn chat(body: &Value) -> Result<(), String> {
    let unanswered = |open: &[String]| {
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            open.join(", ")
        )
    };
    let mut open: Vec<String> = Vec::new();
    for message in array(body, "messages")? {
        match text(message, "role") {
            "tool" => {
                let id = text(message, "tool_call_id");
                let Some(at) = open.iter().position(|call| call == id) else {
                    return Err("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into());
                };
                open.remove(at);
            }
            role @ ("system" | "developer" | "user" | "assistant") => {
                if !open.is_empty() {
                    return Err(unanswered(&open));
                }
                if role == "assistant" {
                    let calls = message.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                    open = calls.iter().map(|call| text(call, "id").to_owned()).collect();
                }
            }
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ));
            }
        }
    }
    if open.is_empty() { Ok(()) } else { Err(unanswered(&open)) }
}

/// OpenAI Responses: a reasoning item is followed by the item it produced, every function call has
/// its output, and every output its call.
pub fn responses(body: &Value) -> Result<(), String> {
    // A plain string is a single user message.
    if body.get("input").is_some_and(Value::is_string) {
        return Ok(());
    }
    let input = array(body, "input")?;
    for (at, item) in input.iter().enumerate() {
        match kind(item) {
            "reasoning" => {
                let follows = input.get(at + 1).is_some_and(|next| {
                    kind(next) == "function_call" || (kind(next) == "message" && text(next, "role") == "assistant")
                });
                if !follows {
                    return Err(format!(
                        "Item '{}' of type 'reasoning' was provided without its required following item.",
                        text(item, "id")
                    ));
                }
            }
            "function_call_output" => {
                let id = text(item, "call_id");
                let called = input[..at]
                    .iter()
                    .any(|earlier| kind(earlier) == "function_call" && text(earlier, "call_id") == id);
                if !called {
                    return Err(format!("No tool call found for function call output with call_id {id}."));
                }
            }
            "function_call" => {
                let id = text(item, "call_id");
                let answered = input[at + 1..]
                    .iter()
                    .any(|later| kind(later) == "function_call_output" && text(later, "call_id") == id);
                if !answered {
                    return Err(format!("No tool output found for function call {id}."));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Anthropic Messages, after joining consecutive turns of one role as the API does: content where
/// it is required, thinking first and never last in an assistant turn, and every `tool_use`
/// answered by a `tool_result` in the very next turn, which answers nothing else.
pub fn anthropic(body: &Value) -> Result<(), String> {
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for message in array(body, "messages")? {
        let role = text(message, "role").to_owned();
        if role != "user" && role != "assistant" {
            return Err(format!("messages: Unexpected role \"{role}\". Allowed roles are \"user\" or \"assistant\"."));
        }
        let blocks = match message.get("content") {
            Some(Value::String(text)) if !text.is_empty() => vec![serde_json::json!({"type": "text", "text": text})],
            Some(Value::Array(blocks)) => blocks.clone(),
            _ => Vec::new(),
        };
        match turns.last_mut() {
            Some((last, joined)) if *last == role => joined.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let count = turns.len();
    let mut open: Vec<String> = Vec::new();
    for (at, (role, blocks)) in turns.iter().enumerate() {
        if blocks.is_empty() && !(role == "assistant" && at + 1 == count) {
            return Err(format!(
                "messages.{at}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        let results: Vec<&str> =
            blocks.iter().filter(|b| kind(b) == "tool_result").map(|b| text(b, "tool_use_id")).collect();
        if let Some(stray) = results.iter().find(|id| !open.iter().any(|call| call == *id)) {
            return Err(format!(
                "messages.{at}: unexpected `tool_use_id` found in `tool_result` blocks: {stray}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            ));
        }
        let missing: Vec<&str> = open.iter().map(String::as_str).filter(|id| !results.contains(id)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                at - 1,
                missing.join(", ")
            ));
        }
        open.clear();
        if role == "assistant" {
            let thinking = |block: &Value| matches!(kind(block), "thinking" | "redacted_thinking");
            if blocks.last().is_some_and(thinking) {
                return Err(format!("messages.{at}: The final block in an assistant message cannot be `thinking`."));
            }
            if blocks.iter().any(thinking) && !blocks.first().is_some_and(thinking) {
                return Err(format!(
                    "messages.{at}.content.0: If an assistant message contains any thinking blocks, the first block must be thinking or redacted_thinking. Found {}.",
                    kind(&blocks[0])
                ));
            }
            open = blocks.iter().filter(|b| kind(b) == "tool_use").map(|b| text(b, "id").to_owned()).collect();
        }
    }
    match open.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
            count - 1,
            open.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{anthropic, chat, responses};

    #[test]
    fn chat_pairs_every_tool_message_with_a_call() {
        let call = json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]});
        let result = json!({"role": "tool", "tool_call_id": "c1", "content": "ok"});
        let user = json!({"role": "user", "content": "go on"});
        assert_eq!(chat(&json!({"messages": [user, call, result, user]})), Ok(()));
        assert!(chat(&json!({"messages": [user, result]})).unwrap_err().contains("must be a response to a preceeding"));
        assert!(chat(&json!({"messages": [user, call, user]})).unwrap_err().ends_with("response messages: c1"));
        assert!(chat(&json!({"messages": [user, call]})).is_err(), "a call left unanswered at the end");
        assert!(chat(&json!({"messages": [{"role": "robot"}]})).unwrap_err().starts_with("Invalid value: 'robot'"));
        assert_eq!(chat(&json!({})), Err("Missing required parameter: 'messages'.".into()));
    }

    #[test]
    fn responses_wants_reasoning_followed_and_calls_answered() {
        let reasoning = json!({"type": "reasoning", "id": "rs_1"});
        let call = json!({"type": "function_call", "call_id": "c1"});
        let output = json!({"type": "function_call_output", "call_id": "c1"});
        let user = json!({"type": "message", "role": "user"});
        assert_eq!(responses(&json!({"input": [user, reasoning, call, output, user]})), Ok(()));
        assert_eq!(
            responses(&json!({"input": [user, reasoning, user]})),
            Err("Item 'rs_1' of type 'reasoning' was provided without its required following item.".into())
        );
        assert!(responses(&json!({"input": [user, reasoning]})).is_err());
        assert_eq!(
            responses(&json!({"input": [user, output]})),
            Err("No tool call found for function call output with call_id c1.".into())
        );
        assert_eq!(
            responses(&json!({"input": [user, call]})),
            Err("No tool output found for function call c1.".into())
        );
        assert_eq!(responses(&json!({"input": "Say hello"})), Ok(()), "a string is one user message");
    }

    #[test]
    fn anthropic_wants_results_next_and_thinking_first_but_not_last() {
        let user = json!({"role": "user", "content": "go"});
        let call = json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "tool_use", "id": "u1", "name": "x", "input": {}}]});
        let result =
            json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "u1", "content": "ok"}]});
        let more = json!({"role": "user", "content": [{"type": "text", "text": "and?"}]});
        assert_eq!(anthropic(&json!({"messages": [user, call, result, more]})), Ok(()), "consecutive user turns join");
        let only_thinking = json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]});
        assert_eq!(
            anthropic(&json!({"messages": [user, only_thinking, more]})),
            Err("messages.1: The final block in an assistant message cannot be `thinking`.".into())
        );
        let text_first = json!({"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "thinking"}, {"type": "text", "text": "b"}]});
        assert!(anthropic(&json!({"messages": [user, text_first, more]})).unwrap_err().ends_with("Found text."));
        assert!(
            anthropic(&json!({"messages": [user, call, more]})).unwrap_err().starts_with("messages.1: `tool_use` ids")
        );
        assert!(anthropic(&json!({"messages": [user, result]})).unwrap_err().contains("unexpected `tool_use_id`"));
        let empty = json!({"role": "assistant", "content": []});
        assert!(anthropic(&json!({"messages": [user, empty, more]})).unwrap_err().contains("non-empty content"));
    }
}
