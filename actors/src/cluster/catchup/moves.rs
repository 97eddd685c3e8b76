//! Moving copies to what a majority of their cluster holds: the archives
//! fetched in one request per holder and restored side by side, or holder by
//! holder when that fails.

use std::collections::BTreeMap;

use libp2p::PeerId;

use super::archive::{archive_latest, contains, revisions_only};
use super::{CatchUp, PeerAddrs, CATCH_UP_TIMEOUT};
use crate::model::Peers;
use crate::model::{BlockId, TrxRev};
use crate::storage::BlockArchive;

/// A copy to move to what a majority of its cluster holds.
pub(super) struct Move {
    /// Its place among the blocks compared.
    pub(super) at: usize,
    pub(super) block: BlockId,
    /// This copy's latest revision when it was judged.
    pub(super) local: Option<TrxRev>,
    /// The latest revision a majority reported.
    pub(super) target: TrxRev,
    /// The members that reported it.
    pub(super) holders: Vec<PeerId>,
    /// Whether this node is a member of the block's cluster (its copy then
    /// takes revisions only).
    pub(super) member: bool,
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

impl CatchUp {
    /// Moves each copy of `moves` to its target: the archives fetched from
    /// the holders in one block request per holder (the blocks spread over
    /// their holders), restored side by side so their durable writes share
    /// syncs; a block that fails that way is tried again holder by holder.
    /// `(at, whether the copy reached its target)` per move.
    pub(super) async fn move_many(&self, net: &dyn Peers, moves: Vec<Move>) -> Vec<(usize, bool)> {
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
                let archives = net
                    .fetch_archives(holder, Vec::new(), asks, CATCH_UP_TIMEOUT)
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
            let fetched = net
                .fetch_archive(
                    *peer,
                    addrs.clone(),
                    block.clone(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::fixtures::{archive, at, block};
    use super::*;

    fn to(local: Option<TrxRev>, target: TrxRev, member: bool) -> Move {
        Move {
            at: 0,
            block: block(),
            local,
            target,
            holders: vec![PeerId::random()],
            member,
        }
    }

    #[test]
    fn a_member_takes_the_revisions_only_and_a_cache_the_pendings_too() {
        let a = archive(1, &[at("t1", 1), at("t2", 2)]);
        let member = to(Some(at("t1", 1)), at("t2", 2), true);
        let (taken, authoritative) = member.usable(a.clone()).unwrap();
        assert!(taken.pending.is_empty());
        assert!(!authoritative);
        let cache = to(Some(at("t1", 1)), at("t2", 2), false);
        let (taken, _) = cache.usable(a).unwrap();
        assert_eq!(taken.pending.len(), 1);
    }

    #[test]
    fn an_archive_of_another_block_short_of_the_target_or_with_a_hole_is_refused() {
        let m = to(Some(at("t1", 1)), at("t2", 2), true);
        assert!(m.usable(archive(1, &[at("t1", 1)])).is_none());
        assert!(m.usable(archive(2, &[at("t2", 2)])).is_none());
        let mut other = archive(1, &[at("t1", 1), at("t2", 2)]);
        other.block_id = BlockId::new("b2").unwrap();
        assert!(m.usable(other).is_none());
    }

    #[test]
    fn a_diverged_copy_takes_the_majoritys_history_as_authoritative() {
        let m = to(Some(at("mine", 1)), at("t2", 2), true);
        assert_eq!(m.from(), 1);
        let theirs = archive(1, &[at("theirs", 1), at("t2", 2)]);
        let (_, authoritative) = m.usable(theirs).unwrap();
        assert!(authoritative);
    }
}
