//! Clients: [`NetClient`] sends one request through the SwarmActor; [`RepoClient`]
//! is the repo API over the network (MessagePack preferred, JSON fallback);
//! [`fetch_archive`] asks one peer for a block's archive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use futures::future::BoxFuture;
use libp2p::{Multiaddr, PeerId};
use serde::de::DeserializeOwned;

use super::behaviour::Proto;
use super::swarm::{Request, Status, SwarmActor};
use super::wire::{decode_op_result, decode_reply, encode, BlockRequest, ErrorReply};
use super::{Encoding, NetError, NetMetrics, NetStatus};
use crate::model::now_ms;
use crate::model::BlockArchive;
use crate::model::{
    codes, BlockGets, BlockId, CancelOperation, CancelReply, CommitRequest, CommitResult,
    GetBlockResults, OpResult, PendCommitRequest, PendCommitResult, PendRequest, PendResult, Repo,
    RepoError, RepoMessage, RepoOperation, Rev, TrxBlocks,
};

/// Sends requests through a SwarmActor.
#[derive(Clone)]
pub struct NetClient {
    swarm: Addr<SwarmActor>,
    metrics: Arc<NetMetrics>,
}

impl NetClient {
    /// Starts a client-only swarm (fresh identity, no listening, no inbound
    /// protocols) on the current arbiter and returns its client.
    pub fn start_client(cfg: super::NetConfig) -> Result<Self, NetError> {
        Self::start_client_as(cfg, libp2p::identity::Keypair::generate_ed25519())
    }

    /// [`Self::start_client`] with the identity `key`.
    pub fn start_client_as(
        mut cfg: super::NetConfig,
        key: libp2p::identity::Keypair,
    ) -> Result<Self, NetError> {
        use actix::Actor as _;
        cfg.client_only = true;
        let swarm = super::build_swarm(key, &cfg)?;
        let metrics = Arc::new(NetMetrics::default());
        Ok(Self::new(
            SwarmActor::new(swarm, cfg, None, None, metrics.clone()).start(),
            metrics,
        ))
    }

    /// A client of the given swarm.
    pub fn new(swarm: Addr<SwarmActor>, metrics: Arc<NetMetrics>) -> Self {
        Self { swarm, metrics }
    }

    /// The swarm actor.
    pub fn swarm(&self) -> &Addr<SwarmActor> {
        &self.swarm
    }

    /// Sends `bytes` to `peer` on `proto` and waits up to `timeout` for the reply.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        proto: Proto,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        match crate::faults::outbound(&peer) {
            crate::faults::Outbound::Send => {}
            crate::faults::Outbound::Drop => {
                return Err(NetError::Dial(format!(
                    "{peer}: dropped by an injected fault"
                )))
            }
            crate::faults::Outbound::Delay(d) => tokio::time::sleep(d).await,
        }
        self.metrics.swarm_actor.enqueued();
        let rx = match self
            .swarm
            .send(Request {
                peer,
                addrs,
                proto,
                bytes,
            })
            .await
        {
            Ok(rx) => rx,
            Err(_) => {
                self.metrics.swarm_actor.dropped();
                return Err(NetError::Stopped);
            }
        };
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(NetError::Timeout),
            Ok(Err(_)) => Err(NetError::Stopped),
            Ok(Ok(r)) => r,
        }
    }

    /// The swarm's state.
    pub async fn status(&self) -> Result<NetStatus, NetError> {
        self.call(Status).await
    }

    /// Connected consensus members and listen addresses, without a mailbox trip
    /// (as the SwarmActor last published them).
    pub fn member_view(&self) -> Arc<super::MemberView> {
        self.metrics.view()
    }

    /// Sends any SwarmActor message (counted in its mailbox metrics).
    pub async fn call<M>(&self, msg: M) -> Result<M::Result, NetError>
    where
        M: actix::Message + Send + 'static,
        M::Result: Send,
        SwarmActor: actix::Handler<M>,
    {
        self.metrics.swarm_actor.enqueued();
        self.swarm.send(msg).await.map_err(|_| {
            self.metrics.swarm_actor.dropped();
            NetError::Stopped
        })
    }
}

/// The repo API of a remote node.
pub struct RepoClient {
    net: NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    timeout: Duration,
    json_only: AtomicBool,
}

impl RepoClient {
    /// A client of `peer` (dialled at `addrs` when not connected); every call waits
    /// at most `timeout`, which is also sent as the message's `expiration`.
    pub fn new(net: NetClient, peer: PeerId, addrs: Vec<Multiaddr>, timeout: Duration) -> Self {
        Self {
            net,
            peer,
            addrs,
            timeout,
            json_only: AtomicBool::new(false),
        }
    }

    /// Uses only the JSON protocol (as a seed-built JavaScript client would).
    pub fn force_json(self) -> Self {
        self.json_only.store(true, Ordering::Relaxed);
        self
    }

    async fn call<T: DeserializeOwned>(&self, op: RepoOperation) -> Result<T, NetError> {
        let msg = RepoMessage::of(
            op,
            Some(
                now_ms()
                    .saturating_add(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)),
            ),
        );
        if !self.json_only.load(Ordering::Relaxed) {
            match self.send(Proto::RepoMp, &msg).await {
                Err(NetError::Unsupported) => self.json_only.store(true, Ordering::Relaxed),
                r => return r,
            }
        }
        self.send(Proto::RepoJson, &msg).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        proto: Proto,
        msg: &RepoMessage,
    ) -> Result<T, NetError> {
        let enc = proto.encoding();
        let bytes = encode(enc, msg).map_err(NetError::Decode)?;
        let reply = self
            .net
            .request(self.peer, self.addrs.clone(), proto, bytes, self.timeout)
            .await?;
        decode_reply::<T>(enc, &reply)
            .map_err(NetError::Decode)?
            .map_err(NetError::from)
    }

    /// Reads blocks.
    pub async fn get(&self, gets: BlockGets) -> Result<GetBlockResults, NetError> {
        self.call(RepoOperation::Get(gets)).await
    }

    /// Pends a transaction.
    pub async fn pend(&self, req: PendRequest) -> Result<PendResult, NetError> {
        self.call(RepoOperation::Pend(req)).await
    }

    /// Commits a transaction.
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResult, NetError> {
        self.call(RepoOperation::Commit(req)).await
    }

    /// Pends and commits one transaction in one request: one consensus round
    /// instead of two, all or nothing (see [`PendCommitRequest`]). A node that does
    /// not know the operation gets the pend, then the commit (then a cancel if the
    /// commit fails), with the same outcome.
    pub async fn pend_commit(&self, req: PendCommitRequest) -> Result<PendCommitResult, NetError> {
        match self.call(RepoOperation::PendCommit(req.clone())).await {
            Err(NetError::Remote { code, .. }) if code == super::codes::UNKNOWN_OPERATION => {}
            r => return r,
        }
        let trx_ref = TrxBlocks {
            trx_id: req.commit.trx_id.clone(),
            block_ids: req.commit.block_ids.clone(),
        };
        let pend = self.pend(req.pend).await?;
        if !pend.is_success() {
            return Ok(PendCommitResult { pend, commit: None });
        }
        let commit = self.commit(req.commit).await?;
        if !commit.is_success() {
            self.cancel(trx_ref).await?;
        }
        Ok(PendCommitResult {
            pend,
            commit: Some(commit),
        })
    }

    /// Cancels a pending transaction.
    pub async fn cancel(&self, trx_ref: TrxBlocks) -> Result<(), NetError> {
        self.call::<CancelReply>(RepoOperation::Cancel(CancelOperation { trx_ref }))
            .await?
            .done()
            .map_err(|message| NetError::Remote {
                code: codes::CONFLICT.into(),
                message,
            })
    }
}

impl Repo for RepoClient {
    fn get(&self, gets: BlockGets) -> BoxFuture<'_, Result<GetBlockResults, RepoError>> {
        Box::pin(async move { Ok(RepoClient::get(self, gets).await?) })
    }

    fn pend(&self, req: PendRequest) -> BoxFuture<'_, Result<PendResult, RepoError>> {
        Box::pin(async move { Ok(RepoClient::pend(self, req).await?) })
    }

    fn commit(&self, req: CommitRequest) -> BoxFuture<'_, Result<CommitResult, RepoError>> {
        Box::pin(async move { Ok(RepoClient::commit(self, req).await?) })
    }

    fn pend_commit(
        &self,
        req: PendCommitRequest,
    ) -> BoxFuture<'_, Result<PendCommitResult, RepoError>> {
        Box::pin(async move { Ok(RepoClient::pend_commit(self, req).await?) })
    }

    fn cancel(&self, trx: TrxBlocks) -> BoxFuture<'_, Result<(), RepoError>> {
        Box::pin(async move { Ok(RepoClient::cancel(self, trx).await?) })
    }
}

/// Sends a cluster record to `peer` (MessagePack, JSON if the peer lacks it).
pub async fn cluster_update(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: crate::model::ClusterRecord,
    timeout: Duration,
) -> Result<crate::model::ClusterRecord, NetError> {
    cluster_call(net, peer, addrs, "update", record, timeout).await
}

/// Asks `peer` for its stored record of the same transaction (recovery; the record
/// may be past its deadline; nothing changes on the peer).
pub async fn cluster_query(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: crate::model::ClusterRecord,
    timeout: Duration,
) -> Result<crate::model::ClusterRecord, NetError> {
    cluster_call(net, peer, addrs, "query", record, timeout).await
}

async fn cluster_call(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    operation: &str,
    record: crate::model::ClusterRecord,
    timeout: Duration,
) -> Result<crate::model::ClusterRecord, NetError> {
    let req = super::wire::ClusterRequest {
        record: Some(record),
        ..super::wire::ClusterRequest::new(operation)
    };
    cluster_send(net, peer, addrs, &req, timeout, decode_reply).await
}

/// Hands a write to `peer`, the coordinator of its blocks, which runs it without
/// forwarding again; returns that node's result.
pub async fn cluster_coordinate(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    message: RepoMessage,
    timeout: Duration,
) -> Result<OpResult, NetError> {
    let Some(op) = message.operations.first().cloned() else {
        return Err(NetError::Decode(
            "a forwarded write needs one operation".into(),
        ));
    };
    let req = super::wire::ClusterRequest {
        message: Some(message),
        ..super::wire::ClusterRequest::new("coordinate")
    };
    cluster_send(net, peer, addrs, &req, timeout, |enc, bytes| {
        decode_op_result(enc, &op, bytes)
    })
    .await
}

/// Asks `peer` which configurations it holds of `regions`.
pub async fn cluster_configs(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    regions: Vec<crate::model::Region>,
    timeout: Duration,
) -> Result<super::wire::ConfigsReply, NetError> {
    let req = super::wire::ClusterRequest {
        regions: Some(regions),
        ..super::wire::ClusterRequest::new("configs")
    };
    cluster_send(net, peer, addrs, &req, timeout, decode_reply).await
}

/// Hands `archives` to `peer` to store (it is about to join their regions).
pub async fn cluster_store(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    archives: Vec<BlockArchive>,
    timeout: Duration,
) -> Result<super::wire::StoreReply, NetError> {
    let req = super::wire::ClusterRequest {
        archives: Some(archives),
        ..super::wire::ClusterRequest::new("store")
    };
    cluster_send(net, peer, addrs, &req, timeout, decode_reply).await
}

/// Asks `peer` which blocks it stores in `regions`, and their latest
/// revisions: every page, from the first.
pub async fn cluster_heads(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    regions: Vec<crate::model::Region>,
    timeout: Duration,
) -> Result<Vec<crate::model::BlockHead>, NetError> {
    let mut req = super::wire::ClusterRequest {
        regions: Some(regions),
        ..super::wire::ClusterRequest::new("heads")
    };
    let mut out = Vec::new();
    loop {
        let page: super::wire::HeadsReply =
            cluster_send(net, peer, addrs.clone(), &req, timeout, decode_reply).await?;
        let last = page.heads.last().map(|h| h.block_id.clone());
        out.extend(page.heads);
        match last {
            Some(l) if page.more => req.after = Some(l),
            _ => return Ok(out),
        }
    }
}

/// Asks `peer` for the latest revision and pending transactions of each block
/// of `blocks` it stores (`blockHeads`; a block it does not store is left out
/// of the reply). At most [`super::wire::HEADS_PER_REPLY`] blocks per request:
/// more are asked in several.
pub async fn cluster_block_heads(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    blocks: &[BlockId],
    timeout: Duration,
) -> Result<Vec<crate::model::BlockHead>, NetError> {
    let mut out = Vec::new();
    for chunk in blocks.chunks(super::wire::HEADS_PER_REPLY) {
        let req = super::wire::ClusterRequest {
            blocks: Some(chunk.to_vec()),
            ..super::wire::ClusterRequest::new("blockHeads")
        };
        let page: super::wire::HeadsReply =
            cluster_send(net, peer, addrs.clone(), &req, timeout, decode_reply).await?;
        out.extend(page.heads);
    }
    Ok(out)
}

/// Asks `peer` for its digest of each region of `regions` it holds committed
/// blocks in (anti-entropy; docs/PROTOCOL.md, `digests`).
pub async fn cluster_digests(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    regions: Vec<crate::model::Region>,
    timeout: Duration,
) -> Result<Vec<crate::model::RegionDigest>, NetError> {
    let req = super::wire::ClusterRequest {
        regions: Some(regions),
        ..super::wire::ClusterRequest::new("digests")
    };
    let reply: super::wire::DigestsReply =
        cluster_send(net, peer, addrs, &req, timeout, decode_reply).await?;
    Ok(reply.digests)
}

/// Sends a cluster request (MessagePack, JSON if the peer lacks it) and decodes
/// the reply with `decode`.
async fn cluster_send<T>(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    req: &super::wire::ClusterRequest,
    timeout: Duration,
    decode: impl Fn(Encoding, &[u8]) -> Result<Result<T, ErrorReply>, String>,
) -> Result<T, NetError> {
    for proto in [Proto::ClusterMp, Proto::ClusterJson] {
        let enc = proto.encoding();
        let bytes = encode(enc, req).map_err(NetError::Decode)?;
        match net
            .request(peer, addrs.clone(), proto, bytes, timeout)
            .await
        {
            Err(NetError::Unsupported) => continue,
            Err(e) => return Err(e),
            Ok(reply) => {
                return decode(enc, &reply)
                    .map_err(NetError::Decode)?
                    .map_err(NetError::from)
            }
        }
    }
    Err(NetError::Unsupported)
}

/// Asks `peer` for `block`'s archive from `rev` (or its latest revision).
pub async fn fetch_archive(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    block: &BlockId,
    rev: Option<Rev>,
    timeout: Duration,
) -> Result<Option<BlockArchive>, NetError> {
    let req = BlockRequest {
        block_id: block.clone(),
        rev,
    };
    let bytes = encode(Encoding::Json, &req).map_err(NetError::Decode)?;
    let reply = net
        .request(peer, addrs, Proto::Block, bytes, timeout)
        .await?;
    decode_reply(Encoding::Json, &reply)
        .map_err(NetError::Decode)?
        .map_err(NetError::from)
}

/// Asks `peer` for the archive of each of `asks` (a block and the first
/// revision wanted, as in [`fetch_archive`]) in as few block requests as its
/// replies allow (at most [`super::wire::BLOCKS_PER_REQUEST`] blocks each, the
/// rest of a reply cut short asked again). One entry per ask, in order: `None`
/// when the peer does not hold the block.
pub async fn fetch_archives(
    net: &NetClient,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    asks: &[(BlockId, Option<Rev>)],
    timeout: Duration,
) -> Result<Vec<Option<BlockArchive>>, NetError> {
    let mut out: Vec<Option<BlockArchive>> = Vec::with_capacity(asks.len());
    while out.len() < asks.len() {
        let rest = &asks[out.len()..];
        let chunk = &rest[..rest.len().min(super::wire::BLOCKS_PER_REQUEST)];
        let req = super::wire::BlocksRequest {
            blocks: chunk
                .iter()
                .map(|(block_id, rev)| BlockRequest {
                    block_id: block_id.clone(),
                    rev: *rev,
                })
                .collect(),
        };
        let bytes = encode(Encoding::Json, &req).map_err(NetError::Decode)?;
        let reply = net
            .request(peer, addrs.clone(), Proto::Block, bytes, timeout)
            .await?;
        let got: Vec<Option<BlockArchive>> = decode_reply(Encoding::Json, &reply)
            .map_err(NetError::Decode)?
            .map_err(NetError::from)?;
        if got.is_empty() || got.len() > chunk.len() {
            return Err(NetError::Decode(format!(
                "a reply of {} archives to a request for {}",
                got.len(),
                chunk.len()
            )));
        }
        out.extend(got);
    }
    Ok(out)
}
