//! A good client's read latency on one node, quiet and while a hostile peer floods
//! it (valid reads from 256 streams at once, as fast as the node answers). Reports
//! p50/p99 both ways and their ratio.
//!
//! The hostile peer runs in its own process (this binary again, with
//! `FLOOD_ATTACK=<addr>`), as an attacker does: on the same two cores, but not on
//! the node's threads. `INPROC=1` runs it inside the node's process instead (the
//! older, harsher setup, where the attacker's own work is the node's CPU).
//!
//! `cargo bench --bench flood` (`RATE=N` sets the per-peer limit) — figures in
//! docs/RELIABILITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use optimystic::node::{NodeConfig, NodeHandle};
use optimystic_actors::model::*;
use optimystic_actors::net::{peer_of, NetClient, NetConfig, NetEvent, RepoClient};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SAMPLES: usize = 3_000;

fn gets() -> BlockGets {
    BlockGets {
        block_ids: vec![BlockId::new("g").unwrap()],
        context: None,
        consistency: None,
    }
}

fn client(addr: &libp2p::Multiaddr) -> RepoClient {
    RepoClient::new(
        NetClient::start_client(NetConfig::default()).unwrap(),
        peer_of(addr).unwrap(),
        vec![addr.clone()],
        Duration::from_secs(10),
    )
}

async fn sample(c: &RepoClient) -> (Duration, Duration) {
    let mut lat = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let r = c.get(gets()).await.unwrap();
        assert!(r[&BlockId::new("g").unwrap()].block.is_some());
        lat.push(t.elapsed());
    }
    lat.sort();
    (lat[SAMPLES / 2], lat[SAMPLES * 99 / 100])
}

/// The hostile peer: 256 concurrent readers of `addr`, as fast as answered, until
/// `stop`; counts served and refused requests.
async fn attack(
    addr: libp2p::Multiaddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let hostile = Arc::new(client(&addr));
    join_all((0..256).map(|_| {
        let (h, stop, served, refused) = (
            hostile.clone(),
            stop.clone(),
            served.clone(),
            refused.clone(),
        );
        async move {
            while !stop.load(Ordering::Relaxed) {
                match h.get(gets()).await {
                    Ok(_) => served.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        // Refused or banned: an attacker retries, but a spinning
                        // loop would only measure its own CPU.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    }))
    .await;
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(addr) = std::env::var("FLOOD_ATTACK") {
        let addr: libp2p::Multiaddr = addr.parse().unwrap();
        actix_rt::System::new().block_on(async move {
            let (served, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            let stop = Arc::new(AtomicBool::new(false));
            let report = (served.clone(), refused.clone());
            actix_rt::spawn(async move {
                let t = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    println!(
                        "attacker: served {} refused {} in {:.1}s",
                        report.0.load(Ordering::Relaxed),
                        report.1.load(Ordering::Relaxed),
                        t.elapsed().as_secs_f64()
                    );
                }
            });
            attack(addr, stop, served, refused).await;
        });
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    actix_rt::System::new().block_on(async {
        let mut cfg = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..NodeConfig::default()
        };
        if let Some(rate) = std::env::var("RATE").ok().and_then(|r| r.parse().ok()) {
            cfg.net.max_requests_per_peer_per_sec = rate;
        }
        println!("per-peer limit: {} requests/s", cfg.net.max_requests_per_peer_per_sec);
        let mut node = NodeHandle::start(cfg).await.unwrap();
        let addr = loop {
            if let Some(NetEvent::Listening(a)) = node.next_event().await {
                break a;
            }
        };
        let id = BlockId::new("g").unwrap();
        let trx = TrxId::new("t").unwrap();
        let block: Block = serde_json::from_value(
            json!({"header": {"id": "g", "type": "T", "collectionId": "c"}, "v": "x".repeat(200)}),
        )
        .unwrap();
        let repo = node.repo();
        let transforms = Transforms {
            inserts: Some([(id.clone(), block)].into()),
            ..Transforms::default()
        };
        let p = PendRequest { trx_id: trx.clone(), rev: Some(1), transforms, policy: PendPolicy::Fail };
        assert!(repo.pend(p).await.unwrap().is_success());
        let c = CommitRequest { trx_id: trx, block_ids: vec![id], rev: 1, header_id: None, tail_id: None };
        assert!(repo.commit(c).await.unwrap().is_success());

        let good = client(&addr);
        for _ in 0..200 {
            good.get(gets()).await.unwrap();
        }
        let (q50, q99) = sample(&good).await;

        let stop = Arc::new(AtomicBool::new(false));
        let (served, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let in_process = std::env::var_os("INPROC").is_some();
        let mut child = None;
        let flood = if in_process {
            Some(actix_rt::spawn(attack(addr.clone(), stop.clone(), served.clone(), refused.clone())))
        } else {
            child = Some(
                std::process::Command::new(std::env::current_exe().unwrap())
                    .env("FLOOD_ATTACK", addr.to_string())
                    .stdout(std::process::Stdio::inherit())
                    .spawn()
                    .unwrap(),
            );
            None
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        let (f50, f99) = sample(&good).await;
        let secs = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        if let Some(f) = flood {
            let _ = f.await;
        }
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
        println!(
            "hostile in {}: good client: quiet p50 {q50:?} p99 {q99:?}; under flood p50 {f50:?} p99 {f99:?} (p99 {:.1}x quiet); in-process hostile served {:.0}/s, refused {:.0}/s",
            if in_process { "this process" } else { "its own process" },
            f99.as_secs_f64() / q99.as_secs_f64(),
            served.load(Ordering::Relaxed) as f64 / secs,
            refused.load(Ordering::Relaxed) as f64 / secs,
        );
        let rejected = node.net_metrics().rejected();
        println!("node rejected by reason: {rejected:?}");
        node.shutdown().await;
    });
}
