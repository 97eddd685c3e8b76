//! A block's archive as peers send it for restoration and catch-up, and the
//! revision ranges it (and a block's metadata) covers. docs/PROTOCOL.md gives the
//! wire form (the block protocol).

use serde::{Deserialize, Serialize};

use super::{Block, BlockId, Rev, Transform, TrxId, TrxRev};

/// A half-open range of revisions held locally: `[start]` is open-ended
/// (everything from `start` on), `[start, end]` covers `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RangeWire", into = "RangeWire")]
pub struct RevRange {
    /// First revision covered.
    pub start: Rev,
    /// First revision not covered; `None` = open-ended.
    pub end: Option<Rev>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RangeWire {
    Open((Rev,)),
    Closed((Rev, Rev)),
}

impl From<RangeWire> for RevRange {
    fn from(w: RangeWire) -> Self {
        match w {
            RangeWire::Open((start,)) => Self { start, end: None },
            RangeWire::Closed((start, end)) => Self {
                start,
                end: Some(end),
            },
        }
    }
}

impl From<RevRange> for RangeWire {
    fn from(r: RevRange) -> Self {
        match r.end {
            None => Self::Open((r.start,)),
            Some(end) => Self::Closed((r.start, end)),
        }
    }
}

impl RevRange {
    /// Everything, from revision 0 on.
    pub const ALL: RevRange = RevRange {
        start: 0,
        end: None,
    };

    /// Whether `rev` falls in the range.
    pub fn contains(&self, rev: Rev) -> bool {
        rev >= self.start && self.end.is_none_or(|e| rev < e)
    }
}

/// One revision carried in a restoration archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveRevision {
    /// Revision and transaction.
    #[serde(flatten)]
    pub trx_rev: TrxRev,
    /// The committed transform.
    pub transform: Transform,
    /// The materialized block, when the sender had it (absent for deleted blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<Block>,
}

/// What a peer sends to restore a block: revisions with transforms, the range
/// they cover, and the pending transactions it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockArchive {
    /// The block.
    pub block_id: BlockId,
    /// Revisions, ascending.
    pub revisions: Vec<ArchiveRevision>,
    /// The revision range the archive covers completely.
    pub range: RevRange,
    /// Pending transactions.
    #[serde(default)]
    pub pending: Vec<(TrxId, Transform)>,
}
