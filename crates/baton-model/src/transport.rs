use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use baton_core::{ModelRequest, ModelResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

use crate::assemble::Assembler;
use crate::error::ModelError;
use crate::protocol::Protocol;
use crate::retry::{RetryPolicy, jitter_unit, retry_after};
use crate::sse::SseParser;
use crate::{Billed, ModelClient, StreamEvent};

/// Why an attempt failed, and what the provider may have billed for it.
struct Failure {
    error: ModelError,
    billed: Billed,
}

impl Failure {
    fn unbilled(error: ModelError) -> Failure {
        Failure { error, billed: Billed::Nothing }
    }
}

/// How long each phase of a call may take before it counts as failed (and is retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the response headers, and again to the first event.
    pub first_byte: Duration,
    /// Between two events of a stream.
    pub idle: Duration,
    /// For a whole attempt, from sending the request to the end of its stream: a provider that
    /// keeps a stream alive with pings and never finishes is given up on.
    pub whole: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(15),
            first_byte: Duration::from_secs(180),
            idle: Duration::from_secs(90),
            whole: Duration::from_secs(30 * 60),
        }
    }
}

/// A [`ModelClient`] that speaks one [`Protocol`] over HTTP to one endpoint.
pub struct HttpClient {
    http: reqwest::Client,
    url: String,
    api_key: Option<String>,
    protocol: Box<dyn Protocol>,
    retry: RetryPolicy,
    timeouts: Timeouts,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("HttpClient").field("url", &self.url).field("protocol", &self.protocol.name()).finish()
    }
}

/// reqwest's own message stops at the outermost error; the causes say what actually went wrong.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn transport_error(error: reqwest::Error) -> ModelError {
    if error.is_connect() && error.is_timeout() {
        ModelError::Timeout("connecting")
    } else {
        ModelError::Connection(describe(&error))
    }
}

/// Waits for `future` unless `cancel` fires or `limit` passes first.
async fn bounded<T>(
    cancel: &CancellationToken,
    limit: Duration,
    phase: &'static str,
    future: impl Future<Output = T>,
) -> Result<T, ModelError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(ModelError::Cancelled),
        result = tokio::time::timeout(limit, future) => result.map_err(|_| ModelError::Timeout(phase)),
    }
}

impl HttpClient {
    pub fn new(
        protocol: Box<dyn Protocol>,
        provider: &'static str,
        base_url: &str,
        api_key: Option<String>,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> Result<HttpClient, ModelError> {
        let bad =
            |reason: &str| ModelError::BadBaseUrl { provider, url: base_url.to_owned(), reason: reason.to_owned() };
        let parsed = reqwest::Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https are supported"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|e| ModelError::Connection(describe(&e)))?;
        let url = format!("{}{}", base_url.trim_end_matches('/'), protocol.path());
        Ok(HttpClient { http, url, api_key, protocol, retry, timeouts })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One try: a whole response, or the reason it failed and what it may have cost.
    async fn attempt(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
        sink: &mut (dyn FnMut(StreamEvent) + Send),
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, Failure> {
        // Once the request may have been sent, the provider may bill it whether or not an answer
        // comes back: only a refused connection or an error status is known to cost nothing.
        let unknown = |error| Failure { error, billed: Billed::Unknown };
        let send = self.http.post(&self.url).headers(headers.clone()).body(body.clone()).send();
        let response = bounded(cancel, self.timeouts.first_byte, "waiting for the response headers", send)
            .await
            .map_err(unknown)?
            .map_err(|error| match error.is_connect() {
                true => Failure::unbilled(transport_error(error)),
                false => unknown(transport_error(error)),
            })?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers(), SystemTime::now());
            let text = bounded(cancel, self.timeouts.idle, "reading an error response", response.text())
                .await
                .map_err(Failure::unbilled)?
                .unwrap_or_default();
            return Err(Failure::unbilled(self.protocol.error(status.as_u16(), wait, &text)));
        }

        let mut reported = None;
        let mut watching = |event: StreamEvent| {
            if let StreamEvent::Usage(usage) = &event {
                reported = Some(*usage);
            }
            sink(event);
        };
        let stream =
            read_events(self.protocol.as_ref(), response.bytes_stream(), &mut watching, cancel, &self.timeouts);
        let result = bounded(cancel, self.timeouts.whole, "waiting for the whole response", stream).await;
        result
            .and_then(|inner| inner)
            .map_err(|error| Failure { error, billed: reported.map_or(Billed::Unknown, Billed::Reported) })
    }
}

/// Reads one response's server-sent events to the end of a complete response, reporting each
/// decoded event to `sink`. A stream that ends early is [`ModelError::StreamCut`].
pub async fn read_events<S, E>(
    protocol: &dyn Protocol,
    bytes: S,
    sink: &mut (dyn FnMut(StreamEvent) + Send),
    cancel: &CancellationToken,
    timeouts: &Timeouts,
) -> Result<ModelResponse, ModelError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error,
{
    let mut bytes = bytes;
    let mut parser = SseParser::default();
    let mut decoder = protocol.decoder();
    let mut assembler = Assembler::default();
    let (mut events, mut decoded) = (Vec::new(), Vec::new());
    // One timer and one cancellation waiter for the whole stream, re-armed per chunk.
    let cancelled = cancel.cancelled();
    let deadline = tokio::time::sleep(timeouts.first_byte);
    tokio::pin!(cancelled, deadline);
    let mut phase = "waiting for the first event";
    while !decoder.is_done() {
        let next = tokio::select! {
            biased;
            () = &mut cancelled => return Err(ModelError::Cancelled),
            next = bytes.next() => next,
            () = &mut deadline => return Err(ModelError::Timeout(phase)),
        };
        let chunk = next.ok_or(ModelError::StreamCut)?.map_err(|e| ModelError::Connection(describe(&e)))?;
        deadline.as_mut().reset(tokio::time::Instant::now() + timeouts.idle);
        phase = "waiting between stream chunks";
        parser.feed(&chunk, &mut events)?;
        for event in events.drain(..) {
            decoder.event(&event.event, &event.data, &mut decoded)?;
            for stream_event in decoded.drain(..) {
                assembler.push(&stream_event)?;
                sink(stream_event);
            }
            if decoder.is_done() {
                break;
            }
        }
    }
    assembler.finish()
}

#[async_trait]
impl ModelClient for HttpClient {
    async fn complete(
        &self,
        request: &ModelRequest,
        sink: &mut (dyn FnMut(StreamEvent) + Send),
        cancel: &CancellationToken,
    ) -> Result<ModelResponse, ModelError> {
        // Serialised once: every retry sends the very same bytes.
        let body = Bytes::from(self.protocol.body(request)?.to_string());
        let mut headers = self.protocol.headers(self.api_key.as_deref())?;
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut attempt = 1;
        loop {
            let error = match self.attempt(&headers, &body, sink, cancel).await {
                Ok(response) => return Ok(response),
                Err(Failure { error, billed }) => {
                    sink(StreamEvent::AttemptFailed { attempt, error: error.to_string(), billed });
                    error
                }
            };
            if !error.is_retryable() {
                return Err(error);
            }
            if attempt >= self.retry.max_attempts {
                return Err(ModelError::Exhausted { attempts: attempt, last: Box::new(error) });
            }
            let Some(delay) = self.retry.delay(attempt, error.retry_after(), jitter_unit()) else {
                return Err(error);
            };
            attempt += 1;
            sink(StreamEvent::Restarted { attempt, reason: error.to_string() });
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ModelError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}
