//! Handing a region's blocks to a peer a change adds (docs/CONSENSUS.md,
//! "Handing over"): the bulk push before the change, and — inside it, once a
//! majority of the old configuration has reserved the regions — the rest of what
//! those members hold, checked through the newcomer's `heads`.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;

use super::Coordinator;
use crate::model::{BlockId, Config, Region, RepoError, TrxId, TrxRev};
use crate::storage::BlockArchive;

/// Most bytes of archives in one `store` request (the cluster frame is 1 MiB).
const STORE_BATCH_BYTES: usize = 512 * 1024;

/// Pending transactions to hand over, with their transforms, by block.
pub(super) type Pendings = BTreeMap<BlockId, Vec<(TrxId, crate::model::Transform)>>;

/// What a newcomer must hold of a block: its latest revision and the pending
/// transactions, sorted.
type Head = (Option<TrxRev>, Vec<TrxId>);

impl Coordinator {
    /// Inside a change that adds `peer`, once the `promisers` (a majority of the
    /// old configuration) have reserved `regions`: brings this copy up to the
    /// newest revision any promiser holds of every block of the regions, hands
    /// `peer` each block it does not hold at that revision, and checks that it now
    /// does. Every write acknowledged in the old configuration is on a majority of
    /// it, so on some promiser, so on the newcomer before it votes
    /// (docs/CONSENSUS.md, "Handing over", claim 11).
    pub(super) async fn complete_hand_over(
        &self,
        peer: PeerId,
        from: &Config,
        regions: &[Region],
        promisers: &[PeerId],
    ) -> Result<(), RepoError> {
        let net = self.net()?;
        let wanted: BTreeSet<Region> = regions.iter().copied().collect();
        let mut newest: BTreeMap<BlockId, (Option<TrxRev>, PeerId)> = BTreeMap::new();
        let others: Vec<PeerId> = promisers
            .iter()
            .copied()
            .filter(|q| *q != self.me)
            .collect();
        let held_heads: Vec<Vec<crate::model::BlockHead>> =
            futures::future::join_all(others.iter().map(|q| self.heads_of(net, *q, regions)))
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
        for (q, heads) in others.iter().zip(&held_heads) {
            for h in heads.iter().cloned() {
                let slot = newest.entry(h.block_id.clone()).or_insert((None, *q));
                match (&slot.0, &h.latest) {
                    (Some(a), Some(b)) if a.rev == b.rev && a != b => {
                        return Err(RepoError::Unavailable(format!(
                            "members of the old configuration hold different writes of block {} at revision {}; the change waits until they agree",
                            h.block_id, a.rev
                        )));
                    }
                    (a, Some(b)) if a.as_ref().is_none_or(|a| a.rev < b.rev) => {
                        *slot = (h.latest, *q);
                    }
                    _ => {}
                }
            }
        }
        let mine: BTreeMap<BlockId, Option<TrxRev>> = self
            .repo
            .heads(wanted.clone())
            .await?
            .into_iter()
            .map(|h| (h.block_id, h.latest))
            .collect();
        for (block, (latest, holder)) in &newest {
            let here = mine.get(block).cloned().flatten();
            let behind = match (&here, latest) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(h), Some(l)) if h.rev == l.rev && h != l => {
                    return Err(RepoError::Unavailable(format!(
                        "this copy of block {block} holds another write at revision {} than {holder}; the change waits until they agree",
                        h.rev
                    )));
                }
                (Some(h), Some(l)) => h.rev < l.rev,
            };
            if !behind {
                continue;
            }
            let reached = self
                .catch_up
                .reach_base(block, latest, || vec![(*holder, Vec::new())])
                .await;
            if reached != crate::cluster::BaseCheck::Equal {
                return Err(RepoError::Unavailable(format!(
                    "cannot bring block {block} to revision {:?} held by {holder}",
                    latest.as_ref().map(|l| l.rev)
                )));
            }
        }
        let mine = self.repo.heads(wanted).await?;
        let pending = self
            .majority_pendings(net, from, &others, &held_heads, &mine)
            .await?;
        // What the newcomer must hold of each block: this copy's latest, and the
        // pending transactions a majority of the old configuration holds.
        let want: BTreeMap<BlockId, Head> = mine
            .into_iter()
            .filter(|h| h.latest.is_some() || pending.contains_key(&h.block_id))
            .map(|h| {
                let p = pending
                    .get(&h.block_id)
                    .map(|p| p.iter().map(|(t, _)| t.clone()).collect())
                    .unwrap_or_default();
                (h.block_id, (h.latest, p))
            })
            .collect();
        let there = |hs: Vec<crate::model::BlockHead>| -> BTreeMap<BlockId, Head> {
            hs.into_iter()
                .map(|h| (h.block_id, (h.latest, h.pending)))
                .collect()
        };
        let theirs = there(self.heads_of(net, peer, regions).await?);
        let lacking: Vec<BlockId> = want
            .iter()
            .filter(|(b, w)| theirs.get(*b) != Some(*w))
            .map(|(b, _)| b.clone())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        self.hand_over(&peer.to_string(), regions, &lacking, Some(&pending))
            .await?;
        let theirs = there(self.heads_of(net, peer, regions).await?);
        match lacking.iter().find(|b| theirs.get(*b) != want.get(*b)) {
            Some(b) => Err(RepoError::Unavailable(format!(
                "{peer} does not hold block {b} as handed over (its pending transactions or latest revision differ)"
            ))),
            None => Ok(()),
        }
    }

    /// For each block, the pending transactions (with their transforms) that a
    /// majority of `from` holds, counting this node (its heads `mine`) and the
    /// `others` promisers (whose heads are `held`): a pend applied by a majority and not cancelled by
    /// one. A pending transaction only a minority holds (one that missed a cancel)
    /// is not handed to a newcomer, which would make it a majority's.
    async fn majority_pendings(
        &self,
        net: &dyn crate::model::Peers,
        from: &Config,
        others: &[PeerId],
        held: &[Vec<crate::model::BlockHead>],
        mine: &[crate::model::BlockHead],
    ) -> Result<Pendings, RepoError> {
        let mut count: BTreeMap<(BlockId, TrxId), Vec<PeerId>> = BTreeMap::new();
        let all = std::iter::once((self.me, mine))
            .chain(others.iter().copied().zip(held.iter().map(Vec::as_slice)));
        for (q, heads) in all {
            for h in heads {
                for t in &h.pending {
                    count
                        .entry((h.block_id.clone(), t.clone()))
                        .or_default()
                        .push(q);
                }
            }
        }
        let mut out = Pendings::new();
        for ((block, trx), holders) in count {
            if holders.len() < from.majority() {
                continue;
            }
            let here = self.repo.registry().raw().get_pending(&block, &trx)?;
            let transform = match here {
                Some(t) => t,
                None => self.pending_from(net, &holders, &block, &trx).await?,
            };
            out.entry(block).or_default().push((trx, transform));
        }
        Ok(out)
    }

    /// `trx`'s pending transform of `block`, from one of `holders`.
    async fn pending_from(
        &self,
        net: &dyn crate::model::Peers,
        holders: &[PeerId],
        block: &BlockId,
        trx: &TrxId,
    ) -> Result<crate::model::Transform, RepoError> {
        let latest = self.catch_up.local_latest(block).map(|l| l.rev);
        for q in holders.iter().filter(|q| **q != self.me) {
            let fetched = net
                .fetch_archive(*q, Vec::new(), block.clone(), latest, self.timeout)
                .await;
            if let Ok(Some(a)) = fetched {
                if let Some((_, t)) = a.pending.into_iter().find(|(id, _)| id == trx) {
                    return Ok(t);
                }
            }
        }
        Err(RepoError::Unavailable(format!(
            "cannot fetch pending transaction {trx} of block {block} from the members holding it"
        )))
    }

    /// What `peer` stores in `regions`.
    async fn heads_of(
        &self,
        net: &dyn crate::model::Peers,
        peer: PeerId,
        regions: &[Region],
    ) -> Result<Vec<crate::model::BlockHead>, RepoError> {
        let addrs: Vec<libp2p::Multiaddr> = self
            .configs
            .peer(&peer.to_string())
            .map(|p| p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default();
        Ok(net
            .heads(peer, addrs, regions.to_vec(), self.timeout)
            .await?)
    }

    /// Hands `peer` every block of `regions` among `blocks` (those this node
    /// stores), with its history; with `pending`, also exactly those pending
    /// transactions of each (inside a change: what a majority holds), and none
    /// other, so one handed over by an earlier attempt and cancelled since goes.
    pub(super) async fn hand_over(
        &self,
        peer: &str,
        regions: &[Region],
        blocks: &[BlockId],
        pending: Option<&Pendings>,
    ) -> Result<usize, RepoError> {
        let net = self.net()?;
        let id: PeerId = peer
            .parse()
            .map_err(|_| RepoError::Invalid(format!("{peer} is not a PeerId")))?;
        let addrs: Vec<libp2p::Multiaddr> = self
            .configs
            .peer(peer)
            .map(|p| p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default();
        let wanted: BTreeSet<Region> = regions.iter().copied().collect();
        let mut batch: Vec<BlockArchive> = Vec::new();
        let (mut bytes, mut sent) = (0, 0);
        for b in blocks.iter().filter(|b| wanted.contains(&Region::of(b))) {
            let handed = pending.and_then(|p| p.get(b));
            let mut a = match self.repo.archive(b, Some(0)).await? {
                Some(a) => a,
                // Pending only, and not here: what a majority holds still goes.
                None if handed.is_some() => BlockArchive {
                    block_id: b.clone(),
                    revisions: Vec::new(),
                    range: crate::storage::RevRange {
                        start: 0,
                        end: Some(0),
                    },
                    pending: Vec::new(),
                },
                None => continue,
            };
            a.pending = handed.cloned().unwrap_or_default();
            bytes += serde_json::to_vec(&a).map_or(0, |v| v.len());
            batch.push(a);
            if bytes >= STORE_BATCH_BYTES {
                sent += self
                    .send_batch(
                        net,
                        id,
                        &addrs,
                        std::mem::take(&mut batch),
                        pending.is_some(),
                    )
                    .await?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            sent += self
                .send_batch(net, id, &addrs, batch, pending.is_some())
                .await?;
        }
        Ok(sent)
    }

    async fn send_batch(
        &self,
        net: &dyn crate::model::Peers,
        peer: PeerId,
        addrs: &[libp2p::Multiaddr],
        batch: Vec<BlockArchive>,
        pending_exact: bool,
    ) -> Result<usize, RepoError> {
        let reply = net
            .store(peer, addrs.to_vec(), batch, pending_exact, self.timeout)
            .await?;
        if reply.refused > 0 {
            // It does not see this node as a member of those regions (yet): the
            // change waits until it does, and holds the data.
            return Err(RepoError::Unavailable(format!(
                "{peer} refused {} of the archives handed over",
                reply.refused
            )));
        }
        Ok(reply.stored)
    }
}
