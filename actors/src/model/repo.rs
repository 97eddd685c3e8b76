//! Repo requests and replies (DESIGN §3). JSON is camelCase with absent optionals
//! omitted; the same types serve MessagePack (named maps).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::block::{Block, Transform, Transforms};
use super::ids::{BlockId, TrxId};

/// A revision number. Revisions of one block increase but need not be contiguous.
pub type Rev = u64;

/// A committed transaction and the revision it produced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrxRev {
    /// The transaction.
    pub trx_id: TrxId,
    /// Its revision.
    pub rev: Rev,
}

/// A stored block and its latest committed revision (`heads` on the cluster
/// protocol).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockHead {
    /// The block.
    pub block_id: BlockId,
    /// Its latest revision (absent: stored with no committed revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<TrxRev>,
    /// The transactions pending on it here, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<TrxId>,
}

/// The reader's view: transactions it knows committed, the revision to read at,
/// and optionally its own pending transaction to overlay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrxContext {
    /// Transactions known to be committed (caught up on read).
    #[serde(default)]
    pub committed: Vec<TrxRev>,
    /// Revision to materialize at.
    pub rev: Rev,
    /// A pending transaction to apply on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trx_id: Option<TrxId>,
}

/// A read of several blocks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockGets {
    /// Blocks to read.
    pub block_ids: Vec<BlockId>,
    /// Optional read context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<TrxContext>,
    /// How current the answer must be (an extension of the seed's protocol;
    /// absent: [`Consistency::Local`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

/// How current a read must be (docs/CONSENSUS.md, "Reads").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The node's own copy, compared with its cluster when not known current.
    #[default]
    Local,
    /// Only what a majority of the block's configuration holds, compared on
    /// every read; `unavailable` when too few answer alike.
    Quorum,
}

/// What is known of a block's transactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockTrxState {
    /// The revision that was read (the latest unless a rev was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<TrxRev>,
    /// Transactions pending on the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pendings: Option<Vec<TrxId>>,
}

/// One block's read result; `block` is absent for a block never written or deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetBlockResult {
    /// The materialized block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Block>,
    /// Transaction state.
    pub state: BlockTrxState,
}

/// Read results by block id.
pub type GetBlockResults = BTreeMap<BlockId, GetBlockResult>;

/// How a pend treats other pending transactions on the same blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendPolicy {
    /// Continue: pend anyway and report the others.
    #[serde(rename = "c")]
    Continue,
    /// Fail, listing the other pending transactions.
    #[serde(rename = "f")]
    Fail,
    /// Fail, returning the other pending transactions with their transforms.
    #[serde(rename = "r")]
    Return,
}

/// Ask to hold `transforms` pending under `trx_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendRequest {
    /// The transaction.
    pub trx_id: TrxId,
    /// The revision the transaction intends to commit as (enables the stale check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
    /// The changes.
    pub transforms: Transforms,
    /// Treatment of other pending transactions.
    pub policy: PendPolicy,
}

/// A transaction pending on a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrxPending {
    /// The block.
    pub block_id: BlockId,
    /// The pending transaction.
    pub trx_id: TrxId,
    /// Its transform (only with policy `r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
}

/// A committed transaction's transforms, as reported in `missing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrxTransforms {
    /// The transaction.
    pub trx_id: TrxId,
    /// Its revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
    /// What it changed.
    pub transforms: Transforms,
}

/// The request is behind (missing commits) or blocked by other pending transactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleFailure {
    /// A human-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Committed transactions the requester has not seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<TrxTransforms>>,
    /// Conflicting pending transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<TrxPending>>,
}

/// A successful pend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendSuccess {
    /// Other transactions pending on the same blocks.
    pub pending: Vec<TrxPending>,
    /// The blocks now holding the transaction.
    pub block_ids: Vec<BlockId>,
}

/// Reply to a pend: `{success:true,…}` or a [`StaleFailure`] with `success:false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResultWire", into = "ResultWire")]
pub enum PendResult {
    /// Pended.
    Success(PendSuccess),
    /// Not pended.
    Stale(StaleFailure),
}

/// Reply to a commit: `{success:true}` or a [`StaleFailure`] with `success:false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResultWire", into = "ResultWire")]
pub enum CommitResult {
    /// Committed (or was already committed at that revision).
    Success,
    /// Not committed.
    Stale(StaleFailure),
}

impl PendResult {
    /// Whether the pend succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success(_))
    }
}

impl CommitResult {
    /// Whether the commit succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }
}

/// The flat wire shape shared by pend and commit results.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultWire {
    success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Vec<TrxPending>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    block_ids: Option<Vec<BlockId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    missing: Option<Vec<TrxTransforms>>,
}

impl ResultWire {
    fn stale(s: StaleFailure) -> Self {
        Self {
            success: false,
            pending: s.pending,
            block_ids: None,
            reason: s.reason,
            missing: s.missing,
        }
    }

    fn into_stale(self) -> StaleFailure {
        StaleFailure {
            reason: self.reason,
            missing: self.missing,
            pending: self.pending,
        }
    }
}

impl From<PendResult> for ResultWire {
    fn from(r: PendResult) -> Self {
        match r {
            PendResult::Success(s) => Self {
                success: true,
                pending: Some(s.pending),
                block_ids: Some(s.block_ids),
                reason: None,
                missing: None,
            },
            PendResult::Stale(s) => Self::stale(s),
        }
    }
}

impl TryFrom<ResultWire> for PendResult {
    type Error = &'static str;
    fn try_from(w: ResultWire) -> Result<Self, Self::Error> {
        if !w.success {
            return Ok(Self::Stale(w.into_stale()));
        }
        Ok(Self::Success(PendSuccess {
            pending: w.pending.unwrap_or_default(),
            block_ids: w
                .block_ids
                .ok_or("a successful pend result needs blockIds")?,
        }))
    }
}

impl From<CommitResult> for ResultWire {
    fn from(r: CommitResult) -> Self {
        match r {
            CommitResult::Success => Self {
                success: true,
                pending: None,
                block_ids: None,
                reason: None,
                missing: None,
            },
            CommitResult::Stale(s) => Self::stale(s),
        }
    }
}

impl TryFrom<ResultWire> for CommitResult {
    type Error = &'static str;
    fn try_from(w: ResultWire) -> Result<Self, Self::Error> {
        Ok(if w.success {
            Self::Success
        } else {
            Self::Stale(w.into_stale())
        })
    }
}

/// Ask to commit a pending transaction as revision `rev` on `block_ids`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest {
    /// The transaction.
    pub trx_id: TrxId,
    /// Every block it touches.
    pub block_ids: Vec<BlockId>,
    /// The revision it commits as.
    pub rev: Rev,
    /// The collection's header block, when the transaction moves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_id: Option<BlockId>,
    /// The collection's log tail block, when the transaction moves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_id: Option<BlockId>,
}

/// A transaction and its blocks (for cancel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrxBlocks {
    /// The transaction.
    pub trx_id: TrxId,
    /// Blocks it was pended on.
    pub block_ids: Vec<BlockId>,
}

/// The payload of a cancel operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelOperation {
    /// The transaction to cancel.
    pub trx_ref: TrxBlocks,
}

/// A pend and the commit of the same transaction, agreed and applied as one
/// operation (one consensus round instead of two). All or nothing: when the pend
/// fails nothing is committed; when the commit fails the pend is cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendCommitRequest {
    /// The pend (its blocks are the transaction's blocks).
    pub pend: PendRequest,
    /// The commit: the same `trxId`, exactly the pend's blocks.
    pub commit: CommitRequest,
}

impl PendCommitRequest {
    /// Checks that the commit is the pend's: same transaction, same blocks.
    pub fn check(&self) -> Result<(), String> {
        if self.pend.trx_id != self.commit.trx_id {
            return Err(format!(
                "pendCommit: the commit's trxId {} is not the pend's {}",
                self.commit.trx_id, self.pend.trx_id
            ));
        }
        let pended = self.pend.transforms.block_ids();
        let committed: std::collections::BTreeSet<BlockId> =
            self.commit.block_ids.iter().cloned().collect();
        if pended != committed {
            return Err(
                "pendCommit: the commit's blockIds must be exactly the pend's blocks".into(),
            );
        }
        Ok(())
    }
}

/// Reply to a pendCommit: the pend's result, and the commit's when the pend
/// succeeded (absent otherwise: nothing was committed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendCommitResult {
    /// What the pend did.
    pub pend: PendResult,
    /// What the commit did; a failed commit's pend was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitResult>,
}

impl PendCommitResult {
    /// Whether the transaction committed.
    pub fn is_success(&self) -> bool {
        self.commit.as_ref().is_some_and(CommitResult::is_success)
    }
}

/// One repo operation as carried by [`RepoMessage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RepoOperation {
    /// Read blocks.
    Get(BlockGets),
    /// Pend a transaction.
    Pend(PendRequest),
    /// Cancel a pending transaction.
    Cancel(CancelOperation),
    /// Commit a pending transaction.
    Commit(CommitRequest),
    /// Pend and commit one transaction in one step.
    PendCommit(PendCommitRequest),
}

impl RepoOperation {
    /// The same operation limited to `blocks` (a write spanning several clusters
    /// runs as one part per cluster). Reads are returned unchanged.
    pub fn restricted_to(&self, blocks: &std::collections::BTreeSet<BlockId>) -> RepoOperation {
        let ids = |v: &[BlockId]| -> Vec<BlockId> {
            v.iter().filter(|b| blocks.contains(*b)).cloned().collect()
        };
        let within = |b: &Option<BlockId>| b.clone().filter(|b| blocks.contains(b));
        match self {
            RepoOperation::Get(g) => RepoOperation::Get(g.clone()),
            RepoOperation::Pend(p) => RepoOperation::Pend(PendRequest {
                transforms: p.transforms.restricted_to(blocks),
                ..p.clone()
            }),
            RepoOperation::Commit(c) => RepoOperation::Commit(CommitRequest {
                trx_id: c.trx_id.clone(),
                block_ids: ids(&c.block_ids),
                rev: c.rev,
                header_id: within(&c.header_id),
                tail_id: within(&c.tail_id),
            }),
            RepoOperation::PendCommit(pc) => RepoOperation::PendCommit(PendCommitRequest {
                pend: PendRequest {
                    transforms: pc.pend.transforms.restricted_to(blocks),
                    ..pc.pend.clone()
                },
                commit: CommitRequest {
                    trx_id: pc.commit.trx_id.clone(),
                    block_ids: ids(&pc.commit.block_ids),
                    rev: pc.commit.rev,
                    header_id: within(&pc.commit.header_id),
                    tail_id: within(&pc.commit.tail_id),
                },
            }),
            RepoOperation::Cancel(c) => RepoOperation::Cancel(CancelOperation {
                trx_ref: TrxBlocks {
                    trx_id: c.trx_ref.trx_id.clone(),
                    block_ids: ids(&c.trx_ref.block_ids),
                },
            }),
        }
    }
}

/// A request on the repo protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoMessage {
    /// The operations (one per message in practice).
    pub operations: Vec<RepoOperation>,
    /// Deadline, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<u64>,
    /// In a cluster record: the PeerId of the coordinator, the only member whose
    /// rejecting commit vote aborts the transaction. Absent in client requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// In a cluster record of writes: the configuration epoch of every region its
    /// operations' blocks lie in (the record's peers are those configurations'
    /// members). Absent in client requests.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub epochs: BTreeMap<super::Region, u64>,
    /// In a cluster record that changes configurations (and carries no
    /// operations): the change. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<super::ConfigChange>,
}

impl RepoMessage {
    /// A client's message of one operation, expiring at `expiration`.
    pub fn of(op: RepoOperation, expiration: Option<u64>) -> Self {
        Self {
            operations: vec![op],
            expiration,
            coordinator: None,
            epochs: BTreeMap::new(),
            change: None,
        }
    }
}
