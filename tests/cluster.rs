//! Three nodes on loopback running signed two-phase commit: writes land on every
//! member, revisions stay ordered across coordinators, racing pends have exactly
//! one winner, and tampered or replayed records change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use libp2p::identity::Keypair;
use optimystic::node::NodeHandle;
use optimystic_actors::cluster::{sign_promise, ClusterRecord, TxnStore, VoteType};
use optimystic_actors::model::*;
use optimystic_actors::net::{cluster_update, peer_of, NetClient, NetError};
use serde_json::json;
use support::*;

fn members_of(nodes: &[(NodeHandle, libp2p::Multiaddr)]) -> Vec<(String, String)> {
    nodes
        .iter()
        .map(|(n, a)| (n.peer_id().to_string(), a.to_string()))
        .collect()
}

fn three_dirs() -> [tempfile::TempDir; 3] {
    [(); 3].map(|()| tempfile::tempdir().unwrap())
}

/// Delivers `r` to `node` on the cluster protocol; its answer.
async fn deliver(
    net: &NetClient,
    node: &(NodeHandle, libp2p::Multiaddr),
    r: ClusterRecord,
) -> ClusterRecord {
    cluster_update(
        net,
        node.0.peer_id(),
        vec![node.1.clone()],
        r,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

async fn write_via(
    node: &NodeHandle,
    client_net: &NetClient,
    addr: &libp2p::Multiaddr,
    trx: &str,
    rev: Rev,
    t: Transforms,
) -> (PendResult, Option<CommitResult>) {
    let _ = node;
    let c = optimystic_actors::net::RepoClient::new(
        client_net.clone(),
        peer_of(addr).unwrap(),
        vec![addr.clone()],
        CLIENT_TIMEOUT,
    );
    let ids: Vec<BlockId> = t.block_ids().into_iter().collect();
    let p = c
        .pend(PendRequest {
            trx_id: TrxId::new(trx).unwrap(),
            rev: Some(rev),
            transforms: t,
            policy: PendPolicy::Fail,
        })
        .await
        .unwrap();
    if !p.is_success() {
        return (p, None);
    }
    let r = c
        .commit(CommitRequest {
            trx_id: TrxId::new(trx).unwrap(),
            block_ids: ids,
            rev,
            header_id: None,
            tail_id: None,
        })
        .await
        .unwrap();
    (p, Some(r))
}

/// A pendCommit of `t` as `trx` at `rev` (policy `f`), committing exactly its blocks.
fn one_round(trx: &str, rev: Rev, t: Transforms) -> PendCommitRequest {
    let ids: Vec<BlockId> = t.block_ids().into_iter().collect();
    PendCommitRequest {
        pend: PendRequest {
            trx_id: TrxId::new(trx).unwrap(),
            rev: Some(rev),
            transforms: t,
            policy: PendPolicy::Fail,
        },
        commit: CommitRequest {
            trx_id: TrxId::new(trx).unwrap(),
            block_ids: ids,
            rev,
            header_id: None,
            tail_id: None,
        },
    }
}

#[actix_rt::test]
async fn writes_land_on_every_member_in_order() {
    let dirs = three_dirs();
    let nodes = three_nodes(&dirs).await;
    let net = client_net();
    let x = bid("x");
    // rev 1 through A, rev 2 through B, rev 3 through C.
    let (p, c) = write_via(&nodes[0].0, &net, &nodes[0].1, "t1", 1, insert("x")).await;
    assert!(p.is_success() && c.unwrap().is_success(), "{p:?}");
    for (i, (t, rev)) in [("t2", 2), ("t3", 3)].into_iter().enumerate() {
        let (node, addr) = &nodes[i + 1];
        let (p, c) = write_via(node, &net, addr, t, rev, append("x", rev as i64)).await;
        assert!(p.is_success() && c.unwrap().is_success(), "{t}: {p:?}");
    }
    for (node, _) in &nodes {
        // The reply came once a majority committed; the last member follows at once.
        let storage = node.storage().clone();
        eventually(Duration::from_secs(10), || {
            let storage = storage.clone();
            async move {
                storage
                    .get_meta(&bid("x"))
                    .unwrap()
                    .and_then(|m| m.latest)
                    .is_some_and(|l| l.rev == 3)
            }
        })
        .await;
        // Durable on every member, without any restoration.
        let meta = node.storage().get_meta(&x).unwrap().expect("replicated");
        assert_eq!(
            meta.latest
                .as_ref()
                .map(|l| (l.trx_id.as_str().to_string(), l.rev)),
            Some(("t3".to_string(), 3))
        );
        let revs: Vec<Rev> = node
            .storage()
            .list_revisions(&x, 0, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.rev)
            .collect();
        assert_eq!(revs, vec![1, 2, 3]);
        let r = node
            .repo()
            .get(BlockGets {
                block_ids: vec![x.clone()],
                context: None,
                consistency: None,
            })
            .await
            .unwrap();
        assert_eq!(r[&x].block.as_ref().unwrap().fields["items"], json!([3, 2]));
    }
    // Each node coordinated one write: a pend and a commit, both agreed by the cluster.
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let mut committed = 0.0;
    for (node, _) in &nodes {
        let m = node.render_metrics();
        committed += metric(&m, r#"optimystic_transactions_total{outcome="committed"}"#);
        assert_eq!(
            metric(&m, r#"optimystic_transactions_total{outcome="aborted"}"#),
            0.0
        );
        assert!(
            metric(
                &m,
                r#"optimystic_actor_messages_handled_total{actor="cluster_member"}"#
            ) >= 6.0,
            "{m}"
        );
        assert!(
            metric(
                &m,
                r#"optimystic_actor_messages_handled_total{actor="coordinator"}"#
            ) >= 2.0
        );
        assert!(
            m.contains(r#"optimystic_transaction_phase_seconds_count{phase="promise"} 2"#),
            "{m}"
        );
    }
    assert_eq!(committed, 6.0);
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn racing_pends_have_exactly_one_winner() {
    let dirs = three_dirs();
    let nodes = three_nodes(&dirs).await;
    let net = client_net();
    let (p, c) = write_via(&nodes[0].0, &net, &nodes[0].1, "base", 1, insert("hot")).await;
    assert!(p.is_success() && c.unwrap().is_success());
    let mut wins = 0;
    let mut conflicts = 0;
    for round in 0..10i64 {
        let rev = 2 + round as u64;
        let pend = |i: usize| {
            let c = optimystic_actors::net::RepoClient::new(
                net.clone(),
                peer_of(&nodes[i].1).unwrap(),
                vec![nodes[i].1.clone()],
                Duration::from_secs(10),
            );
            async move {
                let t = TrxId::new(format!("r{round}n{i}")).unwrap();
                c.pend(PendRequest {
                    trx_id: t,
                    rev: Some(rev),
                    transforms: append("hot", round),
                    policy: PendPolicy::Fail,
                })
                .await
            }
        };
        let (a, b) = futures::join!(pend(1), pend(2));
        let results = [a.unwrap(), b.unwrap()];
        let winners: Vec<usize> = (0..2).filter(|i| results[*i].is_success()).collect();
        // Each member promises the first record to reach it, so with three
        // members one of two racing proposals has a majority: exactly one wins.
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} pends won: {results:?}",
            winners.len()
        );
        for r in &results {
            if let PendResult::Stale(s) = r {
                let reason = s.reason.clone().unwrap_or_default();
                let pending = s.pending.as_ref().is_some_and(|p| !p.is_empty());
                assert!(
                    reason.contains("conflict:") || pending,
                    "loser must name the conflict: {r:?}"
                );
                conflicts += 1;
            }
        }
        // Settle the round: commit the winner (or cancel both) so the next round starts clean.
        let c = optimystic_actors::net::RepoClient::new(
            net.clone(),
            peer_of(&nodes[0].1).unwrap(),
            vec![nodes[0].1.clone()],
            Duration::from_secs(10),
        );
        for i in 0..2 {
            let t = TrxId::new(format!("r{round}n{}", i + 1)).unwrap();
            if winners.contains(&i) {
                wins += 1;
                let r = c
                    .commit(CommitRequest {
                        trx_id: t,
                        block_ids: vec![bid("hot")],
                        rev,
                        header_id: None,
                        tail_id: None,
                    })
                    .await
                    .unwrap();
                assert!(r.is_success());
            } else {
                c.cancel(TrxBlocks {
                    trx_id: t,
                    block_ids: vec![bid("hot")],
                })
                .await
                .unwrap();
            }
        }
        // The next round starts clean only once every member has applied this
        // round's commit (the commit is acknowledged at a majority; the third
        // member holds the block reserved until it applies it, and a member
        // refusing both racers that way could leave neither a majority). Each
        // member's own copy, as its block protocol serves it: at this round's
        // revision, nothing pending.
        let clean = || async {
            let mut all = true;
            for (_, addr) in &nodes {
                let own = optimystic_actors::net::fetch_archive(
                    &net,
                    peer_of(addr).unwrap(),
                    vec![addr.clone()],
                    &bid("hot"),
                    None,
                    Duration::from_secs(5),
                )
                .await;
                all &= matches!(&own, Ok(Some(a)) if a.pending.is_empty()
                    && a.revisions.last().map(|r| r.trx_rev.rev) == Some(rev));
            }
            all
        };
        eventually(Duration::from_secs(20), clean).await;
    }
    assert_eq!(
        (wins, conflicts),
        (10, 10),
        "one winner and one loser per round"
    );
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn tampered_and_replayed_records_change_nothing() {
    let dirs = three_dirs();
    let nodes = three_nodes(&dirs).await;
    let net = client_net();
    let (p, c) = write_via(&nodes[0].0, &net, &nodes[0].1, "t1", 1, insert("y")).await;
    assert!(p.is_success() && c.unwrap().is_success());
    // Let every member settle (the reply came once a majority had committed).
    for (n, _) in &nodes {
        let storage = n.storage().clone();
        eventually(Duration::from_secs(10), || {
            let storage = storage.clone();
            async move { storage.get_meta(&bid("y")).unwrap().is_some() }
        })
        .await;
    }
    // A committed record, as stored by member A.
    let store = TxnStore::new(nodes[0].0.storage().clone());
    let committed_records = || -> Vec<ClusterRecord> {
        store
            .all()
            .unwrap()
            .into_iter()
            .filter(|(_, s)| !s.record.commits.is_empty() && s.record.message.change.is_none())
            .map(|(_, s)| s.record)
            .collect()
    };
    eventually(Duration::from_secs(10), || {
        let n = committed_records().len();
        async move { n == 2 }
    })
    .await;
    let decided = committed_records();
    assert_eq!(decided.len(), 2, "pend and commit were each agreed");
    let b_peer = nodes[1].0.peer_id();
    let b_addr = vec![nodes[1].1.clone()];
    let code = |e: NetError| match e {
        NetError::Remote { code, .. } => code,
        other => panic!("expected a remote error, got {other:?}"),
    };
    let revs_before = nodes[1]
        .0
        .storage()
        .list_revisions(&bid("y"), 0, 100)
        .unwrap();

    // Replay of a decided record (both phases): answered, nothing applied twice.
    for r in &decided {
        let back = cluster_update(
            &net,
            b_peer,
            b_addr.clone(),
            r.clone(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(back.commits.contains_key(&b_peer.to_string()));
    }
    assert_eq!(
        nodes[1]
            .0
            .storage()
            .list_revisions(&bid("y"), 0, 100)
            .unwrap(),
        revs_before
    );

    let mut forged = decided[0].clone();
    let outsider = Keypair::generate_ed25519();
    let state = || {
        Some(
            optimystic_actors::cluster::message_blocks(&decided[0].message.operations)
                .into_iter()
                .map(|b| (b, optimystic_actors::cluster::BlockState::default()))
                .collect(),
        )
    };
    forged.promises.insert(
        b_peer.to_string(),
        sign_promise(&outsider, &forged, VoteType::Approve, None, state()),
    );
    assert_eq!(
        code(
            cluster_update(
                &net,
                b_peer,
                b_addr.clone(),
                forged,
                Duration::from_secs(10)
            )
            .await
            .unwrap_err()
        ),
        "invalid_record"
    );

    let mut non_member = decided[0].clone();
    let (id, _) = optimystic_actors::cluster::peer_entry(&outsider, vec![]);
    non_member.promises.insert(
        id,
        sign_promise(&outsider, &non_member, VoteType::Approve, None, state()),
    );
    assert_eq!(
        code(
            cluster_update(
                &net,
                b_peer,
                b_addr.clone(),
                non_member,
                Duration::from_secs(10)
            )
            .await
            .unwrap_err()
        ),
        "invalid_record"
    );

    let mut altered = decided[0].clone();
    let e = altered.message.expiration.map(|e| e + 1);
    std::sync::Arc::make_mut(&mut altered.message).expiration = e;
    assert_eq!(
        code(
            cluster_update(
                &net,
                b_peer,
                b_addr.clone(),
                altered,
                Duration::from_secs(10)
            )
            .await
            .unwrap_err()
        ),
        "invalid_record"
    );

    let mut expired = decided[0].clone();
    std::sync::Arc::make_mut(&mut expired.message).expiration = Some(1);
    expired.message_hash = optimystic_actors::cluster::message_hash(&expired.message);
    assert_eq!(
        code(
            cluster_update(
                &net,
                b_peer,
                b_addr.clone(),
                expired,
                Duration::from_secs(10)
            )
            .await
            .unwrap_err()
        ),
        "invalid_record"
    );

    assert_eq!(
        nodes[1]
            .0
            .storage()
            .list_revisions(&bid("y"), 0, 100)
            .unwrap(),
        revs_before
    );
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn members_settle_by_recovery_when_the_coordinator_vanishes() {
    let dirs = four_dirs();
    // The coordinator: a member of the record that proposes, then vanishes.
    let (nodes, coordinator) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let net = client_net();
    let send = |i: usize, r: ClusterRecord| {
        let (id, addr) = (nodes[i].0.peer_id().to_string(), nodes[i].1.to_string());
        let c = &coordinator;
        async move { c.send(&id, &addr, r).await.unwrap() }
    };

    // 1. Phase 1 reaches B and C, then the coordinator dies: no decision anywhere.
    let made = std::time::Instant::now();
    let r1 = coordinator.pend_record(&members_of(&nodes), "locked", 1_500);
    let (pb, pc) = futures::join!(send(1, r1.clone()), send(2, r1.clone()));
    assert!(
        pb.promises.contains_key(&nodes[1].0.peer_id().to_string())
            && pc.promises.contains_key(&nodes[2].0.peer_id().to_string())
    );
    // The block is held: a pend through A is refused, naming the orphan.
    let (p, _) = write_via(
        &nodes[0].0,
        &net,
        &nodes[0].1,
        "blocked",
        1,
        insert("locked"),
    )
    .await;
    let PendResult::Stale(s) = p else {
        panic!("pend went through a held block")
    };
    assert!(s.reason.unwrap_or_default().contains(&r1.message_hash));
    // Past expiry plus grace, B and C ask around, find no decision, and fence:
    // the block is free by the record's deadline, the recovery it leads to and
    // the write in flight then (a pend and a commit).
    let released_by = support::faults::released_within(Duration::from_millis(1_500), 2);
    let started = std::time::Instant::now();
    loop {
        let (p, c) = write_via(
            &nodes[0].0,
            &net,
            &nodes[0].1,
            &format!("later{}", started.elapsed().as_millis()),
            1,
            insert("locked"),
        )
        .await;
        if p.is_success() {
            assert!(c.unwrap().is_success());
            break;
        }
        assert!(
            made.elapsed() < released_by,
            "blocks stayed locked {:?} after the record was made, past expiry plus grace",
            made.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (n, _) in &nodes[1..] {
        assert!(
            n.render_metrics()
                .contains(r#"optimystic_transactions_total{outcome="expired"} 1"#),
            "recovery fence counted"
        );
    }
    // 2. Phase 2 reaches only B: C must learn the decision from B and apply it too.
    let mut r2 = coordinator.pend_record(&members_of(&nodes), "halfway", 1_500);
    let (pb, pc) = futures::join!(send(1, r2.clone()), send(2, r2.clone()));
    for (reply, i) in [(pb, 1), (pc, 2)] {
        let id = nodes[i].0.peer_id().to_string();
        r2.promises.insert(id.clone(), reply.promises[&id].clone());
    }
    coordinator.promise(&mut r2);
    let committed = send(1, r2.clone()).await;
    assert!(committed
        .commits
        .contains_key(&nodes[1].0.peer_id().to_string()));
    let trx = TrxId::new("orphan-halfway").unwrap();
    let (b_store, c_store) = (nodes[1].0.storage().clone(), nodes[2].0.storage().clone());
    assert!(
        b_store
            .get_pending(&bid("halfway"), &trx)
            .unwrap()
            .is_some(),
        "B executed the pend"
    );
    assert!(
        c_store
            .get_pending(&bid("halfway"), &trx)
            .unwrap()
            .is_none(),
        "C has not yet"
    );
    eventually(Duration::from_secs(20), || {
        let c_store = c_store.clone();
        let trx = trx.clone();
        async move {
            c_store
                .get_pending(&bid("halfway"), &trx)
                .unwrap()
                .is_some()
        }
    })
    .await;
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// A slow member can hear a commit's decision before the decision of the pend it
/// commits (the coordinator answers the pend once a majority has it, and the
/// client commits at once). It applies the commit at once, taking the pending
/// transform from a member that holds it; the pend's decision, arriving late or
/// learned in recovery, finds the copy moved past its base and is fenced (never
/// pended again): it ends with the committed revision and nothing pending.
#[actix_rt::test]
async fn a_member_that_misses_the_pend_decision_still_applies_the_commit() {
    let dirs = four_dirs();
    let (nodes, coordinator) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let send = |i: usize, r: ClusterRecord| {
        let (id, addr) = (nodes[i].0.peer_id().to_string(), nodes[i].1.to_string());
        let c = &coordinator;
        async move { c.send(&id, &addr, r).await.unwrap() }
    };
    let members = members_of(&nodes);
    let id = |i: usize| nodes[i].0.peer_id().to_string();
    let c_store = nodes[2].0.storage().clone();
    let c_txns = TxnStore::new(c_store.clone());
    for (block, late) in [("late", true), ("never", false)] {
        let trx = TrxId::new(format!("orphan-{block}")).unwrap();
        // The pend: promised by all three, decided by A and B only.
        let mut pend = coordinator.pend_record(&members, block, 3_000);
        let replies = futures::future::join_all((0..3).map(|i| send(i, pend.clone()))).await;
        for (i, r) in replies.iter().enumerate() {
            pend.promises.insert(id(i), r.promises[&id(i)].clone());
        }
        coordinator.promise(&mut pend);
        for i in 0..2 {
            assert!(send(i, pend.clone()).await.commits.contains_key(&id(i)));
        }
        // The commit: A and B promise; C, still holding the block for the
        // undecided pend, refuses.
        let op = RepoOperation::Commit(CommitRequest {
            trx_id: trx.clone(),
            block_ids: vec![bid(block)],
            rev: 1,
            header_id: None,
            tail_id: None,
        });
        let mut commit = coordinator.record(&members, vec![op], 10_000);
        let replies = futures::future::join_all((0..3).map(|i| send(i, commit.clone()))).await;
        for (i, r) in replies.iter().enumerate() {
            commit.promises.insert(id(i), r.promises[&id(i)].clone());
        }
        coordinator.promise(&mut commit);
        assert_eq!(commit.promises[&id(0)].vote, VoteType::Approve);
        assert_eq!(commit.promises[&id(2)].vote, VoteType::Reject, "{block}");
        // Decided: every member applies it and signs. C first: it has no pending
        // transaction, and takes it from A or B, which report it pending.
        for i in [2, 0, 1] {
            let r = send(i, commit.clone()).await;
            assert_eq!(r.commits[&id(i)].vote, VoteType::Approve, "{block}: {i}");
        }
        for (n, _) in &nodes {
            let meta = n.storage().get_meta(&bid(block)).unwrap().unwrap();
            assert_eq!(meta.latest.unwrap().rev, 1, "{block}");
        }
        if late {
            // C's copy has moved past the pend's base (the commit applied there):
            // it fences the pend, and adds nothing back pending.
            let r = send(2, pend.clone()).await;
            assert_eq!(r.commits[&id(2)].vote, VoteType::Reject, "{block}");
        }
        // C decides the pend, by recovery when it never heard the decision...
        eventually(Duration::from_secs(15), || {
            let phase = c_txns.load(&pend.message_hash).unwrap().map(|s| s.phase);
            async move { phase.is_some_and(|p| p.is_decided()) }
        })
        .await;
        // ...and holds the committed revision once, with nothing pending.
        assert!(
            c_store.get_pending(&bid(block), &trx).unwrap().is_none(),
            "{block}: the pend stayed pending on C"
        );
        assert_eq!(
            c_store.list_revisions(&bid(block), 0, 10).unwrap().len(),
            1,
            "{block}"
        );
    }
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// A change of `region` from `from` to `to`, proposed by `proposer` (a member of
/// `from`) among `members` and itself (docs/CONSENSUS.md, "A change is a record").
fn change_record(
    proposer: &Proposer,
    members: &[(String, String)],
    region: Region,
    from: Config,
    to: Config,
) -> ClusterRecord {
    let mut change = proposer.record(members, vec![], 30_000);
    let mut message = change.message.as_ref().clone();
    message.change = Some(ConfigChange {
        regions: vec![region],
        to,
        from,
        retire: false,
    });
    change.message_hash = optimystic_actors::cluster::message_hash(&message);
    change.message = message.into();
    change
}

/// Agrees `change` of `region` with A's and B's promises and the proposer's,
/// delivering the decision to A and B only; both then hold `to`.
async fn agree_with_a_and_b(
    proposer: &Proposer,
    nodes: &[(NodeHandle, libp2p::Multiaddr)],
    mut change: ClusterRecord,
    region: Region,
    to: &Config,
) {
    let net = &proposer.net;
    let proposal = change.clone();
    for node in &nodes[..2] {
        let id = node.0.peer_id().to_string();
        let r = deliver(net, node, proposal.clone()).await;
        assert_eq!(r.promises[&id].vote, VoteType::Approve);
        change.promises.insert(id.clone(), r.promises[&id].clone());
    }
    proposer.promise(&mut change);
    for node in &nodes[..2] {
        let id = node.0.peer_id().to_string();
        let r = deliver(net, node, change.clone()).await;
        assert_eq!(r.commits[&id].vote, VoteType::Approve);
        assert_eq!(node.0.configs().config(region), Some(to.clone()));
    }
}

/// A member that never heard of an agreed change: the proposer (a member) removes
/// itself from one region's configuration with A's, B's and its own promises and
/// delivers the decision to A and B only. C still holds the old configuration,
/// counted as a member of the new one; its co-members send it the decided change
/// (docs/CONSENSUS.md, "A member that missed a change") and it applies it, with
/// no write, read or restart.
#[actix_rt::test]
async fn a_member_that_missed_a_change_is_sent_it() {
    let dirs = four_dirs();
    let (nodes, proposer) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let members = members_of(&nodes);
    let region = Region::new(0);
    let from = nodes[2].0.configs().config(region).unwrap();
    let to = from.without(&proposer.id());
    let change = change_record(&proposer, &members, region, from.clone(), to.clone());
    agree_with_a_and_b(&proposer, &nodes, change, region, &to).await;
    assert_eq!(nodes[2].0.configs().config(region), Some(from));
    eventually(Duration::from_secs(30), || async {
        nodes[2].0.configs().config(region) == Some(to.clone())
    })
    .await;
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// A member removed by a change it never heard of: the proposer (a member)
/// removes C from one region's configuration with A's, B's and its own promises
/// and delivers the decision to A and B only. C still holds the old
/// configuration and counts itself a member; A and B send it the decided change
/// (docs/CONSENSUS.md, "A member that missed a change") and it applies it: it
/// then holds the new configuration as a peer outside it.
#[actix_rt::test]
async fn a_member_removed_by_a_change_it_missed_is_sent_it() {
    let dirs = four_dirs();
    let (nodes, proposer) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let members = members_of(&nodes);
    let region = Region::new(7);
    let c = nodes[2].0.peer_id().to_string();
    let from = nodes[2].0.configs().config(region).unwrap();
    let to = from.without(&c);
    let change = change_record(&proposer, &members, region, from.clone(), to.clone());
    agree_with_a_and_b(&proposer, &nodes, change, region, &to).await;
    assert_eq!(nodes[2].0.configs().config(region), Some(from));
    eventually(Duration::from_secs(30), || async {
        nodes[2].0.configs().config(region) == Some(to.clone())
    })
    .await;
    assert!(!nodes[2].0.configs().table().is_member(region));
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn a_member_refuses_new_transactions_past_its_active_limit() {
    let dirs = four_dirs();
    let (nodes, proposer) = three_and_a_proposer(&dirs, |i, c| {
        if i == 1 {
            c.max_active_transactions = 1;
        }
    })
    .await;
    let net = proposer.net.clone();
    let members = members_of(&nodes);
    let b = nodes[1].0.peer_id();
    // Records B refuses keep none of its slots: ones naming no configuration
    // epoch are `wrong_cluster` (docs/CONSENSUS.md, "Writes name their
    // configuration"), however many arrive.
    for i in 0..3 {
        let pend = proposer.pend_record(&members, &format!("unnamed{i}"), 30_000);
        let unnamed = proposer.record_naming(
            &members,
            pend.message.operations.clone(),
            30_000,
            Default::default(),
        );
        let r = cluster_update(
            &net,
            b,
            vec![nodes[1].1.clone()],
            unnamed,
            Duration::from_secs(10),
        );
        match r.await {
            Err(NetError::WrongCluster { .. }) => {}
            other => panic!("a record naming no epoch: {other:?}"),
        }
    }
    // A configuration change B promises (proposed by a member of the region's
    // configuration, as docs/CONSENSUS.md "A change is a record" allows) holds
    // its region, but not B's one slot.
    let used: Vec<Region> = ["held", "other", "elsewhere"]
        .iter()
        .map(|b| Region::of(&bid(b)))
        .collect();
    let region = Region::all().find(|r| !used.contains(r)).unwrap();
    let from = nodes[1].0.configs().config(region).unwrap();
    let a_id = nodes[0].0.peer_id().to_string();
    let to = from.without(&a_id);
    let change = change_record(&proposer, &members, region, from, to);
    let reply = deliver(&net, &nodes[1], change).await;
    assert_eq!(
        reply.promises[&b.to_string()].vote,
        VoteType::Approve,
        "B promises the change"
    );
    // So B's one slot is free for the first transaction: configuration changes,
    // such as those that formed the cluster, never take it.
    let first = proposer.pend_record(&members, "held", 30_000);
    let promised = cluster_update(
        &net,
        b,
        vec![nodes[1].1.clone()],
        first.clone(),
        Duration::from_secs(10),
    )
    .await
    .expect("the first transaction takes B's free slot");
    assert!(promised
        .promises
        .contains_key(&nodes[1].0.peer_id().to_string()));
    // A second transaction while the first is undecided: refused, retryable.
    let second = proposer.pend_record(&members, "other", 30_000);
    let refused = cluster_update(
        &net,
        nodes[1].0.peer_id(),
        vec![nodes[1].1.clone()],
        second.clone(),
        Duration::from_secs(10),
    )
    .await;
    match refused {
        Err(NetError::Remote { code, .. }) => assert_eq!(code, "busy"),
        other => panic!("second transaction past the limit: {other:?}"),
    }
    // The transaction already in progress is still served.
    let again = deliver(&net, &nodes[1], first).await;
    assert!(again
        .promises
        .contains_key(&nodes[1].0.peer_id().to_string()));
    // The refused one left nothing behind: the block is not held on B.
    assert!(nodes[1]
        .0
        .storage()
        .list_pending(&bid("other"))
        .unwrap()
        .is_empty());
    // A record whose peer set leaves B out: B is not a member, and says so.
    let b_id = nodes[1].0.peer_id().to_string();
    let without_b: Vec<(String, String)> = members
        .iter()
        .filter(|(id, _)| *id != b_id)
        .cloned()
        .collect();
    let elsewhere = proposer.pend_record(&without_b, "elsewhere", 30_000);
    let refused = cluster_update(
        &net,
        nodes[1].0.peer_id(),
        vec![nodes[1].1.clone()],
        elsewhere,
        Duration::from_secs(10),
    )
    .await;
    match refused {
        Err(NetError::Remote { code, .. }) => assert_eq!(code, "not_a_member"),
        other => panic!("a record for other peers: {other:?}"),
    }
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn member_connections_outlive_the_idle_timeout() {
    let dirs = three_dirs();
    let idle = |c: &mut optimystic::node::NodeConfig| c.net.idle_timeout = Duration::from_secs(1);
    let a = start_node_with(dirs[0].path(), vec![], idle).await;
    let b = start_node_with(dirs[1].path(), vec![a.1.clone()], idle).await;
    let net = a.0.net().clone();
    let b_id = b.0.peer_id();
    eventually(Duration::from_secs(30), || {
        let net = net.clone();
        async move { net.status().await.unwrap().members.len() == 1 }
    })
    .await;
    // Nothing is written for four idle timeouts: the members stay connected.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        let s = net.status().await.unwrap();
        assert!(
            s.connected.contains(&b_id) && s.members.len() == 1,
            "an idle member connection closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A client's idle connection still closes.
    let client = client_net();
    repo_client(&client, &a.1.to_string())
        .get(BlockGets {
            block_ids: vec![bid("x")],
            context: None,
            consistency: None,
        })
        .await
        .unwrap();
    let client_id = client.status().await.unwrap().peer_id;
    eventually(Duration::from_secs(10), || {
        let net = net.clone();
        async move { net.status().await.unwrap().connected.contains(&client_id) }
    })
    .await;
    eventually(Duration::from_secs(10), || {
        let net = net.clone();
        async move { !net.status().await.unwrap().connected.contains(&client_id) }
    })
    .await;
    a.0.shutdown().await;
    b.0.shutdown().await;
}

/// Starts a node whose clusters have `k` members.
async fn start_k(
    dir: &std::path::Path,
    bootstrap: Vec<libp2p::Multiaddr>,
    k: usize,
) -> (NodeHandle, libp2p::Multiaddr) {
    let cfg = optimystic::node::NodeConfig {
        data_dir: dir.to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        cluster_size: k,
        ..optimystic::node::NodeConfig::default()
    };
    let mut node = NodeHandle::start(cfg).await.unwrap();
    let addr = loop {
        if let Some(optimystic_actors::net::NetEvent::Listening(a)) = node.next_event().await {
            break a;
        }
    };
    (node, addr)
}

#[actix_rt::test]
async fn replicas_are_exactly_each_blocks_k_closest_peers() {
    const K: usize = 2;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start_k(dirs[0].path(), vec![], K).await;
    let mut nodes = vec![first];
    for d in &dirs[1..] {
        let boot = nodes[0].1.clone();
        nodes.push(start_k(d.path(), vec![boot], K).await);
    }
    connect_and_settle(&nodes, K).await;
    let peers: Vec<libp2p::PeerId> = nodes.iter().map(|(n, _)| n.peer_id()).collect();
    let net = client_net();
    let mut forwarded_somewhere = false;
    for i in 0..12 {
        let name = format!("k{i}");
        let via = i % nodes.len();
        let (p, c) = write_via(
            &nodes[via].0,
            &net,
            &nodes[via].1,
            &format!("t{i}"),
            1,
            insert(&name),
        )
        .await;
        assert!(p.is_success() && c.unwrap().is_success(), "{name}: {p:?}");
        let cluster = optimystic_actors::membership::target(Region::of(&bid(&name)), &peers, K);
        forwarded_somewhere |= !cluster.contains(&peers[via]);
        for (n, _) in &nodes {
            let storage = n.storage().clone();
            if cluster.contains(&n.peer_id()) {
                eventually(Duration::from_secs(10), || {
                    let (storage, name) = (storage.clone(), name.clone());
                    async move { storage.get_meta(&bid(&name)).unwrap().is_some() }
                })
                .await;
            } else {
                assert!(
                    storage.get_meta(&bid(&name)).unwrap().is_none(),
                    "{name} stored outside its cluster"
                );
            }
        }
    }
    assert!(
        forwarded_somewhere,
        "some writes entered through a node outside the block's cluster"
    );
    // One transaction over two blocks with different clusters: each block lands on
    // its own cluster only (one record per cluster), and both commit.
    let cluster_of =
        |name: &str| optimystic_actors::membership::target(Region::of(&bid(name)), &peers, K);
    let a = "m0".to_string();
    let b = (1..200)
        .map(|i| format!("m{i}"))
        .find(|n| {
            let (ca, cb) = (cluster_of(&a), cluster_of(n));
            ca.iter().all(|p| !cb.contains(p))
        })
        .expect("two blocks with disjoint clusters");
    let mut t = insert(&a);
    t.inserts
        .get_or_insert_with(Default::default)
        .extend(insert(&b).inserts.unwrap_or_default());
    let (p, c) = write_via(&nodes[0].0, &net, &nodes[0].1, "split", 1, t).await;
    assert!(p.is_success(), "{p:?}");
    assert!(c.as_ref().is_some_and(|c| c.is_success()), "{c:?}");
    for name in [&a, &b] {
        let cluster = cluster_of(name);
        for (n, _) in &nodes {
            let storage = n.storage().clone();
            if cluster.contains(&n.peer_id()) {
                eventually(Duration::from_secs(10), || {
                    let (storage, name) = (storage.clone(), name.clone());
                    async move {
                        storage
                            .get_meta(&bid(&name))
                            .unwrap()
                            .and_then(|m| m.latest)
                            .is_some_and(|l| l.rev == 1)
                    }
                })
                .await;
            } else {
                assert!(
                    storage.get_meta(&bid(name)).unwrap().is_none(),
                    "{name} stored outside its cluster"
                );
            }
        }
    }
    // The same as one pendCommit: run as pend then commit, each split by cluster.
    let both = |trx: &str, rev: Rev| {
        let mut t = append(&a, rev as i64);
        t.updates
            .get_or_insert_with(Default::default)
            .extend(append(&b, rev as i64).updates.unwrap_or_default());
        one_round(trx, rev, t)
    };
    let client = optimystic_actors::net::RepoClient::new(
        net.clone(),
        peer_of(&nodes[0].1).unwrap(),
        vec![nodes[0].1.clone()],
        Duration::from_secs(10),
    );
    let r = client.pend_commit(both("split2", 2)).await.unwrap();
    assert!(r.is_success(), "{r:?}");
    // Stale on both clusters: nothing committed, nothing left pending anywhere.
    let r = client.pend_commit(both("split3", 2)).await.unwrap();
    assert!(!r.pend.is_success() && r.commit.is_none(), "{r:?}");
    for name in [&a, &b] {
        let cluster = cluster_of(name);
        for (n, _) in nodes.iter().filter(|(n, _)| cluster.contains(&n.peer_id())) {
            let repo = n.repo().local().clone();
            let name = name.clone();
            eventually(Duration::from_secs(10), || {
                let (repo, name) = (repo.clone(), name.clone());
                async move {
                    let g = repo
                        .get(BlockGets {
                            block_ids: vec![bid(&name)],
                            context: None,
                            consistency: None,
                        })
                        .await
                        .unwrap();
                    let s = &g[&bid(&name)].state;
                    s.pendings.is_none() && s.latest.as_ref().map(|l| l.rev) == Some(2)
                }
            })
            .await;
        }
    }
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// Under load the coordinator carries many client writes in one record; a write on
/// a held block refuses only itself, not the writes that shared its record.
#[actix_rt::test]
async fn concurrent_writes_share_records_and_a_conflict_fails_only_itself() {
    let dirs = four_dirs();
    let (nodes, proposer) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let net = client_net();
    let send = |i: usize, r: ClusterRecord| deliver(&proposer.net, &nodes[i], r);
    // A phase-1 record from a coordinator that never decides holds "held" on all
    // three members for the next 20 s.
    let orphan = proposer.pend_record(&members_of(&nodes), "held", 20_000);
    futures::join!(
        send(0, orphan.clone()),
        send(1, orphan.clone()),
        send(2, orphan.clone())
    );

    const N: usize = 48;
    let writes = (0..N).map(|i| {
        let block = if i == N / 2 {
            "held".to_string()
        } else {
            format!("b{i}")
        };
        let (net, node, addr) = (net.clone(), &nodes[0].0, nodes[0].1.clone());
        async move {
            let t = insert(&block);
            (
                block,
                write_via(node, &net, &addr, &format!("t{i}"), 1, t).await,
            )
        }
    });
    let results = futures::future::join_all(writes).await;
    for (block, (p, c)) in &results {
        if block == "held" {
            let PendResult::Stale(s) = p else {
                panic!("a pend went through a held block: {p:?}")
            };
            let reason = s.reason.clone().unwrap_or_default();
            assert!(reason.contains(&orphan.message_hash), "{reason}");
        } else {
            assert!(p.is_success(), "{block}: {p:?}");
            assert!(c.as_ref().is_some_and(|c| c.is_success()), "{block}: {c:?}");
        }
    }
    // Every member holds every write that succeeded.
    for (node, _) in &nodes {
        let storage = node.storage().clone();
        eventually(Duration::from_secs(10), || {
            let storage = storage.clone();
            async move {
                (0..N).filter(|i| *i != N / 2).all(|i| {
                    storage
                        .get_meta(&bid(&format!("b{i}")))
                        .unwrap()
                        .and_then(|m| m.latest)
                        .is_some_and(|l| l.rev == 1)
                })
            }
        })
        .await;
    }
    // Node A coordinated 2N - 1 client writes (the held block's pend has no commit)
    // in fewer records than writes.
    let m = nodes[0].0.render_metrics();
    let metric = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    };
    let ops = metric("optimystic_transaction_operations_total");
    let records = metric(r#"optimystic_transactions_total{outcome="started"}"#);
    assert!(ops >= (2 * N - 1) as f64, "{m}");
    assert!(
        records < ops,
        "no batching: {records} records for {ops} writes"
    );
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

#[actix_rt::test]
async fn one_round_writes_are_agreed_once_and_race_safely() {
    let dirs = three_dirs();
    let nodes = three_nodes(&dirs).await;
    let net = client_net();
    let client = |i: usize| {
        optimystic_actors::net::RepoClient::new(
            net.clone(),
            peer_of(&nodes[i].1).unwrap(),
            vec![nodes[i].1.clone()],
            Duration::from_secs(10),
        )
    };
    let one = one_round;
    let r = client(1)
        .pend_commit(one("base", 1, insert("hot")))
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    // One agreed record (one promise phase), not two.
    let m = nodes[1].0.render_metrics();
    assert!(
        m.contains(r#"optimystic_transaction_phase_seconds_count{phase="promise"} 1"#),
        "{m}"
    );
    // A pendCommit that is not one transaction is refused up front.
    let mut bad = one("x1", 2, append("hot", 0));
    bad.commit.trx_id = TrxId::new("x2").unwrap();
    match client(0).pend_commit(bad).await {
        Err(NetError::Remote { code, .. }) => assert_eq!(code, "invalid"),
        other => panic!("expected invalid, got {other:?}"),
    }
    // Racing one-round writes at the same revision through different nodes: at
    // most one wins each round, and nothing is left pending anywhere.
    let mut latest = 1;
    for round in 0..8i64 {
        let rev = latest + 1;
        let (ca, cc) = (client(0), client(2));
        let (a, b) = futures::join!(
            ca.pend_commit(one(&format!("r{round}a"), rev, append("hot", round))),
            cc.pend_commit(one(&format!("r{round}c"), rev, append("hot", -round))),
        );
        let results = [a.unwrap(), b.unwrap()];
        let wins = results.iter().filter(|r| r.is_success()).count();
        assert_eq!(
            wins, 1,
            "round {round}: exactly one of two racing writes wins: {results:?}"
        );
        for r in results.iter().filter(|r| !r.is_success()) {
            assert!(r.commit.is_none() || !r.pend.is_success(), "{r:?}");
        }
        latest += wins as u64;
        for (node, _) in &nodes {
            let repo = node.repo().clone();
            eventually(Duration::from_secs(10), || {
                let repo = repo.clone();
                async move {
                    let g = repo
                        .get(BlockGets {
                            block_ids: vec![bid("hot")],
                            context: None,
                            consistency: None,
                        })
                        .await
                        .unwrap();
                    let s = &g[&bid("hot")].state;
                    s.pendings.is_none() && s.latest.as_ref().map(|l| l.rev) == Some(latest)
                }
            })
            .await;
        }
    }
    assert_eq!(latest, 9, "one winner per round");
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// A node outside a block's cluster holds a pending transaction on its copy that
/// no member holds (a cache that heard of no cancel). Its plain read compares
/// with the cluster (docs/CONSENSUS.md, "Reads") and no longer reports the stray
/// transaction, nor keeps it.
#[actix_rt::test]
async fn a_non_member_drops_pending_transactions_no_member_holds() {
    let dirs = four_dirs();
    let three = |c: &mut optimystic::node::NodeConfig| c.cluster_size = 3;
    let a = start_node_with(dirs[0].path(), vec![], three).await;
    let mut nodes = vec![a];
    for d in &dirs[1..] {
        let boot = vec![nodes[0].1.clone()];
        nodes.push(start_node_with(d.path(), boot, three).await);
    }
    connect_and_settle(&nodes, 3).await;
    let outsider = &nodes[3].0;
    let ids: Vec<libp2p::PeerId> = nodes.iter().map(|(n, _)| n.peer_id()).collect();
    let block = (0..)
        .map(|i| format!("cached{i}"))
        .find(|b| {
            !optimystic_actors::membership::target(Region::of(&bid(b)), &ids, 3)
                .contains(&outsider.peer_id())
        })
        .unwrap();
    let (p, c) = write_via(
        &nodes[0].0,
        &client_net(),
        &nodes[0].1,
        "real",
        1,
        insert(&block),
    )
    .await;
    assert!(p.is_success() && c.is_some_and(|c| c.is_success()));
    // The stray pending transaction, put straight into the outsider's own store.
    let stray = outsider
        .repo()
        .local()
        .pend(PendRequest {
            trx_id: TrxId::new("stray").unwrap(),
            rev: Some(1),
            transforms: insert(&block),
            policy: PendPolicy::Continue,
        })
        .await
        .unwrap();
    assert!(stray.is_success(), "{stray:?}");
    assert_eq!(
        outsider.storage().list_pending(&bid(&block)).unwrap().len(),
        1
    );
    let r = outsider
        .repo()
        .get(BlockGets {
            block_ids: vec![bid(&block)],
            context: None,
            consistency: None,
        })
        .await
        .unwrap();
    let g = &r[&bid(&block)];
    assert_eq!(g.state.latest.as_ref().map(|l| l.rev), Some(1));
    assert!(
        g.state.pendings.as_ref().is_none_or(|p| p.is_empty()),
        "a stray pending transaction was served: {g:?}"
    );
    assert!(outsider
        .storage()
        .list_pending(&bid(&block))
        .unwrap()
        .is_empty());
    for (n, _) in nodes {
        n.shutdown().await;
    }
}
