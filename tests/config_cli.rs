//! Configuration precedence (file < env < flag) shown by `--print-config`, and the
//! status/inspect commands against a running node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use support::*;

fn print_config(file: &std::path::Path, env: &[(&str, &str)], flags: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["node", "--print-config", "--config"])
        .arg(file)
        .args(flags);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn file_then_env_then_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("node.toml");
    std::fs::write(
        &file,
        "storage = \"file\"\ncluster-size = 5\nmax-live-blocks = 100\nhttp = \"127.0.0.1:9100\"\n",
    )
    .unwrap();
    let out = print_config(&file, &[], &[]);
    for want in [
        "storage = \"file\"",
        "cluster-size = 5",
        "max-live-blocks = 100",
        "http = \"127.0.0.1:9100\"",
        "protocol-prefix = \"/db-p2p\"",
    ] {
        assert!(out.contains(want), "{want} missing in:\n{out}");
    }
    let out = print_config(
        &file,
        &[
            ("OPTIMYSTIC_CLUSTER_SIZE", "6"),
            ("OPTIMYSTIC_STORAGE", "embedded"),
        ],
        &[],
    );
    assert!(
        out.contains("cluster-size = 6") && out.contains("storage = \"embedded\""),
        "{out}"
    );
    assert!(
        out.contains("max-live-blocks = 100"),
        "file value kept: {out}"
    );
    let out = print_config(
        &file,
        &[("OPTIMYSTIC_CLUSTER_SIZE", "6")],
        &["--cluster-size", "7"],
    );
    assert!(out.contains("cluster-size = 7"), "{out}");

    // A bad value is one clear line and exit 1.
    let out = Command::new(BIN)
        .args(["node", "--print-config", "--storage", "tape"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage"));
    std::fs::write(&file, "unknown-key = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["node", "--print-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn status_and_inspect_read_a_running_node() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(tmp.path(), &["--http", "127.0.0.1:0"]);
    let http = node.http_addr().expect("no http line");
    let out = Command::new(BIN)
        .args(["status", "--http", &http])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&node.peer_id()) && text.contains("storage            embedded"),
        "{text}"
    );
    assert!(
        text.contains("0 blocks under-replicated · 0 queued for repair"),
        "{text}"
    );
    // Its listen addresses are printed with the node's id, ready for --peer.
    assert!(
        text.lines()
            .any(|l| l.trim().starts_with("/ip4/127.0.0.1/tcp/")
                && l.trim().ends_with(&format!("/p2p/{}", node.peer_id()))),
        "{text}"
    );
    // One pendCommit, then inspect through the metrics URL devnet prints.
    let pc = r#"{"pend":{"trxId":"t","rev":1,"transforms":{"inserts":{"b":{"header":{"id":"b","type":"T","collectionId":"c"}}}},"policy":"f"},"commit":{"trxId":"t","blockIds":["b"],"rev":1}}"#;
    assert!(remote(&node.addr, "pend-commit", pc, &[]).status.success());
    let out = Command::new(BIN)
        .args(["inspect", "--http", &format!("http://{http}/metrics")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mailboxes (by depth)")
            && text.contains("block")
            && text.contains("repo_service"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("pendCommit"))
        .unwrap_or_else(|| panic!("no pendCommit row: {text}"));
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{row}");
    // A node's variables in the environment (as docs/OPERATIONS.md sets them)
    // do not break a remote repo command: they are for local stores.
    let out = Command::new(BIN)
        .args(["repo", "--peer", &node.addr, "get"])
        .env("OPTIMYSTIC_DATA_DIR", tmp.path())
        .env("OPTIMYSTIC_STORAGE", "memory")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(br#"{"blockIds":["b"]}"#)?;
            c.wait_with_output()
        })
        .unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(reply.contains("\"trxId\":\"t\""), "{reply}");
    // Given as flags, a data dir and a peer still conflict.
    let out = Command::new(BIN)
        .args(["repo", "--peer", &node.addr, "--data-dir", "x", "get"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["status", "--http", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn devnet_runs_its_workload_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["devnet", "--nodes", "3", "--ops", "30", "--once", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("node")
                && l.contains("/p2p/")
                && l.contains("metrics http://"))
            .count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("workload: 30 of 30 transactions committed, 30 read back"),
        "{text}"
    );
    assert!(tmp.path().join("node2").join("identity.key").exists());
}

#[test]
fn bench_drives_a_node_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(tmp.path(), &[]);
    for workload in ["insert", "mixed"] {
        let out = Command::new(BIN)
            .args([
                "bench",
                "--peer",
                &node.addr,
                "--clients",
                "4",
                "--duration",
                "1",
                "--blocks",
                "8",
                "--json",
                "--workload",
                workload,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["workload"], serde_json::json!(workload));
        assert!(r["operations"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"], serde_json::json!({}), "{r}");
        assert!(r["p50Us"].as_u64().unwrap() <= r["p99Us"].as_u64().unwrap());
        // One throughput figure per second, summing to the operations.
        let timeline: Vec<u64> = serde_json::from_value(r["timeline"].clone()).unwrap();
        assert_eq!(timeline.len(), 1, "{r}");
        assert!(timeline[0] <= r["operations"].as_u64().unwrap(), "{r}");
        // Latency per kind: a mixed run reports reads and writes apart.
        let kinds: Vec<&String> = r["kinds"].as_object().unwrap().keys().collect();
        let want: Vec<&str> = if workload == "mixed" {
            vec!["read", "write"]
        } else {
            vec!["write"]
        };
        assert_eq!(kinds, want, "{r}");
        let total: u64 = r["kinds"]
            .as_object()
            .unwrap()
            .values()
            .map(|k| k["operations"].as_u64().unwrap())
            .sum();
        assert_eq!(total, r["operations"].as_u64().unwrap(), "{r}");
        for k in r["kinds"].as_object().unwrap().values() {
            let in_buckets: u64 = k["histogram"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["count"].as_u64().unwrap())
                .sum();
            assert_eq!(in_buckets, k["operations"].as_u64().unwrap(), "{r}");
        }
        // The seed writes are counted: all eight landed for mixed.
        let seeded = if workload == "mixed" { 8 } else { 0 };
        assert_eq!(r["seeded"], serde_json::json!(seeded), "{r}");
        assert_eq!(r["seedErrors"], serde_json::json!({}), "{r}");
    }
    // Text output: a line per second and a histogram per kind.
    let out = Command::new(BIN)
        .args([
            "bench",
            "--peer",
            &node.addr,
            "--clients",
            "2",
            "--duration",
            "2",
            "--blocks",
            "4",
            "--workload",
            "mixed",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("seeded 4 of 4 blocks in "), "{text}");
    let seconds = text.lines().filter(|l| l.contains(" ops/s ")).count();
    assert_eq!(seconds, 2, "{text}");
    assert!(
        text.contains("\nread: ") && text.contains("\nwrite: "),
        "{text}"
    );
    assert!(text.contains("█"), "{text}");
    let out = Command::new(BIN)
        .args(["bench", "--peer", "/ip4/127.0.0.1/tcp/1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(node.stop(), Some(0));
}

#[test]
fn a_bad_value_in_the_environment_names_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["node", "--data-dir"])
        .arg(tmp.path())
        .env("OPTIMYSTIC_CLUSTER_SIZE", "abc")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: OPTIMYSTIC_CLUSTER_SIZE=\"abc\""),
        "{err}"
    );
    // The same value as a flag is the flag's fault, as clap says it.
    let out = Command::new(BIN)
        .args(["node", "--cluster-size", "abc", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'--cluster-size") && !err.contains("OPTIMYSTIC_"),
        "{err}"
    );
}

/// README's `node` table lists every flag `optimystic node --help` knows.
#[test]
fn the_readme_lists_every_node_flag() {
    let help = Command::new(BIN).args(["node", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|f| *f != "help")
        .collect();
    assert!(flags.len() > 15, "{help}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### The `node` command"))
        .take_while(|l| !l.starts_with("### ") || l.starts_with("### The `node` command"))
        .filter_map(|l| l.strip_prefix("| `--"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let missing: Vec<_> = flags.iter().filter(|f| !table.contains(f)).collect();
    assert!(missing.is_empty(), "README's node table lacks {missing:?}");
}

/// Logs written to a pipe or file are plain text: no ANSI color codes.
#[test]
fn logs_to_a_pipe_carry_no_color_codes() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(tmp.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let line = std::iter::from_fn(|| {
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok()
    })
    .find(|l| l.contains("started a new network"));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the node logs its start at info");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}

/// `completions bash` is a working completion script: sourced in bash it
/// completes subcommands and flags; zsh and fish scripts name the same ones.
#[test]
fn shell_completions_complete_subcommands_and_flags() {
    let script = |shell: &str| {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = script("bash");
    let probe = format!(
        "{bash}\nCOMP_WORDS=(optimystic no); COMP_CWORD=1; _optimystic optimystic no optimystic; echo \"${{COMPREPLY[@]}}\"\n\
         COMP_WORDS=(optimystic node --clu); COMP_CWORD=2; _optimystic optimystic --clu node; echo \"${{COMPREPLY[@]}}\"\n"
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &probe])
        .output()
        .unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines,
        ["node", "--cluster-size"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["zsh", "fish"] {
        let s = script(shell);
        assert!(
            s.contains("cluster-size") && s.contains("one-round"),
            "{shell}"
        );
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
