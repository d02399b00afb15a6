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
    Estimator::default().estimate(request, provider)
}

/// The cache is emptied when it holds this many texts.
const CACHE_ENTRIES: usize = 100_000;

/// Token estimates that remember the texts they counted. A leg's prompt repeats itself from one
/// call to the next, so each text (a tool output, a call, the system prompt) is tokenized once;
/// hashing even a short text costs a fraction of tokenizing it.
#[derive(Debug, Default)]
pub struct Estimator {
    counts: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
}

impl Estimator {
    /// As [`estimate_tokens`], counting each text once over the estimator's life.
    pub fn estimate(&self, request: &ModelRequest, provider: ProviderKind) -> u64 {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > CACHE_ENTRIES {
            counts.clear();
        }
        let mut count = |text: &str| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            text.hash(&mut hasher);
            *counts.entry(hasher.finish()).or_insert_with(|| crate::bpe::count(text))
        };
        tokens_of(request, provider, &mut count)
    }
}

fn tokens_of(request: &ModelRequest, provider: ProviderKind, count: &mut dyn FnMut(&str) -> u64) -> u64 {
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
    fn a_remembering_estimator_counts_the_same() {
        let long = "the same long tool output, again and again ".repeat(40);
        let request = ModelRequest {
            model: "m".into(),
            system: long.clone(),
            messages: vec![Message { role: Role::User, parts: vec![Part::Text { text: long }] }],
            tools: vec![],
            max_output_tokens: 1,
            stable_prefix: 0,
        };
        let estimator = Estimator::default();
        let once = estimate_tokens(&request, ProviderKind::OpenAi);
        assert_eq!(estimator.estimate(&request, ProviderKind::OpenAi), once);
        assert_eq!(estimator.estimate(&request, ProviderKind::OpenAi), once, "from the cache");
    }

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
        let bpe = tiktoken_rs::o200k_base().unwrap();
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
