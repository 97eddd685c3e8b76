//! Running one operation per block: solo for a single block, else the joint
//! protocol (prepare each in sorted order, write one batch, apply or release).

use super::StorageRepo;
use crate::block::actor::{BlockOp, Decision, Mode, Prepare, Prepared};
use crate::block::registry::BlockRegistry;
use crate::model::BlockId;
use crate::storage::RepoError;

impl StorageRepo {
    /// Runs one operation per block: solo for one block, else prepare-all in
    /// sorted order, decide with `go`, write one batch, apply or release.
    pub(super) async fn run(
        &self,
        ops: Vec<(BlockId, BlockOp)>,
        go: impl FnOnce(&[Prepared]) -> bool + Send + 'static,
    ) -> Result<Vec<Prepared>, RepoError> {
        if let [(id, op)] = ops.as_slice() {
            let msg = Prepare {
                op: op.clone(),
                mode: Mode::Solo,
            };
            return Ok(vec![self.registry.call(id, msg).await??]);
        }
        // Spawned so that a caller giving up cannot stop it between the write and
        // the decision; the blocks are held only for the task's duration.
        let registry = self.registry.clone();
        let task = actix_rt::spawn(joint(registry, ops, go));
        task.await
            .map_err(|e| RepoError::Unavailable(format!("joint write task failed: {e}")))?
    }
}

async fn joint(
    registry: BlockRegistry,
    ops: Vec<(BlockId, BlockOp)>,
    go: impl FnOnce(&[Prepared]) -> bool,
) -> Result<Vec<Prepared>, RepoError> {
    let mut prepared = Vec::with_capacity(ops.len());
    let mut failure = None;
    for (id, op) in ops {
        let msg = Prepare {
            op,
            mode: Mode::Joint,
        };
        match registry.call(&id, msg).await {
            Ok(Ok(p)) => prepared.push(p),
            Ok(Err(e)) | Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let stale = prepared.iter().any(|p| !p.missing.is_empty());
    // A stale request is answered as stale even if another block failed (the
    // requester must catch up first); a stale commit inside a pendCommit is not
    // that kind of staleness: the pend's error comes first.
    let behind = prepared
        .iter()
        .any(|p| !p.missing.is_empty() && !p.commit_stale);
    let holds: Vec<_> = prepared.iter_mut().filter_map(|p| p.hold.take()).collect();
    if let Some(e) = failure.filter(|_| !behind) {
        decide(holds, Decision::Release);
        return Err(e);
    }
    if stale || !go(&prepared) {
        decide(holds, Decision::Release);
        return Ok(prepared);
    }
    let batch: Vec<_> = prepared
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.ops))
        .collect();
    if !batch.is_empty() {
        if let Err(e) = registry.raw().write(batch).await {
            // Dropping the holds makes each block reload what is really on disk.
            drop(holds);
            return Err(e.into());
        }
    }
    decide(holds, Decision::Apply);
    Ok(prepared)
}

fn decide(holds: Vec<tokio::sync::oneshot::Sender<Decision>>, d: Decision) {
    for h in holds {
        // A block whose actor is gone reloads from disk anyway.
        let _ = h.send(d);
    }
}
