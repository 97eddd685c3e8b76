//! Which blocks just changed. Every effect a block's storage applies (a pend, a
//! commit, a cancel, a restored copy) sends the block's id to the subscribers,
//! when there are any; a watcher wakes on its block's id and reads what is new.
//! A subscriber that falls behind misses ids (`Lagged`) and must read again, so a
//! wake-up is a hint, never the record of what changed. Every effect also
//! reaches the store's [`RegionIndex`], listener or not.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::regions::RegionIndex;
use crate::model::BlockId;

/// Ids buffered per subscriber before the oldest are dropped.
const CAPACITY: usize = 1024;

/// The sender side, shared by every block's storage of one registry.
#[derive(Debug, Clone)]
pub struct Changes {
    sender: broadcast::Sender<BlockId>,
    regions: Arc<RegionIndex>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            regions: Arc::default(),
        }
    }
}

impl Changes {
    /// A durable effect on `id` was applied: its region's index learns it, and
    /// the subscribers hear of it (nothing to send when none listens).
    pub fn notify(&self, id: &BlockId) {
        self.regions.touched(id);
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(id.clone());
        }
    }

    /// A new subscriber: it hears of changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BlockId> {
        self.sender.subscribe()
    }

    /// Which blocks each region holds, and its changes.
    pub fn regions(&self) -> &Arc<RegionIndex> {
        &self.regions
    }
}
