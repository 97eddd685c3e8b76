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
    let mut client = RepoClient::new(net, peer_id, vec![peer], timeout);
    if args.json {
        client = client.force_json();
    }
    send(request, &client).await
}

/// The CLI's name of an operation as the model's.
fn kind(op: RepoOp) -> OpKind {
    match op {
        RepoOp::Get => OpKind::Get,
        RepoOp::Pend => OpKind::Pend,
        RepoOp::Commit => OpKind::Commit,
        RepoOp::Cancel => OpKind::Cancel,
        RepoOp::PendCommit => OpKind::PendCommit,
    }
}

/// Parses stdin as the request of `op`.
fn parse_request(op: RepoOp, input: &[u8]) -> Result<RepoOperation, String> {
    let kind = kind(op);
    RepoOperation::from_json(kind, input)
        .map_err(|e| format!("invalid {} JSON: {e}", kind.body_name()))
}

/// Runs `op` on `repo`; the reply as one line of JSON.
async fn send(op: RepoOperation, repo: &dyn Repo) -> Result<String, String> {
    let result = op.run(repo).await.map_err(|e| e.to_string())?;
    serde_json::to_string(&result.wire()).map_err(|e| format!("cannot encode reply: {e}"))
}
