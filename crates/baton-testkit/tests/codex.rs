//! Codex CLI, a real Responses API client, runs a scripted tool call and a final message against the
//! scripted server end to end.
//!
//! Needs `BATON_TEST_CODEX`, the path of a pinned `codex` binary (`scripts/test` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Stdio;

use baton_testkit::model::{Expect, Reply, Script, ScriptedServer, ToolCall, Turn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_cli_runs_a_scripted_tool_call_and_finishes() {
    let codex = std::env::var("BATON_TEST_CODEX")
        .expect("BATON_TEST_CODEX must name a pinned codex binary; scripts/test installs it");
    let command = r#"{"cmd": "echo scripted-codex-ok > proof.txt && cat proof.txt", "login": false, "tty": false}"#;
    let script = Script {
        turns: vec![
            Turn {
                expect: Expect {
                    protocol: Some("openai-responses".into()),
                    body_contains: Some("write the proof".into()),
                    ..Expect::default()
                },
                faults: vec![],
                reply: Reply {
                    tool_calls: vec![ToolCall {
                        id: "call_codex_1".into(),
                        name: "exec_command".into(),
                        arguments: command.into(),
                    }],
                    ..Reply::default()
                },
            },
            Turn {
                expect: Expect { last_tool_result_contains: Some("scripted-codex-ok".into()), ..Expect::default() },
                faults: vec![],
                reply: Reply { text: Some("The proof file is written.".into()), ..Reply::default() },
            },
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();

    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        r#"model = "scripted-model"
model_provider = "scripted"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.scripted]
name = "scripted"
base_url = "{}/v1"
wire_api = "responses"
env_key = "SCRIPTED_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"#,
        server.url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();

    let output = tokio::process::Command::new(&codex)
        .args(["exec", "--skip-git-repo-check", "write the proof file"])
        .current_dir(work.path())
        .env("CODEX_HOME", home.path())
        .env("SCRIPTED_API_KEY", "sk-test")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "codex failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("The proof file is written."), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(std::fs::read_to_string(work.path().join("proof.txt")).unwrap(), "scripted-codex-ok\n");
    assert!(server.failures().is_empty(), "{:?}", server.failures());
    assert_eq!(server.remaining_turns(), 0);
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.credential.as_deref() == Some("Bearer sk-test")));
}
