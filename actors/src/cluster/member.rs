//! Cluster members: one [`ClusterMember`] actor per in-flight transaction (keyed by
//! messageHash) runs the phase machine of [`super::phase`], persists each new phase
//! before acting, reserves the transaction's blocks while it is undecided, and
//! executes the operation on the local StorageRepo exactly once (the repo's
//! operations are idempotent under redelivery, and a decided phase never executes
//! again). The [`MemberDirectory`] routes records to them and owns the
//! reservations, so conflict detection has one owner per node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use libp2p::identity::Keypair;
use parking_lot::Mutex;

use super::phase::{Action, Event, Phase, TxnError};
use super::record::{
    majority, promise_payload_of, sign_commit, sign_promise, tally, validate, validate_known,
    ClusterRecord, RecordError, Signature, VoteType,
};
use super::store::{TxnState, TxnStore};
use crate::block::StorageRepo;
use crate::metrics::{ActorMetrics, HandlerTimer};
use crate::model::now_ms;
use crate::model::{BlockId, ErrorCode, Failure, OpOutcome, OpResult, RepoOperation, Rev};
use crate::net::NetClient;
use crate::storage::{RepoError, StorageError, WriteFuture};

/// Why a member refused a record.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The record is invalid; nothing changed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The record contradicts what this member decided.
    #[error(transparent)]
    Txn(#[from] TxnError),
    /// Persisting the transaction failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The member actor is gone.
    #[error("cluster member unavailable: {0}")]
    Unavailable(String),
    /// Too many transactions are undecided here; retry later.
    #[error("busy: {0}")]
    Busy(String),
}

/// The blocks an operation touches (reserved while undecided).
pub fn operation_blocks(op: &RepoOperation) -> BTreeSet<BlockId> {
    match op {
        RepoOperation::Pend(p) => p.transforms.block_ids(),
        RepoOperation::Commit(c) => c.block_ids.iter().cloned().collect(),
        RepoOperation::Cancel(c) => c.trx_ref.block_ids.iter().cloned().collect(),
        RepoOperation::PendCommit(pc) => {
            let mut blocks = pc.pend.transforms.block_ids();
            blocks.extend(pc.commit.block_ids.iter().cloned());
            blocks
        }
        RepoOperation::Get(_) => BTreeSet::new(),
    }
}

/// The blocks of every operation of a message.
pub fn message_blocks(ops: &[RepoOperation]) -> BTreeSet<BlockId> {
    ops.iter().flat_map(operation_blocks).collect()
}

/// Routes records to member actors; owns reservations; shared by the node.
pub struct MemberDirectory {
    key: Keypair,
    me: String,
    repo: StorageRepo,
    store: TxnStore,
    members: DashMap<String, Addr<ClusterMember>>,
    reservations: Mutex<HashMap<BlockId, String>>,
    metrics: Arc<ActorMetrics>,
    net: OnceLock<NetClient>,
    expired: Arc<crate::metrics::Counter>,
    /// Results of executions this node's coordinator has not collected yet (taken
    /// once; the durable copy is in the transaction's stored state).
    results: DashMap<String, Vec<OpOutcome>>,
    /// The promises this node signed for undecided transactions, by messageHash,
    /// with their exact payloads: phase 2 trusts them without re-verifying.
    own: DashMap<String, (Vec<u8>, Signature)>,
    /// Messages of undecided transactions whose hash this node checked (or, as
    /// coordinator, computed): a later record carrying an equal message under the
    /// same hash skips re-hashing it (canonical JSON of every operation).
    hashed: DashMap<String, Arc<crate::model::RepoMessage>>,
    /// Decided transactions by deadline, to forget [`RETENTION`] after it.
    retired: Mutex<BTreeSet<(u64, String)>>,
    fresh: Arc<super::Freshness>,
    /// Member actors running (transactions in progress here).
    active: AtomicUsize,
    /// Most member actors running at once; a new transaction past it is refused.
    max_active: AtomicUsize,
    /// Brings blocks this node does not know current up to date before an agreed
    /// operation executes on them (set by the coordinator).
    catch_up: OnceLock<Arc<super::CatchUp>>,
}

/// Default of [`MemberDirectory::set_max_active`].
pub const DEFAULT_MAX_ACTIVE: usize = 4096;

/// How long a decided transaction's state is kept past its deadline: it answers
/// duplicate deliveries (refused as expired anyway once the deadline is past) and
/// recovery queries of members that were down. A member down for longer finds no
/// proof and drops its promise; the data it missed comes back by restoration.
pub const RETENTION: Duration = Duration::from_secs(600);

/// Most own promises remembered (past it the map starts over: votes get verified).
const MAX_OWN: usize = 65_536;

/// How long past its deadline a promised member waits before recovering.
const RECOVERY_GRACE: Duration = Duration::from_secs(2);
/// How long after a restart a resumed member first asks its peers for the decision
/// (time to reconnect).
const RESUME_QUERY_DELAY: Duration = Duration::from_millis(500);
/// Per-peer wait of a recovery query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

impl MemberDirectory {
    /// A directory signing with `key`, executing on `repo`, persisting in `store`.
    pub fn new(key: Keypair, repo: StorageRepo, store: TxnStore) -> Arc<Self> {
        Arc::new(Self {
            me: key.public().to_peer_id().to_string(),
            key,
            repo,
            store,
            members: DashMap::new(),
            reservations: Mutex::new(HashMap::new()),
            metrics: Arc::new(ActorMetrics::new("cluster_member")),
            net: OnceLock::new(),
            expired: Arc::new(crate::metrics::Counter::default()),
            results: DashMap::new(),
            own: DashMap::new(),
            hashed: DashMap::new(),
            retired: Mutex::new(BTreeSet::new()),
            fresh: Arc::default(),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(DEFAULT_MAX_ACTIVE),
            catch_up: OnceLock::new(),
        })
    }

    /// This node's latest revision of each of `blocks` it holds one of (from
    /// storage: what is durable).
    fn heads(&self, blocks: &BTreeSet<BlockId>) -> BTreeMap<BlockId, Rev> {
        let raw = self.repo.registry().raw();
        blocks
            .iter()
            .filter_map(|b| {
                let latest = raw.get_meta(b).ok()??.latest?;
                Some((b.clone(), latest.rev))
            })
            .collect()
    }

    /// Sets how blocks are caught up with their cluster before execution.
    pub fn set_catch_up(&self, c: Arc<super::CatchUp>) {
        let _ = self.catch_up.set(c);
    }

    /// Sets the most transactions in progress at once on this member; a record of a
    /// new transaction past it is refused (`busy`, retryable). Transactions this
    /// member already knows are never refused.
    pub fn set_max_active(&self, n: usize) {
        self.max_active.store(n.max(1), Ordering::Relaxed);
    }

    /// Member actors running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Promises dropped at expiry by recovery (no proof of a commit).
    pub fn expired(&self) -> &Arc<crate::metrics::Counter> {
        &self.expired
    }

    /// The network, for recovery queries (set once the swarm runs).
    pub fn set_net(&self, net: NetClient) {
        let _ = self.net.set(net);
    }

    /// Restarts the members of transactions left undecided on disk (they re-reserve
    /// their blocks and recover at their deadline). Returns how many.
    pub fn resume(self: &Arc<Self>) -> Result<usize, ClusterError> {
        let mut n = 0;
        for (hash, state) in self.store.all()? {
            if state.phase == Phase::Promised {
                self.member(&hash)?;
                n += 1;
            } else {
                self.retire(&hash, state.record.message.expiration.unwrap_or(0));
            }
        }
        Ok(n)
    }

    /// Queues a decided transaction to be forgotten [`RETENTION`] after `deadline`.
    fn retire(&self, hash: &str, deadline: u64) {
        self.retired.lock().insert((deadline, hash.to_string()));
    }

    /// Forgets decided transactions whose deadline is more than [`RETENTION`] before
    /// `now_ms` (one durable write), and the finished actors' entries. Returns how many.
    pub async fn prune(&self, now_ms: u64) -> Result<usize, ClusterError> {
        let cutoff = now_ms.saturating_sub(u64::try_from(RETENTION.as_millis()).unwrap_or(0));
        let due: Vec<String> = {
            let mut r = self.retired.lock();
            let keep = r.split_off(&(cutoff, String::new()));
            std::mem::replace(&mut *r, keep)
                .into_iter()
                .map(|(_, h)| h)
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        for h in &due {
            self.members.remove_if(h, |_, a| !a.connected());
        }
        let n = due.len();
        self.store.delete(due).await?;
        Ok(n)
    }

    /// Answers a recovering peer: this member's stored record of the same
    /// transaction (unchanged), or the asker's record if it knows none.
    pub fn query(&self, record: ClusterRecord) -> Result<ClusterRecord, ClusterError> {
        validate(&record, 0)?;
        if !record.peers.contains_key(&self.me) {
            return Err(RecordError::NotAMember.into());
        }
        Ok(self
            .store
            .load(&record.message_hash)?
            .map_or(record, |s| s.record))
    }

    /// The blocks this node knows to be current (agreed commits applied here mark
    /// theirs).
    pub fn freshness(&self) -> &Arc<super::Freshness> {
        &self.fresh
    }

    /// Mailbox metrics of the member actors.
    pub fn metrics(&self) -> &Arc<ActorMetrics> {
        &self.metrics
    }

    /// This node's PeerId, as records spell it.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Signs this node's promise on `r` and remembers it (see `own`).
    fn promise(&self, r: &ClusterRecord, vote: VoteType, reason: Option<String>) -> Signature {
        let payload = promise_payload_of(r, vote, reason.as_deref());
        let sig = sign_promise(&self.key, r, vote, reason);
        if self.own.len() >= MAX_OWN {
            self.own.clear();
        }
        self.own
            .insert(r.message_hash.clone(), (payload, sig.clone()));
        sig
    }

    /// Forgets this node's promise once the transaction is decided.
    fn decided(&self, hash: &str) {
        self.own.remove(hash);
        self.hashed.remove(hash);
    }

    /// Remembers that `message` hashes to `hash` (this node's coordinator just
    /// computed it), so its own member does not hash it again.
    pub fn note_message(&self, hash: &str, message: &Arc<crate::model::RepoMessage>) {
        if self.hashed.len() >= MAX_OWN {
            self.hashed.clear();
        }
        self.hashed.insert(hash.to_string(), message.clone());
    }

    /// Reserves `blocks` for `hash`; on conflict returns the holder and reserves nothing.
    fn reserve(&self, blocks: &BTreeSet<BlockId>, hash: &str) -> Result<(), String> {
        let mut r = self.reservations.lock();
        if let Some(holder) = blocks
            .iter()
            .filter_map(|b| r.get(b))
            .find(|h| h.as_str() != hash)
        {
            return Err(holder.clone());
        }
        for b in blocks {
            r.insert(b.clone(), hash.to_string());
        }
        Ok(())
    }

    fn conflict(&self, blocks: &BTreeSet<BlockId>, hash: &str) -> Option<String> {
        let r = self.reservations.lock();
        blocks
            .iter()
            .filter_map(|b| r.get(b))
            .find(|h| h.as_str() != hash)
            .cloned()
    }

    fn release(&self, blocks: &BTreeSet<BlockId>, hash: &str) {
        let mut r = self.reservations.lock();
        for b in blocks {
            if r.get(b).is_some_and(|h| h == hash) {
                r.remove(b);
            }
        }
    }

    /// The local outcomes of a committed transaction, if this member executed it.
    pub fn result(&self, hash: &str) -> Option<Vec<OpOutcome>> {
        if let Some((_, v)) = self.results.remove(hash) {
            return Some(v);
        }
        self.store
            .load(hash)
            .ok()
            .flatten()
            .and_then(|s| s.outcomes)
    }

    /// Handles a record from a coordinator or a recovering peer: validates it,
    /// advances this member's phase and returns the record with this member's votes.
    pub async fn update(
        self: &Arc<Self>,
        record: ClusterRecord,
    ) -> Result<ClusterRecord, ClusterError> {
        let own = |peer: &str, payload: &[u8], vote: &Signature| {
            peer == self.me
                && self
                    .own
                    .get(&record.message_hash)
                    .is_some_and(|e| e.0 == payload && e.1 == *vote)
        };
        let known = self
            .hashed
            .get(&record.message_hash)
            .is_some_and(|m| Arc::ptr_eq(&m, &record.message) || *m == record.message);
        validate_known(&record, now_ms(), &own, known)?;
        if !record.peers.contains_key(&self.me) {
            return Err(RecordError::NotAMember.into());
        }
        if !known && record.promises.is_empty() {
            // A proposal: its phase-2 record will carry the same message.
            self.note_message(&record.message_hash, &record.message);
        }
        let hash = record.message_hash.clone();
        for _ in 0..4 {
            let addr = self.member(&hash)?;
            self.metrics.enqueued();
            match addr.send(Update(record.clone())).await {
                Ok(r) => return r,
                Err(_) => self.metrics.dropped(),
            }
            // The actor stopped after deciding; the next one loads the decided state.
        }
        Err(ClusterError::Unavailable(format!(
            "member for {hash} keeps stopping"
        )))
    }

    fn member(self: &Arc<Self>, hash: &str) -> Result<Addr<ClusterMember>, ClusterError> {
        if let Some(a) = self.members.get(hash).filter(|a| a.connected()) {
            return Ok(a.clone());
        }
        let state = self.store.load(hash)?;
        if state.is_none() && self.active() >= self.max_active.load(Ordering::Relaxed) {
            return Err(ClusterError::Busy(format!(
                "{} transactions in progress on this member",
                self.active()
            )));
        }
        let dir = self.clone();
        let hash_owned = hash.to_string();
        let addr = self
            .members
            .entry(hash.to_string())
            .and_modify(|a| {
                if !a.connected() {
                    *a = ClusterMember::new(dir.clone(), hash_owned.clone(), state.clone()).start();
                }
            })
            .or_insert_with(|| {
                ClusterMember::new(dir.clone(), hash_owned.clone(), state.clone()).start()
            })
            .clone();
        Ok(addr)
    }
}

/// One transaction's member.
pub struct ClusterMember {
    dir: Arc<MemberDirectory>,
    hash: String,
    state: Option<TxnState>,
}

impl ClusterMember {
    fn new(dir: Arc<MemberDirectory>, hash: String, state: Option<TxnState>) -> Self {
        dir.active.fetch_add(1, Ordering::Relaxed);
        Self { dir, hash, state }
    }

    fn phase(&self) -> Phase {
        self.state.as_ref().map_or(Phase::Idle, |s| s.phase.clone())
    }

    /// Sets the new state in memory and returns the write that makes it durable;
    /// the reply waits for that write.
    fn stage(
        &mut self,
        phase: Phase,
        record: ClusterRecord,
        outcomes: Option<Vec<OpOutcome>>,
    ) -> Result<WriteFuture, ClusterError> {
        self.stage_with(phase, record, outcomes, false)
    }

    /// [`Self::stage`], lazily written when `lazy`.
    fn stage_with(
        &mut self,
        phase: Phase,
        record: ClusterRecord,
        outcomes: Option<Vec<OpOutcome>>,
        lazy: bool,
    ) -> Result<WriteFuture, ClusterError> {
        let outcomes = outcomes.or_else(|| self.state.as_ref().and_then(|s| s.outcomes.clone()));
        let state = TxnState {
            phase,
            record,
            outcomes,
        };
        let write = self.dir.store.save_with(&self.hash, &state, lazy)?;
        self.state = Some(state);
        Ok(write)
    }

    /// The stored record with the incoming record's votes added (ours win).
    fn merged(&self, incoming: ClusterRecord) -> ClusterRecord {
        let Some(s) = &self.state else {
            return incoming;
        };
        let mut r = incoming;
        for (k, v) in &s.record.promises {
            r.promises.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &s.record.commits {
            r.commits.entry(k.clone()).or_insert_with(|| v.clone());
        }
        r
    }
}

impl ClusterMember {
    fn blocks(&self) -> BTreeSet<BlockId> {
        self.state
            .as_ref()
            .map(|s| message_blocks(&s.record.message.operations))
            .unwrap_or_default()
    }

    /// Wakes this member up `RECOVERY_GRACE` after the deadline.
    fn arm_recovery(&self, ctx: &mut Context<Self>) {
        let Some(deadline) = self
            .state
            .as_ref()
            .and_then(|s| s.record.message.expiration)
        else {
            return;
        };
        let wait = Duration::from_millis(deadline.saturating_sub(now_ms())) + RECOVERY_GRACE;
        ctx.run_later(wait, |act, ctx| act.recover(ctx));
    }

    /// Past the deadline and still promised: ask the other members. A record with
    /// threshold promises and at least one commit proves the decision; otherwise
    /// the promise is dropped and the blocks released.
    fn recover(&mut self, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone().filter(|s| s.phase == Phase::Promised) else {
            return;
        };
        let Some(net) = self.dir.net.get().cloned() else {
            return self.arm_recovery(ctx);
        };
        let record = state.record;
        let queries: Vec<_> = record
            .peers
            .iter()
            .filter(|(id, _)| **id != self.dir.me)
            .filter_map(|(id, p)| {
                let peer: libp2p::PeerId = id.parse().ok()?;
                let addrs = p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect();
                let (net, rec) = (net.clone(), record.clone());
                Some(async move {
                    crate::net::cluster_query(&net, peer, addrs, rec, QUERY_TIMEOUT).await
                })
            })
            .collect();
        let threshold = majority(record.peers.len());
        let fut = fut::wrap_future::<_, Self>(futures::future::join_all(queries)).map(
            move |replies, act, ctx| {
                // Proof of the decision either way: a commit (threshold promises and
                // a commit vote), or the coordinator's abort.
                let proof = replies.into_iter().flatten().find(|r| {
                    r.message_hash == act.hash
                        && validate(r, 0).is_ok_and(|t| {
                            (t.approvals >= threshold && t.commits >= 1)
                                || super::record::abandoned(r)
                        })
                });
                match proof {
                    // Decided commit: take the normal path (execute once, sign, persist).
                    Some(p) => {
                        if ctx.address().try_send(Update(p)).is_err() {
                            act.arm_recovery(ctx);
                        }
                    }
                    // Asked before the deadline (just resumed): the coordinator may
                    // still decide; the deadline's recovery settles it otherwise.
                    None if act
                        .state
                        .as_ref()
                        .and_then(|s| s.record.message.expiration)
                        .is_some_and(|d| now_ms() < d) => {}
                    None => {
                        act.dir.expired.add(1);
                        act.dir.release(&act.blocks(), &act.hash);
                        act.dir.decided(&act.hash);
                        let staged = act
                            .state
                            .as_ref()
                            .map(|s| s.record.clone())
                            .map(|r| act.stage(Phase::Aborted, r, None));
                        let hash = act.hash.clone();
                        let write = async move {
                            match staged {
                                Some(Ok(w)) => w.await.map_err(ClusterError::from),
                                Some(Err(e)) => Err(e),
                                None => Ok(()),
                            }
                        };
                        ctx.wait(fut::wrap_future::<_, Self>(write).map(move |r, _, ctx| {
                            if let Err(e) = r {
                                tracing::error!(%hash, error = %e, "cannot persist recovery abort");
                            }
                            ctx.stop();
                        }));
                    }
                }
            },
        );
        ctx.wait(fut);
    }
}

impl Actor for ClusterMember {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.dir.active.fetch_sub(1, Ordering::Relaxed);
        if let Some(s) = self.state.as_ref().filter(|s| s.phase != Phase::Promised) {
            self.dir
                .retire(&self.hash, s.record.message.expiration.unwrap_or(0));
        }
    }

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        if self.phase() == Phase::Promised {
            // Resumed after a restart: hold the blocks again until decided.
            let blocks = self.blocks();
            if let Err(holder) = self.dir.reserve(&blocks, &self.hash) {
                tracing::warn!(hash = %self.hash, %holder, "resumed transaction overlaps another");
            }
            // The decision may be known already (this member was down while it was
            // taken): ask the other members soon, not only at the deadline.
            ctx.run_later(RESUME_QUERY_DELAY, |act, ctx| act.recover(ctx));
            self.arm_recovery(ctx);
        }
    }
}

/// A record for this member's transaction.
#[derive(Message)]
#[rtype(result = "Result<ClusterRecord, ClusterError>")]
struct Update(ClusterRecord);

/// The record's newest head of each block this member may be behind on: all of
/// them when it reported no heads itself (it did not promise), otherwise only those
/// newer than its own report — its copy cannot have moved since, the blocks being
/// reserved from its promise to the decision. `None` when nobody reported heads.
fn behind_heads(record: &ClusterRecord, me: &str) -> Option<BTreeMap<BlockId, Rev>> {
    let newest = record.newest_heads()?;
    let Some(own) = record.heads.get(me) else {
        return Some(newest);
    };
    Some(
        newest
            .into_iter()
            .filter(|(b, rev)| own.get(b).is_none_or(|o| o < rev))
            .collect(),
    )
}

/// Runs the agreed operation on the local repo; its outcome. A commit that
/// failed for want of its pending transaction is handed to `settle` (see
/// [`super::CatchUp::settle`]).
async fn execute(
    repo: StorageRepo,
    op: RepoOperation,
    settle: Option<&Arc<super::CatchUp>>,
) -> OpOutcome {
    let commit = match &op {
        RepoOperation::Commit(c) => Some(c.clone()),
        _ => None,
    };
    match op.run(&repo).await {
        Ok(r) => Ok(r),
        Err(e) => {
            if let (RepoError::NotPending { .. }, Some(s), Some(c)) = (&e, settle, commit) {
                s.settle(c);
            }
            Err(e.to_failure())
        }
    }
}

/// Runs every operation of an agreed message; the results in the message's order
/// (a JSON array). Operations on disjoint blocks run concurrently (their durable
/// writes share the storage's group commit); a message whose operations overlap
/// runs them one after another, so every member applies them in the same order.
async fn execute_all(
    repo: StorageRepo,
    fresh: Option<(Arc<super::Freshness>, u64)>,
    catch_up: Option<Arc<super::CatchUp>>,
    heads: Option<BTreeMap<BlockId, Rev>>,
    ops: Vec<RepoOperation>,
) -> Vec<OpOutcome> {
    let sets: Vec<BTreeSet<BlockId>> = ops.iter().map(operation_blocks).collect();
    // A copy that missed writes (this node was down, cut off, or left out of an
    // earlier record) must not take the operation on a stale base. The promising
    // members' heads say exactly which blocks are behind here; without them, the
    // blocks not known current are compared with the cluster.
    let mut behind = BTreeSet::new();
    if let Some(c) = &catch_up {
        match heads {
            Some(heads) => behind = c.catch_up_to(heads).await,
            None => {
                let blocks: BTreeSet<BlockId> = sets.iter().flatten().cloned().collect();
                c.catch_up(&blocks.into_iter().collect::<Vec<_>>()).await;
            }
        }
    }
    let ops_blocks: Vec<Option<Vec<BlockId>>> = ops
        .iter()
        .map(|op| match op {
            RepoOperation::Commit(c) => Some(c.block_ids.clone()),
            RepoOperation::PendCommit(pc) => Some(pc.commit.block_ids.clone()),
            _ => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    let disjoint = sets.iter().flatten().all(|b| seen.insert(b));
    // An operation on a block still behind is not executed here: on a stale base
    // its result would be wrong (and its effect a hole in the history). Its
    // result says so, in doubt; the copy catches up on a later write or read.
    let run = |op: RepoOperation| {
        let repo = repo.clone();
        let stale = operation_blocks(&op)
            .into_iter()
            .find(|b| behind.contains(b));
        let settle = catch_up.as_ref();
        async move {
            match stale {
                Some(b) => Err(Failure::new(
                    ErrorCode::InDoubt,
                    format!("this member's copy of block {b} is behind the cluster and could not catch up; the write's outcome is in doubt here"),
                )),
                None => execute(repo, op, settle).await,
            }
        }
    };
    let results = if disjoint {
        futures::future::join_all(ops.into_iter().map(run)).await
    } else {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(run(op).await);
        }
        out
    };
    // Blocks an agreed commit just succeeded on are current here.
    for (op, r) in ops_blocks.into_iter().zip(&results) {
        // A commit's result, or a pendCommit's commit.
        let committed = match r {
            Ok(OpResult::Commit(c)) => c.is_success(),
            Ok(OpResult::PendCommit(pc)) => pc.is_success(),
            _ => false,
        };
        if let Some(blocks) = op.filter(|_| committed) {
            if let Some((fresh, members)) = &fresh {
                fresh.written(*members, blocks);
            }
        }
    }
    results
}

/// What a handler decided: the reply, and the write it waits for (if any).
type Staged = Result<(ClusterRecord, Option<WriteFuture>), ClusterError>;

impl ClusterMember {
    /// Replies once `staged`'s write is durable; on a failed write, releases the
    /// blocks and stops (the next delivery reloads what is on disk).
    fn finish(
        staged: Staged,
        blocks: BTreeSet<BlockId>,
        timer: HandlerTimer,
    ) -> ResponseActFuture<Self, Result<ClusterRecord, ClusterError>> {
        let (record, write) = match staged {
            Ok(x) => x,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let write = async move {
            match write {
                Some(w) => w.await,
                None => Ok(()),
            }
        };
        Box::pin(
            fut::wrap_future::<_, Self>(write).map(move |written, act, ctx| {
                drop(timer);
                match written {
                    Ok(()) => {
                        if act.phase().is_decided() {
                            // Decided: the next delivery reloads the decided state.
                            ctx.stop();
                        }
                        Ok(record)
                    }
                    Err(e) => {
                        act.dir.release(&blocks, &act.hash);
                        ctx.stop();
                        Err(ClusterError::Storage(e))
                    }
                }
            }),
        )
    }
}

impl Handler<Update> for ClusterMember {
    type Result = AtomicResponse<Self, Result<ClusterRecord, ClusterError>>;

    fn handle(&mut self, Update(incoming): Update, ctx: &mut Context<Self>) -> Self::Result {
        let timer = self.dir.metrics.start();
        let first_phase = incoming.promises.is_empty();
        // Decide on every vote known; sign over the coordinator's record as sent, so
        // all members' commits cover the same promise set.
        let record = self.merged(incoming.clone());
        let blocks = message_blocks(&record.message.operations);
        // Incoming votes were verified by the directory; stored ones when they came.
        let tally = tally(&record);
        let event = if super::record::abandoned(&record) {
            Event::Abandoned
        } else if first_phase {
            Event::Proposed {
                conflict: self.dir.conflict(&blocks, &self.hash),
            }
        } else {
            Event::Votes(tally)
        };
        let (next, action) = match self.phase().next(&event, majority(tally.members)) {
            Ok(t) => t,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e.into())))),
        };
        let me = self.dir.me.clone();
        let staged: Staged = match action {
            Action::PromiseApprove => match self.dir.reserve(&blocks, &self.hash) {
                Ok(()) => {
                    let mut r = incoming;
                    let vote = self.dir.promise(&r, VoteType::Approve, None);
                    // Held by the reservation from here: exact until decided.
                    r.heads.insert(me.clone(), self.dir.heads(&blocks));
                    r.promises.insert(me, vote);
                    let staged = self.stage(next, r.clone(), None).map(|w| (r, Some(w)));
                    self.arm_recovery(ctx);
                    staged
                }
                Err(holder) => {
                    let reason = format!("conflict:{holder}");
                    let mut r = incoming;
                    let vote = self.dir.promise(&r, VoteType::Reject, Some(reason.clone()));
                    r.promises.insert(me, vote);
                    self.stage(Phase::Rejected { reason }, r.clone(), None)
                        .map(|w| (r, Some(w)))
                }
            },
            Action::PromiseReject(reason) => {
                let mut r = incoming;
                let vote = self.dir.promise(&r, VoteType::Reject, Some(reason));
                r.promises.insert(me, vote);
                self.stage(next, r.clone(), None).map(|w| (r, Some(w)))
            }
            Action::Release => {
                self.dir.release(&blocks, &self.hash);
                self.dir.decided(&self.hash);
                self.stage(next, incoming.clone(), None)
                    .map(|w| (incoming, Some(w)))
            }
            Action::Repeat | Action::Wait => {
                // The stored record as signed (votes over it stay verifiable).
                let r = self.state.as_ref().map_or(incoming, |s| s.record.clone());
                if next != self.phase() {
                    self.stage(next, r.clone(), None).map(|w| (r, Some(w)))
                } else {
                    Ok((r, None))
                }
            }
            Action::ExecuteAndCommit => {
                let work = execute_all(
                    self.dir.repo.clone(),
                    // Under the member set of now (no network: no catch-up either).
                    self.dir
                        .net
                        .get()
                        .map(|n| (self.dir.fresh.clone(), n.member_view().fingerprint)),
                    self.dir.catch_up.get().cloned(),
                    behind_heads(&record, &self.dir.me),
                    record.message.operations.clone(),
                );
                let fut = fut::wrap_future::<_, Self>(work).map(move |result, act, ctx| {
                    let _timer = timer;
                    let mut r = incoming;
                    r.commits.insert(
                        act.dir.me.clone(),
                        sign_commit(&act.dir.key, &r, VoteType::Approve, None),
                    );
                    act.dir.release(&blocks, &act.hash);
                    act.dir.decided(&act.hash);
                    // The execution is durable already; the commit vote does not wait
                    // for the Committed state, which is written lazily (it survives
                    // a crash of this process at once, a power loss within
                    // LAZY_SYNC). If it is lost, this member restarts Promised,
                    // recovers the decision from its peers and re-executes, which
                    // the repo's idempotent operations absorb. The actor stays
                    // (answering repeats from memory) until it lands.
                    if act.dir.results.len() < 65_536 {
                        act.dir.results.insert(act.hash.clone(), result.clone());
                    }
                    let write = act.stage_with(Phase::Committed, r.clone(), Some(result), true)?;
                    let hash = act.hash.clone();
                    ctx.spawn(fut::wrap_future::<_, Self>(write).map(move |written, _, ctx| {
                        if let Err(e) = written {
                            tracing::error!(%hash, error = %e, "cannot persist committed state; recovery will settle it");
                        }
                        ctx.stop();
                    }));
                    Ok(r)
                });
                return AtomicResponse::new(Box::pin(fut));
            }
        };
        AtomicResponse::new(Self::finish(staged, blocks, timer))
    }
}
