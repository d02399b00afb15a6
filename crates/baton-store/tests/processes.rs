//! Several real processes on one journal, on SQLite and on PostgreSQL: writers killed with SIGKILL
//! mid-append, and two writers racing for the same slots. The child processes are this test
//! binary run again with `child`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::env;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use baton_core::{Event, Lifecycle, Status, StopReason, TaskId, fold};
use baton_store::{BlobHash, INLINE_PAYLOAD_LIMIT, SqlStore, Store, StoreError};
use common::{Backend, Place, Rng, at, created, next_valid_event, on_both_stores, seed};

const ROLE: &str = "BATON_TEST_ROLE";
/// The store's directory or URL.
const STORE: &str = "BATON_TEST_STORE";
/// Where the racers wait for the word to go.
const SIGNALS: &str = "BATON_TEST_SIGNALS";
/// Starts each line a racer reports on.
const MARK: &str = "@racer ";

/// The body of the child processes; not a test of its own, so it only runs when asked for.
#[tokio::test]
#[ignore = "run as a child process by the crash and race tests"]
async fn child() {
    let store = common::open_at(&env::var(STORE).unwrap()).await.unwrap();
    let signals = PathBuf::from(env::var(SIGNALS).unwrap());
    let role = env::var(ROLE).unwrap();
    let mut parts = role.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("appender"), Some(seed), None, None) => append_until_killed(&store, Rng(seed.parse().unwrap())).await,
        (Some("racer"), Some(name), Some(task), Some(slots)) => {
            while !signals.join("go").exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            race(&store, name, &TaskId::parse(task).unwrap(), slots.parse().unwrap()).await
        }
        _ => panic!("unknown role {role}"),
    }
}

fn spawn_child(place: &Place, signals: &Path, role: String) -> Child {
    Command::new(env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(STORE, place.location())
        .env(SIGNALS, signals)
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Creates tasks and walks them through pauses and resumes, in batches, some with payloads large
/// enough for the blob store, until it is killed.
async fn append_until_killed(store: &SqlStore, mut rng: Rng) {
    let mut clock = 0;
    loop {
        let id = rng.task_id();
        let request_len = if rng.below(4) == 0 { INLINE_PAYLOAD_LIMIT + rng.below(50_000) as usize } else { 20 };
        let mut next = store.append(&id, 0, at(clock), &[created(&"r".repeat(request_len))]).await.unwrap();
        let mut lifecycle = Lifecycle::CREATED;
        for _ in 0..rng.below(12) {
            let batch: Vec<Event> = (0..1 + rng.below(3))
                .map(|_| {
                    let detail_len = if rng.below(8) == 0 { INLINE_PAYLOAD_LIMIT + 1 } else { 8 };
                    let event = next_valid_event(lifecycle.status, "d".repeat(detail_len));
                    lifecycle = lifecycle.apply(&event).unwrap();
                    event
                })
                .collect();
            clock += 1;
            next = store.append(&id, next, at(clock), &batch).await.unwrap();
        }
    }
}

/// Tries every slot in order, each with an event marked with this writer's name, and reports which
/// it won and which it lost to the other writer.
async fn race(store: &SqlStore, name: &str, task: &TaskId, slots: u64) {
    for seq in 2..2 + slots {
        let detail = format!("{name}-{seq}");
        let event =
            if seq % 2 == 0 { Event::Paused { reason: StopReason::Stuck, detail } } else { Event::Resumed { detail } };
        match store.append(task, seq, at(seq as i64), &[event]).await {
            Ok(_) => println!("{MARK}won {seq}"),
            Err(StoreError::Conflict { .. }) => println!("{MARK}lost {seq}"),
            Err(other) => panic!("{name} at {seq}: {other}"),
        }
    }
}

/// SQLite's own file says it is intact, and every blob file is whole.
async fn sqlite_intact(store: &SqlStore, home: &Path, round: u64) {
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
    assert_eq!(integrity, "ok", "round {round}");
    for shard in std::fs::read_dir(home.join("blobs")).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue; // a write the kill interrupted before its rename: never referenced
            }
            let shard_name = path.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            let hash = BlobHash::parse(&format!("{shard_name}{name}")).unwrap();
            assert_eq!(BlobHash::of(&std::fs::read(&path).unwrap()), hash, "round {round}: torn blob {path:?}");
        }
    }
}

/// Everything a reader must find after a crash: an intact database, whole blobs, every journal
/// contiguous and in step with its summary, and room to append.
async fn verify_after_crash(place: &Place, round: u64) -> usize {
    let store = place.open().await;
    if let Place::Dir(home) = place {
        sqlite_intact(&store, home.path(), round).await;
    }
    let tasks = store.list(None).await.unwrap();
    for summary in &tasks {
        let journal = store.events(&summary.id, 0).await.unwrap();
        let seqs: Vec<u64> = journal.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..summary.next_seq).collect::<Vec<_>>(), "round {round}: task {}", summary.id);
        let state = fold(summary.id.clone(), &journal).unwrap();
        assert_eq!(state.lifecycle, Lifecycle { status: summary.status, stop_reason: summary.stop_reason });
    }
    // Appending continues where the journal ends, on the newest task.
    if let Some(summary) = tasks.first() {
        let event = next_valid_event(summary.status, format!("after crash {round}"));
        let next = store.append(&summary.id, summary.next_seq, at(0), &[event]).await.unwrap();
        assert_eq!(next, summary.next_seq + 1);
    }
    store.pool().close().await;
    tasks.len()
}

async fn a_writer_killed_at_random_moments_never_tears_the_journal(backend: Backend) {
    let seed = seed();
    println!("seed {seed} (set BATON_TEST_SEED to repeat)");
    let mut rng = Rng(seed);
    let place = Place::new(backend).await;
    place.open().await.pool().close().await;
    let signals = tempfile::tempdir().unwrap();

    let mut tasks = 0;
    for round in 0..50 {
        // Scrambled, or the child's generator would replay the parent's and reuse earlier task ids.
        let child_seed = rng.next().wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut child = spawn_child(&place, signals.path(), format!("appender:{child_seed}"));
        tokio::time::sleep(Duration::from_millis(20 + rng.below(200))).await;
        child.kill().unwrap(); // SIGKILL: no destructor, no rollback, no flush
        child.wait().unwrap();
        tasks = verify_after_crash(&place, round).await;
    }
    assert!(tasks >= 50, "the writer made too little progress to prove anything: {tasks} tasks");
}

async fn two_processes_racing_for_the_same_slots_never_both_win(backend: Backend) {
    const SLOTS: u64 = 200;
    let place = Place::new(backend).await;
    let signals = tempfile::tempdir().unwrap();
    let id = Rng(seed()).task_id();
    {
        let store = place.open().await;
        store.append(&id, 0, at(0), &[created("race"), Event::Started]).await.unwrap();
        store.pool().close().await;
    }
    let racers: Vec<(&str, Child)> = ["a", "b"]
        .into_iter()
        .map(|name| (name, spawn_child(&place, signals.path(), format!("racer:{name}:{id}:{SLOTS}"))))
        .collect();
    std::fs::write(signals.path().join("go"), b"").unwrap();

    let mut winners: BTreeMap<u64, &str> = BTreeMap::new();
    let mut losses = 0;
    for (name, child) in racers {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "racer {name} failed");
        for line in String::from_utf8(output.stdout).unwrap().lines() {
            // libtest's "test child ... " may share a line with the first report.
            let Some((_, report)) = line.split_once(MARK) else { continue };
            match report.split_once(' ') {
                Some(("won", seq)) => {
                    let previous = winners.insert(seq.parse().unwrap(), name);
                    assert_eq!(previous, None, "slot {seq} was won twice");
                }
                Some(("lost", _)) => losses += 1,
                _ => {}
            }
        }
    }
    assert_eq!(winners.keys().copied().collect::<Vec<_>>(), (2..2 + SLOTS).collect::<Vec<_>>());
    assert_eq!(losses, SLOTS, "every slot has exactly one loser");

    let store = place.open().await;
    let journal = store.events(&id, 2).await.unwrap();
    for recorded in journal {
        let (Event::Paused { detail, .. } | Event::Resumed { detail }) = &recorded.event else {
            panic!("unexpected {:?}", recorded.event);
        };
        assert_eq!(
            *detail,
            format!("{}-{}", winners[&recorded.seq], recorded.seq),
            "the journal holds the winner's event"
        );
    }
    assert_eq!(store.load(&id).await.unwrap().next_seq, 2 + SLOTS);
    assert_eq!(store.load(&id).await.unwrap().status(), Status::Running);
}

on_both_stores!(
    a_writer_killed_at_random_moments_never_tears_the_journal,
    two_processes_racing_for_the_same_slots_never_both_win,
);
