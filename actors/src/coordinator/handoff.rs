//! Hand-off (docs/CONSENSUS.md, "Hand-off"): the other end of a hand-over. A
//! node that is no longer a member of a region's configuration keeps its copies
//! of the region's blocks until a majority of that configuration reports each
//! block at or past this copy's latest revision (by their `heads`), then
//! forgets the copy and its space comes back (a leaving node waits for every
//! member, see [`super::leave`]). A copy it still keeps is a cache:
//! a node outside a block's configuration compares every read with the
//! configuration (catch-up), so it never serves it as current.

use std::collections::{BTreeMap, BTreeSet};

use super::Coordinator;
use crate::cluster::majority;
use crate::model::{BlockHead, BlockId, Config, Region, TrxRev};

/// Most copies one pass looks at (the rest wait for the next passes).
const BLOCKS_PER_PASS: usize = 1024;

/// Most regions a leaving node asks the configurations of per request (a reply
/// stays well under the cluster frame limit).
const REGIONS_PER_ASK: usize = 1024;

impl Coordinator {
    /// One pass: returns how many copies were forgotten. Skipped while the
    /// configurations and the live peers are what they were at a pass that
    /// found no copy to hand off (it scans every stored block).
    pub(super) async fn hand_off(&self) -> usize {
        let Ok(net) = self.net() else {
            return 0;
        };
        // One pass at a time (anti-entropy's, and a leave's progress checks).
        let Ok(_pass) = self.handing_off.try_lock() else {
            return 0;
        };
        if self.leaving() {
            self.learn_configs_of_copies().await;
        }
        let view = net.member_view();
        let now = (self.configs.generation(), view.fingerprint);
        if self.entropy.lock().handed_off == Some(now) {
            return 0;
        }
        let keyed: Vec<([u8; 32], libp2p::PeerId)> = self
            .candidates(&view, &self.configs.retired())
            .into_iter()
            .map(|p| (crate::membership::peer_key(&p), p))
            .collect();
        let k = self.configs.cluster_size();
        let me = self.me.to_string();
        // Regions whose configuration, as this node knows it, does not have this
        // node, nor is about to (a peer being added holds the blocks handed to
        // it before the change).
        let left: BTreeMap<Region, Config> = Region::all()
            .filter_map(|r| Some((r, self.configs.config(r)?)))
            .filter(|(r, c)| {
                !c.members.contains(&me)
                    && !crate::membership::target_keyed(*r, &keyed, k).contains(&self.me)
            })
            .collect();
        // One scan of the stored blocks: the copies in those regions, by
        // configuration.
        let heads = if left.is_empty() {
            Vec::new()
        } else {
            match self.repo.heads(left.keys().copied().collect()).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot list blocks to hand off");
                    return 0;
                }
            }
        };
        if heads.is_empty() {
            self.entropy.lock().handed_off = Some(now);
            return 0;
        }
        let mut by_config: BTreeMap<&Config, Vec<BlockHead>> = BTreeMap::new();
        for h in heads.into_iter().take(BLOCKS_PER_PASS) {
            if let Some(c) = left.get(&Region::of(&h.block_id)) {
                by_config.entry(c).or_default().push(h);
            }
        }
        let mut dropped = 0;
        for (config, copies) in by_config {
            dropped += self.hand_off_to(config, &copies, now.0).await;
        }
        if dropped > 0 {
            self.repair_metrics.blocks_handed_off.add(dropped as u64);
            tracing::info!(blocks = dropped, "forgot copies their configurations hold");
        }
        dropped
    }

    /// A leaving node asks the live peers for the configurations of the regions
    /// it holds copies in but knows no configuration of (one learned and later
    /// forgotten, say, after its members could not be reached): without one, it
    /// could neither hand those copies off nor ever finish leaving.
    /// Scans the stored blocks only when some region's configuration is unknown,
    /// and asks at most [`REGIONS_PER_ASK`] regions per request.
    async fn learn_configs_of_copies(&self) {
        if Region::all().all(|r| self.configs.config(r).is_some()) {
            return;
        }
        let Ok(stored) = self.stored_blocks().await else {
            return;
        };
        let unknown: Vec<Region> = stored
            .iter()
            .map(Region::of)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|r| self.configs.config(*r).is_none())
            .collect();
        if !unknown.is_empty() {
            tracing::debug!(
                regions = unknown.len(),
                "asking the configurations of regions this leaving node holds copies in"
            );
            for chunk in unknown.chunks(REGIONS_PER_ASK) {
                self.discover_widely(chunk, &BTreeSet::new()).await;
            }
            let still = unknown
                .iter()
                .filter(|r| self.configs.config(**r).is_none())
                .count();
            if still > 0 {
                tracing::debug!(
                    regions = still,
                    "copies kept: no configuration of their regions is known yet"
                );
            }
        }
    }

    /// Forgets each of `copies` (this node's heads) that a majority of `config`
    /// holds at or past this copy's latest (and that holds nothing pending here).
    /// Stops once this node's configurations are no longer those of
    /// `generation`, and keeps the copies of a region a change this node
    /// promised holds: either may have made it a member again while the heads
    /// were asked, and a member must keep what it was handed.
    async fn hand_off_to(&self, config: &Config, copies: &[BlockHead], generation: u64) -> usize {
        let (Some(live), Ok(net)) = (self.live_by_name(), self.net()) else {
            return 0;
        };
        let regions: BTreeSet<Region> = copies.iter().map(|h| Region::of(&h.block_id)).collect();
        let asks = config
            .members
            .iter()
            .filter_map(|m| live.get(m))
            .map(|(peer, addrs)| {
                net.heads(
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
        // A leaving node keeps each copy until the whole configuration holds
        // it: its leave is over only when nothing it held is under-replicated.
        let leaving = self.leaving();
        let need = if leaving {
            config.members.len()
        } else {
            majority(config.members.len())
        };
        // A leaving node forgets nothing on the word of a configuration smaller
        // than the cluster size (it may have been learned from one peer, trust on
        // first use): its leave cannot finish before the regions can be full
        // without it anyway ("Leaving").
        if need == 0 || (leaving && config.members.len() < self.configs.cluster_size()) {
            tracing::debug!(
                epoch = config.epoch,
                members = config.members.len(),
                copies = copies.len(),
                "copies kept: their configuration is too small to hand off to"
            );
            return 0;
        }
        let mut dropped = 0;
        // A pending transaction here counts for nothing once this node is out
        // of the configuration (its members vote on the commit; a newcomer got
        // those a majority held inside its change), but outside a leave a copy
        // with one is kept for now (docs/CONSENSUS.md, "Hand-off").
        for h in copies.iter().filter(|h| leaving || h.pending.is_empty()) {
            // A copy with no revision holds nothing acknowledged: nothing to wait
            // for (a leaving node forgets its pending transactions with it).
            if let Some(local) = &h.latest {
                let held = held_by(&answers, &h.block_id, local);
                if held < need {
                    tracing::debug!(block = %h.block_id, ?local, held, need, answered = answers.len(), "copy kept: not held widely enough yet");
                    continue;
                }
            }
            if self.configs.generation() != generation {
                break;
            }
            if self.members.changing(Region::of(&h.block_id)) {
                tracing::debug!(block = %h.block_id, "copy kept: a change this node promised holds its region");
                continue;
            }
            match self
                .repo
                .drop_copy(&h.block_id, h.latest.clone(), h.pending.clone())
                .await
            {
                Ok(true) => dropped += 1,
                Ok(false) => {
                    tracing::debug!(block = %h.block_id, "copy kept: it changed since its heads were read")
                }
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
