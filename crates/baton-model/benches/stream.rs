//! Client overhead on a large streamed reply: baton's client (HTTP, SSE parsing, decoding,
//! assembling) against reading the same bytes from the same server with bare reqwest.
//!
//! `cargo bench -p baton-model --bench stream`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_core::{Message, ModelRequest, Part, Role};
use baton_model::protocol::{AnthropicMessages, ChatCompletions, OpenAiResponses, Protocol};
use baton_model::{HttpClient, ModelClient, RetryPolicy, Timeouts, read_events};
use baton_testkit::model::{Reply, Script, ScriptedServer, ToolCall, Turn};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 5;
/// Characters per streamed delta: small, as models stream.
const CHUNK: usize = 16;

fn reply() -> Reply {
    // Roughly 10 MB on the wire for each protocol once wrapped in events.
    let text: String =
        "fn parse(input: &str) -> Result<Ast, Error> { /* … */ }\n".chars().cycle().take(700_000).collect();
    let arguments = format!("{{\"path\": \"src/lib.rs\", \"content\": {:?}}}", "x".repeat(100_000));
    Reply {
        text: Some(text),
        tool_calls: vec![ToolCall { id: "call_1".into(), name: "write_file".into(), arguments }],
        chunk: Some(CHUNK),
        ..Reply::default()
    }
}

fn request() -> ModelRequest {
    ModelRequest {
        model: "bench".into(),
        system: "bench".into(),
        messages: vec![Message { role: Role::User, parts: vec![Part::Text { text: "go".into() }] }],
        tools: vec![],
        max_output_tokens: 100_000,
        stable_prefix: 0,
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    type Make = fn() -> Box<dyn Protocol>;
    let protocols: [(&str, Make, &str); 3] = [
        ("openai responses", || Box::new(OpenAiResponses), "/v1"),
        ("openai chat", || Box::new(ChatCompletions), "/v1"),
        ("anthropic messages", || Box::new(AnthropicMessages), ""),
    ];
    let turns = vec![Turn { reply: reply(), ..Turn::default() }; protocols.len() * ROUNDS * 2];
    let server = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();
    let raw = reqwest::Client::new();

    for (name, make, prefix) in &protocols {
        let base = format!("{}{prefix}", server.url());
        let client =
            HttpClient::new(make(), "bench", &base, Some("k".into()), RetryPolicy::default(), Timeouts::default())
                .unwrap();
        let body = make().body(&request()).unwrap().to_string();
        let (mut ours, mut baseline, mut bytes) = (Vec::new(), Vec::new(), 0);
        let mut captured = Vec::new();
        // Both run as spawned tasks on the runtime's workers, where an engine runs its calls.
        let client = Arc::new(client);
        for _ in 0..ROUNDS {
            let baton = client.clone();
            let (elapsed, calls) = tokio::spawn(async move {
                let start = Instant::now();
                let response = baton.complete(&request(), &mut |_| {}, &CancellationToken::new()).await.unwrap();
                (start.elapsed(), response.tool_calls().count())
            })
            .await
            .unwrap();
            assert_eq!(calls, 1);
            ours.push(elapsed);

            let (raw, url, body) = (raw.clone(), client.url().to_owned(), body.clone());
            let (elapsed, chunks) = tokio::spawn(async move {
                let start = Instant::now();
                let response =
                    raw.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
                let mut stream = response.bytes_stream();
                let mut chunks = Vec::new();
                while let Some(chunk) = stream.next().await {
                    chunks.push(chunk.unwrap());
                }
                (start.elapsed(), chunks)
            })
            .await
            .unwrap();
            baseline.push(elapsed);
            bytes = chunks.iter().map(|c| c.len()).sum();
            captured = chunks;
        }
        let (ours, baseline) = (median(ours), median(baseline));
        // The decoding alone, from memory: what the client itself costs, without the network.
        let start = Instant::now();
        let chunks = futures_util::stream::iter(captured.iter().cloned().map(Ok::<_, std::convert::Infallible>));
        read_events(make().as_ref(), chunks, &mut |_| {}, &CancellationToken::new(), &Timeouts::default())
            .await
            .unwrap();
        let decode = start.elapsed();
        println!(
            "{name:<20} {:5.1} MB  raw reqwest {:7.1} ms  baton client {:7.1} ms  ratio {:4.2}x  (decoding alone {:6.1} ms, {:5.0} MB/s)",
            bytes as f64 / 1e6,
            baseline.as_secs_f64() * 1e3,
            ours.as_secs_f64() * 1e3,
            ours.as_secs_f64() / baseline.as_secs_f64(),
            decode.as_secs_f64() * 1e3,
            bytes as f64 / 1e6 / decode.as_secs_f64()
        );
    }
}
