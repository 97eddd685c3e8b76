//! Planning a write: which cluster each block belongs to (the `cluster_size`
//! peers closest to it among this node's candidates), the record's peer set for
//! one cluster, and where to forward a write this node is not a member for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use libp2p::{Multiaddr, PeerId};

use super::Coordinator;
use crate::cluster::{closest_peers, peer_entry, ClusterPeer};
use crate::model::{ms_from_now, BlockId, OpResult, RepoError, RepoMessage, RepoOperation};
use crate::net::{cluster_coordinate, NetError, PeerInfo};

/// The peers this node can take into a cluster.
pub(super) struct View {
    pub(super) infos: BTreeMap<PeerId, PeerInfo>,
    /// Those peers and this node.
    pub(super) candidates: Vec<PeerId>,
    pub(super) my_addrs: Vec<String>,
}

/// The peers of one transaction and how to reach them.
#[derive(Clone)]
pub(super) struct Plan {
    pub(super) peers: BTreeMap<String, ClusterPeer>,
    pub(super) remote: Vec<(PeerId, Vec<Multiaddr>)>,
    /// This node is in none of the blocks' clusters: the closest peer of the first
    /// block, to forward the write to.
    pub(super) forward_to: Option<(PeerId, Vec<Multiaddr>)>,
}

/// A write's blocks grouped by the cluster they belong to.
pub(super) type Groups = BTreeMap<BTreeSet<PeerId>, BTreeSet<BlockId>>;

impl Coordinator {
    /// Who this node can reach and take into a cluster right now.
    pub(super) fn view(&self) -> Result<View, RepoError> {
        let status = self.net()?.member_view();
        let infos: BTreeMap<PeerId, _> = status
            .members
            .iter()
            .map(|p| (p.peer_id, p.clone()))
            .collect();
        let candidates = infos.keys().copied().chain([self.me]).collect();
        let my_addrs = status
            .listen_addrs
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(View {
            infos,
            candidates,
            my_addrs,
        })
    }

    /// The operation's blocks grouped by cluster (the `cluster_size` closest peers).
    pub(super) fn groups(&self, view: &View, blocks: BTreeSet<BlockId>) -> Groups {
        let mut groups = Groups::new();
        for block in blocks {
            let cluster: BTreeSet<PeerId> =
                closest_peers(&block, view.candidates.iter().copied(), self.cluster_size)
                    .into_iter()
                    .collect();
            groups.entry(cluster).or_default().insert(block);
        }
        groups
    }

    /// The record's peers for one cluster: the cluster plus this node (it always
    /// takes part, so it can answer from its own store), and where to forward the
    /// write when this node is not in the cluster.
    pub(super) fn plan(
        &self,
        view: &View,
        cluster: &BTreeSet<PeerId>,
        blocks: &BTreeSet<BlockId>,
    ) -> Plan {
        let forward_to = match blocks.first() {
            // The cluster's coordinator: its member closest to the first block.
            Some(first) if !cluster.contains(&self.me) => {
                closest_peers(first, cluster.iter().copied(), cluster.len())
                    .into_iter()
                    .find_map(|p| view.infos.get(&p).map(|i| (p, i.addrs.clone())))
            }
            _ => None,
        };
        let mut peers = BTreeMap::from([peer_entry(&self.key, view.my_addrs.clone())]);
        let mut remote = Vec::new();
        for p in cluster.iter().filter(|p| **p != self.me) {
            let Some(info) = view.infos.get(p) else {
                continue;
            };
            peers.insert(
                p.to_string(),
                ClusterPeer {
                    multiaddrs: info.addrs.iter().map(ToString::to_string).collect(),
                    public_key: B64.encode(info.public_key.encode_protobuf()),
                },
            );
            remote.push((*p, info.addrs.clone()));
        }
        Plan {
            peers,
            remote,
            forward_to,
        }
    }

    /// One cluster's part: forwarded to the cluster's coordinator when this node is
    /// not a member (unless it was itself forwarded here), applied directly on a lone
    /// node, or agreed by the cluster.
    pub(super) async fn run_part(
        self: &Arc<Self>,
        mut plan: Plan,
        op: RepoOperation,
        forwarded: bool,
    ) -> Result<OpResult, RepoError> {
        if let Some((peer, addrs)) = plan.forward_to.take().filter(|_| !forwarded) {
            // Not in the cluster: the block's coordinator runs it (and never forwards
            // again). If it cannot be reached, coordinate here instead.
            let message = RepoMessage {
                operations: vec![op.clone()],
                expiration: Some(ms_from_now(self.timeout)),
                coordinator: None,
            };
            match cluster_coordinate(self.net()?, peer, addrs, message, self.timeout).await {
                Ok(r) => {
                    self.metrics.forwarded.add(1);
                    return Ok(r);
                }
                Err(e @ NetError::Remote { .. }) => return Err(e.into()),
                Err(e) if e.is_in_doubt() => {
                    return Err(RepoError::InDoubt(format!("forwarded to {peer}: {e}")))
                }
                Err(e) => tracing::warn!(%peer, error = %e, "cannot forward; coordinating here"),
            }
        }
        if plan.remote.is_empty() {
            self.metrics.local.add(1);
            return self.local(op).await;
        }
        self.submit(plan, op).await
    }
}
