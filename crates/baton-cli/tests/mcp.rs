//! MCP servers a repository declares in its `baton.toml`: the real `server-everything` from npm runs
//! over stdio inside the task's sandbox; the scripted model calls its tools as `everything__TOOL`
//! and their results reach its next request; a server killed during a call, and one that misses
//! its deadline, give error results and are started afresh; a reviewer is offered only the tools
//! declared read-only.
//!
//! Needs `BATON_TEST_MCP_EVERYTHING`, the server's `dist/index.js` (`scripts/test` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Expect, Script, ScriptedServer, Turn};
use std::path::Path;

use common::{call, describe};
use serde_json::{Value, json};

/// `turn`, served only to a request whose last tool result contains `text`.
fn after(text: &str, turn: Turn) -> Turn {
    Turn { expect: Expect { last_tool_result_contains: Some(text.into()), ..Expect::default() }, ..turn }
}

/// `baton ARGS` on the data directory `home` (its configuration there) and the scripted `model`,
/// with `env` too.
fn baton(home: &Path, model: &ScriptedServer, env: &[(&str, &str)], args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command
        .args(args)
        .env("BATON_HOME", home)
        .env("BATON_CONFIG", home.join("config.toml"))
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url()))
        .envs(env.iter().copied())
        .env_remove("BATON_MODEL");
    command
}

/// Runs `request` on `repo` with `flags` to its end, which must be a success, and returns the
/// task's journal.
async fn run(
    home: &Path,
    model: &ScriptedServer,
    env: &[(&str, &str)],
    repo: &FixtureRepo,
    flags: &[&str],
) -> Vec<Value> {
    let repo = repo.path().display().to_string();
    let mut args = vec!["run", "Use the tools", "--repo", &repo, "--model", "openai-compatible/scripted"];
    args.extend(flags);
    let output = tokio::process::Command::from(baton(home, model, env, &args)).output().await.unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(model.failures().is_empty() && model.remaining_turns() == 0, "{:?}", model.failures());
    let listed = baton(home, model, env, &["task", "list", "--json"]).output().unwrap();
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    let shown = baton(home, model, env, &["task", "events", &id, "--json"]).output().unwrap();
    String::from_utf8(shown.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The result of tool call `call` in `journal`.
fn result_of(journal: &[Value], call: &str) -> Value {
    let found = journal.iter().find(|e| e["event"]["type"] == "tool_call_finished" && e["event"]["call_id"] == call);
    found.unwrap_or_else(|| panic!("no result for {call}"))["event"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_mcp_server_runs_in_the_sandbox_and_its_failures_are_results() {
    let server = std::env::var("BATON_TEST_MCP_EVERYTHING")
        .expect("BATON_TEST_MCP_EVERYTHING must name server-everything's dist/index.js; scripts/test installs it");
    let declaration = format!(
        "[mcp.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\nread_only = [\"echo\"]\ntimeout_secs = 3\n",
        server
    );
    let repo = FixtureRepo::with_files(&[("baton.toml", &declaration), ("README", "hello\n")]);
    let long = |id: &str, duration: u64| {
        call(id, "everything__trigger-long-running-operation", json!({"duration": duration, "steps": 2}))
    };
    let script = Script {
        turns: vec![
            call("m1", "everything__echo", json!({"message": "hello from the sandbox"})),
            after(
                "Echo: hello from the sandbox",
                call("m2", "shell", json!({"command": "sleep 1; pkill -f server-everything", "background": true})),
            ),
            long("m3", 2),
            after("failed during the call", call("m4", "everything__echo", json!({"message": "again"}))),
            after("Echo: again", long("m5", 30)),
            after("did not answer within 3 s", call("w1", "write_file", json!({"path": "DONE", "content": "yes\n"}))),
            call("f1", "finish", json!({"summary": "Called the server's tools."})),
            call("r1", "report_findings", json!({"findings": []})),
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // The server and its packages, shown to the sandbox where they are installed.
    let packages = Path::new(&server).ancestors().nth(4).unwrap();
    assert!(packages.ends_with("node_modules"), "{}", packages.display());
    std::fs::write(home.path().join("config.toml"), format!("[sandbox]\nhost_paths = [{:?}]\n", packages)).unwrap();
    let journal = run(home.path(), &model, &[], &repo, &["--check", "test -f DONE"]).await;

    let requests = model.requests();
    let offered = |request: &Value| -> Vec<String> {
        let tools = request["body"]["tools"].as_array().cloned().unwrap_or_default();
        tools.iter().filter_map(|t| t["name"].as_str().or(t["function"]["name"].as_str()).map(str::to_owned)).collect()
    };
    let first: Value = serde_json::to_value(&requests[0]).unwrap();
    let tools = offered(&first);
    for tool in ["everything__echo", "everything__get-sum", "everything__trigger-long-running-operation"] {
        assert!(tools.iter().any(|t| t == tool), "{tool} not offered: {tools:?}");
    }
    assert!(first["body"].to_string().contains("Message to echo"), "the server's own schema is sent");
    // The reviewer only reads: of the server's tools it gets the one declared read-only.
    let review: Value = serde_json::to_value(requests.last().unwrap()).unwrap();
    let reviewer: Vec<String> = offered(&review).into_iter().filter(|t| t.starts_with("everything__")).collect();
    assert_eq!(reviewer, ["everything__echo"]);

    // Every call is journaled like any tool call: intent, then what came of it.
    let finished = |call: &str| result_of(&journal, call);
    let started = journal.iter().any(|e| e["event"]["type"] == "tool_call_started" && e["event"]["call_id"] == "m1");
    assert!(started, "the call is journaled before it runs");
    assert_eq!(finished("m1")["is_error"], false);
    assert!(finished("m1")["output"].as_str().unwrap().contains("Echo: hello from the sandbox"));
    let killed = finished("m3");
    assert_eq!(killed["is_error"], true, "{killed}");
    assert!(
        killed["output"].as_str().unwrap().contains("the MCP server `everything` failed during the call"),
        "{killed}"
    );
    assert!(finished("m4")["output"].as_str().unwrap().contains("Echo: again"), "started afresh");
    let slow = finished("m5");
    assert_eq!(slow["is_error"], true);
    assert!(slow["output"].as_str().unwrap().contains("did not answer within 3 s"), "{slow}");
    let end = journal.iter().rfind(|e| e["event"]["type"] == "finished").unwrap();
    assert_eq!(end["event"]["reason"], "verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_servers_reach_for_a_host_off_the_allow_list_is_refused_and_journaled() {
    let server = std::env::var("BATON_TEST_MCP_EVERYTHING")
        .expect("BATON_TEST_MCP_EVERYTHING must name server-everything's dist/index.js; scripts/test installs it");
    // Its packages hold the official TypeScript SDK, which the fetching server is written with.
    let packages = std::path::Path::new(&server).ancestors().nth(4).unwrap().to_owned();
    // A host on the test's loopback that the task's policy does not name: it must see nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let fetcher = include_str!("mcp_fetcher.js");
    let declaration = "[mcp.fetcher]\ncommand = \"node\"\nargs = [\"fetcher.js\"]\nenv = [\"FETCHER_MODULES\"]\n";
    let repo = FixtureRepo::with_files(&[("baton.toml", declaration), ("fetcher.js", fetcher)]);
    let url = format!("http://127.0.0.1:{port}/secrets");
    let script = Script {
        turns: vec![
            call("m1", "fetcher__fetch", json!({"url": url})),
            after("HTTP 403", call("w1", "write_file", json!({"path": "DONE", "content": "yes\n"}))),
            call("f1", "finish", json!({"summary": "Tried the network."})),
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config =
        format!("[sandbox]\nhost_paths = [{packages:?}]\n\n[network]\nallow = [\"packages.example.invalid\"]\n");
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let modules = packages.display().to_string();
    let env = [("FETCHER_MODULES", modules.as_str())];
    let events = run(home.path(), &model, &env, &repo, &["--check", "test -f DONE", "--no-review"]).await;
    assert!(listener.accept().is_err(), "the host off the allow-list was reached");
    let refused: Vec<&Value> = events.iter().filter(|e| e["event"]["type"] == "connection_refused").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0]["event"]["host"].as_str(), refused[0]["event"]["port"].as_u64()),
        (Some("127.0.0.1"), Some(u64::from(port)))
    );
    let result =
        events.iter().find(|e| e["event"]["type"] == "tool_call_finished" && e["event"]["call_id"] == "m1").unwrap();
    assert_eq!(result["event"]["output"], "HTTP 403", "{result}");
}

/// Needs `BATON_TEST_PYTHON`, a Python with the official MCP SDK (`scripts/test` sets it up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_the_official_python_sdk_is_reached_over_streamable_http_through_the_egress_proxy() {
    let python = std::env::var("BATON_TEST_PYTHON")
        .expect("BATON_TEST_PYTHON must name a Python with the MCP SDK; scripts/test sets it up");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = "adder-key-3f9c";
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_http_server.py");
    let mut server = std::process::Command::new(python).arg(script).arg(port.to_string()).arg(key).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline && server.try_wait().unwrap().is_none(),
            "the server never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let declaration = format!(
        "[mcp.adder]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ \"X-Api-Key\" = \"ADDER_KEY\" }}\nread_only = [\"add\"]\n"
    );
    let repo = FixtureRepo::with_files(&[("baton.toml", &declaration)]);
    let script = Script {
        turns: vec![
            call("a1", "adder__add", json!({"a": 2, "b": 3})),
            after("5", call("w1", "write_file", json!({"path": "DONE", "content": "5\n"}))),
            call("f1", "finish", json!({"summary": "Added."})),
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(home.path().join("config.toml"), format!("[network]\nallow = [\"127.0.0.1:{port}\"]\n")).unwrap();
    let flags = ["--check", "grep -q 5 DONE", "--no-review"];
    let events = run(home.path(), &model, &[("ADDER_KEY", key)], &repo, &flags).await;
    let _ = server.kill();
    let _ = server.wait();
    let first: Value = serde_json::to_value(&model.requests()[0]).unwrap();
    assert!(first["body"].to_string().contains("Add two whole numbers"), "the server's own description is sent");
    let result = result_of(&events, "a1");
    assert_eq!((result["output"].as_str(), result["is_error"].as_bool()), (Some("5"), Some(false)));
    let journal = serde_json::to_string(&events).unwrap();
    assert!(!journal.contains(key), "the header's value is in the journal");
}
