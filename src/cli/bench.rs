//! `optimystic bench`: drives a running cluster through RepoClient, as users do,
//! and reports throughput, latency percentiles and errors by kind.

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

use super::{BenchArgs, Workload};

/// What one run measured.
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

/// One operation of the workload; `Err(kind)` on failure.
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
    let w = match w {
        Workload::Mixed if i % 10 < 7 => Workload::Read,
        Workload::Mixed => Workload::Update,
        other => other,
    };
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
    // Seed the blocks that update/read/mixed work on, one writer per block.
    if args.workload != Workload::Insert {
        for b in 0..args.blocks {
            let name = format!("bench{run}-{b}");
            let c = &clients[b as usize % clients.len()];
            let trx = TrxId::new(format!("seed{run}x{b}")).map_err(|e| e.to_string())?;
            let t = block(&name, args.value_size, b)?;
            let id = BlockId::new(&name).map_err(|e| e.to_string())?;
            c.pend(PendRequest {
                trx_id: trx.clone(),
                rev: Some(1),
                transforms: t,
                policy: PendPolicy::Fail,
            })
            .await
            .map_err(|e| e.to_string())?;
            c.commit(CommitRequest {
                trx_id: trx,
                block_ids: vec![id],
                rev: 1,
                header_id: None,
                tail_id: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        }
    }
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
    let lat = Mutex::new(Vec::new());
    let errors: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let start = Instant::now();
    let ticker = async {
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar.set_position(start.elapsed().as_secs().min(args.duration));
            bar.set_message(format!("{} ops", lat.lock().len()));
        }
    };
    let workers = (0..args.clients).map(|w| {
        let (c, args, next, lat, errors, revs) = (
            clients[w % clients.len()].clone(),
            &args,
            &next,
            &lat,
            &errors,
            &revs,
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
                match op(&c, args.workload, (i, pick), args, run, revs).await {
                    Ok(()) => lat.lock().push(t.elapsed()),
                    Err(k) => *errors.lock().entry(k).or_default() += 1,
                }
            }
        }
    });
    futures::join!(ticker, join_all(workers));
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let mut lat = lat.into_inner();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0, |d| d.as_micros() as u64)
    };
    let report = Report {
        workload: format!("{:?}", args.workload).to_lowercase(),
        clients: args.clients,
        seconds,
        operations: lat.len() as u64,
        per_second: lat.len() as f64 / seconds,
        p50_us: pct(0.5),
        p90_us: pct(0.9),
        p99_us: pct(0.99),
        max_us: lat.last().map_or(0, |d| d.as_micros() as u64),
        errors: errors.into_inner(),
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
    }
    Ok(report)
}
