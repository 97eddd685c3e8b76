//! `optimystic devnet`: a local cluster on loopback with a sample workload.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use libp2p::Multiaddr;
use optimystic_actors::net::{peer_of, NetClient, NetConfig, NetEvent, RepoClient};
use tokio::signal::unix::{signal, SignalKind};

use super::DevnetArgs;
use crate::load::{self, Txn};
use crate::node::{NodeBuilder, NodeHandle};

pub(super) fn run(args: DevnetArgs) -> i32 {
    if args.nodes == 0 {
        eprintln!("error: --nodes must be at least 1");
        return 1;
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("optimystic-devnet-{}", std::process::id()))
    });
    let system = actix_rt::System::new();
    match system.block_on(devnet(args, dir)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn start(
    dir: PathBuf,
    bootstrap: Option<&Multiaddr>,
) -> Result<(NodeHandle, Multiaddr), String> {
    let mut b = NodeBuilder::new()
        .data_dir(dir)
        .listen("/ip4/127.0.0.1/tcp/0")
        .http("127.0.0.1:0");
    if let Some(a) = bootstrap {
        b = b.bootstrap(&a.to_string());
    }
    let mut node = b.start().await.map_err(|e| e.to_string())?;
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match node.next_event().await {
                Some(NetEvent::Listening(a)) => return Some(a),
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or("a node did not start listening")?;
    Ok((node, addr))
}

async fn devnet(args: DevnetArgs, dir: PathBuf) -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    println!("devnet data in {}", dir.display());
    let mut nodes = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for i in 0..args.nodes {
        let (node, addr) = start(dir.join(format!("node{i}")), addrs.first()).await?;
        let http = node
            .http_addr()
            .map_or_else(String::new, |a| format!("http://{a}/metrics"));
        println!("node{i}  {addr}  metrics {http}");
        nodes.push(node);
        addrs.push(addr);
    }
    let handles: Vec<&NodeHandle> = nodes.iter().collect();
    crate::node::wait_configured(&handles, Duration::from_secs(60)).await?;
    workload(&addrs, args.ops).await?;
    if !args.once {
        println!("running; Ctrl-C to stop");
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// Writes `ops` blocks round-robin through the nodes (pend + commit over the
/// network, with [`crate::load`]'s requests), then reads each back through the
/// next node.
async fn workload(addrs: &[Multiaddr], ops: usize) -> Result<(), String> {
    let net = NetClient::start_client(NetConfig::default()).map_err(|e| e.to_string())?;
    let clients: Vec<RepoClient> = addrs
        .iter()
        .filter_map(|a| {
            Some(RepoClient::new(
                net.clone(),
                peer_of(a)?,
                vec![a.clone()],
                Duration::from_secs(10),
            ))
        })
        .collect();
    let bar = ProgressBar::new(ops as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "workload {bar:40} {pos}/{len} transactions  {per_sec}  {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    let run = std::process::id();
    let (mut ok, mut read_back) = (0, 0);
    for i in 0..ops {
        let c = &clients[i % clients.len()];
        let id = load::block_id(format!("devnet-{run}-{i}"))?;
        let trx = load::new_trx_id()?;
        let block = load::block(&id, "sample", "devnet", [("n", serde_json::json!(i))])?;
        let committed = load::write(c, Txn::insert(trx, block), false).await.is_ok();
        if committed {
            ok += 1;
            let other = &clients[(i + 1) % clients.len()];
            let got = load::read(other, id.clone()).await;
            if got.is_ok_and(|r| r.get(&id).is_some_and(|b| b.block.is_some())) {
                read_back += 1;
            }
        }
        bar.set_message(format!(
            "{ok} committed, {read_back} read back via another node"
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("workload: {ok} of {ops} transactions committed, {read_back} read back through another node");
    if ok < ops {
        return Err(format!("only {ok} of {ops} transactions committed"));
    }
    Ok(())
}
