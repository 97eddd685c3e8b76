//! Node and CLI as separate processes on 127.0.0.1: the full flow, both encodings,
//! errors, and a restart that keeps the PeerId and the data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::logged::LoggedNode;
use support::*;

fn ok(addr: &str, op: &str, input: Value, extra: &[&str]) -> Value {
    let out = remote(addr, op, &input.to_string(), extra);
    assert!(
        out.status.success(),
        "{op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pend_commit_get_cancel_then_restart_keeps_peer_id_and_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = NodeProcess::start(&dir, &[]);
    let addr = node.addr.clone();
    assert!(addr.starts_with("/ip4/127.0.0.1/tcp/"), "{addr}");
    let block =
        json!({"header": {"id": "b1", "type": "T", "collectionId": "c"}, "items": [], "u": "ü"});

    let r = ok(
        &addr,
        "pend",
        json!({"trxId": "t1", "rev": 1, "transforms": {"inserts": {"b1": block}}, "policy": "f"}),
        &[],
    );
    assert_eq!(
        r,
        json!({"success": true, "pending": [], "blockIds": ["b1"]})
    );
    let r = ok(
        &addr,
        "commit",
        json!({"trxId": "t1", "blockIds": ["b1"], "rev": 1}),
        &[],
    );
    assert_eq!(r, json!({"success": true}));
    for extra in [&[][..], &["--json"][..]] {
        let r = ok(&addr, "get", json!({"blockIds": ["b1"]}), extra);
        assert_eq!(
            r,
            json!({"b1": {"block": block, "state": {"latest": {"trxId": "t1", "rev": 1}}}}),
            "{extra:?}"
        );
    }
    ok(
        &addr,
        "pend",
        json!({"trxId": "t2", "transforms": {"updates": {"b1": [["items", 0, 0, [7]]]}}, "policy": "c"}),
        &["--json"],
    );
    let r = ok(
        &addr,
        "cancel",
        json!({"trxId": "t2", "blockIds": ["b1"]}),
        &[],
    );
    assert_eq!(r, json!({}));
    let r = ok(&addr, "get", json!({"blockIds": ["b1"]}), &[]);
    assert!(r["b1"]["state"].get("pendings").is_none(), "{r}");

    // A failed operation: one line on stderr, exit 1.
    let out = remote(
        &addr,
        "commit",
        r#"{"trxId":"nope","blockIds":["b1"],"rev":2}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not_pending"), "{err}");

    let peer = node.peer_id();
    assert_eq!(node.stop(), Some(0), "clean shutdown exits 0");
    let node = NodeProcess::start(&dir, &[]);
    assert_eq!(node.peer_id(), peer, "PeerId changed across restart");
    let r = ok(&node.addr, "get", json!({"blockIds": ["b1"]}), &[]);
    assert_eq!(r["b1"]["block"], block);
    let key = dir.join("identity.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn unreachable_peer_and_bad_peer_address_fail_cleanly() {
    let out = remote(
        "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf",
        "get",
        r#"{"blockIds":["a"]}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let out = remote("/ip4/127.0.0.1/tcp/1", "get", r#"{"blockIds":["a"]}"#, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/p2p/"));
}

#[test]
fn data_dir_in_use_by_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(tmp.path(), &[]);
    let out = std::process::Command::new(BIN)
        .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    drop(node);
}

#[test]
fn a_port_another_node_listens_on_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("a"), &[]);
    let listen = node.addr.split("/p2p/").next().unwrap().to_string();
    let out = std::process::Command::new(BIN)
        .args(["node", "--listen", &listen, "--data-dir"])
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    drop(node);
}

#[test]
fn a_dial_that_reaches_another_peer_names_both_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(tmp.path(), &[]);
    let wrong = libp2p::PeerId::random().to_string();
    let listen = node.addr.split("/p2p/").next().unwrap();
    let out = remote(
        &format!("{listen}/p2p/{wrong}"),
        "get",
        r#"{"blockIds":["a"]}"#,
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&node.peer_id()), "{err}");
    assert!(err.contains(&wrong), "{err}");
    drop(node);
}

#[test]
fn repo_watch_prints_each_revision_and_resumes_from_one() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(tmp.path(), &[]);
    let write = |rev: u64| {
        let t = if rev == 1 {
            json!({"inserts": {"wb": {"header": {"id": "wb", "type": "T", "collectionId": "c"}, "items": []}}})
        } else {
            json!({"updates": {"wb": [["items", 0, 0, [rev]]]}})
        };
        let trx = format!("r{rev}");
        ok(
            &node.addr,
            "pend-commit",
            json!({"pend": {"trxId": trx, "rev": rev, "transforms": t, "policy": "f"},
                   "commit": {"trxId": trx, "blockIds": ["wb"], "rev": rev}}),
            &[],
        );
    };
    for rev in 1..=3 {
        write(rev);
    }
    let watch = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .args(["repo", "--peer", &node.addr, "watch", "wb"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // From revision 1: the two after it, then it stops (--count).
    let out = watch(&["--from", "1", "--count", "2"])
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["rev"], json!(2));
    assert_eq!(lines[0]["trxId"], json!("r2"));
    assert_eq!(lines[1]["block"]["items"], json!([3, 2]));
    // From now: the current revision, then one written while it watches.
    let mut live = watch(&["--count", "2"]);
    let stdout = live.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let first: Value =
        serde_json::from_str(&rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap())
            .unwrap();
    assert_eq!(first["rev"], json!(3));
    write(4);
    let next: Value =
        serde_json::from_str(&rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap())
            .unwrap();
    assert_eq!(next["rev"], json!(4));
    assert!(live.wait().unwrap().success());
    // Without --peer there is nothing to watch.
    let out = std::process::Command::new(BIN)
        .args(["repo", "watch", "wb"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    drop(node);
}

#[test]
fn bootstrap_failures_and_peers_joining_and_leaving_are_logged_at_info() {
    let tmp = tempfile::tempdir().unwrap();
    let dead = format!("/ip4/127.0.0.1/tcp/1/p2p/{}", libp2p::PeerId::random());
    let a = LoggedNode::start(&tmp.path().join("a"), &["--bootstrap", &dead]);
    a.expect(&["INFO", "dial failed", "/ip4/127.0.0.1/tcp/1"]);
    let a_id = a.addr.rsplit("/p2p/").next().unwrap().to_string();
    let b = LoggedNode::start(&tmp.path().join("b"), &["--bootstrap", &a.addr]);
    let b_id = b.addr.rsplit("/p2p/").next().unwrap().to_string();
    b.expect(&["INFO", "connected", &a_id]);
    a.expect(&["INFO", "peer joined", &b_id]);
    drop(b);
    a.expect(&["INFO", "peer left", &b_id]);
}
