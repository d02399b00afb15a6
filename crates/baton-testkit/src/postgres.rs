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
