//! Comparing copies with their cluster before a read ([`CatchUp::catch_up`],
//! [`CatchUp::confirm`], [`CatchUp::repair`]): one `blockHeads` request per
//! peer, a verdict per block, and the copies that must move handed on.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;

use super::judge::{judge, Verdict};
use super::moves::Move;
use super::{CatchUp, CATCH_UP_TIMEOUT};
use crate::model::Peers;
use crate::model::{BlockId, TrxId, TrxRev};

impl CatchUp {
    /// Compares every block of `blocks` not known current under the present member
    /// set with its cluster (one round trip to its peers, concurrently), taking
    /// what a majority of the cluster holds. Returns the blocks this did not
    /// confirm: fewer than a majority of the cluster answered, or no majority
    /// reported one latest revision (they are compared again next time).
    pub async fn catch_up(&self, blocks: &[BlockId]) -> Vec<BlockId> {
        self.compare(blocks, false).await
    }

    /// [`Self::catch_up`] of every block of `blocks`, known current or not (a
    /// quorum read: what it confirms, a majority of the cluster holds now).
    pub async fn confirm(&self, blocks: &[BlockId]) -> Vec<BlockId> {
        self.compare(blocks, true).await
    }

    /// Compares the blocks of `blocks` not known current (`every`: all of them)
    /// with their cluster; returns those it did not confirm.
    async fn compare(&self, blocks: &[BlockId], every: bool) -> Vec<BlockId> {
        let Some(net) = self.net.get() else {
            return Vec::new();
        };
        let view = net.member_view();
        let epoch = crate::cluster::fresh::epoch(view.fingerprint, self.configs.generation());
        let stale = if every {
            blocks.to_vec()
        } else {
            self.fresh.unknown(epoch, blocks)
        };
        if stale.is_empty() {
            return Vec::new();
        }
        if view.members.is_empty() {
            // Nobody to ask: only a configuration of this node alone confirms.
            return stale.into_iter().filter(|b| !self.alone(b)).collect();
        }
        let candidates = self.candidates(&view);
        let settled = self.compare_many(net.as_ref(), &candidates, &stale).await;
        let checked = stale.into_iter().zip(settled);
        // Only a member of the block's cluster hears of every write to it; a copy
        // on another node is a cache, compared again on every read.
        let member = |b: &BlockId| self.cluster_of(b, &candidates).contains(&self.me);
        let (confirmed, unsure): (Vec<_>, Vec<_>) = checked.into_iter().partition(|(_, ok)| *ok);
        self.fresh.compared(
            epoch,
            confirmed.into_iter().map(|(b, _)| b).filter(|b| member(b)),
        );
        unsure.into_iter().map(|(b, _)| b).collect()
    }

    /// Whether this node holds `block`'s region as a configuration of itself
    /// alone (its copy is the whole cluster's).
    fn alone(&self, block: &BlockId) -> bool {
        let me = self.me.to_string();
        self.configs
            .config(crate::model::Region::of(block))
            .is_some_and(|c| c.members.len() == 1 && c.members.contains(&me))
    }

    /// Compares `blocks` with their cluster now, whatever this node knows of them
    /// (their approvals disagreed in a record), repairing what a majority shows;
    /// returns those the comparison did not settle (too few answered, or no
    /// majority for one latest revision).
    pub async fn repair(&self, blocks: &[BlockId]) -> Vec<BlockId> {
        let Some(net) = self.net.get() else {
            return blocks.to_vec();
        };
        let candidates = self.candidates(&net.member_view());
        let settled = self.compare_many(net.as_ref(), &candidates, blocks).await;
        blocks
            .iter()
            .zip(settled)
            .filter(|(_, ok)| !ok)
            .map(|(b, _)| b.clone())
            .collect()
    }

    /// The peers a block's cluster is chosen from: the connected members and
    /// this node.
    fn candidates(&self, view: &crate::model::MemberView) -> Vec<PeerId> {
        view.members
            .iter()
            .map(|p| p.peer_id)
            .chain([self.me])
            .collect()
    }

    /// Compares each block of `blocks` with its cluster peers — one
    /// `blockHeads` request per peer for all the blocks it is asked about — and
    /// moves each copy to the latest revision a majority of its cluster holds,
    /// if it differs. One flag per block: whether its comparison settled (a
    /// majority agreed with this copy or it was moved to theirs, or there is
    /// nobody to ask).
    async fn compare_many(
        &self,
        net: &dyn Peers,
        candidates: &[PeerId],
        blocks: &[BlockId],
    ) -> Vec<bool> {
        let clusters: Vec<Vec<PeerId>> = blocks
            .iter()
            .map(|b| self.cluster_of(b, candidates))
            .collect();
        let mut asked: BTreeMap<PeerId, Vec<BlockId>> = BTreeMap::new();
        for (block, cluster) in blocks.iter().zip(&clusters) {
            for peer in cluster.iter().filter(|p| **p != self.me) {
                asked.entry(*peer).or_default().push(block.clone());
            }
        }
        let replies = futures::future::join_all(asked.into_iter().map(|(peer, of)| async move {
            let heads = net
                .block_heads(peer, Vec::new(), of.clone(), CATCH_UP_TIMEOUT)
                .await;
            (peer, of, heads)
        }))
        .await;
        // What each peer that answered reported of each block it was asked about.
        let mut heard: BTreeMap<BlockId, Vec<(PeerId, Heard)>> = BTreeMap::new();
        for (peer, of, heads) in replies {
            let Ok(heads) = heads else {
                continue;
            };
            let by_id: BTreeMap<BlockId, crate::model::BlockHead> =
                heads.into_iter().map(|h| (h.block_id.clone(), h)).collect();
            for block in of {
                let report = by_id.get(&block).map_or_else(Heard::default, |h| Heard {
                    latest: h.latest.clone(),
                    pending: h.pending.clone(),
                });
                heard.entry(block).or_default().push((peer, report));
            }
        }
        let judged =
            futures::future::join_all(blocks.iter().zip(clusters).map(|(block, cluster)| {
                let reports = heard.get(block).cloned().unwrap_or_default();
                self.judge_block(block, cluster, reports)
            }))
            .await;
        let mut settled: Vec<bool> = judged.iter().map(|(v, _)| *v == Verdict::Settled).collect();
        let moves: Vec<Move> = blocks
            .iter()
            .zip(judged)
            .enumerate()
            .filter_map(|(at, (block, (verdict, member)))| match verdict {
                Verdict::Move { target, holders } => Some(Move {
                    at,
                    block: block.clone(),
                    local: self.local_latest(block),
                    target,
                    holders,
                    member,
                }),
                _ => None,
            })
            .collect();
        for (at, ok) in self.move_many(net, moves).await {
            settled[at] = ok;
        }
        settled
    }

    /// Judges one block from what its cluster peers reported (`reports`; see
    /// [`judge`]) and, on a node outside the cluster whose copy is a cache,
    /// drops the pendings no member reports. The verdict, and whether this node
    /// is a member of the block's cluster.
    async fn judge_block(
        &self,
        block: &BlockId,
        cluster: Vec<PeerId>,
        reports: Vec<(PeerId, Heard)>,
    ) -> (Verdict, bool) {
        let member = cluster.contains(&self.me);
        if cluster.iter().all(|p| *p == self.me) {
            return (Verdict::Settled, member);
        }
        let local = self.local_latest(block);
        let pending: BTreeSet<TrxId> = reports
            .iter()
            .flat_map(|(_, h)| h.pending.iter().cloned())
            .collect();
        let mine = member.then(|| (self.me, local.clone()));
        let verdict = judge(
            &local,
            mine,
            cluster.len(),
            reports.into_iter().map(|(p, h)| (p, h.latest)),
        );
        if !member && verdict != Verdict::NoMajority {
            self.drop_stray_pendings(block, &pending).await;
        }
        (verdict, member)
    }

    /// On a node outside `block`'s cluster, whose copy is a cache that hears of
    /// no cancel: drops the pending transactions no member that answered
    /// reports (cancelled, or decided away, since this copy took them).
    async fn drop_stray_pendings(&self, block: &BlockId, reported: &BTreeSet<TrxId>) {
        let held = match self.repo.registry().raw().list_pending(block) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(%block, error = %e, "cannot list pending transactions");
                return;
            }
        };
        for trx_id in held.into_iter().filter(|t| !reported.contains(t)) {
            let trx = crate::model::TrxBlocks {
                trx_id,
                block_ids: vec![block.clone()],
            };
            if let Err(e) = self.repo.cancel(trx).await {
                tracing::debug!(%block, error = %e, "cannot drop a stray pending transaction");
            }
        }
    }
}

/// What one cluster peer reported of a block: its latest revision and the
/// transactions pending on it there (nothing: it does not store the block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Heard {
    latest: Option<TrxRev>,
    pending: Vec<TrxId>,
}
