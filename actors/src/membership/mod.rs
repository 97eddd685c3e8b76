//! Membership (DESIGN §10), pure: where a region should live (placement), the
//! quorum a record needs, who may be a member (the allow list), and a node's table of the configurations it knows (the
//! wire types — regions, configurations, changes — are in `model`). The one
//! home of cluster choice: the coordinator, the members and the placement driver
//! all ask it. docs/CONSENSUS.md, "Configurations", states the rules.

pub mod allow;
pub mod placement;
pub mod quorum;
pub mod table;

pub use crate::model::{
    block_key, ChangeError, Config, ConfigChange, Region, REGIONS, REGION_BITS,
};
pub use allow::parse_allow_list;
pub use placement::{closest_to, next_step, peer_key, target, target_keyed};
pub use quorum::Quorum;
pub use table::{Mismatch, RegionTable};
