//! The store on PostgreSQL against the store on SQLite, in the same run on the same disk: a durable
//! append (one event per commit) and a claim of the next task (`claim_next`) among a thousand
//! queued ones. Both stores sync every commit: SQLite with `synchronous=FULL`, a cluster of its
//! own started by `scripts/postgres` with `fsync` and synchronous commits on, over loopback TCP.
//!
//! `cargo bench -p baton-store --bench postgres`

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a panic is the failure report

use std::time::{Duration, Instant};

use baton_core::{Event, StopReason, TaskId, TaskSpec, Timestamp};
use baton_store::{NextClaim, SqlStore, Store};

const APPENDS: u64 = 2_000;
const QUEUED: u64 = 1_000;
const CLAIMS: u64 = 500;

fn created(n: u64) -> Event {
    let mut spec = TaskSpec::new("benchmark", std::path::PathBuf::from("/repo"));
    spec.owner = Some(format!("owner-{}", n % 5));
    spec.priority = (n % 3) as i32;
    Event::TaskCreated { spec: Box::new(spec), base_commit: "0".repeat(40), branch: format!("baton/b-{n:08}") }
}

/// About 100 bytes, as a step's events are.
fn event_at(seq: u64) -> Event {
    let detail = format!("step {seq:08}: the agent ran the test suite and looked at the failures");
    if seq.is_multiple_of(2) { Event::Paused { reason: StopReason::Stuck, detail } } else { Event::Resumed { detail } }
}

/// Per-operation latency of `APPENDS` durable appends of one event each.
async fn appends(store: &SqlStore) -> Duration {
    let id = TaskId::from_entropy(1);
    store.append(&id, 0, Timestamp(0), &[created(0), Event::Started]).await.unwrap();
    let started = Instant::now();
    for seq in 2..2 + APPENDS {
        store.append(&id, seq, Timestamp(seq as i64), &[event_at(seq)]).await.unwrap();
    }
    started.elapsed() / APPENDS as u32
}

/// Per-claim latency of `CLAIMS` claims among `QUEUED` queued tasks of five owners.
async fn claims(store: &SqlStore) -> Duration {
    for n in 0..QUEUED {
        store.append(&TaskId::from_entropy(1000 + n), 0, Timestamp(n as i64), &[created(n)]).await.unwrap();
    }
    let next = NextClaim { holder: "bench", at: Timestamp(1_000_000), ttl_ms: 3_600_000, per_owner: None, skip: &[] };
    let started = Instant::now();
    for _ in 0..CLAIMS {
        store.claim_next(&next).await.unwrap().unwrap();
    }
    started.elapsed() / CLAIMS as u32
}

fn report(name: &str, postgres: Duration, sqlite: Duration) {
    let ratio = postgres.as_secs_f64() / sqlite.as_secs_f64();
    println!(
        "{name:<48} postgres {:8.1} µs  sqlite {:8.1} µs  ratio {ratio:5.2}x",
        postgres.as_secs_f64() * 1e6,
        sqlite.as_secs_f64() * 1e6
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cluster = baton_testkit::postgres::DurableCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqlStore::open(dir.path()).await.unwrap();
    let url = cluster.database("bench").await;
    SqlStore::migrate(&url).await.unwrap();
    let postgres = SqlStore::connect(&url).await.unwrap();

    let (pg, lite) = (appends(&postgres).await, appends(&sqlite).await);
    report(&format!("durable append, 1 event per commit ({APPENDS})"), pg, lite);
    let (pg, lite) = (claims(&postgres).await, claims(&sqlite).await);
    report(&format!("claim_next among {QUEUED} queued ({CLAIMS} claims)"), pg, lite);
}
