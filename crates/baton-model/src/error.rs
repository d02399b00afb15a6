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
}
