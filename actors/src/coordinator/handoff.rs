//! Hand-off (docs/CONSENSUS.md, "Hand-off"): the other end of a hand-over. A
//! node that is no longer a member of a region's configuration keeps its copies
//! of the region's blocks until a majority of that configuration reports each
//! block at or past this copy's latest revision (by their `heads`), then
//! forgets the copy and its space comes back. A copy it still keeps is a cache:
//! a node outside a block's configuration compares every read with the
//! configuration (catch-up), so it never serves it as current.

use std::collections::{BTreeMap, BTreeSet};

use super::Coordinator;
use crate::cluster::majority;
use crate::model::{BlockHead, BlockId, Config, Region, TrxRev};

/// Most copies one pass looks at (the rest wait for the next passes).
const BLOCKS_PER_PASS: usize = 1024;

impl Coordinator {
    /// One pass: returns how many copies were forgotten. Skipped while the
    /// configurations and the live peers are what they were at a pass that
    /// found no copy to hand off (it scans every stored block).
    pub(super) async fn hand_off(&self) -> usize {
        let Ok(net) = self.net() else {
            return 0;
        };
        let view = net.member_view();
        let now = (self.configs.generation(), view.fingerprint);
        if self.entropy.lock().handed_off == Some(now) {
            return 0;
        }
        let stored = match self.stored_blocks().await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list blocks to hand off");
                return 0;
            }
        };
        let keyed: Vec<([u8; 32], libp2p::PeerId)> = self
            .candidates(&view, &self.configs.retired())
            .into_iter()
            .map(|p| (crate::membership::peer_key(&p), p))
            .collect();
        let k = self.configs.cluster_size();
        let mut targeted: BTreeMap<Region, bool> = BTreeMap::new();
        let me = self.me.to_string();
        // Copies in regions whose configuration, as this node knows it, does not
        // have this node, nor is about to (a peer being added holds the blocks
        // handed to it before the change): grouped by that configuration.
        let mut left: BTreeMap<Config, Vec<BlockId>> = BTreeMap::new();
        for b in stored {
            let region = Region::of(&b);
            let Some(c) = self.configs.config(region) else {
                continue;
            };
            let wanted = *targeted.entry(region).or_insert_with(|| {
                crate::membership::target_keyed(region, &keyed, k).contains(&self.me)
            });
            if !c.members.contains(&me) && !wanted {
                left.entry(c).or_default().push(b);
            }
        }
        if left.is_empty() {
            self.entropy.lock().handed_off = Some(now);
            return 0;
        }
        let mut budget = BLOCKS_PER_PASS;
        let mut dropped = 0;
        for (config, mut blocks) in left {
            if budget == 0 {
                break;
            }
            blocks.truncate(budget);
            budget -= blocks.len();
            dropped += self.hand_off_to(&config, &blocks).await;
        }
        if dropped > 0 {
            self.repair_metrics.blocks_handed_off.add(dropped as u64);
            tracing::info!(blocks = dropped, "forgot copies their configurations hold");
        }
        dropped
    }

    /// Forgets each copy of `blocks` that a majority of `config` holds at or
    /// past this copy's latest (and that holds nothing pending here).
    async fn hand_off_to(&self, config: &Config, blocks: &[BlockId]) -> usize {
        let Some(live) = self.live_by_name() else {
            return 0;
        };
        let regions: BTreeSet<Region> = blocks.iter().map(Region::of).collect();
        let Ok(mine) = self.repo.heads(regions.clone()).await else {
            return 0;
        };
        let wanted: BTreeSet<&BlockId> = blocks.iter().collect();
        let mine: Vec<BlockHead> = mine
            .into_iter()
            .filter(|h| wanted.contains(&h.block_id))
            .collect();
        let Ok(net) = self.net() else {
            return 0;
        };
        let asks = config
            .members
            .iter()
            .filter_map(|m| live.get(m))
            .map(|(peer, addrs)| {
                crate::net::cluster_heads(
                    net,
                    *peer,
                    addrs.clone(),
                    regions.iter().copied().collect(),
                    self.timeout,
                )
            });
        let answers: Vec<BTreeMap<BlockId, Option<TrxRev>>> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .map(|heads| heads.into_iter().map(|h| (h.block_id, h.latest)).collect())
            .collect();
        let need = majority(config.members.len());
        let mut dropped = 0;
        for h in mine.iter().filter(|h| h.pending.is_empty()) {
            let Some(local) = &h.latest else {
                continue;
            };
            if held_by(&answers, &h.block_id, local) < need {
                continue;
            }
            match self.repo.drop_copy(&h.block_id, local.clone()).await {
                Ok(true) => dropped += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(block = %h.block_id, error = %e, "cannot forget a copy"),
            }
        }
        dropped
    }
}

/// How many of `answers` (each a member's heads) hold `block` at `local` or at
/// a later revision: a write this copy holds that they do not hold there can no
/// longer reach a majority, so nothing acknowledged lives only here.
fn held_by(
    answers: &[BTreeMap<BlockId, Option<TrxRev>>],
    block: &BlockId,
    local: &TrxRev,
) -> usize {
    answers
        .iter()
        .filter(|a| {
            a.get(block)
                .and_then(Option::as_ref)
                .is_some_and(|l| l == local || l.rev > local.rev)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TrxId;

    fn tr(trx: &str, rev: u64) -> TrxRev {
        TrxRev {
            trx_id: TrxId::new(trx).unwrap(),
            rev,
        }
    }

    #[test]
    fn held_at_or_past_this_copy() {
        let b = BlockId::new("b").unwrap();
        let ans = |l: Option<TrxRev>| BTreeMap::from([(b.clone(), l)]);
        let answers = vec![
            ans(Some(tr("t2", 2))),
            ans(Some(tr("u3", 3))),
            ans(Some(tr("u2", 2))),
            ans(None),
            BTreeMap::new(),
        ];
        // The same write, or any later revision, counts; another write at the
        // same revision, a copy with no revision, or none, does not.
        assert_eq!(held_by(&answers, &b, &tr("t2", 2)), 2);
        assert_eq!(held_by(&answers, &b, &tr("t3", 3)), 0);
        assert_eq!(held_by(&answers, &b, &tr("t1", 1)), 3);
    }
}
