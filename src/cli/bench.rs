//! `optimystic bench`: drives a running cluster through RepoClient, as users do,
//! and reports throughput (overall and second by second), latency percentiles
//! and a histogram per kind of operation, and errors by kind — of the seeding
//! writes as well as of the run. Requests, operations and lanes are
//! [`crate::load`]'s; the workloads and the report are this file's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use libp2p::Multiaddr;
use optimystic_actors::model::Block;
use optimystic_actors::net::{peer_of, NetClient, NetConfig, RepoClient};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;

use super::latency::{render, summarize, Summary};
use super::{BenchArgs, Workload};
use crate::load::{self, drive, Counts, Slot, Txn, Until};

/// What one run measured. `operations` and the percentiles count acknowledged
/// operations only (a write acknowledged by a majority of its configuration,
/// durable there; a read answered); refusals and failures are in `errors`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    workload: String,
    clients: usize,
    seconds: f64,
    operations: u64,
    per_second: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    errors: BTreeMap<String, u64>,
    /// Acknowledged operations in each second of the run.
    timeline: Vec<u64>,
    /// Latency by kind of operation (`read`, `write`).
    kinds: BTreeMap<&'static str, Summary>,
    /// Blocks seeded for update/read/mixed, and the seed writes that failed.
    seeded: u64,
    seed_errors: BTreeMap<String, u64>,
}

/// What an operation of the workload was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Read,
    Write,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

pub(super) fn run(args: BenchArgs) -> i32 {
    if args.peer.is_empty() || args.clients == 0 || args.blocks == 0 {
        eprintln!("error: give at least one --peer, and --clients and --blocks of at least 1");
        return 1;
    }
    if args.peer.iter().any(|p| peer_of(p).is_none()) {
        eprintln!("error: every --peer needs a /p2p/<peerId> component");
        return 1;
    }
    let system = actix_rt::System::new();
    match system.block_on(bench(args)) {
        Ok(report) => 0.max(i32::from(report.operations == 0)),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Block `name` as the bench writes it: `n` and a `value_size`-byte payload.
fn block(name: &str, value_size: usize, n: u64) -> Result<Block, String> {
    let fields = [
        ("items", json!([])),
        ("n", json!(n)),
        ("value", load::payload('v', value_size)),
    ];
    load::block(&load::block_id(name)?, "bench", "bench", fields)
}

/// The workload operation number `i` runs: mixed is 70% reads, 30% updates.
fn resolve(w: Workload, i: u64) -> Workload {
    match w {
        Workload::Mixed if i % 10 < 7 => Workload::Read,
        Workload::Mixed => Workload::Update,
        other => other,
    }
}

/// One operation of the workload (`w` resolved); `Err(kind)` on failure.
async fn op(
    c: &RepoClient,
    w: Workload,
    (i, pick): (u64, u64),
    args: &BenchArgs,
    run: u32,
    revs: &Mutex<BTreeMap<u64, u64>>,
) -> Result<(), String> {
    match w {
        Workload::Read => {
            load::read(c, load::block_id(format!("bench{run}-{pick}"))?).await?;
            Ok(())
        }
        Workload::Insert => {
            let fresh = block(&format!("bench{run}-new{i}"), args.value_size, i)?;
            let txn = Txn::insert(load::new_trx_id()?, fresh);
            load::write(c, txn, args.one_round).await
        }
        Workload::Update | Workload::Mixed => {
            let id = load::block_id(format!("bench{run}-{pick}"))?;
            let rev = revs.lock().get(&pick).copied().unwrap_or(1) + 1;
            let update = load::set_field(&id, "n", json!(i));
            let txn = Txn::new(load::new_trx_id()?, id, rev, update);
            load::write(c, txn, args.one_round).await?;
            revs.lock().insert(pick, rev);
            Ok(())
        }
    }
}

async fn bench(args: BenchArgs) -> Result<Report, String> {
    let network_key = match &args.network_key {
        Some(p) => Some(optimystic_actors::net::read_network_key(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let net = NetClient::start_client(NetConfig {
        network_key,
        ..NetConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(30);
    let clients: Vec<RepoClient> = args
        .peer
        .iter()
        .filter_map(|a: &Multiaddr| {
            Some(RepoClient::new(
                net.clone(),
                peer_of(a)?,
                vec![a.clone()],
                timeout,
            ))
        })
        .collect();
    let run = std::process::id();
    let revs = Mutex::new(BTreeMap::new());
    // Seed the blocks that update/read/mixed work on, `clients` at a time.
    let (seeded, seed_errors) = if args.workload == Workload::Insert {
        (0, BTreeMap::new())
    } else {
        seed(&args, &clients, run).await?
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.duration)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}").map_err(|e| e.to_string())?,
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let counts = Counts::default();
    let timeline = Mutex::new(Vec::new());
    let start = Instant::now();
    let ticker = async {
        let (mut acked_before, mut failed_before) = (0, 0);
        for second in 1..=args.duration {
            tokio::time::sleep_until((start + Duration::from_secs(second)).into()).await;
            let (acked, failures) = (counts.acked(), counts.failed());
            timeline.lock().push(acked - acked_before);
            if !args.json {
                let line = format!(
                    "{second:>5} s {:>9} ops/s {:>7} errors",
                    acked - acked_before,
                    failures - failed_before
                );
                // The bar draws on a terminal only; elsewhere the line goes as is.
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.println(line);
                }
            }
            bar.set_position(second);
            bar.set_message(format!("{acked} ops"));
            (acked_before, failed_before) = (acked, failures);
        }
    };
    let (clients, args_ref, revs) = (&clients, &args, &revs);
    let one = move |s: Slot| {
        let c = &clients[s.lane % clients.len()];
        // Each client works on its own blocks (w, w + clients, …) so updates to
        // one block never race (with fewer blocks than clients, some share).
        let (lane, lanes) = (s.lane as u64, args_ref.clients as u64);
        let pick = load::lane_block(lane, lanes, s.k, args_ref.blocks);
        let w = resolve(args_ref.workload, s.i);
        let class = if w == Workload::Read {
            Class::Read
        } else {
            Class::Write
        };
        async move {
            op(c, w, (s.i, pick), args_ref, run, revs)
                .await
                .map(|()| class)
        }
    };
    let lanes = drive(args.clients, Until::Deadline(deadline), &counts, one);
    let ((), outcome) = futures::join!(ticker, lanes);
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let lat = outcome.done;
    let mut all: Vec<Duration> = lat.iter().map(|(_, d)| *d).collect();
    let overall = summarize(&mut all);
    let mut kinds = BTreeMap::new();
    for class in [Class::Read, Class::Write] {
        let mut these: Vec<Duration> = lat
            .iter()
            .filter(|(c, _)| *c == class)
            .map(|(_, d)| *d)
            .collect();
        if !these.is_empty() {
            kinds.insert(class.name(), summarize(&mut these));
        }
    }
    let report = Report {
        workload: format!("{:?}", args.workload).to_lowercase(),
        clients: args.clients,
        seconds,
        operations: overall.operations,
        per_second: overall.operations as f64 / seconds,
        p50_us: overall.p50_us,
        p90_us: overall.p90_us,
        p99_us: overall.p99_us,
        max_us: overall.max_us,
        errors: outcome.errors,
        timeline: timeline.into_inner(),
        kinds,
        seeded,
        seed_errors,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{} x{} for {:.1} s: {} ops, {:.0}/s; p50 {} µs, p90 {} µs, p99 {} µs, max {} µs; errors {:?}",
            report.workload, report.clients, report.seconds, report.operations, report.per_second,
            report.p50_us, report.p90_us, report.p99_us, report.max_us, report.errors
        );
        for (name, s) in &report.kinds {
            print!("{}", render(name, s));
        }
    }
    Ok(report)
}

/// Writes revision 1 of every block the update/read/mixed workloads use,
/// `clients` writes at a time, with a progress bar; returns how many were
/// written and the failures by kind (a refused write counts as `stale`). Fails
/// when none could be written: the run would measure nothing.
async fn seed(
    args: &BenchArgs,
    clients: &[RepoClient],
    run: u32,
) -> Result<(u64, BTreeMap<String, u64>), String> {
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.blocks)
    };
    bar.set_style(
        ProgressStyle::with_template("seeding {bar:40} {pos}/{len} blocks")
            .map_err(|e| e.to_string())?,
    );
    let bar_ref = &bar;
    let one = move |s: Slot| {
        let c = &clients[s.i as usize % clients.len()];
        async move {
            let written = seed_one(c, args, run, s.i).await;
            bar_ref.inc(1);
            written
        }
    };
    let began = Instant::now();
    let lanes = args.clients.max(1);
    let outcome = drive(lanes, Until::Total(args.blocks), &Counts::default(), one).await;
    let (written, errors) = (outcome.acked(), outcome.errors);
    bar.finish_and_clear();
    if !args.json {
        println!(
            "seeded {written} of {} blocks in {:.1} s",
            args.blocks,
            began.elapsed().as_secs_f64()
        );
    }
    if written == 0 {
        return Err(format!(
            "no seed write succeeded ({} blocks): {errors:?}",
            args.blocks
        ));
    }
    if !errors.is_empty() && !args.json {
        eprintln!(
            "warning: {} of {} seed writes failed: {errors:?}; operations on those blocks find nothing",
            args.blocks - written,
            args.blocks
        );
    }
    Ok((written, errors))
}

/// Writes revision 1 of seed block `b` in one pendCommit.
async fn seed_one(c: &RepoClient, args: &BenchArgs, run: u32, b: u64) -> Result<(), String> {
    let seeded = block(&format!("bench{run}-{b}"), args.value_size, b)?;
    load::write(c, Txn::insert(load::new_trx_id()?, seeded), true).await
}
