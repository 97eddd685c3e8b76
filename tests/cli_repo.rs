//! The local repo CLI as a separate process: the full flow, bad input of every
//! kind (clear error, exit 1, nothing written), and a data dir in use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn repo(dir: &Path, storage: &str, op: &str, input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_optimystic"))
        .args(["repo", "--data-dir"])
        .arg(dir)
        .args(["--storage", storage, op])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(dir: &Path, storage: &str, op: &str, input: Value) -> Value {
    let out = repo(dir, storage, op, input.to_string().as_bytes());
    assert!(
        out.status.success(),
        "{op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn block(id: &str) -> Value {
    json!({"header": {"id": id, "type": "T", "collectionId": "c"}, "items": [], "note": "ü ✓"})
}

#[test]
fn full_flow_on_both_backends() {
    for storage in ["embedded", "file"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let r = ok(&dir, storage, "get", json!({"blockIds": ["b1"]}));
        assert_eq!(r, json!({"b1": {"state": {}}}));
        let r = ok(
            &dir,
            storage,
            "pend",
            json!({"trxId": "t1", "rev": 1, "transforms": {"inserts": {"b1": block("b1")}}, "policy": "f"}),
        );
        assert_eq!(
            r,
            json!({"success": true, "pending": [], "blockIds": ["b1"]})
        );
        let r = ok(
            &dir,
            storage,
            "commit",
            json!({"trxId": "t1", "blockIds": ["b1"], "rev": 1}),
        );
        assert_eq!(r, json!({"success": true}));
        let r = ok(&dir, storage, "get", json!({"blockIds": ["b1"]}));
        assert_eq!(
            r,
            json!({"b1": {"block": block("b1"), "state": {"latest": {"trxId": "t1", "rev": 1}}}})
        );
        // A stale commit is a reply (exit 0), not an error.
        ok(
            &dir,
            storage,
            "pend",
            json!({"trxId": "t2", "transforms": {"updates": {"b1": [["items", 0, 0, [1]]]}}, "policy": "c"}),
        );
        let r = ok(
            &dir,
            storage,
            "commit",
            json!({"trxId": "t2", "blockIds": ["b1"], "rev": 1}),
        );
        assert_eq!(r["success"], json!(false));
        assert_eq!(r["missing"][0]["trxId"], json!("t1"));
        let r = ok(
            &dir,
            storage,
            "cancel",
            json!({"trxId": "t2", "blockIds": ["b1"]}),
        );
        assert_eq!(r, json!({}));
        let r = ok(&dir, storage, "get", json!({"blockIds": ["b1"]}));
        assert!(r["b1"]["state"].get("pendings").is_none(), "{storage}: {r}");
        // Pend and commit in one step.
        let r = ok(
            &dir,
            storage,
            "pend-commit",
            json!({"pend": {"trxId": "t3", "rev": 2, "transforms": {"updates": {"b1": [["items", 0, 0, [7]]]}}, "policy": "f"},
                   "commit": {"trxId": "t3", "blockIds": ["b1"], "rev": 2}}),
        );
        assert_eq!(
            r,
            json!({"pend": {"success": true, "pending": [], "blockIds": ["b1"]}, "commit": {"success": true}}),
            "{storage}"
        );
        let r = ok(&dir, storage, "get", json!({"blockIds": ["b1"]}));
        assert_eq!(r["b1"]["block"]["items"], json!([7]), "{storage}: {r}");
        assert_eq!(r["b1"]["state"]["latest"]["rev"], json!(2));
        assert!(r["b1"]["state"].get("pendings").is_none(), "{storage}: {r}");
        // Stale at the same revision: nothing committed, nothing left pending.
        let r = ok(
            &dir,
            storage,
            "pend-commit",
            json!({"pend": {"trxId": "t4", "rev": 2, "transforms": {"updates": {"b1": [["items", 0, 0, [8]]]}}, "policy": "f"},
                   "commit": {"trxId": "t4", "blockIds": ["b1"], "rev": 2}}),
        );
        assert_eq!(r["pend"]["success"], json!(false), "{storage}: {r}");
        assert!(r.get("commit").is_none(), "{storage}: {r}");
        let r = ok(&dir, storage, "get", json!({"blockIds": ["b1"]}));
        assert_eq!(r["b1"]["block"]["items"], json!([7]), "{storage}: {r}");
        assert!(r["b1"]["state"].get("pendings").is_none(), "{storage}: {r}");
    }
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "LOCK" {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let long = "x".repeat(10_000);
    let bad_ids = [
        "a/b",
        "a\\\\b",
        "..",
        "../../escape",
        "a\\u0000b",
        "",
        long.as_str(),
    ];
    for storage in ["file", "embedded"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        ok(
            &dir,
            storage,
            "pend",
            json!({"trxId": "t1", "rev": 1, "transforms": {"inserts": {"b1": block("b1")}}, "policy": "f"}),
        );
        ok(
            &dir,
            storage,
            "commit",
            json!({"trxId": "t1", "blockIds": ["b1"], "rev": 1}),
        );
        let before = snapshot(tmp.path());

        let mut cases: Vec<(&str, String)> = vec![];
        for id in bad_ids {
            cases.push(("get", format!(r#"{{"blockIds":["{id}"]}}"#)));
            cases.push((
                "pend",
                format!(r#"{{"trxId":"{id}","transforms":{{"deletes":["b1"]}},"policy":"f"}}"#),
            ));
            cases.push(("pend", format!(r#"{{"trxId":"t9","transforms":{{"inserts":{{"{id}":{{"header":{{"id":"b1","type":"T","collectionId":"c"}}}}}}}},"policy":"f"}}"#)));
            cases.push((
                "commit",
                format!(r#"{{"trxId":"t1","blockIds":["{id}"],"rev":2}}"#),
            ));
            cases.push(("cancel", format!(r#"{{"trxId":"t1","blockIds":["{id}"]}}"#)));
        }
        for (op, body) in [
            ("get", "{not json"),
            ("get", ""),
            ("get", "{}"),
            ("pend", r#"{"trxId":"t2","transforms":{}}"#),
            ("pend", r#"{"trxId":"t2","transforms":{},"policy":"x"}"#),
            (
                "pend",
                r#"{"trxId":"t2","transforms":{"updates":{"b1":[["items",5,0,[1]]]}},"policy":"c"}"#,
            ),
            (
                "pend",
                r#"{"trxId":"t2","transforms":{"updates":{"nob":[["items",0,0,[1]]]}},"policy":"c"}"#,
            ),
            ("commit", r#"{"trxId":"t1","blockIds":["b1"]}"#),
            ("commit", r#"{"trxId":"never","blockIds":["b1"],"rev":2}"#),
            ("commit", r#"{"trxId":"t1","blockIds":["b1"],"rev":-1}"#),
            ("cancel", r#"{"blockIds":["b1"]}"#),
        ] {
            cases.push((op, body.to_string()));
        }
        for (op, body) in &cases {
            let out = repo(&dir, storage, op, body.as_bytes());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{storage} {op} {body}: {err}");
            assert!(out.stdout.is_empty(), "{op} {body}");
            assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
            assert!(err.starts_with("error: "), "{err}");
        }
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "{storage}: bad input changed files"
        );
    }
}

#[test]
fn oversized_stdin_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let big = vec![b' '; (8 << 20) + 10];
    let out = repo(&tmp.path().join("d"), "embedded", "get", &big);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds"));
    assert!(!tmp.path().join("d").exists());
}

#[test]
fn data_dir_in_use_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let _held = optimystic::engine::storage::DataDirLock::acquire(&dir).unwrap();
    for storage in ["embedded", "file"] {
        let out = repo(&dir, storage, "get", br#"{"blockIds":["a"]}"#);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in use"), "{err}");
    }
}
