//! Repair: how fast data follows membership. Three nodes in one process
//! (cluster size 3, embedded storage) hold `BLOCKS` blocks (default 10,000) of
//! 1 KiB each, stored on every node directly. Then:
//!
//! 1. **raw**: a client fetches every block's archive from node 0 over the block
//!    protocol, 64 in flight: the protocol's transfer rate on loopback, the
//!    baseline of the issue's target; then again with 256 blocks per request,
//!    4 requests in flight;
//! 2. **pull**: node 2 is stopped, `BLOCKS` more blocks are stored on the other
//!    two, and node 2 is started again: the time until its region digests equal
//!    node 0's, all by anti-entropy (the start-up catch-up, then rounds; no
//!    client read);
//! 3. **replace**: node 2 is stopped for good and a fourth node started; the
//!    time until every region's configuration has the newcomer instead of node 2
//!    and its digests equal node 0's (it gets both sets: `2 × BLOCKS` blocks) (the dead-peer timeout, `DEAD_MS`, default
//!    2 s, is part of it and also printed on its own).
//!
//! `cargo bench --bench repair` — figures in docs/BENCHMARKS.md. `BLOCKS=n`,
//! `REPAIR_RATE=n` (blocks per second; default the node default, 200),
//! `DEAD_MS=n`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use optimystic::config::Settings;
use optimystic::node::{NodeBuilder, NodeHandle};
use optimystic_actors::model::*;
use optimystic_actors::net::{
    build_swarm, cluster_configs, cluster_digests, fetch_archive, fetch_archives, peer_of,
    NetClient, NetConfig, NetEvent, NetMetrics, SwarmActor, BLOCKS_PER_REQUEST,
};

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 64;
/// Requests in flight of the batched raw figure.
const BATCHES_IN_FLIGHT: usize = 4;
const ASK: Duration = Duration::from_secs(30);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn node(dir: &Path, boot: &[Multiaddr], rate: u32, dead: u64) -> (NodeHandle, Multiaddr) {
    let s = Settings {
        data_dir: dir.to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        bootstrap: boot.iter().map(ToString::to_string).collect(),
        anti_entropy_interval_ms: 500,
        repair_rate: rate,
        dead_peer_timeout_ms: dead,
        ..Settings::default()
    };
    // A node shut down in this process lets go of its directory's lock once
    // its last actor has stopped: wait for that.
    let started = Instant::now();
    let mut n = loop {
        match NodeBuilder::from_settings(&s).start().await {
            Ok(n) => break n,
            Err(e) if format!("{e:?}").contains("InUse") && started.elapsed() < ASK => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let a = loop {
        if let Some(NetEvent::Listening(a)) = n.next_event().await {
            break a;
        }
    };
    (n, a)
}

async fn client_net() -> NetClient {
    let cfg = NetConfig {
        client_only: true,
        ..NetConfig::default()
    };
    let metrics = Arc::new(NetMetrics::default());
    let m = metrics.clone();
    let swarm = build_swarm(Keypair::generate_ed25519(), &cfg).unwrap();
    let actor = SwarmActor::new(swarm, cfg, None, None, m).start();
    NetClient::new(actor, metrics)
}

fn id_of(i: usize) -> BlockId {
    BlockId::new(format!("r{i}")).unwrap()
}

/// Node `a`'s region digests, every region.
async fn digests(net: &NetClient, a: &Multiaddr) -> Option<Vec<RegionDigest>> {
    let peer: PeerId = peer_of(a).unwrap();
    cluster_digests(net, peer, vec![a.clone()], Region::all().collect(), ASK)
        .await
        .ok()
}

/// Whether no region's configuration, as node `a` knows it, has `gone`, and
/// every one has `with`.
async fn moved(net: &NetClient, a: &Multiaddr, gone: &PeerId, with: &PeerId) -> bool {
    let Ok(view) = cluster_configs(
        net,
        peer_of(a).unwrap(),
        vec![a.clone()],
        Region::all().collect(),
        ASK,
    )
    .await
    else {
        return false;
    };
    let (gone, with) = (gone.to_string(), with.to_string());
    view.view.iter().all(|v| {
        v.config
            .as_ref()
            .is_some_and(|c| !c.members.contains(&gone) && c.members.contains(&with))
    })
}

/// Polls `done` every 100 ms, at most `limit`; the time it took.
async fn until<F, Fut>(limit: Duration, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

fn rate(blocks: usize, bytes: f64, t: Duration) -> String {
    let s = t.as_secs_f64();
    format!(
        "{:.2} s: {:.0} blocks/s, {:.2} MB/s",
        s,
        blocks as f64 / s,
        bytes / s / 1e6
    )
}

fn main() {
    let blocks = env("BLOCKS", 10_000);
    let repair_rate = env(
        "REPAIR_RATE",
        optimystic::node::DEFAULT_ANTI_ENTROPY.repair_rate as usize,
    ) as u32;
    let dead = env("DEAD_MS", 2000) as u64;
    System::new().block_on(async move {
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes: Vec<(NodeHandle, Multiaddr)> = Vec::new();
        for d in &dirs[..3] {
            let boot: Vec<Multiaddr> = nodes.iter().map(|(_, a)| a.clone()).collect();
            nodes.push(node(d.path(), &boot, repair_rate, dead).await);
        }
        let net = client_net().await;
        let addrs: Vec<Multiaddr> = nodes.iter().map(|(_, a)| a.clone()).collect();
        // Every region agreed on the three before anything is stored.
        let ids: Vec<PeerId> = addrs.iter().map(|a| peer_of(a).unwrap()).collect();
        until(Duration::from_secs(60), || async {
            let Ok(view) = cluster_configs(
                &net,
                ids[0],
                vec![addrs[0].clone()],
                Region::all().collect(),
                ASK,
            )
            .await
            else {
                return false;
            };
            view.view
                .iter()
                .all(|v| v.config.as_ref().is_some_and(|c| c.members.len() == 3))
        })
        .await;
        let t = Instant::now();
        for (n, _) in &nodes {
            support::preload(n, blocks, "r", 1000).await;
        }
        println!(
            "repair bench: {blocks} blocks of 1 KiB on each of 3 nodes (stored in {:.1} s), repair rate {repair_rate}/s",
            t.elapsed().as_secs_f64()
        );

        // 1. The block protocol's own rate.
        let next = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        join_all((0..IN_FLIGHT).map(|_| {
            let (next, bytes, net, a) = (next.clone(), bytes.clone(), net.clone(), addrs[0].clone());
            async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= blocks {
                        return;
                    }
                    let got = fetch_archive(&net, peer_of(&a).unwrap(), vec![a.clone()], &id_of(i), Some(1), ASK)
                        .await
                        .unwrap()
                        .unwrap();
                    bytes.fetch_add(serde_json::to_vec(&got).unwrap().len(), Ordering::Relaxed);
                }
            }
        }))
        .await;
        let raw = t.elapsed();
        let archive_bytes = bytes.load(Ordering::Relaxed) as f64;
        println!("raw     fetch every archive from node 0, {IN_FLIGHT} in flight: {} ({:.0} bytes per archive as JSON)", rate(blocks, archive_bytes, raw), archive_bytes / blocks as f64);
        // The same, many blocks per request (the most a request asks for).
        let asks: Vec<(BlockId, Option<Rev>)> = (0..blocks).map(|i| (id_of(i), Some(1))).collect();
        let next = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        join_all((0..BATCHES_IN_FLIGHT).map(|_| {
            let (next, net, a, asks) = (next.clone(), net.clone(), addrs[0].clone(), &asks);
            async move {
                loop {
                    let i = next.fetch_add(BLOCKS_PER_REQUEST, Ordering::Relaxed);
                    if i >= asks.len() {
                        return;
                    }
                    let batch = &asks[i..(i + BLOCKS_PER_REQUEST).min(asks.len())];
                    let got = fetch_archives(&net, peer_of(&a).unwrap(), vec![a.clone()], batch, ASK)
                        .await
                        .unwrap();
                    assert!(got.iter().all(Option::is_some));
                }
            }
        }))
        .await;
        let batched = t.elapsed();
        println!("raw     the same, {BLOCKS_PER_REQUEST} blocks per request, {BATCHES_IN_FLIGHT} requests in flight: {}", rate(blocks, archive_bytes, batched));

        // 2. A member that missed every write while down: anti-entropy (the
        // start-up catch-up, then rounds) pulls them all.
        let (n2, _) = nodes.pop().unwrap();
        n2.shutdown().await;
        for (n, _) in &nodes {
            support::preload(n, blocks, "m", 1000).await;
        }
        let full = digests(&net, &addrs[0]).await.unwrap();
        let t = Instant::now();
        let (n2, a2) = node(dirs[2].path(), &addrs[..2], repair_rate, dead).await;
        let pull = until(Duration::from_secs(1800), || async {
            digests(&net, &a2).await.as_ref() == Some(&full)
        })
        .await;
        println!(
            "pull    node 2 restarted after missing {blocks} new blocks, all pulled by anti-entropy: {} (from its start: {:.2} s)",
            rate(blocks, archive_bytes, pull),
            t.elapsed().as_secs_f64()
        );

        // 3. A member lost for good: replaced by a newcomer once the dead-peer
        // timeout passed.
        let gone = peer_of(&a2).unwrap();
        n2.shutdown().await;
        let t = Instant::now();
        let (n3, a3) = node(dirs[3].path(), &addrs[..2], repair_rate, dead).await;
        let newcomer = peer_of(&a3).unwrap();
        let replaced = until(Duration::from_secs(1800), || async {
            moved(&net, &addrs[0], &gone, &newcomer).await
                && digests(&net, &a3).await.as_ref() == Some(&full)
        })
        .await;
        println!(
            "replace node 2 gone for good, a newcomer holds all {} blocks and replaced it everywhere: {} ({:.2} s after the {dead} ms dead-peer timeout; from its start {:.2} s)",
            2 * blocks,
            rate(2 * blocks, 2.0 * archive_bytes, replaced),
            replaced.as_secs_f64() - dead as f64 / 1000.0,
            t.elapsed().as_secs_f64()
        );
        n3.shutdown().await;
        for (n, _) in nodes {
            n.shutdown().await;
        }
    });
}
