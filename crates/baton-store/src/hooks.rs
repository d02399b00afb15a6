//! Incoming hooks (their definitions and secrets) and the log of every delivery. A delivery that
//! was verified is claimed by its sender's id, so a redelivery is recognised as one.

use baton_core::{Delivery, DeliveryOutcome, Hook, Timestamp};
use sqlx::{Row, SqlitePool};

use crate::error::StoreError;
use crate::{Claim, SavedHook};

fn hook_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<SavedHook, StoreError> {
    let name: String = row.try_get("name")?;
    let text: String = row.try_get("definition")?;
    let hook: Hook = serde_json::from_str(&text)
        .map_err(|error| StoreError::CorruptHook { name: name.clone(), reason: error.to_string() })?;
    Ok(SavedHook { hook, secret: row.try_get("secret")?, created_at: Timestamp(row.try_get("created_at")?) })
}

fn delivery_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<(i64, Delivery), StoreError> {
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

pub(crate) async fn add(pool: &SqlitePool, hook: &Hook, secret: &str, at: Timestamp) -> Result<(), StoreError> {
    let text = serde_json::to_string(hook)
        .map_err(|error| StoreError::CorruptHook { name: hook.name.clone(), reason: error.to_string() })?;
    let inserted = sqlx::query(
        "INSERT INTO hooks (name, definition, secret, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&hook.name)
    .bind(text)
    .bind(secret)
    .bind(at.as_millis())
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::HookExists(hook.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(pool: &SqlitePool) -> Result<Vec<SavedHook>, StoreError> {
    let rows =
        sqlx::query("SELECT name, definition, secret, created_at FROM hooks ORDER BY name").fetch_all(pool).await?;
    rows.iter().map(hook_from_row).collect()
}

pub(crate) async fn one(pool: &SqlitePool, name: &str) -> Result<SavedHook, StoreError> {
    let row = sqlx::query("SELECT name, definition, secret, created_at FROM hooks WHERE name = ?")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => hook_from_row(&row),
        None => Err(StoreError::NoSuchHook(name.to_owned())),
    }
}

pub(crate) async fn delete(pool: &SqlitePool, name: &str) -> Result<(), StoreError> {
    let deleted = sqlx::query("DELETE FROM hooks WHERE name = ?").bind(name).execute(pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NoSuchHook(name.to_owned()));
    }
    Ok(())
}

const DELIVERY_COLUMNS: &str = "seq, hook, delivery, event, outcome, status, detail, task, received_at";

async fn insert(
    tx: &mut sqlx::SqliteConnection,
    delivery: &Delivery,
    claimed: Option<&str>,
) -> Result<i64, StoreError> {
    let seq = sqlx::query_scalar(
        "INSERT INTO deliveries (hook, delivery, claimed, event, outcome, status, detail, task, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
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
    .fetch_one(&mut *tx)
    .await?;
    Ok(seq)
}

pub(crate) async fn log(pool: &SqlitePool, delivery: &Delivery) -> Result<i64, StoreError> {
    let mut connection = pool.acquire().await?;
    insert(&mut connection, delivery, None).await
}

pub(crate) async fn claim(pool: &SqlitePool, delivery: &Delivery) -> Result<Claim, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let earlier = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE hook = ? AND claimed = ? ORDER BY seq LIMIT 1"
    ))
    .bind(&delivery.hook)
    .bind(&delivery.id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = earlier {
        let (seq, earlier) = delivery_from_row(&row)?;
        return Ok(Claim::Seen { seq, earlier });
    }
    let seq = insert(&mut tx, delivery, Some(&delivery.id)).await?;
    tx.commit().await?;
    Ok(Claim::New(seq))
}

pub(crate) async fn settle(
    pool: &SqlitePool,
    seq: i64,
    outcome: DeliveryOutcome,
    status: u16,
    detail: &str,
    task: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE deliveries SET outcome = ?, status = ?, detail = ?, task = COALESCE(?, task) WHERE seq = ?")
        .bind(outcome.as_str())
        .bind(i64::from(status))
        .bind(detail)
        .bind(task)
        .bind(seq)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn list(pool: &SqlitePool, hook: Option<&str>, limit: u32) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE (?1 IS NULL OR hook = ?1) ORDER BY seq DESC LIMIT ?2"
    ))
    .bind(hook)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| delivery_from_row(row).map(|(_, delivery)| delivery)).collect()
}
