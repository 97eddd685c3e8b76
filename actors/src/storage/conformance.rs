//! One conformance suite run against every backend: each record kind round-trips,
//! listings are sorted and filtered, and (for the durable ones) everything survives
//! a reopen and the data dir is exclusive.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::model::{Block, BlockId, Transform, TrxId, TrxRev};

fn b(s: &str) -> BlockId {
    BlockId::new(s).unwrap()
}
fn t(s: &str) -> TrxId {
    TrxId::new(s).unwrap()
}

fn sample_block(id: &str) -> Block {
    serde_json::from_value(json!({
        "header": {"id": id, "type": "T", "collectionId": "c"},
        "v": [1, 2.5, "x", null, {"k": true}]
    }))
    .unwrap()
}

fn sample_transform(id: &str) -> Transform {
    Transform {
        insert: Some(sample_block(id)),
        ..Transform::default()
    }
}

async fn exercise(raw: &dyn RawStorage) {
    let (b1, b2) = (b("blk-1"), b("blk-2"));
    assert_eq!(raw.get_meta(&b1).unwrap(), None);
    assert_eq!(raw.list_pending(&b1).unwrap(), Vec::<TrxId>::new());
    let tf = Arc::new(sample_transform("blk-1"));
    let meta = BlockMeta {
        ranges: vec![RevRange::ALL],
        latest: Some(TrxRev {
            trx_id: t("t2"),
            rev: 7,
        }),
    };
    raw.write(vec![
        WriteOp::PutPending {
            block: b1.clone(),
            trx: t("t3"),
            transform: tf.clone(),
        },
        WriteOp::PutPending {
            block: b1.clone(),
            trx: t("t1"),
            transform: tf.clone(),
        },
        WriteOp::PutPending {
            block: b2.clone(),
            trx: t("t9"),
            transform: tf.clone(),
        },
        WriteOp::PutTransaction {
            block: b1.clone(),
            trx: t("t2"),
            transform: tf.clone(),
        },
        WriteOp::PutMaterialized {
            block: b1.clone(),
            trx: t("t2"),
            value: Some(Arc::new(sample_block("blk-1"))),
        },
        WriteOp::PutMaterialized {
            block: b1.clone(),
            trx: t("t4"),
            value: None,
        },
        WriteOp::PutRevision {
            block: b1.clone(),
            rev: 7,
            trx: t("t2"),
        },
        WriteOp::PutRevision {
            block: b1.clone(),
            rev: 300,
            trx: t("t4"),
        },
        WriteOp::PutRevision {
            block: b1.clone(),
            rev: 2,
            trx: t("t0"),
        },
        WriteOp::PutMeta {
            block: b1.clone(),
            meta: meta.clone(),
        },
    ])
    .await
    .unwrap();
    assert_eq!(raw.get_meta(&b1).unwrap(), Some(meta));
    assert_eq!(raw.list_pending(&b1).unwrap(), vec![t("t1"), t("t3")]);
    assert_eq!(raw.list_pending(&b2).unwrap(), vec![t("t9")]);
    assert_eq!(raw.get_pending(&b1, &t("t1")).unwrap().as_ref(), Some(&*tf));
    assert_eq!(
        raw.get_transaction(&b1, &t("t2")).unwrap().as_ref(),
        Some(&*tf)
    );
    assert_eq!(raw.get_transaction(&b1, &t("t1")).unwrap(), None);
    assert_eq!(
        raw.get_materialized(&b1, &t("t2")).unwrap(),
        Some(Some(sample_block("blk-1")))
    );
    assert_eq!(raw.get_materialized(&b1, &t("t4")).unwrap(), Some(None));
    assert_eq!(raw.get_materialized(&b1, &t("t5")).unwrap(), None);
    assert_eq!(raw.get_revision(&b1, 7).unwrap(), Some(t("t2")));
    assert_eq!(raw.get_revision(&b1, 8).unwrap(), None);
    let revs: Vec<_> = raw
        .list_revisions(&b1, 2, 300)
        .unwrap()
        .into_iter()
        .map(|r| r.rev)
        .collect();
    assert_eq!(revs, vec![2, 7, 300]);
    let revs: Vec<_> = raw
        .list_revisions(&b1, 3, 299)
        .unwrap()
        .into_iter()
        .map(|r| r.rev)
        .collect();
    assert_eq!(revs, vec![7]);
    assert!(raw.list_revisions(&b1, 9, 3).unwrap().is_empty());
    raw.write(vec![WriteOp::DeletePending {
        block: b1.clone(),
        trx: t("t3"),
    }])
    .await
    .unwrap();
    raw.write(vec![WriteOp::DeletePending {
        block: b1.clone(),
        trx: t("never"),
    }])
    .await
    .unwrap();
    assert_eq!(raw.list_pending(&b1).unwrap(), vec![t("t1")]);
    assert_eq!(raw.block_count().unwrap(), 1);
}

/// A block written whole, then forgotten whole (a hand-off's batch): nothing
/// of it is left, and the other blocks are untouched.
async fn forget(raw: &dyn RawStorage) {
    let gone = b("gone-1");
    let tf = Arc::new(sample_transform("gone-1"));
    let meta = BlockMeta {
        ranges: vec![RevRange::ALL],
        latest: Some(TrxRev {
            trx_id: t("g1"),
            rev: 1,
        }),
    };
    let before = raw.list_blocks().unwrap().len();
    raw.write(vec![
        WriteOp::PutTransaction {
            block: gone.clone(),
            trx: t("g1"),
            transform: tf.clone(),
        },
        WriteOp::PutMaterialized {
            block: gone.clone(),
            trx: t("g1"),
            value: Some(Arc::new(sample_block("gone-1"))),
        },
        WriteOp::PutRevision {
            block: gone.clone(),
            rev: 1,
            trx: t("g1"),
        },
        WriteOp::PutMeta {
            block: gone.clone(),
            meta,
        },
    ])
    .await
    .unwrap();
    assert_eq!(raw.list_blocks().unwrap().len(), before + 1);
    raw.write(vec![
        WriteOp::DeleteMeta {
            block: gone.clone(),
        },
        WriteOp::DeleteRevision {
            block: gone.clone(),
            rev: 1,
        },
        WriteOp::DeleteTransaction {
            block: gone.clone(),
            trx: t("g1"),
        },
        WriteOp::DeleteMaterialized {
            block: gone.clone(),
            trx: t("g1"),
        },
    ])
    .await
    .unwrap();
    assert_eq!(raw.get_meta(&gone).unwrap(), None);
    assert_eq!(raw.get_revision(&gone, 1).unwrap(), None);
    assert_eq!(raw.get_transaction(&gone, &t("g1")).unwrap(), None);
    assert_eq!(raw.get_materialized(&gone, &t("g1")).unwrap(), None);
    assert!(!raw.list_blocks().unwrap().contains(&gone));
    assert_eq!(raw.list_blocks().unwrap().len(), before);
}

fn check_reopened(raw: &dyn RawStorage) {
    let b1 = b("blk-1");
    assert_eq!(raw.list_pending(&b1).unwrap(), vec![t("t1")]);
    assert_eq!(raw.get_revision(&b1, 300).unwrap(), Some(t("t4")));
    assert_eq!(
        raw.get_meta(&b1)
            .unwrap()
            .and_then(|m| m.latest)
            .map(|l| l.rev),
        Some(7)
    );
}

#[tokio::test]
async fn memory_conforms() {
    let raw = MemoryRawStorage::default();
    exercise(&raw).await;
    forget(&raw).await;
}

#[tokio::test]
async fn file_conforms_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let raw = FileRawStorage::open(dir.path()).unwrap();
        exercise(&raw).await;
        forget(&raw).await;
        assert!(
            !dir.path().join("blocks/gone-1").exists(),
            "a forgotten block's directory goes"
        );
        assert!(matches!(
            FileRawStorage::open(dir.path()),
            Err(StorageError::InUse(_))
        ));
    }
    check_reopened(&FileRawStorage::open(dir.path()).unwrap());
    let layout = dir.path().join("blocks/blk-1");
    for f in [
        "meta.json",
        "revs/7.json",
        "pend/t1.json",
        "trx/t2.json",
        "blocks/t2.json",
    ] {
        assert!(layout.join(f).is_file(), "{f} missing");
    }
}

#[tokio::test]
async fn embedded_conforms_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let raw = EmbeddedRawStorage::open(dir.path(), EmbeddedOptions::default()).unwrap();
        exercise(&raw).await;
        forget(&raw).await;
        assert!(matches!(
            EmbeddedRawStorage::open(dir.path(), EmbeddedOptions::default()),
            Err(StorageError::InUse(_))
        ));
    }
    check_reopened(&EmbeddedRawStorage::open(dir.path(), EmbeddedOptions::default()).unwrap());
}

#[tokio::test]
async fn embedded_group_commit_answers_every_writer() {
    let dir = tempfile::tempdir().unwrap();
    let raw = Arc::new(EmbeddedRawStorage::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let writes = (0..200).map(|i| {
        raw.write(vec![WriteOp::PutRevision {
            block: b(&format!("g{i}")),
            rev: 1,
            trx: t("x"),
        }])
    });
    for r in futures::future::join_all(writes).await {
        r.unwrap();
    }
    for i in 0..200 {
        assert_eq!(
            raw.get_revision(&b(&format!("g{i}")), 1).unwrap(),
            Some(t("x"))
        );
    }
}

#[tokio::test]
async fn file_rejects_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let raw = FileRawStorage::open(dir.path()).unwrap();
    raw.write(vec![WriteOp::PutMeta {
        block: b("c1"),
        meta: BlockMeta::default(),
    }])
    .await
    .unwrap();
    std::fs::write(dir.path().join("blocks/c1/meta.json"), b"{\"ranges\": [[1,").unwrap();
    assert!(matches!(
        raw.get_meta(&b("c1")),
        Err(StorageError::Corrupt { .. })
    ));
}
