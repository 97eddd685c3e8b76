//! RepoService: answers inbound repo and block-transfer requests from the local
//! StorageRepo. One actor; each request runs as its own future (the SwarmActor
//! bounds how many are in flight), and its reply goes back as a [`Respond`].

use std::sync::Arc;

use actix::prelude::*;
use futures::StreamExt;
use serde::Serialize;

use crate::block::StorageRepo;
use crate::cluster::MemberDirectory;
use crate::coordinator::CoordinatorHandle;
use crate::model::{now_ms, Region};
use crate::net::{
    codes, decode, decode_request, encode, BlockAsk, ClusterRequest, ConfigsReply, DigestsReply,
    Encoding, ErrorReply, HeadsReply, Inbound, NetMetrics, Proto, Respond, StoreReply,
    ARCHIVES_REPLY_BYTES, HEADS_PER_REPLY,
};
use crate::storage::RepoError;

/// How far a requester's clock may be behind this node's before its request's
/// `expiration` counts as passed: clocks differ, and refusing a request that
/// the requester still waits for only costs a retry elsewhere.
pub const CLOCK_SKEW_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Most archives of one block request read from storage at once.
const ARCHIVES_LOADED_AT_ONCE: usize = 8;

/// Most archives of one `store` request restored at once.
const STORE_RESTORES_AT_ONCE: usize = 64;

/// Mailbox capacity of the RepoService.
const SERVICE_MAILBOX: usize = 1024;

/// Serves the repo protocols from a StorageRepo.
pub struct RepoService {
    repo: StorageRepo,
    metrics: Arc<NetMetrics>,
    consensus: Option<Consensus>,
}

/// What a node needs to take part in consensus.
#[derive(Clone)]
pub struct Consensus {
    /// This node's cluster members (answers the cluster protocol).
    pub members: Arc<MemberDirectory>,
    /// Runs client writes through the cluster.
    pub coordinator: CoordinatorHandle,
    /// The node-local store (blocks handed over by `store`).
    pub repo: StorageRepo,
}

impl RepoService {
    /// A service over `repo`.
    pub fn new(repo: StorageRepo, metrics: Arc<NetMetrics>) -> Self {
        Self {
            repo,
            metrics,
            consensus: None,
        }
    }

    /// Routes writes through `consensus` and answers the cluster protocol.
    pub fn with_consensus(mut self, consensus: Consensus) -> Self {
        self.consensus = Some(consensus);
        self
    }
}

impl Actor for RepoService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SERVICE_MAILBOX);
    }
}

impl Handler<Inbound> for RepoService {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Inbound, _: &mut Context<Self>) -> Self::Result {
        let timer = self.metrics.repo_service.start();
        let repo = self.repo.clone();
        let metrics = self.metrics.clone();
        let consensus = self.consensus.clone();
        Box::pin(async move {
            let enc = msg.proto.encoding();
            let reply = match msg.proto {
                Proto::Block => serve_block(&repo, &msg.bytes).await,
                Proto::RepoJson | Proto::RepoMp => {
                    serve_repo(&repo, consensus.as_ref(), enc, &msg.bytes).await
                }
                Proto::ClusterJson | Proto::ClusterMp => match &consensus {
                    Some(c) => serve_cluster(c, enc, msg.peer, &msg.bytes).await,
                    None => Err(ErrorReply::new(
                        codes::UNAVAILABLE,
                        "this node takes no part in consensus",
                    )),
                },
            };
            let bytes = reply.unwrap_or_else(|e| {
                metrics.count_rejected(&e.error.code);
                encode(enc, &e).unwrap_or_default()
            });
            if let Some(swarm) = msg.reply_to.upgrade() {
                metrics.swarm_actor.enqueued();
                if swarm
                    .send(Respond {
                        key: msg.key,
                        bytes,
                    })
                    .await
                    .is_err()
                {
                    metrics.swarm_actor.dropped();
                }
            }
            drop(timer);
        })
    }
}

fn reply<T: Serialize>(enc: Encoding, v: &T) -> Result<Vec<u8>, ErrorReply> {
    encode(enc, v)
        .map_err(|e| ErrorReply::new(codes::UNAVAILABLE, format!("cannot encode reply: {e}")))
}

async fn serve_repo(
    repo: &StorageRepo,
    consensus: Option<&Consensus>,
    enc: Encoding,
    bytes: &[u8],
) -> Result<Vec<u8>, ErrorReply> {
    let (op, expiration) = decode_request(enc, bytes)?;
    let kind = op.kind();
    let tolerance = u64::try_from(CLOCK_SKEW_TOLERANCE.as_millis()).unwrap_or(u64::MAX);
    if let Some(deadline) = expiration.filter(|d| d.saturating_add(tolerance) < now_ms()) {
        return Err(ErrorReply::new(
            codes::EXPIRED,
            format!("expired at {deadline} ms"),
        ));
    }
    let result = match consensus {
        Some(c) => op.run(&c.coordinator).await,
        None => op.run(repo).await,
    };
    let result = match result {
        Err(e) if enc == Encoding::Json => super::seed_results::as_seed_result(kind, &e).ok_or(e),
        other => other,
    };
    reply(enc, &result?.wire())
}

async fn serve_cluster(
    consensus: &Consensus,
    enc: Encoding,
    sender: libp2p::PeerId,
    bytes: &[u8],
) -> Result<Vec<u8>, ErrorReply> {
    let req: ClusterRequest =
        decode(enc, bytes).map_err(|e| ErrorReply::new(codes::BAD_REQUEST, e))?;
    let members = &consensus.members;
    let need_record =
        || ErrorReply::new(codes::BAD_REQUEST, "this cluster operation needs a record");
    let result = match req.operation.as_str() {
        "update" => {
            let record = req.record.ok_or_else(need_record)?;
            members.update(record, &sender.to_string()).await
        }
        "query" => members.query(req.record.ok_or_else(need_record)?),
        "coordinate" => {
            let message = req
                .message
                .ok_or_else(|| ErrorReply::new(codes::BAD_REQUEST, "coordinate needs a message"))?;
            let op = message.operations.into_iter().next().ok_or_else(|| {
                ErrorReply::new(codes::BAD_REQUEST, "a repo message needs one operation")
            })?;
            let r = consensus.coordinator.coordinate_forwarded(op).await?;
            return reply(enc, &r.wire());
        }
        "configs" => {
            let regions = req.regions.unwrap_or_default();
            let configs = members.configs();
            let view: Vec<_> = regions
                .into_iter()
                .take(crate::model::REGIONS as usize)
                .map(|r| crate::model::RegionView {
                    region: r,
                    config: configs.config(r),
                })
                .collect();
            let ids: std::collections::BTreeSet<String> = view
                .iter()
                .filter_map(|v| v.config.as_ref())
                .flat_map(|c| c.members.iter().cloned())
                .collect();
            let peers = ids
                .into_iter()
                .filter_map(|id| Some((id.clone(), configs.peer(&id)?)))
                .collect();
            return reply(enc, &ConfigsReply { view, peers });
        }
        "store" => {
            // Taken only by a peer about to join a region's configuration, from a
            // member of it (docs/CONSENSUS.md, "Handing over").
            let archives = req.archives.unwrap_or_default();
            let exact = req.pending_exact;
            let regions: Vec<Region> = archives
                .iter()
                .map(|a| Region::of(&a.block_id))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let (from, configs) = (sender.to_string(), members.configs());
            consensus.coordinator.discover(&regions, &from).await;
            let me = configs.me().to_string();
            let (taken, others): (Vec<_>, Vec<_>) = archives.into_iter().partition(|a| {
                configs
                    .config(Region::of(&a.block_id))
                    .is_some_and(|c| c.members.contains(&from) && !c.members.contains(&me))
            });
            // Restored side by side, so their durable writes share syncs (a
            // restore adds revisions, so the order of two archives of one block
            // does not matter).
            let restores = taken
                .into_iter()
                .filter(|a| !a.revisions.is_empty() || (exact && !a.pending.is_empty()))
                .map(|a| consensus.repo.take_handed_over(a, exact));
            let done: Vec<_> = futures::stream::iter(restores)
                .buffer_unordered(STORE_RESTORES_AT_ONCE)
                .collect()
                .await;
            let stored = done.len();
            if let Some(Err(e)) = done.into_iter().find(Result::is_err) {
                return Err(e.into());
            }
            return reply(
                enc,
                &StoreReply {
                    stored,
                    refused: others.len(),
                },
            );
        }
        "heads" => {
            let regions = req.regions.unwrap_or_default();
            let (heads, more) = consensus
                .repo
                .heads_page(regions.into_iter().collect(), req.after, HEADS_PER_REPLY)
                .await?;
            return reply(enc, &HeadsReply { heads, more });
        }
        "blockHeads" => {
            let blocks = req.blocks.unwrap_or_default();
            if blocks.len() > HEADS_PER_REPLY {
                return Err(ErrorReply::new(
                    codes::BAD_REQUEST,
                    format!(
                        "blockHeads asks about {} blocks; at most {HEADS_PER_REPLY}",
                        blocks.len()
                    ),
                ));
            }
            let heads = consensus.repo.heads_of(blocks).await?;
            return reply(enc, &HeadsReply { heads, more: false });
        }
        "digests" => {
            let regions = req.regions.unwrap_or_default();
            let digests = consensus.repo.digests(regions.into_iter().collect()).await?;
            return reply(enc, &DigestsReply { digests });
        }
        other => {
            return Err(ErrorReply::new(
                codes::UNKNOWN_OPERATION,
                format!(
                    "unknown cluster operation {other:?}; expected update, query, coordinate, configs, store, heads, digests or blockHeads"
                ),
            ))
        }
    };
    match result {
        Ok(r) => reply(enc, &r),
        Err(e) => Err(ErrorReply::from(&e.to_failure())),
    }
}

async fn serve_block(repo: &StorageRepo, bytes: &[u8]) -> Result<Vec<u8>, ErrorReply> {
    let asks = match BlockAsk::decode(bytes).map_err(|e| ErrorReply::new(codes::BAD_REQUEST, e))? {
        BlockAsk::One(req) => {
            let archive = repo.archive(&req.block_id, req.rev).await?;
            return reply(Encoding::Json, &archive);
        }
        BlockAsk::Many(asks) => asks,
    };
    // One archive (or null) per block asked, in order, until the reply passes
    // its budget (docs/PROTOCOL.md, "Block transfer").
    let mut archives = futures::stream::iter(asks)
        .map(|a| async move { repo.archive(&a.block_id, a.rev).await })
        .buffered(ARCHIVES_LOADED_AT_ONCE);
    let mut out = vec![b'['];
    let mut first = true;
    while let Some(archive) = archives.next().await {
        let bytes = reply(Encoding::Json, &archive?)?;
        if !first && out.len() + bytes.len() > ARCHIVES_REPLY_BYTES {
            break;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&bytes);
    }
    out.push(b']');
    Ok(out)
}

/// The error reply for a repo failure.
pub fn repo_error(e: RepoError) -> ErrorReply {
    e.into()
}
