//! Token estimates made before a call, to keep a prompt inside the model's context window.

use baton_core::{ModelRequest, Part};

use crate::select::ProviderKind;

/// Tokens each message costs beyond its text (role markers, separators), and each tool beyond its
/// name, description and schema.
const PER_MESSAGE: u64 = 4;
const PER_TOOL: u64 = 8;

/// Estimates the input tokens of `request`. OpenAI models are counted exactly with their tokenizer
/// (o200k_base); other providers' tokenizers are not public, so their estimate is the o200k count
/// plus a fifth, erring on the side of a prompt that fits.
pub fn estimate_tokens(request: &ModelRequest, provider: ProviderKind) -> u64 {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let count = |text: &str| bpe.encode_ordinary(text).len() as u64;
    let mut tokens = count(&request.system);
    for message in &request.messages {
        tokens += PER_MESSAGE;
        for part in &message.parts {
            tokens += match part {
                Part::Text { text } => count(text),
                Part::ToolCall { id, name, arguments } => count(id) + count(name) + count(arguments),
                Part::ToolResult { call_id, output, .. } => count(call_id) + count(output),
                Part::Reasoning { text, replay } => count(text) + replay.as_ref().map_or(0, |r| count(&r.item)),
            };
        }
    }
    for tool in &request.tools {
        tokens += PER_TOOL + count(&tool.name) + count(&tool.description) + count(&tool.parameters);
    }
    match provider {
        ProviderKind::OpenAi => tokens,
        ProviderKind::OpenAiCompatible | ProviderKind::Anthropic => tokens + tokens.div_ceil(5),
    }
}

#[cfg(test)]
mod tests {
    use baton_core::{Message, Role, ToolSpec};

    use super::*;

    #[test]
    fn counts_every_part_and_pads_unknown_tokenizers() {
        let request = ModelRequest {
            model: "gpt-5".into(),
            system: "You are a careful engineer.".into(),
            messages: vec![
                Message { role: Role::User, parts: vec![Part::Text { text: "hello world".into() }] },
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall {
                        id: "c1".into(),
                        name: "shell".into(),
                        arguments: "{\"command\":\"ls\"}".into(),
                    }],
                },
            ],
            tools: vec![ToolSpec {
                name: "shell".into(),
                description: "Run a command".into(),
                parameters: "{}".into(),
            }],
            max_output_tokens: 100,
            stable_prefix: 0,
        };
        let openai = estimate_tokens(&request, ProviderKind::OpenAi);
        let bpe = tiktoken_rs::o200k_base_singleton();
        let text_tokens: u64 = [
            "You are a careful engineer.",
            "hello world",
            "c1",
            "shell",
            "{\"command\":\"ls\"}",
            "shell",
            "Run a command",
            "{}",
        ]
        .iter()
        .map(|t| bpe.encode_ordinary(t).len() as u64)
        .sum();
        assert_eq!(openai, text_tokens + 2 * PER_MESSAGE + PER_TOOL);
        assert_eq!(estimate_tokens(&request, ProviderKind::Anthropic), openai + openai.div_ceil(5));
    }
}
