//! Where watchers read a block's history ([`optimystic_actors::watch`]): a
//! node's own repo — reads through the node as clients read, so a node outside
//! the block's configuration brings its copy up to date from the members — or a
//! remote node over the repo and block protocols (`optimystic repo --peer …
//! watch`).

use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::{Multiaddr, PeerId};
use optimystic_actors::block::StorageRepo;
use optimystic_actors::model::{
    Block, BlockGets, BlockId, Repo, RepoError, Rev, TrxContext, TrxRev,
};
use optimystic_actors::net::{fetch_archive, NetClient, RepoClient};
use optimystic_actors::watch::History;

/// The latest revision of `id` through `repo`.
async fn latest_of<R: Repo + ?Sized>(repo: &R, id: &BlockId) -> Result<Option<TrxRev>, RepoError> {
    let gets = BlockGets {
        block_ids: vec![id.clone()],
        context: None,
        consistency: None,
    };
    Ok(repo
        .get(gets)
        .await?
        .remove(id)
        .and_then(|r| r.state.latest))
}

/// `id` as of revision `rev` through `repo`.
async fn block_at<R: Repo + ?Sized>(
    repo: &R,
    id: &BlockId,
    rev: Rev,
) -> Result<Option<Block>, RepoError> {
    let gets = BlockGets {
        block_ids: vec![id.clone()],
        context: Some(TrxContext {
            committed: Vec::new(),
            rev,
            trx_id: None,
        }),
        consistency: None,
    };
    Ok(repo.get(gets).await?.remove(id).and_then(|r| r.block))
}

/// The revisions an archive lists (none without an archive).
fn revisions(archive: Option<optimystic_actors::storage::BlockArchive>) -> Vec<TrxRev> {
    archive
        .map(|a| a.revisions.into_iter().map(|r| r.trx_rev).collect())
        .unwrap_or_default()
}

/// A node's history of its blocks: reads through the node (`reads`, its repo as
/// clients use it), revisions from its own copy (`local`).
pub struct NodeHistory<R> {
    /// The node's repo.
    pub reads: R,
    /// The node's own store.
    pub local: StorageRepo,
}

impl<R: Repo> History for NodeHistory<R> {
    fn latest<'a>(&'a self, id: &'a BlockId) -> BoxFuture<'a, Result<Option<TrxRev>, RepoError>> {
        Box::pin(latest_of(&self.reads, id))
    }

    fn after<'a>(
        &'a self,
        id: &'a BlockId,
        after: Rev,
    ) -> BoxFuture<'a, Result<Vec<TrxRev>, RepoError>> {
        Box::pin(async move { Ok(revisions(self.local.archive(id, Some(after + 1)).await?)) })
    }

    fn block_at<'a>(
        &'a self,
        id: &'a BlockId,
        rev: Rev,
    ) -> BoxFuture<'a, Result<Option<Block>, RepoError>> {
        Box::pin(block_at(&self.reads, id, rev))
    }
}

/// A remote node's history: reads on its repo protocol, revisions from the
/// archive its block protocol serves.
pub struct RemoteHistory {
    /// The node's repo.
    pub client: RepoClient,
    /// The network the client uses.
    pub net: NetClient,
    /// The node.
    pub peer: PeerId,
    /// Its addresses.
    pub addrs: Vec<Multiaddr>,
    /// Deadline of each request.
    pub timeout: Duration,
}

impl History for RemoteHistory {
    fn latest<'a>(&'a self, id: &'a BlockId) -> BoxFuture<'a, Result<Option<TrxRev>, RepoError>> {
        Box::pin(latest_of(&self.client, id))
    }

    fn after<'a>(
        &'a self,
        id: &'a BlockId,
        after: Rev,
    ) -> BoxFuture<'a, Result<Vec<TrxRev>, RepoError>> {
        Box::pin(async move {
            let archive = fetch_archive(
                &self.net,
                self.peer,
                self.addrs.clone(),
                id,
                Some(after + 1),
                self.timeout,
            )
            .await?;
            Ok(revisions(archive))
        })
    }

    fn block_at<'a>(
        &'a self,
        id: &'a BlockId,
        rev: Rev,
    ) -> BoxFuture<'a, Result<Option<Block>, RepoError>> {
        Box::pin(block_at(&self.client, id, rev))
    }
}
