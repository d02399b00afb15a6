//! Incoming hooks (their definitions and secrets) and the log of every delivery. A delivery that
//! was verified is claimed by its sender's id, so a redelivery is recognised as one.

use baton_core::{Delivery, DeliveryOutcome, Hook, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::Db;

use crate::error::StoreError;
use crate::{Claim, SavedHook};

fn hook_from_row(row: &AnyRow) -> Result<SavedHook, StoreError> {
    let name: String = row.try_get("name")?;
    let text: String = row.try_get("definition")?;
    let hook: Hook = serde_json::from_str(&text)
        .map_err(|error| StoreError::CorruptHook { name: name.clone(), reason: error.to_string() })?;
    Ok(SavedHook { hook, secret: row.try_get("secret")?, created_at: Timestamp(row.try_get("created_at")?) })
}

fn delivery_from_row(row: &AnyRow) -> Result<(i64, Delivery), StoreError> {
    let hook: String = row.try_get("hook")?;
    let outcome: String = row.try_get("outcome")?;
    let outcome =
        outcome.parse::<DeliveryOutcome>().map_err(|reason| StoreError::CorruptHook { name: hook.clone(), reason })?;
    let status: i64 = row.try_get("status")?;
    let delivery = Delivery {
        hook,
        id: row.try_get("delivery")?,
        event: row.try_get("event")?,
        outcome,
        status: status as u16,
        detail: row.try_get("detail")?,
        task: row.try_get("task")?,
        received_at: Timestamp(row.try_get("received_at")?),
    };
    Ok((row.try_get("seq")?, delivery))
}

pub(crate) async fn add(db: &Db, hook: &Hook, secret: &str, at: Timestamp) -> Result<(), StoreError> {
    let text = serde_json::to_string(hook)
        .map_err(|error| StoreError::CorruptHook { name: hook.name.clone(), reason: error.to_string() })?;
    let inserted = sqlx::query(
        "INSERT INTO hooks (name, definition, secret, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&hook.name)
    .bind(text)
    .bind(secret)
    .bind(at.as_millis())
    .execute(&db.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::HookExists(hook.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(db: &Db) -> Result<Vec<SavedHook>, StoreError> {
    let rows =
        sqlx::query("SELECT name, definition, secret, created_at FROM hooks ORDER BY name").fetch_all(&db.pool).await?;
    rows.iter().map(hook_from_row).collect()
}

pub(crate) async fn one(db: &Db, name: &str) -> Result<SavedHook, StoreError> {
    let row = sqlx::query("SELECT name, definition, secret, created_at FROM hooks WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        Some(row) => hook_from_row(&row),
        None => Err(StoreError::NoSuchHook(name.to_owned())),
    }
}

pub(crate) async fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    let deleted = sqlx::query("DELETE FROM hooks WHERE name = $1").bind(name).execute(&db.pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NoSuchHook(name.to_owned()));
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str = "seq, hook, delivery, event, outcome, status, detail, task, received_at";

/// Logs `delivery`; `None` if `claimed` was claimed before.
async fn insert(tx: &mut AnyConnection, delivery: &Delivery, claimed: Option<&str>) -> Result<Option<i64>, StoreError> {
    let seq = sqlx::query_scalar(
        "INSERT INTO deliveries (hook, delivery, claimed, event, outcome, status, detail, task, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (hook, claimed) DO NOTHING RETURNING seq",
    )
    .bind(&delivery.hook)
    .bind(&delivery.id)
    .bind(claimed)
    .bind(&delivery.event)
    .bind(delivery.outcome.as_str())
    .bind(i64::from(delivery.status))
    .bind(&delivery.detail)
    .bind(&delivery.task)
    .bind(delivery.received_at.as_millis())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(seq)
}

pub(crate) async fn log(db: &Db, delivery: &Delivery) -> Result<i64, StoreError> {
    let mut connection = db.pool.acquire().await?;
    let seq = insert(&mut connection, delivery, None).await?;
    // Only a claimed id can conflict.
    seq.ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
}

/// The insert is tried first: of two servers claiming the same id at once, the second finds the
/// first's row once it commits (in either dialect) and reports it as seen.
pub(crate) async fn claim(db: &Db, delivery: &Delivery) -> Result<Claim, StoreError> {
    let mut connection = db.pool.acquire().await?;
    if let Some(seq) = insert(&mut connection, delivery, Some(&delivery.id)).await? {
        return Ok(Claim::New(seq));
    }
    let row = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE hook = $1 AND claimed = $2 ORDER BY seq LIMIT 1"
    ))
    .bind(&delivery.hook)
    .bind(&delivery.id)
    .fetch_one(&mut *connection)
    .await?;
    let (seq, earlier) = delivery_from_row(&row)?;
    Ok(Claim::Seen { seq, earlier })
}

pub(crate) async fn settle(
    db: &Db,
    seq: i64,
    outcome: DeliveryOutcome,
    status: u16,
    detail: &str,
    task: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET outcome = $1, status = $2, detail = $3, task = COALESCE($4, task) WHERE seq = $5",
    )
    .bind(outcome.as_str())
    .bind(i64::from(status))
    .bind(detail)
    .bind(task)
    .bind(seq)
    .execute(&db.pool)
    .await?;
    Ok(())
}

pub(crate) async fn list(db: &Db, hook: Option<&str>, limit: u32) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE ($1 IS NULL OR hook = $1) ORDER BY seq DESC LIMIT $2"
    ))
    .bind(hook)
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|row| delivery_from_row(row).map(|(_, delivery)| delivery)).collect()
}
