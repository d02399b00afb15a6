//! Fresh PostgreSQL databases for tests, in the throwaway cluster `scripts/test` starts (from
//! Debian's packages, as an unprivileged user, under a temporary directory) and names in
//! `BATON_TEST_POSTGRES`.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection};

/// The variable that holds the cluster's URL (its `postgres` database).
pub const CLUSTER: &str = "BATON_TEST_POSTGRES";

/// The cluster's URL; panics, naming what starts one, when there is none.
pub fn cluster() -> String {
    std::env::var(CLUSTER).unwrap_or_else(|_| {
        panic!("{CLUSTER} must name a PostgreSQL cluster (postgres://…); scripts/test starts a throwaway one")
    })
}

/// Creates an empty database of its own for one test and returns its URL.
pub async fn database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let cluster = cluster();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = format!("t{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut connection = PgConnection::connect(&cluster).await.unwrap_or_else(|e| panic!("{CLUSTER}: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    connection.close().await.ok();
    let mut url = url::Url::parse(&cluster).unwrap_or_else(|e| panic!("{CLUSTER}: {e}"));
    url.set_path(&name);
    url.to_string()
}

/// A PostgreSQL cluster of its own, started by `scripts/postgres` with durability on (every commit
/// synced, as SQLite's `synchronous=FULL` is), for benchmarks; stopped when dropped.
#[derive(Debug)]
pub struct DurableCluster {
    dir: tempfile::TempDir,
    /// Its `postgres` database.
    pub url: String,
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

impl DurableCluster {
    pub fn start() -> DurableCluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a directory for the cluster: {e}"));
        let started = std::process::Command::new(script())
            .args(["start", &dir.path().display().to_string()])
            .env("BATON_PG_DURABLE", "1")
            .output()
            .unwrap_or_else(|e| panic!("scripts/postgres: {e}"));
        assert!(started.status.success(), "scripts/postgres: {}", String::from_utf8_lossy(&started.stderr));
        let url = String::from_utf8_lossy(&started.stdout).trim().to_owned();
        DurableCluster { dir, url }
    }

    /// A new empty database in it; its URL.
    pub async fn database(&self, name: &str) -> String {
        let mut connection = PgConnection::connect(&self.url).await.unwrap_or_else(|e| panic!("{}: {e}", self.url));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let mut url = url::Url::parse(&self.url).unwrap_or_else(|e| panic!("{}: {e}", self.url));
        url.set_path(name);
        url.to_string()
    }
}

impl Drop for DurableCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script()).args(["stop", &self.dir.path().display().to_string()]).status();
    }
}
