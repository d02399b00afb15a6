//! The API's bearer tokens, kept by the hash of their secrets.

use baton_core::{Scope, Timestamp, Token, TokenHash};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Db;

use crate::error::StoreError;

const COLUMNS: &str = "name, scope, created_at, revoked_at";

fn token_from_row(row: &AnyRow) -> Result<Token, StoreError> {
    let scope: String = row.try_get("scope")?;
    Ok(Token {
        name: row.try_get("name")?,
        scope: scope.parse::<Scope>().map_err(StoreError::CorruptAccount)?,
        created_at: Timestamp(row.try_get("created_at")?),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
    })
}

pub(crate) async fn add(db: &Db, token: &Token, hash: &TokenHash) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO tokens (name, scope, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&token.name)
    .bind(token.scope.as_str())
    .bind(&hash.0[..])
    .bind(token.created_at.as_millis())
    .bind(token.revoked_at.map(Timestamp::as_millis))
    .execute(&db.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::TokenExists(token.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(db: &Db) -> Result<Vec<Token>, StoreError> {
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM tokens ORDER BY created_at, name")).fetch_all(&db.pool).await?;
    rows.iter().map(token_from_row).collect()
}

pub(crate) async fn revoke(db: &Db, name: &str, at: Timestamp) -> Result<Token, StoreError> {
    let row = sqlx::query(&format!(
        "UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(at.as_millis())
    .bind(name)
    .fetch_optional(&db.pool)
    .await?;
    match row {
        Some(row) => token_from_row(&row),
        None => Err(StoreError::NoSuchToken(name.to_owned())),
    }
}

pub(crate) async fn active(db: &Db, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE hash = $1 AND revoked_at IS NULL"))
        .bind(&hash.0[..])
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(token_from_row).transpose()
}
