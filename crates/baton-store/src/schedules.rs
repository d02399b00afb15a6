//! Schedules, kept by name as the JSON of their definitions, and their firings. A schedule's
//! cursor is the time up to which its firings have been considered; moving it and recording the
//! firings it passed is one transaction that names the cursor it expects, so two servers (or a
//! server and its own restart) never take the same firing.

use baton_core::{Firing, FiringOutcome, NoticeKind, Schedule, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Db;

use crate::SavedSchedule;
use crate::error::StoreError;
use crate::notices;

const COLUMNS: &str = "name, definition, paused, cursor, resumed_at, created_at";

fn schedule_from_row(row: &AnyRow) -> Result<SavedSchedule, StoreError> {
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

fn firing_from_row(row: &AnyRow) -> Result<Firing, StoreError> {
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

pub(crate) async fn add(db: &Db, schedule: &Schedule, at: Timestamp) -> Result<(), StoreError> {
    let text = serde_json::to_string(schedule)
        .map_err(|error| StoreError::CorruptSchedule { name: schedule.name.clone(), reason: error.to_string() })?;
    let inserted = sqlx::query(
        "INSERT INTO schedules (name, definition, paused, cursor, resumed_at, created_at) \
         VALUES ($1, $2, NULL, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&schedule.name)
    .bind(text)
    .bind(at.as_millis())
    .bind(at.as_millis())
    .bind(at.as_millis())
    .execute(&db.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::ScheduleExists(schedule.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(db: &Db) -> Result<Vec<SavedSchedule>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules ORDER BY name")).fetch_all(&db.pool).await?;
    rows.iter().map(schedule_from_row).collect()
}

pub(crate) async fn one(db: &Db, name: &str) -> Result<SavedSchedule, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM schedules WHERE name = $1"))
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        Some(row) => schedule_from_row(&row),
        None => Err(StoreError::NoSuchSchedule(name.to_owned())),
    }
}

pub(crate) async fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let deleted = sqlx::query("DELETE FROM schedules WHERE name = $1").bind(name).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NoSuchSchedule(name.to_owned()));
    }
    sqlx::query("DELETE FROM firings WHERE schedule = $1").bind(name).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// With a `schedule.paused` notice in the same transaction, so a subscriber always hears of it.
pub(crate) async fn pause(db: &Db, name: &str, reason: &str, at: Timestamp) -> Result<SavedSchedule, StoreError> {
    let mut tx = db.begin().await?;
    let updated = sqlx::query("UPDATE schedules SET paused = $1 WHERE name = $2")
        .bind(reason)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NoSuchSchedule(name.to_owned()));
    }
    let told = format!("schedule {name} paused: {reason}");
    notices::add(&mut tx, db.dialect, NoticeKind::SchedulePaused, None, &told, at).await?;
    tx.commit().await?;
    one(db, name).await
}

/// Firings that fell due while it was paused were not wanted: the cursor moves past them, and
/// the runs that failed before do not count towards the next pause.
pub(crate) async fn resume(db: &Db, name: &str, at: Timestamp) -> Result<SavedSchedule, StoreError> {
    let updated = sqlx::query(
        "UPDATE schedules SET paused = NULL, cursor = CASE WHEN cursor > $1 THEN cursor ELSE $1 END, resumed_at = $1 \
         WHERE name = $2 AND paused IS NOT NULL",
    )
    .bind(at.as_millis())
    .bind(name)
    .execute(&db.pool)
    .await?;
    let saved = one(db, name).await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::ScheduleNotPaused(name.to_owned()));
    }
    Ok(saved)
}

pub(crate) async fn advance(
    db: &Db,
    name: &str,
    from: Timestamp,
    to: Timestamp,
    firings: &[Firing],
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let moved = sqlx::query("UPDATE schedules SET cursor = $1 WHERE name = $2 AND cursor = $3 AND paused IS NULL")
        .bind(to.as_millis())
        .bind(name)
        .bind(from.as_millis())
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() == 0 {
        return Err(StoreError::ScheduleChanged(name.to_owned()));
    }
    for firing in firings {
        sqlx::query(
            "INSERT INTO firings (schedule, at, outcome, task, detail, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
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
    db: &Db,
    name: &str,
    at: Timestamp,
    outcome: FiringOutcome,
    detail: &str,
) -> Result<(), StoreError> {
    let updated =
        sqlx::query("UPDATE firings SET outcome = $1, detail = $2 WHERE schedule = $3 AND at = $4 AND outcome = $5")
            .bind(outcome.as_str())
            .bind(detail)
            .bind(name)
            .bind(at.as_millis())
            .bind(FiringOutcome::Claimed.as_str())
            .execute(&db.pool)
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
    db: &Db,
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
         WHERE schedule = $1 AND at >= $2 {filter} ORDER BY at DESC LIMIT $3"
    ))
    .bind(name)
    .bind(since.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(firing_from_row).collect()
}
