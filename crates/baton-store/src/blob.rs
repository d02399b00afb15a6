use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use crate::error::StoreError;

/// The sha256 of a blob's bytes, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobHash(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid blob hash `{0}`: expected 64 lowercase hex digits")]
pub struct InvalidBlobHash(pub String);

impl BlobHash {
    pub fn of(bytes: &[u8]) -> BlobHash {
        let digest = Sha256::digest(bytes);
        BlobHash(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Parses a hash read from outside; anything but 64 lowercase hex digits is refused, so a hash can
    /// never name a path outside the blob store.
    pub fn parse(text: &str) -> Result<BlobHash, InvalidBlobHash> {
        let valid = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid { Ok(BlobHash(text.to_owned())) } else { Err(InvalidBlobHash(text.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Blobs on disk under `<dir>/<first two hex digits>/<rest>`, written atomically: a reader sees a
/// whole blob or none, even if the writer is killed halfway.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Distinguishes the temporary files of concurrent writers within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    pub fn new(dir: PathBuf) -> BlobStore {
        BlobStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, hash: &BlobHash) -> PathBuf {
        self.dir.join(&hash.0[..2]).join(&hash.0[2..])
    }

    /// Writes the bytes durably (file and directory synced) before returning their hash.
    pub fn put(&self, bytes: &[u8]) -> io::Result<BlobHash> {
        let hash = BlobHash::of(bytes);
        let path = self.path_of(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let shard = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(shard)?;
        let unique = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = shard.join(format!(".tmp-{}-{unique}", std::process::id()));
        let written = (|| {
            let mut file = fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, &path)?;
            fs::File::open(shard)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map(|()| hash)
    }

    /// Reads a blob and checks it still has the hash it is stored under.
    pub fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, String> {
        let bytes = fs::read(self.path_of(hash)).map_err(|e| format!("cannot read: {e}"))?;
        let actual = BlobHash::of(&bytes);
        if actual != *hash {
            return Err(format!("content does not match its hash (it hashes to {actual})"));
        }
        Ok(bytes)
    }
}

/// Where the store keeps payloads too large for a row.
#[derive(Debug, Clone)]
pub(crate) enum Blobs {
    /// Files beside an SQLite database.
    Files(Arc<BlobStore>),
    /// A table of the database itself, so that a worker on any machine reads every task's payloads.
    Table,
}

impl Blobs {
    /// Stores `bytes` (committed on their own, before any row that names them).
    pub async fn put(&self, pool: &AnyPool, bytes: &[u8]) -> Result<BlobHash, StoreError> {
        match self {
            Blobs::Files(files) => {
                files.put(bytes).map_err(|source| StoreError::DataDir { path: files.dir().to_owned(), source })
            }
            Blobs::Table => {
                let hash = BlobHash::of(bytes);
                sqlx::query("INSERT INTO blobs (hash, bytes) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING")
                    .bind(hash.as_str())
                    .bind(bytes)
                    .execute(pool)
                    .await?;
                Ok(hash)
            }
        }
    }

    /// The bytes stored under `hash`, checked against it; why not, in words.
    pub async fn get(&self, pool: &AnyPool, hash: &BlobHash) -> Result<Vec<u8>, String> {
        let bytes = match self {
            Blobs::Files(files) => return files.get(hash),
            Blobs::Table => sqlx::query_scalar::<_, Vec<u8>>("SELECT bytes FROM blobs WHERE hash = $1")
                .bind(hash.as_str())
                .fetch_optional(pool)
                .await
                .map_err(|e| format!("cannot read: {e}"))?
                .ok_or_else(|| "cannot read: no such blob".to_owned())?,
        };
        let actual = BlobHash::of(&bytes);
        if actual != *hash {
            return Err(format!("content does not match its hash (it hashes to {actual})"));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_content_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path().join("blobs"));
        let hash = blobs.put(b"hello").unwrap();
        assert_eq!(hash.as_str(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(blobs.put(b"hello").unwrap(), hash);
        assert_eq!(blobs.get(&hash).unwrap(), b"hello");

        fs::write(blobs.path_of(&hash), b"jello").unwrap();
        let err = blobs.get(&hash).unwrap_err();
        assert!(err.starts_with("content does not match its hash"), "{err}");

        let missing = BlobHash::of(b"never stored");
        assert!(blobs.get(&missing).unwrap_err().starts_with("cannot read"));
    }

    #[test]
    fn hostile_hashes_are_refused() {
        for bad in ["../../../../etc/passwd", "", &"A".repeat(64), &"0".repeat(63)] {
            assert_eq!(BlobHash::parse(bad), Err(InvalidBlobHash(bad.to_owned())));
        }
        assert!(BlobHash::parse(&"0a".repeat(32)).is_ok());
    }
}
