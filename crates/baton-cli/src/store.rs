//! Which store the commands use: the data directory's SQLite database, or the PostgreSQL one
//! `--store` (BATON_STORE) names, chosen once at start.

use std::path::Path;
use std::sync::OnceLock;

use baton_store::SqlStore;

static CHOSEN: OnceLock<Option<String>> = OnceLock::new();

/// Records `--store` for every later [`open`].
pub fn choose(url: Option<String>) {
    let _ = CHOSEN.set(url);
}

/// The PostgreSQL store's URL, when one was chosen.
pub fn url() -> Option<&'static str> {
    CHOSEN.get().and_then(Option::as_deref)
}

/// The chosen store: PostgreSQL's, or `home`'s SQLite database.
pub async fn open(home: &Path) -> Result<SqlStore, baton_store::StoreError> {
    match url() {
        Some(url) => SqlStore::connect(url).await,
        None => SqlStore::open(home).await,
    }
}
