//! Templates, kept by name as the JSON of their definitions.

use baton_core::{Template, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Db;

use crate::error::StoreError;

fn template_from_row(row: &AnyRow) -> Result<Template, StoreError> {
    let name: String = row.try_get("name")?;
    let text: String = row.try_get("definition")?;
    serde_json::from_str(&text).map_err(|error| StoreError::CorruptTemplate { name, reason: error.to_string() })
}

pub(crate) async fn add(db: &Db, template: &Template, at: Timestamp) -> Result<(), StoreError> {
    let text = serde_json::to_string(template)
        .map_err(|error| StoreError::CorruptTemplate { name: template.name.clone(), reason: error.to_string() })?;
    let inserted = sqlx::query(
        "INSERT INTO templates (name, definition, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&template.name)
    .bind(text)
    .bind(at.as_millis())
    .execute(&db.pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::TemplateExists(template.name.clone()));
    }
    Ok(())
}

pub(crate) async fn all(db: &Db) -> Result<Vec<Template>, StoreError> {
    let rows = sqlx::query("SELECT name, definition FROM templates ORDER BY name").fetch_all(&db.pool).await?;
    rows.iter().map(template_from_row).collect()
}

pub(crate) async fn one(db: &Db, name: &str) -> Result<Template, StoreError> {
    let row = sqlx::query("SELECT name, definition FROM templates WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await?;
    match row {
        Some(row) => template_from_row(&row),
        None => Err(StoreError::NoSuchTemplate(name.to_owned())),
    }
}

pub(crate) async fn delete(db: &Db, name: &str) -> Result<(), StoreError> {
    let deleted = sqlx::query("DELETE FROM templates WHERE name = $1").bind(name).execute(&db.pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NoSuchTemplate(name.to_owned()));
    }
    Ok(())
}
