//! Test-only fault injection for the coordinator. Compiled only into debug builds
//! (the ones the test suite runs); a release binary never reads the variable.
//!
//! `OPTIMYSTIC_TEST_FAULT=hang-after-promises` makes the coordinator stop, forever,
//! right after phase 1 of any record touching a block whose id starts with
//! `fault-` (the decision is commit, no member has heard it);
//! `hang-after-one-commit` delivers phase 2 to one remote member first. Either way
//! it prints `fault: <name> <messageHash> <peerId that got phase 2, or ->` on
//! stdout, so a test can SIGKILL the process exactly between the phases.

use crate::cluster::{message_blocks, ClusterRecord};

/// Where the coordinator stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub(crate) enum Fault {
    /// No fault (always, in release builds).
    None,
    /// After phase 1.
    HangAfterPromises,
    /// After phase 2 reached one remote member.
    HangAfterOneCommit,
}

impl Fault {
    /// The fault the environment asks for.
    pub(crate) fn configured() -> Self {
        #[cfg(debug_assertions)]
        {
            match std::env::var("OPTIMYSTIC_TEST_FAULT").as_deref() {
                Ok("hang-after-promises") => return Fault::HangAfterPromises,
                Ok("hang-after-one-commit") => return Fault::HangAfterOneCommit,
                _ => {}
            }
        }
        Fault::None
    }

    /// Whether this fault applies to `record`.
    pub(crate) fn hits(self, record: &ClusterRecord) -> bool {
        self != Fault::None
            && message_blocks(&record.message.operations)
                .iter()
                .any(|b| b.as_str().starts_with("fault-"))
    }

    /// Announces the fault (with the member that got phase 2, if one did) and
    /// never returns.
    pub(crate) async fn hang(self, record: &ClusterRecord, reached: Option<&str>) {
        println!(
            "fault: {self:?} {} {}",
            record.message_hash,
            reached.unwrap_or("-")
        );
        std::future::pending::<()>().await;
    }
}
