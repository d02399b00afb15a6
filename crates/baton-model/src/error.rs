use std::time::Duration;

/// Why a model call failed. [`ModelError::is_retryable`] says which failures are worth another try.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model name `{0}`: expected provider/model, like anthropic/claude-sonnet-4-5 or openai/gpt-5")]
    BadModelName(String),
    #[error("unknown model provider `{0}`: expected openai, openai-compatible or anthropic")]
    UnknownProvider(String),
    #[error("{provider} needs {what}")]
    MissingSetting { provider: &'static str, what: String },
    #[error("invalid base URL `{url}` for {provider}: {reason}")]
    BadBaseUrl { provider: &'static str, url: String, reason: String },
    #[error("the request cannot be sent: {0}")]
    InvalidRequest(String),
    #[error("authentication failed (HTTP {status}): {message}")]
    Auth { status: u16, message: String },
    #[error("the account's quota is used up: {message}")]
    QuotaExceeded { message: String },
    #[error("rate limited (HTTP 429): {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    #[error("the prompt does not fit the model's context window: {message}")]
    ContextOverflow { message: String },
    #[error("bad request (HTTP {status}): {message}")]
    BadRequest { status: u16, message: String },
    #[error("the provider is overloaded: {message}")]
    Overloaded { retry_after: Option<Duration>, message: String },
    #[error("server error (HTTP {status}): {message}")]
    Server { status: u16, retry_after: Option<Duration>, message: String },
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("the stream ended before the response was complete")]
    StreamCut,
    #[error("the provider sent something this client cannot read: {0}")]
    Protocol(String),
    #[error("cancelled")]
    Cancelled,
    #[error("gave up after {attempts} attempts; the last failure: {last}")]
    Exhausted { attempts: u32, last: Box<ModelError> },
}

impl ModelError {
    /// Transient failures: the same request may well succeed if sent again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ModelError::RateLimited { .. }
                | ModelError::Overloaded { .. }
                | ModelError::Server { .. }
                | ModelError::Connection(_)
                | ModelError::Timeout(_)
                | ModelError::StreamCut
        )
    }

    /// How long the provider asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::RateLimited { retry_after, .. }
            | ModelError::Overloaded { retry_after, .. }
            | ModelError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The context window a provider's overflow error states, when it states one: OpenAI and
    /// OpenAI-compatible servers say "maximum context length is N tokens", Anthropic "N tokens > M
    /// maximum", llama.cpp "available context size (N tokens)".
    pub fn stated_window(&self) -> Option<u64> {
        let ModelError::ContextOverflow { message } = self else { return None };
        let number = |text: &str| -> Option<u64> {
            let digits: String = text.trim_start().chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let after = |marker: &str| message.find(marker).and_then(|at| number(&message[at + marker.len()..]));
        after("maximum context length is ").or_else(|| after("context size (")).or_else(|| {
            let end = message.find(" maximum")?;
            let start = message[..end].rfind('>')?;
            number(&message[start + 1..end])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ModelError;

    #[test]
    fn the_stated_window_is_read_from_each_providers_wording() {
        let overflow = |message: &str| ModelError::ContextOverflow { message: message.to_owned() };
        let openai =
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 140000 tokens.";
        assert_eq!(overflow(openai).stated_window(), Some(128_000));
        assert_eq!(overflow("prompt is too long: 210000 tokens > 200000 maximum").stated_window(), Some(200_000));
        let llama = "the request exceeds the available context size (8192 tokens), try increasing it";
        assert_eq!(overflow(llama).stated_window(), Some(8192));
        assert_eq!(overflow("too long").stated_window(), None);
        assert_eq!(ModelError::StreamCut.stated_window(), None);
    }
}
