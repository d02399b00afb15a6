//! `baton run` as a user runs it: the real binary (which also builds its own sandboxes), a fixture
//! repository, and the scripted model server over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Output;

mod common;

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Reply, Script, ScriptedServer, Turn, Usage as ScriptUsage};
use common::{calc_repo, call};
use serde_json::{Value, json};

async fn baton(home: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let config = home.join("no-config.toml");
    if !config.exists() {
        std::fs::write(&config, "").unwrap();
    }
    let mut command = std::process::Command::cargo_bin("baton").unwrap();
    command
        .args(args)
        .env("BATON_HOME", home)
        .env("BATON_CONFIG", home.join("no-config.toml"))
        .env_remove("BATON_MODEL")
        .env_remove("ANTHROPIC_API_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::process::Command::from(command).output().await.unwrap()
}

/// The agent fixes `add` and finishes.
fn fixing() -> Script {
    Script {
        turns: vec![
            call("c1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            call("c2", "finish", json!({"summary": "add() adds."})),
        ],
        ..Script::default()
    }
}

/// `baton run` of the calc fixture with the scripted model, its events as JSON, and `extra` flags.
fn fixing_run<'a>(repo: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "Make add() add", "--repo", repo, "--check", "python3 test_calc.py"];
    args.extend(["--model", "openai-compatible/scripted", "--no-review", "--json"]);
    args.extend(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_fixes_a_repository_and_exits_verified() {
    let repo = calc_repo();
    let server = ScriptedServer::start(fixing()).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo_arg = repo.path().display().to_string();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let output = baton(home.path(), &fixing_run(&repo_arg, &[]), &env).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The first line names the task; the events follow.
    let (task, events) = lines.split_first().unwrap();
    assert_eq!(task["task"]["branch"].as_str().map(|b| b.starts_with("baton/make-add-add")), Some(true), "{task}");
    assert_eq!(task["task"]["base_commit"].as_str().unwrap(), repo.git(&["rev-parse", "HEAD"]), "{task}");
    let kinds: Vec<&str> = events.iter().map(|e| e["event"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"finished"));
    assert_eq!(events.last().unwrap()["event"]["reason"], "verified");
    assert!(kinds.contains(&"check_finished") && kinds.contains(&"checkpointed"));

    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(task["task"]["id"], id.as_str());
    let diff = baton(home.path(), &["diff", &id], &[]).await;
    let diff = String::from_utf8(diff.stdout).unwrap();
    assert!(diff.contains("-    return a - b\n+    return a + b"), "{diff}");
    let handoffs = baton(home.path(), &["handoffs", &id], &[]).await;
    assert_eq!(String::from_utf8(handoffs.stdout).unwrap(), "no handoffs: the task has run in one leg\n");
    // The verified commit, with what verified it and the environment it was checked in.
    let shown = String::from_utf8(baton(home.path(), &["task", "show", &id], &[]).await.stdout).unwrap();
    let line = shown.lines().find(|l| l.starts_with("commit ")).unwrap_or_else(|| panic!("{shown}"));
    let environment = shown.lines().find_map(|l| l.strip_prefix("environment ")).unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(environment.len(), 12, "the environment's hash, and no snapshot (nothing declared): {shown}");
    assert!(
        line.ends_with(&format!("1 of 1 checks passed on a clean checkout of this commit (environment {environment})")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_says_exactly_what_to_set_and_leaves_nothing_behind() {
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = FixtureRepo::with_files(&[("a", "b")]);
    let repo_arg = repo.path().display().to_string();
    let output = baton(home.path(), &["run", "Do it", "--repo", &repo_arg, "--check", "true"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("error: no model is configured: pass --model provider/model or set BATON_MODEL"),
        "{stderr}"
    );
    let output = baton(
        home.path(),
        &["run", "Do it", "--repo", &repo_arg, "--check", "true", "--model", "anthropic/claude-sonnet-4-5"],
        &[("ANTHROPIC_API_KEY", String::new())],
    )
    .await;
    assert_eq!(
        String::from_utf8(output.stderr).unwrap().trim_end(),
        "error: anthropic needs an API key: set ANTHROPIC_API_KEY"
    );
    let output = baton(
        home.path(),
        &["run", "Do it", "--repo", &repo_arg, "--check", "true", "--model", "openai/gpt-5", "--context-window", "100"],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("invalid value '100' for '--context-window <TOKENS>': 100 is not in 4096.."), "{stderr}");
    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    assert_eq!(serde_json::from_slice::<Value>(&listed.stdout).unwrap(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_replays_its_session_through_the_real_machinery() {
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let output = baton(home.path(), &["demo", "--json"], &[]).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let events: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let last = &events.last().unwrap()["event"];
    assert_eq!((last["type"].as_str(), last["reason"].as_str()), (Some("finished"), Some("verified")));
    assert!(events.iter().any(|e| e["event"]["type"] == "check_finished" && e["event"]["passed"] == true));
    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    let diff = String::from_utf8(baton(home.path(), &["diff", &id], &[]).await.stdout).unwrap();
    assert!(diff.contains("-    return a - b\n+    return a + b"), "{diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_credits_pauses_and_resumes_once_its_limit_is_raised() {
    let repo = calc_repo();
    // Each answer reports 2,000 output tokens at 10 credits per million: 0.02 credits.
    let costly = |turn: Turn| Turn {
        reply: Reply { usage: ScriptUsage { input: 1000, output: 2000, ..ScriptUsage::default() }, ..turn.reply },
        ..turn
    };
    let script = Script {
        turns: vec![
            costly(call("c1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}))),
            costly(call("c2", "finish", json!({"summary": "add() adds."}))),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(
        home.path().join("no-config.toml"),
        "[models.\"openai-compatible/scripted\"]\ncontext_window = 32768\nmax_output_tokens = 4096\ninput = \"0.1\"\ncache_read = \"0.01\"\ncache_write = \"0.1\"\noutput = \"10\"\n",
    )
    .unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let repo_arg = repo.path().display().to_string();
    let args = ["run", "Make add() add", "--repo", &repo_arg, "--check", "python3 test_calc.py"];
    let args = [&args[..], &["--model", "openai-compatible/scripted", "--budget", "0.05", "--no-review"]].concat();
    let output = baton(home.path(), &args, &env).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(11), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("paused — budget_exhausted: the task's budget of 0.05 credits would be crossed"),
        "{stdout}"
    );
    assert!(stdout.contains("0.0201 credits"), "the run's cost is what was charged: {stdout}");

    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    let shown = String::from_utf8(baton(home.path(), &["task", "show", &id], &[]).await.stdout).unwrap();
    assert!(shown.contains("spent    0.0201 credits; 0.0201 per step"), "{shown}");
    let raised = baton(home.path(), &["budget", "task", &id, "--credits", "1"], &[]).await;
    assert!(raised.status.success(), "{}", String::from_utf8_lossy(&raised.stderr));
    let output = baton(home.path(), &["resume", &id], &env).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(server.failures().is_empty(), "{:?}", server.failures());
    assert_eq!((server.requests().len(), server.remaining_turns()), (2, 0), "no request was sent twice");
    let history = baton(home.path(), &["budget", "history", "--json"], &[]).await;
    let entries: Value = serde_json::from_slice(&history.stdout).unwrap();
    let charged: i64 = entries.as_array().unwrap().iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(charged, -40_200, "two answers at 0.0201 each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_approval_goes_on_once_decided() {
    let repo = calc_repo();
    let script = Script {
        turns: vec![
            call("p", "shell", json!({"command": "git push --force origin main || echo no remote here"})),
            call("c1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            call("c2", "finish", json!({"summary": "add() adds."})),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let repo_arg = repo.path().display().to_string();
    let args = ["run", "Make add() add", "--repo", &repo_arg, "--check", "python3 test_calc.py"];
    let output =
        baton(home.path(), &[&args[..], &["--model", "openai-compatible/scripted", "--no-review"]].concat(), &env)
            .await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(20), "{stdout}");
    assert!(
        stdout.contains("waiting — May the agent run `git push --force origin main || echo no remote here`?"),
        "{stdout}"
    );

    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    let shown = String::from_utf8(baton(home.path(), &["task", "show", &id], &[]).await.stdout).unwrap();
    assert!(shown.contains("decision d1: May the agent run") && shown.contains("WAITING"), "{shown}");
    let output =
        baton(home.path(), &["decide", &id, "--answer", "go ahead", "--model", "openai-compatible/scripted"], &env)
            .await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("d1 answered") && stdout.contains("no remote here"), "{stdout}");
    assert!(server.failures().is_empty() && server.remaining_turns() == 0, "{:?}", server.failures());
    let again = baton(home.path(), &["decide", &id, "--answer", "again"], &[]).await;
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert_eq!(stderr.trim_end(), format!("error: task {id} is not waiting for a decision (it is done)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nit_left_open_by_a_review_can_be_dismissed_by_a_human() {
    let repo = calc_repo();
    let nit = json!({"findings": [{"title": "name the parameters x and y", "body": "style", "severity": "P3",
        "confidence": 40, "file": "calc.py", "start_line": 1, "end_line": 1}]});
    let script = Script {
        turns: vec![
            call("c1", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"})),
            call("c2", "finish", json!({"summary": "add() adds."})),
            call("r1", "report_findings", nit),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let repo_arg = repo.path().display().to_string();
    let args = ["run", "Make add() add", "--repo", &repo_arg, "--check", "python3 test_calc.py"];
    let output = baton(home.path(), &[&args[..], &["--model", "openai-compatible/scripted"]].concat(), &env).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Still open after review: f1."), "a P3 is reported, not sent back: {stdout}");

    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();
    let dismissed = baton(home.path(), &["finding", "dismiss", &id, "f1", "--note", "style only", "--json"], &[]).await;
    assert!(dismissed.status.success(), "{}", String::from_utf8_lossy(&dismissed.stderr));
    let finding: Value = serde_json::from_slice(&dismissed.stdout).unwrap();
    assert_eq!((finding["status"].as_str(), finding["note"].as_str()), (Some("irrelevant"), Some("human: style only")));
    let shown = String::from_utf8(baton(home.path(), &["task", "show", &id], &[]).await.stdout).unwrap();
    assert!(
        shown.contains("finding f1 P3 Irrelevant: name the parameters x and y (calc.py:1-1) — human: style only"),
        "{shown}"
    );
    assert!(server.failures().is_empty(), "{:?}", server.failures());
}

/// `resume --all` after a restart: a task that cannot resume (its model's key is not set) is
/// reported by id, and the next one still runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_all_reports_a_task_that_cannot_resume_and_goes_on() {
    let repo = calc_repo();
    let server = ScriptedServer::start(fixing()).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo_arg = repo.path().display().to_string();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let mut ids = Vec::new();
    for model in ["openai-compatible/scripted", "anthropic/claude-sonnet-4-5"] {
        let args =
            ["task", "create", "--repo", &repo_arg, "--request", "Make add() add", "--check", "python3 test_calc.py"];
        let created =
            baton(home.path(), &[&args[..], &["--model", model, "--no-review", "--json"]].concat(), &env).await;
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
        ids.push(serde_json::from_slice::<Value>(&created.stdout).unwrap()["id"].as_str().unwrap().to_owned());
    }
    let output = baton(home.path(), &["resume", "--all"], &env).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("error: task {}:", ids[1])) && stderr.contains("ANTHROPIC_API_KEY"), "{stderr}");
    assert!(stderr.contains(&format!("1 of the interrupted tasks could not resume: {}", ids[1])), "{stderr}");
    let shown = baton(home.path(), &["task", "show", &ids[0], "--json"], &[]).await;
    let state: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(state["lifecycle"]["status"], "done", "the other task ran: {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_in_the_foreground_run_one_after_another_and_the_verified_one_is_picked() {
    let repo = calc_repo();
    let script = Script {
        turns: vec![
            call("f1", "finish", json!({"summary": "nothing"})),
            call("g1", "finish", json!({"summary": "still nothing"})),
            call("w2", "write_file", json!({"path": "ok", "content": "fine\n"})),
            call("f2", "finish", json!({"summary": "one line"})),
        ],
        ..Script::default()
    };
    let server = ScriptedServer::start(script).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    let repo_arg = repo.path().display().to_string();
    let args = [
        "run",
        "Make ok",
        "--repo",
        &repo_arg,
        "--check",
        "test -f ok",
        "--no-review",
        "--attempts",
        "2",
        "--max-steps",
        "4",
        "--model",
        "openai-compatible/scripted",
    ];
    let output = baton(home.path(), &args, &env).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("attempt-2 picked"), "{stdout}");
    assert!(server.failures().is_empty() && server.remaining_turns() == 0, "{:?}", server.failures());
    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let tasks: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let parent = tasks.as_array().unwrap().iter().find(|t| t["request"] == "Make ok").unwrap();
    let shown = baton(home.path(), &["task", "show", parent["id"].as_str().unwrap()], &[]).await;
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("picked   attempt-2") && shown.contains("1 files +1 -0"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handoff_limit_is_kept_with_the_task_and_a_resume_keeps_it() {
    let repo = calc_repo();
    // One answer long enough to fill the context: the next step is a handoff.
    let mut long = call("c1", "read_file", json!({"path": "calc.py"}));
    long.reply.text = Some("thinking aloud at length. ".repeat(800));
    let server = ScriptedServer::start(Script { turns: vec![long], ..Script::default() }).await.unwrap();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo_arg = repo.path().display().to_string();
    let env = [("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", server.url()))];
    // The smallest window there is.
    let run = fixing_run(&repo_arg, &["--context-window", "4096", "--max-handoffs", "0"]);
    let output = baton(home.path(), &run, &env).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"]["type"], "paused", "{stdout}");
    let detail = last["event"]["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("the limit of 0 handoffs is reached"), "{detail}");
    let listed = baton(home.path(), &["task", "list", "--json"], &[]).await;
    let id = serde_json::from_slice::<Value>(&listed.stdout).unwrap()[0]["id"].as_str().unwrap().to_owned();

    // Resumed without the flag, the task's own limit still holds.
    let output = baton(home.path(), &["resume", &id, "--json"], &env).await;
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"]["type"], "paused", "{stdout}");
    assert!(last["event"]["detail"].as_str().unwrap().starts_with("the limit of 0 handoffs is reached"), "{stdout}");
    assert_eq!(server.requests().len(), 1, "no handoff's summary was asked for");
}
