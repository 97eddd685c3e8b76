//! `optimystic leave`: a node's graceful leave through its HTTP admin server
//! (docs/OPERATIONS.md, "Leaving the network"), and the same wait for
//! `node --leave-on-shutdown`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;

/// How often the progress is read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Starts the leave of the node at `addr`, then waits (up to `wait`) until it
/// is over. 0 when it is, 1 otherwise.
pub(super) fn leave(addr: &str, wait: Duration) -> i32 {
    match leave_and_wait(addr, wait) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn leave_and_wait(addr: &str, wait: Duration) -> Result<(), String> {
    let started = progress(&http::post(addr, "/v1/leave")?)?;
    println!(
        "leaving: a member of {} regions, {} blocks stored",
        started["regions"], started["copies"]
    );
    let deadline = Instant::now() + wait;
    let mut last = started;
    loop {
        if last["done"].as_bool() == Some(true) {
            println!("left: in no configuration, every block it held is on its whole configuration; stop the node now");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(stuck(&last, wait));
        }
        std::thread::sleep(POLL);
        last = progress(&http::get(addr, "/v1/leave")?)?;
    }
}

fn progress(body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("bad /v1/leave reply: {e}"))
}

/// Why a leave did not finish in `wait`.
fn stuck(p: &Value, wait: Duration) -> String {
    let (regions, copies) = (p["regions"].as_u64(), p["copies"].as_u64());
    let (live, k) = (p["replacements"].as_u64(), p["clusterSize"].as_u64());
    let mut why = format!(
        "not left after {wait:?}: still a member of {} regions, {} blocks stored",
        regions.unwrap_or(0),
        copies.unwrap_or(0)
    );
    if let (Some(live), Some(k)) = (live, k) {
        if regions.unwrap_or(0) > 0 && live < k {
            why.push_str(&format!(
                " (only {live} other live peers, {k} needed to take this node's place)"
            ));
        } else if copies.unwrap_or(0) > 0 {
            why.push_str(" (waiting until every member of each block's configuration holds it)");
        }
    }
    why
}
