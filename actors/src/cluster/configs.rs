//! A node's configurations, shared by its members, its coordinator and its
//! placement driver: the region table (docs/CONSENSUS.md, "Configurations"), the
//! book of every peer it has had in a configuration (key and last addresses), and
//! their durable copies. A node that has had peers remembers them across
//! restarts; only a node that never had any starts a network of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libp2p::{Multiaddr, PeerId};
use parking_lot::RwLock;

use super::changelog::ChangeLog;
use super::record::ClusterPeer;
use crate::membership::RegionTable;
use crate::model::{Config, ConfigChange, Region, StorageError};
use crate::storage::{RawStorage, WriteFuture, WriteOp};

/// Where the node's own configurations are kept (beside transaction states, under
/// keys a messageHash never has).
const REGIONS_KEY: &str = "node-regions";
/// Where the peer book is kept.
const PEERS_KEY: &str = "node-peers";
/// Where the peers an operator retired are kept.
const RETIRED_KEY: &str = "node-retired";

/// The node's configurations and peer book.
pub struct Configs {
    me: String,
    cluster_size: usize,
    raw: Arc<dyn RawStorage>,
    table: RwLock<RegionTable>,
    peers: RwLock<BTreeMap<String, ClusterPeer>>,
    /// Peers retired by an operator (`optimystic peers remove`), directly or
    /// through an agreed change that retired them: candidates for no region.
    retired: RwLock<BTreeSet<String>>,
    /// A permissioned network's allow list (`--allow-peers`): only these may be
    /// members. Unset: anyone.
    allowed: std::sync::OnceLock<BTreeSet<String>>,
    /// Bumped whenever the table changes (the placement driver skips a pass when
    /// neither it nor the live peers changed since one found nothing due).
    generation: AtomicU64,
    /// The decided changes applied lately, for co-members that missed one.
    changes: ChangeLog,
}

impl Configs {
    /// Loads what `raw` holds for node `me` (clusters of `cluster_size`).
    pub fn open(
        me: &str,
        cluster_size: usize,
        raw: Arc<dyn RawStorage>,
    ) -> Result<Arc<Self>, StorageError> {
        let read = |key: &str| -> Result<Option<Vec<u8>>, StorageError> { raw.get_txn(key) };
        let configs: BTreeMap<Region, Config> = match read(REGIONS_KEY)? {
            Some(b) => {
                serde_json::from_slice(&b).map_err(|e| StorageError::corrupt("node regions", e))?
            }
            None => BTreeMap::new(),
        };
        let peers: BTreeMap<String, ClusterPeer> = match read(PEERS_KEY)? {
            Some(b) => {
                serde_json::from_slice(&b).map_err(|e| StorageError::corrupt("node peers", e))?
            }
            None => BTreeMap::new(),
        };
        let retired: BTreeSet<String> = match read(RETIRED_KEY)? {
            Some(b) => {
                serde_json::from_slice(&b).map_err(|e| StorageError::corrupt("node retired", e))?
            }
            None => BTreeSet::new(),
        };
        Ok(Arc::new(Self {
            me: me.to_string(),
            cluster_size: cluster_size.max(1),
            table: RwLock::new(RegionTable::with(me, configs)),
            raw,
            peers: RwLock::new(peers),
            retired: RwLock::new(retired),
            allowed: std::sync::OnceLock::new(),
            generation: AtomicU64::new(0),
            changes: ChangeLog::default(),
        }))
    }

    /// Lets only `allowed` be members from now on (`--allow-peers`; set once,
    /// before the node serves).
    pub fn restrict_members(&self, allowed: BTreeSet<String>) {
        let _ = self.allowed.set(allowed);
    }

    /// Whether `id` may be a member of a configuration (the allow list, if any).
    pub fn may_be_member(&self, id: &str) -> bool {
        self.allowed.get().is_none_or(|a| a.contains(id))
    }

    /// This node.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Members wanted per region.
    pub fn cluster_size(&self) -> usize {
        self.cluster_size
    }

    /// Starts a network of its own — every region configured with this node alone —
    /// when this node holds no configuration, has never had a peer, and was given
    /// none to join (`joining`). True if it did.
    pub async fn genesis_if_alone(
        &self,
        me: ClusterPeer,
        joining: bool,
    ) -> Result<bool, StorageError> {
        let alone = !joining && !self.table.read().has_any() && self.peers.read().len() <= 1;
        if !alone {
            return Ok(false);
        }
        self.note_peer(&self.me, me);
        {
            let mut t = self.table.write();
            for r in Region::all() {
                t.set(r, Config::genesis(&self.me));
            }
        }
        self.changed();
        self.persist()?.await?;
        Ok(true)
    }

    /// The region table (read).
    pub fn table(&self) -> parking_lot::RwLockReadGuard<'_, RegionTable> {
        self.table.read()
    }

    /// The configuration known for `r`.
    pub fn config(&self, r: Region) -> Option<Config> {
        self.table.read().get(r).cloned()
    }

    /// Learns configurations peer `from` reported: a newer epoch than the one
    /// known, from a member of the configuration known (it took part in the
    /// changes since), or of a region this node knows nothing of (trust on first
    /// use: docs/SECURITY.md). A configuration naming this node is learned only by
    /// applying the change that made it, one naming a peer the allow list leaves
    /// out never, nor one without members (no region has none). Returns how many
    /// were learned.
    pub fn learn(&self, from: &str, view: impl IntoIterator<Item = (Region, Config)>) -> usize {
        let mut t = self.table.write();
        let mut learned = 0;
        for (r, c) in view {
            let vouched = t.get(r).is_none_or(|known| known.members.contains(from));
            let names_me = c.members.contains(&self.me) && !t.is_member(r);
            let allowed = !c.members.is_empty() && c.members.iter().all(|m| self.may_be_member(m));
            if vouched && !names_me && allowed && t.learn(r, c) {
                learned += 1;
            }
        }
        if learned > 0 {
            self.changed();
        }
        learned
    }

    /// Forgets the configurations learned for `regions` (not this node's own):
    /// when none of their members can be reached, they are as good as unknown,
    /// and the next write asks the peers closest to the regions again (trust on
    /// first use, docs/SECURITY.md). Members are unaffected: they check records
    /// against the configurations they applied.
    pub fn forget_learned(&self, regions: impl IntoIterator<Item = Region>) {
        let mut t = self.table.write();
        let mut forgot = false;
        for r in regions {
            forgot |= t.forget_learned(r);
        }
        drop(t);
        if forgot {
            self.changed();
        }
    }

    /// The decided changes this node applied lately.
    pub fn changes(&self) -> &ChangeLog {
        &self.changes
    }

    /// How many times the table has changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies an agreed change and makes it durable.
    pub fn apply(&self, change: &ConfigChange) -> Result<WriteFuture, StorageError> {
        self.table.write().apply(change);
        self.changed();
        self.persist()
    }

    /// Remembers `peer`'s key and addresses (persisted with the next change, or now
    /// when the peer is new).
    pub fn note_peer(&self, id: &str, peer: ClusterPeer) -> bool {
        let mut p = self.peers.write();
        match p.get(id) {
            Some(known) if *known == peer => false,
            _ => {
                p.insert(id.to_string(), peer);
                true
            }
        }
    }

    /// Remembers a peer identify described.
    pub fn note_identified(
        &self,
        id: PeerId,
        key: &libp2p::identity::PublicKey,
        addrs: &[Multiaddr],
    ) {
        let peer = ClusterPeer {
            multiaddrs: addrs.iter().map(ToString::to_string).collect(),
            public_key: B64.encode(key.encode_protobuf()),
        };
        if self.note_peer(&id.to_string(), peer) {
            if let Ok(w) = self.persist_peers() {
                actix_rt::spawn(async move {
                    if let Err(e) = w.await {
                        tracing::warn!(error = %e, "cannot persist the peer book");
                    }
                });
            }
        }
    }

    /// Retires `id` durably: it is a candidate for no region from now on (the
    /// placement driver replaces it wherever it is a member). None if it was
    /// retired already.
    pub fn retire(&self, id: &str) -> Result<Option<WriteFuture>, StorageError> {
        let bytes = {
            let mut r = self.retired.write();
            if !r.insert(id.to_string()) {
                return Ok(None);
            }
            serde_json::to_vec(&*r).map_err(|e| StorageError::Encode {
                what: "node retired".into(),
                message: e.to_string(),
            })?
        };
        self.changed();
        Ok(Some(self.raw.write(vec![WriteOp::PutTxn {
            hash: RETIRED_KEY.into(),
            bytes: Arc::new(bytes),
        }])))
    }

    /// Whether `id` is retired.
    pub fn is_retired(&self, id: &str) -> bool {
        self.retired.read().contains(id)
    }

    /// Every retired peer.
    pub fn retired(&self) -> BTreeSet<String> {
        self.retired.read().clone()
    }

    /// How many regions of this node's configurations have `id` as a member.
    pub fn regions_with(&self, id: &str) -> usize {
        self.table
            .read()
            .groups()
            .into_iter()
            .filter(|(c, _)| c.members.contains(id))
            .map(|(_, rs)| rs.len())
            .sum()
    }

    /// The whole peer book.
    pub fn book(&self) -> BTreeMap<String, ClusterPeer> {
        self.peers.read().clone()
    }

    /// `id`'s entry.
    pub fn peer(&self, id: &str) -> Option<ClusterPeer> {
        self.peers.read().get(id).cloned()
    }

    /// The record entries of `members`, if every one is known.
    pub fn entries(&self, members: &BTreeSet<String>) -> Option<BTreeMap<String, ClusterPeer>> {
        let p = self.peers.read();
        members
            .iter()
            .map(|m| p.get(m).map(|e| (m.clone(), e.clone())))
            .collect()
    }

    /// Every peer this node has had in its book (candidates to try).
    pub fn known_peers(&self) -> Vec<PeerId> {
        self.peers
            .read()
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect()
    }

    fn persist(&self) -> Result<WriteFuture, StorageError> {
        let owned = self.table.read().owned();
        let regions = serde_json::to_vec(&owned).map_err(|e| StorageError::Encode {
            what: "node regions".into(),
            message: e.to_string(),
        })?;
        let peers = serde_json::to_vec(&*self.peers.read()).map_err(|e| StorageError::Encode {
            what: "node peers".into(),
            message: e.to_string(),
        })?;
        Ok(self.raw.write(vec![
            WriteOp::PutTxn {
                hash: REGIONS_KEY.into(),
                bytes: Arc::new(regions),
            },
            WriteOp::PutTxn {
                hash: PEERS_KEY.into(),
                bytes: Arc::new(peers),
            },
        ]))
    }

    fn persist_peers(&self) -> Result<WriteFuture, StorageError> {
        let peers = serde_json::to_vec(&*self.peers.read()).map_err(|e| StorageError::Encode {
            what: "node peers".into(),
            message: e.to_string(),
        })?;
        Ok(self.raw.write(vec![WriteOp::PutTxn {
            hash: PEERS_KEY.into(),
            bytes: Arc::new(peers),
        }]))
    }
}

/// Whether a key of the transaction store is one of the node's own records (not
/// a transaction's state).
pub fn is_node_key(key: &str) -> bool {
    key.starts_with("node-")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::cfg;
    use crate::storage::MemoryRawStorage;

    #[test]
    fn a_configuration_without_members_is_never_learned() {
        let configs = Configs::open("me", 3, Arc::new(MemoryRawStorage::default())).unwrap();
        let r = Region::of(&crate::model::BlockId::new("b").unwrap());
        assert_eq!(configs.learn("liar", [(r, cfg(9, &[]))]), 0);
        assert_eq!(configs.config(r), None);
        assert_eq!(configs.learn("peer", [(r, cfg(1, &["a", "b", "c"]))]), 1);
        assert_eq!(configs.config(r), Some(cfg(1, &["a", "b", "c"])));
    }
}
