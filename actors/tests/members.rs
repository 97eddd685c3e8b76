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
    message_hash, peer_entry, ClusterRecord, Configs, MemberDirectory, Phase, TxnStore, RETENTION,
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

#[actix_rt::test]
async fn decided_transactions_are_pruned_after_retention() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let raw = open_storage(kind, dir.path()).unwrap();
        let registry = BlockRegistry::start(
            raw.clone(),
            std::sync::Arc::new(EngineMetrics::default()),
            None,
            RegistryOptions::default(),
        )
        .unwrap();
        let key = Keypair::generate_ed25519();
        let store = TxnStore::new(raw.clone());
        let me = key.public().to_peer_id().to_string();
        let configs = Configs::open(&me, 1, raw.clone()).unwrap();
        let (_, entry) = peer_entry(&key, vec![]);
        assert!(configs.genesis_if_alone(entry, false).await.unwrap());
        let members = MemberDirectory::new(
            key.clone(),
            StorageRepo::new(registry),
            store.clone(),
            configs,
        );
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
