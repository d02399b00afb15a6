//! The database under the store: a pool of SQLite or PostgreSQL connections behind sqlx's `Any`
//! driver, so that every query is written once (with `$N` placeholders, which both read), and the
//! few places where the two dialects must differ: how a writer takes its turn, and how a read
//! keeps the rows it read from changing before it writes.

use sqlx::{Any, AnyConnection, AnyPool, Transaction};

use crate::error::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

/// What PostgreSQL's transaction-scoped advisory locks serialise.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Turn {
    /// Notices are numbered in the order they commit: a subscription's cursor must never pass a
    /// number whose notice is still to commit.
    Notices,
    /// One migration at a time, across every process.
    Migration,
}

impl Turn {
    /// The lock's key: arbitrary, but fixed forever ("baton" and a number).
    fn key(self) -> i64 {
        match self {
            Turn::Notices => 0x6261_746f_6e01,
            Turn::Migration => 0x6261_746f_6e02,
        }
    }
}

impl Db {
    /// A transaction for a read and the write that depends on it. SQLite takes its write lock at
    /// once, so the pair is one step even across processes; PostgreSQL locks the rows read with
    /// [`Db::for_update`] and serialises the rest with [`Db::take_turn`].
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// What a read inside [`Db::begin`]'s transaction ends with when its rows must stay as read
    /// until the transaction ends. Locks are taken in one order everywhere — a task, its lease,
    /// the account, then a [`Turn`] — so two writers never wait for each other.
    pub fn for_update(&self) -> &'static str {
        self.dialect.for_update()
    }
}

/// The channel on which PostgreSQL tells listeners that a task became runnable.
pub(crate) const RUNNABLE: &str = "baton_runnable";

impl Dialect {
    /// Tells every listener, once the transaction commits, that `task` may be run.
    pub async fn announce_runnable(self, tx: &mut AnyConnection, task: &str) -> Result<(), StoreError> {
        if self == Dialect::Postgres {
            // In FROM, as with the advisory lock: `pg_notify` returns `void`.
            sqlx::query("SELECT 1 FROM pg_notify($1, $2)").bind(RUNNABLE).bind(task).execute(&mut *tx).await?;
        }
        Ok(())
    }

    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Waits, inside a transaction, until no other transaction holds `turn` (released when this
    /// one ends). SQLite's write lock already serialises every writer.
    pub async fn take_turn(self, tx: &mut AnyConnection, turn: Turn) -> Result<(), StoreError> {
        if self == Dialect::Postgres {
            // In FROM: the function returns `void`, a type the `Any` driver cannot read.
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)").bind(turn.key()).execute(&mut *tx).await?;
        }
        Ok(())
    }
}
