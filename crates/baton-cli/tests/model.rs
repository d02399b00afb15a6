//! `baton model ...` end to end: the real binary, configured by file and environment, calling the
//! scripted model server over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Output;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::model::{Expect, Reply, Script, ScriptedServer, Turn, Usage};
use serde_json::Value;

async fn baton(args: &[&str], env: &[(&str, &str)], config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command.args(args).env("BATON_CONFIG", &config_path);
    for var in
        ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_COMPATIBLE_BASE_URL"]
    {
        command.env_remove(var);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::process::Command::from(command).output().await.unwrap()
}

fn answer(usage: Usage) -> Turn {
    Turn {
        expect: Expect { body_contains: Some("Reply with the single word".into()), ..Expect::default() },
        faults: vec![],
        reply: Reply { text: Some("ready".into()), usage, ..Reply::default() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_calls_the_model_and_prices_the_reply_to_the_micro_credit() {
    let usage = Usage { input: 1000, cache_read: 2000, output: 10, ..Usage::default() };
    let server =
        ScriptedServer::start(Script { turns: vec![answer(usage), answer(usage)], ..Script::default() }).await.unwrap();
    let base = format!("{}/v1", server.url());

    // Endpoint and key from the usual variables; the price from the built-in table:
    // 1000 × 1.25 + 2000 × 0.125 + 10 × 10 = 1600 micro-credits.
    let output = baton(
        &["model", "check", "openai/gpt-5", "--json"],
        &[("OPENAI_BASE_URL", &base), ("OPENAI_API_KEY", "sk-env")],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["reply"], "ready");
    assert_eq!(report["cost_micros"], 1600);
    assert_eq!(report["url"], format!("{base}/responses"));
    assert_eq!(server.requests()[0].credential.as_deref(), Some("Bearer sk-env"));

    // Endpoint, key variable and price from the configuration file instead.
    let config = format!(
        "[providers.openai-compatible]\nbase_url = \"{base}\"\napi_key_env = \"LOCAL_KEY\"\n\n\
         [models.\"openai-compatible/qwen3-coder\"]\ncontext_window = 32768\nmax_output_tokens = 8192\n\
         input = \"0.5\"\ncache_read = \"0.05\"\ncache_write = \"0\"\noutput = \"2\"\n"
    );
    let output =
        baton(&["model", "check", "openai-compatible/qwen3-coder", "--json"], &[("LOCAL_KEY", "sk-file")], &config)
            .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    // 1000 × 0.5 + 2000 × 0.05 + 10 × 2 = 620 micro-credits.
    assert_eq!(report["cost_micros"], 620);
    assert_eq!(server.requests()[1].credential.as_deref(), Some("Bearer sk-file"));
    assert!(server.failures().is_empty(), "{:?}", server.failures());

    let output = baton(&["model", "list", "--json"], &[], &config).await;
    let models: Value = serde_json::from_slice(&output.stdout).unwrap();
    let local = models.as_array().unwrap().iter().find(|m| m["model"] == "openai-compatible/qwen3-coder").unwrap();
    assert_eq!(local["context_window"], 32768);
}

#[tokio::test]
async fn missing_settings_and_bad_config_are_named() {
    let err = |output: Output| {
        assert!(!output.status.success());
        String::from_utf8(output.stderr).unwrap().trim_end().to_owned()
    };
    assert_eq!(
        err(baton(&["model", "check", "anthropic/claude-sonnet-4-5"], &[], "").await),
        "error: anthropic needs an API key: set ANTHROPIC_API_KEY"
    );
    assert_eq!(
        err(baton(&["model", "check", "gpt-5"], &[], "").await),
        "error: invalid model name `gpt-5`: expected provider/model, like anthropic/claude-sonnet-4-5 or openai/gpt-5"
    );
    let bad = err(baton(
        &["model", "check", "openai/gpt-5"],
        &[("OPENAI_API_KEY", "k")],
        "[providers.gemini]\nbase_url = \"x\"\n",
    )
    .await);
    assert!(bad.starts_with("error: config file ") && bad.contains("unknown field `gemini`"), "{bad}");
    let bad = err(baton(&["model", "list"], &[], "[models.\"openai/gpt-5\"]\ninput = \"cheap\"\n").await);
    assert!(
        bad.contains("model `openai/gpt-5`: input `cheap` is not an amount of credits per million tokens"),
        "{bad}"
    );
}
