//! Helpers shared by the engine's integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::Path;
use std::sync::Arc;

use optimystic_actors::block::{BlockRegistry, RegistryOptions, StorageRepo};
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::model::*;
use optimystic_actors::storage::{open_storage, StorageKind};
use serde_json::json;

pub const KINDS: [StorageKind; 3] = [
    StorageKind::Memory,
    StorageKind::File,
    StorageKind::Embedded,
];

pub fn repo(kind: StorageKind, dir: &Path) -> StorageRepo {
    repo_with(kind, dir, RegistryOptions::default())
}

pub fn repo_on(raw: std::sync::Arc<dyn optimystic_actors::storage::RawStorage>) -> StorageRepo {
    let registry = BlockRegistry::start(
        raw,
        Arc::new(EngineMetrics::default()),
        None,
        RegistryOptions::default(),
    )
    .unwrap();
    StorageRepo::new(registry)
}

pub fn repo_with(kind: StorageKind, dir: &Path, opts: RegistryOptions) -> StorageRepo {
    repo_restoring(kind, dir, None, opts)
}

/// A repo whose blocks restore through `restore` when missing or behind.
pub fn repo_restoring(
    kind: StorageKind,
    dir: &Path,
    restore: Option<optimystic_actors::storage::RestoreFn>,
    opts: RegistryOptions,
) -> StorageRepo {
    let raw = open_storage(kind, dir).unwrap();
    let registry =
        BlockRegistry::start(raw, Arc::new(EngineMetrics::default()), restore, opts).unwrap();
    StorageRepo::new(registry)
}

pub fn bid(s: &str) -> BlockId {
    BlockId::new(s).unwrap()
}

pub fn tid(s: &str) -> TrxId {
    TrxId::new(s).unwrap()
}

pub fn block(id: &str, items: serde_json::Value) -> Block {
    serde_json::from_value(json!({
        "header": {"id": id, "type": "T", "collectionId": "coll"},
        "items": items
    }))
    .unwrap()
}

pub fn insert(ids: &[&str]) -> Transforms {
    Transforms {
        inserts: Some(ids.iter().map(|i| (bid(i), block(i, json!([])))).collect()),
        ..Transforms::default()
    }
}

pub fn append(ids: &[&str], value: serde_json::Value) -> Transforms {
    Transforms {
        updates: Some(
            ids.iter()
                .map(|i| {
                    let op = BlockOperation {
                        entity: "items".into(),
                        index: 0,
                        delete_count: 0,
                        inserted: json!([value.clone()]),
                    };
                    (bid(i), vec![op])
                })
                .collect(),
        ),
        ..Transforms::default()
    }
}

pub fn pend_req(
    trx: &str,
    rev: Option<Rev>,
    transforms: Transforms,
    policy: PendPolicy,
) -> PendRequest {
    PendRequest {
        trx_id: tid(trx),
        rev,
        transforms,
        policy,
    }
}

pub fn commit_req(trx: &str, ids: &[&str], rev: Rev) -> CommitRequest {
    CommitRequest {
        trx_id: tid(trx),
        block_ids: ids.iter().map(|i| bid(i)).collect(),
        rev,
        header_id: None,
        tail_id: None,
    }
}

pub fn gets(ids: &[&str]) -> BlockGets {
    BlockGets {
        block_ids: ids.iter().map(|i| bid(i)).collect(),
        context: None,
        consistency: None,
    }
}

/// Pends and commits `transforms` as `trx` at `rev`, asserting success.
pub async fn write(repo: &StorageRepo, trx: &str, rev: Rev, transforms: Transforms) {
    let ids: Vec<String> = transforms
        .block_ids()
        .into_iter()
        .map(String::from)
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let p = repo
        .pend(pend_req(trx, Some(rev), transforms, PendPolicy::Fail))
        .await
        .unwrap();
    assert!(p.is_success(), "pend {trx}: {p:?}");
    let c = repo.commit(commit_req(trx, &ids, rev)).await.unwrap();
    assert!(c.is_success(), "commit {trx}: {c:?}");
}
