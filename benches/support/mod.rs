//! Shared by the benches that run nodes in-process: filling a node's own store
//! (with `optimystic::load`'s requests and lanes).

use optimystic::load::{self, drive, Counts, Slot, Txn, Until};
use optimystic::node::NodeHandle;
use optimystic_actors::model::{BlockId, PendResult, TrxId};

/// Stores `n` blocks named `{prefix}{i}`, each with a `payload`-byte field, on
/// `node` directly (its own store, no consensus), 64 in flight. The same call on
/// several nodes stores the same transactions: identical copies. A block that is
/// there already (anti-entropy brought it from a node filled first) is skipped.
pub(crate) async fn preload(node: &NodeHandle, n: usize, prefix: &str, payload: usize) {
    let repo = node.repo().local();
    let one = move |s: Slot| async move {
        let i = s.i;
        let id = BlockId::new(format!("{prefix}{i}")).unwrap();
        let trx = TrxId::new(format!("{prefix}t{i}")).unwrap();
        let block = load::block(&id, "T", "c", [("v", load::payload('x', payload))]).unwrap();
        let txn = Txn::insert(trx.clone(), block);
        let p = repo.pend(txn.pend).await.unwrap();
        if let PendResult::Stale(f) = &p {
            if f.missing.iter().flatten().any(|m| m.trx_id == trx) {
                return Ok(());
            }
        }
        assert!(p.is_success(), "{p:?}");
        let c = repo.commit(txn.commit).await.unwrap();
        assert!(c.is_success(), "{c:?}");
        Ok::<(), String>(())
    };
    drive(64, Until::Total(n as u64), &Counts::default(), one).await;
}
