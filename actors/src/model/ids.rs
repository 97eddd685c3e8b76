//! Validated identifiers. Every id that crosses an edge (wire, CLI, disk) is parsed
//! through [`validate_id`], so nothing outside `[A-Za-z0-9_-]{1,128}` ever reaches a
//! storage key or a file path.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted block or transaction id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which id kind was being parsed.
        kind: &'static str,
    },
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("{kind} is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which id kind was being parsed.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The id contains a character outside `[A-Za-z0-9_-]`.
    #[error("{kind} contains {found:?} at byte {at}; only A-Z a-z 0-9 _ - are allowed")]
    BadChar {
        /// Which id kind was being parsed.
        kind: &'static str,
        /// The offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks that `s` is a well-formed id of the given kind.
pub fn validate_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    match s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some((at, found)) => Err(IdError::BadChar { kind, found, at }),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($name:ident, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate_id($kind, &s)?;
                Ok(Self(s))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    BlockId,
    "block id",
    "A block's id: 1..=128 chars of `[A-Za-z0-9_-]`."
);
id_type!(
    TrxId,
    "transaction id",
    "A transaction's id: 1..=128 chars of `[A-Za-z0-9_-]`."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_base64url() {
        assert!(BlockId::new("abc-DEF_019").is_ok());
        assert!(BlockId::new("a".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_paths_and_junk() {
        for bad in ["", "a/b", "a\\b", "..", "a\0b", "é", " a", "a.b"] {
            assert!(BlockId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            TrxId::new("x".repeat(10_000)),
            Err(IdError::TooLong { len: 10_000, .. })
        ));
    }

    #[test]
    fn serde_validates() {
        let ok: BlockId = serde_json::from_str("\"b1\"").unwrap();
        assert_eq!(ok.as_str(), "b1");
        assert!(serde_json::from_str::<BlockId>("\"../etc\"").is_err());
    }
}
