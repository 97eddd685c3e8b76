//! Restoration from the network: the callback the block layer calls when a
//! block must be restored or caught up, answered by asking peers over the block
//! protocol.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::model::{BlockArchive, BlockId, Rev};
use crate::net::{fetch_archive, NetClient};
use crate::storage::RestoreFn;

/// A restore callback that asks every connected peer serving the block protocol for
/// the block's archive, all at once, and keeps the best: one covering the revision
/// asked for (a node outside the block's cluster may hold only its latest revision,
/// as a cache), then the one reaching the highest revision (a peer that is itself
/// behind must not stand in for the cluster). `net` is filled in once the swarm runs
/// (the registry is built first).
pub fn restore_from_peers(net: Arc<OnceLock<NetClient>>, timeout: Duration) -> RestoreFn {
    Arc::new(move |block: BlockId, rev: Option<Rev>| {
        let net = net.clone();
        Box::pin(async move {
            let Some(net) = net.get().cloned() else {
                return Ok(None);
            };
            let status = net.status().await.map_err(|e| e.to_string())?;
            let answers = futures::future::join_all(
                status
                    .block_servers
                    .iter()
                    .map(|peer| fetch_archive(&net, *peer, Vec::new(), &block, rev, timeout)),
            )
            .await;
            let mut last_err = None;
            let mut best: Option<BlockArchive> = None;
            for (peer, answer) in status.block_servers.iter().zip(answers) {
                match answer {
                    // An archive without revisions carries only pending transactions
                    // (for a member applying an agreed commit): nothing to restore.
                    Ok(Some(a)) if a.block_id == block && !a.revisions.is_empty() => {
                        let rank = |a: &BlockArchive| {
                            let covers = rev.is_none_or(|r| a.range.start <= r);
                            (covers, a.revisions.last().map(|r| r.trx_rev.rev))
                        };
                        if best.as_ref().is_none_or(|b| rank(&a) > rank(b)) {
                            best = Some(a);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => last_err = Some(format!("{peer}: {e}")),
                }
            }
            match (best, last_err) {
                (Some(a), _) => Ok(Some(a)),
                (None, Some(e)) if rev.is_some() => Err(e),
                _ => Ok(None),
            }
        })
    })
}
