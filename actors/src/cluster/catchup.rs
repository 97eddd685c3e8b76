//! Catching a block up with its cluster: compare this node's copy with the
//! block's other cluster peers and restore from them when one is ahead.
//!
//! Used before a plain read (the coordinator) and before a member executes an
//! agreed operation on a block it does not know to be current (it was down, or
//! its member set changed): executing on a stale copy would put the operation on
//! the wrong base and leave a hole in the block's history.
//!
//! Peers answer the archive requests straight from storage, never behind a
//! BlockActor that may itself be restoring, so two nodes catching the same block
//! up at once never wait on each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::{closest_peers, Freshness};
use crate::block::StorageRepo;
use crate::model::{BlockGets, BlockId, CommitRequest, Rev, TrxContext};
use crate::net::NetClient;
use crate::storage::RepoError;

/// Per-peer wait when comparing a block with its cluster.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a member keeps trying to apply a decided commit it could not apply
/// at once (see [`CatchUp::settle`]).
const SETTLE_WINDOW: Duration = Duration::from_secs(10);
/// First wait before retrying; doubled up to [`SETTLE_MAX_WAIT`].
const SETTLE_FIRST_WAIT: Duration = Duration::from_millis(20);
const SETTLE_MAX_WAIT: Duration = Duration::from_secs(1);
/// Most commits being settled at once on one node; past it a commit is left to
/// the catch-up of the block's next write or read.
const MAX_SETTLING: usize = 256;

/// What catching up needs from the node.
pub struct CatchUp {
    me: PeerId,
    repo: StorageRepo,
    net: Arc<OnceLock<NetClient>>,
    fresh: Arc<Freshness>,
    cluster_size: usize,
    settling: AtomicUsize,
}

impl CatchUp {
    /// Catch-up for the node `me`, whose clusters have `cluster_size` members.
    pub fn new(
        me: PeerId,
        repo: StorageRepo,
        net: Arc<OnceLock<NetClient>>,
        fresh: Arc<Freshness>,
        cluster_size: usize,
    ) -> Self {
        Self {
            me,
            repo,
            net,
            fresh,
            cluster_size: cluster_size.max(1),
            settling: AtomicUsize::new(0),
        }
    }

    /// Applies a decided commit that failed here with `not_pending`, in the
    /// background. The cluster decided it, so a majority held the pending
    /// transaction; this member did not, because it has not yet applied the
    /// pend's decision (it arrives after the commit's when this member is slow:
    /// the coordinator answers the pend once a majority has it, and the client
    /// commits at once) or never heard it. Retries, with backoff, the local
    /// commit (the pend's decision may land meanwhile) and then restoration from
    /// the block's cluster (once a peer has applied the commit), until the
    /// blocks reach the commit's revision here or [`SETTLE_WINDOW`] passes. A
    /// commit of a transaction pended nowhere fails on every member; it is
    /// retried for the window and changes nothing.
    pub fn settle(self: &Arc<Self>, commit: CommitRequest) {
        if self.settling.fetch_add(1, Ordering::Relaxed) >= MAX_SETTLING {
            self.settling.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(trx = %commit.trx_id, "too many commits settling; this copy catches up on the block's next write");
            return;
        }
        let this = self.clone();
        actix_rt::spawn(async move {
            let settled = this.settle_commit(&commit).await;
            this.settling.fetch_sub(1, Ordering::Relaxed);
            if !settled {
                tracing::debug!(trx = %commit.trx_id, rev = commit.rev, "decided commit not applied here within the settle window");
            }
        });
    }

    async fn settle_commit(&self, commit: &CommitRequest) -> bool {
        let until = Instant::now() + SETTLE_WINDOW;
        let mut wait = SETTLE_FIRST_WAIT;
        loop {
            tokio::time::sleep(wait).await;
            match self.repo.commit(commit.clone()).await {
                Err(RepoError::NotPending { .. }) => {}
                // Applied; or the block moved past the revision (a later write's
                // heads caught this copy up); or an error of its own, not ours.
                Ok(_) | Err(_) => return true,
            }
            if self.reach_commit(commit).await {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            wait = (wait * 2).min(SETTLE_MAX_WAIT);
        }
    }

    /// [`Self::reach`] for every block of `commit`, at its revision.
    pub async fn reach_commit(&self, commit: &CommitRequest) -> bool {
        let mut reached = true;
        for block in &commit.block_ids {
            reached &= self.reach(block, commit.rev).await;
        }
        reached
    }

    /// Restores `block` from its cluster if a peer holds it newer; whether this
    /// copy is at `rev` or later afterwards.
    pub async fn reach(&self, block: &BlockId, rev: Rev) -> bool {
        if self.local_latest(block).await.is_some_and(|l| l >= rev) {
            return true;
        }
        let Some(net) = self.net.get() else {
            return false;
        };
        let candidates = self.candidates(&net.member_view());
        self.catch_up_block(net, &candidates, block).await;
        self.local_latest(block).await.is_some_and(|l| l >= rev)
    }

    /// Compares every block of `blocks` not known current under the present member
    /// set with its cluster (one round trip to its peers, concurrently), restoring
    /// those a peer holds newer. Best effort: a block no peer answered for stays
    /// unknown and is compared again next time.
    pub async fn catch_up(&self, blocks: &[BlockId]) {
        let Some(net) = self.net.get() else {
            return;
        };
        let view = net.member_view();
        if view.members.is_empty() {
            return;
        }
        let stale = self.fresh.unknown(view.fingerprint, blocks);
        if stale.is_empty() {
            return;
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
        let member = |b: &BlockId| {
            closest_peers(b, candidates.iter().copied(), self.cluster_size).contains(&self.me)
        };
        self.fresh.compared(
            view.fingerprint,
            checked
                .into_iter()
                .filter(|(b, ok)| *ok && member(b))
                .map(|(b, _)| b),
        );
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

    /// Restores every block of `heads` whose copy here is older than the revision
    /// given (the newest a promising member reported), concurrently. Returns the
    /// blocks still behind afterwards (no peer could bring them up to date).
    pub async fn catch_up_to(&self, heads: BTreeMap<BlockId, Rev>) -> BTreeSet<BlockId> {
        let raw = self.repo.registry().raw().clone();
        let local = |b: &BlockId| {
            raw.get_meta(b)
                .ok()
                .flatten()
                .and_then(|m| m.latest)
                .map(|l| l.rev)
        };
        let behind: Vec<(BlockId, Rev)> = heads
            .into_iter()
            .filter(|(b, rev)| local(b).is_none_or(|l| l < *rev))
            .collect();
        let done = futures::future::join_all(behind.into_iter().map(|(block, rev)| async move {
            let ctx = TrxContext {
                committed: Vec::new(),
                rev,
                trx_id: None,
            };
            if let Err(e) = self.repo.get(one(&block, Some(ctx))).await {
                tracing::warn!(%block, error = %e, "cannot catch up with the cluster before executing");
            }
            (block, rev)
        }))
        .await;
        done.into_iter()
            .filter(|(b, rev)| local(b).is_none_or(|l| l < *rev))
            .map(|(b, _)| b)
            .collect()
    }

    /// Compares one block with its cluster peers; restores when one is ahead.
    /// True when the comparison happened (some peer answered, or none to ask).
    async fn catch_up_block(
        &self,
        net: &NetClient,
        candidates: &[PeerId],
        block: &BlockId,
    ) -> bool {
        let peers: Vec<PeerId> =
            closest_peers(block, candidates.iter().copied(), self.cluster_size)
                .into_iter()
                .filter(|p| *p != self.me)
                .collect();
        if peers.is_empty() {
            return true;
        }
        let answers = futures::future::join_all(
            peers
                .iter()
                .map(|p| crate::net::fetch_archive(net, *p, block, None, CATCH_UP_TIMEOUT)),
        )
        .await;
        let answered = answers.iter().any(Result::is_ok);
        let newest = answers
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .filter(|a| a.block_id == *block)
            .filter_map(|a| a.revisions.last().map(|r| r.trx_rev.rev))
            .max();
        let Some(newest) = newest else {
            return answered;
        };
        if self.local_latest(block).await.is_some_and(|l| l >= newest) {
            return answered;
        }
        let ctx = TrxContext {
            committed: Vec::new(),
            rev: newest,
            trx_id: None,
        };
        if let Err(e) = self.repo.get(one(block, Some(ctx))).await {
            tracing::warn!(%block, error = %e, "cannot catch up with the cluster");
            return false;
        }
        // Current only if the restoration really reached the peer's revision (the
        // peer may not be known as a block server yet): otherwise compare again.
        self.local_latest(block).await.is_some_and(|l| l >= newest)
    }

    async fn local_latest(&self, block: &BlockId) -> Option<Rev> {
        self.repo
            .get(one(block, None))
            .await
            .ok()
            .and_then(|r| r.get(block)?.state.latest.as_ref().map(|l| l.rev))
    }
}

fn one(block: &BlockId, context: Option<TrxContext>) -> BlockGets {
    BlockGets {
        block_ids: vec![block.clone()],
        context,
    }
}
