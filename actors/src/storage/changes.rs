//! Which blocks just changed. Every effect a block's storage applies (a pend, a
//! commit, a cancel, a restored copy) sends the block's id to the subscribers,
//! when there are any; a watcher wakes on its block's id and reads what is new.
//! A subscriber that falls behind misses ids (`Lagged`) and must read again, so a
//! wake-up is a hint, never the record of what changed.

use tokio::sync::broadcast;

use crate::model::BlockId;

/// Ids buffered per subscriber before the oldest are dropped.
const CAPACITY: usize = 1024;

/// The sender side, shared by every block's storage of one registry.
#[derive(Debug, Clone)]
pub struct Changes(broadcast::Sender<BlockId>);

impl Default for Changes {
    fn default() -> Self {
        Self(broadcast::channel(CAPACITY).0)
    }
}

impl Changes {
    /// Tells the subscribers that `id` changed (nothing to do when none listens).
    pub fn notify(&self, id: &BlockId) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(id.clone());
        }
    }

    /// A new subscriber: it hears of changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BlockId> {
        self.0.subscribe()
    }
}
