//! The data model of DESIGN §3: ids, blocks, transforms, repo requests and replies,
//! the [`Repo`] trait, the [`Peers`] trait the network implements, errors and
//! their protocol codes, the clock, and the pure
//! functions that apply transforms.

mod archive;
mod block;
mod clock;
mod code;
mod config;
mod digest;
mod error;
mod ids;
mod outcome;
mod peers;
mod record;
mod region;
mod repo;
mod transform;

pub use archive::{ArchiveRevision, BlockArchive, RevRange};
pub use block::{Block, BlockHeader, BlockOperation, Transform, Transforms};
pub use clock::{ms_from_now, now_ms};
pub use code::{codes, ErrorCode};
#[cfg(test)]
pub(crate) use config::cfg;
pub use config::{ChangeError, Config, ConfigChange};
pub use digest::{region_digests, RegionDigest};
pub use error::{Failure, RegionView, RepoError, StorageError};
pub use ids::{validate_id, BlockId, IdError, TrxId, MAX_ID_LEN};
pub use outcome::{unexpected, CancelReply, Empty, OpKind, OpOutcome, OpResult, Repo, WireResult};
pub use peers::{ConfigsReply, MemberView, NetError, PeerCall, PeerInfo, Peers, StoreReply};
pub use record::{BlockState, ClusterPeer, ClusterRecord, EffectKind, Signature, States, VoteType};
pub use region::{block_key, Region, REGIONS, REGION_BITS};
pub use repo::{
    BlockGets, BlockHead, BlockTrxState, CancelOperation, CommitRequest, CommitResult, Consistency,
    GetBlockResult, GetBlockResults, PendCommitRequest, PendCommitResult, PendPolicy, PendRequest,
    PendResult, PendSuccess, RepoMessage, RepoOperation, Rev, StaleFailure, TrxBlocks, TrxContext,
    TrxPending, TrxRev, TrxTransforms,
};
pub use transform::{apply_transform, check_transform, TransformError};

#[cfg(test)]
mod roundtrip_tests;
