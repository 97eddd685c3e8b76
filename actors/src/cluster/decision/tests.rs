//! Unit tests of the decision every member computes from a record.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::cluster::record::BlockState;
use crate::model::{CommitRequest, PendCommitRequest, Transforms};

fn b(s: &str) -> BlockId {
    BlockId::new(s).unwrap()
}

fn t(s: &str) -> TrxId {
    TrxId::new(s).unwrap()
}

fn at(trx: &str, rev: Rev) -> Option<TrxRev> {
    Some(TrxRev {
        trx_id: t(trx),
        rev,
    })
}

fn state(latest: Option<TrxRev>, pendings: &[&str]) -> States {
    BTreeMap::from([(
        b("x"),
        BlockState {
            latest,
            pendings: pendings.iter().map(|p| t(p)).collect(),
        },
    )])
}

fn pend(trx: &str, rev: Option<Rev>, policy: PendPolicy) -> RepoOperation {
    let op = crate::model::BlockOperation {
        entity: "items".into(),
        index: 0,
        delete_count: 0,
        inserted: serde_json::json!([1]),
    };
    RepoOperation::Pend(PendRequest {
        trx_id: t(trx),
        rev,
        transforms: Transforms {
            updates: Some([(b("x"), vec![op])].into()),
            ..Transforms::default()
        },
        policy,
    })
}

fn commit(trx: &str, rev: Rev) -> RepoOperation {
    RepoOperation::Commit(CommitRequest {
        trx_id: t(trx),
        block_ids: vec![b("x")],
        rev,
        header_id: None,
        tail_id: None,
    })
}

fn decide_of(ops: &[RepoOperation], states: &[(&str, States)]) -> Decision {
    let by: BTreeMap<&str, &States> = states.iter().map(|(p, s)| (*p, s)).collect();
    decide_states(ops, &by, 2)
}

#[test]
fn the_base_is_what_a_threshold_reports_alike() {
    let op = [pend("p", Some(5), PendPolicy::Fail)];
    // Two of three agree: their latest is the base, whatever the third says.
    let d = decide_of(
        &op,
        &[
            ("A", state(at("q", 4), &[])),
            ("B", state(at("q", 4), &[])),
            ("C", state(at("r", 3), &[])),
        ],
    );
    assert_eq!(d.bases[&b("x")], at("q", 4));
    assert_eq!(d.holders[&b("x")], vec!["A".to_string(), "B".to_string()]);
    assert_eq!(d.verdicts, vec![Verdict::Apply]);
    // One each: no base, the operation is refused as diverged.
    let d = decide_of(
        &op,
        &[("A", state(at("q", 4), &[])), ("C", state(at("r", 4), &[]))],
    );
    assert_eq!(d.verdicts, vec![Verdict::Diverged(b("x"))]);
    // The same revision under another transaction is not the same base.
    let d = decide_of(
        &op,
        &[("A", state(at("q", 4), &[])), ("B", state(at("r", 4), &[]))],
    );
    assert_eq!(d.verdicts, vec![Verdict::Diverged(b("x"))]);
    // A block nobody holds is a base too: absent.
    let d = decide_of(&op, &[("A", state(None, &[])), ("B", state(None, &[]))]);
    assert_eq!(d.bases[&b("x")], None);
}

#[test]
fn pend_rules_use_the_base_and_every_approvals_pendings() {
    let st = |p: &[&str]| state(at("q", 4), p);
    // Stale: the revision asked for is taken on the base.
    let d = decide_of(
        &[pend("p", Some(4), PendPolicy::Continue)],
        &[("A", st(&[])), ("B", st(&[]))],
    );
    assert_eq!(d.verdicts, vec![Verdict::Stale]);
    // Blocked with `f` by a transaction only one approval holds (a member that
    // missed it must not decide differently: the schedule of a member that
    // missed a pend and lets a conflicting write through).
    let d = decide_of(
        &[pend("p", Some(5), PendPolicy::Fail)],
        &[("A", st(&["other"])), ("C", st(&[]))],
    );
    assert_eq!(d.verdicts, vec![Verdict::Blocked]);
    // `c` goes ahead, `r` is blocked; its own transaction does not count.
    let d = decide_of(
        &[
            pend("p", Some(5), PendPolicy::Continue),
            pend("p", Some(5), PendPolicy::Return),
        ],
        &[("A", st(&["other", "p"])), ("B", st(&["p"]))],
    );
    assert_eq!(d.verdicts, vec![Verdict::Apply, Verdict::Blocked]);
    assert_eq!(d.others(&b("x"), &t("p")), vec![t("other")]);
    let d = decide_of(
        &[pend("p", Some(5), PendPolicy::Fail)],
        &[("A", st(&["p"])), ("B", st(&[]))],
    );
    assert_eq!(d.verdicts, vec![Verdict::Apply]);
}

#[test]
fn commit_rules() {
    let st = |p: &[&str]| state(at("q", 4), p);
    // Pending on one approval is enough: the others fetch its transform.
    let d = decide_of(&[commit("p", 5)], &[("A", st(&["p"])), ("B", st(&[]))]);
    assert_eq!(d.verdicts, vec![Verdict::Apply]);
    assert_eq!(d.pendings[&b("x")][&t("p")], vec!["A".to_string()]);
    // Pending nowhere.
    let d = decide_of(&[commit("p", 5)], &[("A", st(&[])), ("B", st(&[]))]);
    assert_eq!(d.verdicts, vec![Verdict::NotPending]);
    // The revision is taken: stale (or already committed, which the local
    // execution tells apart).
    let d = decide_of(&[commit("q", 4)], &[("A", st(&[])), ("B", st(&[]))]);
    assert_eq!(d.verdicts, vec![Verdict::Stale]);
}

#[test]
fn pend_commit_rules_and_effects() {
    let st = |p: &[&str]| state(at("q", 4), p);
    let pc = |rev, pend_rev| {
        let RepoOperation::Pend(p) = pend("p", pend_rev, PendPolicy::Fail) else {
            unreachable!()
        };
        RepoOperation::PendCommit(PendCommitRequest {
            pend: p,
            commit: CommitRequest {
                trx_id: t("p"),
                block_ids: vec![b("x")],
                rev,
                header_id: None,
                tail_id: None,
            },
        })
    };
    let two = [("A", st(&[])), ("B", st(&[]))];
    assert_eq!(
        decide_of(&[pc(5, Some(5))], &two).verdicts,
        vec![Verdict::Apply]
    );
    assert_eq!(
        decide_of(&[pc(4, Some(4))], &two).verdicts,
        vec![Verdict::Stale]
    );
    let blocked = [("A", st(&["other"])), ("B", st(&[]))];
    assert_eq!(
        decide_of(&[pc(5, Some(5))], &blocked).verdicts,
        vec![Verdict::Blocked]
    );
    // Effects: equal kinds in equal order give equal digests; anything else differs.
    let a = effect(&[EffectKind::Ok, EffectKind::Refused]);
    assert_eq!(a, effect(&[EffectKind::Ok, EffectKind::Refused]));
    assert_ne!(a, effect(&[EffectKind::Refused, EffectKind::Ok]));
    assert_ne!(
        effect(&[EffectKind::Failed("transform".into())]),
        effect(&[EffectKind::Failed("not_pending".into())])
    );
}
