//! A cluster member on each backend: a decided transaction's state is kept while it
//! may still be asked for, and forgotten `RETENTION` after its deadline, so the
//! transaction store stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use libp2p::identity::Keypair;
use optimystic_actors::block::{BlockRegistry, RegistryOptions, StorageRepo};
use optimystic_actors::cluster::{
    message_hash, peer_entry, sign_commit, sign_promise, ClusterRecord, Configs, MemberDirectory,
    Phase, TxnStore, VoteType, RETENTION,
};
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::model::now_ms;
use optimystic_actors::model::*;
use optimystic_actors::storage::open_storage;

fn pend_record(key: &Keypair, block: &str) -> ClusterRecord {
    let message = RepoMessage {
        operations: vec![RepoOperation::Pend(PendRequest {
            trx_id: tid("t1"),
            rev: Some(1),
            transforms: Transforms {
                inserts: Some([(bid(block), common::block(block, serde_json::json!([])))].into()),
                ..Transforms::default()
            },
            policy: PendPolicy::Fail,
        })],
        expiration: Some(now_ms() + 30_000),
        coordinator: Some(key.public().to_peer_id().to_string()),
        // The genesis configuration of every region: epoch 1.
        epochs: [(Region::of(&bid(block)), 1)].into(),
        change: None,
    };
    ClusterRecord {
        message_hash: message_hash(&message),
        peers: BTreeMap::from([peer_entry(key, vec![])]),
        message: message.into(),
        promises: BTreeMap::new(),
        commits: BTreeMap::new(),
    }
}

/// The member of node `key` on a fresh `kind` store in `dir`, alone in every
/// region (genesis), with clusters of `cluster_size`; its transaction store and
/// configurations.
async fn genesis_member(
    kind: optimystic_actors::storage::StorageKind,
    dir: &std::path::Path,
    key: &Keypair,
    cluster_size: usize,
) -> (
    std::sync::Arc<MemberDirectory>,
    TxnStore,
    std::sync::Arc<Configs>,
) {
    let raw = open_storage(kind, dir).unwrap();
    let registry = BlockRegistry::start(
        raw.clone(),
        std::sync::Arc::new(EngineMetrics::default()),
        None,
        RegistryOptions::default(),
    )
    .unwrap();
    let store = TxnStore::new(raw.clone());
    let me = key.public().to_peer_id().to_string();
    let configs = Configs::open(&me, cluster_size, raw).unwrap();
    let (_, entry) = peer_entry(key, vec![]);
    assert!(configs.genesis_if_alone(entry, false).await.unwrap());
    let members = MemberDirectory::new(
        key.clone(),
        StorageRepo::new(registry),
        store.clone(),
        configs.clone(),
    );
    (members, store, configs)
}

#[actix_rt::test]
async fn decided_transactions_are_pruned_after_retention() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::generate_ed25519();
        let me = key.public().to_peer_id().to_string();
        let (members, store, _) = genesis_member(kind, dir.path(), &key, 1).await;
        let record = pend_record(&key, "b");
        let hash = record.message_hash.clone();
        let deadline = record.message.expiration.unwrap();
        // Phase 1 then phase 2 on a cluster of one.
        let promised = members.update(record, &me).await.unwrap();
        assert_eq!(promised.promises.len(), 1);
        let committed = members.update(promised, &me).await.unwrap();
        assert_eq!(committed.commits.len(), 1, "{kind:?}");

        // Kept while it may still be asked for.
        let limit = Instant::now() + Duration::from_secs(10);
        while store.load(&hash).unwrap().map(|s| s.phase) != Some(Phase::Committed) {
            assert!(
                Instant::now() < limit,
                "{kind:?}: never persisted Committed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(members.prune(now_ms()).await.unwrap(), 0);
        let just_before = deadline + u64::try_from(RETENTION.as_millis()).unwrap() - 1;
        assert_eq!(members.prune(just_before).await.unwrap(), 0);
        assert!(store.load(&hash).unwrap().is_some());

        // Forgotten once RETENTION past its deadline (the member has stopped by then).
        let after = deadline + u64::try_from(RETENTION.as_millis()).unwrap() + 1;
        let mut pruned = 0;
        while pruned == 0 {
            assert!(Instant::now() < limit, "{kind:?}: never retired");
            pruned = members.prune(after).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pruned, 1);
        assert!(store.load(&hash).unwrap().is_none(), "{kind:?}");
        assert!(store.all().unwrap().is_empty(), "{kind:?}");
    }
}

/// A configuration change of `region` from `from` to `to`, coordinated by
/// `coordinator`, among the keys of `from ∪ to`.
fn change_record(
    keys: &[&Keypair],
    coordinator: &Keypair,
    region: Region,
    from: Config,
    to: Config,
) -> ClusterRecord {
    let message = RepoMessage {
        operations: Vec::new(),
        expiration: Some(now_ms() + 30_000),
        coordinator: Some(coordinator.public().to_peer_id().to_string()),
        epochs: BTreeMap::new(),
        change: Some(ConfigChange {
            regions: vec![region],
            from,
            to,
            retire: false,
        }),
    };
    ClusterRecord {
        message_hash: message_hash(&message),
        peers: keys.iter().map(|k| peer_entry(k, vec![])).collect(),
        message: message.into(),
        promises: BTreeMap::new(),
        commits: BTreeMap::new(),
    }
}

fn name(k: &Keypair) -> String {
    k.public().to_peer_id().to_string()
}

/// `r` with an approving promise of each of `keys`.
fn promised_by(mut r: ClusterRecord, keys: &[&Keypair]) -> ClusterRecord {
    for k in keys {
        let v = sign_promise(k, &r, VoteType::Approve, None, Some(BTreeMap::new()));
        r.promises.insert(name(k), v);
    }
    r
}

/// A member that aborted a change (its coordinator's abort reached it, as a
/// fence would) holds the old configuration; a record proving that a joint
/// majority applied the change — their approving commits — moves it to the new
/// one (docs/CONSENSUS.md, "A member that missed a change"). Fewer applications
/// than the joint quorum change nothing. A member that applied a change keeps
/// the proof it is sent, to show members that missed it.
#[actix_rt::test]
async fn a_member_that_aborted_a_change_takes_it_on_proof_of_a_joint_majority() {
    let dir = tempfile::tempdir().unwrap();
    let (c, x, y) = (
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
        Keypair::generate_ed25519(),
    );
    let me = name(&c);
    let (members, _, configs) = genesis_member(
        optimystic_actors::storage::StorageKind::Memory,
        dir.path(),
        &c,
        3,
    )
    .await;
    let region = Region::new(5);
    let cfg = |epoch: u64, keys: &[&Keypair]| Config {
        epoch,
        members: keys.iter().map(|k| name(k)).collect(),
    };
    // C, alone at genesis, adds X, then Y (each change agreed by C and the peer).
    for (from, to, keys) in [
        (cfg(1, &[&c]), cfg(2, &[&c, &x]), vec![&c, &x]),
        (cfg(2, &[&c, &x]), cfg(3, &[&c, &x, &y]), vec![&c, &x, &y]),
    ] {
        let proposal = change_record(&keys, &c, region, from, to.clone());
        let promised = members.update(proposal, &me).await.unwrap();
        let others: Vec<&Keypair> = keys[1..].to_vec();
        let mut applied = members
            .update(promised_by(promised, &others), &me)
            .await
            .unwrap();
        assert_eq!(configs.config(region), Some(to));
        // The coordinator's proof (every member's approving commit) reaches a
        // member that applied it: kept among its changes, to show others.
        for k in &others {
            let v = sign_commit(k, &applied, VoteType::Approve, None, Some(Vec::new()));
            applied.commits.insert(name(k), v);
        }
        members.update(applied.clone(), &me).await.unwrap();
        let kept = configs.changes().recent();
        let kept = kept
            .iter()
            .find(|r| r.message_hash == applied.message_hash)
            .unwrap();
        assert_eq!(
            kept.commits.keys().collect::<Vec<_>>(),
            applied.commits.keys().collect::<Vec<_>>()
        );
    }
    // X proposes removing C; C promises, then takes X's abort.
    let (from, to) = (cfg(3, &[&c, &x, &y]), cfg(4, &[&x, &y]));
    let removal = change_record(&[&c, &x, &y], &x, region, from.clone(), to.clone());
    let promised = members.update(removal.clone(), &name(&x)).await.unwrap();
    assert_eq!(promised.promises[&me].vote, VoteType::Approve);
    let mut abort = removal.clone();
    abort.commits.insert(
        name(&x),
        sign_commit(&x, &abort, VoteType::Reject, Some("abort".into()), None),
    );
    members.update(abort, &name(&x)).await.unwrap();
    assert_eq!(configs.config(region), Some(from.clone()));

    // Decided by X's and Y's promises and applied by X alone: not a joint
    // majority of the old configuration (2 of 3 needed).
    let decided = promised_by(removal, &[&x, &y]);
    let mut one = decided.clone();
    one.commits.insert(
        name(&x),
        sign_commit(&x, &one, VoteType::Approve, None, Some(Vec::new())),
    );
    assert!(members.update(one.clone(), &name(&x)).await.is_err());
    assert_eq!(configs.config(region), Some(from));

    // Applied by X and Y: a majority of {C, X, Y} and of {X, Y}.
    let mut both = one;
    both.commits.insert(
        name(&y),
        sign_commit(&y, &both, VoteType::Approve, None, Some(Vec::new())),
    );
    members.update(both, &name(&y)).await.unwrap();
    assert_eq!(configs.config(region), Some(to));
    assert!(!configs.table().is_member(region));
}
