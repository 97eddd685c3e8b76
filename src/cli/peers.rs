//! `optimystic peers`: a node's peer book, and retiring a peer from every
//! configuration (docs/OPERATIONS.md, "Removing a peer"), through the node's
//! HTTP admin server.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;

/// `peers list`: one line per peer the node has had in a configuration.
pub(super) fn list(addr: &str) -> i32 {
    match peers(addr) {
        Ok(peers) => {
            println!(
                "{:<54} {:>7} {:>9} {:>7}  addresses",
                "peer", "regions", "connected", "retired"
            );
            for p in peers {
                let flag = |k: &str| {
                    if p[k].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                };
                let addrs: Vec<&str> = p["addrs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "{:<54} {:>7} {:>9} {:>7}  {}",
                    p["peerId"].as_str().unwrap_or("?"),
                    p["regions"],
                    flag("connected"),
                    flag("retired"),
                    addrs.join(" ")
                );
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `peers remove PEER`: retires it, then waits (up to `wait`) until none of the
/// node's configurations has it.
pub(super) fn remove(addr: &str, peer: &str, wait: Duration) -> i32 {
    match remove_and_wait(addr, peer, wait) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn remove_and_wait(addr: &str, peer: &str, wait: Duration) -> Result<(), String> {
    if peer.is_empty() || !peer.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{peer:?} is not a PeerId"));
    }
    let reply: Value =
        serde_json::from_str(&http::post(addr, &format!("/v1/peers/{peer}/remove"))?)
            .map_err(|e| format!("bad reply: {e}"))?;
    println!(
        "retired {peer}: a member of {} regions of this node",
        reply["regions"]
    );
    let deadline = Instant::now() + wait;
    loop {
        let left = peers(addr)?
            .iter()
            .find(|p| p["peerId"].as_str() == Some(peer))
            .and_then(|p| p["regions"].as_u64())
            .unwrap_or(0);
        if left == 0 {
            println!("removed {peer}: in no configuration of this node");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{peer} is still a member of {left} regions after {wait:?} (each needs a live peer to replace it; see `peers list`)"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn peers(addr: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_str(&http::get(addr, "/v1/peers")?)
        .map_err(|e| format!("bad /v1/peers reply: {e}"))?;
    Ok(v["peers"].as_array().cloned().unwrap_or_default())
}
