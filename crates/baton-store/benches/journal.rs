//! Journal throughput against raw SQLite, measured in the same run on the same disk.
//!
//! `cargo bench -p baton-store --bench journal` (set BATON_BENCH_EVENTS to change the journal size).
//! Each figure is printed as a ratio to a baseline that writes or reads the same bytes with plain
//! SQLite statements on a database with the same settings (WAL, synchronous=FULL).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use baton_core::{Charge, ChargeKind, Credits, Event, StopReason, TaskId, TaskSpec, Timestamp};
use baton_store::{SqlStore, Store};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const DURABLE_EVENTS: u64 = 2_000;
const BATCH: u64 = 1_000;

fn created() -> Event {
    Event::TaskCreated {
        spec: Box::new(TaskSpec::new("benchmark", std::path::PathBuf::from("/repo"))),
        base_commit: "0".repeat(40),
        branch: "baton/benchmark-00000000".into(),
    }
}

/// The event at `seq` of a task that alternates pauses and resumes after its start; about 100 bytes.
fn event_at(seq: u64) -> Event {
    let detail = format!("step {seq:08}: the agent ran the test suite and looked at the failures");
    if seq.is_multiple_of(2) { Event::Paused { reason: StopReason::Stuck, detail } } else { Event::Resumed { detail } }
}

async fn raw_pool(dir: &std::path::Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.unwrap();
    sqlx::raw_sql("CREATE TABLE raw (task_id TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (task_id, seq)) WITHOUT ROWID")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

fn per_event(elapsed: Duration, events: u64) -> String {
    format!("{:8.1} µs/event", elapsed.as_secs_f64() * 1e6 / events as f64)
}

fn report(name: &str, events: u64, baton: Duration, raw: Duration) {
    let ratio = baton.as_secs_f64() / raw.as_secs_f64();
    println!("{name:<44} baton {}  raw {}  ratio {ratio:5.2}x", per_event(baton, events), per_event(raw, events));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let replay_events: u64 = std::env::var("BATON_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&dir.path().join("baton")).await.unwrap();
    let raw = raw_pool(dir.path()).await;
    let insert_raw = "INSERT INTO raw (task_id, seq, payload) VALUES (?, ?, ?)";

    // Durable appends, one event per commit: what a running task does at every step.
    let durable = TaskId::from_entropy(1);
    store.append(&durable, 0, Timestamp(0), &[created(), Event::Started]).await.unwrap();
    let start = Instant::now();
    for seq in 2..2 + DURABLE_EVENTS {
        store.append(&durable, seq, Timestamp(seq as i64), &[event_at(seq)]).await.unwrap();
    }
    let baton_durable = start.elapsed();
    let start = Instant::now();
    for seq in 2..2 + DURABLE_EVENTS {
        let payload = serde_json::to_string(&event_at(seq)).unwrap();
        sqlx::query(insert_raw).bind(durable.as_str()).bind(seq as i64).bind(payload).execute(&raw).await.unwrap();
    }
    let raw_durable = start.elapsed();
    report(&format!("durable append, 1 event/commit ({DURABLE_EVENTS})"), DURABLE_EVENTS, baton_durable, raw_durable);

    // A charged step: the previous action settled and the next one held, in one commit, on an
    // account whose ledger already has 100,000 entries; against the same commits without money.
    let ledger_rows: i64 = 100_000;
    let mut tx = store.pool().begin().await.unwrap();
    for n in 0..ledger_rows {
        sqlx::query("INSERT INTO entries (at, kind, amount, task_id, key, note) VALUES (?, 'charge:output', -1, NULL, NULL, '')")
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let charges = |n: i64| vec![Charge { kind: ChargeKind::Output, amount: Credits::from_micros(1000 + n) }];
    let (plain, charged) = (TaskId::from_entropy(3), TaskId::from_entropy(4));
    for task in [&plain, &charged] {
        store.append(task, 0, Timestamp(0), &[created(), Event::Started]).await.unwrap();
    }
    store
        .append(&charged, 2, Timestamp(2), &[Event::Reserved { key: "k1".into(), charges: charges(1) }])
        .await
        .unwrap();
    let start = Instant::now();
    for step in 0..DURABLE_EVENTS {
        let feedback = |n: u64| Event::Feedback { text: format!("step {n:08}: the agent looked at the failures") };
        store.append(&plain, 2 + 2 * step, Timestamp(0), &[feedback(step), feedback(step + 1)]).await.unwrap();
    }
    let without_money = start.elapsed();
    let start = Instant::now();
    for step in 1..=DURABLE_EVENTS as i64 {
        let events = [
            Event::Settled { key: format!("k{step}"), charges: charges(step) },
            Event::Reserved { key: format!("k{}", step + 1), charges: charges(step + 1) },
        ];
        store.append(&charged, 1 + 2 * step as u64, Timestamp(step), &events).await.unwrap();
    }
    let with_money = start.elapsed();
    let ratio = with_money.as_secs_f64() / without_money.as_secs_f64();
    println!(
        "{:<44} money {}  plain {}  ratio {ratio:5.2}x",
        format!("charged step, settle + hold/commit ({DURABLE_EVENTS})"),
        per_event(with_money, DURABLE_EVENTS),
        per_event(without_money, DURABLE_EVENTS)
    );

    // Batched appends build the large journal that replay reads back.
    let big = TaskId::from_entropy(2);
    store.append(&big, 0, Timestamp(0), &[created(), Event::Started]).await.unwrap();
    let start = Instant::now();
    let mut seq = 2;
    while seq < replay_events {
        let end = (seq + BATCH).min(replay_events);
        let batch: Vec<Event> = (seq..end).map(event_at).collect();
        seq = store.append(&big, seq, Timestamp(seq as i64), &batch).await.unwrap();
    }
    let baton_batched = start.elapsed();
    let start = Instant::now();
    let mut seq = 0;
    while seq < replay_events {
        let end = (seq + BATCH).min(replay_events);
        let mut tx = raw.begin().await.unwrap();
        for s in seq..end {
            let payload = serde_json::to_string(&event_at(s)).unwrap();
            sqlx::query(insert_raw).bind(big.as_str()).bind(s as i64).bind(payload).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        seq = end;
    }
    let raw_batched = start.elapsed();
    report(
        &format!("batched append, {BATCH} events/commit ({replay_events})"),
        replay_events,
        baton_batched,
        raw_batched,
    );

    // Replay: read every event, decode it, fold the task; against reading the same payloads.
    let start = Instant::now();
    let state = store.load(&big).await.unwrap();
    let baton_replay = start.elapsed();
    assert_eq!(state.next_seq, replay_events);
    let start = Instant::now();
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload FROM raw WHERE task_id = ? ORDER BY seq")
        .bind(big.as_str())
        .fetch_all(&raw)
        .await
        .unwrap();
    let raw_replay = start.elapsed();
    assert_eq!(payloads.len() as u64, replay_events);
    report(&format!("replay: read + decode + fold ({replay_events})"), replay_events, baton_replay, raw_replay);
    println!("replay of {replay_events} events took {:.3} s", baton_replay.as_secs_f64());
}
