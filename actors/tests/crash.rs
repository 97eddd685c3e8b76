//! Crash test: a child process commits in a loop and is killed with SIGKILL at
//! random moments; after each kill the store is reopened and every acknowledged
//! commit must be present, every block must materialize, and no block may be
//! half-committed. The child is this same test binary running the ignored test
//! `crash_child_writer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use optimystic_actors::model::*;
use optimystic_actors::storage::{open_storage, StorageKind};
use serde_json::json;

const KILLS_PER_BACKEND: usize = 50;
const BLOCKS: usize = 6;

/// Writer run by the child process; prints `ACK <trx> <rev> <block>…` after each
/// acknowledged commit.
#[actix_rt::test]
#[ignore = "child process of the crash test"]
async fn crash_child_writer() {
    let dir = std::env::var("CRASH_DIR").unwrap();
    let kind: StorageKind = std::env::var("CRASH_KIND").unwrap().parse().unwrap();
    let repo = repo(kind, Path::new(&dir));
    let run = std::process::id();
    for i in 0u64.. {
        let a = format!("k{}", i as usize % BLOCKS);
        let b = format!("k{}", (i as usize * 7 + 3) % BLOCKS);
        let names: Vec<&str> = if i % 3 == 0 && a != b {
            vec![&a, &b]
        } else {
            vec![&a]
        };
        let r = repo.get(gets(&names)).await.unwrap();
        let rev = r
            .values()
            .filter_map(|g| g.state.latest.as_ref().map(|l| l.rev))
            .max()
            .unwrap_or(0)
            + 1;
        let mut t = Transforms::default();
        for n in &names {
            let part = if r[&bid(n)].state.latest.is_none() {
                insert(&[n])
            } else {
                append(&[n], json!(i))
            };
            t.merge(part);
        }
        let trx = format!("c{run}x{i}");
        assert!(repo
            .pend(pend_req(&trx, Some(rev), t, PendPolicy::Continue))
            .await
            .unwrap()
            .is_success());
        assert!(repo
            .commit(commit_req(&trx, &names, rev))
            .await
            .unwrap()
            .is_success());
        println!("ACK {trx} {rev} {}", names.join(" "));
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the child until `acks_wanted` acknowledgements (plus a random delay), kills it.
fn run_and_kill(
    kind: StorageKind,
    dir: &Path,
    rng: &mut Rng,
    acked: &mut Vec<(String, Rev, Vec<String>)>,
) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CRASH_DIR", dir)
        .env("CRASH_KIND", kind.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acks_wanted = 1 + rng.next(25);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < acks_wanted {
        assert!(Instant::now() < deadline, "child made no progress");
        let Some(Ok(line)) = lines.next() else {
            panic!("child exited early")
        };
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut parts = rest.split(' ');
            let trx = parts.next().unwrap().to_string();
            let rev = parts.next().unwrap().parse().unwrap();
            acked.push((trx, rev, parts.map(String::from).collect()));
            seen += 1;
        }
    }
    // Kill at a random point of the next operation(s).
    std::thread::sleep(Duration::from_micros(rng.next(3_000)));
    child.kill().unwrap();
    child.wait().unwrap();
    // Acks printed before the kill landed in the pipe: they count too.
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ACK ") {
            let mut parts = rest.split(' ');
            let trx = parts.next().unwrap().to_string();
            let rev = parts.next().unwrap().parse().unwrap();
            acked.push((trx, rev, parts.map(String::from).collect()));
        }
    }
}

fn verify(kind: StorageKind, dir: &Path, acked: &[(String, Rev, Vec<String>)]) {
    let raw = open_storage(kind, dir).unwrap();
    let mut latest: BTreeMap<String, Rev> = BTreeMap::new();
    for (trx, rev, blocks) in acked {
        for b in blocks {
            assert_eq!(
                raw.get_revision(&bid(b), *rev)
                    .unwrap()
                    .as_ref()
                    .map(TrxId::as_str),
                Some(trx.as_str()),
                "{kind}: acknowledged commit {trx}@{rev} lost on {b}"
            );
            assert!(raw.get_transaction(&bid(b), &tid(trx)).unwrap().is_some());
            let l = latest.entry(b.clone()).or_default();
            *l = (*l).max(*rev);
        }
    }
    for i in 0..BLOCKS {
        let b = bid(&format!("k{i}"));
        let Some(meta) = raw.get_meta(&b).unwrap() else {
            continue;
        };
        let l = meta.latest.expect("meta without latest");
        assert!(
            l.rev >= latest.get(b.as_str()).copied().unwrap_or(0),
            "{kind}: latest went back on {b}"
        );
        // The published revision is complete: its revision record, transform and materialization.
        assert_eq!(
            raw.get_revision(&b, l.rev).unwrap(),
            Some(l.trx_id.clone()),
            "{kind}: half-committed {b}"
        );
        assert!(
            raw.get_transaction(&b, &l.trx_id).unwrap().is_some(),
            "{kind}: half-committed {b}"
        );
        assert!(
            matches!(raw.get_materialized(&b, &l.trx_id).unwrap(), Some(Some(_))),
            "{kind}: {b}"
        );
        // Items grow by one per committed append: the history is whole.
        let revs = raw.list_revisions(&b, 0, l.rev).unwrap();
        let block = raw
            .get_materialized(&b, &l.trx_id)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            block.fields["items"].as_array().unwrap().len() + 1,
            revs.len(),
            "{kind}: {b}"
        );
    }
}

fn crash_loop(kind: StorageKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64);
    let mut acked = Vec::new();
    for _ in 0..KILLS_PER_BACKEND {
        run_and_kill(kind, dir.path(), &mut rng, &mut acked);
        verify(kind, dir.path(), &acked);
    }
    assert!(acked.len() >= KILLS_PER_BACKEND);
}

#[test]
fn sigkill_loses_no_acknowledged_commit_embedded() {
    crash_loop(StorageKind::Embedded);
}

#[test]
fn sigkill_loses_no_acknowledged_commit_file() {
    crash_loop(StorageKind::File);
}

/// Regression: on the file backend a commit that crashed after writing its
/// revision and transform files but before `meta.json` left (1) an orphan revision
/// record that a later commit at a higher revision made part of the history, and
/// (2) a committed-looking transform that made the still-pending transaction vanish
/// on reload. Found by the SIGKILL loop above (history count off by one).
#[actix_rt::test]
async fn unpublished_commit_records_are_ignored_and_cleaned() {
    use optimystic_actors::storage::{BlockStorage, WriteOp};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let raw = open_storage(StorageKind::File, dir.path()).unwrap();
    let repo = repo_on(raw.clone());
    write(&repo, "t1", 1, insert(&["o"])).await;
    let p = repo
        .pend(pend_req(
            "t2",
            Some(2),
            append(&["o"], json!(2)),
            PendPolicy::Fail,
        ))
        .await
        .unwrap();
    assert!(p.is_success(), "acknowledged pend");
    // The crash: phase 0 of t2's commit at rev 2 landed, meta.json did not.
    let t = Arc::new(raw.get_pending(&bid("o"), &tid("t2")).unwrap().unwrap());
    raw.write(vec![
        WriteOp::PutTransaction {
            block: bid("o"),
            trx: tid("t2"),
            transform: t,
        },
        WriteOp::PutRevision {
            block: bid("o"),
            rev: 2,
            trx: tid("t2"),
        },
    ])
    .await
    .unwrap();
    repo.registry().shutdown();

    let st = BlockStorage::load(bid("o"), raw.clone()).unwrap();
    assert_eq!(
        st.pending_ids(),
        vec![tid("t2")],
        "the acknowledged pend survives"
    );
    assert_eq!(st.state().orphans, vec![2]);
    drop(st);
    // A commit of another transaction at a higher revision removes the orphan.
    let repo = repo_on(raw.clone());
    let p = repo
        .pend(pend_req(
            "t3",
            Some(5),
            append(&["o"], json!(3)),
            PendPolicy::Continue,
        ))
        .await
        .unwrap();
    assert!(p.is_success());
    assert!(repo
        .commit(commit_req("t3", &["o"], 5))
        .await
        .unwrap()
        .is_success());
    let revs: Vec<Rev> = raw
        .list_revisions(&bid("o"), 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.rev)
        .collect();
    assert_eq!(revs, vec![1, 5]);
    let r = repo.get(gets(&["o"])).await.unwrap();
    assert_eq!(
        r[&bid("o")].block.as_ref().unwrap().fields["items"],
        json!([3])
    );
    assert_eq!(r[&bid("o")].state.pendings, Some(vec![tid("t2")]));
}
