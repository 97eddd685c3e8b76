//! Anti-entropy (docs/CONSENSUS.md, "Anti-entropy"): every interval this node
//! compares what it holds with one co-member in turn — one digest per region
//! they share, one round trip — and for the regions that differ, their heads.
//! A block the co-member holds at another latest revision is compared with the
//! block's whole cluster and this copy moved to what a majority holds, exactly
//! as a read's catch-up does; a value only the co-member holds is never taken.
//! So a member that missed writes while cut off, or restarted on a copy that
//! lags, converges with no client touching those blocks.
//!
//! Each node pulls what it lacks; what only it holds, the others pull in their
//! own rounds. Repairs are paced at the node's repair rate (blocks per second).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::Coordinator;
use crate::model::{BlockHead, BlockId, Region};
use crate::repair::digest::{differing, to_compare};

/// Per-request wait of a round's `digests` and `heads` requests.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most blocks whose heads one round fetches, counted over the differing
/// regions it takes (the larger count of the two sides, from the digests; at
/// least one region): the rest wait for the next rounds, taken from where this
/// one stopped. Large enough that a member that missed a few thousand writes
/// catches up in one round, small enough to bound a round's memory.
const BLOCKS_PER_ROUND: u64 = 16_384;
/// Most blocks compared with their cluster at once: one `blockHeads` request
/// to each member and one block request to each holder for all of them (the
/// block protocol's most per request). Without a bound, a repair rate far
/// above what the peers answer in a second would ask them for thousands of
/// archives at once and leave most comparisons unsettled until a later round.
const REPAIRS_IN_FLIGHT: usize = 256;
/// Live peers by name, with their addresses.
type LiveByName = BTreeMap<String, (PeerId, Vec<Multiaddr>)>;
/// How long after start a node keeps trying to compare with its co-members
/// (the start-up catch-up), and how often.
pub(super) const STARTUP_WINDOW: Duration = Duration::from_secs(60);
pub(super) const STARTUP_RETRY: Duration = Duration::from_millis(500);

/// How anti-entropy runs on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropySettings {
    /// Pause between rounds.
    pub interval: Duration,
    /// Most blocks repaired per second.
    pub repair_rate: u32,
}

/// What rounds remember between them.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The co-member compared last (the next round takes the one after it).
    last_peer: Option<String>,
    /// Differing regions past this one come first in the next round.
    next_region: Option<Region>,
    /// (table generation, member-view fingerprint) of the last hand-off pass
    /// that found no copy to hand off (see `handoff.rs`).
    pub(super) handed_off: Option<(u64, u64)>,
}

/// What one round found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RoundReport {
    /// Regions whose digests differed.
    regions_differing: usize,
    /// Blocks compared with their cluster.
    blocks_checked: usize,
    /// Blocks moved to what a majority holds.
    blocks_repaired: usize,
}

impl Coordinator {
    /// One round against the next live co-member, if there is one.
    pub(super) async fn anti_entropy_round(&self, settings: EntropySettings) -> RoundReport {
        let Some((peer, addrs, regions)) = self.next_co_member() else {
            // Nobody to compare with: what is queued is still tried.
            let report = RoundReport {
                blocks_repaired: self.drain_queue(settings.repair_rate).await,
                ..RoundReport::default()
            };
            self.count_under_replicated().await;
            return report;
        };
        let report = match self.compare_with(peer, &addrs, &regions, settings).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "anti-entropy round failed");
                RoundReport {
                    blocks_repaired: self.drain_queue(settings.repair_rate).await,
                    ..RoundReport::default()
                }
            }
        };
        self.count_round(&report);
        self.count_under_replicated().await;
        if report.blocks_repaired > 0 {
            tracing::info!(%peer, ?report, "anti-entropy repaired blocks");
        }
        report
    }

    /// Adds one round's findings to the repair metrics.
    fn count_round(&self, report: &RoundReport) {
        let m = &self.repair_metrics;
        m.rounds.add(1);
        m.regions_differing.add(report.regions_differing as u64);
        m.blocks_checked.add(report.blocks_checked as u64);
        m.blocks_repaired.add(report.blocks_repaired as u64);
    }

    /// The live co-members of this node's configurations, by name, each with
    /// the regions this node shares with it.
    fn shared_with_live(&self, live: &LiveByName) -> BTreeMap<String, BTreeSet<Region>> {
        let me = self.me.to_string();
        let mut shared: BTreeMap<String, BTreeSet<Region>> = BTreeMap::new();
        for (config, regions) in self.configs.table().groups() {
            for m in config
                .members
                .iter()
                .filter(|m| **m != me && live.contains_key(*m))
            {
                shared
                    .entry(m.clone())
                    .or_default()
                    .extend(regions.iter().copied());
            }
        }
        shared
    }

    /// The start-up catch-up (docs/CONSENSUS.md, "Anti-entropy"): compares
    /// this node's copies with every live co-member not compared yet (`done`,
    /// by name). True once, in each configuration this node is a member of,
    /// enough co-members were compared that every acknowledged write there is
    /// on at least one of them: `size - majority` of the others, since a write
    /// this node missed is on `majority` of the `size - 1` others.
    pub(super) async fn catch_up_at_start(
        &self,
        settings: EntropySettings,
        done: &mut BTreeSet<String>,
    ) -> bool {
        let live = self.live_by_name().unwrap_or_default();
        let mut shared = self.shared_with_live(&live);
        shared.retain(|name, _| !done.contains(name));
        for (name, regions) in shared {
            let Some((peer, addrs)) = live.get(&name) else {
                continue;
            };
            match self.compare_with(*peer, addrs, &regions, settings).await {
                Ok(report) => {
                    self.count_round(&report);
                    tracing::info!(%peer, ?report, "start-up catch-up compared with a co-member");
                    done.insert(name);
                }
                Err(e) => tracing::debug!(%peer, error = %e, "start-up catch-up failed"),
            }
        }
        let me = self.me.to_string();
        let table = self.configs.table();
        let caught_up = table.groups().keys().all(|config| {
            let others = config.members.iter().filter(|m| **m != me).count();
            let need = config
                .members
                .len()
                .saturating_sub(config.majority())
                .min(others);
            config.members.iter().filter(|m| done.contains(*m)).count() >= need
        });
        caught_up
    }

    /// The live co-member after the one compared last (in PeerId order), with
    /// the regions this node shares with it.
    fn next_co_member(&self) -> Option<(PeerId, Vec<Multiaddr>, BTreeSet<Region>)> {
        let live = self.live_by_name()?;
        let shared = self.shared_with_live(&live);
        let mut state = self.entropy.lock();
        let after = state.last_peer.clone().unwrap_or_default();
        let (name, regions) = shared
            .range::<String, _>((
                std::ops::Bound::Excluded(&after),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .or_else(|| shared.iter().next())
            .map(|(n, r)| (n.clone(), r.clone()))?;
        state.last_peer = Some(name.clone());
        let (peer, addrs) = live.get(&name)?.clone();
        Some((peer, addrs, regions))
    }

    /// Compares this node's copies of `regions` with `peer`'s and repairs the
    /// blocks that differ.
    async fn compare_with(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
        regions: &BTreeSet<Region>,
        settings: EntropySettings,
    ) -> Result<RoundReport, crate::model::RepoError> {
        let net = self.net()?;
        let my_digests = self.repo.digests(regions.clone()).await?;
        let asked: Vec<Region> = regions.iter().copied().collect();
        let theirs = net
            .digests(peer, addrs.to_vec(), asked, ASK_TIMEOUT)
            .await
            .map_err(|e| crate::model::RepoError::Unavailable(e.to_string()))?;
        let differ = differing(&my_digests, &theirs);
        let mut report = RoundReport {
            regions_differing: differ.len(),
            ..RoundReport::default()
        };
        if differ.is_empty() {
            return Ok(report);
        }
        let mut weight: BTreeMap<Region, u64> = BTreeMap::new();
        for d in my_digests.iter().chain(&theirs) {
            let w = weight.entry(d.region).or_default();
            *w = (*w).max(d.blocks);
        }
        let wanted = self.this_round(&differ, |r| weight.get(r).copied().unwrap_or(0));
        let their_heads = net
            .heads(
                peer,
                addrs.to_vec(),
                wanted.iter().copied().collect(),
                ASK_TIMEOUT,
            )
            .await
            .map_err(|e| crate::model::RepoError::Unavailable(e.to_string()))?;
        let mine: Vec<BlockHead> = self.repo.latests(wanted.clone()).await?;
        let blocks = to_compare(&mine, &their_heads);
        report.blocks_checked = blocks.len();
        self.enqueue(blocks).await;
        report.blocks_repaired = self.drain_queue(settings.repair_rate).await;
        Ok(report)
    }

    /// Puts `blocks` in the repair queue (on disk before it returns; a failed
    /// write is logged, and the blocks are still compared this round).
    async fn enqueue(&self, blocks: Vec<BlockId>) {
        self.write_queue(move |q| q.add(&blocks)).await;
    }

    /// Changes the repair queue with `change` off the caller's thread (its
    /// file is synced), logs a failure, and updates the queue's depth.
    async fn write_queue(
        &self,
        change: impl FnOnce(&crate::repair::queue::RepairQueue) -> std::io::Result<()> + Send + 'static,
    ) {
        let queue = self.repair_queue.clone();
        match tokio::task::spawn_blocking(move || change(&queue)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the repair queue"),
            Err(e) => tracing::warn!(error = %e, "the repair queue's write task failed"),
        }
        self.repair_metrics
            .queue_depth
            .set(self.repair_queue.len() as i64);
    }

    /// Compares every queued block with its cluster, at most `rate` blocks per
    /// second, and moves each copy to what a majority holds; takes off the
    /// queue, a second's worth at a time, those the comparison settled.
    /// Returns how many copies moved.
    async fn drain_queue(&self, rate: u32) -> usize {
        let queued = self.repair_queue.snapshot();
        let per_second = rate.max(1) as usize;
        let mut repaired = 0;
        let chunks = queued.chunks(per_second);
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.enumerate() {
            let started = Instant::now();
            let before: Vec<_> = chunk
                .iter()
                .map(|b| self.catch_up.local_latest(b))
                .collect();
            let mut unsettled: BTreeSet<BlockId> = BTreeSet::new();
            for batch in chunk.chunks(REPAIRS_IN_FLIGHT) {
                unsettled.extend(self.catch_up.repair(batch).await);
            }
            repaired += chunk
                .iter()
                .zip(before)
                .filter(|(b, was)| self.catch_up.local_latest(b) != *was)
                .count();
            let settled: Vec<BlockId> = chunk
                .iter()
                .filter(|b| !unsettled.contains(*b))
                .cloned()
                .collect();
            self.write_queue(move |q| q.remove(&settled)).await;
            if i < last {
                if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
        }
        repaired
    }

    /// Sets `optimystic_blocks_under_replicated`: the blocks this node stores
    /// in regions it is a member of whose configuration has a member that is
    /// not connected, and the blocks queued for repair here.
    pub(super) async fn count_under_replicated(&self) {
        let Ok(net) = self.net() else {
            return;
        };
        let view = net.member_view();
        let live: BTreeSet<String> = view
            .members
            .iter()
            .map(|p| p.peer_id)
            .filter(|p| !view.departed.contains(p))
            .map(|p| p.to_string())
            .collect();
        let me = self.me.to_string();
        let short: BTreeSet<Region> = self
            .configs
            .table()
            .groups()
            .into_iter()
            .filter(|(config, _)| {
                config.members.contains(&me)
                    && config.members.iter().any(|m| *m != me && !live.contains(m))
            })
            .flat_map(|(_, regions)| regions)
            .collect();
        let mut under: BTreeSet<BlockId> = self.repair_queue.snapshot().into_iter().collect();
        if !short.is_empty() {
            match self.repo.latests(short).await {
                Ok(heads) => under.extend(heads.into_iter().map(|h| h.block_id)),
                Err(e) => tracing::debug!(error = %e, "cannot list the blocks of short regions"),
            }
        }
        self.repair_metrics.under_replicated.set(under.len() as i64);
    }

    /// The regions of `differ` whose blocks (`blocks` of each) add up to at most
    /// [`BLOCKS_PER_ROUND`] (at least one region), starting after where the
    /// last round stopped (so regions that stay different cannot starve the
    /// rest).
    fn this_round(&self, differ: &[Region], blocks: impl Fn(&Region) -> u64) -> BTreeSet<Region> {
        let mut state = self.entropy.lock();
        let start = state
            .next_region
            .map_or(0, |r| differ.partition_point(|d| *d <= r));
        let (after, before) = differ.split_at(start.min(differ.len()));
        let mut wanted = Vec::new();
        let mut total = 0u64;
        for r in after.iter().chain(before) {
            let w = blocks(r);
            if !wanted.is_empty() && total.saturating_add(w) > BLOCKS_PER_ROUND {
                break;
            }
            total = total.saturating_add(w);
            wanted.push(*r);
        }
        state.next_region = if wanted.len() < differ.len() {
            wanted.last().copied()
        } else {
            None
        };
        wanted.into_iter().collect()
    }
}
