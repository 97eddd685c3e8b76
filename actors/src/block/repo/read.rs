//! Reads: blocks through their actors (catching up on committed transactions
//! first), and the heads of the blocks stored here, straight from storage.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;

use super::StorageRepo;
use crate::block::actor::Read;
use crate::model::{BlockGets, BlockId, GetBlockResults};
use crate::storage::RepoError;

impl StorageRepo {
    pub(super) async fn get_inner(&self, gets: BlockGets) -> Result<GetBlockResults, RepoError> {
        let ids: BTreeSet<BlockId> = gets.block_ids.into_iter().collect();
        let (rev, overlay, mut committed) = match gets.context {
            Some(c) => (Some(c.rev), c.trx_id, c.committed),
            None => (None, None, Vec::new()),
        };
        committed.sort_by_key(|c| c.rev);
        let read = Read {
            rev,
            overlay,
            catch_up: Arc::new(committed),
        };
        let replies = join_all(ids.iter().map(|id| self.registry.call(id, read.clone()))).await;
        ids.into_iter()
            .zip(replies)
            .map(|(id, r)| Ok((id, r??)))
            .collect()
    }

    /// Every block stored here in `regions`, with its latest revision and its
    /// pending transactions, sorted by id (a scan of the stored blocks, off the
    /// caller's thread).
    pub async fn heads(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        self.scan_heads(regions, true).await
    }

    /// As [`heads`](Self::heads) without the pending transactions (one read
    /// per block instead of two): what region digests cover.
    pub async fn latests(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        self.scan_heads(regions, false).await
    }

    /// The latest revision and pending transactions of each block of `blocks`
    /// stored here (one with neither is left out), in the order asked, off the
    /// caller's thread.
    pub async fn heads_of(
        &self,
        blocks: Vec<BlockId>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        let raw = self.registry.raw().clone();
        tokio::task::spawn_blocking(move || {
            let mut heads = Vec::with_capacity(blocks.len());
            for block_id in blocks {
                let latest = raw.get_meta(&block_id)?.map(|m| m.latest);
                let mut pending = raw.list_pending(&block_id)?;
                if latest.is_none() && pending.is_empty() {
                    continue;
                }
                pending.sort();
                heads.push(crate::model::BlockHead {
                    block_id,
                    latest: latest.flatten(),
                    pending,
                });
            }
            Ok(heads)
        })
        .await
        .map_err(|e| RepoError::Unavailable(format!("heads task failed: {e}")))?
    }

    async fn scan_heads(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
        with_pending: bool,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        let raw = self.registry.raw().clone();
        tokio::task::spawn_blocking(move || {
            let mut heads = Vec::new();
            for block_id in raw.list_blocks()? {
                if !regions.contains(&crate::model::Region::of(&block_id)) {
                    continue;
                }
                let latest = raw.get_meta(&block_id)?.and_then(|m| m.latest);
                let mut pending = if with_pending {
                    raw.list_pending(&block_id)?
                } else {
                    Vec::new()
                };
                pending.sort();
                heads.push(crate::model::BlockHead {
                    block_id,
                    latest,
                    pending,
                });
            }
            heads.sort_by(|a, b| a.block_id.cmp(&b.block_id));
            Ok(heads)
        })
        .await
        .map_err(|e| RepoError::Unavailable(format!("block scan failed: {e}")))?
    }
}
