//! The two-phase commit's safety on its own (docs/CONSENSUS.md, "Why it is
//! safe"), one schedule per test, each one a way the protocol used to acknowledge
//! a write a majority did not hold, or let members diverge:
//!
//! 1. a coordinator cut off after phase 1 answered success from its own copy;
//! 2. a member signed an approving commit it had not applied;
//! 3. members decided a pend's policy from their own pending sets;
//! 4. recovery aborted what an unreachable member may have applied, and a retry
//!    through that member then succeeded beside a conflicting write;
//! 5. a write across clusters was cancelled after its commit point;
//! 6. an abort sent after the deadline was refused, leaving blocks held;
//! 7. clocks 10 s apart.
//!
//! Node processes over loopback where the schedule needs crashes or cut links
//! (debug-only fault rules, `optimystic_actors::faults`), in-process nodes and
//! an outside proposer (its own identity, records built as the document says)
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::await_holding_lock)]

mod support;

use std::time::{Duration, Instant};

use optimystic::node::NodeHandle;
use optimystic_actors::cluster::{sign_commit, ClusterRecord, Phase, TxnStore, VoteType};
use optimystic_actors::model::*;
use optimystic_actors::net::{NetError, RepoClient};
use support::faults::{check, release_bound, TestCluster, Workload, RECOVERY_GRACE};
use support::*;

/// Records expire 3 s after they start.
const TIMEOUT: Duration = Duration::from_secs(3);
const FLAGS: [&str; 2] = ["--request-timeout-ms", "3000"];

/// A pendCommit of `t` as `trx`, at `rev`, policy `f`.
fn one_round(trx: &str, rev: Rev, t: Transforms, policy: PendPolicy) -> PendCommitRequest {
    let ids: Vec<BlockId> = t.block_ids().into_iter().collect();
    PendCommitRequest {
        pend: PendRequest {
            trx_id: TrxId::new(trx).unwrap(),
            rev: Some(rev),
            transforms: t,
            policy,
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

/// The latest (rev, trxId) of `block` as the node behind `c` serves it (a plain
/// read, caught up with its cluster).
async fn latest(c: &RepoClient, block: &str) -> Option<TrxRev> {
    let r = c
        .get(BlockGets {
            block_ids: vec![bid(block)],
            context: None,
            consistency: None,
        })
        .await
        .ok()?;
    r.get(&bid(block))?.state.latest.clone()
}

/// Retries `write` until it commits (or `limit` passes).
async fn until_committed<F, Fut>(limit: Duration, mut write: F) -> PendCommitResult
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<PendCommitResult, NetError>>,
{
    let deadline = Instant::now() + limit;
    let mut n = 0;
    loop {
        let r = write(n).await;
        if let Ok(r) = &r {
            if r.is_success() {
                return r.clone();
            }
        }
        assert!(Instant::now() < deadline, "never committed: {r:?}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every client serves `block` at exactly `want`.
async fn everyone_serves(clients: &[RepoClient], block: &str, want: &TrxRev) {
    for (i, c) in clients.iter().enumerate() {
        let deadline = Instant::now() + release_bound(TIMEOUT);
        loop {
            let got = latest(c, block).await;
            if got.as_ref() == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} serves {got:?} for {block}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 1. A coordinator cut off from both other members after phase 1: it applied
/// the write itself and nobody else did. That is not a majority: the client
/// hears "in doubt", never success; the members fence at their deadline, a
/// conflicting write at the same revision then commits through them, and the
/// coordinator's lone copy is repaired to it.
#[actix_rt::test]
async fn a_write_applied_by_the_coordinator_alone_is_never_acknowledged() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &FLAGS).await;
    let clients: Vec<RepoClient> = (0..3).map(|i| c.client(i)).collect();
    // After phase 1, node 0 is cut off: its decisions do not reach 1 and 2, and
    // their requests (recovery queries) do not reach it.
    c.drop_decisions(0, 1);
    c.drop_decisions(0, 2);
    c.drop(1, 0);
    c.drop(2, 0);
    let p = clients[0]
        .pend_commit(one_round("p", 1, insert("x"), PendPolicy::Fail))
        .await;
    match &p {
        Err(NetError::Remote { code, .. }) => assert_eq!(code, codes::IN_DOUBT, "{p:?}"),
        other => panic!("a write only its coordinator applied was answered {other:?}"),
    }
    // Still cut off from them as coordinator: the others fence once the deadline
    // and the grace have passed, and the conflicting write commits through them.
    let q = until_committed(release_bound(TIMEOUT), |_| {
        clients[1].pend_commit(one_round("q", 1, insert("x"), PendPolicy::Fail))
    })
    .await;
    assert!(q.is_success());
    // The coordinator's decision now reaches them too: they refuse it (fenced).
    c.heal();
    let want = TrxRev {
        trx_id: TrxId::new("q").unwrap(),
        rev: 1,
    };
    everyone_serves(&clients, "x", &want).await;
}

fn members_of(nodes: &[(NodeHandle, libp2p::Multiaddr)]) -> Vec<(String, String)> {
    nodes
        .iter()
        .map(|(n, a)| (n.peer_id().to_string(), a.to_string()))
        .collect()
}

/// Delivers `r` to the nodes `to` (indexes); asserts each applied it (an
/// approving commit) and returns how each voted.
async fn apply_on(
    p: &Proposer,
    nodes: &[(NodeHandle, libp2p::Multiaddr)],
    to: &[usize],
    r: &ClusterRecord,
) {
    for &i in to {
        let id = nodes[i].0.peer_id().to_string();
        let back = p
            .send(&id, &nodes[i].1.to_string(), r.clone())
            .await
            .unwrap();
        assert_eq!(back.commits[&id].vote, VoteType::Approve, "node {i}");
        assert_eq!(
            back.commits[&id].effect,
            Some(vec![optimystic_actors::cluster::EffectKind::Ok]),
            "node {i}"
        );
    }
}

/// Collects the promises of `to` (node indexes) on `r`, then adds the proposer's.
async fn promised(
    p: &Proposer,
    nodes: &[(NodeHandle, libp2p::Multiaddr)],
    to: &[usize],
    proposal: ClusterRecord,
) -> ClusterRecord {
    let mut r = proposal.clone();
    for &i in to {
        let id = nodes[i].0.peer_id().to_string();
        let back = p
            .send(&id, &nodes[i].1.to_string(), proposal.clone())
            .await
            .unwrap();
        assert_eq!(back.promises[&id].vote, VoteType::Approve, "node {i}");
        r.promises.insert(id.clone(), back.promises[&id].clone());
    }
    // The proposer holds what the first of them holds (a coordinator reports its
    // own copy, which the others' agree with).
    let first = nodes[to[0]].0.peer_id().to_string();
    p.promise_as(&mut r, &first);
    r
}

/// 2. A member whose copy is behind the decided base, with every member that
/// holds the base gone: it cannot apply the decision, so it does not sign an
/// approving commit (its vote would count towards a majority that does not hold
/// the write). It keeps the decision and applies it once a holder is back.
#[actix_rt::test]
async fn a_member_that_cannot_apply_a_decision_does_not_vote_for_it() {
    let dirs = four_dirs();
    let (mut nodes, p) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let members = members_of(&nodes);
    let id = |i: usize| nodes[i].0.peer_id().to_string();
    // Revision 1 everywhere, revision 2 on A and B only.
    let r1 = p.record(
        &members,
        vec![RepoOperation::PendCommit(one_round(
            "t1",
            1,
            insert("x"),
            PendPolicy::Fail,
        ))],
        30_000,
    );
    let r1 = promised(&p, &nodes, &[0, 1, 2], r1).await;
    apply_on(&p, &nodes, &[0, 1, 2], &r1).await;
    let r2 = p.record(
        &members,
        vec![RepoOperation::PendCommit(one_round(
            "t2",
            2,
            append("x", 2),
            PendPolicy::Fail,
        ))],
        30_000,
    );
    let r2 = promised(&p, &nodes, &[0, 1], r2).await;
    apply_on(&p, &nodes, &[0, 1], &r2).await;
    // Revision 3, decided by A and B, whose states say revision 2.
    let r3 = p.record(
        &members,
        vec![RepoOperation::PendCommit(one_round(
            "t3",
            3,
            append("x", 3),
            PendPolicy::Fail,
        ))],
        30_000,
    );
    let r3 = promised(&p, &nodes, &[0, 1], r3).await;
    // A and B go away before C hears the decision.
    let c_id = id(2);
    let c_addr = nodes[2].1.to_string();
    let b = nodes.remove(1);
    let a = nodes.remove(0);
    a.0.shutdown().await;
    b.0.shutdown().await;
    let back = p.send(&c_id, &c_addr, r3.clone()).await.unwrap();
    assert!(
        !back.commits.contains_key(&c_id),
        "C voted for a decision it could not apply: {:?}",
        back.commits.get(&c_id)
    );
    let c_store = nodes[0].0.storage().clone();
    let c_txns = TxnStore::new(c_store.clone());
    assert_eq!(
        c_txns.load(&r3.message_hash).unwrap().map(|s| s.phase),
        Some(Phase::Decided)
    );
    assert_eq!(
        c_store
            .get_meta(&bid("x"))
            .unwrap()
            .unwrap()
            .latest
            .unwrap()
            .rev,
        1
    );
    // A comes back: C restores revision 2 from it and applies revision 3.
    let a = start_node_with(dirs[0].path(), vec![nodes[0].1.clone()], |c| {
        c.cluster_size = 4
    })
    .await;
    eventually(Duration::from_secs(30), || {
        let phase = c_txns.load(&r3.message_hash).unwrap().map(|s| s.phase);
        async move { phase == Some(Phase::Committed) }
    })
    .await;
    let revs: Vec<Rev> = c_store
        .list_revisions(&bid("x"), 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.rev)
        .collect();
    assert_eq!(revs, vec![1, 2, 3], "C's history has no hole");
    a.0.shutdown().await;
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// 2b. A member behind the decided base whose holders have applied the
/// decision already (their latest is now past the base): it still reaches the
/// base from their history and applies the decision. It used to take only a
/// copy whose latest *was* the base, so it waited, its block reserved, for as
/// long as the decision was kept — refusing every later write and
/// configuration change of that block's region with `conflict`.
#[actix_rt::test]
async fn a_member_behind_a_decision_its_holders_applied_still_applies_it() {
    let dirs = four_dirs();
    let (nodes, p) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let members = members_of(&nodes);
    let pc = |trx: &str, rev: Rev, t: Transforms| {
        vec![RepoOperation::PendCommit(one_round(
            trx,
            rev,
            t,
            PendPolicy::Fail,
        ))]
    };
    // Revision 1 everywhere, revision 2 on A and B only.
    let r1 = p.record(&members, pc("u1", 1, insert("y")), 30_000);
    let r1 = promised(&p, &nodes, &[0, 1, 2], r1).await;
    apply_on(&p, &nodes, &[0, 1, 2], &r1).await;
    let r2 = p.record(&members, pc("u2", 2, append("y", 2)), 30_000);
    let r2 = promised(&p, &nodes, &[0, 1], r2).await;
    apply_on(&p, &nodes, &[0, 1], &r2).await;
    // Revision 3 decided on base 2 and applied by A and B, then C hears it.
    let r3 = p.record(&members, pc("u3", 3, append("y", 3)), 30_000);
    let r3 = promised(&p, &nodes, &[0, 1], r3).await;
    apply_on(&p, &nodes, &[0, 1], &r3).await;
    apply_on(&p, &nodes, &[2], &r3).await;
    let c_store = nodes[2].0.storage().clone();
    let revs: Vec<(Rev, String)> = c_store
        .list_revisions(&bid("y"), 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.rev, r.trx_id.as_str().to_string()))
        .collect();
    assert_eq!(
        revs,
        vec![(1, "u1".into()), (2, "u2".into()), (3, "u3".into())],
        "C's history is the holders', with no hole"
    );
    // Nothing stays reserved on C: the next write of the block gets its promise.
    let r4 = p.record(&members, pc("u4", 4, append("y", 4)), 30_000);
    promised(&p, &nodes, &[0, 1, 2], r4).await;
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// 3. C missed a pend that A and B hold. A pendCommit with policy `f` through C
/// is decided once, from the promises: the pend is pending on an approving
/// member, so the write is blocked on every member — C does not apply it alone
/// while A and B are blocked.
#[actix_rt::test]
async fn a_pend_policy_is_decided_once_for_every_member() {
    let dirs = four_dirs();
    let (nodes, p) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let members = members_of(&nodes);
    let net = client_net();
    let via = |i: usize| repo_client(&net, &nodes[i].1.to_string());
    let r = via(0)
        .pend_commit(one_round("base", 1, insert("x"), PendPolicy::Fail))
        .await
        .unwrap();
    assert!(r.is_success());
    for (n, _) in &nodes {
        let s = n.storage().clone();
        eventually(Duration::from_secs(10), || {
            let s = s.clone();
            async move { s.get_meta(&bid("x")).unwrap().is_some() }
        })
        .await;
    }
    // A pend (no revision, policy c) that A and B apply and C never hears of.
    let pend = RepoOperation::Pend(PendRequest {
        trx_id: TrxId::new("other").unwrap(),
        rev: None,
        transforms: append("x", 9),
        policy: PendPolicy::Continue,
    });
    let other = promised(&p, &nodes, &[0, 1], p.record(&members, vec![pend], 30_000)).await;
    apply_on(&p, &nodes, &[0, 1], &other).await;
    assert!(nodes[2]
        .0
        .storage()
        .list_pending(&bid("x"))
        .unwrap()
        .is_empty());
    // Through C, which has nothing pending: blocked, as on A and B.
    let r = via(2)
        .pend_commit(one_round("mine", 2, append("x", 2), PendPolicy::Fail))
        .await
        .unwrap();
    let PendResult::Stale(s) = &r.pend else {
        panic!("a write blocked on two members went through: {r:?}")
    };
    assert!(
        s.pending
            .as_ref()
            .is_some_and(|p| p.iter().any(|t| t.trx_id.as_str() == "other")),
        "{r:?}"
    );
    assert!(r.commit.is_none());
    for (n, _) in &nodes {
        let meta = n.storage().get_meta(&bid("x")).unwrap().unwrap();
        assert_eq!(
            meta.latest.unwrap().rev,
            1,
            "a member applied the blocked write"
        );
    }
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// 4. The coordinator delivers phase 2 to one member (M) and crashes; M is cut
/// off. The coordinator restarts and the third member (N) find no decision: they
/// fence. A conflicting write then commits through N at the same revision, and
/// a retry of the first write through M — which applied it — is not answered
/// success: M's copy is the minority, and is repaired to the majority's.
#[actix_rt::test]
async fn a_member_that_applied_alone_cannot_make_its_write_succeed() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &FLAGS).await;
    c.hang(0, Some("hang-after-one-commit"));
    let first = one_round("p", 1, insert("fault-x"), PendPolicy::Fail);
    let (net, addr) = (c.net.clone(), c.addr(0).to_string());
    let background = first.clone();
    actix_rt::spawn(async move {
        let _ = repo_client(&net, &addr).pend_commit(background).await;
    });
    let line = c.node(0).wait_line("fault: HangAfterOneCommit").await;
    let reached = line.split_whitespace().last().unwrap().to_string();
    let m = (1..3)
        .find(|i| c.peer_id(*i) == reached)
        .expect("phase 2 reached a member");
    let n = 3 - m;
    c.isolate(m);
    c.kill(0);
    c.hang(0, None);
    c.restart(0);
    // A (resumed) and N fence once the deadline and the grace have passed; the
    // conflicting write then commits through N.
    let via_n = c.client(n);
    let q = until_committed(release_bound(TIMEOUT), |_| {
        via_n.pend_commit(one_round("q", 1, insert("fault-x"), PendPolicy::Fail))
    })
    .await;
    assert!(q.is_success());
    c.heal();
    let retry = c.client(m).pend_commit(first).await;
    assert!(
        !retry.as_ref().is_ok_and(PendCommitResult::is_success),
        "the write only M applied succeeded beside a conflicting one: {retry:?}"
    );
    let want = TrxRev {
        trx_id: TrxId::new("q").unwrap(),
        rev: 1,
    };
    let clients: Vec<RepoClient> = (0..3).map(|i| c.client(i)).collect();
    everyone_serves(&clients, "fault-x", &want).await;
}

/// 5. A pendCommit across two clusters (four nodes, two per block): once its
/// commit point — the tail's part — has committed, a part refused for now (its
/// block held by another transaction) is retried until it lands, never
/// cancelled, and the client hears success.
#[actix_rt::test]
async fn a_write_across_clusters_is_not_cancelled_after_its_commit_point() {
    let _heavy = heavy();
    // Timeouts by environment, so that one node's can differ.
    let flags = ["--cluster-size", "2"];
    let timeout = "OPTIMYSTIC_REQUEST_TIMEOUT_MS";
    let env: Vec<(usize, &str, &str)> = (0..4).map(|i| (i, timeout, "10000")).collect();
    let mut c = TestCluster::start_with_env(4, &flags, &env).await;
    let peers: Vec<libp2p::PeerId> = (0..4).map(|i| c.peer_id(i).parse().unwrap()).collect();
    let cluster = |b: &str| {
        let mut k = optimystic_actors::membership::target(Region::of(&bid(b)), &peers, 2);
        k.sort();
        k
    };
    // A tail and another block in different clusters, and a coordinator in the
    // tail's cluster.
    let tail = "tail";
    let other = (0..1000)
        .map(|i| format!("other{i}"))
        .find(|b| {
            cluster(b) != cluster(tail) && cluster(b).iter().all(|p| !cluster(tail).contains(p))
        })
        .unwrap();
    let coordinator = (0..4).find(|i| cluster(tail).contains(&peers[*i])).unwrap();
    let holders: Vec<usize> = (0..4)
        .filter(|i| cluster(&other).contains(&peers[*i]))
        .collect();
    // One holder of `other` will coordinate a transaction that stops after
    // phase 1 (it touches a `fault-` block of the same cluster), with records
    // that expire in 3 s: it holds `other` for a few seconds, then recovery
    // releases it.
    let h = holders[0];
    let marker = (0..1000)
        .map(|i| format!("fault-{i}"))
        .find(|b| cluster(b) == cluster(&other))
        .unwrap();
    c.kill(h);
    c.set_env(h, timeout, "3000");
    c.hang(h, Some("hang-after-promises"));
    c.restart(h);
    c.settle().await;
    c.pause_after_commit_point(coordinator, 3000);
    let mut t = insert(tail);
    let o = insert(&other);
    t.inserts.as_mut().unwrap().extend(o.inserts.unwrap());
    let mut req = one_round("across", 1, t, PendPolicy::Fail);
    req.commit.tail_id = Some(bid(tail));
    let (net, addr) = (c.net.clone(), c.addr(coordinator).to_string());
    let write = actix_rt::spawn(async move { repo_client(&net, &addr).pend_commit(req).await });
    c.node(coordinator)
        .wait_line("fault: commit point passed across")
        .await;
    // While the coordinator waits: the holder's transaction holds `other`.
    let mut hold = insert(&other);
    hold.inserts
        .as_mut()
        .unwrap()
        .extend(insert(&marker).inserts.unwrap());
    let (net, addr) = (c.net.clone(), c.addr(h).to_string());
    actix_rt::spawn(async move {
        let _ = repo_client(&net, &addr)
            .pend_commit(one_round("hold", 1, hold, PendPolicy::Fail))
            .await;
    });
    c.node(h).wait_line("fault: HangAfterPromises").await;
    let r = write.await.unwrap();
    assert!(
        r.as_ref().is_ok_and(PendCommitResult::is_success),
        "a write committed at its commit point was not carried through: {r:?}"
    );
    let clients: Vec<RepoClient> = (0..4).map(|i| c.client(i)).collect();
    for block in [tail, other.as_str()] {
        let want = TrxRev {
            trx_id: TrxId::new("across").unwrap(),
            rev: 1,
        };
        everyone_serves(&clients, block, &want).await;
    }
}

/// 6. The coordinator's abort reaches the members after the record's deadline:
/// they accept it (a decision is valid past the deadline; only proposals are
/// not) and release the block at once, without waiting for recovery.
#[actix_rt::test]
async fn an_abort_after_the_deadline_releases_at_once() {
    let dirs = four_dirs();
    let (nodes, p) = three_and_a_proposer(&dirs, |_, _| {}).await;
    let members = members_of(&nodes);
    let ttl = 1_500;
    let mut r = p.pend_record(&members, "x", ttl);
    let proposal = r.clone();
    for (i, (n, addr)) in nodes.iter().enumerate() {
        let me = n.peer_id().to_string();
        let back = p
            .send(&me, &addr.to_string(), proposal.clone())
            .await
            .unwrap();
        r.promises.insert(me.clone(), back.promises[&me].clone());
        assert_eq!(back.promises[&me].vote, VoteType::Approve, "node {i}");
    }
    let deadline = r.message.expiration.unwrap();
    while now_ms() <= deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the deadline, well before recovery would settle it.
    let vote = sign_commit(&p.key, &r, VoteType::Reject, Some("refused".into()), None);
    r.commits.insert(p.id(), vote);
    let sent = Instant::now();
    for (i, (n, addr)) in nodes.iter().enumerate() {
        let back = p
            .send(&n.peer_id().to_string(), &addr.to_string(), r.clone())
            .await;
        assert!(back.is_ok(), "node {i} refused a late abort: {back:?}");
        let phase = TxnStore::new(n.storage().clone())
            .load(&r.message_hash)
            .unwrap()
            .map(|s| s.phase);
        assert_eq!(phase, Some(Phase::Aborted), "node {i}");
    }
    assert!(
        sent.elapsed() < RECOVERY_GRACE,
        "released by the abort, not by recovery"
    );
    let net = client_net();
    let w = repo_client(&net, &nodes[0].1.to_string())
        .pend_commit(one_round("after", 1, insert("x"), PendPolicy::Fail))
        .await
        .unwrap();
    assert!(w.is_success(), "{w:?}");
    for (n, _) in nodes {
        n.shutdown().await;
    }
}

/// 7. One member's clock 10 s ahead, one 10 s behind (the `clock-offset` fault
/// rule, debug builds only): deadlines are not what keeps the protocol
/// safe, so writes through every node either succeed or fail, and the checker
/// finds every acknowledged write on every node, one history everywhere.
#[actix_rt::test]
async fn members_whose_clocks_are_ten_seconds_apart_keep_one_history() {
    let _heavy = heavy();
    let flags = ["--request-timeout-ms", "15000"];
    let rules = [(1, "clock-offset 10000"), (2, "clock-offset -10000")];
    let mut c = TestCluster::start_with_rules(3, &flags, &rules).await;
    let mut w = Workload::create(&c.client(0), "skew", 3).await;
    let mut acked = 0;
    for k in 0..24 {
        acked += usize::from(w.step(&c.client(k % 3), k).await);
    }
    assert!(
        acked >= 12,
        "writes under clock skew: {acked}/24 acknowledged: {:?}",
        w.last_error
    );
    let _ = &mut c;
    // Released by the request timeout's rules, plus the 10 s a member behind
    // sees a deadline late.
    let release = release_bound(Duration::from_secs(15)) + Duration::from_secs(10);
    let r = check(&c, &mut w, release).await;
    assert!(r.acked >= acked);
}

/// 8. A commit that meets another record's reservation (docs/CONSENSUS.md,
/// "Coordinator", step 2) is proposed again until that record lets go, not
/// refused: its pend already holds the block, and a refusal would leave it in
/// the way of every later write. Node 0's records expire in 1 s; it coordinates
/// a pend of the same block and stops right after phase 1 (the
/// `hang-after-promises` rule), so every member holds the block for that pend
/// until recovery releases it, a few seconds on. A commit through node 1 (whose
/// request timeout, 16 s, gives it 8 s of retries) started meanwhile succeeds.
///
/// Node 0 gets its 1 s timeout only once the configurations are settled: as
/// the first node it leads every region's growth, and a change record that
/// expires in 1 s may never be agreed on a loaded machine.
#[actix_rt::test]
async fn a_commit_held_up_by_another_record_goes_through_once_that_one_lets_go() {
    let _heavy = heavy();
    let timeout = "OPTIMYSTIC_REQUEST_TIMEOUT_MS";
    let env = [(1, timeout, "16000"), (2, timeout, "16000")];
    let mut c = TestCluster::start_with_env(3, &[], &env).await;
    c.set_env(0, timeout, "1000");
    c.kill(0);
    c.restart(0);
    c.settle().await;
    let block = "fault-held";
    support::faults::write(&c.client(1), "made", 1, insert(block))
        .await
        .unwrap();
    let c0 = c.client(0);
    support::eventually(Duration::from_secs(30), || async {
        support::faults::latest_of(&c0, block).await.is_some()
    })
    .await;
    let pend = |trx: &str, v| PendRequest {
        trx_id: TrxId::new(trx).unwrap(),
        rev: Some(2),
        transforms: append(block, v),
        policy: PendPolicy::Continue,
    };
    let p = c.client(1).pend(pend("mine", 1)).await.unwrap();
    assert!(p.is_success(), "{p:?}");
    c.hang(0, Some("hang-after-promises"));
    let c0 = c.client(0);
    let other = pend("in-the-way", 2);
    actix_rt::spawn(async move {
        let _ = c0.pend(other).await;
    });
    c.node(0).wait_line("fault: HangAfterPromises").await;
    let r = c
        .client(1)
        .commit(CommitRequest {
            trx_id: TrxId::new("mine").unwrap(),
            block_ids: vec![bid(block)],
            rev: 2,
            header_id: None,
            tail_id: None,
        })
        .await;
    assert!(
        r.as_ref().is_ok_and(CommitResult::is_success),
        "a commit held up by another record's reservation: {r:?}"
    );
    c.hang(0, None);
    let want = TrxRev {
        trx_id: TrxId::new("mine").unwrap(),
        rev: 2,
    };
    let clients: Vec<RepoClient> = (1..3).map(|i| c.client(i)).collect();
    everyone_serves(&clients, block, &want).await;
}
