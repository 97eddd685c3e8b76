//! Test-only: where the coordinator stops between the phases of a round, as the
//! `hang-after-promises` / `hang-after-one-commit` rules of the fault file say
//! ([`crate::faults`]; debug builds only — a release binary never stops here).

use crate::cluster::{message_blocks, ClusterRecord};
use crate::faults::{coordinator_hang, Hang};

/// The hang rule in force, if it applies to `record` (a block id starting with
/// `fault-`).
pub(crate) fn hang_for(record: &ClusterRecord) -> Option<Hang> {
    // The rule first: without one (always, in release builds) nothing else runs.
    let hang = coordinator_hang()?;
    message_blocks(&record.message.operations)
        .iter()
        .any(|b| b.as_str().starts_with("fault-"))
        .then_some(hang)
}

/// Announces the hang (with the member that got phase 2, if one did) and never
/// returns.
pub(crate) async fn hang(hang: Hang, record: &ClusterRecord, reached: Option<&str>) {
    println!(
        "fault: {hang:?} {} {}",
        record.message_hash,
        reached.unwrap_or("-")
    );
    std::future::pending::<()>().await;
}
