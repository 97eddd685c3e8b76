//! Shared by the benches that run nodes in-process: filling a node's own store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::join_all;
use optimystic::node::NodeHandle;
use optimystic_actors::model::*;
use serde_json::json;

/// Stores `n` blocks named `{prefix}{i}`, each with a `payload`-byte field, on
/// `node` directly (its own store, no consensus), 64 in flight. The same call on
/// several nodes stores the same transactions: identical copies. A block that is
/// there already (anti-entropy brought it from a node filled first) is skipped.
pub(crate) async fn preload(node: &NodeHandle, n: usize, prefix: &str, payload: usize) {
    let repo = node.repo().local().clone();
    let next = Arc::new(AtomicUsize::new(0));
    join_all((0..64).map(|_| {
        let (repo, next) = (repo.clone(), next.clone());
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let id = BlockId::new(format!("{prefix}{i}")).unwrap();
                let trx = TrxId::new(format!("{prefix}t{i}")).unwrap();
                let block = serde_json::from_value(json!({
                    "header": {"id": id, "type": "T", "collectionId": "c"},
                    "v": "x".repeat(payload)
                }))
                .unwrap();
                let p = repo
                    .pend(PendRequest {
                        trx_id: trx.clone(),
                        rev: Some(1),
                        transforms: Transforms {
                            inserts: Some([(id.clone(), block)].into()),
                            ..Transforms::default()
                        },
                        policy: PendPolicy::Fail,
                    })
                    .await
                    .unwrap();
                if let PendResult::Stale(f) = &p {
                    if f.missing.iter().flatten().any(|m| m.trx_id == trx) {
                        continue;
                    }
                }
                assert!(p.is_success(), "{p:?}");
                let c = repo
                    .commit(CommitRequest {
                        trx_id: trx,
                        block_ids: vec![id],
                        rev: 1,
                        header_id: None,
                        tail_id: None,
                    })
                    .await
                    .unwrap();
                assert!(c.is_success(), "{c:?}");
            }
        }
    }))
    .await;
}
