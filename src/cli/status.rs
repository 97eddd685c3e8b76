//! `optimystic status` and `optimystic inspect`: readable tables from a node's
//! HTTP admin server.

use std::collections::BTreeMap;

use serde_json::Value;

use super::http;

pub(super) fn status(addr: &str) -> i32 {
    match status_text(addr) {
        Ok(t) => {
            print!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `inspect --block ID`: one line per member of the block's configuration
/// (and the node asked, if it is not one): what its own copy holds.
pub(super) fn block(addr: &str, id: &str) -> i32 {
    match block_text(addr, id) {
        Ok(t) => {
            print!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn block_text(addr: &str, id: &str) -> Result<String, String> {
    if id.is_empty() || id.contains(['/', '?', '#', '%']) {
        return Err(format!("{id:?} is not a block id"));
    }
    let v: Value = serde_json::from_str(&http::get(addr, &format!("/v1/blocks/{id}"))?)
        .map_err(|e| format!("bad /v1/blocks reply: {e}"))?;
    let mut out = match v.get("config") {
        Some(c) => format!(
            "block {id} · region {} · configuration epoch {} of {} members\n",
            v["region"],
            c["epoch"],
            c["members"].as_array().map_or(0, Vec::len)
        ),
        None => format!(
            "block {id} · region {} · no configuration known\n",
            v["region"]
        ),
    };
    out.push_str(&format!(
        "{:<54} {:>6}  {:>8}  {:<24} pending\n",
        "peer", "member", "revision", "transaction"
    ));
    for c in v["copies"].as_array().cloned().unwrap_or_default() {
        let member = if c["member"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let peer = c["peerId"].as_str().unwrap_or("?");
        let line = if let Some(e) = c["error"].as_str() {
            format!("{peer:<54} {member:>6}  unreachable: {e}")
        } else if c["stored"].as_bool() != Some(true) {
            format!("{peer:<54} {member:>6}  no copy")
        } else {
            let pending: Vec<&str> = c["pending"]
                .as_array()
                .map(|p| p.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{peer:<54} {member:>6}  {:>8}  {:<24} {}",
                c["latest"]["rev"]
                    .as_u64()
                    .map_or("-".into(), |r| r.to_string()),
                c["latest"]["trxId"].as_str().unwrap_or("-"),
                if pending.is_empty() {
                    "-".into()
                } else {
                    pending.join(",")
                }
            )
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

pub(super) fn inspect(addr: &str) -> i32 {
    match status_text(addr).and_then(|s| Ok(s + &inspect_text(addr)?)) {
        Ok(t) => {
            print!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn status_text(addr: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(&http::get(addr, "/status")?)
        .map_err(|e| format!("bad /status reply: {e}"))?;
    let s = |k: &str| {
        v.get(k)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let mut out = String::new();
    out += &format!("peer id            {}\n", s("peerId"));
    out += &format!("version            {}\n", s("version"));
    out += &format!("uptime             {} s\n", s("uptimeSeconds"));
    out += &format!(
        "storage            {} ({} blocks, {} commits, {} bytes written)\n",
        v["storage"]["backend"].as_str().unwrap_or("?"),
        v["storage"]["blocks"],
        v["storage"]["commits"],
        v["storage"]["bytesWritten"]
    );
    out += &format!("storage size       {} bytes\n", v["storage"]["sizeBytes"]);
    out += &format!("live block actors  {}\n", s("liveBlockActors"));
    out += &format!("active writes      {}\n", s("activeTransactions"));
    out += &format!("inbound requests   {}\n", s("inboundRequests"));
    out += &format!("cluster size       {}\n", s("clusterSize"));
    let r = &v["replication"];
    out += &format!(
        "replication        {} · {} blocks under-replicated · {} queued for repair · {} repaired in {} anti-entropy rounds\n",
        if r["caughtUp"].as_bool() == Some(true) {
            "caught up"
        } else {
            "catching up"
        },
        r["underReplicated"],
        r["repairQueue"],
        r["blocksRepaired"],
        r["antientropyRounds"]
    );
    out += "listen addresses\n";
    for a in v["listenAddrs"].as_array().into_iter().flatten() {
        out += &format!("  {}\n", a.as_str().unwrap_or("?"));
    }
    let peers = v["connectedPeers"].as_array().cloned().unwrap_or_default();
    out += &format!("connected peers ({})\n", peers.len());
    for p in peers {
        out += &format!("  {}\n", p.as_str().unwrap_or("?"));
    }
    Ok(out)
}

/// One sample line of Prometheus text: name, labels, value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (lhs, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match lhs.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (lhs, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            Some((name.to_string(), labels, value))
        })
        .collect()
}

fn inspect_text(addr: &str) -> Result<String, String> {
    let text = http::get(addr, "/metrics")?;
    let samples = samples(&text);
    let by_actor = |metric: &str| -> BTreeMap<String, f64> {
        samples
            .iter()
            .filter(|(n, _, _)| n == metric)
            .filter_map(|(_, l, v)| Some((l.get("actor")?.clone(), *v)))
            .collect()
    };
    let (depth, high, handled) = (
        by_actor("optimystic_actor_mailbox_depth"),
        by_actor("optimystic_actor_mailbox_high_water"),
        by_actor("optimystic_actor_messages_handled_total"),
    );
    let lat_sum = by_actor("optimystic_actor_handler_latency_seconds_sum");
    let lat_count = by_actor("optimystic_actor_handler_latency_seconds_count");
    let mut rows: Vec<_> = depth.keys().cloned().collect();
    rows.sort_by(|a, b| depth[b].total_cmp(&depth[a]).then(a.cmp(b)));
    let mut out = String::from(
        "\nmailboxes (by depth)\n  actor           depth  high-water     handled  mean latency\n",
    );
    for a in rows {
        let mean = match (lat_sum.get(&a), lat_count.get(&a)) {
            (Some(s), Some(c)) if *c > 0.0 => format!("{:.1} µs", s / c * 1e6),
            _ => "-".into(),
        };
        out += &format!(
            "  {a:<14} {:>6} {:>11} {:>11}  {mean}\n",
            depth[&a],
            high.get(&a).copied().unwrap_or(0.0),
            handled.get(&a).copied().unwrap_or(0.0)
        );
    }
    out += "\nrepo operations\n  op          success    stale    error\n";
    for op in ["get", "pend", "commit", "cancel", "pendCommit"] {
        let n = |o: &str| {
            samples
                .iter()
                .find(|(n, l, _)| {
                    n == "optimystic_repo_requests_total"
                        && l.get("op").map(String::as_str) == Some(op)
                        && l.get("outcome").map(String::as_str) == Some(o)
                })
                .map_or(0.0, |s| s.2)
        };
        out += &format!(
            "  {op:<10} {:>8} {:>8} {:>8}\n",
            n("success"),
            n("stale"),
            n("error")
        );
    }
    out += "\ncluster transactions\n";
    for outcome in [
        "started",
        "committed",
        "aborted",
        "expired",
        "in_doubt",
        "local",
    ] {
        let n = samples
            .iter()
            .find(|(n, l, _)| {
                n == "optimystic_transactions_total"
                    && l.get("outcome").map(String::as_str) == Some(outcome)
            })
            .map_or(0.0, |s| s.2);
        out += &format!("  {outcome:<10} {n:>8}\n");
    }
    Ok(out)
}
