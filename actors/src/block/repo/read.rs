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
    /// pending transactions, sorted by id (reads of those regions' blocks only,
    /// off the caller's thread).
    pub async fn heads(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        Ok(self.scan_heads(regions, true, None, usize::MAX).await?.0)
    }

    /// One page of [`heads`](Self::heads): at most `limit` blocks, those after
    /// block `after`; and whether more follow.
    pub async fn heads_page(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
        after: Option<BlockId>,
        limit: usize,
    ) -> Result<(Vec<crate::model::BlockHead>, bool), RepoError> {
        self.scan_heads(regions, true, after, limit).await
    }

    /// As [`heads`](Self::heads) without the pending transactions (one read
    /// per block instead of two): what region digests cover.
    pub async fn latests(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        Ok(self.scan_heads(regions, false, None, usize::MAX).await?.0)
    }

    /// The digests of `regions` where this node stores a committed block
    /// (docs/PROTOCOL.md, `digests`), by region. A region's digest is computed
    /// again only once the region changed since it was last computed; only the
    /// blocks of those regions are read.
    pub async fn digests(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
    ) -> Result<Vec<crate::model::RegionDigest>, RepoError> {
        let index = self.registry.changes().regions().clone();
        let mut out = Vec::new();
        let mut stale = std::collections::BTreeSet::new();
        for r in regions {
            match index.digest(r) {
                Some(d) => out.extend(d),
                None => {
                    stale.insert(r);
                }
            }
        }
        if !stale.is_empty() {
            let at: Vec<_> = stale.iter().map(|r| (*r, index.changes(*r))).collect();
            let heads = self.latests(stale).await?;
            let mut fresh: std::collections::BTreeMap<_, _> = crate::model::region_digests(&heads)
                .into_iter()
                .map(|d| (d.region, d))
                .collect();
            for (r, n) in at {
                let d = fresh.remove(&r);
                index.keep_digest(r, n, d.clone());
                out.extend(d);
            }
        }
        out.sort_by_key(|d| d.region);
        Ok(out)
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

    /// The blocks with metadata stored in `regions` after `after`, sorted by
    /// id, at most `limit` of them, and whether more follow: the region index
    /// names the blocks to read ([`crate::storage::RegionIndex`]), and one
    /// found with nothing stored is dropped from it.
    async fn scan_heads(
        &self,
        regions: std::collections::BTreeSet<crate::model::Region>,
        with_pending: bool,
        after: Option<BlockId>,
        limit: usize,
    ) -> Result<(Vec<crate::model::BlockHead>, bool), RepoError> {
        let raw = self.registry.raw().clone();
        let index = self.registry.changes().regions().clone();
        tokio::task::spawn_blocking(move || {
            let listed = index.blocks(raw.as_ref(), &regions)?;
            let mut heads = Vec::new();
            for block_id in listed
                .into_iter()
                .filter(|b| after.as_ref().is_none_or(|a| b > a))
            {
                let at = index.changes(crate::model::Region::of(&block_id));
                let Some(meta) = raw.get_meta(&block_id)? else {
                    if raw.list_pending(&block_id)?.is_empty() {
                        index.forget(&block_id, at);
                    }
                    continue;
                };
                if heads.len() == limit {
                    return Ok((heads, true));
                }
                let mut pending = if with_pending {
                    raw.list_pending(&block_id)?
                } else {
                    Vec::new()
                };
                pending.sort();
                heads.push(crate::model::BlockHead {
                    block_id,
                    latest: meta.latest,
                    pending,
                });
            }
            Ok((heads, false))
        })
        .await
        .map_err(|e| RepoError::Unavailable(format!("block scan failed: {e}")))?
    }
}
