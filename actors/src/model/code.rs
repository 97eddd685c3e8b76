//! Error codes of the wire protocol (docs/PROTOCOL.md, "Errors"), as one enum. The
//! code is what a peer or client acts on; the message beside it is for people.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($variant:ident => $text:literal, $const:ident, $doc:literal;)*) => {
        /// A protocol error code.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
            /// A code this node does not know (sent by a newer peer).
            Other(String),
        }

        impl ErrorCode {
            /// The code as the wire spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(s) => s,
                }
            }

            /// The code spelled `s` (an unknown spelling is kept as [`ErrorCode::Other`]).
            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)*
                    other => Self::Other(other.to_string()),
                }
            }
        }

        /// The codes as string constants (as they appear in error frames).
        pub mod codes {
            $(#[doc = $doc] pub const $const: &str = $text;)*
        }
    };
}

error_codes! {
    BadFrame => "bad_frame", BAD_FRAME, "The length prefix is not a valid varint.";
    FrameTooLarge => "frame_too_large", FRAME_TOO_LARGE, "The declared length exceeds the protocol's cap.";
    TruncatedFrame => "truncated_frame", TRUNCATED_FRAME, "The stream ended inside the frame.";
    BadRequest => "bad_request", BAD_REQUEST, "Not a well-formed message (syntax, missing field, invalid id).";
    UnknownOperation => "unknown_operation", UNKNOWN_OPERATION, "An operation this node does not know.";
    Expired => "expired", EXPIRED, "The message's `expiration` had passed on arrival.";
    Busy => "busy", BUSY, "Too many requests or transactions in flight; retry later.";
    NotPending => "not_pending", NOT_PENDING, "A commit (or read context) names a transaction not pending on a block.";
    Transform => "transform", TRANSFORM, "A transform cannot apply to its block.";
    PendConflict => "pend_conflict", PEND_CONFLICT, "The transaction is already pending with a different transform.";
    TooManyPending => "too_many_pending", TOO_MANY_PENDING, "The block already holds the most pending transactions allowed.";
    Invalid => "invalid", INVALID, "Well-formed but meaningless (e.g. names no block).";
    Storage => "storage", STORAGE, "The node's storage failed; nothing was acknowledged.";
    Restore => "restore", RESTORE, "Restoring a block from peers failed.";
    Unavailable => "unavailable", UNAVAILABLE, "Not enough of the cluster answered, or the node is shutting down; retry.";
    InDoubt => "in_doubt", IN_DOUBT, "The write was decided but not yet applied by a majority: it may or may not take effect.";
    InvalidRecord => "invalid_record", INVALID_RECORD, "A cluster record failed validation.";
    NotAMember => "not_a_member", NOT_A_MEMBER, "This node is not in the record's peer set.";
    WrongCluster => "wrong_cluster", WRONG_CLUSTER, "The record's peer set is not the block's cluster as this member knows it.";
    NotAllowed => "not_allowed", NOT_ALLOWED, "A configuration change adds a peer the network's allow list leaves out.";
    Decided => "decided", DECIDED, "The record contradicts this member's decision.";
    Conflict => "conflict", CONFLICT, "The cluster refused a write: another transaction holds one of its blocks.";
    RateLimited => "rate_limited", RATE_LIMITED, "More requests per second from this peer than the node accepts.";
}

impl ErrorCode {
    /// Whether a client may retry the same request (later, or elsewhere).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Expired
                | Self::Busy
                | Self::TooManyPending
                | Self::Storage
                | Self::Restore
                | Self::Unavailable
                | Self::InDoubt
                | Self::WrongCluster
                | Self::Conflict
                | Self::RateLimited
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_kept() {
        for c in [
            ErrorCode::NotPending,
            ErrorCode::InDoubt,
            ErrorCode::WrongCluster,
        ] {
            assert_eq!(ErrorCode::parse(c.as_str()), c);
        }
        assert_eq!(codes::NOT_PENDING, "not_pending");
        let other = ErrorCode::parse("from_the_future");
        assert_eq!(other.as_str(), "from_the_future");
        assert_eq!(
            serde_json::to_string(&ErrorCode::Busy).ok().as_deref(),
            Some("\"busy\"")
        );
    }
}
