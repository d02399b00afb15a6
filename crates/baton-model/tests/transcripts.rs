//! The decoders against server-sent event transcripts written from the providers' API references,
//! and a property test: however the bytes are split into network chunks, and whatever garbage
//! arrives, decoding gives the same answer and never panics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::convert::Infallible;
use std::path::Path;

use baton_core::{FinishReason, ModelResponse, Part, Usage};
use baton_model::protocol::{AnthropicMessages, ChatCompletions, OpenAiResponses, Protocol};
use baton_model::{ModelError, StreamEvent, Timeouts, read_events};
use bytes::Bytes;
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

fn transcript(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts").join(name)).unwrap()
}

fn decode_chunks(
    protocol: &dyn Protocol,
    chunks: Vec<Vec<u8>>,
) -> (Result<ModelResponse, ModelError>, Vec<StreamEvent>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stream = futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Bytes::from(c))));
    let mut events = Vec::new();
    let result = runtime.block_on(read_events(
        protocol,
        stream,
        &mut |event| events.push(event),
        &CancellationToken::new(),
        &Timeouts::default(),
    ));
    (result, events)
}

fn decode(protocol: &dyn Protocol, name: &str) -> Result<ModelResponse, ModelError> {
    decode_chunks(protocol, vec![transcript(name)]).0
}

#[test]
fn anthropic_thinking_text_and_tool_use() {
    let response = decode(&AnthropicMessages, "anthropic_tool_use.sse").unwrap();
    let Part::Reasoning { text, replay: Some(replay) } = &response.parts[0] else { panic!("{:?}", response.parts) };
    assert_eq!(text, "The user wants the weather; I should call the tool.");
    let item: serde_json::Value = serde_json::from_str(&replay.item).unwrap();
    assert_eq!(item["signature"], "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds");
    assert_eq!(item["thinking"], *text);
    assert_eq!(response.text(), "Okay, let's check the weather for San Francisco, CA:");
    let calls: Vec<_> = response.tool_calls().collect();
    assert_eq!(
        calls,
        [(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "get_weather",
            r#"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#
        )]
    );
    assert_eq!(response.finish, FinishReason::ToolUse);
    assert_eq!(response.usage, Usage { input: 472, cache_read: 2048, cache_write: 1024, output: 89, reasoning: 0 });
}

#[test]
fn anthropic_overloaded_in_the_stream_is_a_retryable_error() {
    let err = decode(&AnthropicMessages, "anthropic_overloaded.sse").unwrap_err();
    assert!(matches!(err, ModelError::Overloaded { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn responses_text_with_an_unknown_event() {
    let response = decode(&OpenAiResponses, "responses_text.sse").unwrap();
    assert_eq!(response.parts, [Part::Text { text: "Hi there, how can I help — \"today\"?".into() }]);
    assert_eq!(response.finish, FinishReason::EndTurn);
    assert_eq!(response.usage, Usage { input: 32, cache_read: 5, cache_write: 0, output: 11, reasoning: 0 });
}

#[test]
fn responses_reasoning_and_function_calls_streamed_or_whole() {
    let response = decode(&OpenAiResponses, "responses_function_call.sse").unwrap();
    let Part::Reasoning { text, replay: Some(replay) } = &response.parts[0] else { panic!("{:?}", response.parts) };
    assert_eq!(text, "Need the weather.");
    assert!(replay.item.contains("gAAAAABo-opaque"));
    let calls: Vec<_> = response.tool_calls().collect();
    assert_eq!(
        calls,
        [
            ("call_12345xyz", "get_weather", r#"{"location": "Paris, France"}"#),
            ("call_2", "get_time", r#"{"zone":"CET"}"#)
        ]
    );
    assert_eq!(response.finish, FinishReason::ToolUse);
    assert_eq!(response.usage, Usage { input: 44, cache_read: 256, cache_write: 0, output: 120, reasoning: 64 });
}

#[test]
fn responses_failure_is_a_server_error() {
    let err = decode(&OpenAiResponses, "responses_failed.sse").unwrap_err();
    assert!(
        matches!(&err, ModelError::Server { message, .. } if message == "The model produced invalid content."),
        "{err:?}"
    );
}

#[test]
fn chat_parallel_tool_calls_with_comment_lines() {
    let response = decode(&ChatCompletions, "chat_tool_calls.sse").unwrap();
    let calls: Vec<_> = response.tool_calls().collect();
    assert_eq!(calls, [("call_abc", "get_weather", r#"{"location": "Boston"}"#), ("call_def", "get_time", "{}")]);
    assert_eq!(response.finish, FinishReason::ToolUse);
    assert_eq!(response.usage, Usage { input: 18, cache_read: 64, cache_write: 0, output: 17, reasoning: 0 });
}

#[test]
fn chat_reasoning_content_and_length_finish() {
    let response = decode(&ChatCompletions, "chat_reasoning_text.sse").unwrap();
    assert_eq!(
        response.parts,
        [Part::Reasoning { text: "Two plus two is four.".into(), replay: None }, Part::Text { text: "4".into() }]
    );
    assert_eq!(response.finish, FinishReason::MaxTokens);
}

#[test]
fn malformed_and_truncated_streams_are_typed_errors() {
    let err = decode(&ChatCompletions, "chat_malformed.sse").unwrap_err();
    assert!(matches!(&err, ModelError::Protocol(m) if m.contains("not valid JSON")), "{err:?}");
    assert_eq!(decode(&ChatCompletions, "chat_truncated.sse").unwrap_err(), ModelError::StreamCut);
}

/// Every transcript with the protocol that reads it.
fn cases() -> Vec<(&'static str, Box<dyn Protocol>)> {
    vec![
        ("anthropic_tool_use.sse", Box::new(AnthropicMessages)),
        ("anthropic_overloaded.sse", Box::new(AnthropicMessages)),
        ("responses_text.sse", Box::new(OpenAiResponses)),
        ("responses_function_call.sse", Box::new(OpenAiResponses)),
        ("responses_failed.sse", Box::new(OpenAiResponses)),
        ("chat_tool_calls.sse", Box::new(ChatCompletions)),
        ("chat_reasoning_text.sse", Box::new(ChatCompletions)),
        ("chat_malformed.sse", Box::new(ChatCompletions)),
    ]
}

/// Splits `bytes` at the given cut points (taken modulo its length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([bytes.len()]) {
        chunks.push(bytes[start..point].to_vec());
        start = point;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunk_boundaries_never_change_the_result(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        for (name, protocol) in cases() {
            let bytes = transcript(name);
            let whole = decode_chunks(protocol.as_ref(), vec![bytes.clone()]);
            let pieces = decode_chunks(protocol.as_ref(), split(&bytes, &cuts));
            prop_assert_eq!(&pieces, &whole, "{}", name);
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic(noise in proptest::collection::vec(any::<u8>(), 0..2000), at in any::<usize>()) {
        for (name, protocol) in cases() {
            // Noise spliced into a real transcript, and noise alone.
            let mut bytes = transcript(name);
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, noise.iter().copied());
            let _ = decode_chunks(protocol.as_ref(), vec![bytes]);
            let (result, _) = decode_chunks(protocol.as_ref(), vec![noise.clone()]);
            prop_assert!(result.is_err(), "noise decoded as a response");
        }
    }
}

#[test]
fn shapes_matter_only_for_the_events_a_decoder_acts_on() {
    let stream = |events: &[&str]| events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>().into_bytes();
    // An unknown event whose `delta` is an object, unlike every known delta: ignored.
    let ok = stream(&[
        r#"{"type":"response.audio_future.delta","delta":{"frames":[1,2]}}"#,
        r#"{"type":"response.output_text.delta","output_index":0,"delta":"hi"}"#,
        r#"{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":1}}}"#,
    ]);
    assert_eq!(decode_chunks(&OpenAiResponses, vec![ok]).0.unwrap().text(), "hi");
    // A known event with a wrongly typed field: a typed error naming the event.
    let bad = stream(&[r#"{"type":"response.output_text.delta","output_index":0,"delta":42}"#]);
    let err = decode_chunks(&OpenAiResponses, vec![bad]).0.unwrap_err();
    assert!(
        matches!(&err, ModelError::Protocol(m) if m.starts_with("event `response.output_text.delta` has an unexpected shape")),
        "{err:?}"
    );
    let bad = stream(&[r#"{"type":"content_block_delta","index":"zero","delta":{"type":"text_delta","text":"x"}}"#]);
    assert!(matches!(decode_chunks(&AnthropicMessages, vec![bad]).0, Err(ModelError::Protocol(_))));
}
