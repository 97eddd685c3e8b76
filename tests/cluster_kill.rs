//! Separate node processes: SIGKILL a member in the middle of a stream of commits.
//! Every acknowledged commit is on the survivors; the restarted member catches up
//! through restoration and serves the latest revision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests that run node processes hold `heavy()` across awaits: one at a time.
#![allow(clippy::await_holding_lock)]

mod support;

use std::time::Duration;

use optimystic_actors::model::*;
use optimystic_actors::net::RepoClient;
use serde_json::json;
use support::faults::{
    check, latest_of, read_at as latest, release_bound, released_within, TestCluster, Workload,
};
use support::*;

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

#[actix_rt::test]
async fn sigkill_a_member_mid_stream() {
    let _heavy = heavy();
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let a = NodeProcess::start(dirs[0].path(), &[]);
    let b = NodeProcess::start(dirs[1].path(), &["--bootstrap", &a.addr]);
    let c = NodeProcess::start(dirs[2].path(), &["--bootstrap", &a.addr]);
    settle_processes(&[&a, &b, &c], 3).await;
    let net_ = client_net();
    let (ca, cb) = (repo_client(&net_, &a.addr), repo_client(&net_, &b.addr));
    // Wait until the cluster has formed: a write through A lands on B and C.
    eventually(Duration::from_secs(30), || async {
        write(&ca, "probe", 1, insert("probe")).await
    })
    .await;
    let cc = repo_client(&net_, &c.addr);
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

    // C restarts with its data and rejoins; a plain read (no context) compares the
    // block with its cluster, restores what C missed and serves the latest revision.
    let c = NodeProcess::start(dirs[2].path(), &["--bootstrap", &a.addr]);
    let cc = repo_client(&net_, &c.addr);
    eventually(Duration::from_secs(30), || async {
        latest(&cc, "s", None).await.is_some_and(|(r, _)| r == top)
    })
    .await;
    for rev in &acked {
        assert_eq!(latest(&cc, "s", Some(*rev)).await.unwrap().0, *rev);
    }
    let (_, items) = latest(&cc, "s", None).await.unwrap();
    assert_eq!(
        items,
        latest(&ca, "s", None).await.unwrap().1,
        "C serves the same latest block"
    );
    drop((a, b, c));
}

#[actix_rt::test]
async fn coordinator_gone_between_phases() {
    let _heavy = heavy();
    use optimystic_actors::cluster::ClusterRecord;
    let dirs = four_dirs();
    // The coordinator: a member of the record that proposes, then vanishes.
    let (procs, coordinator) = processes_and_a_proposer(&dirs, &[]).await;
    let net_ = client_net();
    let (ca, cb, cc) = (
        repo_client(&net_, &procs[0].addr),
        repo_client(&net_, &procs[1].addr),
        repo_client(&net_, &procs[2].addr),
    );
    let nodes = [&procs[0], &procs[1], &procs[2]];
    let send = |i: usize, r: ClusterRecord| {
        let (id, addr, c) = (nodes[i].peer_id(), nodes[i].addr.clone(), &coordinator);
        async move { c.send(&id, &addr, r).await.unwrap() }
    };

    // Phase 1 only, then the coordinator is gone: every member holds the block.
    let made = std::time::Instant::now();
    let r1 = coordinator.pend_record(
        &nodes
            .iter()
            .map(|m| (m.peer_id(), m.addr.clone()))
            .collect::<Vec<_>>(),
        "held",
        1_500,
    );
    futures::join!(
        send(0, r1.clone()),
        send(1, r1.clone()),
        send(2, r1.clone())
    );
    assert!(
        !write(&cb, "early", 1, insert("held")).await,
        "the block is held by the orphan"
    );
    // No block stays locked past expiry plus grace: the bound is the record's
    // deadline (1.5 s from its making), the recovery it leads to and the
    // write in flight (`write` is a pend and a commit).
    let released_by = released_within(Duration::from_millis(1_500), 2);
    let mut n = 0;
    loop {
        n += 1;
        if write(&cb, &format!("late{n}"), 1, insert("held")).await {
            break;
        }
        assert!(
            made.elapsed() < released_by,
            "held {:?} after the record was made, past expiry plus grace",
            made.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Phase 2 reaches A only: once settled, all three applied it, not some.
    let mut r2 = coordinator.pend_record(
        &nodes
            .iter()
            .map(|m| (m.peer_id(), m.addr.clone()))
            .collect::<Vec<_>>(),
        "split",
        1_500,
    );
    let replies = futures::join!(
        send(0, r2.clone()),
        send(1, r2.clone()),
        send(2, r2.clone())
    );
    for (reply, i) in [(replies.0, 0), (replies.1, 1), (replies.2, 2)] {
        let id = nodes[i].peer_id();
        r2.promises.insert(id.clone(), reply.promises[&id].clone());
    }
    coordinator.promise(&mut r2);
    let done = send(0, r2.clone()).await;
    assert!(done.commits.contains_key(&procs[0].peer_id()));
    let trx = TrxId::new("orphan-split").unwrap();
    for cl in [&ca, &cb, &cc] {
        // The pend executed everywhere: the transaction is pending on "split" on every node.
        eventually(Duration::from_secs(20), || {
            let trx = trx.clone();
            async move {
                cl.get(BlockGets {
                    block_ids: vec![bid("split")],
                    context: None,
                    consistency: None,
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
    drop(procs);
}

/// Whether `trx` is pending on `block` as read through `c`.
async fn pending_on(c: &RepoClient, block: &str, trx: &TrxId) -> bool {
    c.get(BlockGets {
        block_ids: vec![bid(block)],
        context: None,
        consistency: None,
    })
    .await
    .is_ok_and(|r| {
        r.get(&bid(block))
            .and_then(|g| g.state.pendings.as_ref())
            .is_some_and(|p| p.contains(trx))
    })
}

/// Pend of `block` by `trx` through `c`, in the background (its coordinator hangs).
fn pend_in_background(
    net: &optimystic_actors::net::NetClient,
    addr: &str,
    block: &str,
    trx: &TrxId,
) {
    let (c, t, trx) = (repo_client(net, addr), insert(block), trx.clone());
    actix_rt::spawn(async move {
        let _ = c
            .pend(PendRequest {
                trx_id: trx,
                rev: Some(1),
                transforms: t,
                policy: PendPolicy::Fail,
            })
            .await;
    });
}

/// The real node binary as coordinator, SIGKILLed between the phases by a test-only
/// fault hook (debug builds only): after phase 1, the members settle by recovery and
/// release the block within expiry plus grace, and nobody applied the write; after
/// phase 2 reached one member, recovery makes every member apply it.
#[actix_rt::test]
async fn sigkill_the_coordinator_binary_between_phases() {
    let _heavy = heavy();
    const TIMEOUT: &str = "3000";
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let flags = ["--request-timeout-ms", TIMEOUT];
    // Node A's fault rule file (docs in `optimystic_actors::faults`), rewritten
    // whole before each of its starts.
    let rules = dirs[0].path().join("faults");
    let rules_env = rules.to_str().unwrap();
    let fault = |rule: &str| {
        std::fs::write(&rules, format!("{rule}\n")).unwrap();
        [("OPTIMYSTIC_TEST_FAULTS", rules_env)]
    };
    let a = NodeProcess::start_with_env(dirs[0].path(), &flags, &fault("hang-after-promises"));
    let with_boot =
        |addr: &str| ["--bootstrap", addr, "--request-timeout-ms", TIMEOUT].map(String::from);
    let boot = with_boot(&a.addr);
    let boot: Vec<&str> = boot.iter().map(String::as_str).collect();
    let b = NodeProcess::start(dirs[1].path(), &boot);
    let c = NodeProcess::start(dirs[2].path(), &boot);
    settle_processes(&[&a, &b, &c], 3).await;
    let net_ = client_net();
    let (ca, cb, cc) = (
        repo_client(&net_, &a.addr),
        repo_client(&net_, &b.addr),
        repo_client(&net_, &c.addr),
    );
    eventually(Duration::from_secs(30), || async {
        write(&ca, "probe", 1, insert("probe")).await
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        latest(&cc, "probe", None).await.is_some()
    })
    .await;

    // 1. A decides commit after phase 1, then dies before anyone hears it.
    let orphan = TrxId::new("orphan1").unwrap();
    pend_in_background(&net_, &a.addr, "fault-1", &orphan);
    let line = a.wait_line("fault: HangAfterPromises").await;
    let hung_at = std::time::Instant::now();
    a.kill();
    assert!(
        !write(&cb, "early", 1, insert("fault-1")).await,
        "the block is held while undecided: {line}"
    );
    // Released by recovery, not held longer: the record expires one request
    // timeout after it started, then recovery and the write in flight
    // (`write`: a pend and a commit). The bound is those, not a guess at the
    // machine's speed.
    let timeout = Duration::from_millis(TIMEOUT.parse().unwrap());
    let released_by = released_within(timeout, 2);
    let mut n = 0;
    while !write(&cb, &format!("after{n}"), 1, insert("fault-1")).await {
        n += 1;
        assert!(
            hung_at.elapsed() < released_by,
            "fault-1 still held {:?} after the coordinator died",
            hung_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for cl in [&cb, &cc] {
        assert!(!pending_on(cl, "fault-1", &orphan).await, "orphan applied");
    }

    // 2. A restarts (armed again), resumes its own promise, finds no commit
    //    anywhere and drops it: the orphan is applied on no member.
    let a = NodeProcess::start_with_env(
        dirs[0].path(),
        &with_boot(&b.addr).each_ref().map(String::as_str),
        &fault("hang-after-one-commit"),
    );
    let ca = repo_client(&net_, &a.addr);
    eventually(Duration::from_secs(30), || async {
        latest(&ca, "fault-1", Some(1))
            .await
            .is_some_and(|(r, _)| r == 1)
    })
    .await;
    assert!(
        !pending_on(&ca, "fault-1", &orphan).await,
        "orphan applied on A"
    );

    // 3. Phase 2 reaches one member, then A dies: recovery carries the decision to
    //    the other member, so both applied the pend, and it commits.
    let decided = TrxId::new("decided2").unwrap();
    eventually(Duration::from_secs(30), || async {
        write(&ca, "probe2", 1, insert("probe2")).await
    })
    .await;
    pend_in_background(&net_, &a.addr, "fault-2", &decided);
    a.wait_line("fault: HangAfterOneCommit").await;
    a.kill();
    for cl in [&cb, &cc] {
        eventually(Duration::from_secs(20), || async {
            pending_on(cl, "fault-2", &decided).await
        })
        .await;
    }
    let commit = cb
        .commit(CommitRequest {
            trx_id: decided,
            block_ids: vec![bid("fault-2")],
            rev: 1,
            header_id: None,
            tail_id: None,
        })
        .await
        .unwrap();
    assert!(commit.is_success(), "{commit:?}");
    for cl in [&cb, &cc] {
        eventually(Duration::from_secs(10), || async {
            latest(cl, "fault-2", None)
                .await
                .is_some_and(|(r, _)| r == 1)
        })
        .await;
    }
    drop((b, c));
}

/// Twenty SIGKILLs of cluster members (B and C in turn, each restarted with its
/// data and back before the other goes) while writes keep going through A; then
/// the fault suite's checker: each member's own copy is exactly the acknowledged
/// history, revision by revision, content included.
#[actix_rt::test]
async fn twenty_member_kills_lose_nothing() {
    const KILLS: usize = 20;
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &["--request-timeout-ms", "3000"]).await;
    let mut w = Workload::create(&c.client(0), "k", 1).await;
    for kill in 0..KILLS {
        let i = 1 + kill % 2;
        c.kill(i);
        // Writes go on with A and the other member (a majority).
        for _ in 0..2 {
            w.step(&c.client(0), 0).await;
        }
        c.restart(i);
        let want = w.acked["k0"].last().unwrap().0;
        let back = c.client(i);
        let since = std::time::Instant::now();
        loop {
            let got = latest_of(&back, "k0").await.map(|(r, _)| r);
            if got == Some(want) {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "kill {kill}: the restarted member serves {got:?}, acknowledged {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        w.acked_count() > KILLS,
        "writes kept succeeding: {} acknowledged; {:?}",
        w.acked_count(),
        w.last_error
    );
    check(&c, &mut w, release_bound(Duration::from_secs(3))).await;
}
