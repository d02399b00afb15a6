//! `baton serve` as a real process on loopback: tasks created over its API run in the background at
//! most `--slots` at a time and end verified; a task's event stream resumes exactly after a
//! reconnect with `Last-Event-ID`; bad requests get a JSON error with the right status. Real path:
//! the baton binary, HTTP, SQLite, the sandbox (root), the scripted model.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use baton_testkit::model::{Expect, Reply, Rule, Script, ScriptedServer, ToolCall};
use serde_json::{Value, json};

/// The server process, killed when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(home: &std::path::Path, model: &ScriptedServer, slots: &str) -> Served {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(home.join("config.toml"), "").unwrap();
    let mut child = Command::cargo_bin("baton")
        .unwrap()
        .args(["serve", "--addr", "127.0.0.1:0", "--slots", slots, "--model", "openai-compatible/scripted"])
        .env("BATON_HOME", home)
        .env("BATON_CONFIG", home.join("config.toml"))
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.split_whitespace().nth(2).expect("baton serves URL …").to_owned();
    Served { child, url }
}

/// Every request is answered with a `finish` after a pause, so tasks overlap if they may.
fn finishing() -> Script {
    finishing_after(400)
}

fn finishing_after(ms: u64) -> Script {
    let finish = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "done"}).to_string() };
    let reply = Reply { tool_calls: vec![finish], delay_ms: Some(ms), ..Reply::default() };
    Script { rules: vec![Rule { when: Expect::default(), reply }], ..Script::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_created_over_the_api_run_two_at_a_time_and_their_streams_resume_exactly() {
    let model = ScriptedServer::start(finishing()).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "2");
    let http = reqwest::Client::new();
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
        let page: Value = http.get(api(&format!("/tasks/{id}/events"))).send().await.unwrap().json().await.unwrap();
        let at = |kind: &str| {
            page["events"].as_array().unwrap().iter().find(|e| e["event"]["type"] == kind).unwrap()["at"]
                .as_i64()
                .unwrap()
        };
        spans.push((at("started"), at("finished")));
    }
    let most = spans.iter().map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start < e).count()).max();
    assert_eq!(most, Some(2), "{spans:?}");

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
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from:\n{metrics}");
    }
}

/// The task at `url` once its status is `wanted` (within two minutes).
async fn reaching(http: &reqwest::Client, url: String, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let task: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        if task["status"] == wanted {
            return task;
        }
        assert!(Instant::now() < deadline, "never {wanted}: {task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let http = reqwest::Client::new();
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
    let shell = |n: usize, k: usize| {
        // Long enough that all eight run at once even when the machine is busy with other tests.
        let command = format!("sleep 1.5; echo mark-{n}-{k} >> /root/marker; echo ran-{n}-{k}");
        let call =
            ToolCall { id: format!("s{k}"), name: "shell".into(), arguments: json!({"command": command}).to_string() };
        Reply { tool_calls: vec![call], ..Reply::default() }
    };
    let finish =
        ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "marked"}).to_string() };
    let mut rules = Vec::new();
    for n in 0..tasks {
        let when = |text: String| Expect { body_contains: Some(text), ..Expect::default() };
        rules.push(Rule {
            when: when(format!("ran-{n}-{STEPS}")),
            reply: Reply { tool_calls: vec![finish.clone()], ..Reply::default() },
        });
        for k in (1..STEPS).rev() {
            // An interrupted step shows its command, not its output: the script goes on either way.
            rules.push(Rule { when: when(format!("ran-{n}-{k}")), reply: shell(n, k + 1) });
        }
        rules.push(Rule { when: when(format!("marking task {n}.")), reply: shell(n, 1) });
    }
    Script { rules, ..Script::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_eight_tasks_running_is_restarted_and_every_task_ends_verified_without_repeats() {
    let model = ScriptedServer::start(marking(8)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let served = serve(home.path(), &model, "8");
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..8 {
        let body =
            json!({"request": format!("marking task {n}."), "repo": repo.path(), "checks": ["true"], "review": false});
        let task: Value =
            http.post(format!("{}/api/v1/tasks", served.url)).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    // Every task past its first step, none finished: then the server dies.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let listed: Value =
            http.get(format!("{}/api/v1/tasks?status=running", served.url)).send().await.unwrap().json().await.unwrap();
        let running = listed["tasks"].as_array().unwrap();
        if running.len() == 8 && running.iter().all(|t| t["next_seq"].as_u64().unwrap() > 8) {
            break;
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
    let old_url = served.url.clone();
    drop(served); // SIGKILL, and reaped

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
        let layout = baton_engine::TaskLayout::of(home.path(), &baton_core::TaskId::parse(id).unwrap());
        let disk = layout.attach_disk(None).unwrap();
        let marks = std::fs::read_to_string(layout.layer().join("hidden/root/marker")).unwrap_or_default();
        drop(disk);
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
    let served = serve(home.path(), &model, "4");
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let mut ids = Vec::new();
    for n in 0..50 {
        let body = json!({"request": format!("task {n}"), "repo": repo.path(), "checks": ["true"], "review": false});
        let task: Value = http.post(api("/tasks")).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    // A hundred subscribers to the last task, from its start.
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
        assert!(Instant::now() < deadline, "not all 50 ended verified: {done}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page: Value = http.get(api(&format!("/tasks/{}/events", ids[49]))).send().await.unwrap().json().await.unwrap();
    let journal: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seen.iter().all(|ids| *ids == journal), "every subscriber saw every event once, in order");

    let mut spans = Vec::new();
    for id in &ids {
        let page: Value = http.get(api(&format!("/tasks/{id}/events"))).send().await.unwrap().json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        let at = |kind: &str| events.iter().find(|e| e["event"]["type"] == kind).unwrap()["at"].as_i64().unwrap();
        assert_eq!(events.last().unwrap()["event"]["reason"], "verified", "{id}");
        spans.push((at("started"), at("finished")));
    }
    let most = spans.iter().map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start < e).count()).max();
    assert_eq!(most, Some(4), "never more than four at once, and four reached: {spans:?}");
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
    let http = reqwest::Client::new();
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
    let http = reqwest::Client::new();
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
    let http = reqwest::Client::new();
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
async fn a_question_is_answered_over_the_api_and_the_task_goes_on() {
    let call = common::call;
    let ask = call(
        "q",
        "ask_human",
        json!({"question": "Add or subtract?", "options": ["add", "subtract"], "why": "the name says add"}),
    );
    let mut answered = call("e", "edit_file", json!({"path": "calc.py", "old": "a - b", "new": "a + b"}));
    answered.expect =
        Expect { last_tool_result_contains: Some("The human answered: add, of course".into()), ..Expect::default() };
    let script = Script {
        turns: vec![ask, answered, call("f", "finish", json!({"summary": "add() adds"}))],
        ..Script::default()
    };
    let model = ScriptedServer::start(script).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", served.url);
    let body =
        json!({"request": "Make add() add", "repo": repo.path(), "checks": ["python3 test_calc.py"], "review": false});
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_queued_with_run_detach_is_run_by_the_server_on_the_same_home() {
    let model = ScriptedServer::start(finishing_after(0)).await.unwrap();
    let repo = common::calc_repo();
    let home = tempfile::tempdir().unwrap();
    let served = serve(home.path(), &model, "1");
    let repo_path = repo.path().display().to_string();
    let args = ["run", "Make it so", "--repo", &repo_path, "--check", "true", "--no-review", "--detach"];
    let output = Command::cargo_bin("baton")
        .unwrap()
        .args(args)
        .args(["--model", "openai-compatible/scripted"])
        .env("BATON_HOME", home.path())
        .env("BATON_CONFIG", home.path().join("config.toml"))
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::describe(&output));
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 12, "{id}");
    let http = reqwest::Client::new();
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
    let http = reqwest::Client::new();
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
    let http = reqwest::Client::new();
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
