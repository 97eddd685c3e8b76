//! [`Peers`] over libp2p: each call of the trait is one request of the cluster or
//! block protocol through this node's swarm.

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::NetClient;
use crate::model::{
    BlockArchive, BlockHead, BlockId, ClusterRecord, ConfigsReply, MemberView, OpResult, PeerCall,
    Peers, Region, RegionDigest, RepoMessage, Rev, StoreReply,
};

impl Peers for NetClient {
    fn member_view(&self) -> Arc<MemberView> {
        NetClient::member_view(self)
    }

    fn update(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        record: ClusterRecord,
        timeout: Duration,
    ) -> PeerCall<ClusterRecord> {
        let net = self.clone();
        Box::pin(async move { super::cluster_update(&net, peer, addrs, record, timeout).await })
    }

    fn query(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        record: ClusterRecord,
        timeout: Duration,
    ) -> PeerCall<ClusterRecord> {
        let net = self.clone();
        Box::pin(async move { super::cluster_query(&net, peer, addrs, record, timeout).await })
    }

    fn coordinate(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        message: RepoMessage,
        timeout: Duration,
    ) -> PeerCall<OpResult> {
        let net = self.clone();
        Box::pin(
            async move { super::cluster_coordinate(&net, peer, addrs, message, timeout).await },
        )
    }

    fn configs(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        regions: Vec<Region>,
        timeout: Duration,
    ) -> PeerCall<ConfigsReply> {
        let net = self.clone();
        Box::pin(async move { super::cluster_configs(&net, peer, addrs, regions, timeout).await })
    }

    fn store(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        archives: Vec<BlockArchive>,
        pending_exact: bool,
        timeout: Duration,
    ) -> PeerCall<StoreReply> {
        let net = self.clone();
        Box::pin(async move {
            super::cluster_store(&net, peer, addrs, archives, pending_exact, timeout).await
        })
    }

    fn heads(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        regions: Vec<Region>,
        timeout: Duration,
    ) -> PeerCall<Vec<BlockHead>> {
        let net = self.clone();
        Box::pin(async move { super::cluster_heads(&net, peer, addrs, regions, timeout).await })
    }

    fn block_heads(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        blocks: Vec<BlockId>,
        timeout: Duration,
    ) -> PeerCall<Vec<BlockHead>> {
        let net = self.clone();
        Box::pin(
            async move { super::cluster_block_heads(&net, peer, addrs, &blocks, timeout).await },
        )
    }

    fn digests(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        regions: Vec<Region>,
        timeout: Duration,
    ) -> PeerCall<Vec<RegionDigest>> {
        let net = self.clone();
        Box::pin(async move { super::cluster_digests(&net, peer, addrs, regions, timeout).await })
    }

    fn fetch_archive(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        block: BlockId,
        rev: Option<Rev>,
        timeout: Duration,
    ) -> PeerCall<Option<BlockArchive>> {
        let net = self.clone();
        Box::pin(async move { super::fetch_archive(&net, peer, addrs, &block, rev, timeout).await })
    }

    fn fetch_archives(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        asks: Vec<(BlockId, Option<Rev>)>,
        timeout: Duration,
    ) -> PeerCall<Vec<Option<BlockArchive>>> {
        let net = self.clone();
        Box::pin(async move { super::fetch_archives(&net, peer, addrs, &asks, timeout).await })
    }
}
