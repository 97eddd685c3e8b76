//! The data model of DESIGN §3: ids, blocks, transforms, repo requests and replies,
//! and the pure functions that apply transforms.

mod block;
mod ids;
mod repo;
mod transform;

pub use block::{Block, BlockHeader, BlockOperation, Transform, Transforms};
pub use ids::{validate_id, BlockId, IdError, TrxId, MAX_ID_LEN};
pub use repo::{
    BlockGets, BlockTrxState, CancelOperation, CommitRequest, CommitResult, GetBlockResult,
    GetBlockResults, PendCommitRequest, PendCommitResult, PendPolicy, PendRequest, PendResult,
    PendSuccess, RepoMessage, RepoOperation, Rev, StaleFailure, TrxBlocks, TrxContext, TrxPending,
    TrxRev, TrxTransforms,
};
pub use transform::{apply_transform, check_transform, TransformError};

#[cfg(test)]
mod roundtrip_tests;
