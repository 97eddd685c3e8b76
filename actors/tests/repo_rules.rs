//! StorageRepo rules of DESIGN §4, on every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use optimystic_actors::model::*;
use optimystic_actors::storage::RepoError;
use serde_json::json;

#[actix_rt::test]
async fn pend_commit_get_cancel_on_every_backend() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(kind, dir.path());

        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(
            r[&bid("a")],
            GetBlockResult::default(),
            "{kind}: unknown block is {{state:{{}}}}"
        );

        write(&repo, "t1", 1, insert(&["a", "b"])).await;
        write(&repo, "t2", 2, append(&["a"], json!("x"))).await;

        let r = repo.get(gets(&["a", "b", "a"])).await.unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[&bid("a")].block.as_ref().unwrap().fields["items"],
            json!(["x"]),
            "{kind}"
        );
        assert_eq!(
            r[&bid("a")].state.latest,
            Some(TrxRev {
                trx_id: tid("t2"),
                rev: 2
            })
        );
        assert_eq!(r[&bid("b")].state.latest.as_ref().unwrap().rev, 1);

        // Rev-pinned read.
        let mut g = gets(&["a"]);
        g.context = Some(TrxContext {
            committed: vec![],
            rev: 1,
            trx_id: None,
        });
        let r = repo.get(g).await.unwrap();
        assert_eq!(
            r[&bid("a")].block.as_ref().unwrap().fields["items"],
            json!([]),
            "{kind}"
        );

        // Pending overlay and cancel.
        let p = repo
            .pend(pend_req(
                "t3",
                None,
                append(&["a"], json!("y")),
                PendPolicy::Continue,
            ))
            .await
            .unwrap();
        assert!(p.is_success());
        let mut g = gets(&["a"]);
        g.context = Some(TrxContext {
            committed: vec![],
            rev: 2,
            trx_id: Some(tid("t3")),
        });
        let r = repo.get(g).await.unwrap();
        assert_eq!(
            r[&bid("a")].block.as_ref().unwrap().fields["items"],
            json!(["y", "x"])
        );
        assert_eq!(r[&bid("a")].state.pendings, Some(vec![tid("t3")]));
        repo.cancel(TrxBlocks {
            trx_id: tid("t3"),
            block_ids: vec![bid("a"), bid("zz")],
        })
        .await
        .unwrap();
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(r[&bid("a")].state.pendings, None, "{kind}");
    }
}

#[actix_rt::test]
async fn stale_pend_and_commit_report_missing() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(kind, dir.path());
        write(&repo, "t1", 1, insert(&["a"])).await;
        write(&repo, "t2", 5, append(&["a"], json!(1))).await;

        let p = repo
            .pend(pend_req(
                "t3",
                Some(3),
                append(&["a"], json!(2)),
                PendPolicy::Fail,
            ))
            .await
            .unwrap();
        let PendResult::Stale(s) = p else {
            panic!("{kind}: expected stale")
        };
        let missing = s.missing.unwrap();
        assert_eq!(missing.len(), 1);
        assert_eq!(
            (missing[0].trx_id.as_str(), missing[0].rev),
            ("t2", Some(5))
        );

        // Insert on an existing block is stale too.
        let p = repo
            .pend(pend_req("t4", None, insert(&["a"]), PendPolicy::Fail))
            .await
            .unwrap();
        assert!(!p.is_success());

        // Commit at an old rev is stale; nothing changes.
        let p = repo
            .pend(pend_req(
                "t5",
                None,
                append(&["a"], json!(3)),
                PendPolicy::Fail,
            ))
            .await
            .unwrap();
        assert!(p.is_success());
        let c = repo.commit(commit_req("t5", &["a"], 5)).await.unwrap();
        assert!(!c.is_success());
        let c = repo.commit(commit_req("t5", &["a"], 6)).await.unwrap();
        assert!(c.is_success());
        // Re-committing the same (trx, rev) is idempotent.
        assert!(repo
            .commit(commit_req("t5", &["a"], 6))
            .await
            .unwrap()
            .is_success());
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(
            r[&bid("a")].block.as_ref().unwrap().fields["items"],
            json!([3, 1])
        );
    }
}

#[actix_rt::test]
async fn policies_f_r_c() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(
        optimystic_actors::storage::StorageKind::Embedded,
        dir.path(),
    );
    write(&repo, "t1", 1, insert(&["a"])).await;
    assert!(repo
        .pend(pend_req(
            "p1",
            None,
            append(&["a"], json!(1)),
            PendPolicy::Fail
        ))
        .await
        .unwrap()
        .is_success());

    let PendResult::Stale(f) = repo
        .pend(pend_req(
            "p2",
            None,
            append(&["a"], json!(2)),
            PendPolicy::Fail,
        ))
        .await
        .unwrap()
    else {
        panic!()
    };
    let pend = f.pending.unwrap();
    assert_eq!(pend.len(), 1);
    assert!(pend[0].transform.is_none());

    let PendResult::Stale(r) = repo
        .pend(pend_req(
            "p2",
            None,
            append(&["a"], json!(2)),
            PendPolicy::Return,
        ))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(r.pending.unwrap()[0].transform.is_some());

    let PendResult::Success(c) = repo
        .pend(pend_req(
            "p2",
            None,
            append(&["a"], json!(2)),
            PendPolicy::Continue,
        ))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(c.pending[0].trx_id, tid("p1"));
    // Idempotent re-pend; a different transform under the same id is refused.
    assert!(repo
        .pend(pend_req(
            "p2",
            None,
            append(&["a"], json!(2)),
            PendPolicy::Continue
        ))
        .await
        .unwrap()
        .is_success());
    assert!(matches!(
        repo.pend(pend_req(
            "p2",
            None,
            append(&["a"], json!(9)),
            PendPolicy::Continue
        ))
        .await,
        Err(RepoError::PendConflict { .. })
    ));
}

#[actix_rt::test]
async fn errors_change_nothing() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(kind, dir.path());
        write(&repo, "t1", 1, insert(&["a"])).await;
        // Commit of a transaction never pended.
        assert!(matches!(
            repo.commit(commit_req("nope", &["a"], 2)).await,
            Err(RepoError::NotPending { .. })
        ));
        // Update of a block with no base.
        assert!(matches!(
            repo.pend(pend_req(
                "t2",
                None,
                append(&["ghost"], json!(1)),
                PendPolicy::Fail
            ))
            .await,
            Err(RepoError::Transform(_))
        ));
        // A multi-block pend where one block fails leaves the other untouched.
        let mut t = append(&["a"], json!(1));
        t.updates.as_mut().unwrap().insert(bid("ghost"), vec![]);
        t.deletes = Some(vec![bid("ghost")]);
        assert!(repo
            .pend(pend_req("t3", None, t, PendPolicy::Fail))
            .await
            .is_err());
        let r = repo.get(gets(&["a", "ghost"])).await.unwrap();
        assert_eq!(r[&bid("a")].state.pendings, None, "{kind}");
        assert_eq!(r[&bid("ghost")], GetBlockResult::default());
        // Multi-block commit where one block lacks the pending trx: nothing commits.
        assert!(repo
            .pend(pend_req(
                "t4",
                None,
                append(&["a"], json!(2)),
                PendPolicy::Fail
            ))
            .await
            .unwrap()
            .is_success());
        assert!(repo.commit(commit_req("t4", &["a", "b"], 2)).await.is_err());
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(r[&bid("a")].state.latest.as_ref().unwrap().rev, 1, "{kind}");
        assert_eq!(r[&bid("a")].state.pendings, Some(vec![tid("t4")]));
    }
}

#[actix_rt::test]
async fn context_catch_up_commits_pending() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(optimystic_actors::storage::StorageKind::File, dir.path());
    write(&repo, "t1", 1, insert(&["a"])).await;
    assert!(repo
        .pend(pend_req(
            "t2",
            Some(2),
            append(&["a"], json!("c")),
            PendPolicy::Fail
        ))
        .await
        .unwrap()
        .is_success());
    let mut g = gets(&["a"]);
    g.context = Some(TrxContext {
        committed: vec![TrxRev {
            trx_id: tid("t2"),
            rev: 2,
        }],
        rev: 2,
        trx_id: None,
    });
    let r = repo.get(g).await.unwrap();
    assert_eq!(
        r[&bid("a")].block.as_ref().unwrap().fields["items"],
        json!(["c"])
    );
    assert_eq!(r[&bid("a")].state.latest.as_ref().unwrap().rev, 2);
    assert_eq!(r[&bid("a")].state.pendings, None);
}

#[actix_rt::test]
async fn a_block_holds_at_most_max_pending_transactions() {
    use optimystic_actors::block::RegistryOptions;
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let opts = RegistryOptions {
            max_pending_per_block: 3,
            ..RegistryOptions::default()
        };
        let repo = repo_with(kind, dir.path(), opts);
        write(&repo, "t0", 1, insert(&["a"])).await;
        let pend = |trx: &str| {
            repo.pend(pend_req(
                trx,
                None,
                append(&["a"], json!(trx)),
                PendPolicy::Continue,
            ))
        };
        for trx in ["p1", "p2", "p3"] {
            assert!(pend(trx).await.unwrap().is_success(), "{kind}: {trx}");
        }
        match pend("p4").await {
            Err(RepoError::TooManyPending { block, limit: 3 }) => assert_eq!(block, bid("a")),
            other => panic!("{kind}: fourth pend gave {other:?}"),
        }
        // A repeat of a pending transaction is not a new one.
        assert!(pend("p2").await.unwrap().is_success(), "{kind}");
        let r = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(
            r[&bid("a")].state.pendings.as_ref().map(Vec::len),
            Some(3),
            "{kind}: the refused pend left something behind"
        );
        // Room again once one commits.
        let c = repo.commit(commit_req("p1", &["a"], 2)).await.unwrap();
        assert!(c.is_success(), "{kind}");
        assert!(pend("p4").await.unwrap().is_success(), "{kind}");
    }
}

#[actix_rt::test]
async fn pend_commit_is_all_or_nothing() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(kind, dir.path());
        let one = |trx: &str, pend_rev: Option<Rev>, t: Transforms, blocks: &[&str], rev: Rev| {
            PendCommitRequest {
                pend: pend_req(trx, pend_rev, t, PendPolicy::Fail),
                commit: commit_req(trx, blocks, rev),
            }
        };
        // Committed in one step: latest, nothing left pending.
        let r = repo
            .pend_commit(one("t1", Some(1), insert(&["a", "b"]), &["a", "b"], 1))
            .await
            .unwrap();
        assert!(r.is_success(), "{kind}: {r:?}");
        let got = repo.get(gets(&["a", "b"])).await.unwrap();
        for b in ["a", "b"] {
            assert_eq!(got[&bid(b)].state.latest.as_ref().map(|l| l.rev), Some(1));
            assert_eq!(got[&bid(b)].state.pendings, None, "{kind}");
        }
        // A stale pend commits nothing and leaves nothing pending.
        let r = repo
            .pend_commit(one("t2", Some(1), append(&["a"], json!(1)), &["a"], 1))
            .await
            .unwrap();
        assert!(!r.pend.is_success() && r.commit.is_none(), "{kind}: {r:?}");
        // A pend that succeeds but whose commit is stale is cancelled.
        let r = repo
            .pend_commit(one("t3", None, append(&["a"], json!(2)), &["a"], 1))
            .await
            .unwrap();
        assert!(r.pend.is_success(), "{kind}: {r:?}");
        assert!(!r.is_success(), "{kind}: {r:?}");
        let got = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(got[&bid("a")].state.pendings, None, "{kind}: cancelled");
        assert_eq!(got[&bid("a")].state.latest.as_ref().map(|l| l.rev), Some(1));
        assert_eq!(
            got[&bid("a")].block.as_ref().unwrap().fields["items"],
            json!([])
        );
        // A commit that is not the pend's is refused before anything is written.
        for bad in [
            PendCommitRequest {
                pend: pend_req("t4", Some(2), append(&["a"], json!(3)), PendPolicy::Fail),
                commit: commit_req("t5", &["a"], 2),
            },
            one("t4", Some(2), append(&["a"], json!(3)), &["a", "b"], 2),
            one("t4", Some(2), append(&["a"], json!(3)), &["b"], 2),
        ] {
            let e = repo.pend_commit(bad).await.unwrap_err();
            assert!(matches!(e, RepoError::Invalid(_)), "{kind}: {e}");
        }
        let got = repo.get(gets(&["a", "b"])).await.unwrap();
        for b in ["a", "b"] {
            assert_eq!(got[&bid(b)].state.pendings, None, "{kind}");
            assert_eq!(got[&bid(b)].state.latest.as_ref().map(|l| l.rev), Some(1));
        }
        // And the next revision goes through.
        let r = repo
            .pend_commit(one("t6", Some(2), append(&["a"], json!(4)), &["a"], 2))
            .await
            .unwrap();
        assert!(r.is_success(), "{kind}: {r:?}");
        let got = repo.get(gets(&["a"])).await.unwrap();
        assert_eq!(
            got[&bid("a")].block.as_ref().unwrap().fields["items"],
            json!([4])
        );
    }
}

/// Hand-off's forgetting of a copy (docs/CONSENSUS.md, "Hand-off"): only where it
/// was checked — the latest revision and the pending set it was seen with — and
/// a copy with no revision (pending only) is forgotten with its pendings, on
/// every backend; what is forgotten is gone from reads, heads and the store.
#[actix_rt::test]
async fn a_copy_is_forgotten_only_as_it_was_checked() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(kind, dir.path());
        write(&repo, "t1", 1, insert(&["a"])).await;
        let at = |trx: &str, rev| TrxRev {
            trx_id: tid(trx),
            rev,
        };
        // Not as checked: another transaction at rev 1, no revision, a pending
        // that is not there.
        for (expected, pending) in [
            (Some(at("other", 1)), vec![]),
            (None, vec![]),
            (Some(at("t1", 1)), vec![tid("ghost")]),
        ] {
            assert!(!repo.drop_copy(&bid("a"), expected, pending).await.unwrap());
            assert!(repo.get(gets(&["a"])).await.unwrap()[&bid("a")]
                .block
                .is_some());
        }
        assert!(repo
            .drop_copy(&bid("a"), Some(at("t1", 1)), vec![])
            .await
            .unwrap());
        assert_eq!(
            repo.get(gets(&["a"])).await.unwrap()[&bid("a")],
            GetBlockResult::default(),
            "{kind}: a forgotten copy reads as absent"
        );

        // A copy holding only a pending insert.
        let p = repo
            .pend(pend_req("p1", Some(1), insert(&["p"]), PendPolicy::Fail))
            .await
            .unwrap();
        assert!(p.is_success(), "{p:?}");
        assert!(!repo.drop_copy(&bid("p"), None, vec![]).await.unwrap());
        assert!(!repo
            .drop_copy(&bid("p"), Some(at("p1", 1)), vec![tid("p1")])
            .await
            .unwrap());
        assert!(repo
            .drop_copy(&bid("p"), None, vec![tid("p1")])
            .await
            .unwrap());
        let all = optimystic_actors::model::Region::all().collect();
        let heads = repo.heads(all).await.unwrap();
        assert!(
            heads.is_empty(),
            "{kind}: heads after both drops: {heads:?}"
        );
        let c = repo.commit(commit_req("p1", &["p"], 1)).await;
        assert!(
            matches!(c, Err(RepoError::NotPending { .. })),
            "{kind}: the forgotten pend still commits: {c:?}"
        );
    }
}

/// A hand-over inside a change (docs/CONSENSUS.md, "Handing over") carries the
/// pending transactions a majority of the configuration holds: they become
/// exactly the receiver's, so one an earlier attempt handed over and the
/// members cancelled since goes. An ordinary restore adds pendings and drops
/// none.
#[actix_rt::test]
async fn a_hand_over_with_exact_pendings_replaces_those_held() {
    for kind in KINDS {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let holder = repo(kind, dirs[0].path());
        write(&holder, "t1", 1, insert(&["h"])).await;
        let pend = |trx: &str| {
            pend_req(
                trx,
                Some(2),
                append(&["h"], json!(trx)),
                PendPolicy::Continue,
            )
        };
        assert!(holder.pend(pend("old")).await.unwrap().is_success());
        // A first attempt hands over the block with `old` pending.
        let first = holder.archive(&bid("h"), Some(0)).await.unwrap().unwrap();
        // The members cancel `old`, and pend `new`.
        holder
            .cancel(TrxBlocks {
                trx_id: tid("old"),
                block_ids: vec![bid("h")],
            })
            .await
            .unwrap();
        assert!(holder.pend(pend("new")).await.unwrap().is_success());
        let second = holder.archive(&bid("h"), Some(0)).await.unwrap().unwrap();
        for (exact, dir, held) in [
            (false, &dirs[1], vec!["new", "old"]),
            (true, &dirs[2], vec!["new"]),
        ] {
            let newcomer = repo(kind, dir.path());
            newcomer
                .take_handed_over(first.clone(), exact)
                .await
                .unwrap();
            let latest = newcomer
                .take_handed_over(second.clone(), exact)
                .await
                .unwrap();
            assert_eq!(latest.map(|l| l.rev), Some(1), "{kind}");
            let heads = newcomer.heads_of(vec![bid("h")]).await.unwrap();
            let pending: Vec<&str> = heads[0].pending.iter().map(|t| t.as_str()).collect();
            assert_eq!(pending, held, "{kind}, exact: {exact}");
            let c = newcomer.commit(commit_req("old", &["h"], 2)).await;
            assert_eq!(
                matches!(c, Err(RepoError::NotPending { .. })),
                exact,
                "{kind}, exact: {exact}: {c:?}"
            );
        }
    }
}
