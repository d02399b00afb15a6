//! Model clients. One [`ModelClient`] trait; one HTTP transport with retries, timeouts and
//! cancellation; and one [`Protocol`](protocol::Protocol) per wire format: OpenAI Responses, OpenAI
//! Chat Completions (also every OpenAI-compatible server) and Anthropic Messages. No provider SDKs:
//! request bodies and server-sent events are written and read here, because cost accounting, prompt
//! caching and recovery all depend on exactly what goes over the wire.

mod assemble;
mod bpe;
mod catalog;
mod error;
mod estimate;
pub mod protocol;
mod retry;
mod select;
mod sse;
mod transport;

use async_trait::async_trait;
use baton_core::{FinishReason, ModelRequest, ModelResponse, Replay, Usage};
use tokio_util::sync::CancellationToken;

pub use assemble::Assembler;
pub use catalog::{Catalog, CatalogError, ModelInfo, Price};
pub use error::ModelError;
pub use estimate::{Estimator, estimate_tokens, input_bound};
pub use retry::RetryPolicy;
pub use select::{ConfigError, ModelName, ProviderConfig, ProviderKind, Providers};
pub use sse::{SseEvent, SseParser};
pub use transport::{HttpClient, Timeouts, read_events};

/// Something that happened while a reply streamed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    TextDelta(String),
    ReasoningDelta(String),
    /// The provider's reasoning item, to be sent back verbatim on the next call.
    ReasoningReplay(Replay),
    /// A tool call begins; `index` identifies it in the deltas that follow.
    ToolCallStart {
        index: u64,
        id: String,
        name: String,
    },
    ToolCallDelta {
        index: u64,
        arguments: String,
    },
    ToolCallEnd {
        index: u64,
    },
    Usage(Usage),
    Finished(FinishReason),
    /// An attempt failed (retried or not), with what the provider may have billed for it: told for
    /// every failed attempt, so a caller charges what the returned response alone does not show.
    AttemptFailed {
        attempt: u32,
        error: String,
        billed: Billed,
    },
    /// The attempt failed after streaming some of the above, and the call starts again from scratch:
    /// a live view must discard what it showed. The returned response never contains a partial
    /// attempt.
    Restarted {
        attempt: u32,
        reason: String,
    },
}

/// What a provider may have billed for an attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billed {
    /// Nothing: the request never reached the provider, or it refused it with an error status.
    Nothing,
    /// The usage the stream reported before it broke.
    Reported(Usage),
    /// The provider took the request and said nothing of its usage: the caller assumes the worst.
    Unknown,
}

/// A model endpoint that answers requests. Implementations retry what is worth retrying and return
/// either a whole response or a typed error.
#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Sends `request`, reports every stream event to `sink` as it arrives, and returns the whole
    /// response. Cancelling `cancel` stops the call at once with [`ModelError::Cancelled`].
    async fn complete(
        &self,
        request: &ModelRequest,
        sink: &mut (dyn FnMut(StreamEvent) + Send),
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError>;
}
