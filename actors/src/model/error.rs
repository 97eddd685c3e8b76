//! Storage and repo errors, and the one place they map to protocol error codes.

use std::path::PathBuf;

use super::{BlockId, ErrorCode, TransformError, TrxId};

/// A failure of the storage backend itself.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process")]
    InUse(PathBuf),
    /// A stored record could not be decoded.
    #[error("corrupt record {what}: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why it failed to decode.
        message: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// Which record.
        what: String,
        /// Why.
        message: String,
    },
    /// The embedded engine reported an error.
    #[error("embedded engine: {0}")]
    Engine(String),
    /// The storage writer has shut down.
    #[error("storage writer is closed")]
    Closed,
    /// This backend does not do what was asked (e.g. a backup of the file backend).
    #[error("{0}")]
    Unsupported(String),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// Why a repo request failed (as opposed to a stale reply, which is a result):
/// the one error of the engine's repo operations, whatever layer failed (storage,
/// network and cluster errors convert into it; `InDoubt` says a write may have
/// been applied). More reasons may come: match with a catch-all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The backend failed; nothing was acknowledged.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A transform cannot apply to the block.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// Commit of a transaction the block does not hold pending.
    #[error("transaction {trx} is not pending on block {block}")]
    NotPending {
        /// The block.
        block: BlockId,
        /// The transaction.
        trx: TrxId,
    },
    /// A read context names a pending transaction the block does not hold.
    #[error("context transaction {trx} is not pending on block {block}")]
    ContextTrxMissing {
        /// The block.
        block: BlockId,
        /// The transaction.
        trx: TrxId,
    },
    /// The same transaction was pended before with a different transform.
    #[error("transaction {trx} is already pending on block {block} with a different transform")]
    PendConflict {
        /// The block.
        block: BlockId,
        /// The transaction.
        trx: TrxId,
    },
    /// A request that names no block, or is otherwise malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Restoring missing data from peers failed.
    #[error("restoring block {block} failed: {message}")]
    Restore {
        /// The block.
        block: BlockId,
        /// Why.
        message: String,
    },
    /// An error a peer reported with its protocol error code.
    #[error("{code}: {message}")]
    Remote {
        /// The code (docs/PROTOCOL.md).
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// The record's (or write's) cluster is not the region's configuration as the
    /// answering member holds it; `view` is what it holds. Retryable.
    #[error("wrong_cluster: {message}")]
    WrongCluster {
        /// Detail.
        message: String,
        /// The member's configurations of the regions concerned.
        view: Vec<RegionView>,
    },
    /// The write was decided but fewer than a majority of its cluster reported it
    /// applied in time: it may or may not take effect. Retrying the same request
    /// is safe (writes are idempotent under redelivery).
    #[error("in doubt: {0}")]
    InDoubt(String),
    /// The block holds the most pending transactions allowed.
    #[error("block {block} already holds {limit} pending transactions; retry after some commit or cancel")]
    TooManyPending {
        /// The block.
        block: BlockId,
        /// The limit (`max-pending-per-block`).
        limit: usize,
    },
    /// The actor system is shutting down or overloaded.
    #[error("repo unavailable: {0}")]
    Unavailable(String),
}

impl RepoError {
    /// The protocol error code of this error (docs/PROTOCOL.md, "Errors").
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Storage(_) => ErrorCode::Storage,
            Self::Transform(_) => ErrorCode::Transform,
            Self::NotPending { .. } | Self::ContextTrxMissing { .. } => ErrorCode::NotPending,
            Self::PendConflict { .. } => ErrorCode::PendConflict,
            Self::TooManyPending { .. } => ErrorCode::TooManyPending,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::Restore { .. } => ErrorCode::Restore,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::InDoubt(_) => ErrorCode::InDoubt,
            Self::WrongCluster { .. } => ErrorCode::WrongCluster,
            Self::Remote { code, .. } => code.clone(),
        }
    }

    /// The error as a code and message, the way an error frame carries it.
    pub fn to_failure(&self) -> Failure {
        match self {
            Self::Remote { code, message } => Failure::new(code.clone(), message.clone()),
            Self::WrongCluster { message, view } => Failure {
                code: ErrorCode::WrongCluster,
                message: message.clone(),
                view: view.clone(),
            },
            other => Failure::new(other.code(), other.to_string()),
        }
    }
}

/// A failed operation as it is stored and sent: a code and a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// The code.
    pub code: ErrorCode,
    /// Detail.
    pub message: String,
    /// With `wrong_cluster`: the configurations the refusing member holds of the
    /// record's regions (none when it knows none), so a coordinator with a stale
    /// view converges on retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view: Vec<RegionView>,
}

/// A region and the configuration a node holds of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionView {
    /// The region.
    pub region: super::Region,
    /// Its configuration as the node knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<super::Config>,
}

impl Failure {
    /// A failure with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            view: Vec::new(),
        }
    }
}

impl From<Failure> for RepoError {
    fn from(f: Failure) -> Self {
        match f.code {
            ErrorCode::InDoubt => Self::InDoubt(f.message),
            ErrorCode::WrongCluster => Self::WrongCluster {
                message: f.message,
                view: f.view,
            },
            code => Self::Remote {
                code,
                message: f.message,
            },
        }
    }
}
