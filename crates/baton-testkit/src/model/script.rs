//! The script a scripted model server follows: a list of turns, each answered once, in order,
//! whatever protocol the request arrives on.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    pub turns: Vec<Turn>,
    /// Answered whenever a request matches, before the turns and without using one up: for requests
    /// whose moment a test cannot know in advance, like a handoff's summarisation call.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The model's context window: a request with more tokens (o200k tokens of every string in its
    /// body) is refused with the provider's context-overflow error.
    #[serde(default)]
    pub context_window: Option<u64>,
    /// Answer a request identical to one already answered with the same reply, without using up a
    /// turn: a deterministic model, for clients that resend after a crash.
    #[serde(default)]
    pub replay_identical: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Checked against the request before anything is served; a mismatch is answered with HTTP 418
    /// and recorded as a failure.
    #[serde(default)]
    pub expect: Expect,
    /// Served one per request, in order, before the reply: each fault uses up one attempt.
    #[serde(default)]
    pub faults: Vec<Fault>,
    pub reply: Reply,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Which requests the rule answers: all of these must hold.
    pub when: Expect,
    pub reply: Reply,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `openai-responses`, `openai-chat` or `anthropic`.
    pub protocol: Option<String>,
    pub model: Option<String>,
    /// A text the raw request body must contain.
    pub body_contains: Option<String>,
    /// A text the request's last tool result must contain.
    pub last_tool_result_contains: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// An HTTP error with the protocol's error body; `retry_after` in seconds.
    Status { status: u16, retry_after: Option<u64>, message: Option<String> },
    /// The provider is overloaded: Anthropic's `overloaded_error` inside the stream, HTTP 503 for the
    /// OpenAI protocols.
    Overloaded,
    /// The reply's stream, cut off after this many bytes.
    CutAfter { bytes: usize },
    /// The reply's stream without its last event (`[DONE]`, `message_stop`, `response.completed`),
    /// then a closed connection: a stream that broke after saying everything but that it ended.
    CutBeforeLastEvent,
    /// Headers, then silence for this long, then a closed connection.
    Stall { ms: u64 },
    /// An event whose data is not JSON.
    MalformedEvent,
    /// The provider's context-overflow error (HTTP 400), whatever the request's size.
    ContextOverflow,
    /// Headers, then an SSE comment (a keep-alive ping) every 50 ms for this long, then a closed
    /// connection: a stream that is never idle and never finishes.
    Pings { ms: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub reasoning: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub usage: Usage,
    /// `max_tokens` to end as if the output limit was reached; otherwise the natural end.
    pub stop: Option<String>,
    /// Characters per streamed delta (default 8).
    pub chunk: Option<usize>,
    /// Wait before the response starts.
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Sent exactly as written, valid JSON or not.
    pub arguments: String,
}

/// Token counts the reply reports; `input` excludes cache reads and writes, as Anthropic counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub cache_write: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub reasoning: u64,
    /// Report `input` as this many times the request's tokens (the o200k tokens of every string
    /// in its body, as `context_window` counts them) instead of the number above: a provider whose
    /// tokenizer counts far more than its client could estimate.
    #[serde(default)]
    pub input_per_request_token: Option<u64>,
}

impl Usage {
    /// The usage reported for a request whose body is `body`.
    pub(crate) fn for_request(self, body: &serde_json::Value) -> Usage {
        match self.input_per_request_token {
            Some(times) => Usage { input: times * super::server::count_tokens(body), ..self },
            None => self,
        }
    }
}

impl Reply {
    /// The reply split into streamed pieces.
    pub(crate) fn pieces(&self, text: &str) -> Vec<String> {
        let size = self.chunk.unwrap_or(8).max(1);
        let chars: Vec<char> = text.chars().collect();
        chars.chunks(size).map(|c| c.iter().collect()).collect()
    }

    pub(crate) fn hits_max_tokens(&self) -> bool {
        self.stop.as_deref() == Some("max_tokens")
    }
}
