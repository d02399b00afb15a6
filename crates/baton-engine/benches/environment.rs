//! Time to the first model call of a task: on the host's root (nothing declared), on an
//! environment whose snapshot is built first (cold: `initialize` copies 47 MiB of Python libraries
//! into the home), and on the same environment once its snapshot exists (warm). Median of several
//! tasks each, in the same run; the host's time is the baseline.
//!
//! `cargo bench -p baton-engine --bench environment` (as root, or rootless where user namespaces
//! are allowed)

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use baton_core::{Event, TaskId};
use baton_testkit::FixtureRepo;
use baton_testkit::model::{Script, Turn};
use common::{Harness, call, turn};
use serde_json::json;

const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A repository declaring `initialize` (a different one per `variant`, so each is a cold build),
/// or nothing at all.
fn repo(initialize: Option<usize>) -> FixtureRepo {
    let declared = initialize.map(|variant| {
        format!("[environment]\ninitialize = \"mkdir -p ~/.local/lib && cp -r /usr/lib/python3 ~/.local/lib/deps # {variant}\"\n")
    });
    let mut files = vec![("README", "bench\n")];
    files.extend(declared.as_deref().map(|text| ("baton.toml", text)));
    FixtureRepo::with_files(&files)
}

/// Runs a new task on `h` until its first model call is journaled; the task then finishes.
async fn first_call(h: &Harness) -> Duration {
    let id: TaskId = h.create_with(|spec| spec.checks[0].command = "echo all tests passed".into()).await;
    let start = Instant::now();
    let mut first = None;
    h.engine()
        .run(&id, &mut |recorded| {
            if first.is_none() && matches!(recorded.event, Event::ModelCallStarted { .. }) {
                first = Some(start.elapsed());
            }
        })
        .await
        .unwrap();
    first.expect("no model call was made")
}

fn finishes(n: usize) -> Script {
    let turns: Vec<Turn> = (0..n).map(|_| turn(None, call("f", "finish", json!({"summary": "done"})))).collect();
    Script { turns, ..Script::default() }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let host = Harness::with_repo(finishes(RUNS), repo(None)).await;
    let mut host_times = Vec::new();
    for _ in 0..RUNS {
        host_times.push(first_call(&host).await);
    }
    // Cold: each task's environment differs, so each builds its snapshot first.
    let mut cold_times = Vec::new();
    for variant in 0..RUNS {
        let h = Harness::with_repo(finishes(1), repo(Some(variant))).await;
        cold_times.push(first_call(&h).await);
    }
    // Warm: one environment; the first task builds, the next ones find its snapshot.
    let warm = Harness::with_repo(finishes(RUNS + 1), repo(Some(RUNS))).await;
    first_call(&warm).await;
    let mut warm_times = Vec::new();
    for _ in 0..RUNS {
        warm_times.push(first_call(&warm).await);
    }
    let (host, cold, warm) = (median(host_times), median(cold_times), median(warm_times));
    let me = if rustix::process::geteuid().is_root() { "root" } else { "rootless" };
    println!("time to the first model call, median of {RUNS} tasks each, as {me}");
    println!("base = host (nothing declared)   {:8.1} ms  1.00x", host.as_secs_f64() * 1e3);
    println!(
        "snapshot reused (warm)           {:8.1} ms  {:.2}x host",
        warm.as_secs_f64() * 1e3,
        warm.as_secs_f64() / host.as_secs_f64()
    );
    println!(
        "snapshot built (cold, 47 MiB)    {:8.1} ms  {:.2}x host",
        cold.as_secs_f64() * 1e3,
        cold.as_secs_f64() / host.as_secs_f64()
    );
}
