//! Data that follows membership (docs/CONSENSUS.md, "Anti-entropy"), on node
//! processes over loopback (tests/support/faults.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests that run node processes hold `heavy()` across awaits: one at a time.
#![allow(clippy::await_holding_lock)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use optimystic_actors::model::*;
use support::faults::{write, TestCluster};
use support::*;

/// Blocks written while the member is cut off.
const BLOCKS: usize = 40;

/// How long after its start a restarted node keeps trying its start-up
/// catch-up (docs/CONSENSUS.md, "Anti-entropy").
const STARTUP_WINDOW: Duration = Duration::from_secs(60);

/// Short records, a round of anti-entropy every 500 ms, and `/metrics`.
const WATCHED: [&str; 6] = [
    "--request-timeout-ms",
    "3000",
    "--anti-entropy-interval-ms",
    "500",
    "--http",
    "127.0.0.1:0",
];

/// A counter of node `i`'s `/metrics` (0 when the node does not answer).
async fn counter(c: &TestCluster, i: usize, name: &str) -> f64 {
    metric(c, i, name).await.unwrap_or(0.0)
}

/// A metric without labels of node `i`'s `/metrics`; `None` when the node
/// does not answer or does not export it.
async fn metric(c: &TestCluster, i: usize, name: &str) -> Option<f64> {
    let base = format!("http://{}/metrics", c.node(i).http_addr().unwrap());
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let text = ureq::get(&base)
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix(name.as_str())?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
    })
    .await
    .unwrap()
}

/// Node `i`'s region digests (`digests` on the cluster protocol) of the regions
/// of `blocks`.
async fn digests(c: &TestCluster, i: usize, blocks: &[BlockId]) -> Option<Vec<RegionDigest>> {
    let regions: Vec<Region> = blocks.iter().map(Region::of).collect();
    optimystic_actors::net::cluster_digests(
        &c.net,
        c.peer_id(i).parse().unwrap(),
        vec![c.addr(i).parse().unwrap()],
        regions,
        Duration::from_secs(10),
    )
    .await
    .ok()
}

/// Waits, at most `limit`, until node `i`'s region digests of `ids` are `full`.
async fn digests_become(
    c: &TestCluster,
    i: usize,
    ids: &[BlockId],
    full: &[RegionDigest],
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let now = digests(c, i, ids).await;
        if now.as_deref() == Some(full) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {i} still differs from node 0 after {limit:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long coordinators keep re-sending a decision to a member that did not
/// acknowledge it (`STRAGGLER_WINDOW`, 60 s past the record's 3 s deadline),
/// with a margin: past it, nothing but anti-entropy (or a read or write of the
/// block) brings a member the writes it missed.
const STRAGGLERS_DONE: Duration = Duration::from_secs(66);

/// A member down while 40 blocks are inserted and appended to through the other
/// two misses every one of those writes, and stays down until the coordinators
/// have stopped re-sending their decisions. Restarted, it is brought up by
/// anti-entropy — region digests compared with a co-member, then the differing
/// blocks taken from a majority — with no client touching those blocks: its
/// region digests (asked as an outside peer) become node 0's, it counts 40
/// repaired blocks, and with both other nodes then stopped it serves every
/// block's acknowledged latest revision and content from its own copy.
#[actix_rt::test]
async fn a_member_that_missed_writes_while_down_converges_with_no_read() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &WATCHED).await;
    c.kill(2);
    // Every block inserted and appended to, acknowledged by nodes 0 and 1.
    let mut want: BTreeMap<String, (Rev, serde_json::Value)> = BTreeMap::new();
    for i in 0..BLOCKS {
        let b = format!("cold{i}");
        let via = c.client(i % 2);
        write(&via, &format!("{b}-insert"), 1, insert(&b))
            .await
            .unwrap_or_else(|e| panic!("insert {b}: {e}"));
        write(&via, &format!("{b}-append"), 2, append(&b, i as i64))
            .await
            .unwrap_or_else(|e| panic!("append {b}: {e}"));
        want.insert(b, (2, serde_json::json!([i])));
    }
    let written = Instant::now();
    let ids: Vec<BlockId> = want.keys().map(|b| bid(b)).collect();
    let full = digests(&c, 0, &ids).await.unwrap();
    assert_eq!(
        full.iter().map(|d| d.blocks).sum::<u64>(),
        BLOCKS as u64,
        "node 0 holds every block: {full:?}"
    );
    // The scenario needs time to pass, not a condition: the decisions' retries
    // must be over before node 2 is back.
    tokio::time::sleep(STRAGGLERS_DONE.saturating_sub(written.elapsed())).await;
    c.restart(2);
    digests_become(&c, 2, &ids, &full, Duration::from_secs(90)).await;
    let repaired = counter(&c, 2, "optimystic_repair_blocks_total").await;
    assert!(repaired >= BLOCKS as f64, "repaired {repaired}");
    // Its own copy, nobody else's: the other two are gone, so a read through
    // it can take nothing from them.
    c.kill(0);
    c.kill(1);
    let got = c
        .client(2)
        .get(BlockGets {
            block_ids: ids,
            ..BlockGets::default()
        })
        .await
        .unwrap();
    for (b, (rev, items)) in &want {
        let g = got
            .get(&bid(b))
            .unwrap_or_else(|| panic!("{b} not answered"));
        assert_eq!(
            g.state.latest.as_ref().map(|l| l.rev),
            Some(*rev),
            "{b}: revision"
        );
        assert_eq!(
            g.block.as_ref().map(|b| b.fields["items"].clone()),
            Some(items.clone()),
            "{b}: content"
        );
    }
}

/// A member restarted after missing writes catches up at start, not at its
/// first anti-entropy round: the coordinators' re-sent decisions to it are
/// dropped, no client touches the blocks, and the nodes' rounds are ten
/// minutes apart, yet within the start-up catch-up's window (60 s,
/// docs/CONSENSUS.md, "Anti-entropy") of its restart its region digests
/// (asked as an outside peer) are node 0's and it reports
/// `optimystic_caught_up 1`.
#[actix_rt::test]
async fn a_restarted_member_catches_up_at_start() {
    let _heavy = heavy();
    let flags = [
        "--request-timeout-ms",
        "3000",
        "--anti-entropy-interval-ms",
        "600000",
        "--http",
        "127.0.0.1:0",
    ];
    let mut c = TestCluster::start(3, &flags).await;
    c.drop_decisions(0, 2);
    c.drop_decisions(1, 2);
    c.kill(2);
    let mut ids = Vec::new();
    for i in 0..20 {
        let b = format!("late{i}");
        write(&c.client(i % 2), &format!("{b}-insert"), 1, insert(&b))
            .await
            .unwrap_or_else(|e| panic!("insert {b}: {e}"));
        ids.push(bid(&b));
    }
    let full = digests(&c, 0, &ids).await.unwrap();
    c.restart(2);
    let restarted = Instant::now();
    loop {
        let now = digests(&c, 2, &ids).await;
        if now.as_ref() == Some(&full) && counter(&c, 2, "optimystic_caught_up").await == 1.0 {
            break;
        }
        assert!(
            restarted.elapsed() < STARTUP_WINDOW,
            "node 2 has not caught up {STARTUP_WINDOW:?} after its restart: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`BLOCKS`] blocks named `{prefix}{i}`, each inserted and then appended to
/// (revision 2) through the three nodes in turn, every write acknowledged.
async fn inserted_and_appended(c: &TestCluster, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..BLOCKS {
        let b = format!("{prefix}{i}");
        let via = c.client(i % 3);
        write(&via, &format!("{b}-insert"), 1, insert(&b))
            .await
            .unwrap_or_else(|e| panic!("insert {b}: {e}"));
        write(&via, &format!("{b}-append"), 2, append(&b, i as i64))
            .await
            .unwrap_or_else(|e| panic!("append {b}: {e}"));
        names.push(b);
    }
    names
}

/// A member's data directory wiped — store and identity lost, as with a failed
/// disk — and the node started again on the empty directory: it comes back as
/// a new peer, and once the dead-peer timeout has passed the old identity is
/// replaced by it in every configuration, after it was handed the blocks. With
/// no client read, it holds every one of the 40 blocks at its latest revision
/// (its region digests, asked as an outside peer, become node 0's) and no
/// configuration lists the old identity.
#[actix_rt::test]
async fn a_member_whose_data_directory_is_wiped_gets_every_block_back() {
    let _heavy = heavy();
    let mut flags = WATCHED.to_vec();
    flags.extend(["--dead-peer-timeout-ms", "3000"]);
    let mut c = TestCluster::start(3, &flags).await;
    let names = inserted_and_appended(&c, "lost").await;
    let ids: Vec<BlockId> = names.iter().map(|b| bid(b)).collect();
    let full = digests(&c, 0, &ids).await.unwrap();
    c.kill(2);
    let old = c.peer_id(2).to_string();
    let wiped = tempfile::tempdir().unwrap();
    c.move_data(2, wiped.path().to_path_buf());
    c.heal();
    c.restart(2);
    assert_ne!(c.peer_id(2), old, "the wiped node kept its identity");
    let restarted = Instant::now();
    loop {
        let now = digests(&c, 2, &ids).await;
        let configs: Vec<Config> =
            futures::future::join_all(names.iter().map(|b| c.newest_config(b)))
                .await
                .into_iter()
                .filter_map(Result::ok)
                .collect();
        let replaced =
            configs.len() == names.len() && configs.iter().all(|k| !k.members.contains(&old));
        if now.as_ref() == Some(&full) && replaced {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(90),
            "90 s after the wiped node's restart: its digests {now:?}, configurations replaced: {replaced}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A member whose store is lost but whose identity is kept — its data
/// directory emptied but for `identity.key` — is started again: the same member,
/// with no configuration and no block. Its co-members, which saw it hold their
/// configurations before, ask it again (every minute) and send it the changes it
/// lacks; anti-entropy then brings back every block, with no client read: its
/// region digests (asked as an outside peer) become node 0's.
#[actix_rt::test]
async fn a_member_restarted_on_an_empty_store_with_its_identity_gets_every_block_back() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &WATCHED).await;
    let names = inserted_and_appended(&c, "kept").await;
    let ids: Vec<BlockId> = names.iter().map(|b| bid(b)).collect();
    c.wait_in_sync(2, &names, Duration::from_secs(30)).await;
    let full = digests(&c, 0, &ids).await.unwrap();
    c.kill(2);
    let emptied = tempfile::tempdir().unwrap();
    std::fs::copy(
        c.dir(2).join("identity.key"),
        emptied.path().join("identity.key"),
    )
    .unwrap();
    let peer = c.peer_id(2).to_string();
    c.move_data(2, emptied.path().to_path_buf());
    c.heal();
    c.restart(2);
    assert_eq!(c.peer_id(2), peer, "not the same member");
    digests_become(&c, 2, &ids, &full, Duration::from_secs(120)).await;
}

/// The repair queue is durable (docs/CONSENSUS.md, "Anti-entropy"): member 2,
/// down while 20 blocks were written and repairing slowly (2 blocks/s) after
/// its restart, is killed mid-way; started again with every request it sends
/// failing — so it can compare nothing with anyone — it still reports the
/// blocks it had left (`optimystic_repair_queue_depth`, read from the file),
/// and once its requests go through again it finishes them: its digests are
/// node 0's and its queue is empty. Meanwhile node 0, with member 2 gone,
/// counts the blocks as under-replicated, and none once member 2 is back.
#[actix_rt::test]
async fn a_repair_cut_short_by_a_crash_resumes_from_the_queue() {
    let _heavy = heavy();
    let mut c =
        TestCluster::start_with_env(3, &WATCHED, &[(2, "OPTIMYSTIC_REPAIR_RATE", "2")]).await;
    c.drop_decisions(0, 2);
    c.drop_decisions(1, 2);
    c.kill(2);
    let mut ids = Vec::new();
    for i in 0..20 {
        let b = format!("queued{i}");
        write(&c.client(i % 2), &format!("{b}-insert"), 1, insert(&b))
            .await
            .unwrap_or_else(|e| panic!("insert {b}: {e}"));
        ids.push(bid(&b));
    }
    let full = digests(&c, 0, &ids).await.unwrap();
    let under = "optimystic_blocks_under_replicated";
    eventually(Duration::from_secs(30), || async {
        counter(&c, 0, under).await >= 20.0
    })
    .await;
    // Repairing: some blocks done, some still queued.
    c.restart(2);
    let depth = "optimystic_repair_queue_depth";
    eventually(Duration::from_secs(30), || async {
        (4.0..=16.0).contains(&counter(&c, 2, depth).await)
    })
    .await;
    c.kill(2);
    c.drop(2, 0);
    c.drop(2, 1);
    c.restart(2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = loop {
        match metric(&c, 2, depth).await {
            Some(n) => break Some(n),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            None => break None,
        }
    };
    assert!(
        left.is_some_and(|n| (1.0..20.0).contains(&n)),
        "node 2 restarted with {left:?} blocks queued"
    );
    // `status` says so too.
    let status = format!("http://{}/status", c.node(2).http_addr().unwrap());
    let st: serde_json::Value = tokio::task::spawn_blocking(move || {
        let text = ureq::get(&status)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        st["replication"]["repairQueue"].as_f64(),
        left,
        "/status: {st}"
    );
    c.heal();
    eventually(Duration::from_secs(60), || async {
        digests(&c, 2, &ids).await.as_ref() == Some(&full) && counter(&c, 2, depth).await == 0.0
    })
    .await;
    eventually(Duration::from_secs(30), || async {
        counter(&c, 0, under).await == 0.0 && counter(&c, 2, under).await == 0.0
    })
    .await;
}

/// A cancel member 2 missed: it was cut off while node 1 coordinated the
/// cancel, and node 1, whose re-sends would have reached it after the cut, was
/// restarted first — so member 2 keeps the transaction pending for good, and a
/// pend with policy `f` counts what any approving member holds pending. Once
/// the pend's deadline has passed, member 2's anti-entropy finds both others
/// holding the block at its revision without the transaction — so fewer than a
/// majority can hold it — and drops it (docs/CONSENSUS.md, "Stray pending
/// transactions"): writes that need member 2's promise go through again.
#[actix_rt::test]
async fn a_cancel_a_member_missed_is_made_good() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &WATCHED).await;
    write(&c.client(1), "missed-insert", 1, insert("missed"))
        .await
        .unwrap();
    let x = c.pend_append(1, "missed", "missed-x", 2, 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.pending_on(2, "missed").await.contains(&x) {
        assert!(Instant::now() < deadline, "member 2 never took the pend");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.isolate(2);
    c.cancel_on(1, "missed", &x).await;
    c.kill(1);
    c.restart(1);
    c.heal();
    assert!(
        c.pending_on(2, "missed").await.contains(&x),
        "member 2 did not miss the cancel: the schedule checks nothing"
    );
    for i in [0, 1] {
        assert!(!c.pending_on(i, "missed").await.contains(&x), "node {i}");
    }
    // Writes through node 0 now need member 2's promise.
    c.drop(0, 1);
    c.drop(1, 0);
    let tries = c
        .append_via_0_until("missed", ("missed-y", 2, 2), Duration::from_secs(45), 2)
        .await;
    assert!(
        tries > 0,
        "a write went through at once: member 2's stray was not in its way"
    );
    assert_eq!(c.pending_on(2, "missed").await, Vec::<TrxId>::new());
    assert_eq!(
        counter(&c, 2, "optimystic_stray_pendings_dropped_total").await,
        1.0
    );
}

/// A member's catch-up takes the majority's revisions, never a holder's pending
/// transactions (docs/CONSENSUS.md, "Anti-entropy"): member 2, cut off while a
/// write and the pend of `x` went through the others, and hearing no decision of
/// node 0's, is brought to revision 2 by anti-entropy from a copy holding `x`
/// pending — and holds nothing pending, as it applied no pend of `x`. Committed
/// then through node 1, `x` reaches member 2 too (its transform fetched from a
/// holder), and no copy is left holding it.
#[actix_rt::test]
async fn a_member_catching_up_takes_revisions_and_not_the_pends_of_others() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &WATCHED).await;
    write(&c.client(0), "took-1", 1, insert("took"))
        .await
        .unwrap();
    c.wait_in_sync(2, &["took".to_string()], Duration::from_secs(30))
        .await;
    c.drop_decisions(0, 2);
    c.cut(&[0, 1], &[2]).await;
    write(&c.client(0), "took-2", 2, append("took", 2))
        .await
        .unwrap();
    let x = c.pend_append(0, "took", "took-x", 3, 3).await;
    assert_eq!(
        copy_of(&c, 2).await,
        (Some(1), Vec::new()),
        "member 2 was not cut off"
    );
    c.uncut().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while copy_of(&c, 2).await.0 != Some(2) {
        assert!(
            Instant::now() < deadline,
            "member 2 never caught up: {:?}",
            copy_of(&c, 2).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in [0, 1] {
        assert_eq!(copy_of(&c, i).await, (Some(2), vec![x.clone()]), "node {i}");
    }
    assert_eq!(
        copy_of(&c, 2).await,
        (Some(2), Vec::new()),
        "member 2 took a pend it never applied"
    );
    let commit = c
        .client(1)
        .commit(CommitRequest {
            trx_id: x.clone(),
            block_ids: vec![bid("took")],
            rev: 3,
            header_id: None,
            tail_id: None,
        })
        .await
        .unwrap();
    assert!(commit.is_success(), "{commit:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..3 {
        while copy_of(&c, i).await != (Some(3), Vec::new()) {
            assert!(
                Instant::now() < deadline,
                "node {i}: {:?}",
                copy_of(&c, i).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Where node `i`'s own copy of `took` ends, and what it holds pending.
async fn copy_of(c: &TestCluster, i: usize) -> (Option<Rev>, Vec<TrxId>) {
    let got = optimystic_actors::net::fetch_archive(
        &c.net,
        c.peer_id(i).parse().unwrap(),
        vec![c.addr(i).parse().unwrap()],
        &bid("took"),
        Some(1),
        Duration::from_secs(10),
    )
    .await
    .ok()
    .flatten();
    let rev = got
        .as_ref()
        .and_then(|a| a.revisions.last())
        .map(|r| r.trx_rev.rev);
    (rev, c.pending_on(i, "took").await)
}

/// `optimystic inspect --block` (and `GET /v1/blocks/{id}` under it) names,
/// for each member of the block's configuration, what its own copy holds: with
/// node 2 down, nodes 0 and 1 at the revision just written, node 2 unreachable.
/// A malformed id is refused, by the CLI and by the server.
#[actix_rt::test]
async fn inspect_shows_which_member_holds_which_revision() {
    let _heavy = heavy();
    let mut c = TestCluster::start(3, &WATCHED).await;
    write(&c.client(0), "shown-insert", 1, insert("shown"))
        .await
        .unwrap();
    c.kill(2);
    write(&c.client(0), "shown-2", 2, append("shown", 2))
        .await
        .unwrap();
    let http = c.node(0).http_addr().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["inspect", "--block", "shown", "--http", &http])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("configuration epoch"), "{text}");
    for i in 0..3 {
        let line = text
            .lines()
            .find(|l| l.starts_with(c.peer_id(i)))
            .unwrap_or_else(|| panic!("node {i} not listed:\n{text}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], "yes", "node {i} is a member: {line}");
        if i < 2 {
            assert_eq!(&fields[2..4], ["2", "shown-2"], "node {i}: {line}");
        } else {
            assert_eq!(fields[2], "unreachable:", "node 2: {line}");
        }
    }
    let bad = std::process::Command::new(BIN)
        .args(["inspect", "--block", "../x", "--http", &http])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let refused = ureq::get(format!("http://{http}/v1/blocks/a.b")).call();
    assert!(
        matches!(refused, Err(ureq::Error::StatusCode(400))),
        "{refused:?}"
    );
}

/// Three nodes hold 30 blocks; three more join. Placement moves regions to
/// their new targets (K = 3 of 6), and the nodes that left a region's
/// configuration forget their copies once the new configuration holds them:
/// within 180 s, asked as an outside peer (`configs` and `heads` on the cluster
/// protocol), every block is stored at its acknowledged revision on exactly the
/// members of its configuration — and nowhere else.
#[actix_rt::test]
async fn after_three_nodes_join_every_block_is_stored_on_exactly_its_configuration() {
    let _heavy = heavy();
    let flags = [
        "--request-timeout-ms",
        "3000",
        "--anti-entropy-interval-ms",
        "500",
    ];
    let mut c = TestCluster::start(3, &flags).await;
    let blocks: Vec<String> = (0..30).map(|i| format!("moved{i}")).collect();
    for (i, b) in blocks.iter().enumerate() {
        write(&c.client(i % 3), &format!("{b}-insert"), 1, insert(b))
            .await
            .unwrap_or_else(|e| panic!("insert {b}: {e}"));
    }
    for _ in 0..3 {
        c.join();
    }
    c.settle().await;
    let ids: Vec<BlockId> = blocks.iter().map(|b| bid(b)).collect();
    let regions: Vec<Region> = ids.iter().map(Region::of).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let wrong = misplaced(&c, &ids, &regions).await;
        if wrong.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stored on exactly their configurations after 180 s: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The blocks of `ids` not stored at revision 1 on exactly the members of
/// their region's configuration (the newest any node reports), with where
/// they are and where they should be.
async fn misplaced(c: &TestCluster, ids: &[BlockId], regions: &[Region]) -> Vec<String> {
    let timeout = Duration::from_secs(10);
    let mut configs: BTreeMap<Region, Config> = BTreeMap::new();
    let mut holders: BTreeMap<BlockId, Vec<(String, Option<Rev>)>> = BTreeMap::new();
    for i in c.members() {
        let (peer, addr) = (c.peer_id(i).parse().unwrap(), c.addr(i).parse().unwrap());
        let Ok(view) = optimystic_actors::net::cluster_configs(
            &c.net,
            peer,
            vec![addr],
            regions.to_vec(),
            timeout,
        )
        .await
        else {
            return vec![format!("node {i} did not answer configs")];
        };
        for v in view.view {
            if let Some(cfg) = v.config {
                let newer = configs.get(&v.region).is_none_or(|k| k.epoch < cfg.epoch);
                if newer {
                    configs.insert(v.region, cfg);
                }
            }
        }
        let Ok(heads) = optimystic_actors::net::cluster_heads(
            &c.net,
            peer,
            vec![c.addr(i).parse().unwrap()],
            regions.to_vec(),
            timeout,
        )
        .await
        else {
            return vec![format!("node {i} did not answer heads")];
        };
        for h in heads {
            holders
                .entry(h.block_id)
                .or_default()
                .push((c.peer_id(i).to_string(), h.latest.map(|l| l.rev)));
        }
    }
    let mut wrong = Vec::new();
    for id in ids {
        let want: std::collections::BTreeSet<String> = configs
            .get(&Region::of(id))
            .map(|k| k.members.iter().cloned().collect())
            .unwrap_or_default();
        let at = holders.get(id).cloned().unwrap_or_default();
        let have: std::collections::BTreeSet<String> = at
            .iter()
            .filter(|(_, rev)| *rev == Some(1))
            .map(|(p, _)| p.clone())
            .collect();
        if have != want || at.len() != want.len() {
            wrong.push(format!("{id}: on {at:?}, configuration {want:?}"));
        }
    }
    wrong
}

/// Graceful leave (docs/OPERATIONS.md, "Leaving the network"), twice, with
/// writes flowing through the other nodes all along. Of four nodes, one leaves
/// with `optimystic leave`: it exits 0, and by then — asked as an outside peer
/// over the cluster protocol — the node is in no configuration and stores no
/// block, and every block is on every member of its configuration. A newcomer
/// brings the network back to four, and another node leaves on SIGTERM
/// (`--leave-on-shutdown`) and exits 0 the same way. The history checker then
/// finds every acknowledged write on the three that stay: nothing lost.
#[actix_rt::test]
async fn a_node_leaves_gracefully_under_writes_and_leaves_nothing_under_replicated() {
    let _heavy = heavy();
    let on_shutdown = 3;
    let mut c = TestCluster::start_with_env(
        4,
        &WATCHED,
        &[(on_shutdown, "OPTIMYSTIC_LEAVE_ON_SHUTDOWN", "true")],
    )
    .await;
    let mut w = support::faults::Workload::create(&c.client(0), "leave", 12).await;
    for k in 0..12 {
        assert!(w.step(&c.client(k % 4), k).await, "{:?}", w.last_error);
    }
    // 1. `optimystic leave` of node 1, writes going on through the others.
    let leaver = 1;
    let http = c.node(leaver).http_addr().unwrap();
    let job = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(["leave", "--http", &http, "--wait", "120"])
            .output()
            .unwrap()
    });
    let during = writes_until(&c, &mut w, &[0, 2, 3], || job.is_finished()).await;
    let out = job.await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "optimystic leave: {said}");
    assert!(said.contains("left:"), "{said}");
    assert!(during > 0, "no write was acknowledged during the leave");
    let gone = c.peer_id(leaver).to_string();
    let held = heads_of(&c, leaver)
        .await
        .expect("the leaver answers heads");
    assert!(held.is_empty(), "the node that left still stores {held:?}");
    let node = c.take_for_good(leaver);
    assert_eq!(placed_without(&c, &gone, &w).await, Vec::<String>::new());
    assert_eq!(node.stop(), Some(0));
    // 2. A newcomer; then node 3 leaves on SIGTERM, writes going on.
    let newcomer = c.join();
    c.settle().await;
    let staying = [0, 2, newcomer];
    for k in 0..6 {
        w.step(&c.client(staying[k % 3]), k).await;
    }
    let gone = c.peer_id(on_shutdown).to_string();
    let node = c.take_for_good(on_shutdown);
    let job = tokio::task::spawn_blocking(move || node.stop_within(Duration::from_secs(120)));
    let during = writes_until(&c, &mut w, &staying, || job.is_finished()).await;
    assert_eq!(
        job.await.unwrap(),
        Some(0),
        "--leave-on-shutdown exits 0 once it left"
    );
    assert!(during > 0, "no write was acknowledged during the leave");
    assert_eq!(placed_without(&c, &gone, &w).await, Vec::<String>::new());
    // 3. Nothing acknowledged is lost, on the three that stay.
    let report = support::faults::check(
        &c,
        &mut w,
        support::faults::release_bound(Duration::from_secs(3)),
    )
    .await;
    assert!(report.acked >= 30, "{report:?}");
}

/// The rolling replacement an operator does (issue: data that follows
/// membership): three nodes hold 40 cold blocks — written once, never touched
/// again — and a writer appends to four hot blocks all along. Three times, a
/// new node joins and, once the regions have moved to their targets, one
/// original is killed for good; the placement driver replaces it after the
/// dead-peer timeout. After the third step only the three newcomers run: every
/// cold block reads back, whole, through each of them, and the history checker
/// finds every acknowledged write of the hot blocks on every member.
#[actix_rt::test]
async fn three_originals_replaced_one_at_a_time_lose_no_block() {
    let _heavy = heavy();
    let mut flags = WATCHED.to_vec();
    flags.extend(["--dead-peer-timeout-ms", "3000"]);
    let mut c = TestCluster::start(3, &flags).await;
    let mut cold = support::faults::Workload::create(&c.client(0), "cold", 40).await;
    for k in 0..40 {
        assert!(
            cold.step(&c.client(k % 3), k).await,
            "{:?}",
            cold.last_error
        );
    }
    let mut hot = support::faults::Workload::create(&c.client(1), "hot", 4).await;
    let mut live = vec![0, 1, 2];
    for original in 0..3 {
        let newcomer = c.join();
        live.push(newcomer);
        let (_, during) = writing_during(&c, &mut hot, &live, c.settle()).await;
        assert!(
            during > 0,
            "step {original}: no write acknowledged while the newcomer was taken in"
        );
        live.retain(|i| *i != original);
        c.take_for_good(original).kill();
        let (_, during) = writing_during(&c, &mut hot, &live, c.settle()).await;
        assert!(
            during > 0,
            "step {original}: no write acknowledged while the dead node was replaced"
        );
        let gone = c.peer_id(original).to_string();
        assert_eq!(
            placed_without(&c, &gone, &cold).await,
            Vec::<String>::new(),
            "step {original}"
        );
    }
    assert_eq!(live, vec![3, 4, 5]);
    for i in &live {
        for (b, acked) in &cold.acked {
            let (rev, value) = acked[0];
            let got = support::faults::latest_of(&c.client(*i), b).await;
            assert_eq!(
                got,
                Some((rev, serde_json::json!([value]))),
                "cold block {b} through node {i}"
            );
        }
    }
    let report = support::faults::check(
        &c,
        &mut hot,
        support::faults::release_bound(Duration::from_secs(3)),
    )
    .await;
    assert!(report.acked >= 12, "{report:?}");
}

/// Runs the workload through `through` while `phase` runs; returns what the
/// phase came to and how many writes were acknowledged meanwhile.
async fn writing_during<T>(
    c: &TestCluster,
    w: &mut support::faults::Workload,
    through: &[usize],
    phase: impl std::future::Future<Output = T>,
) -> (T, usize) {
    let done = std::cell::Cell::new(false);
    let phase = async {
        let t = phase.await;
        done.set(true);
        t
    };
    let writes = async {
        let (mut k, mut acked) = (0, 0);
        while !done.get() {
            if w.step(&c.client(through[k % through.len()]), k).await {
                acked += 1;
            }
            k += 1;
        }
        acked
    };
    futures::join!(phase, writes)
}

/// Runs the workload through `through` until `done`; returns how many writes
/// were acknowledged.
async fn writes_until(
    c: &TestCluster,
    w: &mut support::faults::Workload,
    through: &[usize],
    done: impl Fn() -> bool,
) -> usize {
    let (mut k, mut acked) = (0, 0);
    while !done() {
        if w.step(&c.client(through[k % through.len()]), k).await {
            acked += 1;
        }
        k += 1;
    }
    acked
}

/// What node `i` stores, every region asked (the cluster protocol's `heads`);
/// `None` if it does not answer.
async fn heads_of(c: &TestCluster, i: usize) -> Option<Vec<BlockHead>> {
    optimystic_actors::net::cluster_heads(
        &c.net,
        c.peer_id(i).parse().unwrap(),
        vec![c.addr(i).parse().unwrap()],
        Region::all().collect(),
        Duration::from_secs(10),
    )
    .await
    .ok()
}

/// Within 30 s, on every member: no configuration has `gone`, each has the
/// cluster size, and every block of the workload is held at one latest
/// revision, at or past its last acknowledged one, by every member of its
/// configuration (nothing under-replicated). Otherwise what is still wrong.
async fn placed_without(c: &TestCluster, gone: &str, w: &support::faults::Workload) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wrong = placement_problems(c, gone, w).await;
        if wrong.is_empty() || Instant::now() >= deadline {
            return wrong;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn placement_problems(
    c: &TestCluster,
    gone: &str,
    w: &support::faults::Workload,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut heads: BTreeMap<String, BTreeMap<BlockId, Option<TrxRev>>> = BTreeMap::new();
    let mut configs: BTreeMap<Region, Config> = BTreeMap::new();
    for i in c.members() {
        let Ok(view) = optimystic_actors::net::cluster_configs(
            &c.net,
            c.peer_id(i).parse().unwrap(),
            vec![c.addr(i).parse().unwrap()],
            Region::all().collect(),
            Duration::from_secs(10),
        )
        .await
        else {
            return vec![format!("node {i} did not answer configs")];
        };
        for v in view.view {
            match v.config {
                Some(cfg) if cfg.members.contains(gone) || cfg.members.len() != 3 => {
                    wrong.push(format!("node {i}: region {:?} has {cfg:?}", v.region));
                }
                Some(cfg) => {
                    configs.insert(v.region, cfg);
                }
                None => wrong.push(format!("node {i}: no configuration of {:?}", v.region)),
            }
        }
        let Some(held) = heads_of(c, i).await else {
            return vec![format!("node {i} did not answer heads")];
        };
        heads.insert(
            c.peer_id(i).to_string(),
            held.into_iter().map(|h| (h.block_id, h.latest)).collect(),
        );
    }
    for (block, acked) in &w.acked {
        let id = bid(block);
        let Some(cfg) = configs.get(&Region::of(&id)) else {
            continue;
        };
        let at: Vec<Option<Rev>> = cfg
            .members
            .iter()
            .map(|m| {
                heads
                    .get(m)
                    .and_then(|h| h.get(&id).cloned().flatten())
                    .map(|l| l.rev)
            })
            .collect();
        let last = acked.last().map_or(1, |(rev, _)| *rev);
        if at.windows(2).any(|p| p[0] != p[1]) || at[0].is_none_or(|r| r < last) {
            wrong.push(format!(
                "{block}: members {:?} hold {at:?}, acknowledged up to {last}",
                cfg.members
            ));
        }
    }
    wrong
}
