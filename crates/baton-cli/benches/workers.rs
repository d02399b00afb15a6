//! Throughput of `baton worker` processes sharing one PostgreSQL store: 60 short scripted tasks
//! (one model call that finishes, a check of `true`, each in a sandbox of its own) run by 1, 2 and
//! 3 workers of one slot each, every run from a fresh database on a durable cluster of its own
//! (`scripts/postgres`, fsync on). Printed as tasks per second and as a ratio to one worker in the
//! same run. Needs what the tests need for sandboxes (root, or user namespaces).
//!
//! `cargo bench -p baton-cli --bench workers`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_core::Status;
use baton_store::{SqlStore, Store};
use baton_testkit::model::{Reply, Rule, Script, ScriptedServer, ToolCall};
use serde_json::json;

const TASKS: usize = 60;

fn baton(home: &Path, store: &str, model: &ScriptedServer) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .env("BATON_HOME", home)
        .env("BATON_CONFIG", home.join("config.toml"))
        .env("BATON_STORE", store)
        .env("OPENAI_COMPATIBLE_BASE_URL", format!("{}/v1", model.url()));
    command
}

/// Seconds for `workers` workers to run `TASKS` queued tasks to their verified ends.
async fn run(cluster: &baton_testkit::postgres::DurableCluster, workers: usize, model: &ScriptedServer) -> f64 {
    let url = cluster.database(&format!("w{workers}")).await;
    SqlStore::migrate(&url).await.unwrap();
    let store = SqlStore::connect(&url).await.unwrap();
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = baton_testkit::FixtureRepo::with_files(&[("README.md", "a repository\n")]);
    let front = scratch.path().join("front");
    std::fs::create_dir_all(&front).unwrap();
    std::fs::write(front.join("config.toml"), "").unwrap();
    for n in 0..TASKS {
        let queued = baton(&front, &url, model)
            .args(["run", &format!("task {n}"), "--repo", &repo.path().display().to_string(), "--check", "true"])
            .args(["--no-review", "--model", "openai-compatible/scripted", "--detach"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(queued.success());
    }
    let started = Instant::now();
    let mut children: Vec<Child> = (0..workers)
        .map(|k| {
            let home = scratch.path().join(format!("worker-{k}"));
            std::fs::create_dir_all(&home).unwrap();
            std::fs::write(home.join("config.toml"), "").unwrap();
            baton(&home, &url, model)
                .args(["worker", "--slots", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    while store.list(Some(Status::Done)).await.unwrap().len() < TASKS {
        for status in [Status::Paused, Status::Failed, Status::Cancelled] {
            assert!(store.list(Some(status)).await.unwrap().is_empty(), "a task is {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for child in &mut children {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let finish = ToolCall { id: "f".into(), name: "finish".into(), arguments: json!({"summary": "done"}).to_string() };
    let reply = Reply { tool_calls: vec![finish], ..Reply::default() };
    let script = Script { rules: vec![Rule { when: Default::default(), reply }], ..Script::default() };
    let model = ScriptedServer::start(script).await.unwrap();
    let cluster = baton_testkit::postgres::DurableCluster::start();
    let mut one = None;
    for workers in 1..=3 {
        let seconds = run(&cluster, workers, &model).await;
        let rate = TASKS as f64 / seconds;
        let baseline = *one.get_or_insert(rate);
        println!(
            "{workers} worker(s), 1 slot each: {TASKS} tasks in {seconds:6.1} s, {rate:5.2} tasks/s, {:4.2}x one worker",
            rate / baseline
        );
    }
}
