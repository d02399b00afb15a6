//! Notices, kept in order in the transaction that journals what they tell of; subscriptions, each
//! with a cursor over the notices it has taken; and the notifications queued, sent and logged.

use baton_core::{Notice, NoticeKind, Notification, NotificationState, Subscription, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{Db, Dialect, Turn};

use crate::SavedSubscription;
use crate::error::StoreError;

fn corrupt(name: &str, reason: impl ToString) -> StoreError {
    StoreError::CorruptSubscription { name: name.to_owned(), reason: reason.to_string() }
}

fn kind_of(name: &str, text: &str) -> Result<NoticeKind, StoreError> {
    text.parse::<NoticeKind>().map_err(|reason| corrupt(name, reason))
}

/// Inside an append's transaction: the notice `kind` about `task`.
pub(crate) async fn add(
    tx: &mut AnyConnection,
    dialect: Dialect,
    kind: NoticeKind,
    task: Option<&str>,
    detail: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    dialect.take_turn(tx, Turn::Notices).await?;
    sqlx::query("INSERT INTO notices (kind, task_id, detail, at) VALUES ($1, $2, $3, $4)")
        .bind(kind.as_str())
        .bind(task)
        .bind(detail)
        .bind(at.as_millis())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub(crate) async fn after(db: &Db, after: i64, limit: u32) -> Result<Vec<Notice>, StoreError> {
    let rows = sqlx::query("SELECT seq, kind, task_id, detail, at FROM notices WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            Ok(Notice {
                seq: row.try_get("seq")?,
                kind: kind_of("notices", &kind)?,
                task: row.try_get("task_id")?,
                detail: row.try_get("detail")?,
                at: Timestamp(row.try_get("at")?),
            })
        })
        .collect()
}

fn subscription_from_row(row: &AnyRow) -> Result<SavedSubscription, StoreError> {
    let name: String = row.try_get("name")?;
    let text: String = row.try_get("definition")?;
    let subscription: Subscription = serde_json::from_str(&text).map_err(|error| corrupt(&name, error))?;
    Ok(SavedSubscription {
        subscription,
        secret: row.try_get("secret")?,
        cursor: row.try_get("cursor")?,
        failures: row.try_get::<i64, _>("failures")? as u32,
        disabled: row.try_get("disabled")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

const SUBSCRIPTION_COLUMNS: &str = "name, definition, secret, cursor, failures, disabled, created_at";

/// From the latest notice on: a new subscription hears of what happens after it.
pub(crate) async fn subscribe(
    db: &Db,
    subscription: &Subscription,
    secret: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(subscription).map_err(|error| corrupt(&subscription.name, error))?;
    let inserted = sqlx::query(
        "INSERT INTO subscriptions (name, definition, secret, cursor, failures, disabled, created_at) \
         VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) FROM notices), 0, NULL, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&subscription.name)
    .bind(text)
    .bind(secret)
    .bind(at.as_millis())
    .execute(&db.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::SubscriptionExists(subscription.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(db: &Db) -> Result<Vec<SavedSubscription>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY name"))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(subscription_from_row).collect()
}

pub(crate) async fn one(db: &Db, name: &str) -> Result<SavedSubscription, StoreError> {
    let row = sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE name = $1"))
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        Some(row) => subscription_from_row(&row),
        None => Err(StoreError::NoSuchSubscription(name.to_owned())),
    }
}

pub(crate) async fn unsubscribe(db: &Db, name: &str) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let deleted = sqlx::query("DELETE FROM subscriptions WHERE name = $1").bind(name).execute(&mut *tx).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NoSuchSubscription(name.to_owned()));
    }
    // What was still to be sent is not; what was sent stays in the log.
    sqlx::query("UPDATE notifications SET state = 'failed', last_error = 'unsubscribed' WHERE subscription = $1 AND state = 'pending'")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn enqueue(
    db: &Db,
    name: &str,
    from: i64,
    to: i64,
    queued: &[Notification],
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let moved = sqlx::query("UPDATE subscriptions SET cursor = $1 WHERE name = $2 AND cursor = $3")
        .bind(to)
        .bind(name)
        .bind(from)
        .execute(&mut *tx)
        .await?;
    if moved.rows_affected() == 0 {
        return Err(StoreError::SubscriptionChanged(name.to_owned()));
    }
    for notification in queued {
        sqlx::query(
            "INSERT INTO notifications (subscription, notice, kind, payload, state, attempts, next_at, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6)",
        )
        .bind(name)
        .bind(notification.notice)
        .bind(notification.kind.as_str())
        .bind(&notification.payload)
        .bind(notification.next_at.as_millis())
        .bind(notification.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

const NOTIFICATION_COLUMNS: &str =
    "seq, subscription, notice, kind, payload, state, attempts, next_at, last_error, created_at, delivered_at";

fn notification_from_row(row: &AnyRow) -> Result<Notification, StoreError> {
    let subscription: String = row.try_get("subscription")?;
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(Notification {
        seq: row.try_get("seq")?,
        kind: kind_of(&subscription, &kind)?,
        state: state.parse::<NotificationState>().map_err(|reason| corrupt(&subscription, reason))?,
        subscription,
        notice: row.try_get("notice")?,
        payload: row.try_get("payload")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_at: Timestamp(row.try_get("next_at")?),
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        delivered_at: row.try_get::<Option<i64>, _>("delivered_at")?.map(Timestamp),
    })
}

pub(crate) async fn due(db: &Db, at: Timestamp, limit: u32) -> Result<Vec<Notification>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE state = 'pending' AND next_at <= $1 ORDER BY seq LIMIT $2"
    ))
    .bind(at.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(notification_from_row).collect()
}

pub(crate) async fn list(db: &Db, name: Option<&str>, limit: u32) -> Result<Vec<Notification>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE ($1 IS NULL OR subscription = $1) ORDER BY seq DESC LIMIT $2"
    ))
    .bind(name)
    .bind(i64::from(limit))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(notification_from_row).collect()
}

/// Records an attempt at notification `seq`: its new state, when it is next due, what failed; a
/// delivery clears its subscription's failures, a notification given up on counts one, and
/// `disable_after` of them in a row disable the subscription.
pub(crate) async fn attempted(
    db: &Db,
    seq: i64,
    state: NotificationState,
    next_at: Timestamp,
    error: Option<&str>,
    at: Timestamp,
    disable_after: u32,
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let subscription: Option<String> = sqlx::query_scalar(
        "UPDATE notifications SET state = $1, attempts = attempts + 1, next_at = $2, last_error = COALESCE($3, last_error), \
         delivered_at = CASE WHEN $4 = 'delivered' THEN $5 ELSE delivered_at END \
         WHERE seq = $6 AND state = 'pending' RETURNING subscription",
    )
    .bind(state.as_str())
    .bind(next_at.as_millis())
    .bind(error)
    .bind(state.as_str())
    .bind(at.as_millis())
    .bind(seq)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(subscription) = subscription else {
        return Ok(());
    };
    match state {
        NotificationState::Delivered => {
            sqlx::query("UPDATE subscriptions SET failures = 0 WHERE name = $1")
                .bind(&subscription)
                .execute(&mut *tx)
                .await?;
        }
        NotificationState::Failed => {
            let reason = format!("disabled after {disable_after} notifications failed in a row");
            sqlx::query(
                "UPDATE subscriptions SET failures = failures + 1, \
                 disabled = CASE WHEN failures + 1 >= $1 THEN COALESCE(disabled, $2) ELSE disabled END WHERE name = $3",
            )
            .bind(i64::from(disable_after))
            .bind(reason)
            .bind(&subscription)
            .execute(&mut *tx)
            .await?;
        }
        NotificationState::Pending => {}
    }
    tx.commit().await?;
    Ok(())
}
