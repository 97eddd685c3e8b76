//! Test-only fault injection between processes, for the fault-injection suite
//! (`tests/faults.rs`) and scripts built on it. **Debug builds only**: in a release
//! build every function here reports "no fault" without reading anything.
//!
//! A node started with `OPTIMYSTIC_TEST_FAULTS=<file>` reads the rules in that file
//! (checked on every request and write; replace the file by renaming a new one
//! over it, and the new rules hold for everything started after), one per line:
//!
//! - `drop <peerId>`: requests this node sends to that peer fail at once as if the
//!   peer were unreachable (the request is never sent);
//! - `cut <peerId>`: a partition — this node closes its connections to that peer
//!   and refuses new ones either way (applied by the swarm within a second, which
//!   then prints `fault: cut <n> peers` on stdout), and requests to it fail at
//!   once as with `drop`. Written on both sides, the two are cut apart as by a
//!   network partition: connections close, so the member grace and the dead-peer
//!   timeout run as they would;
//! - `delay <peerId> <ms>`: requests this node sends to that peer wait `ms` first;
//! - `drop-decisions <peerId>`: as a coordinator, this node never delivers a
//!   decided record (phase 2) to that peer — its proposals still go out, so the
//!   peer promises and then hears nothing (a coordinator cut off between the
//!   phases);
//! - `pause-after-commit-point <ms>`: a write across clusters, once its commit
//!   point has committed, prints `fault: commit point passed <trxId>` on stdout
//!   and waits `ms` before committing its other parts;
//! - `disk-full`: every storage write fails with "no space left on device" and
//!   changes nothing;
//! - `hang-after-promises`: as a coordinator, this node stops forever right after
//!   phase 1 of any record touching a block whose id starts with `fault-` (the
//!   decision is commit; no member has heard it);
//! - `hang-after-one-commit`: the same, after phase 2 reached one remote member.
//!   Either way it prints `fault: <HangAfterPromises|HangAfterOneCommit>
//!   <messageHash> <peerId that got phase 2, or ->` on stdout, so a test can
//!   SIGKILL the process exactly between the phases.
//!
//! Two rules are read once, the first time the node needs them — write them
//! before the node starts:
//!
//! - `clock-offset <ms>`: this node's wall clock reads `ms` (signed) ahead of the
//!   real one, so a test can run members whose clocks disagree;
//! - `lazy-sync <ms>`: lazily written storage batches are synced every `ms`
//!   instead of every 25 ms (the power-cut tests hold them back for good).
//!
//! Blank lines and lines starting with `#` are ignored; a missing file means no
//! faults. Writing `drop` lines on both sides cuts two nodes apart at the
//! database's protocols only (their libp2p connection stays up); `cut` closes it.

use std::time::Duration;

use libp2p::PeerId;

/// What to do with a request to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Send it.
    Send,
    /// Fail it as unreachable.
    Drop,
    /// Wait, then send.
    Delay(Duration),
}

/// Where a coordinator stops between the phases of a 2PC round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// After phase 1 (`hang-after-promises`).
    HangAfterPromises,
    /// After phase 2 reached one remote member (`hang-after-one-commit`).
    HangAfterOneCommit,
}

/// The `hang-after-…` rule in force, if any.
pub fn coordinator_hang() -> Option<Hang> {
    #[cfg(debug_assertions)]
    {
        imp::rules().hang
    }
    #[cfg(not(debug_assertions))]
    None
}

/// The `clock-offset` rule (0 without one), as first read.
pub fn clock_offset_ms() -> i64 {
    #[cfg(debug_assertions)]
    {
        static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        *OFFSET.get_or_init(|| imp::rules().clock_offset_ms.unwrap_or(0))
    }
    #[cfg(not(debug_assertions))]
    0
}

/// The `lazy-sync` rule, if there is one, as first read.
pub fn lazy_sync() -> Option<Duration> {
    #[cfg(debug_assertions)]
    {
        static LAZY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
        *LAZY.get_or_init(|| imp::rules().lazy_sync)
    }
    #[cfg(not(debug_assertions))]
    None
}

/// The fault (if any) on requests to `peer`.
pub fn outbound(peer: &PeerId) -> Outbound {
    #[cfg(debug_assertions)]
    {
        let rules = imp::rules();
        if rules.drop.contains(peer) || rules.cut.contains(peer) {
            return Outbound::Drop;
        }
        if let Some(d) = rules.delay.get(peer) {
            return Outbound::Delay(*d);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = peer;
    Outbound::Send
}

/// The peers this node must hold no connection with (`cut` rules).
pub fn cut() -> std::collections::HashSet<PeerId> {
    #[cfg(debug_assertions)]
    {
        imp::rules().cut.clone()
    }
    #[cfg(not(debug_assertions))]
    std::collections::HashSet::new()
}

/// Whether this node, as a coordinator, must not deliver decided records to `peer`.
pub fn drops_decision(peer: &PeerId) -> bool {
    #[cfg(debug_assertions)]
    {
        imp::rules().drop_decisions.contains(peer)
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = peer;
        false
    }
}

/// Past the commit point of a write across clusters: announces it and waits as
/// the `pause-after-commit-point` rule says (nothing without the rule).
pub async fn after_commit_point(trx: &str) {
    #[cfg(debug_assertions)]
    {
        if let Some(d) = imp::rules().pause_after_commit_point {
            println!("fault: commit point passed {trx}");
            tokio::time::sleep(d).await;
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = trx;
}

/// Whether storage writes must fail as if the disk were full.
pub fn disk_full() -> bool {
    #[cfg(debug_assertions)]
    {
        imp::rules().disk_full
    }
    #[cfg(not(debug_assertions))]
    false
}

/// The error a write gets when [`disk_full`] holds.
pub fn disk_full_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::StorageFull,
        "no space left on device (injected fault)",
    )
}

#[cfg(debug_assertions)]
mod imp {
    use std::collections::{HashMap, HashSet};
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use libp2p::PeerId;
    use parking_lot::Mutex;

    #[derive(Debug, Default)]
    pub(super) struct Rules {
        pub(super) drop: HashSet<PeerId>,
        pub(super) cut: HashSet<PeerId>,
        pub(super) delay: HashMap<PeerId, Duration>,
        pub(super) drop_decisions: HashSet<PeerId>,
        pub(super) pause_after_commit_point: Option<Duration>,
        pub(super) disk_full: bool,
        pub(super) hang: Option<super::Hang>,
        pub(super) clock_offset_ms: Option<i64>,
        pub(super) lazy_sync: Option<Duration>,
    }

    /// The file's identity: inode (a renamed-in file is a new one), size and
    /// modification time.
    type Version = Option<(u64, u64, i64, i64)>;

    struct Source {
        path: PathBuf,
        /// The version read last, and its rules.
        state: Mutex<(Version, Arc<Rules>)>,
    }

    fn source() -> Option<&'static Source> {
        static SOURCE: OnceLock<Option<Source>> = OnceLock::new();
        SOURCE
            .get_or_init(|| {
                let path = PathBuf::from(std::env::var_os("OPTIMYSTIC_TEST_FAULTS")?);
                Some(Source {
                    path,
                    state: Mutex::new((None, Arc::default())),
                })
            })
            .as_ref()
    }

    pub(super) fn rules() -> Arc<Rules> {
        let Some(src) = source() else {
            return Arc::default();
        };
        let mut st = src.state.lock();
        let version = std::fs::metadata(&src.path)
            .ok()
            .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
        if version != st.0 {
            st.0 = version;
            let text = std::fs::read_to_string(&src.path).unwrap_or_default();
            st.1 = Arc::new(parse(&text));
            tracing::warn!(rules = ?st.1, "test fault rules changed");
        }
        st.1.clone()
    }

    fn parse(text: &str) -> Rules {
        let mut r = Rules::default();
        for line in text.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["drop", peer] => {
                    if let Ok(p) = peer.parse() {
                        r.drop.insert(p);
                    }
                }
                ["cut", peer] => {
                    if let Ok(p) = peer.parse() {
                        r.cut.insert(p);
                    }
                }
                ["delay", peer, ms] => {
                    if let (Ok(p), Ok(ms)) = (peer.parse(), ms.parse()) {
                        r.delay.insert(p, Duration::from_millis(ms));
                    }
                }
                ["drop-decisions", peer] => {
                    if let Ok(p) = peer.parse() {
                        r.drop_decisions.insert(p);
                    }
                }
                ["pause-after-commit-point", ms] => {
                    if let Ok(ms) = ms.parse() {
                        r.pause_after_commit_point = Some(Duration::from_millis(ms));
                    }
                }
                ["disk-full"] => r.disk_full = true,
                ["clock-offset", ms] => r.clock_offset_ms = ms.parse().ok(),
                ["lazy-sync", ms] => r.lazy_sync = ms.parse().ok().map(Duration::from_millis),
                ["hang-after-promises"] => r.hang = Some(super::Hang::HangAfterPromises),
                ["hang-after-one-commit"] => r.hang = Some(super::Hang::HangAfterOneCommit),
                _ => {}
            }
        }
        r
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        #[test]
        fn rules_parse_and_junk_is_ignored() {
            let p = PeerId::random();
            let r = parse(&format!(
                "# comment\ndrop {p}\ndelay {p} 250\ndisk-full\ndrop not-a-peer\nexplode\ndrop-decisions {p}\ncut {p}\ncut nobody\n"
            ));
            assert!(r.drop.contains(&p) && r.drop.len() == 1);
            assert!(r.cut.contains(&p) && r.cut.len() == 1);
            assert!(r.drop_decisions.contains(&p));
            assert_eq!(r.delay[&p], Duration::from_millis(250));
            assert!(r.disk_full);
            assert_eq!(r.hang, None);
            assert!(!parse("").disk_full);
            let h = parse("hang-after-promises\n");
            assert_eq!(h.hang, Some(super::super::Hang::HangAfterPromises));
            let h = parse("hang-after-one-commit\nhang-after-one-commit extra\n");
            assert_eq!(h.hang, Some(super::super::Hang::HangAfterOneCommit));
            let t = parse("clock-offset -10000\nlazy-sync 3600000\n");
            assert_eq!(t.clock_offset_ms, Some(-10_000));
            assert_eq!(t.lazy_sync, Some(Duration::from_secs(3600)));
            assert_eq!(parse("clock-offset soon\n").clock_offset_ms, None);
        }
    }
}
