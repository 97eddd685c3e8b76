//! `optimystic repo`: one request on stdin, its reply on stdout.

use std::io::{Read, Write};
use std::time::Duration;

use libp2p::Multiaddr;
use optimystic_actors::net::{peer_of, NetClient, NetConfig, NetError, ProtocolIds, RepoClient};

use optimystic_actors::block::{RegistryOptions, StorageRepo};
use optimystic_actors::model::{
    BlockGets, CommitRequest, PendCommitRequest, PendRequest, TrxBlocks,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

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

fn parse<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid {what} JSON: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("cannot encode reply: {e}"))
}

fn execute(args: &RepoArgs) -> Result<String, String> {
    let input = read_request()?;
    // Parse before opening storage or dialling: malformed input touches nothing.
    let request = Request::parse(args.op, &input)?;
    let system = actix_rt::System::new();
    match &args.peer {
        Some(peer) => system.block_on(remote(args, peer.clone(), request)),
        None => system.block_on(async {
            let opts = RegistryOptions {
                arbiters: 1,
                ..RegistryOptions::default()
            };
            let repo = open_repo(args.storage, &args.data_dir, opts).map_err(|e| e.to_string())?;
            let reply = request.send(&repo).await;
            repo.registry().shutdown();
            reply
        }),
    }
}

async fn remote(args: &RepoArgs, peer: Multiaddr, request: Request) -> Result<String, String> {
    let peer_id =
        peer_of(&peer).ok_or_else(|| format!("--peer {peer} has no /p2p/<peerId> component"))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(format!(
            "--timeout must be a positive number of seconds, not {}",
            args.timeout
        ));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let cfg = NetConfig {
        protocols: ProtocolIds::new(&args.protocol_prefix).map_err(|e| e.to_string())?,
        request_timeout: timeout,
        client_only: true,
        ..NetConfig::default()
    };
    let net = NetClient::start_client(cfg).map_err(|e| e.to_string())?;
    let mut client = RepoClient::new(net, peer_id, vec![peer], timeout);
    if args.json {
        client = client.force_json();
    }
    request.send_remote(&client).await
}

enum Request {
    Get(BlockGets),
    Pend(PendRequest),
    Commit(CommitRequest),
    Cancel(TrxBlocks),
    PendCommit(PendCommitRequest),
}

impl Request {
    fn parse(op: RepoOp, input: &[u8]) -> Result<Self, String> {
        Ok(match op {
            RepoOp::Get => Self::Get(parse(input, "BlockGets")?),
            RepoOp::Pend => Self::Pend(parse(input, "PendRequest")?),
            RepoOp::Commit => Self::Commit(parse(input, "CommitRequest")?),
            RepoOp::Cancel => Self::Cancel(parse(input, "TrxBlocks")?),
            RepoOp::PendCommit => Self::PendCommit(parse(input, "PendCommitRequest")?),
        })
    }

    async fn send_remote(self, c: &RepoClient) -> Result<String, String> {
        let e = |e: NetError| e.to_string();
        match self {
            Self::Get(r) => to_json(&c.get(r).await.map_err(e)?),
            Self::Pend(r) => to_json(&c.pend(r).await.map_err(e)?),
            Self::Commit(r) => to_json(&c.commit(r).await.map_err(e)?),
            Self::PendCommit(r) => to_json(&c.pend_commit(r).await.map_err(e)?),
            Self::Cancel(r) => {
                c.cancel(r).await.map_err(e)?;
                Ok("{}".into())
            }
        }
    }

    async fn send(self, repo: &StorageRepo) -> Result<String, String> {
        let e = |e: optimystic_actors::storage::RepoError| e.to_string();
        match self {
            Self::Get(r) => to_json(&repo.get(r).await.map_err(e)?),
            Self::Pend(r) => to_json(&repo.pend(r).await.map_err(e)?),
            Self::Commit(r) => to_json(&repo.commit(r).await.map_err(e)?),
            Self::PendCommit(r) => to_json(&repo.pend_commit(r).await.map_err(e)?),
            Self::Cancel(r) => {
                repo.cancel(r).await.map_err(e)?;
                Ok("{}".into())
            }
        }
    }
}
