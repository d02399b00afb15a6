//! The account, kept in step with the journals: a task's `reserved` and `settled` events hold and
//! charge credits in the same transaction that appends them, after the account's policy admits the
//! hold. Concurrent tasks serialise on the account's row (SQLite's write lock, PostgreSQL's row
//! lock), so every admission sees every hold.

use baton_core::{Charge, Credits, Entry, EntryKind, Month, Policy, Position, TaskId, Timestamp, total};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// The account's position at `at`, read on the caller's connection: one row, whatever the
/// size of the ledger (the month's totals are kept running; a new month starts from zero).
///
/// `locking` ends the read of the account's row: `Db::for_update` inside a transaction
/// that writes after it, nothing for a read alone (which then takes no lock at all).
pub(crate) async fn position(conn: &mut AnyConnection, locking: &str, at: Timestamp) -> Result<Position, StoreError> {
    // One statement, so a read alone sees the balance and the holds of one moment.
    let row = sqlx::query(&format!(
        "SELECT policy, balance, month, month_spent, month_reloads, \
         (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM reservations) AS reserved \
         FROM account WHERE id = 1{locking}"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let corrupt = |e: serde_json::Error| StoreError::CorruptAccount(e.to_string());
    let policy: Policy = serde_json::from_str(&row.try_get::<String, _>("policy")?).map_err(corrupt)?;
    let month: Month = serde_json::from_str(&row.try_get::<String, _>("month")?).map_err(corrupt)?;
    let stored = Position {
        policy,
        balance: Credits::from_micros(row.try_get("balance")?),
        reserved: Credits::from_micros(row.try_get("reserved")?),
        month,
        spent_this_month: Credits::from_micros(row.try_get("month_spent")?),
        reloads_this_month: row.try_get::<i64, _>("month_reloads")? as u32,
    };
    Ok(stored.in_month(Month::of(at).max(month)))
}

/// Writes one entry and keeps the account row and `position` in step.
pub(crate) async fn insert_entry(
    conn: &mut AnyConnection,
    position: &mut Position,
    entry: &Entry,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO entries (at, kind, amount, task_id, key, note) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(entry.at.as_millis())
        .bind(entry.kind.to_string())
        .bind(entry.amount.micros())
        .bind(&entry.task)
        .bind(&entry.key)
        .bind(&entry.note)
        .execute(&mut *conn)
        .await?;
    position.apply(entry.at, entry.kind, entry.amount);
    let month = serde_json::to_string(&position.month).map_err(|e| StoreError::CorruptAccount(e.to_string()))?;
    sqlx::query("UPDATE account SET balance = $1, month = $2, month_spent = $3, month_reloads = $4 WHERE id = 1")
        .bind(position.balance.micros())
        .bind(month)
        .bind(position.spent_this_month.micros())
        .bind(i64::from(position.reloads_this_month))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Holds credits for `key`, after the policy admits it (an auto-reload first, if it says so).
pub(crate) async fn reserve(
    conn: &mut AnyConnection,
    position: &mut Position,
    task: &TaskId,
    at: Timestamp,
    key: &str,
    charges: &[Charge],
) -> Result<(), StoreError> {
    let amount = total(charges);
    if charges.iter().any(|c| c.amount < Credits::ZERO) {
        return Err(unbalanced(task, format!("reservation `{key}` holds a negative amount")));
    }
    let reload = position.admit(at, amount).map_err(|refusal| StoreError::Refused { task: task.clone(), refusal })?;
    if let Some(reload) = reload {
        let entry = Entry {
            at,
            kind: EntryKind::AutoReload,
            amount: reload,
            task: Some(task.to_string()),
            key: Some(key.to_owned()),
            note: "auto-reload: the available credits fell below the threshold".to_owned(),
        };
        insert_entry(conn, position, &entry).await?;
    }
    let inserted = sqlx::query("INSERT INTO reservations (task_id, key, amount, at) VALUES ($1, $2, $3, $4) ON CONFLICT (task_id, key) DO NOTHING")
        .bind(task.as_str())
        .bind(key)
        .bind(amount.micros())
        .bind(at.as_millis())
        .execute(&mut *conn)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(unbalanced(task, format!("reservation `{key}` is already held")));
    }
    position.reserved = Credits::from_micros(position.reserved.micros() + amount.micros());
    Ok(())
}

/// Releases the hold of `key` and charges what the action cost.
pub(crate) async fn settle(
    conn: &mut AnyConnection,
    position: &mut Position,
    task: &TaskId,
    at: Timestamp,
    key: &str,
    charges: &[Charge],
) -> Result<(), StoreError> {
    let held: Option<i64> =
        sqlx::query_scalar("DELETE FROM reservations WHERE task_id = $1 AND key = $2 RETURNING amount")
            .bind(task.as_str())
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    let held = held.ok_or_else(|| unbalanced(task, format!("settles `{key}`, which is not held")))?;
    position.reserved = Credits::from_micros(position.reserved.micros() - held);
    for charge in charges {
        if charge.amount < Credits::ZERO {
            return Err(unbalanced(task, format!("settlement `{key}` charges a negative amount")));
        }
        let entry = Entry {
            at,
            kind: EntryKind::Charge(charge.kind),
            amount: Credits::from_micros(-charge.amount.micros()),
            task: Some(task.to_string()),
            key: Some(key.to_owned()),
            note: String::new(),
        };
        insert_entry(conn, position, &entry).await?;
    }
    Ok(())
}

fn unbalanced(task: &TaskId, reason: String) -> StoreError {
    StoreError::Unbalanced { task: task.clone(), reason }
}

pub(crate) fn entry_from_row(row: &AnyRow) -> Result<Entry, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Entry {
        at: Timestamp(row.try_get("at")?),
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StoreError::CorruptAccount(format!("unknown entry kind `{kind}`")))?,
        amount: Credits::from_micros(row.try_get("amount")?),
        task: row.try_get("task_id")?,
        key: row.try_get("key")?,
        note: row.try_get("note")?,
    })
}
