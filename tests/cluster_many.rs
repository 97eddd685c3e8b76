//! Twenty nodes in one process on libp2p's memory transport: every block's replicas
//! are exactly its K closest peers, and 1,000 blocks spread over all the nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::future::join_all;
use optimystic::node::{NodeConfig, NodeHandle};
use optimystic_actors::model::*;
use optimystic_actors::net::{NetConfig, NetEvent};
use optimystic_actors::storage::StorageKind;
use support::*;

const NODES: usize = 20;
const BLOCKS: usize = 1_000;
const K: usize = 3;

async fn start(
    dir: &std::path::Path,
    port: u64,
    bootstrap: Option<libp2p::Multiaddr>,
) -> (NodeHandle, libp2p::Multiaddr) {
    let cfg = NodeConfig {
        data_dir: dir.to_path_buf(),
        storage: StorageKind::Memory,
        listen: vec![format!("/memory/{port}").parse().unwrap()],
        bootstrap: bootstrap.into_iter().collect(),
        cluster_size: K,
        net: NetConfig {
            memory_transport: true,
            ..NetConfig::default()
        },
        registry: optimystic_actors::block::RegistryOptions {
            arbiters: 1,
            ..Default::default()
        },
        ..NodeConfig::default()
    };
    let mut node = NodeHandle::start(cfg).await.unwrap();
    let addr = loop {
        if let Some(NetEvent::Listening(a)) = node.next_event().await {
            break a;
        }
    };
    (node, addr)
}

#[actix_rt::test]
async fn replicas_are_the_k_closest_of_twenty() {
    let base = 1_000_000 + u64::from(std::process::id()) * 100;
    let dirs: Vec<_> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start(dirs[0].path(), base, None).await;
    let boot = first.1.clone();
    let mut nodes = vec![first];
    for (i, d) in dirs.iter().enumerate().skip(1) {
        nodes.push(start(d.path(), base + i as u64, Some(boot.clone())).await);
    }
    // Kademlia introduces everyone to everyone.
    for (n, _) in &nodes {
        let net = n.net().clone();
        eventually(Duration::from_secs(60), || {
            let net = net.clone();
            async move { net.status().await.unwrap().members.len() == NODES - 1 }
        })
        .await;
    }
    let handles: Vec<&NodeHandle> = nodes.iter().map(|(n, _)| n).collect();
    let began = std::time::Instant::now();
    settle_within(&handles, K, Duration::from_secs(240)).await;
    eprintln!("settled in {:?}", began.elapsed());
    let began = std::time::Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let peers: Vec<libp2p::PeerId> = nodes.iter().map(|(n, _)| n.peer_id()).collect();

    // 1,000 single-block transactions, entering through every node, 16 at a time.
    let lanes = (0..16).map(|lane| {
        let (nodes, done) = (&nodes, &done);
        async move {
            for i in (lane..BLOCKS).step_by(16) {
                let name = format!("m{i}");
                let repo = nodes[i % NODES].0.repo();
                let trx = TrxId::new(format!("t{i}")).unwrap();
                let p = repo
                    .pend(PendRequest {
                        trx_id: trx.clone(),
                        rev: Some(1),
                        transforms: insert(&name),
                        policy: PendPolicy::Fail,
                    })
                    .await
                    .unwrap();
                assert!(p.is_success(), "{name}: {p:?}");
                let c = repo
                    .commit(CommitRequest {
                        trx_id: trx,
                        block_ids: vec![bid(&name)],
                        rev: 1,
                        header_id: None,
                        tail_id: None,
                    })
                    .await
                    .unwrap();
                assert!(c.is_success(), "{name}");
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n % 100 == 0 {
                    eprintln!("{n} writes in {:?}", began.elapsed());
                }
            }
        }
    });
    // No overall window: each pend and commit is bounded by the request timeout,
    // and one that runs out fails its lane's assertion with the reason.
    join_all(lanes).await;

    let mut held = vec![0usize; NODES];
    for i in 0..BLOCKS {
        let name = format!("m{i}");
        let cluster = optimystic_actors::membership::target(Region::of(&bid(&name)), &peers, K);
        assert_eq!(cluster.len(), K);
        for (j, (n, _)) in nodes.iter().enumerate() {
            let storage = n.storage().clone();
            if cluster.contains(&n.peer_id()) {
                eventually(Duration::from_secs(10), || {
                    let (storage, name) = (storage.clone(), name.clone());
                    async move { storage.get_meta(&bid(&name)).unwrap().is_some() }
                })
                .await;
                held[j] += 1;
            } else {
                assert!(
                    storage.get_meta(&bid(&name)).unwrap().is_none(),
                    "{name} stored outside its cluster {cluster:?}, on {} holding {:?}",
                    n.peer_id(),
                    n.configs().config(Region::of(&bid(&name)))
                );
            }
        }
    }
    assert!(
        held.iter().all(|h| *h > 0),
        "every node holds blocks: {held:?}"
    );
    // The members agree on it: every member's configuration of each block's
    // region is exactly the target (whose rule tests/known_answers.rs pins
    // independently of this code).
    for i in 0..BLOCKS {
        let region = Region::of(&bid(&format!("m{i}")));
        let want: std::collections::BTreeSet<String> =
            optimystic_actors::membership::target(region, &peers, K)
                .iter()
                .map(ToString::to_string)
                .collect();
        for (n, _) in nodes
            .iter()
            .filter(|(n, _)| want.contains(&n.peer_id().to_string()))
        {
            let held = n.configs().config(region).map(|c| c.members);
            assert_eq!(held.as_ref(), Some(&want), "m{i} on {}", n.peer_id());
        }
    }
    for (n, _) in nodes {
        n.shutdown().await;
    }
}
