//! Who may use the API: bearer tokens, each with a scope. A token's secret is shown once, when it
//! is made; only its hash is kept, so a copy of the data directory grants nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Timestamp;

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read tasks, their journals, diffs and the account.
    Read,
    /// Also create, steer and cancel tasks.
    Write,
    /// Also move money: top-ups and the account's policy.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Whether a holder of this scope may do what needs `needed`.
    pub fn covers(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| format!("unknown scope `{text}`: read, write or admin"))
    }
}

/// The prefix of every secret, so a leaked one is recognisable (and greppable) as baton's.
pub const TOKEN_PREFIX: &str = "baton_";

/// A token's secret as the client sends it: the prefix and 32 bytes of the caller's entropy in hex.
pub fn token_secret(entropy: [u8; 32]) -> String {
    let mut secret = String::from(TOKEN_PREFIX);
    for byte in entropy {
        secret.push_str(&format!("{byte:02x}"));
    }
    secret
}

/// SHA-256 of a secret. A secret holds 256 bits of entropy, so a plain hash cannot be reversed by
/// guessing; a slow password hash would only slow down every request.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(secret: &str) -> TokenHash {
        TokenHash(Sha256::digest(secret.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A token as stored and listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Why a token name was refused.
pub fn check_token_name(name: &str) -> Result<(), String> {
    crate::template::check_name("token", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_parse_back() {
        assert!(Scope::Admin.covers(Scope::Write) && Scope::Write.covers(Scope::Read));
        assert!(!Scope::Read.covers(Scope::Write) && !Scope::Write.covers(Scope::Admin));
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn a_secret_is_prefixed_hex_and_its_hash_is_not_the_secret() {
        let secret = token_secret([0xab; 32]);
        assert_eq!(secret.len(), TOKEN_PREFIX.len() + 64);
        assert!(secret.starts_with("baton_abab"));
        assert_ne!(TokenHash::of(&secret), TokenHash::of(&token_secret([0xac; 32])));
        assert_eq!(format!("{:?}", TokenHash::of(&secret)), "TokenHash(..)");
    }

    #[test]
    fn token_names_are_short_and_plain() {
        assert!(check_token_name("ci-bot.1").is_ok());
        for bad in ["", "a b", "x\n", "ü", &"a".repeat(65)] {
            assert!(check_token_name(bad).is_err(), "{bad:?}");
        }
    }
}
