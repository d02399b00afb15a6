//! The engine's scenarios over every wire protocol — OpenAI Responses, Chat Completions and
//! Anthropic Messages — against a scripted server that refuses, in the provider's words, what the
//! provider would refuse (tool results apart from their calls, reasoning sent back on its own, empty
//! turns). One task per protocol: a build leg with reasoning and parallel tool calls, an answer cut
//! off while the model was still thinking, a context overflow and the emergency handoff after it,
//! the checks, and a review round. Real path: scripted model server over HTTP, git, sandbox (root),
//! SQLite journal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_testkit::long_horizon::HANDOFF_ASK;
use baton_testkit::model::{Expect, Fault, Reply, Rule, Script, ToolCall, Turn};
use common::Harness;
use serde_json::json;

fn thinking(thought: &str, calls: &[(&str, &str, serde_json::Value)]) -> Turn {
    let tool_calls = calls
        .iter()
        .map(|(id, name, arguments)| ToolCall {
            id: (*id).into(),
            name: (*name).into(),
            arguments: arguments.to_string(),
        })
        .collect();
    Turn { reply: Reply { reasoning: Some(thought.into()), tool_calls, ..Reply::default() }, ..Turn::default() }
}

async fn a_build_a_handoff_and_a_review_over(provider: &'static str) {
    let mut overflowing = thinking(
        "The bug is the minus sign.",
        &[("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))],
    );
    overflowing.faults = vec![Fault::ContextOverflow];
    let script = Script {
        turns: vec![
            thinking(
                "Read the code and find the tests.",
                &[
                    ("r", "read_file", json!({"path": "calc.py"})),
                    ("s", "search", json!({"pattern": "add", "path": "."})),
                ],
            ),
            // Cut off while thinking: nothing but reasoning, ended by the output limit.
            Turn {
                reply: Reply {
                    reasoning: Some("Now which file holds".into()),
                    stop: Some("max_tokens".into()),
                    ..Reply::default()
                },
                ..Turn::default()
            },
            overflowing,
            thinking("Run the tests.", &[("t", "shell", json!({"command": "python3 test_calc.py"}))]),
            thinking("They pass.", &[("f", "finish", json!({"summary": "add() adds."}))]),
            // The review round.
            thinking("Look at the change.", &[("v", "read_file", json!({"path": "calc.py"}))]),
            thinking("It is right.", &[("w", "report_findings", json!({"findings": []}))]),
        ],
        rules: vec![Rule {
            when: Expect { body_contains: Some(HANDOFF_ASK.into()), ..Expect::default() },
            reply: Reply {
                text: Some("Fixing add() in calc.py; next: the edit, then the tests.".into()),
                ..Reply::default()
            },
        }],
        context_window: Some(12_000),
        ..Script::default()
    };
    let mut h = Harness::new(script).await;
    h.provider = provider;
    let id = h.create_with(|spec| spec.review = true).await;
    let (state, _) = h.run_verified(&id).await;
    assert_eq!(h.server.remaining_turns(), 0, "{provider}");
    let requests = h.server.requests();
    let expected = match provider {
        "openai" => "openai-responses",
        "anthropic" => "anthropic",
        _ => "openai-chat",
    };
    assert!(requests.iter().all(|r| r.protocol == expected), "{provider}");
    assert_eq!(requests.iter().filter(|r| r.served == "fault: ContextOverflow").count(), 1, "{provider}");
    assert_eq!((state.work.handoffs, state.work.review_rounds), (1, 1), "{provider}");
    assert!(state.work.last_handoff.as_ref().unwrap().emergency, "{provider}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_openai_responses() {
    a_build_a_handoff_and_a_review_over("openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_chat_completions() {
    a_build_a_handoff_and_a_review_over("openai-compatible").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_anthropic_messages() {
    a_build_a_handoff_and_a_review_over("anthropic").await;
}
