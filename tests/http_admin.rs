//! The HTTP admin server through a real HTTP client: every endpoint, series
//! consistent with the workload, and bad requests of every kind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};

/// (status, body) of one request, run off the actix thread.
async fn http(method: &'static str, url: String, body: Option<Vec<u8>>) -> (u16, String) {
    actix_web::rt::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let resp = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            (_, Some(b)) => agent
                .post(&url)
                .header("content-type", "application/json")
                .send(&b[..]),
            (_, None) => agent.post(&url).send_empty(),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        (status, text)
    })
    .await
    .unwrap()
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{name_and_labels} not in /metrics"))
}

/// A node's configuration with the HTTP admin server on a free port.
fn with_http(cfg: &mut optimystic::node::NodeConfig) {
    cfg.http = Some("127.0.0.1:0".parse().unwrap());
}

/// A lone node with its HTTP admin server on a free port, and that server's base URL.
async fn node_with_http(dir: &std::path::Path) -> (optimystic::node::NodeHandle, String) {
    let (node, _) = support::start_node_with(dir, Vec::new(), with_http).await;
    let base = format!("http://{}", node.http_addr().unwrap());
    (node, base)
}

#[actix_rt::test]
async fn endpoints_report_the_workload() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, base) = node_with_http(tmp.path()).await;
    const N: usize = 12;
    for i in 0..N {
        let block =
            json!({"header": {"id": format!("b{i}"), "type": "T", "collectionId": "c"}, "n": i});
        let pend = json!({"trxId": format!("t{i}"), "rev": 1, "transforms": {"inserts": {format!("b{i}"): block}}, "policy": "f"});
        let (s, b) = http(
            "POST",
            format!("{base}/v1/repo/pend"),
            Some(pend.to_string().into_bytes()),
        )
        .await;
        assert_eq!(
            (
                s,
                serde_json::from_str::<Value>(&b).unwrap()["success"].clone()
            ),
            (200, json!(true)),
            "{b}"
        );
        let commit = json!({"trxId": format!("t{i}"), "blockIds": [format!("b{i}")], "rev": 1});
        let (s, b) = http(
            "POST",
            format!("{base}/v1/repo/commit"),
            Some(commit.to_string().into_bytes()),
        )
        .await;
        assert_eq!((s, b.as_str()), (200, r#"{"success":true}"#));
    }
    // One stale commit and one error, to see the outcomes split.
    let stale = json!({"trxId": "t0", "blockIds": ["b1"], "rev": 1});
    assert_eq!(
        http(
            "POST",
            format!("{base}/v1/repo/commit"),
            Some(stale.to_string().into_bytes())
        )
        .await
        .0,
        200
    );
    let never = json!({"trxId": "zz", "blockIds": ["b1"], "rev": 9});
    let (s, b) = http(
        "POST",
        format!("{base}/v1/repo/commit"),
        Some(never.to_string().into_bytes()),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        json!("not_pending")
    );
    let (s, b) = http(
        "POST",
        format!("{base}/v1/repo/get"),
        Some(br#"{"blockIds":["b3"]}"#.to_vec()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["b3"]["block"]["n"],
        json!(3)
    );
    let (s, b) = http(
        "POST",
        format!("{base}/v1/repo/cancel"),
        Some(br#"{"trxId":"x","blockIds":["b3"]}"#.to_vec()),
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "{}"));
    // Pend and commit in one request.
    let one = json!({
        "pend": {"trxId": "u1", "rev": 1, "transforms": {"inserts": {"p1": {"header": {"id": "p1", "type": "T", "collectionId": "c"}}}}, "policy": "f"},
        "commit": {"trxId": "u1", "blockIds": ["p1"], "rev": 1}
    });
    let (s, b) = http(
        "POST",
        format!("{base}/v1/repo/pendCommit"),
        Some(one.to_string().into_bytes()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["commit"],
        json!({"success": true}),
        "{b}"
    );

    let (s, m) = http("GET", format!("{base}/metrics"), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        metric(
            &m,
            r#"optimystic_repo_requests_total{op="commit",outcome="success"}"#
        ),
        N as f64
    );
    assert_eq!(
        metric(
            &m,
            r#"optimystic_repo_requests_total{op="commit",outcome="stale"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"optimystic_repo_requests_total{op="commit",outcome="error"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"optimystic_repo_requests_total{op="pend",outcome="success"}"#
        ),
        N as f64
    );
    assert_eq!(
        metric(
            &m,
            r#"optimystic_repo_requests_total{op="get",outcome="success"}"#
        ),
        1.0
    );
    assert!(metric(&m, "optimystic_storage_commits_total") >= (2 * N) as f64);
    // A lone node: every write (N pends, N + 2 commits, 1 cancel, 1 pendCommit)
    // applied directly.
    assert_eq!(
        metric(&m, r#"optimystic_transactions_total{outcome="local"}"#),
        (2 * N + 4) as f64
    );
    assert_eq!(
        metric(
            &m,
            r#"optimystic_repo_requests_total{op="pendCommit",outcome="success"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&m, r#"optimystic_transactions_total{outcome="started"}"#),
        0.0
    );
    assert!(metric(&m, "optimystic_storage_syncs_total") >= 1.0);
    assert!(metric(&m, "optimystic_storage_bytes_written_total") > 0.0);
    assert!(
        metric(
            &m,
            r#"optimystic_actor_messages_handled_total{actor="block"}"#
        ) >= (2 * N) as f64
    );
    assert_eq!(
        metric(&m, r#"optimystic_actor_mailbox_depth{actor="block"}"#),
        0.0
    );
    assert!(metric(&m, r#"optimystic_actor_mailbox_high_water{actor="block"}"#) >= 1.0);
    assert!(
        metric(
            &m,
            r#"optimystic_actor_handler_latency_seconds_count{actor="block"}"#
        ) >= (2 * N) as f64
    );
    assert!(
        m.contains(r#"optimystic_actor_handler_latency_seconds_bucket{le="0.001",actor="block"}"#)
            || m.contains(
                r#"optimystic_actor_handler_latency_seconds_bucket{actor="block",le="0.001"}"#
            ),
        "{m}"
    );
    assert!(metric(&m, "optimystic_block_actors_activated_total") >= N as f64);
    assert!(m.contains("optimystic_actor_mailbox_depth{actor=\"swarm\"}"));
    assert!(m.contains("optimystic_actor_mailbox_depth{actor=\"repo_service\"}"));
    assert!(m.contains("libp2p_"), "libp2p's own metrics are exported");
    assert_eq!(
        node.render_metrics()
            .lines()
            .filter(|l| l.starts_with("optimystic_repo_requests_total"))
            .count(),
        15,
        "get, pend, commit, cancel and pendCommit, by three outcomes"
    );

    let (s, b) = http("GET", format!("{base}/status"), None).await;
    assert_eq!(s, 200);
    let st: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(st["peerId"], json!(node.peer_id().to_string()));
    assert_eq!(st["storage"]["backend"], json!("embedded"));
    assert!(st["storage"]["sizeBytes"].as_u64().unwrap() > 0);
    assert_eq!(
        st["blockCount"],
        json!(N + 1),
        "N blocks and the pendCommit's"
    );
    assert_eq!(st["clusterSize"], json!(3));
    assert_eq!(st["activeTransactions"], json!(0));
    assert!(st["listenAddrs"][0]
        .as_str()
        .unwrap()
        .starts_with("/ip4/127.0.0.1/tcp/"));
    assert!(st["uptimeSeconds"].is_u64() && st["version"].is_string());
    node.shutdown().await;
}

/// (method, url, body, expected status, expected error code)
type Case = (&'static str, String, Option<Vec<u8>>, u16, &'static str);

#[actix_rt::test]
async fn bad_requests_get_json_errors_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, base) = node_with_http(tmp.path()).await;
    let cases: Vec<Case> = vec![
        (
            "POST",
            format!("{base}/v1/repo/get"),
            Some(b"{not json".to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("{base}/v1/repo/get"),
            Some(b"".to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("{base}/v1/repo/get"),
            Some(br#"{"blockIds":["../x"]}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("{base}/v1/repo/pend"),
            Some(br#"{"trxId":"t"}"#.to_vec()),
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("{base}/v1/repo/pend"),
            Some(br#"{"trxId":"t","transforms":{},"policy":"f"}"#.to_vec()),
            422,
            "invalid",
        ),
        (
            "POST",
            format!("{base}/v1/repo/drop"),
            Some(b"{}".to_vec()),
            404,
            "unknown_operation",
        ),
        (
            "POST",
            format!("{base}/v1/repo/get"),
            Some(vec![b' '; (8 << 20) + 1]),
            413,
            "body_too_large",
        ),
        (
            "GET",
            format!("{base}/v1/repo/get"),
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", format!("{base}/nowhere"), None, 404, "not_found"),
        (
            "POST",
            format!("{base}/metrics"),
            None,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, url, body, want_status, want_code) in cases {
        let (s, b) = http(method, url.clone(), body).await;
        assert_eq!(s, want_status, "{method} {url}: {b}");
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|_| panic!("not JSON: {b}"));
        assert_eq!(v["error"]["code"], json!(want_code), "{method} {url}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (s, b) = http(
        "POST",
        format!("{base}/v1/repo/get"),
        Some(br#"{"blockIds":["a"]}"#.to_vec()),
    )
    .await;
    assert_eq!((s, b.as_str()), (200, r#"{"a":{"state":{}}}"#));
    assert_eq!(http("GET", format!("{base}/status"), None).await.0, 200);
    node.shutdown().await;
}

/// One pendCommit of `block` at `rev`: its insert at revision 1, an append after.
async fn pend_commit(base: &str, block: &str, rev: u64) {
    let transforms = if rev == 1 {
        json!({"inserts": {block: {"header": {"id": block, "type": "T", "collectionId": "c"}, "items": []}}})
    } else {
        json!({"updates": {block: [["items", 0, 0, [rev]]]}})
    };
    let trx = format!("{block}-{rev}");
    let one = json!({
        "pend": {"trxId": trx, "rev": rev, "transforms": transforms, "policy": "f"},
        "commit": {"trxId": trx, "blockIds": [block], "rev": rev}
    });
    let (s, b) = http(
        "POST",
        format!("{base}/v1/repo/pendCommit"),
        Some(one.to_string().into_bytes()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[actix_rt::test]
async fn health_readiness_build_and_process_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, base) = node_with_http(tmp.path()).await;
    let peer = node.peer_id().to_string();
    let (s, b) = http("GET", format!("{base}/health"), None).await;
    assert_eq!(
        (s, serde_json::from_str::<Value>(&b).unwrap()),
        (200, json!({"status": "alive"}))
    );
    // A network's first node: its own configurations, a quorum of one.
    let (s, b) = http("GET", format!("{base}/ready"), None).await;
    let ready: Value = serde_json::from_str(&b).unwrap();
    assert_eq!((s, &ready["ready"]), (200, &json!(true)), "{b}");
    for check in ["storage", "network", "quorum"] {
        assert_eq!(ready[check]["ok"], json!(true), "{b}");
    }
    // An empty node occupies what its files hold, not the journal's sparse length.
    let (_, b) = http("GET", format!("{base}/status"), None).await;
    let st: Value = serde_json::from_str(&b).unwrap();
    let size = st["storage"]["sizeBytes"].as_u64().unwrap();
    assert!(
        size > 0 && size < 8 << 20,
        "an empty node reports {size} bytes"
    );
    for a in st["listenAddrs"].as_array().unwrap() {
        assert!(
            a.as_str().unwrap().ends_with(&format!("/p2p/{peer}")),
            "{st}"
        );
    }
    // Five revisions of one block and one of another are two blocks.
    for rev in 1..=5 {
        pend_commit(&base, "many", rev).await;
    }
    pend_commit(&base, "once", 1).await;
    let (_, b) = http("GET", format!("{base}/status"), None).await;
    let st: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(st["blockCount"], json!(2), "{st}");
    assert_eq!(st["storage"]["blocks"], json!(2), "{st}");

    let (_, m) = http("GET", format!("{base}/metrics"), None).await;
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        m.lines().any(|l| l.starts_with("optimystic_build_info{")
            && l.contains(&format!("version=\"{version}\""))
            && l.contains("profile=")
            && l.ends_with(" 1")),
        "{m}"
    );
    assert!(metric(&m, "process_resident_memory_bytes") > f64::from(1 << 20));
    assert!(metric(&m, "process_open_fds") >= 3.0);
    assert!(metric(&m, "process_cpu_seconds_total") > 0.0);
    assert!(metric(&m, "process_start_time_seconds") > 1.7e9);
    assert_eq!(metric(&m, "optimystic_peers_connected"), 0.0);
    // A client connects: one connected peer while its connection is open.
    let net = optimystic_actors::net::NetClient::start_client(Default::default()).unwrap();
    let addr = node.net().status().await.unwrap().listen_addrs[0].clone();
    let client = optimystic_actors::net::RepoClient::new(
        net.clone(),
        node.peer_id(),
        vec![addr],
        std::time::Duration::from_secs(10),
    );
    let gets = optimystic_actors::model::BlockGets {
        block_ids: vec![optimystic_actors::model::BlockId::new("once").unwrap()],
        context: None,
        consistency: None,
    };
    client.get(gets).await.unwrap();
    let (_, m) = http("GET", format!("{base}/metrics"), None).await;
    assert_eq!(metric(&m, "optimystic_peers_connected"), 1.0);
    node.shutdown().await;

    // A node told to join through a peer it cannot reach: alive, not ready.
    let tmp = tempfile::tempdir().unwrap();
    let dead = format!("/ip4/127.0.0.1/tcp/1/p2p/{}", libp2p::PeerId::random());
    let (lonely, _) =
        support::start_node_with(tmp.path(), vec![dead.parse().unwrap()], with_http).await;
    let base = format!("http://{}", lonely.http_addr().unwrap());
    assert_eq!(http("GET", format!("{base}/health"), None).await.0, 200);
    let (s, b) = http("GET", format!("{base}/ready"), None).await;
    let ready: Value = serde_json::from_str(&b).unwrap();
    assert_eq!((s, &ready["ready"]), (503, &json!(false)), "{b}");
    assert_eq!(ready["network"]["ok"], json!(false), "{b}");
    assert_eq!(ready["storage"]["ok"], json!(true), "{b}");
    lonely.shutdown().await;
}

/// Reads server-sent events from `url` on a thread: each `revision` event's
/// data as JSON, in the order they came.
fn sse(url: String, last_event_id: Option<&str>) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let last = last_event_id.map(str::to_string);
    std::thread::spawn(move || {
        let mut req = ureq::get(&url);
        if let Some(id) = &last {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.call().unwrap();
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines().map_while(Result::ok) {
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if event == "revision" && tx.send(serde_json::from_str(data).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn take(rx: &std::sync::mpsc::Receiver<Value>, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    (0..n)
        .map(|i| {
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or_else(|_| panic!("event {i} of {n} did not come"))
        })
        .collect()
}

/// Four writers race on one block; a watch from revision 0 receives every
/// revision once, in order, with the transaction and the block
/// as of that revision; watches resumed by `from` or `Last-Event-ID` get what
/// came after, and so does `NodeHandle::watch`.
#[actix_rt::test]
async fn watch_streams_the_revisions_of_concurrent_writes_in_order() {
    use optimystic_actors::model::*;
    const REVS: u64 = 20;
    let tmp = tempfile::tempdir().unwrap();
    let (node, base) = node_with_http(tmp.path()).await;
    // From revision 0: every revision, however the watch's start and the
    // first writes interleave.
    let events = sse(format!("{base}/v1/watch?blockId=w&from=0"), None);
    let committed = std::sync::Arc::new(parking_lot::Mutex::new(std::collections::BTreeMap::new()));
    let writers = (0..4).map(|w| {
        let (repo, committed) = (node.repo().clone(), committed.clone());
        async move {
            let id = BlockId::new("w").unwrap();
            let mut attempt = 0;
            loop {
                let latest = repo
                    .get(BlockGets {
                        block_ids: vec![id.clone()],
                        context: None,
                        consistency: None,
                    })
                    .await
                    .unwrap()[&id]
                    .state
                    .latest
                    .clone()
                    .map_or(0, |l| l.rev);
                if latest >= REVS {
                    return;
                }
                attempt += 1;
                let trx = TrxId::new(format!("w{w}a{attempt}")).unwrap();
                let rev = latest + 1;
                let transforms: Transforms = serde_json::from_value(if rev == 1 {
                    json!({"inserts": {"w": {"header": {"id": "w", "type": "T", "collectionId": "c"}, "items": [w]}}})
                } else {
                    json!({"updates": {"w": [["items", 0, 1, [w * 1000 + rev]]]}})
                })
                .unwrap();
                let r = repo
                    .pend_commit(PendCommitRequest {
                        pend: PendRequest {
                            trx_id: trx.clone(),
                            rev: Some(rev),
                            transforms,
                            policy: PendPolicy::Fail,
                        },
                        commit: CommitRequest {
                            trx_id: trx.clone(),
                            block_ids: vec![id.clone()],
                            rev,
                            header_id: None,
                            tail_id: None,
                        },
                    })
                    .await
                    .unwrap();
                if r.is_success() {
                    committed.lock().insert(rev, (trx.to_string(), w, rev));
                }
            }
        }
    });
    futures::future::join_all(writers).await;
    let got = actix_web::rt::task::spawn_blocking(move || take(&events, REVS as usize))
        .await
        .unwrap();
    let committed = committed.lock().clone();
    assert_eq!(committed.len(), REVS as usize);
    for (i, e) in got.iter().enumerate() {
        let rev = i as u64 + 1;
        assert_eq!(e["rev"], json!(rev), "{got:?}");
        let (trx, w, _) = &committed[&rev];
        assert_eq!(e["trxId"], json!(trx), "{e}");
        assert_eq!(e["blockId"], json!("w"));
        let want = if rev == 1 { *w } else { *w * 1000 + rev };
        assert_eq!(e["block"]["items"], json!([want]), "{e}");
    }
    // Resumed after revision 15, by the query and by Last-Event-ID.
    for (url, last) in [
        (format!("{base}/v1/watch?blockId=w&from=15"), None),
        (format!("{base}/v1/watch?blockId=w"), Some("15")),
    ] {
        let rx = sse(url, last);
        let got = actix_web::rt::task::spawn_blocking(move || take(&rx, 5))
            .await
            .unwrap();
        let revs: Vec<u64> = got.iter().map(|e| e["rev"].as_u64().unwrap()).collect();
        assert_eq!(revs, [16, 17, 18, 19, 20]);
    }
    // Without a cursor: the current revision first.
    let rx = sse(format!("{base}/v1/watch?blockId=w"), None);
    let got = actix_web::rt::task::spawn_blocking(move || take(&rx, 1))
        .await
        .unwrap();
    assert_eq!(got[0]["rev"], json!(REVS));
    let (s, b) = http("GET", format!("{base}/v1/watch?blockId=../x"), None).await;
    assert_eq!(s, 400, "{b}");
    // The same stream for an embedding application.
    use futures::StreamExt;
    let revs: Vec<u64> = node
        .watch(BlockId::new("w").unwrap(), Some(18))
        .take(2)
        .map(|r| r.unwrap().rev)
        .collect()
        .await;
    assert_eq!(revs, [19, 20]);
    node.shutdown().await;
}
