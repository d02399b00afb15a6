//! Environments' snapshots through the real path: `initialize` builds one per key, every task on
//! that environment stands on it read-only (the agent's machine and the clean one alike), a
//! changed input builds another, a failed setup pauses the task with its report, and services
//! declared in `startup` run in every session.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use baton_core::{CheckSpec, Event, Phase, Status, StopReason, TaskId};
use baton_engine::Snapshots;
use baton_sandbox::{EgressPolicy, SandboxConfig};
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Script, Turn};
use common::{Harness, call, turn};
use serde_json::json;

/// `initialize` copies the input `tools.txt` into the home; the check reads it from there.
const INITIALIZE: &str = "[environment]\ninitialize = \"mkdir -p ~/.local/share && cp tools.txt ~/.local/share/tools.txt\"\ninputs = [\"tools.txt\"]\n";

fn tools_repo() -> FixtureRepo {
    FixtureRepo::with_files(&[("tools.txt", "v1\n"), ("baton.toml", INITIALIZE), ("README", "tools\n")])
}

fn finish() -> Turn {
    turn(None, call("f", "finish", json!({"summary": "nothing to change"})))
}

fn expects(version: &str) -> impl FnOnce(&mut baton_core::TaskSpec) {
    let command = format!("grep -qx {version} ~/.local/share/tools.txt && echo 'all tests passed'");
    move |spec| spec.checks = vec![CheckSpec { name: "tools".into(), command, timeout_secs: 60 }]
}

async fn prepared(h: &Harness, id: &TaskId) -> Vec<String> {
    h.events_matching(id, |event| match event {
        Event::EnvironmentPrepared { detail, .. } => Some(detail),
        _ => None,
    })
    .await
}

fn snapshots(h: &Harness) -> Snapshots {
    let init = SandboxConfig::locate_init().unwrap();
    Snapshots::new(h.home.path(), SandboxConfig::new(init, h.home.path()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_on_one_environment_share_its_snapshot_and_a_changed_input_builds_another() {
    let turns = vec![
        // The agent's machine stands on the snapshot too; what it changes there is its own.
        turn(
            None,
            call(
                "s",
                "shell",
                json!({"command": "cat ~/.local/share/tools.txt; echo tampered > ~/.local/share/tools.txt"}),
            ),
        ),
        turn(Some("v1"), call("f", "finish", json!({"summary": "nothing to change"}))),
        finish(),
        finish(),
    ];
    let h = Harness::with_repo(Script { turns, ..Script::default() }, tools_repo()).await;

    let first = h.create_with(expects("v1")).await;
    let (state, kinds) = h.run(&first).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    let detail = prepared(&h, &first).await;
    assert!(detail.len() == 1 && detail[0].contains("built in"), "{detail:?}");
    let key = state.work.snapshot.clone().expect("the task names its snapshot");

    // The same environment: the snapshot is found, not built; the first agent's change is not in it.
    let second = h.create_with(expects("v1")).await;
    let (state, kinds) = h.run(&second).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    let detail = prepared(&h, &second).await;
    assert!(detail.len() == 1 && detail[0].contains(&format!("snapshot {} reused", &key[..12])), "{detail:?}");
    assert_eq!(state.work.snapshot.as_deref(), Some(key.as_str()));

    // A changed input is another environment: a new snapshot, with the new content.
    std::fs::write(h.repo.path().join("tools.txt"), "v2\n").unwrap();
    h.repo.commit("tools v2");
    let third = h.create_with(expects("v2")).await;
    let (state, kinds) = h.run(&third).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    let detail = prepared(&h, &third).await;
    assert!(detail.len() == 1 && detail[0].contains("built in"), "{detail:?}");
    assert_ne!(state.work.snapshot.as_deref(), Some(key.as_str()));
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
    let built: Vec<String> = snapshots(&h).list().unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(built.len(), 2, "{built:?}");
    assert!(built.contains(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_setup_pauses_the_task_with_its_report_and_a_rerun_keeps_the_cache() {
    let failing = "[environment]\ncache = [\"~/.cache/downloads\"]\ninitialize = [\n  \"test -e ~/.cache/downloads/big || { echo downloading; touch ~/.cache/downloads/big; }\",\n  \"echo the index is down >&2; exit 7\",\n]\n";
    let repo = FixtureRepo::with_files(&[("baton.toml", failing), ("README", "x\n")]);
    let h = Harness::with_repo(Script::default(), repo).await;
    let id = h.create().await;
    let mut details = Vec::new();
    for _ in 0..2 {
        let (state, kinds) = h.run(&id).await;
        assert_eq!(
            (state.status(), state.stop.as_ref().map(|s| s.reason)),
            (Status::Paused, Some(StopReason::EnvironmentError)),
            "{kinds:?}"
        );
        details.push(state.stop.unwrap().detail);
    }
    for detail in &details {
        assert!(detail.contains("`echo the index is down >&2; exit 7`: exit code 7"), "{detail}");
        assert!(detail.contains("the index is down"), "{detail}");
    }
    // Each step is reported with its output; the kept cache made the first step's work unnecessary
    // the second time.
    assert!(details[0].contains("output:\n    downloading"), "{}", details[0]);
    assert!(details[1].contains("big; }`: ok") && !details[1].contains("output:\n    downloading"), "{}", details[1]);
    assert!(h.server.requests().is_empty(), "no model call was made");
    assert!(snapshots(&h).list().unwrap().is_empty(), "a failed build left a snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_initialize_may_not_make_is_journaled_with_its_phase() {
    let reaching = "[environment]\ninitialize = \"python3 -c \\\"import urllib.request; urllib.request.urlopen('http://index.blocked.test/simple/')\\\" || true\"\n";
    let repo = FixtureRepo::with_files(&[("baton.toml", reaching), ("README", "x\n")]);
    let mut h = Harness::with_repo(Script { turns: vec![finish()], ..Script::default() }, repo).await;
    h.network = Some(EgressPolicy { allow: vec!["pypi.example.test".into()], resolve: Vec::new() });
    let id = h.create_with(|spec| spec.checks[0].command = "echo all tests passed".into()).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    let refused: Vec<(String, u16, Phase)> = h
        .events_matching(&id, |event| match event {
            Event::ConnectionRefused { host, port, phase } => Some((host, port, phase)),
            _ => None,
        })
        .await;
    assert_eq!(refused, [("index.blocked.test".to_owned(), 80, Phase::Initialize)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_services_run_in_every_session_and_one_that_never_gets_ready_stops_the_checks() {
    let serve = "[[environment.startup]]\ncommand = \"python3 -m http.server 8765 --bind 127.0.0.1\"\nready = \"python3 -c 'import urllib.request; urllib.request.urlopen(\\\"http://127.0.0.1:8765/\\\")'\"\ntimeout_secs = 20\n";
    let fetch = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8765/README').read().decode())\"";
    let repo = FixtureRepo::with_files(&[("baton.toml", serve), ("README", "served by the startup service\n")]);
    let turns = vec![
        turn(None, call("s", "shell", json!({"command": fetch}))),
        turn(Some("served by the startup service"), call("f", "finish", json!({"summary": "served"}))),
    ];
    let h = Harness::with_repo(Script { turns, ..Script::default() }, repo).await;
    let command = format!("{fetch} && echo all tests passed");
    let id = h.create_with(|spec| spec.checks[0].command = command).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::Verified), "{kinds:?} {:?}", state.stop);
    assert!(state.work.last_checks[0].output.contains("served by the startup service"));
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());

    let never = "[[environment.startup]]\ncommand = \"sleep 600\"\nready = \"false\"\ntimeout_secs = 1\n";
    let repo = FixtureRepo::with_files(&[("baton.toml", never), ("README", "x\n")]);
    let turns = vec![
        turn(None, call("s", "shell", json!({"command": "echo hello"}))),
        turn(Some("startup `sleep 600` was not ready after 1 s"), call("f", "finish", json!({"summary": "x"}))),
    ];
    let h = Harness::with_repo(Script { turns, ..Script::default() }, repo).await;
    let id = h.create_with(|spec| spec.checks[0].command = "echo all tests passed".into()).await;
    let (state, kinds) = h.run(&id).await;
    assert_eq!(state.stop.as_ref().map(|s| s.reason), Some(StopReason::EnvironmentError), "{kinds:?}");
    assert!(state.stop.unwrap().detail.contains("was not ready after 1 s"));
    assert!(h.server.failures().is_empty(), "{:?}", h.server.failures());
}
