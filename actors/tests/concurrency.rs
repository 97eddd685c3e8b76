//! Concurrency, passivation and mailbox metrics of the block actors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use optimystic_actors::block::RegistryOptions;
use optimystic_actors::model::*;
use optimystic_actors::storage::StorageKind;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

#[actix_rt::test]
async fn sixty_four_writers_on_distinct_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(StorageKind::Embedded, dir.path());
    let writers = (0..64).map(|w| {
        let repo = repo.clone();
        async move {
            let name = format!("w{w}");
            write(&repo, &format!("{name}-0"), 1, insert(&[&name])).await;
            for i in 1..=5u64 {
                write(
                    &repo,
                    &format!("{name}-{i}"),
                    i + 1,
                    append(&[&name], json!(i)),
                )
                .await;
            }
        }
    });
    tokio::time::timeout(DEADLINE, join_all(writers))
        .await
        .expect("writers deadlocked");
    let ids: Vec<String> = (0..64).map(|w| format!("w{w}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let r = repo.get(gets(&ids)).await.unwrap();
    for id in ids {
        let got = &r[&bid(id)];
        assert_eq!(
            got.block.as_ref().unwrap().fields["items"],
            json!([5, 4, 3, 2, 1]),
            "{id}"
        );
        assert_eq!(got.state.latest.as_ref().unwrap().rev, 6);
    }
}

#[actix_rt::test]
async fn sixteen_racers_on_one_block_one_winner_per_rev() {
    for kind in [StorageKind::Embedded, StorageKind::File] {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(kind, dir.path());
        write(&repo, "init", 1, insert(&["hot"])).await;
        const WINS: usize = 3;
        let racers = (0..16).map(|r| {
            let repo = repo.clone();
            async move {
                let mut wins = vec![];
                let mut attempt = 0;
                while wins.len() < WINS {
                    attempt += 1;
                    let latest = repo.get(gets(&["hot"])).await.unwrap()[&bid("hot")]
                        .state
                        .latest
                        .clone()
                        .unwrap();
                    let rev = latest.rev + 1;
                    let trx = format!("r{r}-{attempt}");
                    let p = repo
                        .pend(pend_req(
                            &trx,
                            Some(rev),
                            append(&["hot"], json!(trx)),
                            PendPolicy::Continue,
                        ))
                        .await
                        .unwrap();
                    if !p.is_success() {
                        continue;
                    }
                    let c = repo.commit(commit_req(&trx, &["hot"], rev)).await.unwrap();
                    if c.is_success() {
                        wins.push((rev, trx));
                    } else {
                        repo.cancel(TrxBlocks {
                            trx_id: tid(&trx),
                            block_ids: vec![bid("hot")],
                        })
                        .await
                        .unwrap();
                    }
                }
                wins
            }
        });
        let wins: Vec<(Rev, String)> = tokio::time::timeout(DEADLINE, join_all(racers))
            .await
            .expect("racers deadlocked")
            .into_iter()
            .flatten()
            .collect();
        let revs: std::collections::BTreeSet<Rev> = wins.iter().map(|w| w.0).collect();
        assert_eq!(
            revs.len(),
            wins.len(),
            "{kind}: two winners for one revision"
        );
        assert_eq!(
            revs.iter().copied().collect::<Vec<_>>(),
            (2..2 + 16 * WINS as u64).collect::<Vec<_>>()
        );
        let r = repo.get(gets(&["hot"])).await.unwrap();
        let items = r[&bid("hot")].block.as_ref().unwrap().fields["items"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(items.len(), 16 * WINS, "{kind}: lost update");
        // Newest first: items are in reverse revision order of the winners.
        let mut by_rev = wins.clone();
        by_rev.sort();
        let expected: Vec<_> = by_rev.iter().rev().map(|w| json!(w.1)).collect();
        assert_eq!(items, expected, "{kind}");
        assert_eq!(
            r[&bid("hot")].state.pendings,
            None,
            "{kind}: leftover pendings"
        );
    }
}

#[actix_rt::test]
async fn multi_block_commits_in_opposite_orders_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(StorageKind::Embedded, dir.path());
    write(&repo, "init", 1, insert(&["x", "y"])).await;
    let tasks = (0..8).map(|t| {
        let repo = repo.clone();
        async move {
            let mut committed = 0;
            for i in 0..20 {
                let trx = format!("m{t}-{i}");
                let order: &[&str] = if t % 2 == 0 { &["x", "y"] } else { &["y", "x"] };
                let p = repo
                    .pend(pend_req(
                        &trx,
                        None,
                        append(order, json!(trx)),
                        PendPolicy::Continue,
                    ))
                    .await
                    .unwrap();
                assert!(p.is_success());
                let latest = repo.get(gets(&["x"])).await.unwrap()[&bid("x")]
                    .state
                    .latest
                    .clone()
                    .unwrap();
                let c = repo
                    .commit(commit_req(&trx, order, latest.rev + 1))
                    .await
                    .unwrap();
                if c.is_success() {
                    committed += 1;
                } else {
                    repo.cancel(TrxBlocks {
                        trx_id: tid(&trx),
                        block_ids: vec![bid("x"), bid("y")],
                    })
                    .await
                    .unwrap();
                }
            }
            committed
        }
    });
    let committed: usize = tokio::time::timeout(DEADLINE, join_all(tasks))
        .await
        .expect("deadlock")
        .into_iter()
        .sum();
    let r = repo.get(gets(&["x", "y"])).await.unwrap();
    let x = &r[&bid("x")];
    let y = &r[&bid("y")];
    // Both blocks saw exactly the same committed transactions, in the same order.
    assert_eq!(
        x.block.as_ref().unwrap().fields["items"],
        y.block.as_ref().unwrap().fields["items"]
    );
    assert_eq!(
        x.block.as_ref().unwrap().fields["items"]
            .as_array()
            .unwrap()
            .len(),
        committed
    );
    assert_eq!(x.state.latest, y.state.latest);
    // The work happened: a commit fails only because another task committed
    // since its read, and one commit can fail at most the other seven tasks'
    // current attempts, so 160 attempts hold at least 20 commits.
    assert!(committed >= 20, "only {committed} commits");
    assert_eq!(
        x.state.latest.as_ref().map(|l| l.rev),
        Some(1 + committed as u64)
    );
}

#[actix_rt::test]
async fn passivation_bounds_live_actors_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RegistryOptions {
        max_live: 1_000,
        ..RegistryOptions::default()
    };
    let repo = repo_with(StorageKind::Memory, dir.path(), opts);
    const N: usize = 100_000;
    const LANES: usize = 32;
    let lanes = (0..LANES).map(|lane| {
        let repo = repo.clone();
        async move {
            for i in (lane..N).step_by(LANES) {
                let name = format!("p{i}");
                write(&repo, &format!("t{i}"), 1, insert(&[&name])).await;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(300), join_all(lanes))
        .await
        .expect("stalled");
    let m = repo.registry().metrics();
    let high = m.registry.live_high_water.get();
    assert!(high <= 1_000 + 1_000 / 8, "live actors reached {high}");
    assert!(m.registry.passivated.get() >= (N - 1_100) as u64);
    assert!(repo.registry().live() <= 1_000 + LANES);
    // Data of passivated blocks is intact: read a spread of them back.
    for i in (0..N).step_by(997) {
        let name = format!("p{i}");
        let r = repo.get(gets(&[&name])).await.unwrap();
        assert_eq!(
            r[&bid(&name)].state.latest.as_ref().unwrap().trx_id,
            tid(&format!("t{i}"))
        );
        assert_eq!(r[&bid(&name)].block.as_ref().unwrap().header.id, bid(&name));
    }
}

#[actix_rt::test]
async fn block_actor_mailbox_metrics_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(StorageKind::Memory, dir.path());
    write(&repo, "t0", 1, insert(&["b0", "b1", "b2", "b3"])).await;
    let reads = (0..64).map(|_| repo.get(gets(&["b0", "b1", "b2", "b3"])));
    for r in join_all(reads).await {
        r.unwrap();
    }
    let s = repo.registry().metrics().block_actor.snapshot();
    assert_eq!(s.kind, "block");
    assert!(s.handled >= 64 * 4 + 8, "handled {}", s.handled);
    assert!(
        s.high_water >= 2,
        "64 concurrent reads of 4 blocks must queue: {}",
        s.high_water
    );
    assert_eq!(s.depth, 0, "nothing queued at rest");
    assert_eq!(s.latency.count, s.handled);
    assert_eq!(s.latency.buckets.iter().sum::<u64>(), s.handled);
}
