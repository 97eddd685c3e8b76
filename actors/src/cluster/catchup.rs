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
        let settled = self.compare_many(net, &candidates, &stale).await;
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
        let settled = self.compare_many(net, &candidates, blocks).await;
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

    /// Compares each block of `blocks` with its cluster peers — one
    /// `blockHeads` request per peer for all the blocks it is asked about — and
    /// moves each copy to the latest revision a majority of its cluster holds,
    /// if it differs. One flag per block: whether its comparison settled (a
    /// majority agreed with this copy or it was moved to theirs, or there is
    /// nobody to ask).
    async fn compare_many(
        &self,
        net: &NetClient,
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
            let heads =
                crate::net::cluster_block_heads(net, peer, Vec::new(), &of, CATCH_UP_TIMEOUT).await;
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

    /// Moves each copy of `moves` to its target: the archives fetched from
    /// the holders in one block request per holder (the blocks spread over
    /// their holders), restored side by side so their durable writes share
    /// syncs; a block that fails that way is tried again holder by holder.
    /// `(at, whether the copy reached its target)` per move.
    async fn move_many(&self, net: &NetClient, moves: Vec<Move>) -> Vec<(usize, bool)> {
        let mut by_holder: BTreeMap<PeerId, Vec<Move>> = BTreeMap::new();
        for (i, m) in moves.into_iter().enumerate() {
            let Some(holder) = m.holders.get(i % m.holders.len().max(1)).copied() else {
                continue;
            };
            by_holder.entry(holder).or_default().push(m);
        }
        let fetched =
            futures::future::join_all(by_holder.into_iter().map(|(holder, moves)| async move {
                let asks: Vec<(BlockId, Option<crate::model::Rev>)> = moves
                    .iter()
                    .map(|m| (m.block.clone(), Some(m.from())))
                    .collect();
                let archives =
                    crate::net::fetch_archives(net, holder, Vec::new(), &asks, CATCH_UP_TIMEOUT)
                        .await
                        .unwrap_or_default();
                let mut archives = archives.into_iter();
                moves
                    .into_iter()
                    .map(|m| {
                        let archive = archives.next().flatten();
                        (m, archive)
                    })
                    .collect::<Vec<_>>()
            }))
            .await;
        let restores = fetched.into_iter().flatten().map(|(m, archive)| async move {
            let done = match archive.and_then(|a| m.usable(a)) {
                Some((archive, authoritative)) => {
                    match self.repo.restore(archive, authoritative).await {
                        Ok(now) => now.as_ref() == Some(&m.target),
                        Err(e) => {
                            tracing::warn!(block = %m.block, error = %e, "cannot catch up with the cluster");
                            false
                        }
                    }
                }
                // Not fetched, or not what the majority holds: holder by holder.
                None => {
                    let holders: Vec<PeerAddrs> =
                        m.holders.iter().map(|p| (*p, Vec::new())).collect();
                    self.reach_majority(&m.block, &Some(m.target.clone()), &holders, m.member)
                        .await
                }
            };
            (m.at, done)
        });
        futures::future::join_all(restores).await
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

/// A copy to move to what a majority of its cluster holds.
struct Move {
    /// Its place among the blocks compared.
    at: usize,
    block: BlockId,
    /// This copy's latest revision when it was judged.
    local: Option<TrxRev>,
    /// The latest revision a majority reported.
    target: TrxRev,
    /// The members that reported it.
    holders: Vec<PeerId>,
    /// Whether this node is a member of the block's cluster (its copy then
    /// takes revisions only).
    member: bool,
}

impl Move {
    /// The first revision to fetch: this copy's latest, to see whether it is
    /// in the majority's history.
    fn from(&self) -> crate::model::Rev {
        self.local.as_ref().map_or(0, |l| l.rev)
    }

    /// `archive`, fetched from a holder, as this copy takes it, and whether it
    /// is authoritative (this copy's latest is not in its history); `None`
    /// unless it is this block's, ends at the target, and reaches back to this
    /// copy's latest (so the restored history has no hole).
    fn usable(&self, archive: BlockArchive) -> Option<(BlockArchive, bool)> {
        if archive.block_id != self.block {
            return None;
        }
        let archive = if self.member {
            revisions_only(archive)
        } else {
            archive
        };
        if archive_latest(&archive).as_ref() != Some(&self.target) {
            return None;
        }
        if self.local.is_some() && archive.range.start > self.from() {
            return None;
        }
        let authoritative = !contains(&archive, self.local.as_ref());
        Some((archive, authoritative))
    }
}

/// What one cluster peer reported of a block: its latest revision and the
/// transactions pending on it there (nothing: it does not store the block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Heard {
    latest: Option<TrxRev>,
    pending: Vec<TrxId>,
}

/// What a comparison of a block with its cluster concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Too few answered, or no majority reported one latest revision.
    NoMajority,
    /// A majority agrees with this copy (or holds it).
    Settled,
    /// This copy is ahead of the majority: its extra writes may still be
    /// decided, so there is nothing to repair yet.
    Ahead,
    /// A majority holds no revision of a block this copy holds.
    MajorityEmpty,
    /// A majority (`holders`) holds `target`, which this copy is behind or
    /// diverged from: final, so this copy moves to it.
    Move {
        target: TrxRev,
        holders: Vec<PeerId>,
    },
}

/// Judges a copy at `local` against its cluster of `size` members: the
/// reports of the peers that answered and, when this node is a member, its
/// own (`mine`). A majority reporting one latest revision decides; a write
/// this copy holds at or below it under another transaction can no longer
/// reach a majority (they are past it).
fn judge(
    local: &Option<TrxRev>,
    mine: Option<(PeerId, Option<TrxRev>)>,
    size: usize,
    reports: impl IntoIterator<Item = (PeerId, Option<TrxRev>)>,
) -> Verdict {
    let me = mine.as_ref().map(|(p, _)| *p);
    let mut by_latest: BTreeMap<Option<TrxRev>, Vec<PeerId>> = BTreeMap::new();
    for (peer, latest) in mine.into_iter().chain(reports) {
        by_latest.entry(latest).or_default().push(peer);
    }
    let need = majority(size);
    let Some((target, holders)) = by_latest.into_iter().find(|(_, h)| h.len() >= need) else {
        return Verdict::NoMajority;
    };
    if target == *local || me.is_some_and(|m| holders.contains(&m)) {
        return Verdict::Settled;
    }
    match (local, target) {
        (Some(l), Some(t)) if l.rev > t.rev => Verdict::Ahead,
        (_, Some(target)) => Verdict::Move { target, holders },
        (_, None) => Verdict::MajorityEmpty,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(trx: &str, rev: u64) -> Option<TrxRev> {
        Some(TrxRev {
            trx_id: TrxId::new(trx).unwrap(),
            rev,
        })
    }

    fn peers() -> [PeerId; 3] {
        [PeerId::random(), PeerId::random(), PeerId::random()]
    }

    #[test]
    fn a_majority_at_this_copy_settles_it() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, at("t1", 1)), (c, at("t2", 2))],
        );
        assert_eq!(v, Verdict::Settled);
    }

    #[test]
    fn a_copy_behind_a_majority_moves_to_it_from_the_holders() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, at("t2", 2)), (c, at("t2", 2))],
        );
        assert_eq!(
            v,
            Verdict::Move {
                target: at("t2", 2).unwrap(),
                holders: vec![b, c]
            }
        );
    }

    #[test]
    fn a_copy_with_another_write_at_the_majoritys_revision_is_repaired() {
        let [me, b, c] = peers();
        let v = judge(
            &at("mine", 2),
            Some((me, at("mine", 2))),
            3,
            [(b, at("theirs", 2)), (c, at("theirs", 2))],
        );
        assert!(matches!(v, Verdict::Move { target, .. } if target == at("theirs", 2).unwrap()));
    }

    #[test]
    fn a_copy_ahead_of_the_majority_is_left_alone() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t3", 3),
            Some((me, at("t3", 3))),
            3,
            [(b, at("t2", 2)), (c, at("t2", 2))],
        );
        assert_eq!(v, Verdict::Ahead);
    }

    #[test]
    fn too_few_answers_or_a_split_settle_nothing() {
        let [me, b, c] = peers();
        let only_one = judge(&None, Some((me, None)), 3, [(b, at("t1", 1))]);
        assert_eq!(only_one, Verdict::NoMajority);
        let split = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, at("t2", 2)), (c, at("t3", 3))],
        );
        assert_eq!(split, Verdict::NoMajority);
    }

    #[test]
    fn a_non_member_counts_only_the_members_reports() {
        let [b, c, d] = peers();
        // Two of three members report t1@1: a majority without this node.
        let v = judge(
            &None,
            None,
            3,
            [(b, at("t1", 1)), (c, at("t1", 1)), (d, None)],
        );
        assert!(matches!(v, Verdict::Move { .. }));
        // One report is not a majority of three, whatever this copy holds.
        let v = judge(&at("t1", 1), None, 3, [(b, at("t1", 1))]);
        assert_eq!(v, Verdict::NoMajority);
    }

    #[test]
    fn a_majority_without_the_block_does_not_settle_a_copy_that_holds_it() {
        let [me, b, c] = peers();
        let v = judge(
            &at("t1", 1),
            Some((me, at("t1", 1))),
            3,
            [(b, None), (c, None)],
        );
        assert_eq!(v, Verdict::MajorityEmpty);
    }
}
