use std::fmt;

use serde::{Deserialize, Serialize};

/// Crockford's base32 alphabet, lowercase: no `i`, `l`, `o`, `u`, so ids read back unambiguously.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const LEN: usize = 12;

/// A task's id: 12 characters of lowercase Crockford base32 (60 random bits).
///
/// Random rather than time-ordered so that any prefix is as selective as any other; tasks are
/// ordered by their creation time, which the journal records.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid task id `{0}`: expected {LEN} characters of 0-9 and a-z without i, l, o, u")]
pub struct InvalidTaskId(pub String);

impl TaskId {
    /// Builds an id from caller-supplied entropy; only the low 60 bits are used.
    pub fn from_entropy(entropy: u64) -> TaskId {
        let id = (0..LEN).map(|i| ALPHABET[((entropy >> (5 * (LEN - 1 - i))) & 31) as usize] as char).collect();
        TaskId(id)
    }

    pub fn parse(text: &str) -> Result<TaskId, InvalidTaskId> {
        let valid = text.len() == LEN && text.bytes().all(|b| ALPHABET.contains(&b));
        if valid { Ok(TaskId(text.to_owned())) } else { Err(InvalidTaskId(text.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 characters, used where a full id would be noise (branch names).
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl TryFrom<String> for TaskId {
    type Error = InvalidTaskId;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        TaskId::parse(&text)
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn generated_ids_parse_back(entropy: u64) {
            let id = TaskId::from_entropy(entropy);
            prop_assert_eq!(TaskId::parse(id.as_str()), Ok(id));
        }
    }

    #[test]
    fn rejects_hostile_and_malformed_ids() {
        for bad in ["", "short", "../../etc/pa", "ABCDEFGHJKMN", "abcdefghijkl", "0123456789abc"] {
            assert_eq!(TaskId::parse(bad), Err(InvalidTaskId(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn distinct_entropy_gives_distinct_ids() {
        assert_ne!(TaskId::from_entropy(1), TaskId::from_entropy(2));
        assert_eq!(TaskId::from_entropy(0).as_str(), "000000000000");
    }
}
