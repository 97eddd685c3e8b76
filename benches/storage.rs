//! Criterion benches of the local engine through StorageRepo (durable: every reply
//! comes after fsync). Figures and reproduce commands: docs/BENCHMARKS.md.
//!
//! `cargo bench --bench storage`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::future::join_all;
use optimystic::engine::block::{RegistryOptions, StorageRepo};
use optimystic::engine::model::*;
use optimystic::engine::storage::StorageKind;
use optimystic::local::open_repo;
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn id(prefix: &str) -> String {
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn insert_of(name: &str) -> Transforms {
    let block: Block = serde_json::from_value(json!({
        "header": {"id": name, "type": "T", "collectionId": "bench"},
        "items": [1, 2, 3], "payload": "x".repeat(200)
    }))
    .unwrap();
    Transforms {
        inserts: Some([(BlockId::new(name).unwrap(), block)].into()),
        ..Transforms::default()
    }
}

/// One single-block transaction: pend an insert of a new block, commit it;
/// returns the block.
async fn pend_commit(repo: &StorageRepo) -> BlockId {
    let name = id("b");
    let trx = TrxId::new(id("t")).unwrap();
    let p = repo
        .pend(PendRequest {
            trx_id: trx.clone(),
            rev: Some(1),
            transforms: insert_of(&name),
            policy: PendPolicy::Fail,
        })
        .await
        .unwrap();
    assert!(p.is_success());
    let block = BlockId::new(name).unwrap();
    let c = repo
        .commit(CommitRequest {
            trx_id: trx,
            block_ids: vec![block.clone()],
            rev: 1,
            header_id: None,
            tail_id: None,
        })
        .await
        .unwrap();
    assert!(c.is_success());
    block
}

fn writes(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let mut g = c.benchmark_group("pend_commit");
    g.measurement_time(Duration::from_secs(8));
    for kind in [StorageKind::Embedded, StorageKind::File] {
        let dir = tempfile::tempdir().unwrap();
        let repo = system
            .block_on(async { open_repo(kind, dir.path(), RegistryOptions::default()).unwrap() });
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{kind}/sequential"), |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        pend_commit(&repo).await;
                    }
                    start.elapsed()
                })
            })
        });
        if kind == StorageKind::Embedded {
            g.throughput(Throughput::Elements(64));
            g.bench_function(format!("{kind}/64_in_flight"), |b| {
                b.iter_custom(|iters| {
                    system.block_on(async {
                        let start = Instant::now();
                        let lanes = (0..64).map(|_| {
                            let repo = repo.clone();
                            async move {
                                for _ in 0..iters {
                                    pend_commit(&repo).await;
                                }
                            }
                        });
                        join_all(lanes).await;
                        start.elapsed()
                    })
                })
            });
        }
        system.block_on(async { repo.registry().shutdown() });
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    const STORED: usize = 100_000;
    let system = actix_rt::System::new();
    let dir = tempfile::tempdir().unwrap();
    let repo = system.block_on(async {
        let repo = open_repo(
            StorageKind::Embedded,
            dir.path(),
            RegistryOptions::default(),
        )
        .unwrap();
        let lanes = (0..64).map(|lane| {
            let repo = repo.clone();
            async move {
                let mut stored = Vec::new();
                for _ in (lane..STORED).step_by(64) {
                    stored.push(pend_commit(&repo).await);
                }
                stored
            }
        });
        let names: Vec<BlockId> = join_all(lanes).await.into_iter().flatten().collect();
        (repo, names)
    });
    let (repo, names) = repo;
    assert_eq!(names.len(), STORED);
    let mut g = c.benchmark_group("get_latest");
    g.throughput(Throughput::Elements(8));
    g.bench_function("embedded/100k_blocks/8_in_flight", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                let lanes = (0..8u64).map(|lane| {
                    let (repo, names) = (repo.clone(), &names);
                    async move {
                        let mut x = 0x2545_F491_4F6C_DD1D ^ (lane + 1);
                        for _ in 0..iters {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let id = names[(x % names.len() as u64) as usize].clone();
                            let got = repo
                                .get(BlockGets {
                                    block_ids: vec![id.clone()],
                                    context: None,
                                    consistency: None,
                                })
                                .await
                                .unwrap();
                            // Every read finds its block: the figure is of hits.
                            assert!(got[&id].block.is_some(), "{id} not found");
                        }
                    }
                });
                join_all(lanes).await;
                start.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, writes, reads);
criterion_main!(benches);
