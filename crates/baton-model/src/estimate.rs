//! Token counts made before a call: an estimate, to keep a prompt inside the model's context
//! window, and a bound no provider's count can exceed, for what the call may be billed.

use baton_core::{ModelRequest, Part};

use crate::select::ProviderKind;

/// Tokens a request costs beyond its texts: role markers and separators, a tool's rendering, and
/// what the provider adds to every request.
struct Framing {
    per_request: u64,
    per_message: u64,
    per_part: u64,
    per_tool: u64,
}

/// What OpenAI's chat format adds, as its cookbook counts it.
const TYPICAL: Framing = Framing { per_request: 0, per_message: 4, per_part: 0, per_tool: 8 };

/// More than any provider documents: Anthropic's own instructions for tool use are 313 to 530
/// tokens, a message's markers a handful, a tool call's wrapping a few more.
const CEILING: Framing = Framing { per_request: 1024, per_message: 32, per_part: 16, per_tool: 64 };

/// Estimates the input tokens of `request`: the o200k_base count of its texts plus OpenAI's framing
/// (OpenAI's own models use that tokenizer; how each renders tool schemas is not public), and for
/// other providers, whose tokenizers are not public, a fifth more, erring on the side of a prompt
/// that fits. For the context window and handoffs; what a call may cost is [`input_bound`].
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
        // A reasoning item sent back is ciphertext in base64 (or a signature): what it stands for
        // is counted at about four bytes a token, not as the text it would be if read as words.
        let tokens = tokens_of(request, &TYPICAL, &mut count, &mut |item| item.len() as u64 / 4);
        match provider {
            ProviderKind::OpenAi => tokens,
            ProviderKind::OpenAiCompatible | ProviderKind::Anthropic => tokens + tokens.div_ceil(5),
        }
    }
}

/// The most input tokens any provider can count for `request` (cache reads and writes included):
/// its texts' bytes, since a token of every byte-level tokenizer stands for at least one byte,
/// plus a framing larger than any provider documents. Several times the estimate; a call is held
/// at this, never at the estimate, so its hold is an upper bound whatever the tokenizer.
pub fn input_bound(request: &ModelRequest) -> u64 {
    let bytes = |text: &str| text.len() as u64;
    tokens_of(request, &CEILING, &mut { bytes }, &mut { bytes })
}

fn tokens_of(
    request: &ModelRequest,
    framing: &Framing,
    count: &mut dyn FnMut(&str) -> u64,
    opaque: &mut dyn FnMut(&str) -> u64,
) -> u64 {
    let mut tokens = framing.per_request + count(&request.system);
    for message in &request.messages {
        tokens += framing.per_message;
        for part in &message.parts {
            tokens += framing.per_part
                + match part {
                    Part::Text { text } => count(text),
                    Part::ToolCall { id, name, arguments } => count(id) + count(name) + count(arguments),
                    Part::ToolResult { call_id, output, .. } => count(call_id) + count(output),
                    Part::Reasoning { text, replay } => count(text) + replay.as_ref().map_or(0, |r| opaque(&r.item)),
                };
        }
    }
    for tool in &request.tools {
        tokens += framing.per_tool + count(&tool.name) + count(&tool.description) + count(&tool.parameters);
    }
    tokens
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
        assert_eq!(openai, text_tokens + 2 * TYPICAL.per_message + TYPICAL.per_tool);
        assert_eq!(estimate_tokens(&request, ProviderKind::Anthropic), openai + openai.div_ceil(5));
    }

    #[test]
    fn a_reasoning_item_sent_back_counts_by_its_size_not_as_words() {
        // Base64 ciphertext tokenizes at about a token per two or three characters.
        let item = "gAAAAABo7x3Qk9Zr/+Lw2".repeat(400);
        let request = ModelRequest {
            model: "gpt-5".into(),
            system: String::new(),
            messages: vec![Message {
                role: Role::Assistant,
                parts: vec![Part::Reasoning {
                    text: String::new(),
                    replay: Some(baton_core::Replay { protocol: "openai-responses".into(), item: item.clone() }),
                }],
            }],
            tools: vec![],
            max_output_tokens: 1,
            stable_prefix: 0,
        };
        let estimate = estimate_tokens(&request, ProviderKind::OpenAi);
        assert_eq!(estimate, item.len() as u64 / 4 + TYPICAL.per_message);
        let as_words = o200k().encode_ordinary(&item).len() as u64;
        assert!(estimate < as_words, "{estimate} vs {as_words}");
        assert!(input_bound(&request) >= item.len() as u64);
    }

    fn o200k() -> &'static tiktoken_rs::CoreBPE {
        static BPE: std::sync::OnceLock<tiktoken_rs::CoreBPE> = std::sync::OnceLock::new();
        BPE.get_or_init(|| tiktoken_rs::o200k_base().unwrap())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any text, in any script: the bound is never below what a byte-level tokenizer counts
        /// with its framing.
        #[test]
        fn the_bound_is_above_every_count(
            texts in proptest::collection::vec(".{0,200}", 1..6),
            tools in 0usize..3,
        ) {
            let request = ModelRequest {
                model: "m".into(),
                system: texts[0].clone(),
                messages: texts.iter().map(|text| Message { role: Role::User, parts: vec![Part::Text { text: text.clone() }] }).collect(),
                tools: (0..tools).map(|i| ToolSpec { name: format!("t{i}"), description: texts[i % texts.len()].clone(), parameters: "{}".into() }).collect(),
                max_output_tokens: 1,
                stable_prefix: 0,
            };
            let raw: u64 = texts.iter().map(|t| o200k().encode_ordinary(t).len() as u64).sum();
            let bound = input_bound(&request);
            proptest::prop_assert!(bound >= raw);
            proptest::prop_assert!(bound >= estimate_tokens(&request, ProviderKind::OpenAi));
        }
    }
}
