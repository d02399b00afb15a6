//! Schedules, kept by name as the JSON of their definitions, and their firings. A schedule's
//! cursor is the time up to which its firings have been considered; moving it and recording the
//! firings it passed is one transaction that names the cursor it expects, so two servers (or a
//! server and its own restart) never take the same firing.

use baton_core::{Firing, FiringOutcome, NoticeKind, Schedule, Timestamp};
use sqlx::{Row, SqlitePool};

use crate::SavedSchedule;
use crate::error::StoreError;
use crate::notices;

const COLUMNS: &str = "name, definition, paused, cursor, resumed_at, created_at";

fn schedule_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<SavedSchedule, StoreError> {
    let name: String = row.try_get("name")?;
    let text: String = row.try_get("definition")?;
    let schedule: Schedule = serde_json::from_str(&text)
        .map_err(|error| StoreError::CorruptSchedule { name: name.clone(), reason: error.to_string() })?;
    Ok(SavedSchedule {
        schedule,
        paused: row.try_get("paused")?,
        cursor: Timestamp(row.try_get("cursor")?),
        resumed_at: Timestamp(row.try_get("resumed_at")?),
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

fn firing_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Firing, StoreError> {
    let schedule: String = row.try_get("schedule")?;
    let outcome: String = row.try_get("outcome")?;
    let outcome = outcome
        .parse::<FiringOutcome>()
        .map_err(|reason| StoreError::CorruptSchedule { name: schedule.clone(), reason })?;
    Ok(Firing {
        schedule,
        at: Timestamp(row.try_get("at")?),
        outcome,
        task: row.try_get("task")?,
        detail: row.try_get("detail")?,
        recorded_at: Timestamp(row.try_get("recorded_at")?),
    })
}

pub(crate) async fn add(pool: &SqlitePool, schedule: &Schedule, at: Timestamp) -> Result<(), StoreError> {
    let text = serde_json::to_string(schedule)
        .map_err(|error| StoreError::CorruptSchedule { name: schedule.name.clone(), reason: error.to_string() })?;
    let inserted = sqlx::query(
        "INSERT INTO schedules (name, definition, paused, cursor, resumed_at, created_at) \
         VALUES (?, ?, NULL, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&schedule.name)
    .bind(text)
    .bind(at.as_millis())
    .bind(at.as_millis())
    .bind(at.as_millis())
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::ScheduleExists(schedule.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(pool: &SqlitePool) -> Result<Vec<SavedSchedule>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules ORDER BY name")).fetch_all(pool).await?;
    rows.iter().map(schedule_from_row).collect()
}

pub(crate) async fn one(pool: &SqlitePool, name: &str) -> Result<SavedSchedule, StoreError> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE name = ?")).bind(name).fetch_optional(pool).await?;
    match row {
        Some(row) => schedule_from_row(&row),
        None => Err(StoreError::NoSuchSchedule(name.to_owned())),
    }
}

pub(crate) async fn delete(pool: &SqlitePool, name: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let deleted = sqlx::query("DELETE FROM schedules WHERE name = ?").bind(name).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NoSuchSchedule(name.to_owned()));
    }
    sqlx::query("DELETE FROM firings WHERE schedule = ?").bind(name).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// With a `schedule.paused` notice in the same transaction, so a subscriber always hears of it.
pub(crate) async fn pause(
    pool: &SqlitePool,
    name: &str,
    reason: &str,
    at: Timestamp,
) -> Result<SavedSchedule, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let updated =
        sqlx::query("UPDATE schedules SET paused = ? WHERE name = ?").bind(reason).bind(name).execute(&mut *tx).await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NoSuchSchedule(name.to_owned()));
    }
    let told = format!("schedule {name} paused: {reason}");
    notices::add(&mut tx, NoticeKind::SchedulePaused, None, &told, at).await?;
    tx.commit().await?;
    one(pool, name).await
}

/// Firings that fell due while it was paused were not wanted: the cursor moves past them, and
/// the runs that failed before do not count towards the next pause.
pub(crate) async fn resume(pool: &SqlitePool, name: &str, at: Timestamp) -> Result<SavedSchedule, StoreError> {
    let updated = sqlx::query(
        "UPDATE schedules SET paused = NULL, cursor = MAX(cursor, ?1), resumed_at = ?1 \
         WHERE name = ?2 AND paused IS NOT NULL",
    )
    .bind(at.as_millis())
    .bind(name)
    .execute(pool)
    .await?;
    let saved = one(pool, name).await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::ScheduleNotPaused(name.to_owned()));
    }
    Ok(saved)
}

pub(crate) async fn advance(
    pool: &SqlitePool,
    name: &str,
    from: Timestamp,
    to: Timestamp,
    firings: &[Firing],
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let moved = sqlx::query("UPDATE schedules SET cursor = ? WHERE name = ? AND cursor = ? AND paused IS NULL")
        .bind(to.as_millis())
        .bind(name)
        .bind(from.as_millis())
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() == 0 {
        return Err(StoreError::ScheduleChanged(name.to_owned()));
    }
    for firing in firings {
        sqlx::query("INSERT INTO firings (schedule, at, outcome, task, detail, recorded_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(name)
            .bind(firing.at.as_millis())
            .bind(firing.outcome.as_str())
            .bind(&firing.task)
            .bind(&firing.detail)
            .bind(firing.recorded_at.as_millis())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn settle(
    pool: &SqlitePool,
    name: &str,
    at: Timestamp,
    outcome: FiringOutcome,
    detail: &str,
) -> Result<(), StoreError> {
    let updated =
        sqlx::query("UPDATE firings SET outcome = ?, detail = ? WHERE schedule = ? AND at = ? AND outcome = ?")
            .bind(outcome.as_str())
            .bind(detail)
            .bind(name)
            .bind(at.as_millis())
            .bind(FiringOutcome::Claimed.as_str())
            .execute(pool)
            .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::ScheduleChanged(name.to_owned()));
    }
    Ok(())
}

/// Which firings a query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firings {
    All,
    /// Those that started (or tried to start) a task: not the skipped ones.
    Runs,
}

pub(crate) async fn list(
    pool: &SqlitePool,
    name: &str,
    which: Firings,
    since: Timestamp,
    limit: u32,
) -> Result<Vec<Firing>, StoreError> {
    let filter = match which {
        Firings::All => "",
        Firings::Runs => "AND outcome <> 'skipped'",
    };
    let rows = sqlx::query(&format!(
        "SELECT schedule, at, outcome, task, detail, recorded_at FROM firings \
         WHERE schedule = ? AND at >= ? {filter} ORDER BY at DESC LIMIT ?"
    ))
    .bind(name)
    .bind(since.as_millis())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(firing_from_row).collect()
}
