//! Reaching a decided base before a decision applies: [`CatchUp::reach_base`]
//! and the pending transforms a commit fetches from the holders.

use super::archive::{contains, revisions_only, up_to};
use super::{BaseCheck, CatchUp, PeerAddrs, CATCH_UP_TIMEOUT};
use crate::model::{BlockId, Transform, TrxId, TrxRev};

impl CatchUp {
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
            let fetched = net
                .fetch_archive(peer, addrs, block.clone(), Some(from), CATCH_UP_TIMEOUT)
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
            let fetched = net
                .fetch_archive(*peer, addrs.clone(), block.clone(), None, CATCH_UP_TIMEOUT)
                .await;
            if let Ok(Some(a)) = fetched {
                if let Some((_, t)) = a.pending.into_iter().find(|(t, _)| t == trx) {
                    return Some(t);
                }
            }
        }
        None
    }
}
