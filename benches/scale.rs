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

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th
    // and stime the 13th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split(' ')
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
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

        // The same floor with 8 reads in flight (8 threads on the 2 cores), as the
        // gets below run: what any engine that reads storage on a cold get pays.
        // Two reads (meta, then the latest materialization) and the second alone
        // (as if both lived under one key).
        for (what, both) in [("meta + materialized", true), ("one point read", false)] {
            let lat: Vec<Duration> = std::thread::scope(|s| {
                let lanes: Vec<_> = (0..8u64)
                    .map(|lane| {
                        let raw = raw.clone();
                        s.spawn(move || {
                            let mut lat = Vec::with_capacity(10_000);
                            let mut x = 0x51_7CC1_B727_220Au64 ^ (lane + 1);
                            for _ in 0..10_000 {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                                let id = BlockId::new(format!("s{}", x % n)).unwrap();
                                let trx = TrxId::new(format!("t{}", x % n)).unwrap();
                                let t = Instant::now();
                                if both {
                                    raw.get_meta(&id).unwrap().unwrap();
                                }
                                raw.get_materialized(&id, &trx).unwrap().unwrap();
                                lat.push(t.elapsed());
                            }
                            lat
                        })
                    })
                    .collect();
                lanes.into_iter().flat_map(|l| l.join().unwrap()).collect()
            });
            let mut lat = lat;
            lat.sort();
            println!(
                "storage, 8 in flight: {what} p50 {:?}",
                lat[lat.len() / 2]
            );
        }

        const GETS_PER_LANE: usize = 25_000;
        let (start, cpu) = (Instant::now(), cpu_time());
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
                            consistency: None,
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
        let (took, cpu) = (start.elapsed(), cpu_time() - cpu);
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "gets: {:.0}/s with 8 in flight, p50 {:?}, p99 {:?}, CPU {:.1} µs per get; live actors {}; rss {:.0} MB",
            lat.len() as f64 / took.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            cpu.as_secs_f64() * 1e6 / lat.len() as f64,
            repo.registry().live(),
            rss_mb()
        );
        repo.registry().shutdown();
    });
}
