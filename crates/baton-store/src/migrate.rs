//! Versioned schema migrations, one numbered list per dialect. Each entry runs once, in order,
//! inside the transaction that records it; a database newer than this binary is refused rather
//! than guessed at. SQLite (one machine's own file) is brought up to date when opened; PostgreSQL,
//! shared by processes on many machines that may run different releases during an upgrade, only
//! by `baton migrate`, and every process checks at start that it knows the schema it finds.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::db::{Db, Dialect, Turn};
use crate::error::StoreError;

const SQLITE: &[&str] = &[
    // 1: tasks (a summary per task, kept in step with the journal) and the journal itself.
    r#"
    CREATE TABLE tasks (
        id          TEXT PRIMARY KEY,
        request     TEXT NOT NULL,
        branch      TEXT NOT NULL,
        status      TEXT NOT NULL,
        stop_reason TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        next_seq    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX tasks_by_created_at ON tasks (created_at);
    CREATE TABLE events (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        seq     INTEGER NOT NULL,
        v       INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        at      INTEGER NOT NULL,
        payload TEXT,
        blob    TEXT,
        PRIMARY KEY (task_id, seq)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 2: the account: its policy, running balance and the running totals of its latest month, its
    // ledger of entries, and the credits held by reservations of actions in flight.
    r#"
    CREATE TABLE account (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        policy        TEXT NOT NULL,
        balance       INTEGER NOT NULL,
        month         TEXT NOT NULL,
        month_spent   INTEGER NOT NULL,
        month_reloads INTEGER NOT NULL
    ) STRICT;
    INSERT INTO account (id, policy, balance, month, month_spent, month_reloads)
        VALUES (1, '{"monthly_cap":null,"auto_reload":null,"overage":true}', 0, '{"year":1970,"month":1}', 0, 0);
    CREATE TABLE entries (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        amount  INTEGER NOT NULL,
        task_id TEXT REFERENCES tasks (id),
        key     TEXT,
        note    TEXT NOT NULL
    ) STRICT;
    CREATE INDEX entries_by_at ON entries (at);
    CREATE TABLE reservations (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        key     TEXT NOT NULL,
        amount  INTEGER NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (task_id, key)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 3: leases: who runs a task, until when, and the epoch that fences a holder that lost it.
    r#"
    CREATE TABLE leases (
        task_id    TEXT PRIMARY KEY REFERENCES tasks (id),
        holder     TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    "#,
    // 4: the API's bearer tokens, by the SHA-256 of their secrets (never the secrets).
    r#"
    CREATE TABLE tokens (
        name       TEXT PRIMARY KEY,
        scope      TEXT NOT NULL,
        hash       BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;
    "#,
    // 5: follow-ups from the user, numbered per task, waiting for a run to journal them.
    r#"
    CREATE TABLE follow_ups (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        number  INTEGER NOT NULL,
        text    TEXT NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (task_id, number)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 6: templates, saved task definitions by name.
    r#"
    CREATE TABLE templates (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    "#,
    // 7: schedules (the cursor: up to when their firings have been considered) and their firings.
    r#"
    CREATE TABLE schedules (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        paused     TEXT,
        cursor     INTEGER NOT NULL,
        resumed_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE firings (
        schedule    TEXT NOT NULL,
        at          INTEGER NOT NULL,
        outcome     TEXT NOT NULL,
        task        TEXT,
        detail      TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (schedule, at)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 8: incoming hooks and every delivery to them; `claimed` holds the sender's delivery id of a
    // verified delivery, once, so that a redelivery is known.
    r#"
    CREATE TABLE hooks (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        secret     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE deliveries (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        hook        TEXT NOT NULL,
        delivery    TEXT NOT NULL,
        claimed     TEXT,
        event       TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        status      INTEGER NOT NULL,
        detail      TEXT NOT NULL,
        task        TEXT,
        received_at INTEGER NOT NULL,
        UNIQUE (hook, claimed)
    ) STRICT;
    "#,
    // 9: notices in the order they happened (written with the events that make them), the
    // subscriptions that send them out, and every notification queued, sent or given up on.
    r#"
    CREATE TABLE notices (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        kind    TEXT NOT NULL,
        task_id TEXT,
        detail  TEXT NOT NULL,
        at      INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE subscriptions (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        secret     TEXT NOT NULL,
        cursor     INTEGER NOT NULL,
        failures   INTEGER NOT NULL,
        disabled   TEXT,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE notifications (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        subscription TEXT NOT NULL,
        notice       INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        state        TEXT NOT NULL,
        attempts     INTEGER NOT NULL,
        next_at      INTEGER NOT NULL,
        last_error   TEXT,
        created_at   INTEGER NOT NULL,
        delivered_at INTEGER,
        UNIQUE (subscription, notice)
    ) STRICT;
    CREATE INDEX notifications_due ON notifications (state, next_at);
    "#,
    // 10: a task's priority and owner beside its status, so that the next task to run is chosen by
    // one query; filled in for tasks made before from their first event.
    r#"
    ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN owner TEXT;
    UPDATE tasks SET
        priority = COALESCE((SELECT json_extract(payload, '$.spec.priority') FROM events
                             WHERE events.task_id = tasks.id AND seq = 0), 0),
        owner = (SELECT json_extract(payload, '$.spec.owner') FROM events WHERE events.task_id = tasks.id AND seq = 0);
    CREATE INDEX tasks_by_status ON tasks (status);
    "#,
];

const POSTGRES: &[&str] = &[
    // 1: everything of SQLite's 1 to 10 (tasks and their journal, the account, leases, tokens,
    // follow-ups, templates, schedules, hooks, notices), and the blobs, kept in the database so
    // that every machine reads them.
    r#"
    CREATE TABLE tasks (
        id          TEXT PRIMARY KEY,
        request     TEXT NOT NULL,
        branch      TEXT NOT NULL,
        status      TEXT NOT NULL,
        stop_reason TEXT,
        created_at  BIGINT NOT NULL,
        updated_at  BIGINT NOT NULL,
        next_seq    BIGINT NOT NULL,
        priority    BIGINT NOT NULL DEFAULT 0,
        owner       TEXT
    );
    CREATE INDEX tasks_by_created_at ON tasks (created_at);
    CREATE INDEX tasks_by_status ON tasks (status);
    CREATE TABLE events (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        seq     BIGINT NOT NULL,
        v       BIGINT NOT NULL,
        kind    TEXT NOT NULL,
        at      BIGINT NOT NULL,
        payload TEXT,
        blob    TEXT,
        PRIMARY KEY (task_id, seq)
    );
    CREATE TABLE blobs (
        hash  TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL
    );
    CREATE TABLE account (
        id            BIGINT PRIMARY KEY CHECK (id = 1),
        policy        TEXT NOT NULL,
        balance       BIGINT NOT NULL,
        month         TEXT NOT NULL,
        month_spent   BIGINT NOT NULL,
        month_reloads BIGINT NOT NULL
    );
    INSERT INTO account (id, policy, balance, month, month_spent, month_reloads)
        VALUES (1, '{"monthly_cap":null,"auto_reload":null,"overage":true}', 0, '{"year":1970,"month":1}', 0, 0);
    CREATE TABLE entries (
        id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at      BIGINT NOT NULL,
        kind    TEXT NOT NULL,
        amount  BIGINT NOT NULL,
        task_id TEXT REFERENCES tasks (id),
        key     TEXT,
        note    TEXT NOT NULL
    );
    CREATE INDEX entries_by_at ON entries (at);
    CREATE TABLE reservations (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        key     TEXT NOT NULL,
        amount  BIGINT NOT NULL,
        at      BIGINT NOT NULL,
        PRIMARY KEY (task_id, key)
    );
    CREATE TABLE leases (
        task_id    TEXT PRIMARY KEY REFERENCES tasks (id),
        holder     TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE TABLE tokens (
        name       TEXT PRIMARY KEY,
        scope      TEXT NOT NULL,
        hash       BYTEA NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE TABLE follow_ups (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        number  BIGINT NOT NULL,
        text    TEXT NOT NULL,
        at      BIGINT NOT NULL,
        PRIMARY KEY (task_id, number)
    );
    CREATE TABLE templates (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE schedules (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        paused     TEXT,
        cursor     BIGINT NOT NULL,
        resumed_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE firings (
        schedule    TEXT NOT NULL,
        at          BIGINT NOT NULL,
        outcome     TEXT NOT NULL,
        task        TEXT,
        detail      TEXT NOT NULL,
        recorded_at BIGINT NOT NULL,
        PRIMARY KEY (schedule, at)
    );
    CREATE TABLE hooks (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        secret     TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE deliveries (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        hook        TEXT NOT NULL,
        delivery    TEXT NOT NULL,
        claimed     TEXT,
        event       TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        status      BIGINT NOT NULL,
        detail      TEXT NOT NULL,
        task        TEXT,
        received_at BIGINT NOT NULL,
        UNIQUE (hook, claimed)
    );
    CREATE TABLE notices (
        seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind    TEXT NOT NULL,
        task_id TEXT,
        detail  TEXT NOT NULL,
        at      BIGINT NOT NULL
    );
    CREATE TABLE subscriptions (
        name       TEXT PRIMARY KEY,
        definition TEXT NOT NULL,
        secret     TEXT NOT NULL,
        cursor     BIGINT NOT NULL,
        failures   BIGINT NOT NULL,
        disabled   TEXT,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE notifications (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subscription TEXT NOT NULL,
        notice       BIGINT NOT NULL,
        kind         TEXT NOT NULL,
        payload      TEXT NOT NULL,
        state        TEXT NOT NULL,
        attempts     BIGINT NOT NULL,
        next_at      BIGINT NOT NULL,
        last_error   TEXT,
        created_at   BIGINT NOT NULL,
        delivered_at BIGINT,
        UNIQUE (subscription, notice)
    );
    CREATE INDEX notifications_due ON notifications (state, next_at);
    "#,
];

/// What a migration did: the schema version it found and the one it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

fn migrations(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

const SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS baton_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

async fn version(tx: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM baton_schema").fetch_one(&mut *tx).await?)
}

/// Brings the schema up to this binary's version.
pub(crate) async fn migrate(db: &Db) -> Result<Migrated, StoreError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut tx = db.begin().await?;
    db.dialect.take_turn(&mut tx, Turn::Migration).await?;
    sqlx::query(SCHEMA_TABLE).execute(&mut *tx).await?;
    let current = version(&mut tx).await?;
    let list = migrations(db.dialect);
    let known = list.len() as i64;
    if current > known {
        return Err(StoreError::NewerSchema { found: current, known });
    }
    for (version, sql) in (1_i64..).zip(list).skip(current as usize) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO baton_schema (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Migrated { from: current, to: known })
}

/// Refuses a schema this binary does not know exactly: a newer one (upgrade baton) or an older
/// one (run `baton migrate`).
pub(crate) async fn check(db: &Db) -> Result<(), StoreError> {
    let mut connection = db.pool.acquire().await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT CAST(to_regclass('baton_schema') AS TEXT)").fetch_one(&mut *connection).await?;
    let current = if exists.is_some() { version(&mut connection).await? } else { 0 };
    let known = migrations(db.dialect).len() as i64;
    match current.cmp(&known) {
        std::cmp::Ordering::Greater => Err(StoreError::NewerSchema { found: current, known }),
        std::cmp::Ordering::Less => Err(StoreError::OlderSchema { found: current, known }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}
