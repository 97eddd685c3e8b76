//! The MemberDirectory: the node's side of the cluster protocol. It validates
//! every record it is handed, routes it to the member actor of its transaction
//! (started on demand, bounded in number), owns the reservations, remembers the
//! promises it signed, answers recovery queries and forgets decided
//! transactions after their retention.
//!
//! Layout: this file holds the directory's state, its settings and accessors;
//! `route` routes records to member actors, `validate` checks them, `claims`
//! holds the reservations, `promises` the promises signed here, `retention`
//! resumes and forgets transactions, and `peers` reads a record's addresses.

mod claims;
mod peers;
mod promises;
mod retention;
mod route;
mod validate;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use libp2p::identity::Keypair;
use parking_lot::Mutex;

use super::cancelled::CancelMarks;
use super::deadlines::PendDeadlines;
use super::reservations::Reservations;
use super::ClusterMember;
use crate::block::StorageRepo;
use crate::cluster::record::Signature;
use crate::cluster::store::TxnStore;
use crate::cluster::votes::KeyCache;
use crate::cluster::{CatchUp, Configs, Freshness};
use crate::metrics::{ActorMetrics, Counter};
use crate::model::Peers;
use crate::model::{OpOutcome, RepoMessage};

/// Default of [`MemberDirectory::set_max_active`].
pub const DEFAULT_MAX_ACTIVE: usize = 4096;

/// How long a decided transaction's state is kept past its deadline: it answers
/// duplicate deliveries and recovery queries of members that were down. A member
/// that finds no decision fences (never applies), which is safe whatever the
/// others did (docs/CONSENSUS.md, "Retention").
pub const RETENTION: Duration = Duration::from_secs(600);

/// Default longest lifetime of a proposal (its deadline from now).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(120);

/// Routes records to member actors; owns reservations; shared by the node.
pub struct MemberDirectory {
    pub(super) key: Keypair,
    pub(super) me: String,
    pub(super) repo: StorageRepo,
    pub(super) store: TxnStore,
    members: DashMap<String, Addr<ClusterMember>>,
    pub(super) reservations: Mutex<Reservations>,
    pub(super) metrics: Arc<ActorMetrics>,
    pub(super) net: OnceLock<Arc<dyn Peers>>,
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

    /// The node's configurations.
    pub fn configs(&self) -> &Arc<Configs> {
        &self.configs
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
    pub fn set_net(&self, net: Arc<dyn Peers>) {
        let _ = self.net.set(net);
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

    /// Counts a promise fenced at recovery.
    pub(super) fn fenced(&self) {
        self.expired.add(1);
    }
}
