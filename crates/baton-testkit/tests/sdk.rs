//! The scripted server is faithful to the real protocols: the providers' official Python SDKs stream
//! text and tool calls from it and parse them into the values the script holds.
//!
//! Needs `BATON_TEST_PYTHON`, a Python with the pinned SDKs (`scripts/test` sets it up).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;

use baton_testkit::model::{Expect, Reply, Script, ScriptedServer, ToolCall, Turn, Usage};
use serde_json::{Value, json};

fn turn(protocol: &str, reply: Reply) -> Turn {
    Turn { expect: Expect { protocol: Some(protocol.into()), ..Expect::default() }, faults: vec![], reply }
}

fn text(text: &str, usage: Usage) -> Reply {
    Reply { text: Some(text.into()), usage, chunk: Some(3), ..Reply::default() }
}

fn call(id: &str) -> Reply {
    Reply {
        tool_calls: vec![ToolCall {
            id: id.into(),
            name: "read_file".into(),
            arguments: r#"{"path": "src/parser.rs"}"#.into(),
        }],
        chunk: Some(4),
        ..Reply::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdks_parse_what_the_scripted_server_streams() {
    let python = std::env::var("BATON_TEST_PYTHON")
        .expect("BATON_TEST_PYTHON must name a Python with the pinned openai and anthropic SDKs; scripts/test sets it");
    let usage = Usage { input: 120, cache_read: 30, cache_write: 7, output: 42, reasoning: 5, ..Usage::default() };
    let script = Script {
        turns: vec![
            turn("openai-responses", text("Hello from the Responses API!", usage)),
            turn("openai-responses", call("call_r1")),
            turn("openai-responses", text("whole response", usage)),
            turn("openai-chat", text("Hello from Chat Completions!", usage)),
            turn("openai-chat", call("call_c1")),
            turn("openai-chat", text("whole chat", usage)),
            turn(
                "anthropic",
                Reply { reasoning: Some("Greeting first.".into()), ..text("Hello from Messages!", usage) },
            ),
            turn("anthropic", call("toolu_a1")),
            turn("anthropic", text("whole message", usage)),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_clients.py");
    let output = tokio::process::Command::from(Command::new(&python))
        .arg(&script_path)
        .env("SCRIPTED_URL", server.url())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "the SDK script failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    println!("SDK versions: {}", got["versions"]);

    let path = json!({"path": "src/parser.rs"});
    // OpenAI counts cached tokens inside input_tokens.
    let openai_usage = json!([150, 30, 42]);
    assert_eq!(got["responses"]["text"], "Hello from the Responses API!");
    assert!(got["responses"]["text_deltas"].as_u64().unwrap() > 5, "the text should stream in pieces");
    assert_eq!(got["responses"]["usage"], openai_usage);
    assert_eq!(got["responses"]["calls"], json!([["call_r1", "read_file", path]]));
    assert_eq!(got["responses"]["whole_text"], "whole response");

    assert_eq!(got["chat"]["text"], "Hello from Chat Completions!");
    assert_eq!(got["chat"]["usage"], openai_usage);
    assert_eq!(got["chat"]["calls"], json!([["call_c1", "read_file", path]]));
    assert_eq!(got["chat"]["finish"], "tool_calls");
    assert_eq!(got["chat"]["whole_text"], "whole chat");

    assert_eq!(got["messages"]["text"], "Hello from Messages!");
    assert_eq!(got["messages"]["thinking"], json!([["Greeting first.", "scripted-signature"]]));
    assert_eq!(got["messages"]["usage"], json!([120, 30, 7, 42]));
    assert_eq!(got["messages"]["calls"], json!([["toolu_a1", "read_file", path]]));
    assert_eq!(got["messages"]["stop_reason"], "tool_use");
    assert_eq!(got["messages"]["whole_text"], "whole message");

    assert!(server.failures().is_empty(), "{:?}", server.failures());
    assert_eq!(server.remaining_turns(), 0);
}
