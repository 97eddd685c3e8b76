//! The MemberDirectory: the node's side of the cluster protocol. It validates
//! every record it is handed, routes it to the member actor of its transaction
//! (started on demand, bounded in number), owns the reservations, remembers the
//! promises it signed, answers recovery queries and forgets decided
//! transactions after their retention.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use libp2p::identity::Keypair;
use parking_lot::Mutex;

use super::cancelled::CancelMarks;
use super::deadlines::PendDeadlines;
use super::reservations::{Claim, Refusal, Reservations};
use super::{ClusterError, ClusterMember, Update};
use crate::block::StorageRepo;
use crate::cluster::phase::Phase;
use crate::cluster::record::{
    quorum_of, voters, BlockState, ClusterRecord, RecordError, Signature, States, VoteType,
};
use crate::cluster::store::TxnStore;
use crate::cluster::votes::{promise_payload_of, sign_promise, validate_with, Checks, KeyCache};
use crate::cluster::{message_blocks, CatchUp, Configs, Freshness};
use crate::membership::Mismatch;
use crate::metrics::{ActorMetrics, Counter};
use crate::model::{now_ms, BlockId, OpOutcome, Region, RegionView, RepoMessage};
use crate::net::NetClient;

/// Default of [`MemberDirectory::set_max_active`].
pub const DEFAULT_MAX_ACTIVE: usize = 4096;

/// How long a decided transaction's state is kept past its deadline: it answers
/// duplicate deliveries and recovery queries of members that were down. A member
/// that finds no decision fences (never applies), which is safe whatever the
/// others did (docs/CONSENSUS.md, "Retention").
pub const RETENTION: Duration = Duration::from_secs(600);

/// How far past a pend's deadline (and the recovery grace) its pending copies
/// are first judged as strays: the margin for a clock here running ahead of
/// the coordinator's.
const STRAY_MARGIN: Duration = Duration::from_secs(10);

/// Default longest lifetime of a proposal (its deadline from now).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(120);

/// Most own promises remembered (past it the map starts over: votes get verified).
const MAX_OWN: usize = 65_536;

/// Routes records to member actors; owns reservations; shared by the node.
pub struct MemberDirectory {
    pub(super) key: Keypair,
    pub(super) me: String,
    pub(super) repo: StorageRepo,
    pub(super) store: TxnStore,
    members: DashMap<String, Addr<ClusterMember>>,
    pub(super) reservations: Mutex<Reservations>,
    pub(super) metrics: Arc<ActorMetrics>,
    pub(super) net: OnceLock<NetClient>,
    /// Promises fenced at recovery (no decision found past the deadline).
    expired: Arc<Counter>,
    /// Outcomes of executions this node's coordinator has not collected yet
    /// (taken once; the durable copy is in the transaction's stored state).
    pub(super) results: DashMap<String, Vec<OpOutcome>>,
    /// The promises this node signed for undecided transactions, by messageHash,
    /// with their exact payloads: phase 2 trusts them without re-verifying.
    own: DashMap<String, (Vec<u8>, Signature)>,
    /// Messages of undecided transactions whose hash this node checked (or, as
    /// coordinator, computed): a later record carrying an equal message under the
    /// same hash skips re-hashing it (canonical JSON of every operation).
    hashed: DashMap<String, Arc<RepoMessage>>,
    /// Decided transactions by deadline, to forget [`RETENTION`] after it.
    retired: Mutex<BTreeSet<(u64, String)>>,
    pub(super) fresh: Arc<Freshness>,
    /// Member actors of write transactions running (in progress here).
    pub(super) active: AtomicUsize,
    /// Most member actors running at once; a new transaction past it is refused.
    max_active: AtomicUsize,
    /// Longest lifetime of a proposal, in ms.
    max_lifetime_ms: AtomicU64,
    /// Catches blocks up with their cluster before a decision applies (set by the
    /// coordinator).
    pub(super) catch_up: OnceLock<Arc<CatchUp>>,
    keys: KeyCache,
    /// The node's configurations: every record is checked against them.
    pub(super) configs: Arc<Configs>,
    /// The cancels applied here, for pend decisions that arrive after them.
    pub(super) cancelled: CancelMarks,
    /// The deadlines of the pends applied here.
    pub(super) pend_deadlines: PendDeadlines,
}

impl MemberDirectory {
    /// A directory signing with `key`, executing on `repo`, persisting in `store`,
    /// checking records against `configs`.
    pub fn new(
        key: Keypair,
        repo: StorageRepo,
        store: TxnStore,
        configs: Arc<Configs>,
    ) -> Arc<Self> {
        Arc::new(Self {
            me: key.public().to_peer_id().to_string(),
            key,
            repo,
            store,
            members: DashMap::new(),
            reservations: Mutex::new(Reservations::default()),
            metrics: Arc::new(ActorMetrics::new("cluster_member")),
            net: OnceLock::new(),
            expired: Arc::new(Counter::default()),
            results: DashMap::new(),
            own: DashMap::new(),
            hashed: DashMap::new(),
            retired: Mutex::new(BTreeSet::new()),
            fresh: Arc::default(),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(DEFAULT_MAX_ACTIVE),
            max_lifetime_ms: AtomicU64::new(
                u64::try_from(DEFAULT_MAX_LIFETIME.as_millis()).unwrap_or(u64::MAX),
            ),
            catch_up: OnceLock::new(),
            keys: KeyCache::default(),
            configs,
            cancelled: CancelMarks::default(),
            pend_deadlines: PendDeadlines::default(),
        })
    }

    /// Whether `trx`'s pend on `block` is settled here at `now_ms`: the
    /// deadline of the pend record this member applied has passed (with the
    /// recovery grace); for one it took otherwise, it has been seen for longer
    /// than a proposal may live (`seen_for`). An undecided transaction holding
    /// the block here keeps every pending transaction of it unsettled.
    pub fn pend_settled(
        &self,
        block: &BlockId,
        trx: &crate::model::TrxId,
        now_ms: u64,
        seen_for: Duration,
    ) -> bool {
        if self.reservations.lock().holds(block) {
            return false;
        }
        let grace = u64::try_from((super::recovery::RECOVERY_GRACE + STRAY_MARGIN).as_millis())
            .unwrap_or(0);
        match self.pend_deadlines.get(block, trx) {
            Some(deadline) => now_ms > deadline.saturating_add(grace),
            None => {
                let lifetime = self
                    .max_lifetime_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(grace);
                u64::try_from(seen_for.as_millis()).unwrap_or(u64::MAX) > lifetime
            }
        }
    }

    /// Whether an undecided configuration change this member promised holds
    /// `region` (its copies there must stay: the change may make it a member).
    pub fn changing(&self, region: Region) -> bool {
        self.reservations.lock().changing(region)
    }

    /// The node's configurations.
    pub fn configs(&self) -> &Arc<Configs> {
        &self.configs
    }

    /// This node's state of each of `blocks`: its latest revision and the
    /// transactions pending on it (from storage: what is durable).
    pub(super) fn states(&self, blocks: &BTreeSet<BlockId>) -> States {
        let raw = self.repo.registry().raw();
        blocks
            .iter()
            .map(|b| {
                let latest = raw.get_meta(b).ok().flatten().and_then(|m| m.latest);
                let pendings = raw.list_pending(b).unwrap_or_default();
                (b.clone(), BlockState { latest, pendings })
            })
            .collect()
    }

    /// Sets how blocks are caught up with their cluster before a decision applies.
    pub fn set_catch_up(&self, c: Arc<CatchUp>) {
        let _ = self.catch_up.set(c);
    }

    /// Sets the most transactions in progress at once on this member; a record of a
    /// new transaction past it is refused (`busy`, retryable). Transactions this
    /// member already knows are never refused. Each proposer may hold a quarter
    /// of it (at least 64), so one proposer cannot take it all.
    pub fn set_max_active(&self, n: usize) {
        self.max_active.store(n.max(1), Ordering::Relaxed);
    }

    /// Sets the longest lifetime a proposal may ask for (its deadline from now);
    /// a proposal whose deadline lies further ahead is refused (`invalid_record`).
    pub fn set_max_lifetime(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        self.max_lifetime_ms.store(ms, Ordering::Relaxed);
    }

    /// The share of transactions one proposer may hold here.
    pub(super) fn share(&self) -> usize {
        (self.max_active.load(Ordering::Relaxed) / 4).max(64)
    }

    /// Member actors of write transactions running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Promises fenced at recovery (no decision found past the deadline).
    pub fn expired(&self) -> &Arc<Counter> {
        &self.expired
    }

    /// The network, for recovery queries (set once the swarm runs).
    pub fn set_net(&self, net: NetClient) {
        let _ = self.net.set(net);
    }

    /// Restarts the members of transactions left undecided on disk (they re-reserve
    /// their blocks and recover). Returns how many.
    pub fn resume(self: &Arc<Self>) -> Result<usize, ClusterError> {
        let mut n = 0;
        for (hash, state) in self.store.all()? {
            if state.phase.holds() {
                self.member(&hash)?;
                n += 1;
            } else {
                if state.phase == Phase::Committed {
                    self.cancelled.note(&state.record);
                    self.pend_deadlines.note(&state.record);
                }
                self.retire(&hash, state.record.message.expiration.unwrap_or(0));
            }
        }
        Ok(n)
    }

    /// Queues a decided transaction to be forgotten [`RETENTION`] after `deadline`.
    pub(super) fn retire(&self, hash: &str, deadline: u64) {
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
        self.cancelled.forget(&due);
        self.pend_deadlines.forget_before(cutoff);
        self.store.delete(due).await?;
        Ok(n)
    }

    /// Answers a recovering peer: this member's stored record of the same
    /// transaction (unchanged), or the asker's record if it knows none. A query
    /// changes nothing, so it is not checked against the configurations (it may
    /// be about an epoch this member has left).
    pub fn query(&self, record: ClusterRecord) -> Result<ClusterRecord, ClusterError> {
        self.check(&record, false, &|_, _, _| false, false)?;
        Ok(self
            .store
            .load(&record.message_hash)?
            .map_or(record, |s| s.record))
    }

    /// The blocks this node knows to be current (agreed commits applied here mark
    /// theirs).
    pub fn freshness(&self) -> &Arc<Freshness> {
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
    pub(super) fn promise(
        &self,
        r: &ClusterRecord,
        vote: VoteType,
        reason: Option<String>,
        state: Option<States>,
    ) -> Signature {
        let sig = sign_promise(&self.key, r, vote, reason, state);
        let payload = promise_payload_of(r, &sig);
        if self.own.len() >= MAX_OWN {
            self.own.clear();
        }
        self.own
            .insert(r.message_hash.clone(), (payload, sig.clone()));
        sig
    }

    /// Forgets this node's promise once the transaction is decided here.
    pub(super) fn decided(&self, hash: &str) {
        self.own.remove(hash);
        self.hashed.remove(hash);
    }

    /// Remembers that `message` hashes to `hash` (this node's coordinator just
    /// computed it), so its own member does not hash it again.
    pub fn note_message(&self, hash: &str, message: &Arc<RepoMessage>) {
        if self.hashed.len() >= MAX_OWN {
            self.hashed.clear();
        }
        self.hashed.insert(hash.to_string(), message.clone());
    }

    /// Reserves `claim` for `hash` (proposed by `proposer`).
    pub(super) fn reserve(
        &self,
        claim: &Claim,
        hash: &str,
        proposer: &str,
        share: bool,
    ) -> Result<(), Refusal> {
        let share = share.then(|| self.share());
        self.reservations
            .lock()
            .reserve(claim, hash, proposer, share)
    }

    /// The undecided transaction other than `hash` holding part of `claim`.
    pub(super) fn conflict(&self, claim: &Claim, hash: &str) -> Option<String> {
        self.reservations.lock().conflict(claim, hash)
    }

    /// Releases what `hash` holds of `claim`.
    pub(super) fn release(&self, claim: &Claim, hash: &str) {
        self.reservations.lock().release(claim, hash);
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

    /// Checks `record`'s peer set against the configurations this node holds: a
    /// write names, for each of its blocks' regions, this member's configuration
    /// (its epoch and exactly its members); a change starts from the
    /// configuration this member holds (or adds it), is proposed by a member of
    /// that configuration, and adds no peer the allow list leaves out
    /// (`not_allowed`). Otherwise `wrong_cluster`, carrying what
    /// this member holds.
    pub(super) fn check_config(&self, record: &ClusterRecord) -> Result<(), ClusterError> {
        let peers: BTreeSet<&str> = record.peers.keys().map(String::as_str).collect();
        let t = self.configs.table();
        let regions: BTreeSet<Region> = match &record.message.change {
            Some(c) => c.regions.iter().copied().collect(),
            None => message_blocks(&record.message.operations)
                .iter()
                .map(Region::of)
                .collect(),
        };
        let found = match &record.message.change {
            Some(change)
                if change
                    .peers()
                    .iter()
                    .map(String::as_str)
                    .ne(peers.iter().copied()) =>
            {
                Err(vec![Mismatch::Regions])
            }
            Some(change) => {
                if let Some(p) = change.added().filter(|p| !self.configs.may_be_member(p)) {
                    return Err(ClusterError::NotAllowed(p.clone()));
                }
                let proposer = record.message.coordinator.as_deref().unwrap_or_default();
                if !change.from.members.contains(proposer) {
                    // Only a member of the configuration proposes its change: a
                    // peer it would add cannot admit itself.
                    Err(vec![Mismatch::Regions])
                } else if quorum_of(record).met_by(&voters(&record.promises, VoteType::Approve)) {
                    // Decided: a joint majority promised it; what this member
                    // holds at the new epoch already stays.
                    t.check_decided_change(change)
                } else {
                    t.check_change(change)
                }
            }
            None => t.check(&regions, &record.message.epochs, &peers),
        };
        found.map_err(|_| {
            let view = regions
                .iter()
                .map(|r| RegionView {
                    region: *r,
                    config: t.get(*r).cloned(),
                })
                .collect();
            ClusterError::WrongCluster(view)
        })
    }

    /// Validates `record` (see docs/CONSENSUS.md, "Validation") for this member.
    fn check(
        &self,
        record: &ClusterRecord,
        proposal: bool,
        own: crate::cluster::votes::OwnVote<'_>,
        hash_known: bool,
    ) -> Result<(), ClusterError> {
        validate_with(
            record,
            &Checks {
                now_ms: now_ms(),
                proposal,
                max_lifetime_ms: self.max_lifetime_ms.load(Ordering::Relaxed),
                own,
                hash_known,
                keys: &self.keys,
            },
        )?;
        if !record.peers.contains_key(&self.me) {
            return Err(RecordError::NotAMember.into());
        }
        Ok(())
    }

    /// Handles a record `sender` delivered (a coordinator, or a recovering peer):
    /// validates it, advances this member's phase and returns the record with this
    /// member's votes. A proposal is taken only from its own coordinator.
    pub async fn update(
        self: &Arc<Self>,
        record: ClusterRecord,
        sender: &str,
    ) -> Result<ClusterRecord, ClusterError> {
        let proposal = record.promises.is_empty() && record.commits.is_empty();
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
        self.check(&record, proposal, &own, known)?;
        if proposal && record.message.coordinator.as_deref() != Some(sender) {
            return Err(ClusterError::Record(RecordError::BadPeer(
                sender.to_string(),
                "a proposal is taken only from the coordinator it names".into(),
            )));
        }
        if !known && proposal {
            // A proposal: its phase-2 record will carry the same message.
            self.note_message(&record.message_hash, &record.message);
        }
        let hash = record.message_hash.clone();
        let change = record.message.change.is_some();
        for _ in 0..4 {
            let addr = self.member_for(&hash, change)?;
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

    /// The actor of transaction `hash`, started (from its stored state) if none runs.
    pub(super) fn member(
        self: &Arc<Self>,
        hash: &str,
    ) -> Result<Addr<ClusterMember>, ClusterError> {
        self.member_for(hash, false)
    }

    /// [`Self::member`]; a new write transaction is refused past
    /// `max-active-transactions`. A configuration change (`change`, or one stored)
    /// neither counts toward that limit nor is refused for it: a member's slots
    /// taken by writes, or by other changes, must not keep it from joining or
    /// leaving a configuration (its proposer's share still bounds it).
    fn member_for(
        self: &Arc<Self>,
        hash: &str,
        change: bool,
    ) -> Result<Addr<ClusterMember>, ClusterError> {
        if let Some(a) = self.members.get(hash).filter(|a| a.connected()) {
            return Ok(a.clone());
        }
        let state = self.store.load(hash)?;
        let change = change
            || state
                .as_ref()
                .is_some_and(|s| s.record.message.change.is_some());
        let full = self.active() >= self.max_active.load(Ordering::Relaxed);
        if state.is_none() && full && !change {
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
                    *a =
                        ClusterMember::new(dir.clone(), hash_owned.clone(), state.clone(), !change)
                            .start();
                }
            })
            .or_insert_with(|| {
                ClusterMember::new(dir.clone(), hash_owned.clone(), state.clone(), !change).start()
            })
            .clone();
        Ok(addr)
    }

    /// What a record holds while undecided: its blocks, or a change's regions.
    pub(super) fn claim_of(record: &ClusterRecord) -> Claim {
        Claim {
            blocks: message_blocks(&record.message.operations),
            regions: record
                .message
                .change
                .as_ref()
                .map(|c| c.regions.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// Counts a promise fenced at recovery.
    pub(super) fn fenced(&self) {
        self.expired.add(1);
    }

    /// Peer `id` of a record with its addresses.
    pub(super) fn addrs_of_peer(
        record: &ClusterRecord,
        id: &str,
    ) -> Option<(libp2p::PeerId, Vec<libp2p::Multiaddr>)> {
        let p = record.peers.get(id)?;
        let peer: libp2p::PeerId = id.parse().ok()?;
        Some((
            peer,
            p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect(),
        ))
    }

    /// Peers of a record with their addresses, by PeerId text.
    pub(super) fn addrs_of(
        record: &ClusterRecord,
    ) -> BTreeMap<String, (libp2p::PeerId, Vec<libp2p::Multiaddr>)> {
        record
            .peers
            .iter()
            .filter_map(|(id, p)| {
                let peer: libp2p::PeerId = id.parse().ok()?;
                let addrs = p.multiaddrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some((id.clone(), (peer, addrs)))
            })
            .collect()
    }
}
