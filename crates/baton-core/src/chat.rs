//! The provider-neutral shape of a conversation with a model: what a leg sends and what it gets
//! back. Each model client translates these to and from its provider's wire format.
//!
//! Tool schemas and tool-call arguments are kept as JSON *text*: the arguments come from the model
//! and may be malformed, and a malformed call must reach the agent as it was, to be answered with a
//! precise error, not lost in a parse.

use serde::{Deserialize, Serialize};

/// Who said a message. The system prompt is not a message; it travels in [`ModelRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    /// The model asks for a tool to run (assistant messages only).
    ToolCall {
        id: String,
        name: String,
        /// JSON text as the model wrote it; not necessarily valid.
        arguments: String,
    },
    /// What a tool call produced (user messages only).
    ToolResult {
        call_id: String,
        output: String,
        is_error: bool,
    },
    /// The model's reasoning. `replay` is the provider's own item, kept verbatim so it can be sent
    /// back to the same protocol (signed thinking blocks, encrypted reasoning items).
    Reasoning {
        text: String,
        replay: Option<Replay>,
    },
}

/// A provider item to send back unchanged, tagged with the protocol that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub protocol: String,
    /// The item as JSON text.
    pub item: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// The JSON schema of the arguments, as JSON text.
    pub parameters: String,
}

/// Everything one model call needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The model's name at its provider (without the `provider/` prefix).
    pub model: String,
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_output_tokens: u32,
    /// How many leading messages form a prefix that stays the same across calls, so providers with
    /// explicit cache breakpoints can cache up to it. System and tools are always treated as stable.
    pub stable_prefix: usize,
}

/// Tokens of one call, normalised across providers. `input` counts only input billed at the full
/// price; cache reads and writes are counted apart; `reasoning` is the part of `output` spent on
/// reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.input += other.input;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.output += other.output;
        self.reasoning += other.reasoning;
    }
}

/// Why the model stopped producing output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    ContentFilter,
    /// A reason this baton does not know, as the provider named it.
    Other(String),
}

/// A whole reply, only ever built from a complete stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelResponse {
    pub parts: Vec<Part>,
    pub usage: Usage,
    pub finish: FinishReason,
}

/// One tool call of an answer, as the engine runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The model's JSON text, unparsed: each tool reads its own.
    pub arguments: String,
}

impl ToolCall {
    /// The call a message part is, if it is one.
    pub fn of_part(part: &Part) -> Option<ToolCall> {
        match part {
            Part::ToolCall { id, name, arguments } => {
                Some(ToolCall { id: id.clone(), name: name.clone(), arguments: arguments.clone() })
            }
            _ => None,
        }
    }
}

impl ModelResponse {
    /// The reply's tool calls, in order, to run.
    pub fn owned_tool_calls(&self) -> Vec<ToolCall> {
        self.parts.iter().filter_map(ToolCall::of_part).collect()
    }

    /// The reply's text parts joined together.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls of the reply, in order: `(id, name, arguments)`.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.parts.iter().filter_map(|part| match part {
            Part::ToolCall { id, name, arguments } => Some((id.as_str(), name.as_str(), arguments.as_str())),
            _ => None,
        })
    }
}
