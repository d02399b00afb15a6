use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC. The caller reads the clock; the core only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn as_millis(self) -> i64 {
        self.0
    }
}
