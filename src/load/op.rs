//! One operation of a load on a node over the network (a [`RepoClient`]): a write
//! as one pendCommit or as a pend then a commit, or a read; a failure is named by
//! its kind, the names the bench's error counts use.

use optimystic_actors::model::{BlockId, GetBlockResults};
use optimystic_actors::net::{NetError, RepoClient};

use super::requests::{gets, Txn};

/// The kind of a write the node refused (a stale pend or a lost commit).
pub const STALE: &str = "stale";

/// The kind of a failure: the remote's error code, `timeout`,
/// `connection_closed`, `dial`, else the error's text up to its first `:`.
pub fn kind(e: &NetError) -> String {
    match e {
        NetError::Remote { code, .. } => code.clone(),
        NetError::Timeout => "timeout".into(),
        NetError::ConnectionClosed => "connection_closed".into(),
        NetError::Dial(_) => "dial".into(),
        other => format!("{other}")
            .split(':')
            .next()
            .unwrap_or("other")
            .to_string(),
    }
}

/// Writes `txn`: one pendCommit with `one_round`, else a pend then a commit, and
/// a cancel of the pend when the commit is refused. `Err` is [`STALE`] when the
/// node refused the write, else the failure's [`kind`].
pub async fn write(c: &RepoClient, txn: Txn, one_round: bool) -> Result<(), String> {
    if one_round {
        let r = c.pend_commit(txn.one_round()).await.map_err(|e| kind(&e))?;
        return if r.is_success() {
            Ok(())
        } else {
            Err(STALE.into())
        };
    }
    let trx_ref = txn.blocks();
    let p = c.pend(txn.pend).await.map_err(|e| kind(&e))?;
    if !p.is_success() {
        return Err(STALE.into());
    }
    let r = c.commit(txn.commit).await.map_err(|e| kind(&e))?;
    if !r.is_success() {
        // Leave nothing pending behind a lost race.
        c.cancel(trx_ref).await.map_err(|e| kind(&e))?;
        return Err(STALE.into());
    }
    Ok(())
}

/// Reads block `id`; `Err` is the failure's [`kind`].
pub async fn read(c: &RepoClient, id: BlockId) -> Result<GetBlockResults, String> {
    c.get(gets(id)).await.map_err(|e| kind(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_by_kind() {
        let remote = NetError::Remote {
            code: "conflict".into(),
            message: "pending: t1".into(),
        };
        assert_eq!(kind(&remote), "conflict");
        assert_eq!(kind(&NetError::Timeout), "timeout");
        assert_eq!(kind(&NetError::ConnectionClosed), "connection_closed");
        assert_eq!(kind(&NetError::Dial("refused".into())), "dial");
        assert_eq!(kind(&NetError::Io("broken pipe".into())), "stream i/o");
        assert_eq!(kind(&NetError::Stopped), "network actor stopped");
    }
}
