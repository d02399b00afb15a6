use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use baton_core::{
    Credits, Delivery, DeliveryOutcome, Entry, EntryKind, Event, Firing, FiringOutcome, FoldError, Hook, Lifecycle,
    Notice, NoticeKind, Notification, NotificationState, Policy, Position, Recorded, Schedule, Status, StopReason,
    Subscription, TaskId, Template, Timestamp, Token, TokenHash,
};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Connection, Executor, Row};

use crate::account;
use crate::blob::{BlobHash, BlobStore, Blobs};
use crate::codec::{self, EVENT_COLUMNS, EventRow};
use crate::db::{Db, Dialect};
use crate::error::StoreError;
use crate::migrate::{self, Migrated};
use crate::{
    Claim, Firings, SavedHook, SavedSchedule, SavedSubscription, hooks, notices, schedules, templates, tokens,
};
use crate::{FollowUp, Lease, NextClaim, Store, TaskSummary};

/// The store on SQL: embedded, `<home>/baton.db` (SQLite in WAL mode, every commit synced to
/// disk) and `<home>/blobs/`; or shared by every machine, a PostgreSQL database (blobs in a table
/// of it).
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Db,
    blobs: Blobs,
    /// PostgreSQL's URL, for the connection that listens (outside the pool: it stays open).
    listen_url: Option<String>,
}

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl SqlStore {
    /// Appends `events` at `expected_seq`, under `lease` when one is given (see [`Store::append_leased`]).
    async fn append_checked(
        &self,
        task: &TaskId,
        expected_seq: u64,
        at: Timestamp,
        events: &[Event],
        lease: Option<&Lease>,
    ) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(expected_seq);
        }
        let mut encoded = Vec::with_capacity(events.len());
        for event in events {
            encoded.push(codec::encode(task, event, &self.blobs, &self.db.pool).await?);
        }

        // The task's row is read (and in PostgreSQL locked) first, so the seq check and the insert
        // are one step even across processes; then its lease, then the account.
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(&format!("SELECT {SUMMARY_COLUMNS} FROM tasks WHERE id = $1{}", self.db.for_update()))
            .bind(task.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let current = row.as_ref().map(summary_from_row).transpose()?;
        if current.is_none() && expected_seq != 0 {
            return Err(StoreError::NotFound(task.to_string()));
        }
        if let Some(lease) = lease {
            let held: Option<(String, i64)> =
                sqlx::query_as(&format!("SELECT holder, epoch FROM leases WHERE task_id = $1{}", self.db.for_update()))
                    .bind(task.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if held != Some((lease.holder.clone(), lease.epoch as i64)) {
                return Err(StoreError::Fenced {
                    task: task.clone(),
                    holder: lease.holder.clone(),
                    epoch: lease.epoch,
                });
            }
        }
        let actual = current.as_ref().map_or(0, |s| s.next_seq);
        if actual != expected_seq {
            return Err(StoreError::Conflict { task: task.clone(), expected: expected_seq, actual });
        }

        let rejected = |seq, source| StoreError::Rejected { task: task.clone(), seq, source };
        let mut lifecycle = current.as_ref().map(|s| Lifecycle { status: s.status, stop_reason: s.stop_reason });
        // Read (and locked) before any notice takes its turn, and only when money moves: most
        // appends move none.
        let mut position = match events.iter().any(|e| matches!(e, Event::Reserved { .. } | Event::Settled { .. })) {
            true => Some(account::position(&mut tx, self.db.for_update(), at).await?),
            false => None,
        };
        for ((seq, event), encoded) in (expected_seq..).zip(events).zip(&encoded) {
            lifecycle = Some(match (lifecycle, event) {
                (None, Event::TaskCreated { spec, branch, .. }) => {
                    // A writer that created it meanwhile (PostgreSQL: it committed while this
                    // one waited) made this insert nothing.
                    let created = sqlx::query(
                        "INSERT INTO tasks (id, request, branch, status, stop_reason, created_at, updated_at, next_seq, \
                         priority, owner) VALUES ($1, $2, $3, $4, NULL, $5, $6, 0, $7, $8) ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(task.as_str())
                    .bind(&spec.request)
                    .bind(branch)
                    .bind(Status::Queued.as_str())
                    .bind(at.as_millis())
                    .bind(at.as_millis())
                    .bind(i64::from(spec.priority))
                    .bind(&spec.owner)
                    .execute(&mut *tx)
                    .await?;
                    if created.rows_affected() == 0 {
                        return Err(StoreError::Conflict { task: task.clone(), expected: 0, actual: 1 });
                    }
                    Lifecycle::CREATED
                }
                (None, other) => return Err(rejected(seq, FoldError::NotCreatedFirst(other.kind()))),
                (Some(lifecycle), event) => {
                    lifecycle.apply(event).map_err(|source| rejected(seq, FoldError::Transition { seq, source }))?
                }
            });
            match event {
                Event::Reserved { key, charges } | Event::Settled { key, charges } => {
                    let Some(position) = &mut position else {
                        unreachable!("the position is read for every append that moves money")
                    };
                    if matches!(event, Event::Reserved { .. }) {
                        account::reserve(&mut tx, position, task, at, key, charges).await?;
                    } else {
                        let before = *position;
                        account::settle(&mut tx, position, task, at, key, charges).await?;
                        if let Some(why) = position.low_since(&before) {
                            let dialect = self.db.dialect;
                            notices::add(&mut tx, dialect, NoticeKind::BudgetLow, Some(task.as_str()), &why, at)
                                .await?;
                        }
                    }
                }
                _ => {}
            }
            // In the same transaction: no notice is lost, none told of an event not kept.
            if let Some((kind, detail)) = NoticeKind::of(event) {
                notices::add(&mut tx, self.db.dialect, kind, Some(task.as_str()), &detail, at).await?;
            }
            sqlx::query(
                "INSERT INTO events (task_id, seq, v, kind, at, payload, blob) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(task.as_str())
            .bind(seq as i64)
            .bind(i64::from(baton_core::EVENT_SCHEMA_VERSION))
            .bind(encoded.kind)
            .bind(at.as_millis())
            .bind(&encoded.payload)
            .bind(&encoded.blob)
            .execute(&mut *tx)
            .await?;
        }
        let lifecycle = lifecycle.unwrap_or(Lifecycle::CREATED);
        let was = current.as_ref().map(|s| s.status);
        if was != Some(lifecycle.status) && is_runnable(lifecycle.status) {
            self.db.dialect.announce_runnable(&mut tx, task.as_str()).await?;
        }
        let next_seq = expected_seq + events.len() as u64;
        sqlx::query("UPDATE tasks SET status = $1, stop_reason = $2, updated_at = $3, next_seq = $4 WHERE id = $5")
            .bind(lifecycle.status.as_str())
            .bind(lifecycle.stop_reason.map(StopReason::as_str))
            .bind(at.as_millis())
            .bind(next_seq as i64)
            .bind(task.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(next_seq)
    }

    /// Takes the lease of `task`, whose row the transaction has locked, for `holder` if it is free,
    /// expired or already `holder`'s (renewed, same epoch); `None` while another holder has it.
    async fn lease_locked(
        &self,
        tx: &mut sqlx::AnyConnection,
        task: &TaskId,
        holder: &str,
        at: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let current: Option<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT holder, epoch, expires_at FROM leases WHERE task_id = $1{}",
            self.db.for_update()
        ))
        .bind(task.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let epoch = match current {
            Some((owner, epoch, _)) if owner == holder => epoch,
            Some((_, epoch, expires_at)) if expires_at <= at.as_millis() => epoch + 1,
            Some(_) => return Ok(None),
            None => 1,
        };
        let expires_at = at.as_millis() + ttl_ms;
        sqlx::query(
            "INSERT INTO leases (task_id, holder, epoch, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (task_id) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_at = excluded.expires_at",
        )
        .bind(task.as_str())
        .bind(holder)
        .bind(epoch)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        Ok(Some(Lease {
            task: task.clone(),
            holder: holder.to_owned(),
            epoch: epoch as u64,
            expires_at: Timestamp(expires_at),
        }))
    }

    /// The next task [`Store::claim_next`] would run, its row locked (rows other transactions
    /// hold are passed over in PostgreSQL); `None` when there is none.
    async fn next_runnable(
        &self,
        tx: &mut sqlx::AnyConnection,
        next: &NextClaim<'_>,
        skip: &[TaskId],
    ) -> Result<Option<TaskId>, StoreError> {
        let skipped = match skip.len() {
            0 => String::new(),
            n => format!("AND t.id NOT IN ({})", (3..3 + n).map(|k| format!("${k}")).collect::<Vec<_>>().join(", ")),
        };
        let locking = match self.db.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE OF t SKIP LOCKED",
        };
        // `live`: each owner's tasks with a live lease; `waiting`: tasks no live lease holds,
        // each numbered among its owner's waiting tasks of its kind (interrupted or queued).
        let sql = format!(
            "WITH live AS (
                SELECT t.owner, COUNT(*) AS n FROM tasks t JOIN leases l ON l.task_id = t.id
                WHERE l.expires_at > $1 GROUP BY t.owner
             ), waiting AS (
                SELECT t.id, t.owner, t.priority, t.created_at,
                       CASE WHEN t.status = 'queued' THEN 1 ELSE 0 END AS queued,
                       ROW_NUMBER() OVER (
                           PARTITION BY t.owner, CASE WHEN t.status = 'queued' THEN 1 ELSE 0 END
                           ORDER BY t.created_at, t.id
                       ) AS nth
                FROM tasks t LEFT JOIN leases l ON l.task_id = t.id
                WHERE t.status IN ('queued', 'running', 'verifying', 'reviewing')
                  AND (l.expires_at IS NULL OR l.expires_at <= $1) {skipped}
             )
             SELECT t.id FROM tasks t
             JOIN waiting w ON w.id = t.id
             LEFT JOIN live ON live.owner IS NOT DISTINCT FROM w.owner
             WHERE w.queued = 0 OR w.owner IS NULL OR COALESCE(live.n, 0) < $2
             ORDER BY w.queued, w.priority DESC, COALESCE(live.n, 0) + w.nth, w.created_at, w.id
             LIMIT 1{locking}"
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql)
            .bind(next.at.as_millis())
            .bind(next.per_owner.map_or(i64::MAX, i64::from));
        for task in skip {
            query = query.bind(task.as_str());
        }
        let Some(id) = query.fetch_optional(&mut *tx).await? else { return Ok(None) };
        TaskId::parse(&id).map(Some).map_err(|e| StoreError::CorruptSummary { task: id, reason: e.to_string() })
    }

    /// Locks the task's row until the transaction ends; [`StoreError::NotFound`] if there is none.
    async fn lock_task(&self, tx: &mut sqlx::AnyConnection, task: &TaskId) -> Result<(), StoreError> {
        let exists: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 FROM tasks WHERE id = $1{}", self.db.for_update()))
                .bind(task.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        exists.map(|_| ()).ok_or_else(|| StoreError::NotFound(task.to_string()))
    }

    /// Opens (creating if needed) the SQLite store in `home`, applying any pending migrations.
    pub async fn open(home: &Path) -> Result<SqlStore, StoreError> {
        let store = SqlStore::sqlite(home).await?;
        migrate::migrate(&store.db).await?;
        Ok(store)
    }

    async fn sqlite(home: &Path) -> Result<SqlStore, StoreError> {
        let blob_dir = home.join("blobs");
        fs::create_dir_all(&blob_dir).map_err(|source| StoreError::DataDir { path: blob_dir.clone(), source })?;
        probe_writable(home)?;
        let path = home.join("baton.db");
        sqlx::any::install_default_drivers();
        let url = SqliteConnectOptions::new().filename(&path).create_if_missing(true).to_url_lossy();
        let options =
            AnyConnectOptions::from_url(&url).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // WAL lets readers go on while one process writes; FULL syncs every commit.
                    let pragmas = format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                         PRAGMA busy_timeout = {};",
                        BUSY_TIMEOUT.as_millis()
                    );
                    connection.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        let store = SqlStore {
            db: Db { pool, dialect: Dialect::Sqlite },
            blobs: Blobs::Files(std::sync::Arc::new(BlobStore::new(blob_dir))),
            listen_url: None,
        };
        Ok(store)
    }

    /// Opens the SQLite store in `home` as [`SqlStore::open`] does; what its migration found and
    /// left.
    pub async fn open_migrated(home: &Path) -> Result<Migrated, StoreError> {
        migrate::migrate(&SqlStore::sqlite(home).await?.db).await
    }

    /// Connects to the PostgreSQL store at `url`, whose schema must be this binary's (see
    /// [`SqlStore::migrate`]).
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        let store = SqlStore::postgres(url).await?;
        migrate::check(&store.db).await?;
        Ok(store)
    }

    /// Brings the PostgreSQL store at `url` to this binary's schema; what it found and left.
    pub async fn migrate(url: &str) -> Result<Migrated, StoreError> {
        let store = SqlStore::postgres(url).await?;
        migrate::migrate(&store.db).await
    }

    async fn postgres(url: &str) -> Result<SqlStore, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::NotPostgres(redacted(url)));
        }
        sqlx::any::install_default_drivers();
        let unreachable = |source| StoreError::Connect { url: redacted(url), source };
        // One connection first: the pool would retry a refused one until its timeout, and a
        // mistyped address should be told at once.
        sqlx::AnyConnection::connect(url).await.map_err(unreachable)?.close().await.map_err(unreachable)?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // A process frozen inside a transaction (stopped, swapped out, partitioned)
                    // would hold its rows locked, and claims pass locked rows by: the server ends
                    // such a session, so its tasks can be taken over once their leases expire.
                    connection.execute("SET idle_in_transaction_session_timeout = '10s'").await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(unreachable)?;
        Ok(SqlStore {
            db: Db { pool, dialect: Dialect::Postgres },
            blobs: Blobs::Table,
            listen_url: Some(url.to_owned()),
        })
    }

    /// The pool, for tests and benchmarks that need to look under the store's abstraction.
    pub fn pool(&self) -> &AnyPool {
        &self.db.pool
    }
}

/// `url` without its password, to be shown.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unreadable URL)".to_owned(),
    }
}

/// Wakes `wake` at each announcement of a runnable task until the connection fails; the failure.
async fn listen(url: &str, wake: &tokio::sync::Notify) -> sqlx::Error {
    let mut listener = match sqlx::postgres::PgListener::connect(url).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(crate::db::RUNNABLE).await {
        return error;
    }
    // What was announced while no one listened is found by the next claim.
    wake.notify_one();
    loop {
        if let Err(error) = listener.recv().await {
            return error;
        }
        wake.notify_one();
    }
}

/// Whether a task in `status` is one a scheduler takes up.
fn is_runnable(status: Status) -> bool {
    matches!(status, Status::Queued | Status::Running | Status::Verifying | Status::Reviewing)
}

/// SQLite reports an unwritable directory as "unable to open database file"; find out first and
/// name the directory and the reason instead.
fn probe_writable(home: &Path) -> Result<(), StoreError> {
    let probe: PathBuf = home.join(format!(".write-probe-{}", std::process::id()));
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|source| StoreError::DataDir { path: home.to_owned(), source })
}

fn summary_from_row(row: &AnyRow) -> Result<TaskSummary, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::CorruptSummary { task: id.clone(), reason };
    let status: String = row.try_get("status")?;
    let stop_reason: Option<String> = row.try_get("stop_reason")?;
    Ok(TaskSummary {
        id: TaskId::parse(&id).map_err(|e| corrupt(e.to_string()))?,
        request: row.try_get("request")?,
        branch: row.try_get("branch")?,
        status: status.parse::<Status>().map_err(|e| corrupt(e.to_string()))?,
        stop_reason: stop_reason.map(|r| r.parse::<StopReason>()).transpose().map_err(|e| corrupt(e.to_string()))?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        next_seq: row.try_get::<i64, _>("next_seq")? as u64,
    })
}

const SUMMARY_COLUMNS: &str = "id, request, branch, status, stop_reason, created_at, updated_at, next_seq";

#[async_trait]
impl Store for SqlStore {
    async fn append(
        &self,
        task: &TaskId,
        expected_seq: u64,
        at: Timestamp,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        self.append_checked(task, expected_seq, at, events, None).await
    }

    async fn append_leased(
        &self,
        lease: &Lease,
        expected_seq: u64,
        at: Timestamp,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        self.append_checked(&lease.task, expected_seq, at, events, Some(lease)).await
    }

    async fn claim(
        &self,
        task: &TaskId,
        holder: &str,
        at: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        // The task's row is locked first (as an append locks it), so two claimants of a task that
        // never had a lease do not both insert one.
        let mut tx = self.db.begin().await?;
        self.lock_task(&mut tx, task).await?;
        let lease = self.lease_locked(&mut tx, task, holder, at, ttl_ms).await?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn claim_next(&self, next: &NextClaim<'_>) -> Result<Option<Lease>, StoreError> {
        let mut skip = next.skip.to_vec();
        // A task whose lease another process took between this one's choice and its lock (a
        // PostgreSQL read sees what committed before it began) is passed over; there are few.
        for _ in 0..8 {
            let mut tx = self.db.begin().await?;
            let Some(task) = self.next_runnable(&mut tx, next, &skip).await? else { return Ok(None) };
            if let Some(lease) = self.lease_locked(&mut tx, &task, next.holder, next.at, next.ttl_ms).await? {
                tx.commit().await?;
                return Ok(Some(lease));
            }
            skip.push(task);
        }
        Ok(None)
    }

    async fn live_leases(&self, at: Timestamp) -> Result<Vec<Lease>, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT task_id, holder, epoch, expires_at FROM leases WHERE expires_at > $1 ORDER BY task_id",
        )
        .bind(at.as_millis())
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter()
            .map(|(task, holder, epoch, expires_at)| {
                let task = TaskId::parse(&task)
                    .map_err(|e| StoreError::CorruptSummary { task: task.clone(), reason: e.to_string() })?;
                Ok(Lease { task, holder, epoch: epoch as u64, expires_at: Timestamp(expires_at) })
            })
            .collect()
    }

    async fn renew(&self, lease: &Lease, at: Timestamp, ttl_ms: i64) -> Result<Option<Lease>, StoreError> {
        let expires_at = at.as_millis() + ttl_ms;
        let renewed =
            sqlx::query("UPDATE leases SET expires_at = $1 WHERE task_id = $2 AND holder = $3 AND epoch = $4")
                .bind(expires_at)
                .bind(lease.task.as_str())
                .bind(&lease.holder)
                .bind(lease.epoch as i64)
                .execute(&self.db.pool)
                .await?;
        Ok((renewed.rows_affected() == 1).then(|| Lease { expires_at: Timestamp(expires_at), ..lease.clone() }))
    }

    async fn lease(&self, task: &TaskId) -> Result<Option<Lease>, StoreError> {
        let row: Option<(String, i64, i64)> =
            sqlx::query_as("SELECT holder, epoch, expires_at FROM leases WHERE task_id = $1")
                .bind(task.as_str())
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(row.map(|(holder, epoch, expires_at)| Lease {
            task: task.clone(),
            holder,
            epoch: epoch as u64,
            expires_at: Timestamp(expires_at),
        }))
    }

    async fn take_over(
        &self,
        stale: &Lease,
        holder: &str,
        at: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        let (epoch, expires_at) = (stale.epoch + 1, at.as_millis() + ttl_ms);
        let taken = sqlx::query(
            "UPDATE leases SET holder = $1, epoch = $2, expires_at = $3 WHERE task_id = $4 AND holder = $5 AND epoch = $6",
        )
        .bind(holder)
        .bind(epoch as i64)
        .bind(expires_at)
        .bind(stale.task.as_str())
        .bind(&stale.holder)
        .bind(stale.epoch as i64)
        .execute(&self.db.pool)
        .await?;
        Ok((taken.rows_affected() == 1).then(|| Lease {
            task: stale.task.clone(),
            holder: holder.to_owned(),
            epoch,
            expires_at: Timestamp(expires_at),
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        // Expired rather than deleted: the epoch only ever grows.
        let mut tx = self.db.begin().await?;
        let released =
            sqlx::query("UPDATE leases SET expires_at = 0 WHERE task_id = $1 AND holder = $2 AND epoch = $3")
                .bind(lease.task.as_str())
                .bind(&lease.holder)
                .bind(lease.epoch as i64)
                .execute(&mut *tx)
                .await?;
        // A task let go while it still runs (its process stopping) is for another to go on with.
        if released.rows_affected() == 1 {
            self.db.dialect.announce_runnable(&mut tx, lease.task.as_str()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn watch_runnable(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        let Some(url) = self.listen_url.clone() else { return };
        tokio::spawn(async move {
            loop {
                let error = listen(&url, &wake).await;
                eprintln!("store: not listening for runnable tasks ({error}); trying again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    async fn events(&self, task: &TaskId, from_seq: u64) -> Result<Vec<Recorded>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE task_id = $1 AND seq >= $2 ORDER BY seq"
        ))
        .bind(task.as_str())
        .bind(from_seq as i64)
        .fetch_all(&self.db.pool)
        .await?;
        if rows.is_empty() {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tasks WHERE id = $1")
                .bind(task.as_str())
                .fetch_optional(&self.db.pool)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(task.to_string()));
            }
        }
        let mut recorded = Vec::with_capacity(rows.len());
        for row in rows {
            recorded.push(codec::decode(task, row, &self.blobs, &self.db.pool).await?);
        }
        Ok(recorded)
    }

    async fn list(&self, status: Option<Status>) -> Result<Vec<TaskSummary>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM tasks WHERE $1 IS NULL OR status = $1 ORDER BY created_at DESC, id"
        ))
        .bind(status.map(Status::as_str))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn resolve(&self, prefix: &str) -> Result<TaskId, StoreError> {
        // Only id characters reach the query, so the prefix cannot carry LIKE wildcards.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StoreError::NotFound(prefix.to_owned()));
        }
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tasks WHERE id LIKE $1 || '%' ORDER BY id LIMIT 2")
            .bind(prefix)
            .fetch_all(&self.db.pool)
            .await?;
        let parse = |id: &String| {
            TaskId::parse(id).map_err(|e| StoreError::CorruptSummary { task: id.clone(), reason: e.to_string() })
        };
        match ids.as_slice() {
            [] => Err(StoreError::NotFound(prefix.to_owned())),
            [only] => parse(only),
            [first, second, ..] => {
                Err(StoreError::Ambiguous { prefix: prefix.to_owned(), first: parse(first)?, second: parse(second)? })
            }
        }
    }

    async fn account(&self, at: Timestamp) -> Result<Position, StoreError> {
        // A read alone: no write lock (SQLite) or row lock (PostgreSQL) behind the writers.
        let mut connection = self.db.pool.acquire().await?;
        account::position(&mut connection, "", at).await
    }

    async fn set_policy(&self, policy: Policy) -> Result<(), StoreError> {
        let text = serde_json::to_string(&policy).map_err(|e| StoreError::CorruptAccount(e.to_string()))?;
        sqlx::query("UPDATE account SET policy = $1 WHERE id = 1").bind(text).execute(&self.db.pool).await?;
        Ok(())
    }

    async fn credit(
        &self,
        at: Timestamp,
        kind: EntryKind,
        amount: Credits,
        note: &str,
    ) -> Result<Position, StoreError> {
        if !matches!(kind, EntryKind::Grant | EntryKind::TopUp) || amount <= Credits::ZERO {
            return Err(StoreError::CorruptAccount(format!(
                "a credit is a positive grant or top-up, not {kind} of {amount}"
            )));
        }
        let mut tx = self.db.begin().await?;
        let mut position = account::position(&mut tx, self.db.for_update(), at).await?;
        let entry = Entry { at, kind, amount, task: None, key: None, note: note.to_owned() };
        account::insert_entry(&mut tx, &mut position, &entry).await?;
        tx.commit().await?;
        Ok(position)
    }

    async fn entries(&self, limit: u32) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query("SELECT at, kind, amount, task_id, key, note FROM entries ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(account::entry_from_row).collect()
    }

    async fn send_follow_up(&self, task: &TaskId, at: Timestamp, text: &str) -> Result<u64, StoreError> {
        let mut tx = self.db.begin().await?;
        self.lock_task(&mut tx, task).await?;
        let number: i64 = sqlx::query_scalar(
            "INSERT INTO follow_ups (task_id, number, text, at) \
             SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3 FROM follow_ups WHERE task_id = $1 RETURNING number",
        )
        .bind(task.as_str())
        .bind(text)
        .bind(at.as_millis())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(number as u64)
    }

    async fn follow_ups(&self, task: &TaskId, after: u64) -> Result<Vec<FollowUp>, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT number, text, at FROM follow_ups WHERE task_id = $1 AND number > $2 ORDER BY number",
        )
        .bind(task.as_str())
        .bind(after as i64)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(number, text, at)| FollowUp { number: number as u64, text, at: Timestamp(at) })
            .collect())
    }

    async fn add_token(&self, token: &Token, hash: &TokenHash) -> Result<(), StoreError> {
        tokens::add(&self.db, token, hash).await
    }

    async fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        tokens::all(&self.db).await
    }

    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<Token, StoreError> {
        tokens::revoke(&self.db, name, at).await
    }

    async fn token(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        tokens::active(&self.db, hash).await
    }

    async fn add_template(&self, template: &Template, at: Timestamp) -> Result<(), StoreError> {
        templates::add(&self.db, template, at).await
    }

    async fn templates(&self) -> Result<Vec<Template>, StoreError> {
        templates::all(&self.db).await
    }

    async fn template(&self, name: &str) -> Result<Template, StoreError> {
        templates::one(&self.db, name).await
    }

    async fn delete_template(&self, name: &str) -> Result<(), StoreError> {
        templates::delete(&self.db, name).await
    }

    async fn add_schedule(&self, schedule: &Schedule, at: Timestamp) -> Result<(), StoreError> {
        schedules::add(&self.db, schedule, at).await
    }

    async fn schedules(&self) -> Result<Vec<SavedSchedule>, StoreError> {
        schedules::all(&self.db).await
    }

    async fn schedule(&self, name: &str) -> Result<SavedSchedule, StoreError> {
        schedules::one(&self.db, name).await
    }

    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        schedules::delete(&self.db, name).await
    }

    async fn pause_schedule(&self, name: &str, reason: &str, at: Timestamp) -> Result<SavedSchedule, StoreError> {
        schedules::pause(&self.db, name, reason, at).await
    }

    async fn resume_schedule(&self, name: &str, at: Timestamp) -> Result<SavedSchedule, StoreError> {
        schedules::resume(&self.db, name, at).await
    }

    async fn advance_schedule(
        &self,
        name: &str,
        from: Timestamp,
        to: Timestamp,
        firings: &[Firing],
    ) -> Result<(), StoreError> {
        schedules::advance(&self.db, name, from, to, firings).await
    }

    async fn settle_firing(
        &self,
        name: &str,
        at: Timestamp,
        outcome: FiringOutcome,
        detail: &str,
    ) -> Result<(), StoreError> {
        schedules::settle(&self.db, name, at, outcome, detail).await
    }

    async fn firings(
        &self,
        name: &str,
        which: Firings,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<Firing>, StoreError> {
        schedules::list(&self.db, name, which, since, limit).await
    }

    async fn add_hook(&self, hook: &Hook, secret: &str, at: Timestamp) -> Result<(), StoreError> {
        hooks::add(&self.db, hook, secret, at).await
    }

    async fn hooks(&self) -> Result<Vec<SavedHook>, StoreError> {
        hooks::all(&self.db).await
    }

    async fn hook(&self, name: &str) -> Result<SavedHook, StoreError> {
        hooks::one(&self.db, name).await
    }

    async fn delete_hook(&self, name: &str) -> Result<(), StoreError> {
        hooks::delete(&self.db, name).await
    }

    async fn log_delivery(&self, delivery: &Delivery) -> Result<i64, StoreError> {
        hooks::log(&self.db, delivery).await
    }

    async fn claim_delivery(&self, delivery: &Delivery) -> Result<Claim, StoreError> {
        hooks::claim(&self.db, delivery).await
    }

    async fn settle_delivery(
        &self,
        seq: i64,
        outcome: DeliveryOutcome,
        status: u16,
        detail: &str,
        task: Option<&str>,
    ) -> Result<(), StoreError> {
        hooks::settle(&self.db, seq, outcome, status, detail, task).await
    }

    async fn deliveries(&self, hook: Option<&str>, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        hooks::list(&self.db, hook, limit).await
    }

    async fn notices(&self, after: i64, limit: u32) -> Result<Vec<Notice>, StoreError> {
        notices::after(&self.db, after, limit).await
    }

    async fn subscribe(&self, subscription: &Subscription, secret: &str, at: Timestamp) -> Result<(), StoreError> {
        notices::subscribe(&self.db, subscription, secret, at).await
    }

    async fn subscriptions(&self) -> Result<Vec<SavedSubscription>, StoreError> {
        notices::all(&self.db).await
    }

    async fn subscription(&self, name: &str) -> Result<SavedSubscription, StoreError> {
        notices::one(&self.db, name).await
    }

    async fn unsubscribe(&self, name: &str) -> Result<(), StoreError> {
        notices::unsubscribe(&self.db, name).await
    }

    async fn enqueue(&self, name: &str, from: i64, to: i64, notifications: &[Notification]) -> Result<(), StoreError> {
        notices::enqueue(&self.db, name, from, to, notifications).await
    }

    async fn due_notifications(&self, at: Timestamp, limit: u32) -> Result<Vec<Notification>, StoreError> {
        notices::due(&self.db, at, limit).await
    }

    async fn notifications(&self, subscription: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError> {
        notices::list(&self.db, subscription, limit).await
    }

    async fn notification_attempted(
        &self,
        seq: i64,
        state: NotificationState,
        next_at: Timestamp,
        error: Option<&str>,
        at: Timestamp,
        disable_after: u32,
    ) -> Result<(), StoreError> {
        notices::attempted(&self.db, seq, state, next_at, error, at, disable_after).await
    }

    async fn put_blob(&self, bytes: &[u8]) -> Result<BlobHash, StoreError> {
        self.blobs.put(&self.db.pool, bytes).await
    }

    async fn get_blob(&self, hash: &BlobHash) -> Result<Vec<u8>, StoreError> {
        self.blobs.get(&self.db.pool, hash).await.map_err(|reason| StoreError::Blob { hash: hash.to_string(), reason })
    }
}
