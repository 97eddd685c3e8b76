//! Backup of a live node and restore into a new data directory, end to end as
//! an operator runs them: `optimystic backup --http` while a client keeps
//! writing, `optimystic restore`, a node started on the restored directory
//! serving every block; damaged or truncated files, a non-empty directory and
//! a backend that cannot snapshot are refused and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use support::*;

fn post(http: &str, op: &str, body: &Value) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(format!("http://{http}/v1/repo/{op}"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{op}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Revision `rev` of `block`: its insert, then appends of `rev` to `items`.
fn write(http: &str, block: &str, rev: u64) {
    let transforms = if rev == 1 {
        json!({"inserts": {block: {"header": {"id": block, "type": "T", "collectionId": "c"}, "items": []}}})
    } else {
        json!({"updates": {block: [["items", 0, 0, [rev]]]}})
    };
    let trx = format!("{block}r{rev}");
    let r = post(
        http,
        "pendCommit",
        &json!({"pend": {"trxId": trx, "rev": rev, "transforms": transforms, "policy": "f"},
                "commit": {"trxId": trx, "blockIds": [block], "rev": rev}}),
    );
    assert_eq!(r["commit"]["success"], json!(true), "{r}");
}

fn get(http: &str, block: &str) -> Value {
    post(http, "get", &json!({"blockIds": [block]}))[block].clone()
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_live_backup_restores_into_a_node_that_serves_every_block() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("a"), &["--http", "127.0.0.1:0"]);
    let http = node.http_addr().unwrap();
    let blocks: Vec<String> = (0..30).map(|i| format!("b{i}")).collect();
    for (i, b) in blocks.iter().enumerate() {
        for rev in 1..=(i as u64 % 4) + 1 {
            write(&http, b, rev);
        }
    }
    // A deleted block and a transaction left pending.
    write(&http, "gone", 1);
    post(
        &http,
        "pendCommit",
        &json!({"pend": {"trxId": "del", "rev": 2, "transforms": {"deletes": ["gone"]}, "policy": "f"},
                                      "commit": {"trxId": "del", "blockIds": ["gone"], "rev": 2}}),
    );
    write(&http, "held", 1);
    let r = post(
        &http,
        "pend",
        &json!({"trxId": "open", "rev": 2, "transforms": {"updates": {"held": [["items", 0, 0, [9]]]}}, "policy": "f"}),
    );
    assert_eq!(r["success"], json!(true));
    let before: Vec<Value> = blocks.iter().map(|b| get(&http, b)).collect();

    // A client keeps writing one block while the backup is taken.
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let writer = {
        let (http, stop, acked) = (http.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut rev = 0;
            while !stop.load(Ordering::Relaxed) {
                rev += 1;
                write(&http, "live", rev);
                acked.store(rev, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 5 {
        std::thread::yield_now();
    }
    let acked_at_start = acked.load(Ordering::SeqCst);
    let file = tmp.path().join("node.backup");
    let (code, out) = cli(&["backup", "--http", &http, file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let acked_at_end = acked.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(!tmp.path().join("node.backup.partial").exists());

    // Restore into an empty directory; a node started there serves it all.
    let restored = tmp.path().join("b");
    let (code, out) = cli(&[
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let copy = NodeProcess::start(&restored, &["--http", "127.0.0.1:0"]);
    assert_ne!(
        copy.peer_id(),
        node.peer_id(),
        "a restored node has an identity of its own"
    );
    let chttp = copy.http_addr().unwrap();
    for (b, want) in blocks.iter().zip(&before) {
        assert_eq!(&get(&chttp, b), want, "{b}");
    }
    let gone = get(&chttp, "gone");
    assert!(
        gone.get("block").is_none() && gone["state"]["latest"]["rev"] == json!(2),
        "{gone}"
    );
    assert_eq!(get(&chttp, "held")["state"]["pendings"], json!(["open"]));
    // The live block as of one instant between the backup's start and end,
    // whole: its revision r holds exactly the appends 2..=r.
    let live = get(&chttp, "live");
    let rev = live["state"]["latest"]["rev"].as_u64().unwrap();
    assert!(
        (acked_at_start..=acked_at_end).contains(&rev),
        "{acked_at_start} <= {rev} <= {acked_at_end}"
    );
    let items: Vec<u64> = serde_json::from_value(live["block"]["items"].clone()).unwrap();
    assert_eq!(items, (2..=rev).rev().collect::<Vec<_>>());
    // The restored node takes writes.
    write(&chttp, "live", rev + 1);
    drop(copy);

    // Refusals change nothing: a non-empty directory, a truncated file, a flipped byte.
    let (code, out) = cli(&[
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not empty"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    for (name, damaged) in [
        ("truncated", bytes[..bytes.len() - 9].to_vec()),
        ("flipped", {
            let mut b = bytes.clone();
            let i = b.len() / 2;
            b[i] ^= 0x40;
            b
        }),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, damaged).unwrap();
        let dir = tmp.path().join(format!("{name}-dir"));
        let (code, out) = cli(&[
            "restore",
            f.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains("nothing restored"), "{name}: {out}");
        assert!(!dir.exists(), "{name}: the directory was touched");
    }
    drop(node);

    // The file backend cannot take a snapshot: refused, nothing written.
    let files = NodeProcess::start(
        &tmp.path().join("f"),
        &["--http", "127.0.0.1:0", "--storage", "file"],
    );
    let out_file = tmp.path().join("file.backup");
    let (code, out) = cli(&[
        "backup",
        "--http",
        &files.http_addr().unwrap(),
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("embedded backend"), "{out}");
    assert!(!out_file.exists());
}
