//! Criterion benches of the pieces a write is made of: request codecs (JSON vs
//! MessagePack, small and 8 KiB blocks), transform application, Ed25519 vote
//! signing and record validation, the record's canonical message hash, and one
//! whole two-phase-commit round among three in-process nodes on loopback.
//! Figures and reproduce commands: docs/BENCHMARKS.md.
//!
//! `cargo bench --bench components`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libp2p::identity::Keypair;
use optimystic::engine::cluster::{
    message_blocks, message_hash, peer_entry, sign_commit, sign_promise, validate, BlockState,
    ClusterRecord, EffectKind, States, VoteType,
};
use optimystic::engine::model::*;
use optimystic::engine::net::{NetClient, NetConfig, NetEvent, RepoClient};
use optimystic::node::{NodeBuilder, NodeHandle};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn block(name: &str, payload: usize) -> Block {
    serde_json::from_value(json!({
        "header": {"id": name, "type": "T", "collectionId": "bench"},
        "items": [1, 2, 3], "nested": {"a": [true, null, 1.5], "b": "ü"},
        "payload": "x".repeat(payload)
    }))
    .unwrap()
}

fn pend_of(name: &str, payload: usize) -> PendRequest {
    PendRequest {
        trx_id: TrxId::new(format!("t-{name}")).unwrap(),
        rev: Some(1),
        transforms: Transforms {
            inserts: Some([(BlockId::new(name).unwrap(), block(name, payload))].into()),
            ..Transforms::default()
        },
        policy: PendPolicy::Fail,
    }
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    for (label, payload) in [("small", 200), ("8KiB", 8 * 1024)] {
        let req = pend_of("b1", payload);
        let json = serde_json::to_vec(&req).unwrap();
        let mp = rmp_serde::to_vec_named(&req).unwrap();
        g.throughput(Throughput::Bytes(json.len() as u64));
        g.bench_function(BenchmarkId::new("json_encode", label), |b| {
            b.iter(|| serde_json::to_vec(&req).unwrap())
        });
        g.bench_function(BenchmarkId::new("json_decode", label), |b| {
            b.iter(|| serde_json::from_slice::<PendRequest>(&json).unwrap())
        });
        g.bench_function(BenchmarkId::new("msgpack_encode", label), |b| {
            b.iter(|| rmp_serde::to_vec_named(&req).unwrap())
        });
        g.bench_function(BenchmarkId::new("msgpack_decode", label), |b| {
            b.iter(|| rmp_serde::from_slice::<PendRequest>(&mp).unwrap())
        });
    }
    g.finish();
}

fn transforms(c: &mut Criterion) {
    let id = BlockId::new("b1").unwrap();
    let mut base = block("b1", 200);
    base.fields
        .insert("list".into(), json!((0..1_000).collect::<Vec<_>>()));
    let splice = Transform {
        updates: Some(vec![
            ("list".to_string(), 500, 10, json!([1, 2, 3])).into(),
            ("payload".to_string(), 0, 0, json!("replaced")).into(),
        ]),
        ..Transform::default()
    };
    let insert = Transform {
        insert: Some(block("b1", 200)),
        ..Transform::default()
    };
    let mut g = c.benchmark_group("transform");
    g.bench_function("splice_and_replace_1000_items", |b| {
        b.iter(|| apply_transform(&id, Some(&base), &splice).unwrap())
    });
    g.bench_function("insert", |b| {
        b.iter(|| apply_transform(&id, None, &insert).unwrap())
    });
    g.finish();
}

fn record(keys: &[Keypair], ops: usize) -> ClusterRecord {
    let message = RepoMessage {
        operations: (0..ops)
            .map(|i| RepoOperation::Pend(pend_of(&format!("b{i}"), 200)))
            .collect(),
        expiration: Some(u64::MAX),
        coordinator: keys.first().map(|k| k.public().to_peer_id().to_string()),
        epochs: Default::default(),
        change: None,
    };
    ClusterRecord {
        message_hash: message_hash(&message),
        peers: keys.iter().map(|k| peer_entry(k, vec![])).collect(),
        message: message.into(),
        promises: BTreeMap::new(),
        commits: BTreeMap::new(),
    }
}

/// An approving promise's state of every block of `r`.
fn state_of(r: &ClusterRecord) -> Option<States> {
    Some(
        message_blocks(&r.message.operations)
            .into_iter()
            .map(|b| (b, BlockState::default()))
            .collect(),
    )
}

fn signatures(c: &mut Criterion) {
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let r = record(&keys, 1);
    let mut voted = r.clone();
    for k in &keys {
        voted.promises.insert(
            k.public().to_peer_id().to_string(),
            sign_promise(k, &r, VoteType::Approve, None, state_of(&r)),
        );
    }
    let mut committed = voted.clone();
    for k in &keys {
        committed.commits.insert(
            k.public().to_peer_id().to_string(),
            sign_commit(
                k,
                &voted,
                VoteType::Approve,
                None,
                Some(vec![EffectKind::Ok]),
            ),
        );
    }
    let mut g = c.benchmark_group("consensus");
    g.bench_function("sign_promise", |b| {
        b.iter(|| sign_promise(&keys[0], &r, VoteType::Approve, None, state_of(&r)))
    });
    g.bench_function("validate_3_promises", |b| {
        b.iter(|| validate(&voted).unwrap())
    });
    g.bench_function("validate_3_promises_3_commits", |b| {
        b.iter(|| validate(&committed).unwrap())
    });
    for ops in [1, 27] {
        let r = record(&keys, ops);
        g.bench_function(BenchmarkId::new("message_hash_ops", ops), |b| {
            b.iter(|| message_hash(&r.message))
        });
    }
    g.finish();
}

static NEXT: AtomicU64 = AtomicU64::new(0);

async fn node(
    dir: &std::path::Path,
    boot: Option<&libp2p::Multiaddr>,
) -> (NodeHandle, libp2p::Multiaddr) {
    let mut b = NodeBuilder::new()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0");
    if let Some(a) = boot {
        b = b.bootstrap(&a.to_string());
    }
    let mut n = b.start().await.unwrap();
    loop {
        if let Some(NetEvent::Listening(a)) = n.next_event().await {
            return (n, a);
        }
    }
}

/// One single-block transaction (pend + commit), each a signed 2PC over three
/// in-process nodes, acknowledged once a majority of the cluster applied it
/// (durable there; the third member may still be applying it).
fn two_phase_commit(c: &mut Criterion) {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let sys = actix_rt::System::new();
    let (nodes, client) = sys.block_on(async {
        let (a, addr) = node(dirs[0].path(), None).await;
        let (b, _) = node(dirs[1].path(), Some(&addr)).await;
        let (c, _) = node(dirs[2].path(), Some(&addr)).await;
        for n in [&a, &b, &c] {
            while n.net().member_view().members.len() < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Writes are refused until every region's configuration is agreed.
        optimystic::node::wait_configured(&[&a, &b, &c], Duration::from_secs(120))
            .await
            .unwrap();
        let net = NetClient::start_client(NetConfig::default()).unwrap();
        let peer = optimystic::engine::net::peer_of(&addr).unwrap();
        let client = RepoClient::new(net, peer, vec![addr], Duration::from_secs(30));
        (vec![a, b, c], client)
    });
    let txn = || async {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("p{n}");
        let req = pend_of(&name, 200);
        let trx = req.trx_id.clone();
        assert!(client.pend(req).await.unwrap().is_success());
        let done = client
            .commit(CommitRequest {
                trx_id: trx,
                block_ids: vec![BlockId::new(name).unwrap()],
                rev: 1,
                header_id: None,
                tail_id: None,
            })
            .await
            .unwrap();
        assert!(done.is_success());
    };
    let mut g = c.benchmark_group("cluster");
    g.sample_size(100);
    g.bench_function("2pc_pend_commit_3_nodes", |b| {
        b.iter(|| sys.block_on(txn()))
    });
    g.finish();
    sys.block_on(async {
        for n in nodes {
            n.shutdown().await;
        }
    });
}

criterion_group!(benches, codecs, transforms, signatures, two_phase_commit);
criterion_main!(benches);
