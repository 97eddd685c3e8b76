//! `optimystic bench`: drives a running cluster through RepoClient, as users do,
//! and reports throughput (overall and second by second), latency percentiles
//! and a histogram per kind of operation, and errors by kind — of the seeding
//! writes as well as of the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use libp2p::Multiaddr;
use optimystic_actors::model::{
    BlockGets, BlockId, BlockOperation, CommitRequest, PendCommitRequest, PendPolicy, PendRequest,
    Transforms, TrxBlocks, TrxId,
};
use optimystic_actors::net::{peer_of, NetClient, NetConfig, NetError, RepoClient};
use parking_lot::Mutex;
use serde::Serialize;

use super::latency::{render, summarize, Summary};
use super::{BenchArgs, Workload};

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

fn block(name: &str, value_size: usize, n: u64) -> Result<Transforms, String> {
    let b = serde_json::from_value(serde_json::json!({
        "header": {"id": name, "type": "bench", "collectionId": "bench"},
        "items": [], "n": n, "value": "v".repeat(value_size)
    }))
    .map_err(|e| e.to_string())?;
    let id = BlockId::new(name).map_err(|e| e.to_string())?;
    Ok(Transforms {
        inserts: Some([(id, b)].into()),
        ..Transforms::default()
    })
}

fn kind(e: &NetError) -> String {
    match e {
        NetError::Remote { code, .. } => code.clone(),
        NetError::Timeout => "timeout".into(),
        NetError::ConnectionClosed => "connection_closed".into(),
        NetError::Dial(_) => "dial".into(),
        other => format!("{other}")
            .split(':')
            .next()
            .unwrap_or("other")
            .to_string(),
    }
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
    let name = format!("bench{run}-{pick}");
    let id = BlockId::new(&name).map_err(|e| e.to_string())?;
    match w {
        Workload::Read => {
            c.get(BlockGets {
                block_ids: vec![id],
                context: None,
                consistency: None,
            })
            .await
            .map_err(|e| kind(&e))?;
            Ok(())
        }
        Workload::Insert | Workload::Update | Workload::Mixed => {
            let fresh = w == Workload::Insert;
            let name = if fresh {
                format!("bench{run}-new{i}")
            } else {
                name
            };
            let id = BlockId::new(&name).map_err(|e| e.to_string())?;
            let rev = if fresh {
                1
            } else {
                revs.lock().get(&pick).copied().unwrap_or(1) + 1
            };
            let transforms = if fresh {
                block(&name, args.value_size, i)?
            } else {
                let op = BlockOperation {
                    entity: "n".into(),
                    index: 0,
                    delete_count: 0,
                    inserted: serde_json::json!(i),
                };
                Transforms {
                    updates: Some([(id.clone(), vec![op])].into()),
                    ..Transforms::default()
                }
            };
            let trx = TrxId::new(format!("b{run}x{i}")).map_err(|e| e.to_string())?;
            let pend = PendRequest {
                trx_id: trx.clone(),
                rev: Some(rev),
                transforms,
                policy: PendPolicy::Fail,
            };
            let commit = CommitRequest {
                trx_id: trx.clone(),
                block_ids: vec![id.clone()],
                rev,
                header_id: None,
                tail_id: None,
            };
            if args.one_round {
                let r = c
                    .pend_commit(PendCommitRequest { pend, commit })
                    .await
                    .map_err(|e| kind(&e))?;
                if !r.is_success() {
                    return Err("stale".into());
                }
            } else {
                let p = c.pend(pend).await.map_err(|e| kind(&e))?;
                if !p.is_success() {
                    return Err("stale".into());
                }
                let r = c.commit(commit).await.map_err(|e| kind(&e))?;
                if !r.is_success() {
                    // Leave nothing pending behind a lost race.
                    let trx_ref = TrxBlocks {
                        trx_id: trx,
                        block_ids: vec![id],
                    };
                    c.cancel(trx_ref).await.map_err(|e| kind(&e))?;
                    return Err("stale".into());
                }
            }
            if !fresh {
                revs.lock().insert(pick, rev);
            }
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
    let clients: Vec<Arc<RepoClient>> = args
        .peer
        .iter()
        .filter_map(|a: &Multiaddr| {
            Some(Arc::new(RepoClient::new(
                net.clone(),
                peer_of(a)?,
                vec![a.clone()],
                timeout,
            )))
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
    let next = AtomicU64::new(0);
    let lat: Mutex<Vec<(Class, Duration)>> = Mutex::new(Vec::new());
    let errors: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let failed = AtomicU64::new(0);
    let timeline = Mutex::new(Vec::new());
    let start = Instant::now();
    let ticker = async {
        let (mut acked_before, mut failed_before) = (0, 0);
        for second in 1..=args.duration {
            tokio::time::sleep_until((start + Duration::from_secs(second)).into()).await;
            let (acked, failures) = (lat.lock().len() as u64, failed.load(Ordering::Relaxed));
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
    let workers = (0..args.clients).map(|w| {
        let (c, args, next, lat, errors, revs, failed) = (
            clients[w % clients.len()].clone(),
            &args,
            &next,
            &lat,
            &errors,
            &revs,
            &failed,
        );
        async move {
            // Each client works on its own blocks (w, w + clients, …) so updates to
            // one block never race (with fewer blocks than clients, some share).
            let (w, clients) = (w as u64, args.clients as u64);
            let per_client = (args.blocks / clients).max(1);
            let mut k = 0;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let pick = (w + clients * (k % per_client)) % args.blocks;
                k += 1;
                let t = Instant::now();
                let w = resolve(args.workload, i);
                let class = if w == Workload::Read {
                    Class::Read
                } else {
                    Class::Write
                };
                match op(&c, w, (i, pick), args, run, revs).await {
                    Ok(()) => lat.lock().push((class, t.elapsed())),
                    Err(k) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        *errors.lock().entry(k).or_default() += 1
                    }
                }
            }
        }
    });
    futures::join!(ticker, join_all(workers));
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let lat = lat.into_inner();
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
        errors: errors.into_inner(),
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
    clients: &[Arc<RepoClient>],
    run: u32,
) -> Result<(u64, BTreeMap<String, u64>), String> {
    use futures::StreamExt;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.blocks)
    };
    bar.set_style(
        ProgressStyle::with_template("seeding {bar:40} {pos}/{len} blocks")
            .map_err(|e| e.to_string())?,
    );
    let one = |b: u64| {
        let c = clients[b as usize % clients.len()].clone();
        async move {
            let name = format!("bench{run}-{b}");
            let trx = TrxId::new(format!("seed{run}x{b}")).map_err(|e| e.to_string())?;
            let pend = PendRequest {
                trx_id: trx.clone(),
                rev: Some(1),
                transforms: block(&name, args.value_size, b)?,
                policy: PendPolicy::Fail,
            };
            let commit = CommitRequest {
                trx_id: trx,
                block_ids: vec![BlockId::new(&name).map_err(|e| e.to_string())?],
                rev: 1,
                header_id: None,
                tail_id: None,
            };
            let r = c
                .pend_commit(PendCommitRequest { pend, commit })
                .await
                .map_err(|e| kind(&e))?;
            if r.is_success() {
                Ok(())
            } else {
                Err("stale".to_string())
            }
        }
    };
    let began = Instant::now();
    let mut outcomes = futures::stream::iter(0..args.blocks)
        .map(one)
        .buffer_unordered(args.clients.max(1));
    let (mut written, mut errors) = (0, BTreeMap::new());
    while let Some(r) = outcomes.next().await {
        match r {
            Ok(()) => written += 1,
            Err(k) => *errors.entry(k).or_default() += 1,
        }
        bar.inc(1);
    }
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
