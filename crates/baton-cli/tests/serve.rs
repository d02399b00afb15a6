//! `baton serve` as a real process on loopback: tasks created over its API run in the background at
//! most `--slots` at a time and end verified; a task's event stream resumes exactly after a
//! reconnect with `Last-Event-ID`; bad requests get a JSON error with the right status. Real path:
//! the baton binary, HTTP, SQLite, the sandbox (root), the scripted model.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use baton_testkit::model::{Expect, Reply, Rule, Script, ScriptedServer, ToolCall, Turn, Usage};
use common::served::{Served, baton, client_with, reaching, save_template, serve, serve_with, token};
use serde_json::{Value, json};

/// Every request is answered with a `finish` after a pause, so tasks overlap if they may.
fn finishing() -> Script {
    finishing_after(400)
}

fn finishing_after(ms: u64) -> Script {
    let finish = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "done"}).to_string() };
    // What a provider would report, for the token counters.
    let usage = Usage { input: 1200, output: 30, ..Usage::default() };
    let reply = Reply { tool_calls: vec![finish], delay_ms: Some(ms), usage, ..Reply::default() };
    Script { rules: vec![Rule { when: Expect::default(), reply }], ..Script::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_created_over_the_api_run_two_at_a_time_and_their_streams_resume_exactly() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "2");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    let health: Value = http.get(api("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({"status": "ok"}));

    let mut ids = Vec::new();
    for n in 0..6 {
        let body = json!({"request": format!("task {n}"), "repo": repo.path(), "checks": ["true"], "review": false});
        let response = http.post(api("/tasks")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let task: Value = response.json().await.unwrap();
        assert_eq!(task["status"], "queued");
        ids.push(task["id"].as_str().unwrap().to_owned());
    }

    // Follow the first task live: take its first three events, drop the connection, reconnect.
    let stream = |after: Option<u64>| {
        let mut request = http.get(api(&format!("/tasks/{}/events/stream", ids[0])));
        if let Some(seq) = after {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        request.send()
    };
    let mut seen = sse_ids(stream(None).await.unwrap(), Some(3)).await;
    let last = *seen.last().unwrap();
    seen.extend(sse_ids(stream(Some(last)).await.unwrap(), None).await);

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut views = Vec::new();
    for id in &ids {
        loop {
            let task: Value = http.get(api(&format!("/tasks/{id}"))).send().await.unwrap().json().await.unwrap();
            if task["status"] == "done" || task["status"] == "failed" || task["status"] == "paused" {
                views.push(task);
                break;
            }
            assert!(Instant::now() < deadline, "task {id} did not end: {task}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for task in &views {
        assert_eq!(
            (task["status"].as_str(), task["stop"]["reason"].as_str()),
            (Some("done"), Some("verified")),
            "{task}"
        );
    }

    // The stream gave every event of the first task once, in order, and ended with the task.
    let page: Value = http.get(api(&format!("/tasks/{}/events", ids[0]))).send().await.unwrap().json().await.unwrap();
    let journal: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seen, journal, "every event once, in order, across the reconnect");
    let after: Value =
        http.get(api(&format!("/tasks/{}/events?after=2", ids[0]))).send().await.unwrap().json().await.unwrap();
    assert_eq!(after["events"][0]["seq"], 3);

    // Never more than two at once, and the slots were used: from each journal, started to finished.
    let mut spans = Vec::new();
    for id in &ids {
        spans.push(span(&served, id).await);
    }
    assert_eq!(most_at_once(&spans), 2, "{spans:?}");

    let listed: Value = http.get(api("/tasks?status=done")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 6);

    // A run's thread lets its slot go just after the task's last event: wait for the slots to empty.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = http.get(format!("{}/metrics", served.url)).send().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l == "baton_slots_busy 0") || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        "baton_tasks{status=\"done\"} 6",
        "baton_tasks{status=\"running\"} 0",
        "baton_slots 2",
        "baton_slots_busy 0",
        "baton_queue_depth 0",
        "baton_runs_started_total 6",
        "baton_model_calls_total{model=\"openai-compatible/scripted\"} 6",
        // One step each, ended by the checks.
        "baton_step_seconds_count 6",
        "baton_step_seconds_bucket{le=\"+Inf\"} 6",
        "baton_model_tokens_total{model=\"openai-compatible/scripted\",kind=\"input\"} 7200",
        "baton_model_tokens_total{model=\"openai-compatible/scripted\",kind=\"output\"} 180",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from:\n{metrics}");
    }
    let output = metrics
        .lines()
        .find(|l| l.starts_with("baton_model_tokens_total{model=\"openai-compatible/scripted\",kind=\"output\"}"));
    assert!(output.is_some_and(|line| !line.ends_with(" 0")), "{metrics}");
}

/// The `id:` of each event of an SSE response, stopping after `count` when given (the connection
/// is then dropped) or at the end of the stream.
async fn sse_ids(response: reqwest::Response, count: Option<usize>) -> Vec<u64> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let (mut ids, mut buffer) = (Vec::new(), String::new());
    while let Some(chunk) = response.chunk().await.unwrap() {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            if let Some(id) = line.trim_end().strip_prefix("id: ").or_else(|| line.trim_end().strip_prefix("id:")) {
                ids.push(id.trim().parse().unwrap());
                if Some(ids.len()) == count {
                    return ids;
                }
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_json_error_with_the_right_status_and_no_task() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let error = |value: &Value| {
        (value["error"]["code"].as_str().unwrap().to_owned(), value["error"]["message"].as_str().unwrap().to_owned())
    };

    let cases = [
        (
            json!({"request": "x", "repo": repo.path(), "checks": ["true"], "colour": "red"}),
            400,
            "invalid_json",
            "unknown field `colour`",
        ),
        (json!({"request": "x", "repo": repo.path(), "checks": []}), 422, "invalid_task", "at least one check"),
        (json!({"request": "x", "repo": "/no/such/repo", "checks": ["true"]}), 422, "invalid_task", "/no/such/repo"),
        (json!({"request": " ", "repo": repo.path(), "checks": ["true"]}), 422, "invalid_task", "the request is empty"),
        (
            json!({"request": "x", "repo": repo.path(), "checks": ["true"], "budget": "lots"}),
            422,
            "invalid_task",
            "budget",
        ),
    ];
    for (body, status, code, says) in cases {
        let response = http.post(api("/tasks")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), status, "{body}");
        let (got, message) = error(&response.json().await.unwrap());
        assert_eq!(got, code, "{body}");
        assert!(message.contains(says), "{message}");
    }
    let garbage = http.post(api("/tasks")).body("{not json").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    let listed: Value = http.get(api("/tasks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["tasks"], json!([]), "nothing was created");

    let missing = http.get(api("/tasks/000000000000")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(error(&missing.json().await.unwrap()).0, "not_found");
    let status = http.get(api("/tasks?status=sleeping")).send().await.unwrap();
    assert_eq!(status.status(), 400);
    let nowhere = http.get(api("/nowhere")).send().await.unwrap();
    assert_eq!((nowhere.status().as_u16(), error(&nowhere.json().await.unwrap()).0), (404, "not_found".to_owned()));
    let bad_id =
        http.get(api("/tasks/000000000000/events/stream")).header("Last-Event-ID", "soon").send().await.unwrap();
    assert_eq!(bad_id.status(), 404, "an unknown task is named before its header is read");
}

/// Steps of each task in the kill test.
const STEPS: usize = 4;

/// Task `n`'s script as rules: its request opens step 1; the output of step k opens step k + 1;
/// after the last, `finish`. Each step appends its mark to the task's own /root/marker.
fn marking(tasks: usize) -> Script {
    // Long enough that all eight run at once even when the machine is busy with other tests. The
    // marker is kept out of the worktree, the progress note is work on the branch.
    let command =
        |n, k| format!("sleep 1.5; echo mark-{n}-{k} >> /root/marker; echo {k} >> progress; echo ran-{n}-{k}");
    common::stepping(tasks, STEPS, |n| format!("marking task {n}."), command)
}

/// When a verified task started and finished, from its journal.
async fn span(served: &Served, id: &str) -> (i64, i64) {
    let url = format!("{}/api/v1/tasks/{id}/events", served.url);
    let page: Value = served.http().get(url).send().await.unwrap().json().await.unwrap();
    let events = page["events"].as_array().unwrap();
    let at = |kind: &str| events.iter().find(|e| e["event"]["type"] == kind).unwrap()["at"].as_i64().unwrap();
    assert_eq!(events.last().unwrap()["event"]["reason"], "verified", "{id}");
    (at("started"), at("finished"))
}

/// The most of `spans` that overlap at any one moment.
fn most_at_once(spans: &[(i64, i64)]) -> usize {
    spans.iter().map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start < e).count()).max().unwrap_or(0)
}

/// Creates `count` tasks of [`marking`] on `served`; their ids, once every one is running past its
/// first step.
async fn marking_under_way(served: &Served, repo: &std::path::Path, count: usize) -> Vec<String> {
    let http = served.http();
    let mut ids = Vec::new();
    for n in 0..count {
        let body = json!({"request": format!("marking task {n}."), "repo": repo, "checks": ["true"], "review": false});
        let task: Value =
            http.post(format!("{}/api/v1/tasks", served.url)).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed: Value =
            http.get(format!("{}/api/v1/tasks?status=running", served.url)).send().await.unwrap().json().await.unwrap();
        let running = listed["tasks"].as_array().unwrap();
        if running.len() == count && running.iter().all(|t| t["next_seq"].as_u64().unwrap() > 8) {
            return ids;
        }
        if Instant::now() > deadline {
            let mut timeline = String::new();
            for id in &ids {
                let page: Value = http
                    .get(format!("{}/api/v1/tasks/{id}/events", served.url))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let events: Vec<String> = page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        format!("{}@{}", e["event"]["type"].as_str().unwrap(), e["at"].as_i64().unwrap() % 1_000_000)
                    })
                    .collect();
                timeline.push_str(&format!("{id}: {}\n", events.join(" ")));
            }
            panic!("the tasks did not all start:\n{timeline}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The marks a [`marking`] task's commands left outside its worktree, one line each.
fn marks(home: &std::path::Path, id: &str) -> String {
    let layout = baton_engine::TaskLayout::of(home, &baton_core::TaskId::parse(id).unwrap());
    let disk = layout.attach_disk(None).unwrap();
    let marks = std::fs::read_to_string(layout.layer().join("hidden/root/marker")).unwrap_or_default();
    drop(disk);
    marks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_eight_tasks_running_is_restarted_and_every_task_ends_verified_without_repeats() {
    let model = ScriptedServer::start(marking(8)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let served = serve(home.path(), &model, "8");
    let http = served.http();
    // Every task past its first step, none finished: then the server dies.
    let ids = marking_under_way(&served, repo.path(), 8).await;
    let old_url = served.url.clone();
    served.kill();

    let served = serve(home.path(), &model, "8");
    assert_ne!(served.url, old_url, "a fresh process on a fresh port");
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in &ids {
        loop {
            let task: Value =
                http.get(format!("{}/api/v1/tasks/{id}", served.url)).send().await.unwrap().json().await.unwrap();
            if task["status"] != "running" && task["status"] != "queued" && task["status"] != "verifying" {
                assert_eq!(
                    (task["status"].as_str(), task["stop"]["reason"].as_str()),
                    (Some("done"), Some("verified")),
                    "{task}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "task {id} did not end after the restart: {task}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(served);
    for (n, id) in ids.iter().enumerate() {
        let marks = marks(home.path(), id);
        for k in 1..=STEPS {
            let count = marks.lines().filter(|l| *l == format!("mark-{n}-{k}")).count();
            assert!(count <= 1, "task {n}: step {k} ran {count} times:\n{marks}");
        }
        assert!(marks.lines().count() >= STEPS - 1, "task {n} did its steps:\n{marks}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_on_four_slots_all_end_verified_and_a_hundred_subscribers_each_see_every_event() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir_all(home.path()).unwrap();
    std::fs::write(home.path().join("config.toml"), "").unwrap();
    // Two owners share the queue, at most three of one owner's at once; Alice's last is urgent.
    let owners = ["alice", "bob"].map(|name| (name, client_with(&token(home.path(), name, "write"))));
    let alices = |n: &usize| *n % 5 < 3 || *n == 49;
    let served = serve_with(home.path(), &model, &["--slots", "4", "--per-owner", "3"]);
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let mut ids = Vec::new();
    for n in 0..50 {
        let (owner, client) = if alices(&n) { &owners[0] } else { &owners[1] };
        let priority = if n == 49 { 10 } else { 0 };
        let body = json!({
            "request": format!("task {n}"), "repo": repo.path(), "checks": ["true"], "review": false,
            "priority": priority,
        });
        let task: Value = client.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(task["owner"], *owner, "{task}");
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    // A hundred subscribers to the urgent task, from its start.
    let subscribers: Vec<_> = (0..100)
        .map(|_| {
            let request = http.get(api(&format!("/tasks/{}/events/stream", ids[49])));
            tokio::spawn(async move { sse_ids(request.send().await.unwrap(), None).await })
        })
        .collect();
    let mut seen = Vec::new();
    for subscriber in subscribers {
        seen.push(tokio::time::timeout(Duration::from_secs(300), subscriber).await.unwrap().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done: Value = http.get(api("/tasks?status=done")).send().await.unwrap().json().await.unwrap();
        if done["tasks"].as_array().unwrap().len() == 50 {
            break;
        }
        // A task that stopped will not end verified: say which at once.
        for status in ["paused", "failed", "cancelled", "waiting"] {
            let stopped: Value =
                http.get(api(&format!("/tasks?status={status}"))).send().await.unwrap().json().await.unwrap();
            assert_eq!(stopped["tasks"].as_array().unwrap().len(), 0, "a task is {status}: {stopped}");
        }
        assert!(Instant::now() < deadline, "not all 50 ended verified: {done}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page: Value = http.get(api(&format!("/tasks/{}/events", ids[49]))).send().await.unwrap().json().await.unwrap();
    let journal: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seen.iter().all(|ids| *ids == journal), "every subscriber saw every event once, in order");

    let mut spans = Vec::new();
    for id in &ids {
        spans.push(span(&served, id).await);
    }
    assert_eq!(most_at_once(&spans), 4, "never more than four at once, and four reached: {spans:?}");
    // The owners take turns, two slots each, while both have tasks queued; once Bob's run out,
    // Alice's limit leaves a slot free.
    let of = |alice: bool| -> Vec<(i64, i64)> { (0..50).filter(|n| alices(n) == alice).map(|n| spans[n]).collect() };
    assert_eq!(most_at_once(&of(true)), 3, "Alice: never more than three at once, and three reached");
    assert!(most_at_once(&of(false)) <= 3, "Bob: never more than three at once");
    // The urgent task overtook the queue it found, though its owner had had more turns: of the
    // tasks still waiting when it came, no more started before it than a scheduler round already
    // under way could start (the four slots).
    let urgent = http.get(api(&format!("/tasks/{}", ids[49]))).send().await.unwrap().json::<Value>().await.unwrap();
    let arrived = urgent["created_at"].as_i64().unwrap();
    let waiting: Vec<i64> = spans[..49].iter().map(|(start, _)| *start).filter(|start| *start > arrived).collect();
    let ahead = waiting.iter().filter(|start| **start < spans[49].0).count();
    assert!(waiting.len() >= 20, "the queue was long when it came: {} waiting", waiting.len());
    assert!(ahead <= 4, "{ahead} of the {} waiting tasks started before the urgent one", waiting.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_task_resumes_over_the_api_and_its_diff_is_served() {
    use baton_testkit::model::Fault;
    let call = common::call;
    let mut edit = call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}));
    // The provider refuses the first request for good: the task pauses as model_error.
    edit.faults = vec![Fault::Status { status: 400, retry_after: None, message: Some("bad request, for once".into()) }];
    let script =
        Script { turns: vec![edit, call("f", "finish", json!({"summary": "add() adds"}))], ..Script::default() };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body =
        json!({"request": "Make add() add", "repo": repo.path(), "checks": ["python3 test_calc.py"], "review": false});
    let task: Value = http.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let until = |wanted: &'static str| reaching(&http, api(&format!("/tasks/{id}")), wanted);
    let paused = until("paused").await;
    assert_eq!(paused["stop"]["reason"], "model_error", "{paused}");
    let diff = http.get(api(&format!("/tasks/{id}/diff"))).send().await.unwrap();
    assert_eq!(diff.status(), 200);
    assert_eq!(diff.text().await.unwrap(), "", "nothing changed yet");

    let resumed = http.post(api(&format!("/tasks/{id}/resume"))).send().await.unwrap();
    assert_eq!(resumed.status(), 200);
    let done = until("done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    // The agent's worktree is its own to write: a `.git` of its making there (a repository whose
    // history says something else, with a textconv driver that would run a command) changes
    // nothing of what is served, which comes from the user's repository alone.
    let layout = baton_engine::TaskLayout::of(home.path(), &baton_core::TaskId::parse(&id).unwrap());
    let disk = layout.attach_disk(None).unwrap();
    let worktree = layout.worktree();
    std::fs::remove_file(worktree.join(".git")).unwrap();
    baton_testkit::git(&worktree, &["init", "-q"]);
    std::fs::write(worktree.join("calc.py"), "FAKE\n").unwrap();
    std::fs::write(worktree.join(".gitattributes"), "* diff=evil\n").unwrap();
    baton_testkit::git(&worktree, &["config", "diff.evil.textconv", "touch /tmp/baton-textconv-ran; cat"]);
    baton_testkit::git(&worktree, &["add", "-A"]);
    baton_testkit::git(&worktree, &["commit", "-qm", "fake"]);
    drop(disk);
    let diff = http.get(api(&format!("/tasks/{id}/diff"))).send().await.unwrap();
    assert_eq!(diff.headers()["content-type"], "text/x-diff; charset=utf-8");
    let text = diff.text().await.unwrap();
    assert!(text.contains("+    return a + b") && !text.contains("FAKE"), "{text}");
    assert!(!std::path::Path::new("/tmp/baton-textconv-ran").exists(), "no command of the worktree's ran");

    let again = http.post(api(&format!("/tasks/{id}/resume"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["message"], format!("task {id} is done; only a paused task resumes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_task_overtakes_the_queue() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let mut ids = Vec::new();
    for (n, priority) in [0, 0, 0, 0, 10].into_iter().enumerate() {
        let body = json!({"request": format!("task {n}"), "repo": repo.path(), "checks": ["true"], "review": false, "priority": priority});
        let task: Value = http.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(task["priority"], priority);
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut started = Vec::new();
    for id in &ids {
        loop {
            let page: Value = http.get(api(&format!("/tasks/{id}/events"))).send().await.unwrap().json().await.unwrap();
            let events = page["events"].as_array().unwrap();
            if events.iter().any(|e| e["event"]["type"] == "finished") {
                started.push(events.iter().find(|e| e["event"]["type"] == "started").unwrap()["at"].as_i64().unwrap());
                break;
            }
            assert!(Instant::now() < deadline, "task {id} did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The first task took the one slot at once; the last one, created last but ranked higher, ran
    // before the three that waited with it.
    assert!(started[1..4].iter().all(|at| started[4] < *at), "{started:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_and_a_queued_one_are_cancelled_and_their_machines_go() {
    let model = ScriptedServer::start(finishing_after(3000)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let create = |n: usize| {
        let body = json!({"request": format!("task {n}"), "repo": repo.path(), "checks": ["true"], "review": false});
        http.post(api("/tasks")).json(&body).send()
    };
    let running: Value = create(0).await.unwrap().json().await.unwrap();
    let queued: Value = create(1).await.unwrap().json().await.unwrap();
    let (running, queued) = (running["id"].as_str().unwrap().to_owned(), queued["id"].as_str().unwrap().to_owned());
    let events = |id: &str| {
        let request = http.get(api(&format!("/tasks/{id}/events")));
        async move {
            let page: Value = request.send().await.unwrap().json().await.unwrap();
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event"]["type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // The first task is inside its model call (the model takes 3 s) when it is cancelled.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events(&running).await.contains(&"model_call_started".to_owned()) {
        assert!(Instant::now() < deadline, "the first task never called the model");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worktree =
        |id: &str| baton_engine::TaskLayout::of(home.path(), &baton_core::TaskId::parse(id).unwrap()).worktree();
    for id in [&queued, &running] {
        let response =
            http.post(api(&format!("/tasks/{id}/cancel"))).json(&json!({"reason": "not needed"})).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let task: Value = response.json().await.unwrap();
        assert_eq!((task["status"].as_str(), task["stop"]["detail"].as_str()), (Some("cancelled"), Some("not needed")));
    }
    // The run stops at its next write; then its machine goes. The queued one never started.
    let deadline = Instant::now() + Duration::from_secs(60);
    while worktree(&running).exists() {
        assert!(Instant::now() < deadline, "the cancelled task's worktree is still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(events(&running).await.last().map(String::as_str), Some("cancelled"), "nothing written after");
    assert_eq!(events(&queued).await, ["task_created", "cancelled"]);
    assert!(!worktree(&queued).exists());
    let again = http.post(api(&format!("/tasks/{running}/cancel"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
    let branch = repo.git(&["branch", "--list", "baton/*"]);
    assert_eq!(branch.lines().count(), 1, "the running task's branch is kept: {branch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_is_answered_over_the_api_and_the_task_shows_its_ledger_legs_money_and_findings() {
    let call = common::call;
    let plan = call(
        "p",
        "update_plan",
        json!({"steps": [{"title": "read calc.py", "status": "done"}, {"title": "fix add", "status": "in_progress"}]}),
    );
    let nit = json!({"findings": [{"title": "name the parameters x and y", "body": "style", "severity": "P3",
        "confidence": 40, "file": "calc.py", "start_line": 1, "end_line": 1}]});
    let ask = call(
        "q",
        "ask_human",
        json!({"question": "Add or subtract?", "options": ["add", "subtract"], "why": "the name says add"}),
    );
    let mut answered = call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}));
    answered.expect =
        Expect { last_tool_result_contains: Some("The human answered: add, of course".into()), ..Expect::default() };
    let script = Script {
        turns: vec![
            plan,
            call("r", "read_file", json!({"path": "calc.py"})),
            ask,
            answered,
            call("f", "finish", json!({"summary": "add() adds"})),
            call("n", "report_findings", nit),
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Make add() add", "repo": repo.path(), "checks": ["python3 test_calc.py"],
        "max_steps": 20, "window_secs": 600});
    let task: Value = http.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let until = |wanted: &'static str| reaching(&http, api(&format!("/tasks/{id}")), wanted);
    let waiting = until("waiting").await;
    assert!(waiting["question"].as_str().unwrap().contains("Add or subtract?"), "{waiting}");
    let decision = waiting["decision"].as_str().unwrap().to_owned();

    let wrong =
        http.post(api(&format!("/tasks/{id}/decisions/nope"))).json(&json!({"answer": "add"})).send().await.unwrap();
    assert_eq!(wrong.status(), 409);
    let bad = http
        .post(api(&format!("/tasks/{id}/decisions/{decision}")))
        .json(&json!({"answr": "add"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let answered = http
        .post(api(&format!("/tasks/{id}/decisions/{decision}")))
        .json(&json!({"answer": "add, of course"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let done = until("done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    assert!(model.failures().is_empty(), "{:?}", model.failures());

    // The task as the API shows it: its ledger, legs, decisions, findings and money.
    let plan: Vec<(&str, &str)> = done["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| (step["title"].as_str().unwrap(), step["status"].as_str().unwrap()))
        .collect();
    assert_eq!(plan, [("read calc.py", "done"), ("fix add", "in_progress")], "{done}");
    assert_eq!(done["files_read"], json!(["calc.py"]), "{done}");
    let roles: Vec<&Value> = done["legs"].as_array().unwrap().iter().map(|leg| &leg["role"]).collect();
    assert_eq!(roles, ["build", "review"], "{done}");
    assert_eq!(done["legs"][1]["steps_before"], 5, "the review leg began after five build steps: {done}");
    let decision = &done["decisions"][0];
    assert_eq!(
        (&decision["kind"], &decision["answer"], &decision["approved"]),
        (&json!("ask"), &json!("add, of course"), &json!(true)),
        "{done}"
    );
    let finding = &done["findings"][0];
    assert_eq!(
        (&finding["severity"], &finding["status"], &finding["first_line"]),
        (&json!("P3"), &json!("open"), &json!(1))
    );
    assert_eq!((&done["money"]["limit_steps"], &done["money"]["limit_window_secs"]), (&json!(20), &json!(600)));
    assert_eq!(done["money"]["held"], "0.00", "nothing is held once it ended: {done}");
    assert!(done["money"]["by_kind"].is_object(), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_queued_with_run_detach_is_run_by_the_server_on_the_same_home() {
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let repo_path = repo.path().display().to_string();
    let args = ["run", "Make it so", "--repo", &repo_path, "--check", "true", "--no-review", "--detach"];
    let output = baton(home.path())
        .args(args)
        .args(["--model", "openai-compatible/scripted"])
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::describe(&output));
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 12, "{id}");
    let http = served.http();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task: Value =
            http.get(format!("{}/api/v1/tasks/{id}", served.url)).send().await.unwrap().json().await.unwrap();
        if task["status"] == "done" {
            assert_eq!(task["stop"]["reason"], "verified");
            break;
        }
        assert!(Instant::now() < deadline, "the server never ran the detached task: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_stream_of_all_tasks_shows_each_change_once() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let mut stream = http.get(format!("{}/api/v1/events/stream", served.url)).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let body = json!({"request": "watched", "repo": repo.path(), "checks": ["true"], "review": false});
    let task: Value =
        http.post(format!("{}/api/v1/tasks", served.url)).json(&body).send().await.unwrap().json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    let (mut statuses, mut buffer) = (Vec::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while statuses.last().map(String::as_str) != Some("done") {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk())
            .await
            .expect("the stream went quiet")
            .unwrap()
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            if let Some(data) = line.trim_end().strip_prefix("data: ").or_else(|| line.trim_end().strip_prefix("data:"))
            {
                let summary: Value = serde_json::from_str(data.trim()).unwrap();
                if summary["id"] == id.as_str() {
                    statuses.push(summary["status"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    // Each change once, in the order the task went through them (a change faster than the stream
    // looks can be merged into the next).
    let order = ["queued", "running", "verifying", "reviewing", "done"];
    let ranks: Vec<usize> = statuses.iter().map(|s| order.iter().position(|o| o == s).unwrap()).collect();
    assert!(ranks.windows(2).all(|pair| pair[0] < pair[1]), "{statuses:?}");
    assert!(statuses.len() >= 2, "the stream saw the task before it ended: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_slots_run_eight_tasks_at_once_while_their_commands_block() {
    // Each task's one command blocks its run's thread for 3 s. All eight must be inside it together:
    // a blocked run may not keep the store's shared connections from the others or the scheduler.
    let shell = ToolCall {
        id: "s".into(),
        name: "shell".into(),
        arguments: json!({"command": "sleep 3; echo slept"}).to_string(),
    };
    let finish = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "slept"}).to_string() };
    let rules = vec![
        Rule {
            when: Expect { body_contains: Some("slept".into()), ..Expect::default() },
            reply: Reply { tool_calls: vec![finish], ..Reply::default() },
        },
        Rule { when: Expect::default(), reply: Reply { tool_calls: vec![shell], ..Reply::default() } },
    ];
    let model = ScriptedServer::start(Script { rules, ..Script::default() }).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let served = serve(home.path(), &model, "8");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let mut ids = Vec::new();
    for n in 0..8 {
        let body =
            json!({"request": format!("sleeping task {n}"), "repo": repo.path(), "checks": ["true"], "review": false});
        let task: Value = http.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for id in &ids {
        loop {
            let page: Value = http.get(api(&format!("/tasks/{id}/events"))).send().await.unwrap().json().await.unwrap();
            let events = page["events"].as_array().unwrap();
            let at = |kind: &str| events.iter().find(|e| e["event"]["type"] == kind).map(|e| e["at"].as_i64().unwrap());
            if let (Some(start), Some(end), Some(_)) =
                (at("tool_call_started"), at("tool_call_finished"), at("finished"))
            {
                starts.push(start);
                ends.push(end);
                break;
            }
            assert!(Instant::now() < deadline, "task {id} did not end");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (last_start, first_end) = (starts.iter().max().unwrap(), ends.iter().min().unwrap());
    assert!(last_start < first_end, "every command started before any ended: starts {starts:?}, ends {ends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_needs_a_token_whose_scope_covers_it_and_no_secret_is_kept_or_printed() {
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), "").unwrap();

    // Without a token there is nothing a server could answer: it refuses to start.
    let refused = baton(home.path()).args(["serve", "--addr", "127.0.0.1:0"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no active token"), "{}", common::describe(&refused));
    // Open (no tokens) beyond loopback is refused too; 0.0.0.0 is only bound, never reached.
    let open = baton(home.path()).args(["serve", "--addr", "0.0.0.0:0", "--no-auth"]).output().unwrap();
    assert!(!open.status.success());
    assert!(String::from_utf8_lossy(&open.stderr).contains("not a loopback address"), "{}", common::describe(&open));

    let reader = token(home.path(), "reader", "read");
    let writer = token(home.path(), "writer", "write");
    let served = serve_with(home.path(), &model, &["--slots", "1"]);
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Make it so", "repo": repo.path(), "checks": ["true"], "review": false});

    // The health check is anyone's; everything else needs a token.
    let anyone = reqwest::Client::new();
    assert_eq!(anyone.get(api("/healthz")).send().await.unwrap().status(), 200);
    for (method, path) in [("GET", "/tasks"), ("POST", "/tasks"), ("GET", "/account")] {
        let response = anyone.request(method.parse().unwrap(), api(path)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
    }
    let metrics = anyone.get(format!("{}/metrics", served.url)).send().await.unwrap();
    assert_eq!(metrics.status(), 401);
    let forged = client_with("baton_0000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(forged.get(api("/tasks")).send().await.unwrap().status(), 401);

    // A read token reads and cannot create; a write token creates and cannot move money.
    let read = client_with(&reader);
    assert_eq!(read.get(api("/tasks")).send().await.unwrap().status(), 200);
    let denied = read.post(api("/tasks")).json(&body).send().await.unwrap();
    assert_eq!(denied.status(), 403);
    let error: Value = denied.json().await.unwrap();
    assert_eq!(error["error"]["code"], "forbidden");
    assert!(error["error"]["message"].as_str().unwrap().contains("scope read; this needs write"), "{error}");
    let tasks: Value = read.get(api("/tasks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 0, "a refused create made nothing");
    let write = client_with(&writer);
    let created = write.post(api("/tasks")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let topup = write.post(api("/account/topup")).json(&json!({"credits": "5"})).send().await.unwrap();
    assert_eq!(topup.status(), 403);

    // Revoked: refused at once, by the running server.
    let revoked = baton(home.path()).args(["token", "revoke", "writer"]).output().unwrap();
    assert!(revoked.status.success(), "{}", common::describe(&revoked));
    assert_eq!(write.get(api("/tasks")).send().await.unwrap().status(), 401);
    assert_eq!(read.get(api("/tasks")).send().await.unwrap().status(), 200);

    // The list shows names and scopes, never a secret; the store keeps no secret either.
    let listed = baton(home.path()).args(["token", "list"]).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("reader") && listed.contains("writer") && listed.contains("admin"), "{listed}");
    // The server's own output (its log) is among the files searched.
    let admin = served.token.clone();
    drop(served);
    for secret in [&reader, &writer, &admin] {
        assert!(!listed.contains(secret.as_str()));
        // baton's own records: the database, its write-ahead log, the blobs and the server's log
        // (not the tasks' machines and disk images, which hold what the sandbox made).
        let records = ["baton.db", "baton.db-wal", "server.log"].map(|name| home.path().join(name));
        assert!(records[0].is_file());
        for entry in records.into_iter().chain(walk(&home.path().join("blobs"))) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            let found = bytes.windows(secret.len()).any(|window| window == secret.as_bytes());
            assert!(!found, "a token's secret is in {}", entry.display());
        }
    }
}

/// Every regular file beneath `dir`, symbolic links not followed.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            files.extend(walk(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_pages_of_tasks_findings_and_a_raised_step_limit_over_the_api() {
    // One shell step, then `finish`: a step limit of 1 pauses the task after its first step.
    let shell = ToolCall { id: "s".into(), name: "shell".into(), arguments: json!({"command": "true"}).to_string() };
    let finish = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "done"}).to_string() };
    let script = Script {
        turns: vec![
            Turn { reply: Reply { tool_calls: vec![shell], ..Reply::default() }, ..Turn::default() },
            Turn { reply: Reply { tool_calls: vec![finish], ..Reply::default() }, ..Turn::default() },
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    // The account: a top-up, the ledger, a policy refused and one kept.
    let account: Value = http.get(api("/account")).send().await.unwrap().json().await.unwrap();
    assert_eq!(account["balance"], "0.00", "{account}");
    let topped = http.post(api("/account/topup")).json(&json!({"credits": "5", "note": "api"})).send().await.unwrap();
    assert_eq!(topped.status(), 200);
    let account: Value = topped.json().await.unwrap();
    assert_eq!((account["balance"].as_str(), account["available"].as_str()), (Some("5.00"), Some("5.00")));
    let entries: Value = http.get(api("/account/entries?limit=5")).send().await.unwrap().json().await.unwrap();
    assert_eq!(entries["entries"][0]["kind"], "top_up");
    assert_eq!(entries["entries"][0]["amount"], "5.00");
    for body in [json!({"credits": "-1"}), json!({"credits": "lots"})] {
        let refused = http.post(api("/account/topup")).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), 422, "{body}");
        assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "invalid_amount");
    }
    let reload = |threshold: &str, target: &str| json!({"threshold": threshold, "target": target, "max_per_month": 2});
    let backwards = json!({"monthly_cap": "10", "auto_reload": reload("5", "1"), "overage": false});
    let refused = http.put(api("/account/policy")).json(&backwards).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let error: Value = refused.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("must be above its threshold"), "{error}");
    let policy = json!({"monthly_cap": "10", "auto_reload": reload("1", "5"), "overage": false});
    let kept: Value = http.put(api("/account/policy")).json(&policy).send().await.unwrap().json().await.unwrap();
    let shown = json!({"monthly_cap": "10.00", "auto_reload": reload("1.00", "5.00"), "overage": false});
    assert_eq!(kept["policy"], shown);
    let bad_limit = http.get(api("/account/entries?limit=many")).send().await.unwrap();
    assert_eq!(bad_limit.status(), 400);
    assert_eq!(bad_limit.json::<Value>().await.unwrap()["error"]["code"], "invalid_query");

    // A task with a step limit of 1 pauses after its first step; lifting the limit runs it on.
    let body =
        json!({"request": "Make it so", "repo": repo.path(), "checks": ["true"], "review": false, "max_steps": 1});
    let id = served.create(&body).await;
    let task = api(&format!("/tasks/{id}"));
    let paused = reaching(&http, task.clone(), "paused").await;
    assert_eq!(paused["stop"]["reason"], "budget_exhausted", "{paused}");
    let unknown = http.post(format!("{task}/findings/f9")).json(&json!({"status": "resolved"})).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let wrong = http.post(format!("{task}/findings/f9")).json(&json!({"status": "ignored"})).send().await.unwrap();
    assert_eq!(wrong.status(), 400);
    let zero = http.patch(format!("{task}/budget")).json(&json!({"credits": "0"})).send().await.unwrap();
    assert_eq!(zero.status(), 422);
    let lifted = http.patch(format!("{task}/budget")).json(&json!({"max_steps": null})).send().await.unwrap();
    assert_eq!(lifted.status(), 200);
    let done = reaching(&http, task.clone(), "done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    let ended = http.patch(format!("{task}/budget")).json(&json!({"max_steps": 5})).send().await.unwrap();
    assert_eq!(ended.status(), 409);

    // Pages of the task list, newest first, with two more tasks (how they end does not matter).
    for request in ["Second thing", "Third thing"] {
        let body = json!({"request": request, "repo": repo.path(), "checks": ["true"], "review": false});
        assert_eq!(http.post(api("/tasks")).json(&body).send().await.unwrap().status(), 201);
    }
    let page = |query: String| {
        let http = http.clone();
        let url = api(&format!("/tasks?{query}"));
        async move {
            let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            let requests: Vec<String> = page["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|task| task["request"].as_str().unwrap().to_owned())
                .collect();
            (requests, page["next_cursor"].as_str().map(str::to_owned))
        }
    };
    let (first, cursor) = page("limit=2".into()).await;
    assert_eq!(first, ["Third thing", "Second thing"]);
    let (second, end) = page(format!("limit=2&cursor={}", cursor.unwrap())).await;
    assert_eq!((second, end), (vec!["Make it so".to_owned()], None));
    assert_eq!(page("text=SECOND".into()).await.0, ["Second thing"]);
    let since = done["updated_at"].as_i64().unwrap() + 1;
    let (recent, _) = page(format!("since={since}")).await;
    assert!(!recent.contains(&"Make it so".to_owned()), "{recent:?}");
    let bad = http.get(api("/tasks?cursor=nonsense")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["code"], "invalid_cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_too_large_and_a_caller_too_fast_are_refused_with_the_apis_errors() {
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let served = serve_with(home.path(), &model, &["--slots", "1", "--rate-limit", "2"]);
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    let huge = json!({"request": "x".repeat(2 << 20), "repo": "/nowhere", "checks": ["true"]});
    // A client of its own: the server answers before reading the rest and closes the connection.
    let refused = served.http().post(api("/tasks")).json(&huge).send().await.unwrap();
    assert_eq!(refused.status(), 413);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "too_large");

    // Bursts of ten times the rate (the request above took one), then 429 and when to come back.
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(http.get(api("/tasks")).send().await.unwrap().status().as_u16());
    }
    let limited = statuses.iter().position(|status| *status == 429).expect("never limited");
    assert!((15..=21).contains(&limited), "limited after {limited}: {statuses:?}");
    let response = http.get(api("/tasks")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    // The health check is never limited.
    assert_eq!(http.get(api("/healthz")).send().await.unwrap().status(), 200);

    // CORS is off: a browser's preflight from another origin gets no permission.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, api("/tasks"))
        .header("Origin", "http://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
}

/// Needs `BATON_TEST_SCHEMATHESIS`, the pinned schemathesis CLI (`scripts/test` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_holds_for_every_answer_schemathesis_generates() {
    let schemathesis = std::env::var("BATON_TEST_SCHEMATHESIS")
        .expect("BATON_TEST_SCHEMATHESIS must name the schemathesis CLI; scripts/test installs it");
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    // Schemathesis sends hundreds of requests a second.
    let served = serve_with(home.path(), &model, &["--slots", "1", "--rate-limit", "100000"]);
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    let document: Value = http.get(api("/openapi.json")).send().await.unwrap().json().await.unwrap();
    // Every route the server has, and nothing else.
    let paths: Vec<&str> = document["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let routes = [
        "/api/v1/account",
        "/api/v1/account/entries",
        "/api/v1/account/policy",
        "/api/v1/account/topup",
        "/api/v1/events/stream",
        "/api/v1/healthz",
        "/api/v1/hooks",
        "/api/v1/hooks/{name}",
        "/api/v1/hooks/{name}/deliveries",
        "/api/v1/schedules",
        "/api/v1/schedules/{name}",
        "/api/v1/schedules/{name}/pause",
        "/api/v1/schedules/{name}/resume",
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/budget",
        "/api/v1/tasks/{id}/cancel",
        "/api/v1/tasks/{id}/decisions/{decision}",
        "/api/v1/tasks/{id}/diff",
        "/api/v1/tasks/{id}/events",
        "/api/v1/tasks/{id}/events/stream",
        "/api/v1/tasks/{id}/findings/{finding}",
        "/api/v1/tasks/{id}/messages",
        "/api/v1/tasks/{id}/pick",
        "/api/v1/tasks/{id}/pr",
        "/api/v1/tasks/{id}/resume",
        "/api/v1/templates",
        "/api/v1/templates/{name}",
        "/api/v1/templates/{name}/tasks",
        "/metrics",
    ];
    assert_eq!(paths, routes);
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    // A real task, so that the operations on one reach past "no such task".
    let body = json!({"request": "Make it so", "repo": repo.path(), "checks": ["true"], "review": false});
    let created: Value = http.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    let config = home.path().join("schemathesis.toml");
    std::fs::write(&config, format!("[parameters]\n\"path.id\" = \"{id}\"\n")).unwrap();

    // The endless streams are left out: a stream never ends for a generator to judge.
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_schema_conformance,response_headers_conformance";
    let run = Command::new(schemathesis)
        .current_dir(home.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &api("/openapi.json"), "--checks", checks, "--exclude-path-regex", "stream"])
        .args(["--max-examples", "30", "--seed", "1", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {}", served.token)])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{report}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(report.contains("passed") && !report.contains("failures"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_over_server_prints_what_it_prints_locally() {
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Make it so", "repo": repo.path(), "checks": ["true"], "review": false});
    let id = served.create(&body).await;
    reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    let topped = http.post(api("/account/topup")).json(&json!({"credits": "3.000123"})).send().await.unwrap();
    assert_eq!(topped.status(), 200);

    let prefix = &id[..6];
    let commands: [&[&str]; 5] =
        [&["task", "list"], &["task", "show", prefix], &["task", "events", &id], &["log", &id], &["budget", "show"]];
    for command in commands {
        for json in [false, true] {
            let with_json = |mut command: Command| {
                if json {
                    command.arg("--json");
                }
                command
            };
            let local = with_json(baton(home.path())).args(command).output().unwrap();
            // A data directory of its own: everything printed comes over HTTP.
            let elsewhere = tempfile::tempdir().unwrap();
            let remote = with_json(baton(elsewhere.path()))
                .args(command)
                .args(["--server", &served.url])
                .env("BATON_TOKEN", &served.token)
                .output()
                .unwrap();
            assert!(local.status.success(), "{command:?}: {}", common::describe(&local));
            assert!(remote.status.success(), "{command:?} --server: {}", common::describe(&remote));
            assert!(!local.stdout.is_empty());
            assert_eq!(
                String::from_utf8_lossy(&remote.stdout),
                String::from_utf8_lossy(&local.stdout),
                "{command:?} (json: {json})"
            );
        }
    }

    // Refusals come back as the server words them; commands that only work here say so.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |args: &[&str], token: &str| {
        baton(elsewhere.path()).args(args).args(["--server", &served.url]).env("BATON_TOKEN", token).output().unwrap()
    };
    let missing = remote(&["task", "show", "zzzz"], &served.token);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no task `zzzz` (server: 404 Not Found)"),
        "{}",
        common::describe(&missing)
    );
    let ended = remote(&["task", "cancel", &id], &served.token);
    assert!(
        String::from_utf8_lossy(&ended.stderr).contains("has already ended (done)"),
        "{}",
        common::describe(&ended)
    );
    let wrong = remote(&["budget", "show"], "baton_nonsense");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("unknown or revoked (server: 401"),
        "{}",
        common::describe(&wrong)
    );
    let local_only = remote(&["env", "show", "--repo", "."], &served.token);
    assert!(
        String::from_utf8_lossy(&local_only.stderr).contains("applies to the task, log, budget"),
        "{}",
        common::describe(&local_only)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_each_run_at_its_next_step_with_its_work_committed_and_a_restart_goes_on() {
    let model = ScriptedServer::start(marking(2)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut served = serve(home.path(), &model, "2");
    let http = served.http();
    // Both past their first step; a live stream open (it must not keep the server up).
    let ids = marking_under_way(&served, repo.path(), 2).await;
    let stream = http.get(format!("{}/api/v1/events/stream", served.url)).send().await.unwrap();
    assert_eq!(stream.status(), 200);

    served.terminate();
    drop(stream);

    // Each task is left running at a step's end, its work committed and its lease released.
    let store = baton_store::SqlStore::open(home.path()).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for id in &ids {
        let id = baton_core::TaskId::parse(id).unwrap();
        let state = baton_store::Store::load(&store, &id).await.unwrap();
        assert_eq!(state.status(), baton_core::Status::Running);
        let events = baton_store::Store::events(&store, &id, 0).await.unwrap();
        let last = events.iter().rev().find(|r| !matches!(r.event, baton_core::Event::ToolCallFinished { .. }));
        let kept = events.iter().any(|recorded| {
            matches!(&recorded.event, baton_core::Event::Checkpointed { evidence, .. } if evidence == "work in progress before baton stopped")
        });
        assert!(kept, "no work-in-progress checkpoint; the journal ends with {last:?}");
        let lease = baton_store::Store::lease(&store, &id).await.unwrap().unwrap();
        assert!(lease.expires_at.as_millis() <= now, "the lease is still held: {lease:?}");
    }
    store.pool().close().await;

    let served = serve(home.path(), &model, "2");
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        let task = reaching(&http, format!("{}/api/v1/tasks/{id}", served.url), "done").await;
        assert_eq!(task["stop"]["reason"], "verified", "{task}");
        assert!(Instant::now() < deadline);
    }
    drop(served);
    for (n, id) in ids.iter().enumerate() {
        let marks = marks(home.path(), id);
        for k in 1..=STEPS {
            let count = marks.lines().filter(|l| *l == format!("mark-{n}-{k}")).count();
            assert_eq!(count, 1, "task {n}: step {k} ran {count} times:\n{marks}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_attempt_leaves_it_to_the_restart_instead_of_ending_it() {
    let model = ScriptedServer::start(marking(1)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |url: &str, path: &str| format!("{url}/api/v1{path}");
    // Both attempts run the same four marking steps; the first is stopped in the middle.
    let body =
        json!({"request": "marking task 0.", "repo": repo.path(), "checks": ["true"], "review": false, "attempts": 2});
    let parent = served.create(&body).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        let task: Value =
            http.get(api(&served.url, &format!("/tasks/{parent}"))).send().await.unwrap().json().await.unwrap();
        if let Some(child) = task["subtasks"][0]["task"].as_str() {
            let child: Value =
                http.get(api(&served.url, &format!("/tasks/{child}"))).send().await.unwrap().json().await.unwrap();
            if child["next_seq"].as_u64().unwrap() > 8 {
                break child["id"].as_str().unwrap().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "the first attempt did not get going: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    served.terminate();

    // The attempt is left running, and the parent has not journaled it as ended.
    let store = baton_store::SqlStore::open(home.path()).await.unwrap();
    let load = |id: &str| {
        let id = baton_core::TaskId::parse(id).unwrap();
        let store = &store;
        async move { baton_store::Store::load(store, &id).await.unwrap() }
    };
    let (parent_state, first_state) = (load(&parent).await, load(&first).await);
    assert_eq!(first_state.status(), baton_core::Status::Running);
    assert_eq!(parent_state.status(), baton_core::Status::Running);
    assert!(parent_state.work.subtasks[0].outcome.is_none(), "{:?}", parent_state.work.subtasks[0]);
    store.pool().close().await;

    let served = serve(home.path(), &model, "1");
    let done = reaching(&http, api(&served.url, &format!("/tasks/{parent}")), "done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    let verified: Vec<Value> = done["subtasks"].as_array().unwrap().iter().map(|a| a["verified"].clone()).collect();
    assert_eq!(verified, [json!(true), json!(true)], "the stopped attempt went on and ended verified: {done}");
    assert_eq!(done["subtasks"][0]["task"], first.as_str(), "the same child, not a new one: {done}");
    drop(served);
    let marks = marks(home.path(), &first);
    for k in 1..=STEPS {
        let count = marks.lines().filter(|l| *l == format!("mark-0-{k}")).count();
        assert_eq!(count, 1, "step {k} ran {count} times:\n{marks}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_reaches_the_next_model_request_of_a_running_task() {
    // The agent polls until the follow-up is in its request, then finishes.
    let finish = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "noted"}).to_string() };
    let poll = |id: &str| ToolCall {
        id: id.into(),
        name: "shell".into(),
        arguments: json!({"command": "sleep 0.2; date +%s%N"}).to_string(),
    };
    let when = |text: &str| Expect { body_contains: Some(text.into()), ..Expect::default() };
    let script = Script {
        rules: vec![
            Rule {
                when: when("please also write NOTES"),
                reply: Reply { tool_calls: vec![finish], ..Reply::default() },
            },
            Rule { when: Expect::default(), reply: Reply { tool_calls: vec![poll("p")], ..Reply::default() } },
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "2");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    let body = json!({"request": "Keep polling.", "repo": repo.path(), "checks": ["true"], "review": false});
    let id = served.create(&body).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let task: Value = http.get(api(&format!("/tasks/{id}"))).send().await.unwrap().json().await.unwrap();
        if task["steps"].as_u64().unwrap() >= 2 {
            assert_eq!(task["status"], "running", "{task}");
            break;
        }
        assert!(Instant::now() < deadline, "the task did not get going: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = http
        .post(api(&format!("/tasks/{id}/messages")))
        .json(&json!({"text": "please also write NOTES"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["number"], 1);
    let done = reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");

    // Journaled once, before the model call whose request carried it.
    let page: Value = http.get(api(&format!("/tasks/{id}/events"))).send().await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["event"]["type"].as_str().unwrap()).collect();
    let delivered = kinds.iter().position(|kind| *kind == "message_received").expect("never delivered");
    assert_eq!(kinds.iter().filter(|kind| **kind == "message_received").count(), 1);
    assert_eq!(kinds[delivered + 1], "model_call_started", "{kinds:?}");
    let carrying = model
        .requests()
        .iter()
        .filter(|request| request.body.to_string().contains("A follow-up from the user who gave you this task"))
        .count();
    assert!(carrying >= 1);

    // An empty follow-up goes nowhere.
    let empty = http.post(api(&format!("/tasks/{id}/messages"))).json(&json!({"text": " "})).send().await.unwrap();
    assert_eq!(empty.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_sent_while_the_checks_run_opens_a_leg_before_the_task_ends() {
    let finish = common::finish;
    let when = |text: &str| Expect { body_contains: Some(text.into()), ..Expect::default() };
    let script = Script {
        rules: vec![
            Rule { when: when("please also write NOTES"), reply: finish("notes written") },
            Rule { when: Expect::default(), reply: finish("first pass") },
        ],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Do it.", "repo": repo.path(), "checks": ["sleep 2"], "review": false});
    let id = served.create(&body).await;
    reaching(&http, api(&format!("/tasks/{id}")), "verifying").await;
    let sent = http
        .post(api(&format!("/tasks/{id}/messages")))
        .json(&json!({"text": "please also write NOTES"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let done = reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    assert_eq!(done["stop"]["detail"], "notes written", "the task ended only after the follow-up: {done}");
    let roles: Vec<&Value> = done["legs"].as_array().unwrap().iter().map(|leg| &leg["role"]).collect();
    assert_eq!(roles, ["build", "build"], "a second build leg for the follow-up: {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_to_a_finished_task_starts_a_task_that_continues_its_branch() {
    let mut notes = common::call("w2", "write_file", json!({"path": "NOTES", "content": "noted\n"}));
    notes.expect = Expect { body_contains: Some("please also write NOTES".into()), ..Expect::default() };
    let turns = vec![
        common::call("w1", "write_file", json!({"path": "ok", "content": "fine\n"})),
        common::call("f1", "finish", json!({"summary": "ok written"})),
        notes,
        common::call("f2", "finish", json!({"summary": "notes written"})),
        common::call("f3", "finish", json!({"summary": "nothing more to do"})),
    ];
    let model = ScriptedServer::start(Script { turns, ..Script::default() }).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Write ok.", "repo": repo.path(), "checks": ["test -f ok"], "review": false});
    let first = served.create(&body).await;
    let done = reaching(&http, api(&format!("/tasks/{first}")), "done").await;

    let sent = http
        .post(api(&format!("/tasks/{first}/messages")))
        .json(&json!({"text": "please also write NOTES"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201, "a new task");
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["number"], Value::Null, "{sent}");
    assert_eq!(sent["task"]["continues"], first.as_str(), "{sent}");
    assert_eq!(sent["task"]["branch"], done["branch"], "the same branch: {sent}");
    assert_eq!(sent["task"]["request"], "please also write NOTES", "{sent}");
    let second = sent["task"]["id"].as_str().unwrap().to_owned();
    let continued = reaching(&http, api(&format!("/tasks/{second}")), "done").await;
    assert_eq!(continued["stop"]["detail"], "notes written", "{continued}");
    let earlier = http.get(api(&format!("/tasks/{first}"))).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(earlier["continued_by"], second.as_str(), "{earlier}");
    assert_eq!(earlier["status"], "done", "the earlier task stays as it ended: {earlier}");

    // Its agent was told what the earlier run did, and worked on that run's commits.
    let asked = model.requests().into_iter().find(|r| r.turn == Some(2)).unwrap();
    let text = baton_testkit::model::text_of(&asked.body);
    assert!(text.contains("Earlier work") && text.contains("Write ok.") && text.contains("ok written"), "{text}");
    let diff = |id: &str| {
        let url = api(&format!("/tasks/{id}/diff"));
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let (first_diff, second_diff) = (diff(&first).await, diff(&second).await);
    assert!(first_diff.contains("+fine") && !first_diff.contains("+noted"), "its own change only: {first_diff}");
    assert!(second_diff.contains("+fine") && second_diff.contains("+noted"), "the whole branch: {second_diff}");

    // A follow-up to the first task goes to the newest of the line, from the command line too.
    let elsewhere = tempfile::tempdir().unwrap();
    let again = baton(elsewhere.path())
        .args(["task", "message", &first, "anything else?", "--server", &served.url, "--json"])
        .env("BATON_TOKEN", &served.token)
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", common::describe(&again));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    let third = again["task"].as_str().unwrap().to_owned();
    assert_eq!(again["continues"], first.as_str(), "{again}");
    let third_view = reaching(&http, api(&format!("/tasks/{third}")), "done").await;
    assert_eq!(third_view["continues"], second.as_str(), "{third_view}");
    assert_eq!(model.remaining_turns(), 0);

    // A cancelled task is not continued.
    let cancelled = served.create(&json!({"request": "x", "repo": repo.path(), "checks": ["true"]})).await;
    let response = http.post(api(&format!("/tasks/{cancelled}/cancel"))).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let refused =
        http.post(api(&format!("/tasks/{cancelled}/messages"))).json(&json!({"text": "more"})).send().await.unwrap();
    assert_eq!(refused.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_saved_on_the_command_line_or_over_the_api_starts_tasks() {
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let flags = ["--check", "true", "--no-review", "--max-steps", "9", "--model", "openai-compatible/scripted"];
    let saved = save_template(home.path(), repo.path(), "nightly", "Tidy up", &flags);
    assert!(saved.contains("limits    9 steps"), "{saved}");
    let repo_arg = repo.path().display().to_string();
    let again = baton(home.path())
        .args(["template", "create", "--name", "nightly", "--request", "Other", "--repo", &repo_arg, "--check", "true"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("a template named `nightly` exists already"));
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);

    // Listed, and a task started from it runs as the template says, owned by the caller.
    let listed: Value = http.get(api("/templates")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["templates"][0]["name"], "nightly", "{listed}");
    assert_eq!(listed["templates"][0]["budget"]["steps"], 9, "{listed}");
    let started = http.post(api("/templates/nightly/tasks")).send().await.unwrap();
    assert_eq!(started.status(), 201);
    let task: Value = started.json().await.unwrap();
    assert_eq!((task["request"].as_str(), task["owner"].as_str()), (Some("Tidy up"), Some("test-admin")), "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let done = reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    assert_eq!(done["money"]["limit_steps"], 9, "{done}");

    // Over the API: saved (201), a taken name (409), a bad name or definition (422), then deleted.
    let body = |name: &str, checks: Value| json!({"name": name, "task": {"request": "Docs", "repo": repo.path(), "checks": checks, "review": false}});
    let made = http.post(api("/templates")).json(&body("docs", json!(["true"]))).send().await.unwrap();
    assert_eq!(made.status(), 201);
    let taken = http.post(api("/templates")).json(&body("docs", json!(["true"]))).send().await.unwrap();
    assert_eq!(taken.status(), 409);
    for bad in [body("no spaces", json!(["true"])), body("docs2", json!([]))] {
        let refused = http.post(api("/templates")).json(&bad).send().await.unwrap();
        assert_eq!(refused.status(), 422, "{bad}");
    }
    assert_eq!(http.delete(api("/templates/docs")).send().await.unwrap().status(), 204);
    assert_eq!(http.get(api("/templates/docs")).send().await.unwrap().status(), 404);
    assert_eq!(http.post(api("/templates/docs/tasks")).send().await.unwrap().status(), 404);
    let reader = client_with(&token(home.path(), "reader", "read"));
    let refused = reader.post(api("/templates/nightly/tasks")).send().await.unwrap();
    assert_eq!(refused.status(), 403, "a read token starts nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_task_cancels_its_attempts() {
    let model = ScriptedServer::start(finishing_after(2000)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "2");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({"request": "Slowly.", "repo": repo.path(), "checks": ["true"], "review": false, "attempts": 3});
    let parent = served.create(&body).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let children: Vec<String> = loop {
        let task: Value = http.get(api(&format!("/tasks/{parent}"))).send().await.unwrap().json().await.unwrap();
        let made: Vec<String> =
            task["subtasks"].as_array().unwrap().iter().filter_map(|s| s["task"].as_str().map(str::to_owned)).collect();
        if made.len() == 3 {
            break made;
        }
        assert!(Instant::now() < deadline, "the attempts were not made: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cancelled = http.post(api(&format!("/tasks/{parent}/cancel"))).json(&json!({})).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    // Two were running and one queued: all three end cancelled, naming why.
    for child in &children {
        let task = reaching(&http, api(&format!("/tasks/{child}")), "cancelled").await;
        assert!(task["stop"]["detail"].as_str().unwrap().contains(&format!("its parent task {parent} was cancelled")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_of_three_with_one_attempt_failing_its_checks_picks_a_verified_one_onto_the_branch() {
    // The attempts run side by side: the first writes one line, the second never makes the check
    // pass (two steps each), the third writes four lines.
    let model = ScriptedServer::start(common::attempts(&[Some("fine\n"), None, Some("a\nb\nc\nd\n")])).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "3");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({
        "request": "Make the check pass.", "repo": repo.path(), "checks": ["sleep 1; test -f ok"],
        "review": false, "attempts": 3, "max_steps": 6,
    });
    let created = http.post(api("/tasks")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let done = reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    assert_eq!(done["picked"], "attempt-1", "{done}");
    let verified: Vec<Value> = done["subtasks"].as_array().unwrap().iter().map(|a| a["verified"].clone()).collect();
    assert_eq!(verified, [json!(true), json!(false), json!(true)], "{done}");
    // Each attempt a task of its own, run at once with the others (each check takes a second).
    let mut spans = Vec::new();
    for attempt in done["subtasks"].as_array().unwrap() {
        let url = api(&format!("/tasks/{}/events", attempt["task"].as_str().unwrap()));
        let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        let at = |event: &Value| event["at"].as_i64().unwrap();
        spans.push((at(events.iter().find(|e| e["event"]["type"] == "started").unwrap()), at(events.last().unwrap())));
    }
    assert_eq!(most_at_once(&spans), 3, "the attempts ran side by side: {spans:?}");

    // The pick's change is the task's, on its branch.
    let diff = http.get(api(&format!("/tasks/{id}/diff"))).send().await.unwrap().text().await.unwrap();
    assert!(diff.contains("+fine") && !diff.contains("+a"), "{diff}");
    let events: Value = http.get(api(&format!("/tasks/{id}/events"))).send().await.unwrap().json().await.unwrap();
    let picked = events["events"].as_array().unwrap().iter().find(|e| e["event"]["type"] == "attempt_picked").cloned();
    let reason = picked.unwrap()["event"]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("1 changed lines") && reason.contains("attempt-2: not verified"), "{reason}");

    // Attempts and a plan do not mix; nor do eleven attempts go.
    let refusals = [
        (json!({"plan": true}), "either plans"),
        (json!({"attempts": 11}), "11 attempts"),
        (json!({"approve_plan": true}), "only a planned task"),
    ];
    for (extra, wanted) in refusals {
        let mut body = json!({"request": "x", "repo": repo.path(), "checks": ["true"], "attempts": 2});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let refused = http.post(api("/tasks")).json(&body).send().await.unwrap();
        assert_eq!(refused.status(), 422);
        let error: Value = refused.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(wanted), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_picks_the_attempt_baton_would_not_and_its_change_becomes_the_tasks() {
    // Both attempts pass: the first with one line, the second with four. baton's rule prefers the
    // smaller change; the human picks the other.
    let model = ScriptedServer::start(common::attempts(&[Some("fine\n"), Some("a\nb\nc\nd\n")])).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = served.http();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body = json!({
        "request": "Make the check pass.", "repo": repo.path(), "checks": ["test -f ok"],
        "review": false, "attempts": 2, "pick": "human",
    });
    let id = served.create(&body).await;
    let waiting = reaching(&http, api(&format!("/tasks/{id}")), "waiting").await;
    assert_eq!(waiting["pick"], "human", "{waiting}");
    assert_eq!(waiting["picked"], Value::Null, "nothing is picked before the human does: {waiting}");
    let question = waiting["question"].as_str().unwrap();
    assert!(question.contains("baton's rule picks attempt-1") && question.contains("4 changed lines"), "{question}");
    // Each attempt is listed with its checks, findings and the size of its change.
    let attempts = waiting["subtasks"].as_array().unwrap();
    assert_eq!(attempts[1]["diff"], json!({"files": 1, "insertions": 4, "deletions": 0}), "{waiting}");
    assert_eq!(attempts[1]["checks"], json!([{"name": "test -f ok", "passed": true}]), "{waiting}");
    assert_eq!(attempts[1]["open_findings"], 0, "{waiting}");

    // A pick names an attempt that was offered; the open decision is not denied.
    let pick = |attempt: &str| http.post(api(&format!("/tasks/{id}/pick"))).json(&json!({"attempt": attempt})).send();
    let wrong = pick("attempt-9").await.unwrap();
    assert_eq!(wrong.status(), 422);
    let error: Value = wrong.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("attempt-1, attempt-2"), "{error}");
    let decision = waiting["decision"].as_str().unwrap();
    let denied = http
        .post(api(&format!("/tasks/{id}/decisions/{decision}")))
        .json(&json!({"answer": "attempt-2", "deny": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 422);
    let still = http.get(api(&format!("/tasks/{id}"))).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(still["status"], "waiting", "a refused pick changes nothing: {still}");

    // The command line picks over the API.
    let elsewhere = tempfile::tempdir().unwrap();
    let picked = baton(elsewhere.path())
        .args(["pick", &id[..8], "attempt-2", "--server", &served.url])
        .env("BATON_TOKEN", &served.token)
        .output()
        .unwrap();
    assert!(picked.status.success(), "{}", common::describe(&picked));
    assert!(String::from_utf8_lossy(&picked.stdout).contains("attempt-2 picked"));
    let done = reaching(&http, api(&format!("/tasks/{id}")), "done").await;
    assert_eq!(done["picked"], "attempt-2", "{done}");
    assert_eq!(done["stop"]["reason"], "verified", "{done}");
    let diff = http.get(api(&format!("/tasks/{id}/diff"))).send().await.unwrap().text().await.unwrap();
    assert!(diff.contains("+d") && !diff.contains("+fine"), "the human's pick is on the branch: {diff}");
    let again = pick("attempt-1").await.unwrap();
    assert_eq!(again.status(), 409, "a task picks once");
    let error: Value = again.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("attempt-2 is already picked"), "{error}");

    // Without attempts there is nothing for a human to pick.
    let body = json!({"request": "x", "repo": repo.path(), "checks": ["true"], "pick": "human"});
    let refused = http.post(api("/tasks")).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_runs_one_task_at_a_time_and_owners_take_turns() {
    let model = ScriptedServer::start(finishing_after(300)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path()).unwrap();
    std::fs::write(home.path().join("config.toml"), "").unwrap();
    let (alice, bob) = (token(home.path(), "alice", "write"), token(home.path(), "bob", "write"));
    let served = serve_with(home.path(), &model, &["--slots", "2", "--per-owner", "1"]);
    let url = format!("{}/api/v1/tasks", served.url);
    let body =
        |n: usize| json!({"request": format!("task {n}"), "repo": repo.path(), "checks": ["true"], "review": false});
    // Alice queues three, then Bob two.
    let mut mine = Vec::new();
    for (client, n) in [(&alice, 0), (&alice, 1), (&alice, 2), (&bob, 3), (&bob, 4)] {
        let created: Value = client_with(client).post(&url).json(&body(n)).send().await.unwrap().json().await.unwrap();
        assert_eq!(created["owner"], if n < 3 { "alice" } else { "bob" }, "{created}");
        mine.push(created["id"].as_str().unwrap().to_owned());
    }
    let http = served.http();
    for id in &mine {
        reaching(&http, format!("{url}/{id}"), "done").await;
    }
    let mut spans = Vec::new();
    for id in &mine {
        spans.push(span(&served, id).await);
    }
    assert_eq!(most_at_once(&spans[..3]), 1, "Alice ran more than one at once: {spans:?}");
    assert_eq!(most_at_once(&spans[3..]), 1, "Bob ran more than one at once: {spans:?}");
    assert_eq!(most_at_once(&spans), 2, "the two slots were used: {spans:?}");
    // Bob's first did not wait for Alice's queue to drain.
    assert!(spans[3].0 < spans[2].0, "Bob waited behind Alice: {spans:?}");
}
