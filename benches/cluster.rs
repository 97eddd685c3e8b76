//! Nodes on loopback in one process (3 by default); each transaction = pend +
//! commit of one new block through the signed two-phase commit, acknowledged once
//! a majority of the block's cluster applied it durably (the rest may still be
//! applying it): first as two requests (pend, then commit: two agreed records), then as
//! one pendCommit (one record). Sequential latency and throughput with 64
//! transactions in flight for each, then reads with 64 in flight, all through a
//! RepoClient talking to the first node.
//!
//! `cargo bench --bench cluster` — figures in docs/BENCHMARKS.md.
//! `NODES=1|3|5` sets the node count (= cluster size); `PRELOAD=N` first stores N
//! blocks on every node (directly, 64 in flight) and waits for the engines'
//! background work after that load to finish, to measure at that size;
//! `PROFILE_SECS=n` runs only sequential pendCommits for n seconds (to profile),
//! or with `PROFILE_READS=1` only reads, 64 in flight, or with `PROFILE_LOAD=1`
//! only pendCommits, 64 in flight. Requests and lanes are `optimystic::load`'s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use libp2p::identity::Keypair;
use optimystic::load::{self, drive, Counts, Slot, Txn, Until};
use optimystic::node::{NodeBuilder, NodeHandle};
use optimystic_actors::model::{BlockId, TrxId};
use optimystic_actors::net::{
    build_swarm, peer_of, NetClient, NetConfig, NetEvent, NetMetrics, RepoClient, SwarmActor,
};

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEQUENTIAL: usize = 300;
const IN_FLIGHT: usize = 64;
const PER_LANE: usize = 40;

async fn node(
    dir: &std::path::Path,
    bootstrap: Option<&libp2p::Multiaddr>,
    k: usize,
) -> (NodeHandle, libp2p::Multiaddr) {
    let mut b = NodeBuilder::new()
        .data_dir(dir)
        .cluster_size(k)
        .listen("/ip4/127.0.0.1/tcp/0");
    // ANTI_ENTROPY_MS: the anti-entropy interval (0 = off; unset = the default).
    if let Ok(ms) = std::env::var("ANTI_ENTROPY_MS") {
        let ms: u64 = ms.parse().unwrap_or(0);
        b = b.anti_entropy(
            (ms > 0).then_some(optimystic_actors::coordinator::EntropySettings {
                interval: Duration::from_millis(ms),
                repair_rate: optimystic::node::DEFAULT_ANTI_ENTROPY.repair_rate,
            }),
        );
    }
    if let Some(a) = bootstrap {
        b = b.bootstrap(&a.to_string());
    }
    let mut n = b.start().await.unwrap();
    let a = loop {
        if let Some(NetEvent::Listening(a)) = n.next_event().await {
            break a;
        }
    };
    (n, a)
}

/// One transaction on a new block: pend then commit (two requests, two agreed
/// records) or, with `one_round`, one pendCommit (one request, one record).
/// Panics when it fails (the `Result` is for [`load::drive`]).
async fn txn(c: &RepoClient, i: u64, one_round: bool) -> Result<(), String> {
    let id = BlockId::new(format!("c{i}")).unwrap();
    let trx = TrxId::new(format!("t{i}")).unwrap();
    let block = load::block(&id, "T", "c", [("v", load::payload('x', 200))]).unwrap();
    load::write(c, Txn::insert(trx, block), one_round)
        .await
        .unwrap();
    Ok(())
}

/// Reads block `id`; panics unless it is there (the `Result` is for [`load::drive`]).
async fn read(c: &RepoClient, id: BlockId) -> Result<(), String> {
    let r = load::read(c, id.clone()).await.unwrap();
    assert!(r[&id].block.is_some());
    Ok(())
}

/// A counter's or histogram part's value in node `n`'s metrics text.
fn metric(n: &NodeHandle, name: &str) -> f64 {
    n.render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Mean latency (ms) of each coordinator phase since `before`, and records run.
fn phases(n: &NodeHandle, before: &[f64; 5]) -> String {
    let now = snapshot(n);
    let d: Vec<f64> = now.iter().zip(before).map(|(a, b)| a - b).collect();
    format!(
        "promise phase mean {:.2} ms, commit phase mean {:.2} ms, {:.1} writes per record",
        d[0] / d[1].max(1.0) * 1e3,
        d[2] / d[3].max(1.0) * 1e3,
        d[4] / d[1].max(1.0)
    )
}

fn snapshot(n: &NodeHandle) -> [f64; 5] {
    let h = |part: &str, phase: &str| {
        metric(
            n,
            &format!("optimystic_transaction_phase_seconds_{part}{{phase=\"{phase}\"}}"),
        )
    };
    [
        h("sum", "promise"),
        h("count", "promise"),
        h("sum", "commit"),
        h("count", "commit"),
        metric(n, "optimystic_transaction_operations_total"),
    ]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) this process has used, in clock ticks (1/100 s).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    rest.split(' ')
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

/// Waits (at most 3 minutes) until the storage engines' background work after a
/// bulk load (flushes, compactions) is done: a second in which the process,
/// otherwise idle, used under 5% of a core. A node holding that many blocks in
/// service would have compacted them long before; measuring while three engines
/// compact on two cores would measure the compaction.
async fn settle() -> Duration {
    let start = Instant::now();
    let mut last = cpu_ticks();
    while start.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_ticks();
        if now.saturating_sub(last) < 5 {
            break;
        }
        last = now;
    }
    start.elapsed()
}

fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .strip_suffix(" kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(0)
        / 1024
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nodes_n = env("NODES", 3).max(1);
    let preload_n = env("PRELOAD", 0);
    let dirs: Vec<_> = (0..nodes_n).map(|_| tempfile::tempdir().unwrap()).collect();
    actix_rt::System::new().block_on(async {
        let (a, a_addr) = node(dirs[0].path(), None, nodes_n).await;
        let mut nodes = vec![a];
        for d in &dirs[1..] {
            nodes.push(node(d.path(), Some(&a_addr), nodes_n).await.0);
        }
        for n in &nodes {
            while n.net().member_view().members.len() < nodes_n - 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let handles: Vec<&optimystic::node::NodeHandle> = nodes.iter().collect();
        let t = Instant::now();
        optimystic::node::wait_configured(&handles, Duration::from_secs(120)).await.unwrap();
        println!("configurations agreed in {:?}", t.elapsed());
        if preload_n > 0 {
            let t = Instant::now();
            join_all(nodes.iter().map(|n| support::preload(n, preload_n, "pre", 200))).await;
            println!("preloaded {preload_n} blocks on each of {nodes_n} nodes in {:?}; RSS {} MB", t.elapsed(), rss_mb());
            println!("background work after the load settled in {:?}", settle().await);
        }
        let a = &nodes[0];
        let cfg = NetConfig { client_only: true, ..NetConfig::default() };
        let metrics = Arc::new(NetMetrics::default());
        let arbiter = Arbiter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let m = metrics.clone();
        arbiter.spawn(async move {
            let swarm = build_swarm(Keypair::generate_ed25519(), &cfg).unwrap();
            let _ = tx.send(SwarmActor::new(swarm, cfg, None, None, m).start());
        });
        let client = RepoClient::new(NetClient::new(rx.await.unwrap(), metrics), peer_of(&a_addr).unwrap(), vec![a_addr.clone()], Duration::from_secs(30));
        let client = &client;
        for i in 0..20 {
            txn(client, 1_000_000 + i, false).await.unwrap();
            txn(client, 2_000_000 + i, true).await.unwrap();
        }
        // PROFILE_SECS=n: only sequential pendCommits for n seconds (to profile).
        if let Some(secs) = std::env::var("PROFILE_SECS").ok().and_then(|s| s.parse::<u64>().ok()) {
            let start = Instant::now();
            let until = Until::Deadline(start + Duration::from_secs(secs));
            if std::env::var_os("PROFILE_LOAD").is_some() {
                // pendCommits, 64 in flight.
                let one = move |s: Slot| txn(client, 20_000_000 + s.lane as u64 * 1_000_000 + s.k, true);
                let n = drive(IN_FLIGHT, until, &Counts::default(), one).await.acked();
                println!("{n} pendCommits (64 in flight) in {:?}", start.elapsed());
            } else if std::env::var_os("PROFILE_READS").is_some() {
                // Reads of one written block, 64 in flight.
                txn(client, 9_000_000, true).await.unwrap();
                let id = BlockId::new("c9000000").unwrap();
                let id = &id;
                let one = move |_: Slot| read(client, id.clone());
                let n = drive(IN_FLIGHT, until, &Counts::default(), one).await.acked();
                println!("{n} reads (64 in flight) in {:?}", start.elapsed());
            } else {
                let one = move |s: Slot| txn(client, 9_000_000 + s.k, true);
                let n = drive(1, until, &Counts::default(), one).await.acked();
                println!("{n} sequential pendCommits in {:?}", start.elapsed());
            }
            for n in nodes {
                n.shutdown().await;
            }
            arbiter.stop();
            return;
        }
        // Two requests (pend, commit) per transaction, then one (pendCommit); the
        // reads below use the blocks of the first.
        let mut lines = Vec::new();
        for (mode, one_round, base) in [("pend+commit", false, 0u64), ("pendCommit", true, 5_000_000)] {
            let before = snapshot(a);
            let start = Instant::now();
            let one = move |s: Slot| txn(client, base + s.k, one_round);
            let seq = drive(1, Until::Each(SEQUENTIAL as u64), &Counts::default(), one).await;
            let seq_rate = SEQUENTIAL as f64 / start.elapsed().as_secs_f64();
            let mut lat = seq.latencies();
            lat.sort();
            let seq_phases = phases(a, &before);
            let before = snapshot(a);
            let start = Instant::now();
            let one = move |s: Slot| txn(client, base + 10_000 + s.lane as u64 * 1_000 + s.k, one_round);
            drive(IN_FLIGHT, Until::Each(PER_LANE as u64), &Counts::default(), one).await;
            let par = (IN_FLIGHT * PER_LANE) as f64 / start.elapsed().as_secs_f64();
            lines.push(format!(
                "{nodes_n} nodes, {mode}: sequential txn p50 {:?} p99 {:?} ({seq_rate:.0}/s); 64 in flight {par:.0} txn/s\n  sequential: {seq_phases}\n  64 in flight: {}",
                lat[lat.len() / 2],
                lat[lat.len() * 99 / 100],
                phases(a, &before)
            ));
        }
        // Reads of the blocks just written, 64 in flight, through the same client.
        const READS: u64 = 20_000;
        let start = Instant::now();
        let one = move |s: Slot| {
            let i = (s.lane as u64 * 7_919 + s.k * 104_729) % (IN_FLIGHT * PER_LANE) as u64;
            let l = i / PER_LANE as u64;
            let k = i % PER_LANE as u64;
            read(client, BlockId::new(format!("c{}", 10_000 + l * 1_000 + k)).unwrap())
        };
        drive(IN_FLIGHT, Until::Each(READS / IN_FLIGHT as u64), &Counts::default(), one).await;
        let reads = READS as f64 / start.elapsed().as_secs_f64();
        for l in lines {
            println!("{l}");
        }
        println!("{nodes_n} nodes: reads 64 in flight {reads:.0}/s; RSS {} MB", rss_mb());
        for n in nodes {
            n.shutdown().await;
        }
        arbiter.stop();
    });
}
