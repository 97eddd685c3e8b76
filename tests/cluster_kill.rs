//! Separate node processes: SIGKILL a member in the middle of a stream of commits.
//! Every acknowledged commit is on the survivors; the restarted member catches up
//! through restoration and serves the latest revision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use libp2p::identity::Keypair;
use optimystic_actors::model::*;
use optimystic_actors::net::{
    build_swarm, peer_of, NetClient, NetConfig, NetMetrics, RepoClient, SwarmActor,
};
use serde_json::json;
use support::*;

fn client(addr: &str) -> RepoClient {
    let cfg = NetConfig {
        client_only: true,
        ..NetConfig::default()
    };
    let swarm = build_swarm(Keypair::generate_ed25519(), &cfg).unwrap();
    let metrics = std::sync::Arc::new(NetMetrics::default());
    let net = NetClient::new(
        actix::Actor::start(SwarmActor::new(swarm, cfg, None, None, metrics.clone())),
        metrics,
    );
    let addr: libp2p::Multiaddr = addr.parse().unwrap();
    RepoClient::new(
        net,
        peer_of(&addr).unwrap(),
        vec![addr],
        Duration::from_secs(10),
    )
}

fn bid(s: &str) -> BlockId {
    BlockId::new(s).unwrap()
}

/// Pend + commit of `t` at `rev` through `c`; true when both were acknowledged.
async fn write(c: &RepoClient, trx: &str, rev: Rev, t: Transforms) -> bool {
    let ids: Vec<BlockId> = t.block_ids().into_iter().collect();
    let trx = TrxId::new(trx).unwrap();
    let p = c
        .pend(PendRequest {
            trx_id: trx.clone(),
            rev: Some(rev),
            transforms: t,
            policy: PendPolicy::Fail,
        })
        .await;
    if !p.is_ok_and(|p| p.is_success()) {
        return false;
    }
    let r = c
        .commit(CommitRequest {
            trx_id: trx,
            block_ids: ids,
            rev,
            header_id: None,
            tail_id: None,
        })
        .await;
    r.is_ok_and(|r| r.is_success())
}

async fn latest(c: &RepoClient, block: &str, at: Option<Rev>) -> Option<(Rev, serde_json::Value)> {
    let ctx = at.map(|rev| TrxContext {
        committed: vec![],
        rev,
        trx_id: None,
    });
    let r = c
        .get(BlockGets {
            block_ids: vec![bid(block)],
            context: ctx,
        })
        .await
        .ok()?;
    let g = r.get(&bid(block))?;
    Some((
        g.state.latest.as_ref()?.rev,
        g.block.as_ref()?.fields["items"].clone(),
    ))
}

#[actix_rt::test]
async fn sigkill_a_member_mid_stream() {
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let b = NodeProcess::start(dirs[1].path(), &["--bootstrap", &a.addr]);
    let c = NodeProcess::start(dirs[2].path(), &["--bootstrap", &a.addr]);
    let (ca, cb) = (client(&a.addr), client(&b.addr));
    // Wait until the cluster has formed: a write through A lands on B and C.
    eventually(Duration::from_secs(30), || async {
        write(&ca, "probe", 1, insert("probe")).await
    })
    .await;
    let cc = client(&c.addr);
    eventually(Duration::from_secs(30), || async {
        latest(&cc, "probe", None).await.is_some()
    })
    .await;

    // A stream of appends to one block; C is killed with SIGKILL in the middle.
    assert!(write(&ca, "init", 1, insert("s")).await);
    let mut acked: Vec<Rev> = vec![1];
    let mut c = Some(c);
    for rev in 2..=30 {
        if rev == 12 {
            let mut victim = c.take().unwrap();
            victim.child.kill().unwrap();
            victim.child.wait().unwrap();
        }
        if write(&ca, &format!("w{rev}"), rev, append("s", rev as i64)).await {
            acked.push(rev);
        }
    }
    assert!(
        acked.len() >= 25,
        "writes kept succeeding on the majority: {acked:?}"
    );
    let top = *acked.last().unwrap();
    // Every acknowledged commit is on both survivors (B may take a moment to apply the last).
    for cl in [&ca, &cb] {
        eventually(Duration::from_secs(10), || async {
            latest(cl, "s", None).await.is_some_and(|(r, _)| r == top)
        })
        .await;
        for rev in &acked {
            let (r, items) = latest(cl, "s", Some(*rev)).await.unwrap();
            assert_eq!(r, *rev);
            let want: Vec<serde_json::Value> = acked
                .iter()
                .rev()
                .filter(|x| **x <= *rev && **x > 1)
                .map(|x| json!(x))
                .collect();
            assert_eq!(items, json!(want), "rev {rev}");
        }
    }

    // C restarts with its data, rejoins, and catches up when asked at the latest revision.
    let c = NodeProcess::start(dirs[2].path(), &["--bootstrap", &a.addr]);
    let cc = client(&c.addr);
    eventually(Duration::from_secs(30), || async {
        latest(&cc, "s", Some(top))
            .await
            .is_some_and(|(r, _)| r == top)
    })
    .await;
    let (_, items) = latest(&cc, "s", None).await.unwrap();
    assert_eq!(
        items,
        latest(&ca, "s", None).await.unwrap().1,
        "C serves the same latest block"
    );
    drop((a, b, c));
}

fn insert(id: &str) -> Transforms {
    let block = serde_json::from_value(
        json!({"header": {"id": id, "type": "T", "collectionId": "c"}, "items": []}),
    )
    .unwrap();
    Transforms {
        inserts: Some([(bid(id), block)].into()),
        ..Transforms::default()
    }
}

fn append(id: &str, v: i64) -> Transforms {
    let op = BlockOperation {
        entity: "items".into(),
        index: 0,
        delete_count: 0,
        inserted: json!([v]),
    };
    Transforms {
        updates: Some([(bid(id), vec![op])].into()),
        ..Transforms::default()
    }
}

/// A phase-1 record for a pend inserting `block` among the given members, as a
/// coordinator would build it (the test process plays the coordinator).
fn record_for(
    members: &[&NodeProcess],
    block: &str,
    ttl_ms: u64,
) -> optimystic_actors::cluster::ClusterRecord {
    use base64::Engine as _;
    let message = RepoMessage {
        operations: vec![RepoOperation::Pend(PendRequest {
            trx_id: TrxId::new(format!("orphan-{block}")).unwrap(),
            rev: Some(1),
            transforms: insert(block),
            policy: PendPolicy::Fail,
        })],
        expiration: Some(optimystic_actors::net::now_ms() + ttl_ms),
    };
    let peers = members
        .iter()
        .map(|m| {
            let peer: libp2p::PeerId = m.peer_id().parse().unwrap();
            let key =
                libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).unwrap();
            let public_key =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.encode_protobuf());
            (
                peer.to_string(),
                optimystic_actors::cluster::ClusterPeer {
                    multiaddrs: vec![m.addr.clone()],
                    public_key,
                },
            )
        })
        .collect();
    optimystic_actors::cluster::ClusterRecord {
        message_hash: optimystic_actors::cluster::message_hash(&message),
        peers,
        message,
        promises: Default::default(),
        commits: Default::default(),
    }
}

#[actix_rt::test]
async fn coordinator_gone_between_phases() {
    use optimystic_actors::cluster::ClusterRecord;
    use optimystic_actors::net::cluster_update;
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let b = NodeProcess::start(dirs[1].path(), &["--bootstrap", &a.addr]);
    let c = NodeProcess::start(dirs[2].path(), &["--bootstrap", &a.addr]);
    let (ca, cb, cc) = (client(&a.addr), client(&b.addr), client(&c.addr));
    eventually(Duration::from_secs(30), || async {
        write(&ca, "probe", 1, insert("probe")).await
    })
    .await;
    let cfg = NetConfig {
        client_only: true,
        ..NetConfig::default()
    };
    let metrics = std::sync::Arc::new(NetMetrics::default());
    let net = NetClient::new(
        actix::Actor::start(SwarmActor::new(
            build_swarm(Keypair::generate_ed25519(), &cfg).unwrap(),
            cfg,
            None,
            None,
            metrics.clone(),
        )),
        metrics,
    );
    let nodes = [&a, &b, &c];
    let send = |i: usize, r: ClusterRecord| {
        let (net, peer, addr) = (
            net.clone(),
            nodes[i].peer_id().parse().unwrap(),
            nodes[i].addr.parse().unwrap(),
        );
        async move {
            cluster_update(&net, peer, vec![addr], r, Duration::from_secs(10))
                .await
                .unwrap()
        }
    };

    // Phase 1 only, then the coordinator is gone: every member holds the block.
    let r1 = record_for(&nodes, "held", 1_500);
    futures::join!(
        send(0, r1.clone()),
        send(1, r1.clone()),
        send(2, r1.clone())
    );
    assert!(
        !write(&cb, "early", 1, insert("held")).await,
        "the block is held by the orphan"
    );
    // No block stays locked past expiry plus grace.
    let started = std::time::Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        if write(&cb, &format!("late{n}"), 1, insert("held")).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "held past expiry plus grace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Phase 2 reaches A only: once settled, all three applied it, not some.
    let mut r2 = record_for(&nodes, "split", 1_500);
    let replies = futures::join!(
        send(0, r2.clone()),
        send(1, r2.clone()),
        send(2, r2.clone())
    );
    for (reply, i) in [(replies.0, 0), (replies.1, 1), (replies.2, 2)] {
        let id = nodes[i].peer_id();
        r2.promises.insert(id.clone(), reply.promises[&id].clone());
    }
    let done = send(0, r2.clone()).await;
    assert!(done.commits.contains_key(&a.peer_id()));
    let trx = TrxId::new("orphan-split").unwrap();
    for cl in [&ca, &cb, &cc] {
        // The pend executed everywhere: the transaction is pending on "split" on every node.
        eventually(Duration::from_secs(20), || {
            let trx = trx.clone();
            async move {
                cl.get(BlockGets {
                    block_ids: vec![bid("split")],
                    context: None,
                })
                .await
                .is_ok_and(|r| {
                    r[&bid("split")]
                        .state
                        .pendings
                        .as_ref()
                        .is_some_and(|p| p.contains(&trx))
                })
            }
        })
        .await;
    }
    drop((a, b, c));
}
