//! How events are written in the journal: JSON with a schema version, inline when small, in the blob
//! store (the row keeps the hash) when large.

use baton_core::{EVENT_SCHEMA_VERSION, Event, Recorded, TaskId, Timestamp};

use sqlx::AnyPool;
use sqlx::any::AnyRow;

use crate::blob::{BlobHash, Blobs};
use crate::error::StoreError;

/// Serialised events larger than this many bytes are kept in the blob store instead of the row.
pub const INLINE_PAYLOAD_LIMIT: usize = 64 * 1024;

/// Exactly one of `payload` and `blob` is set.
pub(crate) struct EncodedEvent {
    pub kind: &'static str,
    pub payload: Option<String>,
    pub blob: Option<String>,
}

/// Serialises an event; a large one is stored as a blob first, so that a committed row never
/// points at a blob that is not stored.
pub(crate) async fn encode(
    task: &TaskId,
    event: &Event,
    blobs: &Blobs,
    pool: &AnyPool,
) -> Result<EncodedEvent, StoreError> {
    let json = serde_json::to_string(event)
        .map_err(|e| StoreError::Unencodable { task: task.clone(), reason: e.to_string() })?;
    let kind = event.kind();
    if json.len() <= INLINE_PAYLOAD_LIMIT {
        return Ok(EncodedEvent { kind, payload: Some(json), blob: None });
    }
    let hash = blobs.put(pool, json.as_bytes()).await?;
    Ok(EncodedEvent { kind, payload: None, blob: Some(hash.to_string()) })
}

/// One row of the `events` table, as read.
pub(crate) struct EventRow {
    pub seq: i64,
    pub v: i64,
    pub kind: String,
    pub at: i64,
    pub payload: Option<String>,
    pub blob: Option<String>,
}

/// The columns of an [`EventRow`], in the order a query must select them.
pub(crate) const EVENT_COLUMNS: &str = "seq, v, kind, at, payload, blob";

impl<'r> sqlx::FromRow<'r, AnyRow> for EventRow {
    fn from_row(row: &'r AnyRow) -> Result<EventRow, sqlx::Error> {
        use sqlx::Row;
        Ok(EventRow {
            seq: row.try_get(0)?,
            v: row.try_get(1)?,
            kind: row.try_get(2)?,
            at: row.try_get(3)?,
            payload: row.try_get(4)?,
            blob: row.try_get(5)?,
        })
    }
}

/// Decodes a row, naming the task and seq in every error so a corrupt row can be found and mended.
pub(crate) async fn decode(
    task: &TaskId,
    row: EventRow,
    blobs: &Blobs,
    pool: &AnyPool,
) -> Result<Recorded, StoreError> {
    let corrupt = |reason: String| StoreError::CorruptEvent { task: task.clone(), seq: row.seq as u64, reason };
    if row.v < 1 || row.v > i64::from(EVENT_SCHEMA_VERSION) {
        return Err(corrupt(format!(
            "schema version {} is not one this baton reads (1 to {EVENT_SCHEMA_VERSION})",
            row.v
        )));
    }
    let json = match (&row.payload, &row.blob) {
        (Some(json), None) => json.clone(),
        (None, Some(hash)) => {
            let hash = BlobHash::parse(hash).map_err(|e| corrupt(e.to_string()))?;
            let bytes = blobs.get(pool, &hash).await.map_err(|e| corrupt(format!("payload blob {hash}: {e}")))?;
            String::from_utf8(bytes).map_err(|_| corrupt(format!("payload blob {hash} is not UTF-8")))?
        }
        _ => return Err(corrupt("the row has neither or both of an inline payload and a blob".into())),
    };
    let event: Event =
        serde_json::from_str(&json).map_err(|e| corrupt(format!("payload is not a valid event: {e}")))?;
    if event.kind() != row.kind {
        return Err(corrupt(format!("the row says `{}` but the payload is `{}`", row.kind, event.kind())));
    }
    Ok(Recorded { seq: row.seq as u64, at: Timestamp(row.at), event })
}
