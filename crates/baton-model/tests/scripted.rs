//! Our clients against the scripted model server, over real HTTP, for every protocol.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use baton_core::{FinishReason, Message, ModelRequest, ModelResponse, Part, Role, ToolSpec, Usage};
use baton_model::{
    Billed, HttpClient, ModelClient, ModelError, ProviderConfig, Providers, RetryPolicy, StreamEvent, Timeouts,
};
use baton_testkit::model::{Expect, Fault, Reply, Rule, Script, ScriptedServer, ToolCall, Turn, Usage as ScriptUsage};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Responses,
    Chat,
    Anthropic,
}

const ALL: [Wire; 3] = [Wire::Responses, Wire::Chat, Wire::Anthropic];

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
    }
}

fn client(wire: Wire, server: &ScriptedServer, retry: RetryPolicy) -> HttpClient {
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        first_byte: Duration::from_secs(10),
        idle: Duration::from_millis(400),
        whole: Duration::from_secs(3),
    };
    let at = |base: String| ProviderConfig { base_url: Some(base), api_key_env: None };
    let providers = Providers {
        openai: at(format!("{}/v1", server.url())),
        openai_compatible: at(format!("{}/v1", server.url())),
        anthropic: at(server.url()),
        retry,
        timeouts,
    };
    let name = match wire {
        Wire::Responses => "openai/gpt-5",
        Wire::Chat => "openai-compatible/qwen3-coder",
        Wire::Anthropic => "anthropic/claude-sonnet-4-5",
    };
    let env = |var: &str| match var {
        "OPENAI_API_KEY" | "ANTHROPIC_API_KEY" | "OPENAI_COMPATIBLE_API_KEY" => Some("sk-test".to_owned()),
        _ => None,
    };
    providers.client(&name.parse().unwrap(), &env).unwrap()
}

fn request() -> ModelRequest {
    ModelRequest {
        model: "scripted-model".into(),
        system: "You are a careful engineer.".into(),
        messages: vec![Message { role: Role::User, parts: vec![Part::Text { text: "Fix the parser.".into() }] }],
        tools: vec![
            ToolSpec {
                name: "read_file".into(),
                description: "Read a file".into(),
                parameters: r#"{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}"#.into(),
            },
            ToolSpec {
                name: "shell".into(),
                description: "Run a command".into(),
                parameters: r#"{"type":"object"}"#.into(),
            },
        ],
        max_output_tokens: 1000,
        stable_prefix: 1,
    }
}

fn turn(reply: Reply) -> Turn {
    Turn { reply, ..Turn::default() }
}

fn text_reply(text: &str) -> Reply {
    Reply {
        text: Some(text.into()),
        usage: ScriptUsage {
            input: 1200,
            cache_read: 800,
            cache_write: 300,
            output: 45,
            reasoning: 12,
            ..ScriptUsage::default()
        },
        ..Reply::default()
    }
}

/// Usage as each protocol can report it: only Anthropic reports cache writes, only OpenAI reasoning.
fn expected_usage(wire: Wire, scripted: ScriptUsage) -> Usage {
    Usage {
        input: scripted.input,
        cache_read: scripted.cache_read,
        cache_write: if wire == Wire::Anthropic { scripted.cache_write } else { 0 },
        output: scripted.output,
        reasoning: if wire == Wire::Anthropic { 0 } else { scripted.reasoning },
    }
}

async fn complete(
    client: &HttpClient,
    request: &ModelRequest,
) -> (Result<ModelResponse, ModelError>, Vec<StreamEvent>) {
    let mut events = Vec::new();
    let result = client.complete(request, &mut |event| events.push(event), &CancellationToken::new()).await;
    (result, events)
}

#[tokio::test]
async fn text_streams_and_usage_is_normalised() {
    for wire in ALL {
        let reply = text_reply("The parser now handles quoted strings, escapes included.");
        let server =
            ScriptedServer::start(Script { turns: vec![turn(reply.clone())], ..Script::default() }).await.unwrap();
        let (response, events) = complete(&client(wire, &server, fast_retries()), &request()).await;
        let response = response.unwrap();
        assert_eq!(response.text(), reply.text.clone().unwrap(), "{wire:?}");
        assert_eq!(response.finish, FinishReason::EndTurn, "{wire:?}");
        assert_eq!(response.usage, expected_usage(wire, reply.usage), "{wire:?}");
        let deltas: Vec<&String> =
            events.iter().filter_map(|e| if let StreamEvent::TextDelta(t) = e { Some(t) } else { None }).collect();
        assert!(deltas.len() > 5, "{wire:?}: the reply should arrive in pieces, got {}", deltas.len());

        let recorded = server.requests();
        assert_eq!(recorded.len(), 1);
        let credential = recorded[0].credential.clone().unwrap();
        assert!(credential == "Bearer sk-test" || credential == "sk-test", "{wire:?}: {credential}");
        assert!(server.failures().is_empty(), "{:?}", server.failures());
    }
}

#[tokio::test]
async fn parallel_tool_calls_arrive_whole_even_in_one_character_chunks() {
    for wire in ALL {
        let calls = vec![
            ToolCall {
                id: "call_a".into(),
                name: "read_file".into(),
                arguments: r#"{"path": "src/parser.rs"}"#.into(),
            },
            ToolCall {
                id: "call_b".into(),
                name: "shell".into(),
                arguments: r#"{"command": "cargo test -- --nocapture \"quoted\""}"#.into(),
            },
            // Malformed JSON from the model is passed through untouched, for the agent to answer.
            ToolCall { id: "call_c".into(), name: "shell".into(), arguments: r#"{"command": "ls"#.into() },
        ];
        let reply =
            Reply { text: Some("Looking.".into()), tool_calls: calls.clone(), chunk: Some(1), ..Reply::default() };
        let server = ScriptedServer::start(Script { turns: vec![turn(reply)], ..Script::default() }).await.unwrap();
        let (response, _) = complete(&client(wire, &server, fast_retries()), &request()).await;
        let response = response.unwrap();
        let got: Vec<(&str, &str, &str)> = response.tool_calls().collect();
        let want: Vec<(&str, &str, &str)> =
            calls.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(got, want, "{wire:?}");
        assert_eq!(response.text(), "Looking.");
        assert_eq!(response.finish, FinishReason::ToolUse, "{wire:?}");
    }
}

#[tokio::test]
async fn transient_faults_are_retried_and_never_half_recorded() {
    let faults = [
        Fault::Status { status: 429, retry_after: Some(0), message: Some("slow down".into()) },
        Fault::Status { status: 500, retry_after: None, message: None },
        Fault::Overloaded,
        Fault::CutAfter { bytes: 2000 },
        Fault::Stall { ms: 1500 },
    ];
    for wire in ALL {
        for fault in &faults {
            let reply =
                text_reply(&"A complete answer that must arrive exactly once, with nothing repeated. ".repeat(6));
            let script = Script {
                turns: vec![Turn { faults: vec![fault.clone()], ..turn(reply.clone()) }],
                ..Script::default()
            };
            let server = ScriptedServer::start(script).await.unwrap();
            let (response, events) = complete(&client(wire, &server, fast_retries()), &request()).await;
            let response = response.unwrap_or_else(|e| panic!("{wire:?} {fault:?}: {e}"));
            assert_eq!(response.text(), reply.text.clone().unwrap(), "{wire:?} {fault:?}");
            assert_eq!(response.usage, expected_usage(wire, reply.usage), "{wire:?} {fault:?}");
            assert_eq!(server.requests().len(), 2, "{wire:?} {fault:?}: one failed attempt, one good");
            let restarts = events.iter().filter(|e| matches!(e, StreamEvent::Restarted { attempt: 2, .. })).count();
            assert_eq!(restarts, 1, "{wire:?} {fault:?}: the live view must be told to start over");
            if let Fault::CutAfter { .. } = fault {
                let before_restart = events.iter().take_while(|e| !matches!(e, StreamEvent::Restarted { .. }));
                let partial = before_restart.filter(|e| matches!(e, StreamEvent::TextDelta(_))).count();
                assert!(partial > 0, "{wire:?}: the cut should fall inside the text, so a partial reply was streamed");
            }
        }
    }
}

#[tokio::test]
async fn permanent_failures_get_their_typed_error_without_a_retry() {
    let overflow = |wire: Wire| match wire {
        Wire::Anthropic => "prompt is too long: 210000 tokens > 200000 maximum",
        _ => "This model's maximum context length is 128000 tokens. However, your messages resulted in 140000 tokens.",
    };
    for wire in ALL {
        type Check = fn(&ModelError) -> bool;
        let cases: Vec<(Fault, Check)> = vec![
            (Fault::Status { status: 400, retry_after: None, message: Some(overflow(wire).into()) }, |e| {
                matches!(e, ModelError::ContextOverflow { .. })
            }),
            (Fault::Status { status: 401, retry_after: None, message: Some("invalid x-api-key".into()) }, |e| {
                matches!(e, ModelError::Auth { status: 401, .. })
            }),
            (Fault::Status { status: 400, retry_after: None, message: Some("tools.0: bad schema".into()) }, |e| {
                matches!(e, ModelError::BadRequest { status: 400, .. })
            }),
            (Fault::MalformedEvent, |e| matches!(e, ModelError::Protocol(_))),
            (Fault::ContextOverflow, |e| matches!(e, ModelError::ContextOverflow { .. })),
        ];
        for (fault, expected) in cases {
            let script = Script {
                turns: vec![Turn { faults: vec![fault.clone()], ..turn(text_reply("unused")) }],
                ..Script::default()
            };
            let server = ScriptedServer::start(script).await.unwrap();
            let (result, _) = complete(&client(wire, &server, fast_retries()), &request()).await;
            let err = result.unwrap_err();
            assert!(expected(&err), "{wire:?} {fault:?}: got {err:?}");
            assert_eq!(server.requests().len(), 1, "{wire:?} {fault:?}: must not be retried");
        }
    }
}

#[tokio::test]
async fn a_prompt_over_the_scripts_window_is_refused_as_an_overflow_and_rules_answer_out_of_turn() {
    for wire in ALL {
        let script = Script {
            turns: vec![turn(text_reply("in turn"))],
            rules: vec![Rule {
                when: Expect { body_contains: Some("Write the summary".into()), ..Expect::default() },
                reply: text_reply("by rule"),
            }],
            context_window: Some(200),
            ..Script::default()
        };
        let server = ScriptedServer::start(script).await.unwrap();
        let client = client(wire, &server, fast_retries());
        let mut big = request();
        big.messages[0].parts.push(Part::Text { text: "lorem ipsum dolor ".repeat(100) });
        let err = complete(&client, &big).await.0.unwrap_err();
        assert!(matches!(err, ModelError::ContextOverflow { .. }), "{wire:?}: {err:?}");
        let served = &server.requests()[0].served;
        assert!(served.starts_with("context_overflow: ") && served.ends_with(" > 200"), "{served}");

        let mut summary = request();
        summary.messages[0].parts.push(Part::Text { text: "Write the summary.".into() });
        assert_eq!(complete(&client, &summary).await.0.unwrap().text(), "by rule");
        assert_eq!(complete(&client, &request()).await.0.unwrap().text(), "in turn");
        assert_eq!(server.remaining_turns(), 0);
        assert!(server.failures().is_empty(), "{:?}", server.failures());
    }
}

#[tokio::test]
async fn retries_stop_when_attempts_run_out_or_the_wait_is_too_long() {
    for wire in ALL {
        let failing = Fault::Status { status: 500, retry_after: None, message: Some("boom".into()) };
        let script = Script {
            turns: vec![Turn { faults: vec![failing; 4], ..turn(text_reply("unused")) }],
            ..Script::default()
        };
        let server = ScriptedServer::start(script).await.unwrap();
        let (result, _) = complete(&client(wire, &server, fast_retries()), &request()).await;
        match result.unwrap_err() {
            ModelError::Exhausted { attempts: 4, last } => {
                assert!(matches!(*last, ModelError::Server { status: 500, .. }))
            }
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(server.requests().len(), 4);

        // Retry-After is read: a wait longer than the policy accepts ends the call with it.
        let slow = Fault::Status { status: 429, retry_after: Some(30), message: Some("wait".into()) };
        let script =
            Script { turns: vec![Turn { faults: vec![slow], ..turn(text_reply("unused")) }], ..Script::default() };
        let server = ScriptedServer::start(script).await.unwrap();
        let (result, _) = complete(&client(wire, &server, fast_retries()), &request()).await;
        let err = result.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)), "{wire:?}: {err:?}");
        assert!(matches!(err, ModelError::RateLimited { .. }));
    }
}

#[tokio::test]
async fn a_cancelled_call_stops_at_once() {
    for wire in ALL {
        let slow = Reply { delay_ms: Some(30_000), ..text_reply("too late") };
        let server = ScriptedServer::start(Script { turns: vec![turn(slow)], ..Script::default() }).await.unwrap();
        let client = client(wire, &server, fast_retries());
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            trigger.cancel();
        });
        let result = client.complete(&request(), &mut |_| {}, &cancel).await;
        assert_eq!(result.unwrap_err(), ModelError::Cancelled, "{wire:?}");
    }
}

#[tokio::test]
async fn reasoning_is_sent_back_verbatim_to_the_protocol_that_made_it() {
    for (wire, marker) in [(Wire::Responses, "scripted-encrypted:"), (Wire::Anthropic, "scripted-signature")] {
        let first = Reply {
            reasoning: Some("The quote handling is in lex_string.".into()),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "read_file".into(),
                arguments: r#"{"path":"src/lex.rs"}"#.into(),
            }],
            ..Reply::default()
        };
        let second = Turn {
            expect: Expect {
                body_contains: Some(marker.into()),
                last_tool_result_contains: Some("fn lex_string".into()),
                ..Expect::default()
            },
            ..turn(text_reply("Done."))
        };
        let server =
            ScriptedServer::start(Script { turns: vec![turn(first), second], ..Script::default() }).await.unwrap();
        let client = client(wire, &server, fast_retries());
        let mut conversation = request();
        let (first_response, _) = complete(&client, &conversation).await;
        let first_response = first_response.unwrap();
        assert!(
            first_response
                .parts
                .iter()
                .any(|p| matches!(p, Part::Reasoning { replay: Some(_), text } if text.contains("lex_string"))),
            "{wire:?}: {:?}",
            first_response.parts
        );
        conversation.messages.push(Message { role: Role::Assistant, parts: first_response.parts });
        conversation.messages.push(Message {
            role: Role::User,
            parts: vec![Part::ToolResult {
                call_id: "call_1".into(),
                output: "fn lex_string() {}".into(),
                is_error: false,
            }],
        });
        let (second_response, _) = complete(&client, &conversation).await;
        assert_eq!(second_response.unwrap().text(), "Done.", "{wire:?}: {:?}", server.failures());
        assert!(server.failures().is_empty(), "{:?}", server.failures());
    }
}

#[tokio::test]
async fn an_answer_cut_off_while_thinking_leaves_no_orphan_in_the_next_request() {
    // The scripted server refuses, in the provider's words, reasoning sent back on its own.
    for wire in ALL {
        let cut = Reply {
            reasoning: Some("Still weighing the lexer.".into()),
            stop: Some("max_tokens".into()),
            ..Reply::default()
        };
        let server =
            ScriptedServer::start(Script { turns: vec![turn(cut), turn(text_reply("Done."))], ..Script::default() })
                .await
                .unwrap();
        let client = client(wire, &server, fast_retries());
        let mut conversation = request();
        let (cut, _) = complete(&client, &conversation).await;
        let cut = cut.unwrap();
        assert_eq!(cut.finish, FinishReason::MaxTokens, "{wire:?}");
        assert!(cut.parts.iter().all(|p| matches!(p, Part::Reasoning { .. })), "{wire:?}: {:?}", cut.parts);
        conversation.messages.push(Message { role: Role::Assistant, parts: cut.parts });
        conversation.messages.push(Message { role: Role::User, parts: vec![Part::Text { text: "Go on.".into() }] });
        let (next, _) = complete(&client, &conversation).await;
        assert_eq!(next.unwrap().text(), "Done.", "{wire:?}: {:?}", server.failures());
        assert!(server.failures().is_empty(), "{wire:?}: {:?}", server.failures());
    }
}

#[tokio::test]
async fn anthropic_requests_carry_cache_breakpoints_on_the_stable_prefix() {
    let server =
        ScriptedServer::start(Script { turns: vec![turn(text_reply("ok"))], ..Script::default() }).await.unwrap();
    let mut conversation = request();
    conversation.messages.push(Message { role: Role::Assistant, parts: vec![Part::Text { text: "On it.".into() }] });
    conversation.messages.push(Message { role: Role::User, parts: vec![Part::Text { text: "And the tests.".into() }] });
    complete(&client(Wire::Anthropic, &server, fast_retries()), &conversation).await.0.unwrap();
    let body = &server.requests()[0].body;
    let ephemeral = serde_json::json!({"type": "ephemeral"});
    assert_eq!(body["system"][0]["cache_control"], ephemeral);
    assert_eq!(body["tools"][1]["cache_control"], ephemeral);
    assert!(body["tools"][0].get("cache_control").is_none());
    assert_eq!(body["messages"][0]["content"][0]["cache_control"], ephemeral, "the stable prefix ends at message 1");
    assert!(body["messages"][2]["content"][0].get("cache_control").is_none());
    assert_eq!(body["tools"][0]["input_schema"]["required"][0], "path");
}

fn failed_attempts(events: &[StreamEvent]) -> Vec<(u32, String, Billed)> {
    let failed = events.iter().filter_map(|event| match event {
        StreamEvent::AttemptFailed { attempt, error, billed } => Some((*attempt, error.clone(), *billed)),
        _ => None,
    });
    failed.collect()
}

#[tokio::test]
async fn each_failed_attempt_says_what_the_provider_may_have_billed() {
    for wire in ALL {
        let reply = text_reply("Fixed.");
        // A refusal costs nothing; a stream cut before any usage may have cost anything; one cut
        // after its usage (Chat Completions and Anthropic tell it before the end) cost that.
        let mut faults =
            vec![Fault::Status { status: 500, retry_after: None, message: None }, Fault::CutAfter { bytes: 40 }];
        if wire != Wire::Responses {
            faults.push(Fault::CutBeforeLastEvent);
        }
        let script =
            Script { turns: vec![Turn { faults: faults.clone(), ..turn(reply.clone()) }], ..Script::default() };
        let server = ScriptedServer::start(script).await.unwrap();
        let (response, events) = complete(&client(wire, &server, fast_retries()), &request()).await;
        assert_eq!(response.unwrap().usage, expected_usage(wire, reply.usage), "{wire:?}");
        let billed: Vec<(u32, Billed)> = failed_attempts(&events).into_iter().map(|(n, _, b)| (n, b)).collect();
        let mut expected = vec![(1, Billed::Nothing), (2, Billed::Unknown)];
        if wire != Wire::Responses {
            expected.push((3, Billed::Reported(expected_usage(wire, reply.usage))));
        }
        assert_eq!(billed, expected, "{wire:?}");
    }
}

#[tokio::test]
async fn a_stream_kept_alive_by_pings_is_given_up_at_the_whole_attempts_deadline() {
    // Pings every 50 ms for a minute: never idle for the 400 ms idle limit, never finished.
    let reply = text_reply("At last.");
    let faults = vec![Fault::Pings { ms: 60_000 }];
    let script = Script { turns: vec![Turn { faults, ..turn(reply.clone()) }], ..Script::default() };
    let server = ScriptedServer::start(script).await.unwrap();
    let (response, events) = complete(&client(Wire::Chat, &server, fast_retries()), &request()).await;
    assert_eq!(response.unwrap().text(), "At last.");
    let failed = failed_attempts(&events);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (attempt, error, billed) = &failed[0];
    assert_eq!((*attempt, *billed), (1, Billed::Unknown));
    assert!(error.contains("waiting for the whole response"), "{error}");
}
