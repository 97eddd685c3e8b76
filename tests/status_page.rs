//! The HTTP admin server's status page in headless Chromium (Debian's
//! `chromium`; .ci/run installs it when missing; `OPTIMYSTIC_CHROMIUM` names
//! another binary): against a three-node devnet under writes, the page lists
//! every peer and draws a non-empty throughput chart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::BIN;

fn chromium() -> String {
    let bin = std::env::var("OPTIMYSTIC_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs headless Chromium: `apt-get install chromium` (.ci/run does), or set OPTIMYSTIC_CHROMIUM"
    );
    bin
}

/// Attribute `name` of the element with `id` in `dom`.
fn attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag = &dom[dom[..at].rfind('<')?..at + dom[at..].find('>')?];
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    Some(tag[start..start + tag[start..].find('"')?].to_string())
}

#[test]
fn the_status_page_lists_every_peer_and_charts_live_throughput() {
    let browser = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let mut devnet = Command::new(BIN)
        .args(["devnet", "--nodes", "3", "--ops", "20", "--dir"])
        .arg(tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = devnet.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // "nodeN  <multiaddr>/p2p/<id>  metrics http://HOST:PORT/metrics", then "running".
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut ids, mut http) = (Vec::new(), Vec::new());
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("devnet did not come up");
        if line.starts_with("running") {
            break;
        }
        if line.starts_with("node") {
            let words: Vec<&str> = line.split_whitespace().collect();
            ids.push(words[1].rsplit("/p2p/").next().unwrap().to_string());
            let url = words[3].trim_end_matches("/metrics").to_string();
            http.push(url);
        }
    }
    assert_eq!(ids.len(), 3);
    // Writes through node 0 while the page samples it: four writers, so that
    // even on a loaded machine (the page runs in virtual time, which can pass
    // faster than real time) every sample sees some.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4).map(|w| {
        let (base, stop) = (http[0].clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let i = format!("{w}-{i}");
                let body = serde_json::json!({
                    "pend": {"trxId": format!("ui{i}"), "rev": 1, "policy": "f",
                             "transforms": {"inserts": {format!("ui{i}"): {"header": {"id": format!("ui{i}"), "type": "T", "collectionId": "c"}}}}},
                    "commit": {"trxId": format!("ui{i}"), "blockIds": [format!("ui{i}")], "rev": 1}
                });
                let _ = ureq::post(format!("{base}/v1/repo/pendCommit"))
                    .header("content-type", "application/json")
                    .send(body.to_string());
            }
        })
    }).collect();
    let page = Command::new(&browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=8000",
            "--dump-dom",
            &format!("{}/", http[0]),
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let _ = devnet.kill();
    let _ = devnet.wait();
    let dom = String::from_utf8_lossy(&page.stdout);
    assert!(page.status.success(), "{dom}");
    for id in &ids {
        assert!(
            dom.contains(&format!("class=\"mono peer\">{id}<")),
            "peer {id} not listed: {dom}"
        );
    }
    let points: usize = attribute(&dom, "throughput", "data-points")
        .unwrap_or_else(|| panic!("no chart drawn: {dom}"))
        .parse()
        .unwrap();
    assert!(points >= 2, "{points} points: {dom}");
    let max: f64 = attribute(&dom, "throughput", "data-max")
        .unwrap()
        .parse()
        .unwrap();
    assert!(max >= 1.0, "the chart shows no writes (max {max}/s): {dom}");
    assert!(
        dom.contains("id=\"error\"></div>"),
        "the page reported an error: {dom}"
    );
}
