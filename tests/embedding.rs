//! The actix-web embedding example as a process: start it, use its REST API and
//! the node metrics it serves, shut it down cleanly with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// target/debug/examples/actix_web_app, built by `cargo test` with the tests.
fn example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples").join("actix_web_app")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

#[test]
fn embedded_node_serves_rest_and_metrics_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(example())
        .args(["--http", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("example binary (built by cargo test)");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("example did not start");
    let base = line
        .strip_prefix("serving on ")
        .expect("unexpected first line")
        .to_string();
    let a = agent();

    let put = |text: &str| {
        let mut r = a
            .put(format!("{base}/notes/hello"))
            .header("content-type", "application/json")
            .send(json!({"text": text}).to_string())
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        serde_json::from_str::<Value>(&r.body_mut().read_to_string().unwrap()).unwrap()
    };
    assert_eq!(put("first")["rev"], json!(1));
    assert_eq!(put("second")["rev"], json!(2));
    let mut r = a.get(format!("{base}/notes/hello")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        (v["text"].clone(), v["rev"].clone()),
        (json!("second"), json!(2))
    );
    assert_eq!(
        a.get(format!("{base}/notes/nothing"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let mut r = a.get(format!("{base}/metrics")).call().unwrap();
    let m = r.body_mut().read_to_string().unwrap();
    assert!(
        m.contains(r#"optimystic_repo_requests_total{op="commit",outcome="success"} 2"#),
        "{m}"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "example did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
