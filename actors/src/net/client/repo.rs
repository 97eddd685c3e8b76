//! [`RepoClient`]: the repo API of a remote node over the repo protocol
//! (MessagePack preferred, JSON when the peer lacks it), also as a [`Repo`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::{Multiaddr, PeerId};
use serde::de::DeserializeOwned;

use super::NetClient;
use crate::model::now_ms;
use crate::model::{
    codes, BlockGets, CancelOperation, CancelReply, CommitRequest, CommitResult, GetBlockResults,
    PendCommitRequest, PendCommitResult, PendRequest, PendResult, Repo, RepoError, RepoMessage,
    RepoOperation, TrxBlocks,
};
use crate::net::behaviour::Proto;
use crate::net::wire::{decode_reply, encode};
use crate::net::NetError;

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
            Err(NetError::Remote { code, .. }) if code == crate::net::codes::UNKNOWN_OPERATION => {}
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
