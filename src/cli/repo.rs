//! `optimystic repo`: one request on stdin, its reply on stdout.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use optimystic_actors::block::RegistryOptions;
use optimystic_actors::model::{OpKind, Repo, RepoOperation};
use optimystic_actors::net::{peer_of, NetClient, NetConfig, ProtocolIds, RepoClient};
use optimystic_actors::storage::StorageKind;

use super::{RepoArgs, RepoOp};
use crate::local::open_repo;

/// Largest request accepted on stdin (the block-carrying frame limit).
const MAX_REQUEST: u64 = 8 << 20;

pub(super) fn run(args: RepoArgs) -> i32 {
    match execute(&args) {
        // A watch printed its lines as they came.
        Ok(reply) if reply.is_empty() => 0,
        Ok(reply) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{reply}").and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => fail(&format!("cannot write reply: {e}")),
            }
        }
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("error: {message}");
    1
}

fn read_request() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_REQUEST + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if buf.len() as u64 > MAX_REQUEST {
        return Err(format!("request on stdin exceeds {MAX_REQUEST} bytes"));
    }
    Ok(buf)
}

fn execute(args: &RepoArgs) -> Result<String, String> {
    if args.op == RepoOp::Watch {
        let peer = args
            .peer
            .clone()
            .ok_or("watch needs --peer (a running node)")?;
        let block =
            optimystic_actors::model::BlockId::new(args.block.as_deref().unwrap_or_default())
                .map_err(|e| e.to_string())?;
        return actix_rt::System::new().block_on(watch(args, peer, block));
    }
    let input = read_request()?;
    // Parse before opening storage or dialling: malformed input touches nothing.
    let request = parse_request(args.op, &input)?;
    let system = actix_rt::System::new();
    match &args.peer {
        Some(peer) => system.block_on(remote(args, peer.clone(), request)),
        None => system.block_on(async {
            let opts = RegistryOptions {
                arbiters: 1,
                ..RegistryOptions::default()
            };
            let (storage, dir) = local_store(args)?;
            let repo = open_repo(storage, &dir, opts).map_err(|e| e.to_string())?;
            let reply = send(request, &repo).await;
            repo.registry().shutdown();
            reply
        }),
    }
}

/// The local store's backend and directory: the flag, else its `OPTIMYSTIC_*`
/// variable, else the default (read here rather than by clap, so a variable
/// meant for a node never breaks `repo --peer`).
fn local_store(args: &RepoArgs) -> Result<(StorageKind, PathBuf), String> {
    let storage = match (args.storage, std::env::var("OPTIMYSTIC_STORAGE")) {
        (Some(s), _) => s,
        (None, Ok(v)) => {
            super::parse_storage(&v).map_err(|e| format!("OPTIMYSTIC_STORAGE={v:?}: {e}"))?
        }
        (None, Err(_)) => StorageKind::Embedded,
    };
    let dir = args
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("OPTIMYSTIC_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./data"));
    Ok((storage, dir))
}

async fn remote(
    args: &RepoArgs,
    peer: Multiaddr,
    request: RepoOperation,
) -> Result<String, String> {
    send(request, &connect(args, peer)?.client).await
}

/// Prints every revision of `block` on `peer` as one JSON line, until `--count`
/// revisions (or forever); a failed read is reported on stderr and retried.
async fn watch(
    args: &RepoArgs,
    peer: Multiaddr,
    block: optimystic_actors::model::BlockId,
) -> Result<String, String> {
    use futures::StreamExt;
    let remote = connect(args, peer.clone())?;
    let history = crate::watch::RemoteHistory {
        net: remote.net,
        peer: remote.peer_id,
        addrs: vec![peer],
        timeout: remote.timeout,
        client: remote.client,
    };
    let revisions = optimystic_actors::watch::watch(
        history,
        block,
        args.from,
        None,
        Duration::from_millis(200),
    );
    let mut revisions = std::pin::pin!(revisions);
    let mut seen = 0;
    while args.count.is_none_or(|n| seen < n) {
        match revisions.next().await {
            Some(Ok(rev)) => {
                let line = serde_json::to_string(&rev).map_err(|e| e.to_string())?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .map_err(|e| format!("cannot write: {e}"))?;
                seen += 1;
            }
            Some(Err(e)) => eprintln!("error: {e} (retrying)"),
            None => break,
        }
    }
    Ok(String::new())
}

/// A client of a remote node, and what it was made with.
struct Remote {
    net: NetClient,
    client: RepoClient,
    peer_id: libp2p::PeerId,
    timeout: Duration,
}

/// A client of the node at `peer` as the flags say (timeout, prefix, key, JSON).
fn connect(args: &RepoArgs, peer: Multiaddr) -> Result<Remote, String> {
    let peer_id =
        peer_of(&peer).ok_or_else(|| format!("--peer {peer} has no /p2p/<peerId> component"))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(format!(
            "--timeout must be a positive number of seconds, not {}",
            args.timeout
        ));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let network_key = match &args.network_key {
        Some(p) => Some(optimystic_actors::net::read_network_key(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let cfg = NetConfig {
        protocols: ProtocolIds::new(&args.protocol_prefix).map_err(|e| e.to_string())?,
        request_timeout: timeout,
        client_only: true,
        network_key,
        ..NetConfig::default()
    };
    let net = NetClient::start_client(cfg).map_err(|e| e.to_string())?;
    let mut client = RepoClient::new(net.clone(), peer_id, vec![peer], timeout);
    if args.json {
        client = client.force_json();
    }
    Ok(Remote {
        net,
        client,
        peer_id,
        timeout,
    })
}

/// The CLI's name of an operation as the model's (`watch` is none of them).
fn kind(op: RepoOp) -> Option<OpKind> {
    Some(match op {
        RepoOp::Get => OpKind::Get,
        RepoOp::Pend => OpKind::Pend,
        RepoOp::Commit => OpKind::Commit,
        RepoOp::Cancel => OpKind::Cancel,
        RepoOp::PendCommit => OpKind::PendCommit,
        RepoOp::Watch => return None,
    })
}

/// Parses stdin as the request of `op`.
fn parse_request(op: RepoOp, input: &[u8]) -> Result<RepoOperation, String> {
    let kind = kind(op).ok_or("watch reads no request")?;
    RepoOperation::from_json(kind, input)
        .map_err(|e| format!("invalid {} JSON: {e}", kind.body_name()))
}

/// Runs `op` on `repo`; the reply as one line of JSON.
async fn send(op: RepoOperation, repo: &dyn Repo) -> Result<String, String> {
    let result = op.run(repo).await.map_err(|e| e.to_string())?;
    serde_json::to_string(&result.wire()).map_err(|e| format!("cannot encode reply: {e}"))
}
