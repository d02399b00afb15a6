//! Outgoing notifications from a real `baton serve`: receivers on loopback get signed payloads for
//! a task that waits for a person and then finishes, and verify them with the generic hook
//! dialect; a receiver that fails twice then succeeds gets the event exactly once; the log says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use baton_core::HookKind;
use baton_testkit::model::{Expect, Script, ScriptedServer};
use common::served::{baton, reaching, serve};
use serde_json::{Value, json};

const SECRET: &str = "a-secret-both-sides-know";

/// What a receiver accepted: (event header, delivery header, payload), each verified.
#[derive(Default)]
struct Received {
    accepted: Vec<(String, String, Value)>,
    /// Requests the flaky receiver turned away.
    refused: usize,
    /// Requests whose signature did not verify.
    forged: usize,
}

async fn receiver(received: Arc<Mutex<Received>>, fail_first: usize) -> String {
    let handle = move |headers: HeaderMap, body: axum::body::Bytes| {
        let received = received.clone();
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
            let mut received = received.lock().unwrap();
            if baton_hooks::verify(HookKind::Generic, SECRET.as_bytes(), &header, &body, now).is_err() {
                received.forged += 1;
                return StatusCode::UNAUTHORIZED;
            }
            if received.refused < fail_first {
                received.refused += 1;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let payload: Value = serde_json::from_slice(&body).unwrap();
            received.accepted.push((header("x-baton-event").unwrap(), header("x-baton-delivery").unwrap(), payload));
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/", axum::routing::post(handle));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn subscribe(home: &std::path::Path, name: &str, url: &str, events: &[&str]) {
    let mut command = baton(home);
    command
        .args(["notify", "add", "--name", name, "--url", url, "--secret-env", "HOOK_SECRET"])
        .env("HOOK_SECRET", SECRET);
    for event in events {
        command.args(["--event", event]);
    }
    let made = command.output().unwrap();
    assert!(made.status.success(), "{}", common::describe(&made));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_get_signed_notices_once_each_even_after_failing_twice() {
    let call = common::call;
    let ask = call("q", "ask_human", json!({"question": "Add or subtract?", "options": ["add"], "why": "unclear"}));
    let mut answered = call("f", "finish", json!({"summary": "asked"}));
    answered.expect = Expect { last_tool_result_contains: Some("The human answered: add".into()), ..Expect::default() };
    let model = ScriptedServer::start(Script { turns: vec![ask, answered], ..Script::default() }).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path()).unwrap();
    std::fs::write(home.path().join("config.toml"), "").unwrap();

    let steady = Arc::new(Mutex::new(Received::default()));
    let flaky = Arc::new(Mutex::new(Received::default()));
    subscribe(home.path(), "ops", &receiver(steady.clone(), 0).await, &[]);
    subscribe(home.path(), "flaky", &receiver(flaky.clone(), 2).await, &["finished"]);
    let listed = baton(home.path()).args(["notify", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("(task.finished; active)"));
    // A receiver nobody listens on: `notify test` says it could not reach it.
    let refused = baton(home.path()).args(["notify", "add", "--name", "bad", "--url", "ftp://x"]).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not an http:// or https:// address"));

    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Make add() add", "repo": repo.path(), "checks": ["true"], "review": false});
    let id = served.create(&body).await;
    let waiting = reaching(&http, api(&format!("/tasks/{id}")), "waiting").await;
    let decision = waiting["decision"].as_str().unwrap();
    let answered = http
        .post(api(&format!("/tasks/{id}/decisions/{decision}")))
        .json(&json!({"answer": "add"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    reaching(&http, api(&format!("/tasks/{id}")), "done").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while steady.lock().unwrap().accepted.len() < 2 || flaky.lock().unwrap().accepted.is_empty() {
        assert!(Instant::now() < deadline, "notifications never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives later: each notice once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let steady = steady.lock().unwrap();
    let events: Vec<&str> = steady.accepted.iter().map(|(event, _, _)| event.as_str()).collect();
    assert_eq!(events, ["task.waiting", "task.finished"]);
    let (_, _, waiting) = &steady.accepted[0];
    assert_eq!(waiting["task"]["id"], id.as_str());
    assert_eq!(waiting["detail"], "Add or subtract?");
    let (_, _, finished) = &steady.accepted[1];
    assert_eq!(
        (finished["task"]["status"].as_str(), finished["task"]["stop_reason"].as_str()),
        (Some("done"), Some("verified"))
    );
    assert_eq!(steady.forged, 0);
    let flaky = flaky.lock().unwrap();
    assert_eq!((flaky.refused, flaky.accepted.len(), flaky.forged), (2, 1, 0), "failed twice, then got it once");
    assert_eq!(flaky.accepted[0].0, "task.finished");
    assert_eq!(flaky.accepted[0].2, *finished, "the same payload to both");

    let log = baton(home.path()).args(["--json", "notify", "log", "flaky"]).output().unwrap();
    let log: Vec<Value> = serde_json::from_slice(&log.stdout).unwrap();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!((log[0]["state"].as_str(), log[0]["attempts"].as_u64()), (Some("delivered"), Some(3)), "{log:#?}");
    assert!(log[0]["last_error"].as_str().unwrap().contains("503"), "{log:#?}");
    // A test notification reaches the receiver, signed like the rest.
    drop((steady, flaky));
    let tested = baton(home.path()).args(["notify", "test", "ops"]).output().unwrap();
    assert!(tested.status.success(), "{}", common::describe(&tested));
}
