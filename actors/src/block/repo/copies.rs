//! A block's whole copy: restoring it from a peer's archive, producing the
//! archive a restoring peer asks for, and dropping it after a hand-off.

use std::sync::Arc;

use super::StorageRepo;
use crate::block::actor::{BlockOp, Mode, Prepare};
use crate::model::{BlockId, Rev, TrxId, TrxRev};
use crate::storage::{BlockArchive, BlockStorage, RepoError};

impl StorageRepo {
    /// Stores a peer's archive of its block (`authoritative`: a majority of the
    /// block's cluster holds it, so a revision held here under another transaction
    /// is replaced; see `BlockStorage::plan_restore_with`). The block's latest
    /// revision afterwards.
    pub async fn restore(
        &self,
        archive: BlockArchive,
        authoritative: bool,
    ) -> Result<Option<TrxRev>, RepoError> {
        self.restore_as(archive, authoritative, false).await
    }

    /// Stores an archive handed over to this node before it joins the block's
    /// configuration (docs/CONSENSUS.md, "Handing over"): its revisions are
    /// added; with `pending_exact`, its pending transactions — those a majority
    /// of the configuration holds — become exactly this copy's, so one handed
    /// over by an earlier attempt and cancelled since does not linger.
    pub async fn take_handed_over(
        &self,
        archive: BlockArchive,
        pending_exact: bool,
    ) -> Result<Option<TrxRev>, RepoError> {
        self.restore_as(archive, false, pending_exact).await
    }

    async fn restore_as(
        &self,
        archive: BlockArchive,
        authoritative: bool,
        pending_exact: bool,
    ) -> Result<Option<TrxRev>, RepoError> {
        let id = archive.block_id.clone();
        let msg = Prepare {
            op: BlockOp::Restore {
                archive: Arc::new(archive),
                authoritative,
                pending_exact,
            },
            mode: Mode::Solo,
        };
        self.registry.call(&id, msg).await??;
        Ok(self.registry.raw().get_meta(&id)?.and_then(|m| m.latest))
    }

    /// Forgets this node's copy of `id` if it still ends at `expected` (`None`:
    /// it holds no revision) with exactly `pending` pending, those too (a
    /// hand-off; the caller checked that the block's configuration holds what
    /// this copy has committed). Whether the copy is gone.
    pub async fn drop_copy(
        &self,
        id: &BlockId,
        expected: Option<TrxRev>,
        pending: Vec<TrxId>,
    ) -> Result<bool, RepoError> {
        let msg = Prepare {
            op: BlockOp::Drop { expected, pending },
            mode: Mode::Solo,
        };
        self.registry.call(id, msg).await??;
        let raw = self.registry.raw();
        Ok(raw.get_meta(id)?.is_none() && raw.list_pending(id)?.is_empty())
    }

    /// The block's archive for a restoring peer: from `from`, or its latest revision.
    ///
    /// Read straight from storage (what is durable), not through the block's actor:
    /// that actor may itself be restoring the block from the asking peer, and two
    /// nodes restoring one block from each other would wait on each other.
    pub async fn archive(
        &self,
        id: &BlockId,
        from: Option<Rev>,
    ) -> Result<Option<BlockArchive>, RepoError> {
        let raw = self.registry.raw().clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || BlockStorage::load(id, raw)?.archive(from))
            .await
            .map_err(|e| RepoError::Unavailable(format!("archive task failed: {e}")))?
            .map_err(RepoError::from)
    }
}
