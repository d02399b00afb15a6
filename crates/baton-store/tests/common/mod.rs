//! Helpers shared by the store's integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
#![allow(dead_code, unused_macros, unused_imports)] // each test binary uses its own part of these helpers

use baton_core::{Event, Status, StopReason, TaskId, TaskSpec, Timestamp};

pub fn created(request: &str) -> Event {
    Event::TaskCreated {
        spec: Box::new(TaskSpec::new(request, std::path::PathBuf::from("/repo"))),
        base_commit: "0".repeat(40),
        branch: "baton/test-00000000".into(),
    }
}

/// An event the state machine accepts from `status`, marked with `detail` where the event has one.
pub fn next_valid_event(status: Status, detail: String) -> Event {
    match status {
        Status::Queued => Event::Started,
        Status::Running => Event::Paused { reason: StopReason::Stuck, detail },
        _ => Event::Resumed { detail },
    }
}

pub fn at(millis: i64) -> Timestamp {
    Timestamp(millis)
}

/// A small deterministic generator, so a failing run can be repeated from its printed seed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    pub fn task_id(&mut self) -> TaskId {
        TaskId::from_entropy(self.next())
    }
}

pub fn seed() -> u64 {
    std::env::var("BATON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    })
}

/// The two stores every store test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where one test's store lives: a directory of its own (SQLite) or a database of its own in the
/// test cluster (PostgreSQL, migrated).
pub enum Place {
    Dir(tempfile::TempDir),
    Database(String),
}

impl Place {
    pub async fn new(backend: Backend) -> Place {
        match backend {
            Backend::Sqlite => Place::Dir(tempfile::tempdir().unwrap()),
            Backend::Postgres => {
                let url = baton_testkit::postgres::database().await;
                baton_store::SqlStore::migrate(&url).await.unwrap();
                Place::Database(url)
            }
        }
    }

    /// A directory or a URL, for another process to open.
    pub fn location(&self) -> String {
        match self {
            Place::Dir(dir) => dir.path().display().to_string(),
            Place::Database(url) => url.clone(),
        }
    }

    pub async fn open(&self) -> baton_store::SqlStore {
        open_at(&self.location()).await.unwrap()
    }

    /// Whether the blob `hash` is kept where this store keeps blobs.
    pub async fn holds_blob(&self, store: &baton_store::SqlStore, hash: &str) -> bool {
        match self {
            Place::Dir(dir) => dir.path().join("blobs").join(&hash[..2]).join(&hash[2..]).is_file(),
            Place::Database(_) => {
                let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(store.pool())
                    .await
                    .unwrap();
                found.is_some()
            }
        }
    }

    /// Replaces the blob's bytes, as a disk or an operator might.
    pub async fn rot_blob(&self, store: &baton_store::SqlStore, hash: &str) {
        match self {
            Place::Dir(dir) => {
                std::fs::write(dir.path().join("blobs").join(&hash[..2]).join(&hash[2..]), b"rotten").unwrap()
            }
            Place::Database(_) => {
                sqlx::query("UPDATE blobs SET bytes = $1 WHERE hash = $2")
                    .bind(&b"rotten"[..])
                    .bind(hash)
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
        }
    }
}

pub async fn open_at(location: &str) -> Result<baton_store::SqlStore, baton_store::StoreError> {
    if location.starts_with("postgres://") {
        baton_store::SqlStore::connect(location).await
    } else {
        baton_store::SqlStore::open(std::path::Path::new(location)).await
    }
}

/// A fresh store of `backend` and where it lives (dropping the place deletes a directory).
pub async fn store(backend: Backend) -> (Place, baton_store::SqlStore) {
    let place = Place::new(backend).await;
    let store = place.open().await;
    (place, store)
}

/// Runs each named `async fn(Backend)` as a test on SQLite (`sqlite::NAME`) and on PostgreSQL
/// (`postgres::NAME`).
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}
pub(crate) use on_both_stores;
