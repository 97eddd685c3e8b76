//! Chooses the embedded engine: the storage workload of one transaction (a durable
//! pend write, then a durable commit write that deletes the pending record and
//! writes transform, revision, materialized block and metadata) on redb and fjall,
//! sequential and with 64 producers feeding one group-committing writer.
//!
//! `cargo bench --bench engine_choice` — figures in docs/BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

const PEND: usize = 245;
const BLOCK: usize = 293;
const SEQ_TXNS: usize = 2_000;
const PRODUCERS: usize = 64;
const BATCH_TXNS: usize = 20_000;
const GROUP: usize = 256;

type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn pend_writes(i: usize) -> Writes {
    vec![
        (format!("b{i}/p/t{i}").into_bytes(), Some(vec![7; PEND])),
        (format!("m/b{i}").into_bytes(), Some(vec![1; 40])),
    ]
}

fn commit_writes(i: usize) -> Writes {
    vec![
        (format!("b{i}/p/t{i}").into_bytes(), None),
        (format!("b{i}/t/t{i}").into_bytes(), Some(vec![7; PEND])),
        (format!("b{i}/r/00000001").into_bytes(), Some(vec![3; 12])),
        (format!("b{i}/b/t{i}").into_bytes(), Some(vec![9; BLOCK])),
        (format!("m/b{i}").into_bytes(), Some(vec![1; 60])),
    ]
}

trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    /// Applies the writes atomically and durably.
    fn write(&self, w: &[(Vec<u8>, Option<Vec<u8>>)]);
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }
    fn write(&self, w: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let mut b = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        for (k, v) in w {
            match v {
                Some(v) => b.insert(&self.ks, k.as_slice(), v.as_slice()),
                None => b.remove(&self.ks, k.as_slice()),
            }
        }
        b.commit().unwrap();
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data");

struct Redb(redb::Database);

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }
    fn write(&self, w: &[(Vec<u8>, Option<Vec<u8>>)]) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in w {
                match v {
                    Some(v) => {
                        t.insert(k.as_slice(), v.as_slice()).unwrap();
                    }
                    None => {
                        t.remove(k.as_slice()).unwrap();
                    }
                }
            }
        }
        tx.commit().unwrap();
    }
}

fn open(name: &str, dir: &std::path::Path) -> Box<dyn Engine> {
    match name {
        "fjall" => {
            let db = fjall::Database::builder(dir)
                .cache_size(64 << 20)
                .open()
                .unwrap();
            let ks = db
                .keyspace("data", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            Box::new(Fjall { db, ks })
        }
        _ => {
            let db = redb::Database::builder()
                .set_cache_size(64 << 20)
                .create(dir.join("redb"))
                .unwrap();
            Box::new(Redb(db))
        }
    }
}

fn sequential(e: &dyn Engine) -> (f64, Duration) {
    let mut lat = Vec::with_capacity(SEQ_TXNS);
    let start = Instant::now();
    for i in 0..SEQ_TXNS {
        let t = Instant::now();
        e.write(&pend_writes(i));
        e.write(&commit_writes(i));
        lat.push(t.elapsed());
    }
    let rate = SEQ_TXNS as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    (rate, lat[lat.len() / 2])
}

/// 64 producers run transactions (pend, wait durable, commit, wait durable) through
/// one writer that merges up to GROUP queued writes into one durable write.
fn grouped(e: &dyn Engine) -> f64 {
    let (tx, rx) = mpsc::sync_channel::<(Writes, mpsc::SyncSender<()>)>(1024);
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let tx = tx.clone();
            s.spawn(move || {
                let (dtx, drx) = mpsc::sync_channel(1);
                for i in (p..BATCH_TXNS).step_by(PRODUCERS) {
                    let i = i + 1_000_000;
                    tx.send((pend_writes(i), dtx.clone())).unwrap();
                    drx.recv().unwrap();
                    tx.send((commit_writes(i), dtx.clone())).unwrap();
                    drx.recv().unwrap();
                }
            });
        }
        drop(tx);
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let all: Writes = group.iter().flat_map(|(w, _)| w.clone()).collect();
            e.write(&all);
            for (_, done) in group {
                done.send(()).unwrap();
            }
        }
    });
    BATCH_TXNS as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("engine  sequential txn/s  seq p50     grouped(64) txn/s");
    for name in ["redb", "fjall"] {
        let dir = tempfile::tempdir().unwrap();
        let e = open(name, dir.path());
        let (seq, p50) = sequential(e.as_ref());
        let grp = grouped(e.as_ref());
        println!("{:<7} {seq:>17.0}  {p50:>9.1?}  {grp:>17.0}", e.name());
    }
}
