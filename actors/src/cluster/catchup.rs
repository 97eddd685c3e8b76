//! Catching a block up with its cluster.
//!
//! - Before a member applies a decision: [`CatchUp::reach_base`] brings its copy
//!   to the decided base (held by a threshold of the approvals, so final) from
//!   the members that hold it, or reports that the copy holds another write.
//! - Before a plain read: [`CatchUp::catch_up`] compares the copy with the
//!   block's cluster and takes a revision only when a majority of the cluster
//!   reports it as its latest (never a write that only one member holds: it may
//!   still be fenced by the others).
//!
//! Revisions are compared by (rev, trxId), never by number alone: a copy that
//! holds another write at some revision than a majority does is repaired
//! (docs/CONSENSUS.md, "Repairing a diverged copy").
//!
//! A member's copy takes the holders' revisions only, never their pending
//! transactions: a member holds pending what it applied itself (or was handed
//! as a newcomer), so no commit or cancel it will never hear of leaves a pend
//! behind on it.
//!
//! Peers answer the archive requests straight from storage, never behind a
//! BlockActor that may itself be restoring, so two nodes catching the same block
//! up at once never wait on each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::{majority, Freshness};
use crate::block::StorageRepo;
use crate::model::{BlockId, Transform, TrxId, TrxRev};
use crate::net::NetClient;
use crate::storage::BlockArchive;

/// Per-peer wait when comparing a block with its cluster or fetching from it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// How this copy of a block stands against a decided base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseCheck {
    /// At the base.
    Equal,
    /// Behind it, and no holder could bring it there now.
    Behind,
    /// Holds a write the base does not (ahead of it, or another write at its
    /// revision): this member cannot apply the decision.
    Conflict,
}

/// A peer and where to reach it.
pub type PeerAddrs = (PeerId, Vec<Multiaddr>);

/// What catching up needs from the node.
pub struct CatchUp {
    me: PeerId,
    repo: StorageRepo,
    net: Arc<OnceLock<NetClient>>,
    fresh: Arc<Freshness>,
    configs: Arc<super::Configs>,
}

impl CatchUp {
    /// Catch-up for the node `me`, whose block clusters are its configurations.
    pub fn new(
        me: PeerId,
        repo: StorageRepo,
        net: Arc<OnceLock<NetClient>>,
        fresh: Arc<Freshness>,
        configs: Arc<super::Configs>,
    ) -> Self {
        Self {
            me,
            repo,
            net,
            fresh,
            configs,
        }
    }

    /// A block's cluster: its region's configuration when this node knows it,
    /// else the target of its region among `candidates`.
    fn cluster_of(&self, block: &BlockId, candidates: &[PeerId]) -> Vec<PeerId> {
        match self.configs.config(crate::model::Region::of(block)) {
            Some(c) => c.members.iter().filter_map(|m| m.parse().ok()).collect(),
            None => crate::membership::target(
                crate::model::Region::of(block),
                candidates,
                self.configs.cluster_size(),
            ),
        }
    }

    /// This copy's latest revision of `block` (what is durable).
    pub fn local_latest(&self, block: &BlockId) -> Option<TrxRev> {
        self.repo
            .registry()
            .raw()
            .get_meta(block)
            .ok()
            .flatten()
            .and_then(|m| m.latest)
    }

    /// Brings this copy of `block` to `base` from `holders` (members that reported
    /// it as their latest). A copy behind the base whose own latest is not in the
    /// holders' history is repaired to it: a threshold holds the base, so the
    /// write this copy holds at that revision can no longer reach a majority.
    pub async fn reach_base(
        &self,
        block: &BlockId,
        base: &Option<TrxRev>,
        holders: impl FnOnce() -> Vec<PeerAddrs>,
    ) -> BaseCheck {
        let check = |local: &Option<TrxRev>| match (local, base) {
            (l, b) if l == b => BaseCheck::Equal,
            (_, None) => BaseCheck::Conflict,
            (Some(l), Some(b)) if l.rev >= b.rev => BaseCheck::Conflict,
            _ => BaseCheck::Behind,
        };
        let local = self.local_latest(block);
        if check(&local) != BaseCheck::Behind {
            return check(&local);
        }
        let Some(net) = self.net.get() else {
            return BaseCheck::Behind;
        };
        let Some(wanted) = base else {
            return BaseCheck::Behind;
        };
        let from = local.as_ref().map_or(0, |l| l.rev);
        for (peer, addrs) in holders().into_iter().filter(|(p, _)| *p != self.me) {
            let fetched =
                crate::net::fetch_archive(net, peer, addrs, block, Some(from), CATCH_UP_TIMEOUT)
                    .await;
            let Ok(Some(archive)) = fetched else {
                continue;
            };
            // A holder may have applied this very decision, or later ones, since
            // it promised: its history still holds the base, and this copy takes
            // it up to the base only.
            let Some(archive) = up_to(archive, wanted)
                .filter(|a| a.block_id == *block)
                .map(revisions_only)
            else {
                continue;
            };
            // It must reach back to this copy's latest, or the restored history
            // would have a hole.
            if local.is_some() && archive.range.start > from {
                continue;
            }
            let authoritative = !contains(&archive, local.as_ref());
            match self.repo.restore(archive, authoritative).await {
                Ok(now) => return check(&now),
                Err(e) => {
                    tracing::warn!(%block, %peer, error = %e, "cannot restore the decided base")
                }
            }
        }
        check(&self.local_latest(block))
    }

    /// The transform of `trx` pending on `block` at one of `holders`.
    pub async fn fetch_pending(
        &self,
        block: &BlockId,
        trx: &TrxId,
        holders: &[PeerAddrs],
    ) -> Option<Transform> {
        let net = self.net.get()?;
        for (peer, addrs) in holders.iter().filter(|(p, _)| *p != self.me) {
            let fetched =
                crate::net::fetch_archive(net, *peer, addrs.clone(), block, None, CATCH_UP_TIMEOUT)
                    .await;
            if let Ok(Some(a)) = fetched {
                if let Some((_, t)) = a.pending.into_iter().find(|(t, _)| t == trx) {
                    return Some(t);
                }
            }
        }
        None
    }

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
        let epoch = super::fresh::epoch(view.fingerprint, self.configs.generation());
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
        let checked = futures::future::join_all(
            stale
                .iter()
                .map(|b| async { (b.clone(), self.catch_up_block(net, &candidates, b).await) }),
        )
        .await;
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
        let settled = futures::future::join_all(
            blocks
                .iter()
                .map(|b| self.catch_up_block(net, &candidates, b)),
        )
        .await;
        blocks
            .iter()
            .zip(settled)
            .filter(|(_, ok)| !ok)
            .map(|(b, _)| b.clone())
            .collect()
    }

    /// The peers a block's cluster is chosen from: the connected members and
    /// this node.
    fn candidates(&self, view: &crate::net::MemberView) -> Vec<PeerId> {
        view.members
            .iter()
            .map(|p| p.peer_id)
            .chain([self.me])
            .collect()
    }

    /// Compares one block with its cluster peers and moves this copy to the latest
    /// revision a majority of the cluster holds, if it differs. True when the
    /// comparison settled (a majority agreed with this copy or it was moved to
    /// theirs, or there is nobody to ask).
    async fn catch_up_block(
        &self,
        net: &NetClient,
        candidates: &[PeerId],
        block: &BlockId,
    ) -> bool {
        let cluster = self.cluster_of(block, candidates);
        let peers: Vec<PeerId> = cluster.iter().copied().filter(|p| *p != self.me).collect();
        if peers.is_empty() {
            return true;
        }
        let answers = futures::future::join_all(peers.iter().map(|p| {
            crate::net::fetch_archive(net, *p, Vec::new(), block, None, CATCH_UP_TIMEOUT)
        }))
        .await;
        let local = self.local_latest(block);
        let member = cluster.contains(&self.me);
        let mut reports: BTreeMap<Option<TrxRev>, Vec<PeerId>> = BTreeMap::new();
        if member {
            reports.entry(local.clone()).or_default().push(self.me);
        }
        // Every transaction some member reports pending on the block.
        let mut pending: BTreeSet<TrxId> = BTreeSet::new();
        for (peer, answer) in peers.iter().zip(answers) {
            if let Ok(a) = answer {
                let a = a.filter(|a| a.block_id == *block);
                pending.extend(
                    a.iter()
                        .flat_map(|a| a.pending.iter().map(|(t, _)| t.clone())),
                );
                let latest = a.and_then(|a| archive_latest(&a));
                reports.entry(latest).or_default().push(*peer);
            }
        }
        let need = majority(cluster.len());
        let Some((target, holders)) = reports.into_iter().find(|(_, h)| h.len() >= need) else {
            return false;
        };
        if !member {
            self.drop_stray_pendings(block, &pending).await;
        }
        if target == local || holders.contains(&self.me) {
            return true;
        }
        // Ahead of the majority: the writes this copy holds past it may still be
        // decided (the others can still apply them); nothing to repair yet.
        if let (Some(l), Some(t)) = (&local, &target) {
            if l.rev > t.rev {
                return false;
            }
        }
        // Behind or diverged: a majority holds `target`, so it is final; a write
        // this copy holds at or below its revision under another transaction can
        // no longer reach a majority (they are past it).
        let holders: Vec<PeerAddrs> = holders.into_iter().map(|p| (p, Vec::new())).collect();
        match &target {
            Some(_) => self.reach_majority(block, &target, &holders, member).await,
            None => false,
        }
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

    /// Restores or repairs `block` to `target`, held by a majority (`holders`);
    /// a `member`'s copy takes their revisions only.
    async fn reach_majority(
        &self,
        block: &BlockId,
        target: &Option<TrxRev>,
        holders: &[PeerAddrs],
        member: bool,
    ) -> bool {
        let Some(net) = self.net.get() else {
            return false;
        };
        let local = self.local_latest(block);
        // From this copy's latest, to see whether it is in the majority's history.
        let from = local.as_ref().map_or(0, |l| l.rev);
        for (peer, addrs) in holders {
            let fetched = crate::net::fetch_archive(
                net,
                *peer,
                addrs.clone(),
                block,
                Some(from),
                CATCH_UP_TIMEOUT,
            )
            .await;
            let Ok(Some(mut archive)) = fetched else {
                continue;
            };
            if member {
                archive = revisions_only(archive);
            }
            if archive_latest(&archive) != *target {
                continue;
            }
            // It must reach back to this copy's latest: to show where the histories
            // part, and so the restored history has no hole.
            if local.is_some() && archive.range.start > from {
                continue;
            }
            let authoritative = !contains(&archive, local.as_ref());
            match self.repo.restore(archive, authoritative).await {
                Ok(now) => return now == *target,
                Err(e) => tracing::warn!(%block, error = %e, "cannot catch up with the cluster"),
            }
        }
        false
    }
}

/// `a` without the revisions after `base`; `None` when its history does not
/// hold `base` (under the same transaction).
fn up_to(mut a: BlockArchive, base: &TrxRev) -> Option<BlockArchive> {
    let at = a.revisions.iter().position(|r| r.trx_rev == *base)?;
    a.revisions.truncate(at + 1);
    Some(a)
}

/// `a` without its pending transactions. A holder's pend is not this member's:
/// it did not apply it, so the commit or cancel that settles it may never be
/// delivered here, and a copy of it would stay pending (and in the pending
/// union of every later pend) until the stray rule drops it. A commit of such a
/// transaction fetches its transform from a holder instead.
fn revisions_only(mut a: BlockArchive) -> BlockArchive {
    a.pending.clear();
    a
}

/// The newest revision of an archive.
fn archive_latest(a: &BlockArchive) -> Option<TrxRev> {
    a.revisions.last().map(|r| r.trx_rev.clone())
}

/// Whether `a` holds `rev` (this copy's latest) under the same transaction; a
/// copy with no revision is in every history.
fn contains(a: &BlockArchive, rev: Option<&TrxRev>) -> bool {
    match rev {
        None => true,
        Some(l) => a.revisions.iter().any(|r| r.trx_rev == *l),
    }
}
