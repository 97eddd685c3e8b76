//! The repo as one typed interface: the [`Repo`] trait (get, pend, commit,
//! pendCommit, cancel), implemented by the node-local store, the coordinator and
//! the network client, and [`RepoOperation::run`], the one dispatch from an
//! operation to a repo. [`OpResult`] is what an operation returns, typed, as it
//! crosses modules inside a process; JSON and MessagePack appear only at the wire.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::error::RepoError;
use super::repo::{
    BlockGets, CommitRequest, CommitResult, GetBlockResults, PendCommitRequest, PendCommitResult,
    PendRequest, PendResult, RepoOperation, TrxBlocks,
};

/// A repository of versioned blocks (DESIGN §3–4).
pub trait Repo: Send + Sync {
    /// Reads blocks.
    fn get(&self, gets: BlockGets) -> BoxFuture<'_, Result<GetBlockResults, RepoError>>;
    /// Holds transforms pending under a transaction.
    fn pend(&self, req: PendRequest) -> BoxFuture<'_, Result<PendResult, RepoError>>;
    /// Commits a pending transaction.
    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<CommitResult, RepoError>>;
    /// Pends and commits one transaction in one step, all or nothing.
    fn pend_commit(
        &self,
        req: PendCommitRequest,
    ) -> BoxFuture<'_, Result<PendCommitResult, RepoError>>;
    /// Drops a pending transaction.
    fn cancel(&self, trx: TrxBlocks) -> BoxFuture<'_, Result<(), RepoError>>;
}

/// What one repo operation returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpResult {
    /// A read's blocks.
    Get(GetBlockResults),
    /// A pend's result.
    Pend(PendResult),
    /// A commit's result.
    Commit(CommitResult),
    /// A pendCommit's result.
    PendCommit(PendCommitResult),
    /// A cancel (it has no result beyond success).
    Cancel,
}

/// One operation's outcome as a member records it: its result, or why it failed.
pub type OpOutcome = Result<OpResult, super::error::Failure>;

/// `{}`: a cancel's reply on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// A cancel's reply as a receiver reads it: `{}`, or — from a peer that answers a
/// refused cancel the way a refused commit is answered — `{"success":false,
/// "reason"}`, which is a refusal, never a success.
/// Nothing else is taken for it: an error frame (`{"error":…}`) must not decode
/// as a cancel done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelReply {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    reason: Option<String>,
}

impl CancelReply {
    /// `Ok` for a cancel done; the refusal's reason otherwise.
    pub fn done(self) -> Result<(), String> {
        match self.success {
            Some(false) => Err(self
                .reason
                .unwrap_or_else(|| "the cancel was refused".into())),
            _ => Ok(()),
        }
    }
}

impl OpResult {
    /// Whether the operation did what it asked (a read always does).
    pub fn is_success(&self) -> bool {
        match self {
            Self::Get(_) | Self::Cancel => true,
            Self::Pend(p) => p.is_success(),
            Self::Commit(c) => c.is_success(),
            Self::PendCommit(pc) => pc.is_success(),
        }
    }

    /// The reply as the wire carries it: the bare result (`{}` for a cancel).
    pub fn wire(&self) -> WireResult<'_> {
        WireResult(self)
    }
}

/// [`OpResult`] serialized bare, as the repo protocol's reply.
#[derive(Debug, Clone, Copy)]
pub struct WireResult<'a>(&'a OpResult);

impl Serialize for WireResult<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            OpResult::Get(g) => g.serialize(s),
            OpResult::Pend(p) => p.serialize(s),
            OpResult::Commit(c) => c.serialize(s),
            OpResult::PendCommit(pc) => pc.serialize(s),
            OpResult::Cancel => Empty {}.serialize(s),
        }
    }
}

/// A result of the wrong kind for its operation (a peer's mistake, or a bug).
pub fn unexpected(what: &str, got: &OpResult) -> RepoError {
    RepoError::Invalid(format!("expected a {what} result, got {got:?}"))
}

impl RepoOperation {
    /// Runs this operation on `repo`.
    pub async fn run<R: Repo + ?Sized>(self, repo: &R) -> Result<OpResult, RepoError> {
        Ok(match self {
            Self::Get(g) => OpResult::Get(repo.get(g).await?),
            Self::Pend(p) => OpResult::Pend(repo.pend(p).await?),
            Self::Commit(c) => OpResult::Commit(repo.commit(c).await?),
            Self::PendCommit(pc) => OpResult::PendCommit(repo.pend_commit(pc).await?),
            Self::Cancel(c) => {
                repo.cancel(c.trx_ref).await?;
                OpResult::Cancel
            }
        })
    }

    /// Which operation this is.
    pub fn kind(&self) -> OpKind {
        match self {
            Self::Get(_) => OpKind::Get,
            Self::Pend(_) => OpKind::Pend,
            Self::Commit(_) => OpKind::Commit,
            Self::PendCommit(_) => OpKind::PendCommit,
            Self::Cancel(_) => OpKind::Cancel,
        }
    }

    /// The name of the operation as the wire spells it.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// Which operation a request body is (the CLI and HTTP name it beside the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `BlockGets`.
    Get,
    /// `PendRequest`.
    Pend,
    /// `CommitRequest`.
    Commit,
    /// `TrxBlocks`.
    Cancel,
    /// `{pend: PendRequest, commit: CommitRequest}`.
    PendCommit,
}

impl OpKind {
    /// The kind named `name` as the HTTP API spells it (`get`, `pend`, `commit`,
    /// `cancel`, `pendCommit`).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Get,
            Self::Pend,
            Self::Commit,
            Self::Cancel,
            Self::PendCommit,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// The name as the wire spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Pend => "pend",
            Self::Commit => "commit",
            Self::Cancel => "cancel",
            Self::PendCommit => "pendCommit",
        }
    }

    /// What the body is called in error messages.
    pub fn body_name(self) -> &'static str {
        match self {
            Self::Get => "BlockGets",
            Self::Pend => "PendRequest",
            Self::Commit => "CommitRequest",
            Self::Cancel => "TrxBlocks",
            Self::PendCommit => "PendCommitRequest",
        }
    }
}

impl RepoOperation {
    /// Parses a request body (JSON) of the given kind.
    pub fn from_json(kind: OpKind, body: &[u8]) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            OpKind::Get => Self::Get(serde_json::from_slice(body)?),
            OpKind::Pend => Self::Pend(serde_json::from_slice(body)?),
            OpKind::Commit => Self::Commit(serde_json::from_slice(body)?),
            OpKind::Cancel => Self::Cancel(super::repo::CancelOperation {
                trx_ref: serde_json::from_slice(body)?,
            }),
            OpKind::PendCommit => Self::PendCommit(serde_json::from_slice(body)?),
        })
    }
}

macro_rules! take {
    ($(#[$doc:meta] $fn:ident, $variant:ident, $ty:ty, $what:literal;)*) => {
        impl OpResult {
            $(#[$doc] pub fn $fn(self) -> Result<$ty, RepoError> {
                match self {
                    Self::$variant(v) => Ok(v),
                    other => Err(unexpected($what, &other)),
                }
            })*
        }
    };
}

take! {
    /// The read's blocks.
    into_get, Get, GetBlockResults, "get";
    /// The pend's result.
    into_pend, Pend, PendResult, "pend";
    /// The commit's result.
    into_commit, Commit, CommitResult, "commit";
    /// The pendCommit's result.
    into_pend_commit, PendCommit, PendCommitResult, "pendCommit";
}

impl OpResult {
    /// A cancel's (empty) result.
    pub fn into_cancel(self) -> Result<(), RepoError> {
        match self {
            Self::Cancel => Ok(()),
            other => Err(unexpected("cancel", &other)),
        }
    }
}
