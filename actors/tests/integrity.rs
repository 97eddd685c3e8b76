//! Integrity on disk: a damaged record is detected by its checksum, counted,
//! never served, and repaired by restoration from a peer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use futures::FutureExt;
use optimystic_actors::block::{RegistryOptions, StorageRepo};
use optimystic_actors::model::*;
use optimystic_actors::storage::{RepoError, RestoreFn, StorageError, StorageKind};
use serde_json::json;

const PERSISTENT: [StorageKind; 2] = [StorageKind::File, StorageKind::Embedded];

fn open(kind: StorageKind, dir: &Path, restore: Option<RestoreFn>) -> StorageRepo {
    repo_restoring(kind, dir, restore, RegistryOptions::default())
}

/// A restore callback answering from `peer`'s archives, like a healthy replica.
fn restore_from(peer: StorageRepo) -> RestoreFn {
    let peer = Arc::new(peer);
    Arc::new(move |id: BlockId, from: Option<Rev>| {
        let peer = peer.clone();
        async move { peer.archive(&id, from).await.map_err(|e| e.to_string()) }.boxed()
    })
}

async fn history(repo: &StorageRepo) {
    write(repo, "t1", 1, insert(&["a"])).await;
    write(repo, "t2", 2, append(&["a"], json!("xx"))).await;
    write(repo, "t3", 3, append(&["a"], json!("yy"))).await;
}

async fn close(repo: StorageRepo) {
    let raw = repo.registry().raw().clone();
    repo.registry().shutdown();
    drop(repo);
    // The data dir lock goes with the last handle on the backend.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Arc::strong_count(&raw) > 1 {
        assert!(std::time::Instant::now() < deadline, "backend still held");
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Rewrites `"yy"` as `"zz"` in the stored record of `tag` (`b` materialized
/// block, `t` committed transform) of transaction t3 of block `a`: a change that
/// keeps the record well-formed, so only its checksum can reveal it.
fn damage(kind: StorageKind, dir: &Path, tag: u8) {
    match kind {
        StorageKind::File => {
            let sub = if tag == b'b' { "blocks" } else { "trx" };
            let path = dir.join("blocks/a").join(sub).join("t3.json");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("\"yy\""), "{text}");
            std::fs::write(&path, text.replace("\"yy\"", "\"zz\"")).unwrap();
        }
        StorageKind::Embedded => {
            let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
            let data = db
                .keyspace("data", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            let key = [b"a/".as_slice(), &[tag, b'/'], b"t3"].concat();
            let mut value = data.get(&key).unwrap().unwrap().to_vec();
            let at = value.windows(3).position(|w| w == b"\xa2yy").unwrap();
            value[at + 1..at + 3].copy_from_slice(b"zz");
            data.insert(&key, value).unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        StorageKind::Memory => unreachable!(),
    }
}

/// Writes the history on a store in `dir`, closes it, and returns block `a`'s items.
async fn stored_history(kind: StorageKind, dir: &Path) -> serde_json::Value {
    let repo = open(kind, dir, None);
    history(&repo).await;
    let want = items(&repo.get(gets(&["a"])).await.unwrap());
    close(repo).await;
    want
}

fn items(r: &GetBlockResults) -> serde_json::Value {
    r[&bid("a")].block.as_ref().unwrap().fields["items"].clone()
}

fn corrupt_reads(repo: &StorageRepo) -> u64 {
    repo.registry().raw().stats().corrupt.get()
}

#[actix_rt::test]
async fn a_damaged_materialization_is_rebuilt_from_the_transforms() {
    for kind in PERSISTENT {
        let dir = tempfile::tempdir().unwrap();
        let want = stored_history(kind, dir.path()).await;

        damage(kind, dir.path(), b'b');
        let repo = open(kind, dir.path(), None);
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(items(&r), want, "{kind}: served the damaged block");
        assert!(corrupt_reads(&repo) >= 1, "{kind}: damage not counted");
    }
}

#[actix_rt::test]
async fn a_damaged_history_is_refused_alone_and_repaired_from_a_peer() {
    for kind in PERSISTENT {
        let peer_dir = tempfile::tempdir().unwrap();
        let peer = open(StorageKind::Memory, peer_dir.path(), None);
        history(&peer).await;
        let dir = tempfile::tempdir().unwrap();
        let want = stored_history(kind, dir.path()).await;
        damage(kind, dir.path(), b'b');
        damage(kind, dir.path(), b't');

        // Alone, the node cannot rebuild the block: a clear error, and neither a
        // read nor a write goes through.
        let repo = open(kind, dir.path(), None);
        match repo.get(gets(&["a"])).await {
            Err(RepoError::Storage(StorageError::Corrupt { what, .. })) => {
                assert!(what.contains('a'), "{kind}: {what}")
            }
            other => panic!("{kind}: damaged block read gave {other:?}"),
        }
        let r = repo
            .pend(pend_req(
                "t4",
                Some(4),
                append(&["a"], json!("w")),
                PendPolicy::Continue,
            ))
            .await;
        assert!(
            r.is_err(),
            "{kind}: a write went through a damaged block: {r:?}"
        );
        assert!(corrupt_reads(&repo) >= 2, "{kind}: damage not counted");
        close(repo).await;

        // With a healthy peer, the read repairs the block and serves the truth.
        let repo = open(kind, dir.path(), Some(restore_from(peer)));
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(items(&r), want, "{kind}");
        assert_eq!(r[&bid("a")].state.latest.as_ref().unwrap().rev, 3);
        close(repo).await;

        // The repair is on disk: alone again, the node reads the block cleanly.
        let repo = open(kind, dir.path(), None);
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(items(&r), want, "{kind}: repair was not durable");
        assert_eq!(corrupt_reads(&repo), 0, "{kind}: damage left on disk");
        write(&repo, "t4", 4, append(&["a"], json!("w"))).await;
    }
}

#[actix_rt::test]
async fn a_truncated_record_is_damage_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(StorageKind::File, dir.path(), None);
    history(&repo).await;
    close(repo).await;
    let meta = dir.path().join("blocks/a/meta.json");
    let bytes = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, &bytes[..bytes.len() - 3]).unwrap();
    let repo = open(StorageKind::File, dir.path(), None);
    assert!(
        matches!(
            repo.get(gets(&["a"])).await,
            Err(RepoError::Storage(StorageError::Corrupt { .. }))
        ),
        "a truncated meta.json must not read as an unknown block"
    );
}

#[actix_rt::test]
async fn restoring_a_commit_drops_its_pending_record() {
    for kind in PERSISTENT {
        let peer_dir = tempfile::tempdir().unwrap();
        let peer = open(StorageKind::Memory, peer_dir.path(), None);
        write(&peer, "t1", 1, insert(&["a"])).await;
        let dir = tempfile::tempdir().unwrap();
        let repo = open(kind, dir.path(), None);
        write(&repo, "t1", 1, insert(&["a"])).await;
        // This node pended t2 but missed its commit; the peer committed it.
        let t2 = append(&["a"], json!("v"));
        let p = repo
            .pend(pend_req("t2", Some(2), t2.clone(), PendPolicy::Fail))
            .await
            .unwrap();
        assert!(p.is_success());
        write(&peer, "t2", 2, t2).await;
        close(repo).await;

        let repo = open(kind, dir.path(), Some(restore_from(peer)));
        let ctx = TrxContext {
            committed: vec![],
            rev: 2,
            trx_id: None,
        };
        let r = repo
            .get(BlockGets {
                block_ids: vec![bid("a")],
                context: Some(ctx),
                consistency: None,
            })
            .await
            .unwrap();
        assert_eq!(r[&bid("a")].state.latest.as_ref().unwrap().rev, 2, "{kind}");
        assert_eq!(r[&bid("a")].state.pendings, None, "{kind}");
        close(repo).await;
        // Reloaded from disk: still committed only, not pending as well.
        let repo = open(kind, dir.path(), None);
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(
            r[&bid("a")].state.pendings,
            None,
            "{kind}: the restored commit came back as pending"
        );
    }
}
