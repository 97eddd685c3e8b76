//! How the engine scales with stored blocks: loads N blocks (pend + commit, 64 in
//! flight, embedded backend, max live actors 10,000), then measures random
//! get-latest latency with 8 in flight and the process RSS.
//!
//! `cargo bench --bench scale -- 10000` and `cargo bench --bench scale -- 1000000`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use optimystic::engine::block::RegistryOptions;
use optimystic::engine::model::*;
use optimystic::engine::storage::StorageKind;
use optimystic::local::open_repo;
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let system = actix_rt::System::new();
    system.block_on(async {
        let opts = RegistryOptions {
            max_live: 10_000,
            ..RegistryOptions::default()
        };
        let repo = open_repo(StorageKind::Embedded, dir.path(), opts).unwrap();
        let next = AtomicU64::new(0);
        let start = Instant::now();
        let lanes = (0..64).map(|_| {
            let (repo, next) = (repo.clone(), &next);
            async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let id = BlockId::new(format!("s{i}")).unwrap();
                    let block: Block = serde_json::from_value(json!({
                        "header": {"id": id, "type": "T", "collectionId": "scale"},
                        "items": [i], "payload": "y".repeat(200)
                    }))
                    .unwrap();
                    let trx = TrxId::new(format!("t{i}")).unwrap();
                    let transforms = Transforms {
                        inserts: Some([(id.clone(), block)].into()),
                        ..Transforms::default()
                    };
                    let p = repo.pend(PendRequest {
                        trx_id: trx.clone(),
                        rev: Some(1),
                        transforms,
                        policy: PendPolicy::Fail,
                    });
                    assert!(p.await.unwrap().is_success());
                    let c = CommitRequest {
                        trx_id: trx,
                        block_ids: vec![id],
                        rev: 1,
                        header_id: None,
                        tail_id: None,
                    };
                    assert!(repo.commit(c).await.unwrap().is_success());
                }
            }
        });
        join_all(lanes).await;
        let load = start.elapsed();
        println!(
            "loaded {n} blocks in {load:.1?} ({:.0} txn/s), rss {:.0} MB",
            n as f64 / load.as_secs_f64(),
            rss_mb()
        );

        // The storage floor under a cold get: the two point reads of an activation.
        let raw = repo.registry().raw().clone();
        let mut lat = Vec::with_capacity(20_000);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = BlockId::new(format!("s{}", x % n)).unwrap();
            let t = Instant::now();
            let meta = raw.get_meta(&id).unwrap().unwrap();
            raw.get_materialized(&id, &meta.latest.unwrap().trx_id)
                .unwrap()
                .unwrap();
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "storage: meta + materialized point reads p50 {:?}",
            lat[lat.len() / 2]
        );

        const GETS_PER_LANE: usize = 25_000;
        let start = Instant::now();
        let lanes = (0..8u64).map(|lane| {
            let repo = repo.clone();
            async move {
                let mut lat = Vec::with_capacity(GETS_PER_LANE);
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (lane + 1);
                for _ in 0..GETS_PER_LANE {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = BlockId::new(format!("s{}", x % n)).unwrap();
                    let t = Instant::now();
                    let r = repo
                        .get(BlockGets {
                            block_ids: vec![id],
                            context: None,
                        })
                        .await
                        .unwrap();
                    assert!(r.values().next().unwrap().block.is_some());
                    lat.push(t.elapsed());
                }
                lat
            }
        });
        let mut lat: Vec<Duration> = join_all(lanes).await.into_iter().flatten().collect();
        let took = start.elapsed();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "gets: {:.0}/s with 8 in flight, p50 {:?}, p99 {:?}; live actors {}; rss {:.0} MB",
            lat.len() as f64 / took.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            repo.registry().live(),
            rss_mb()
        );
        repo.registry().shutdown();
    });
}
