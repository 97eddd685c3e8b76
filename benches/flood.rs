//! A good client's read latency on one node, quiet and while a hostile peer floods
//! it (valid reads from 256 streams at once, as fast as the node answers). The
//! flood's reads start being sampled the moment the hostile peer gets its first
//! answer, and are reported in two parts: before the node bans the peer (the
//! flood at full force) and after (a banned peer reconnecting); without a ban,
//! as one. Reports p50/p99 of each part, its number of reads, and the p99 ratio
//! to quiet.
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

/// `SAMPLES` sequential reads: when each started, and how long it took.
async fn sample(c: &RepoClient) -> Vec<(Instant, Duration)> {
    let mut lat = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let r = c.get(gets()).await.unwrap();
        assert!(r[&BlockId::new("g").unwrap()].block.is_some());
        lat.push((t, t.elapsed()));
    }
    lat
}

/// p50 and p99 of some reads (`None` when there are none).
fn percentiles(reads: &[(Instant, Duration)]) -> Option<(Duration, Duration)> {
    let mut lat: Vec<Duration> = reads.iter().map(|r| r.1).collect();
    lat.sort();
    let at = |q: usize| lat[(lat.len() * q / 100).min(lat.len() - 1)];
    (!lat.is_empty()).then(|| (at(50), at(99)))
}

/// One part of the flood: its reads, p50, p99 and p99 against quiet.
fn part(name: &str, reads: &[(Instant, Duration)], quiet99: Duration) -> String {
    match percentiles(reads) {
        Some((p50, p99)) => format!(
            "{name}: {} reads, p50 {p50:?} p99 {p99:?} ({:.1}x quiet)",
            reads.len(),
            p99.as_secs_f64() / quiet99.as_secs_f64()
        ),
        None => format!("{name}: no reads"),
    }
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
                if served.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) == 1 {
                    println!("attacker: first answer");
                }
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
        println!(
            "per-peer limit: {} requests/s",
            cfg.net.max_requests_per_peer_per_sec
        );
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
        let p = PendRequest {
            trx_id: trx.clone(),
            rev: Some(1),
            transforms,
            policy: PendPolicy::Fail,
        };
        assert!(repo.pend(p).await.unwrap().is_success());
        let c = CommitRequest {
            trx_id: trx,
            block_ids: vec![id],
            rev: 1,
            header_id: None,
            tail_id: None,
        };
        assert!(repo.commit(c).await.unwrap().is_success());

        let good = client(&addr);
        for _ in 0..200 {
            good.get(gets()).await.unwrap();
        }
        let (q50, q99) = percentiles(&sample(&good).await).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let (served, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let in_process = std::env::var_os("INPROC").is_some();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let mut child = None;
        let flood = if in_process {
            let first = served.clone();
            let r = refused.clone();
            std::thread::spawn(move || {
                while first.load(Ordering::Relaxed) + r.load(Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let _ = first_tx.send(());
            });
            Some(actix_rt::spawn(attack(
                addr.clone(),
                stop.clone(),
                served.clone(),
                refused.clone(),
            )))
        } else {
            let mut c = std::process::Command::new(std::env::current_exe().unwrap())
                .env("FLOOD_ATTACK", addr.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let out = c.stdout.take().unwrap();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if line == "attacker: first answer" {
                        let _ = first_tx.send(());
                    }
                    println!("{line}");
                }
            });
            child = Some(c);
            None
        };
        // The flood is on once the hostile peer has its first answer.
        let waited = Instant::now();
        while first_rx.try_recv().is_err() {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "the hostile peer never got an answer"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // When the node first bans the hostile peer.
        let banned_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let watcher = {
            let (metrics, banned_at, stop) =
                (node.net_metrics().clone(), banned_at.clone(), stop.clone());
            actix_rt::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if metrics.rejected().get("banned").is_some_and(|n| *n > 0) {
                        *banned_at.lock().unwrap() = Some(Instant::now());
                        return;
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            })
        };
        let t = Instant::now();
        let flood_reads = sample(&good).await;
        let secs = t.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let _ = watcher.await;
        if let Some(f) = flood {
            let _ = f.await;
        }
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let ban = *banned_at.lock().unwrap();
        let flood = match ban {
            Some(at) => {
                let (before, after): (Vec<_>, Vec<_>) =
                    flood_reads.iter().partition(|r| r.0 + r.1 <= at);
                format!(
                    "banned {:?} into the flood; {}; {}",
                    at.duration_since(t),
                    part("before the ban", &before, q99),
                    part("after", &after, q99)
                )
            }
            None => format!("never banned; {}", part("under flood", &flood_reads, q99)),
        };
        // The hostile peer counts its answers itself when it runs here; in its
        // own process it prints them each second.
        let hostile = if in_process {
            format!(
                "this process (served {:.0}/s, refused {:.0}/s)",
                served.load(Ordering::Relaxed) as f64 / secs,
                refused.load(Ordering::Relaxed) as f64 / secs
            )
        } else {
            "its own process".to_string()
        };
        println!("hostile in {hostile}: good client: quiet p50 {q50:?} p99 {q99:?}; {flood}");
        let rejected = node.net_metrics().rejected();
        println!("node rejected by reason: {rejected:?}");
        node.shutdown().await;
    });
}
