//! Power loss, not only SIGKILL. A SIGKILLed process leaves its unsynced writes in
//! the page cache, so a crash test cannot see a missing fsync. Here the nodes'
//! data directories live on a FUSE file system (`tests/support/powerloss_fs.py`)
//! that keeps apart everything not yet fsynced; a power cut kills every node at
//! once and keeps only what was synced. The nodes restart on what survived and
//! the fault suite's checker finds every acknowledged write, on both backends.
//!
//! Needs `/dev/fuse`, root (or fusermount) and Debian's `python3-fusepy`; `.ci/run`
//! installs the package.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Tests that run node processes hold `heavy()` across awaits: one at a time.
#![allow(clippy::await_holding_lock)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::faults::{check, release_bound, TestCluster, Workload};
use support::*;

const FS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/powerloss_fs.py");
const FS_SELFTEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/powerloss_fs_selftest.py"
);

/// The power-cut file system, mounted.
struct PowerFs {
    daemon: Option<Child>,
    mnt: PathBuf,
    durable: PathBuf,
}

impl PowerFs {
    /// Mounts it at `root/mnt`, live data in `root/backing`, what would survive
    /// in `root/durable`.
    fn mount(root: &Path) -> Self {
        let [backing, durable, mnt] = ["backing", "durable", "mnt"].map(|d| root.join(d));
        for d in [&backing, &durable, &mnt] {
            std::fs::create_dir_all(d).unwrap();
        }
        let mut daemon = Command::new("python3")
            .arg(FS)
            .args([&backing, &durable, &mnt])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let out = daemon.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == "ready" => {}
            other => {
                let _ = daemon.kill();
                let err = daemon
                    .wait_with_output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                panic!(
                    "the power-cut file system did not mount ({other:?}): {err}\n\
                     it needs /dev/fuse, root and Debian's python3-fusepy (.ci/run installs it)"
                );
            }
        }
        Self {
            daemon: Some(daemon),
            mnt,
            durable,
        }
    }

    /// The power cut, once every process using the mount is dead: unmounts and
    /// returns the directory holding only what was synced.
    fn cut(mut self) -> PathBuf {
        let mut daemon = self.daemon.take().unwrap();
        let pid = daemon.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = daemon.wait().unwrap();
        assert!(
            status.success(),
            "the power-cut file system failed: {status}"
        );
        self.durable.clone()
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// The file system itself keeps exactly what was synced (its own checks: an
/// unsynced write lost, a synced one kept, rename without fsync, truncation,
/// holes, locks, parallel writers).
#[test]
fn the_power_cut_file_system_keeps_exactly_what_was_synced() {
    let out = Command::new("python3").arg(FS_SELFTEST).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three nodes on `storage`, writes acknowledged through each, then the power
/// cut; restarted on what survived, every acknowledged write is there, whole,
/// on a majority — and the checker's history is exact on every member.
async fn nothing_acknowledged_is_lost_in_a_power_cut(storage: &str) {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let fs = PowerFs::mount(tmp.path());
    let flags = ["--request-timeout-ms", "3000", "--storage", storage];
    // Lazily written records (a member's `Committed` state) are held back for
    // good — durable only with the next durable write, the worst case the
    // storage contract allows — so an acknowledgement that relied on one, or on
    // the background sync that usually covers them within 25 ms, is caught.
    let lazy = "lazy-sync 3600000";
    let rules = [(0, lazy), (1, lazy), (2, lazy)];
    let mut c = TestCluster::start_in(&fs.mnt, 3, &flags, &[], &rules).await;
    let mut w = Workload::create(&c.client(0), "power", 4).await;
    for k in 0..24 {
        w.step(&c.client(k % 3), k).await;
    }
    assert!(
        w.acked_count() >= 20,
        "writes before the cut: {}; {:?}",
        w.acked_count(),
        w.last_error
    );
    // Every node at once; then everything not fsynced is gone.
    for i in 0..c.len() {
        c.kill(i);
    }
    let durable = fs.cut();
    for i in 0..c.len() {
        c.move_data(i, durable.join(format!("n{i}")));
    }
    for i in 0..c.len() {
        c.restart(i);
    }
    c.settle().await;
    check(&c, &mut w, release_bound(Duration::from_secs(3))).await;
}

#[actix_rt::test]
async fn nothing_acknowledged_is_lost_in_a_power_cut_on_the_embedded_backend() {
    nothing_acknowledged_is_lost_in_a_power_cut("embedded").await;
}

#[actix_rt::test]
async fn nothing_acknowledged_is_lost_in_a_power_cut_on_the_file_backend() {
    nothing_acknowledged_is_lost_in_a_power_cut("file").await;
}
