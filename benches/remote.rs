//! RepoClient → one node over loopback TCP (Noise, Yamux), MessagePack and JSON:
//! sequential get latency and throughput with 64 requests in flight. Requests
//! and lanes are `optimystic::load`'s.
//!
//! `cargo bench --bench remote` — figures in docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use libp2p::identity::Keypair;
use optimystic::load::{self, drive, Counts, Slot, Txn, Until};
use optimystic::node::{NodeConfig, NodeHandle};
use optimystic_actors::model::{BlockGets, BlockId, TrxId};
use optimystic_actors::net::{
    build_swarm, peer_of, NetClient, NetConfig, NetEvent, NetMetrics, RepoClient, SwarmActor,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEQUENTIAL: usize = 5_000;
const IN_FLIGHT: usize = 64;
const PER_LANE: usize = 500;

async fn client(addr: &libp2p::Multiaddr, arbiter: &ArbiterHandle, json_only: bool) -> RepoClient {
    let cfg = NetConfig {
        client_only: true,
        ..NetConfig::default()
    };
    let metrics = Arc::new(NetMetrics::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let m = metrics.clone();
    arbiter.spawn(async move {
        let swarm = build_swarm(Keypair::generate_ed25519(), &cfg).unwrap();
        let _ = tx.send(SwarmActor::new(swarm, cfg, None, None, m).start());
    });
    let actor = rx.await.unwrap();
    let c = RepoClient::new(
        NetClient::new(actor, metrics),
        peer_of(addr).unwrap(),
        vec![addr.clone()],
        Duration::from_secs(10),
    );
    if json_only {
        c.force_json()
    } else {
        c
    }
}

fn gets() -> BlockGets {
    load::gets(BlockId::new("bench").unwrap())
}

/// One get of the block; panics when it fails (the `Result` is for [`load::drive`]).
async fn get(c: &RepoClient) -> Result<(), String> {
    c.get(gets()).await.unwrap();
    Ok(())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let system = actix_rt::System::new();
    system.block_on(async {
        let cfg = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..NodeConfig::default()
        };
        let mut node = NodeHandle::start(cfg).await.unwrap();
        let addr = loop {
            if let Some(NetEvent::Listening(a)) = node.next_event().await {
                break a;
            }
        };
        let id = BlockId::new("bench").unwrap();
        let fields = [("payload", load::payload('z', 200))];
        let block = load::block(&id, "T", "c", fields).unwrap();
        let txn = Txn::insert(TrxId::new("t").unwrap(), block);
        node.repo().pend(txn.pend).await.unwrap();
        node.repo().commit(txn.commit).await.unwrap();

        let client_arbiter = Arbiter::new();
        println!("encoding  sequential p50  sequential/s  64-in-flight/s");
        for json_only in [false, true] {
            let c = client(&addr, &client_arbiter.handle(), json_only).await;
            for _ in 0..200 {
                c.get(gets()).await.unwrap();
            }
            let c = &c;
            let one = move |_: Slot| get(c);
            let start = Instant::now();
            let seq = drive(1, Until::Each(SEQUENTIAL as u64), &Counts::default(), one).await;
            let seq_rate = SEQUENTIAL as f64 / start.elapsed().as_secs_f64();
            let mut lat = seq.latencies();
            lat.sort();
            let start = Instant::now();
            drive(
                IN_FLIGHT,
                Until::Each(PER_LANE as u64),
                &Counts::default(),
                one,
            )
            .await;
            let par_rate = (IN_FLIGHT * PER_LANE) as f64 / start.elapsed().as_secs_f64();
            let name = if json_only { "json" } else { "msgpack" };
            println!(
                "{name:<9} {:>14.1?}  {seq_rate:>12.0}  {par_rate:>14.0}",
                lat[lat.len() / 2]
            );
        }
        node.shutdown().await;
        client_arbiter.stop();
    });
}
