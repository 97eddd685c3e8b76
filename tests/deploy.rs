//! The files under `deploy/` fit the binary they deploy: every metric the
//! Grafana dashboard and the alert rules query is one a running node exports,
//! and the command lines of the systemd unit and the Dockerfile are accepted by
//! `optimystic node` (checked with `--print-config`, which validates and exits).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::*;

fn deploy(file: &str) -> String {
    std::fs::read_to_string(format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Metric names in a PromQL expression: identifiers of the node's families.
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            ["optimystic_", "process_", "libp2p_"]
                .iter()
                .any(|p| t.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

/// Series names a node's `/metrics` text holds: those with samples, and those
/// of every declared family (a counter with no sample yet is still exported).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    for l in text.lines() {
        let Some(decl) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = decl.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

#[test]
fn dashboards_and_alerts_query_only_exported_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(tmp.path(), &["--http", "127.0.0.1:0"]);
    let http = node.http_addr().unwrap();
    // One write, so the write path's families have samples.
    let pc = r#"{"pend":{"trxId":"t","rev":1,"transforms":{"inserts":{"b":{"header":{"id":"b","type":"T","collectionId":"c"}}}},"policy":"f"},"commit":{"trxId":"t","blockIds":["b"],"rev":1}}"#;
    assert!(remote(&node.addr, "pend-commit", pc, &[]).status.success());
    let text = ureq_get(&format!("http://{http}/metrics"));
    let have = exported(&text);

    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana-dashboard.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut queried = Vec::new();
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let found = metrics_in(t["expr"].as_str().unwrap());
            assert!(!found.is_empty(), "{}: {}", p["title"], t["expr"]);
            queried.extend(found);
        }
    }
    for line in deploy("alerts.yml").lines() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            queried.extend(metrics_in(expr));
        }
    }
    let missing: BTreeSet<&String> = queried.iter().filter(|m| !have.contains(*m)).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    assert!(deploy("prometheus.yml").contains("metrics_path: /metrics"));
    assert!(deploy("prometheus.yml").contains("alerts.yml"));
    assert_eq!(node.stop(), Some(0));
}

fn ureq_get(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap()
}

/// Runs `optimystic ARGS --print-config` with the data dir moved to a temp dir.
fn accepted(args: &[String]) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = args.to_vec();
    if let Some(i) = args.iter().position(|a| a == "--data-dir") {
        args[i + 1] = tmp.path().to_string_lossy().into_owned();
    }
    let out = Command::new(BIN)
        .args(&args)
        .arg("--print-config")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn the_unit_and_the_image_run_commands_the_binary_accepts() {
    let unit = deploy("optimystic.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert_eq!(words.remove(0), "/usr/local/bin/optimystic");
    accepted(&words).unwrap();

    let docker = deploy("Dockerfile");
    let array = |key: &str| -> Vec<String> {
        let line = docker
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        serde_json::from_str(line.trim()).unwrap()
    };
    let mut command = array("ENTRYPOINT ");
    assert_eq!(command.remove(0), "optimystic");
    command.extend(array("CMD "));
    accepted(&command).unwrap();
    // The health check runs a subcommand this binary has.
    let check = docker
        .lines()
        .find_map(|l| l.strip_prefix("HEALTHCHECK"))
        .unwrap();
    let check: Vec<String> = serde_json::from_str(&check[check.find('[').unwrap()..]).unwrap();
    let out = Command::new(BIN)
        .args(&check[1..2])
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{check:?}");
}
