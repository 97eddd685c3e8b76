//! Dropping stray pending transactions after each anti-entropy round
//! (docs/CONSENSUS.md, "Stray pending transactions"; the rule is
//! `repair::strays`). Only copies with a pending transaction settled here are
//! looked at, so a settled network asks nothing: one scan of the stored heads,
//! and `heads` of the regions concerned from the other members of their
//! configurations only when some copy holds one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Coordinator;
use crate::model::{now_ms, BlockHead, BlockId, Config, Region, TrxBlocks, TrxId};
use crate::repair::strays::strays;

/// What the sweeps remember between them: when each pending transaction of a
/// copy here was first seen (for those whose pend deadline is unknown here).
pub(super) type FirstSeen = BTreeMap<(BlockId, TrxId), Instant>;

impl Coordinator {
    /// One sweep: returns how many stray pending transactions were dropped.
    pub(super) async fn drop_strays(&self) -> usize {
        let groups: Vec<(Config, Vec<Region>)> = self
            .configs
            .table()
            .groups()
            .into_iter()
            .map(|(c, r)| (c.clone(), r))
            .collect();
        let regions: BTreeSet<Region> =
            groups.iter().flat_map(|(_, r)| r.iter().copied()).collect();
        if regions.is_empty() {
            return 0;
        }
        let Ok(heads) = self.repo.heads(regions).await else {
            return 0;
        };
        let pending: Vec<BlockHead> = heads
            .into_iter()
            .filter(|h| !h.pending.is_empty())
            .collect();
        let now = now_ms();
        let settled: BTreeSet<(BlockId, TrxId)> = {
            let mut seen = self.strays_seen.lock();
            let held: BTreeSet<(BlockId, TrxId)> = pending
                .iter()
                .flat_map(|h| h.pending.iter().map(|t| (h.block_id.clone(), t.clone())))
                .collect();
            seen.retain(|k, _| held.contains(k));
            held.into_iter()
                .filter(|k| {
                    let first = *seen.entry(k.clone()).or_insert_with(Instant::now);
                    self.members.pend_settled(&k.0, &k.1, now, first.elapsed())
                })
                .collect()
        };
        if settled.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        for (config, in_config) in groups {
            let in_config: BTreeSet<Region> = in_config.into_iter().collect();
            let mine: Vec<BlockHead> = pending
                .iter()
                .filter(|h| in_config.contains(&Region::of(&h.block_id)))
                .filter(|h| {
                    h.pending
                        .iter()
                        .any(|t| settled.contains(&(h.block_id.clone(), t.clone())))
                })
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let asked: Vec<Region> = mine
                .iter()
                .map(|h| Region::of(&h.block_id))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let answers = self.heads_of_co_members(&config, &asked).await;
            let found = strays(&mine, &answers, config.members.len(), |b, t| {
                settled.contains(&(b.clone(), t.clone()))
            });
            for (block, trx_id) in found {
                if !self
                    .members
                    .pend_settled(&block, &trx_id, now_ms(), std::time::Duration::MAX)
                {
                    continue;
                }
                let trx = TrxBlocks {
                    trx_id: trx_id.clone(),
                    block_ids: vec![block.clone()],
                };
                match self.repo.cancel(trx).await {
                    Ok(()) => {
                        tracing::info!(%block, trx = %trx_id, "dropped a pending transaction fewer than a majority of its configuration hold");
                        dropped += 1;
                    }
                    Err(e) => {
                        tracing::debug!(%block, error = %e, "cannot drop a stray pending transaction")
                    }
                }
            }
        }
        if dropped > 0 {
            self.repair_metrics
                .stray_pendings_dropped
                .add(dropped as u64);
        }
        dropped
    }

    /// The heads of `regions` from every other live member of `config` that
    /// answers.
    async fn heads_of_co_members(
        &self,
        config: &Config,
        regions: &[Region],
    ) -> Vec<Vec<BlockHead>> {
        let (Some(live), Ok(net)) = (self.live_by_name(), self.net()) else {
            return Vec::new();
        };
        let me = self.me.to_string();
        let asks = config
            .members
            .iter()
            .filter(|m| **m != me)
            .filter_map(|m| live.get(m))
            .map(|(peer, addrs)| net.heads(*peer, addrs.clone(), regions.to_vec(), self.timeout));
        futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect()
    }
}
