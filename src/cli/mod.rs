//! The `optimystic` command line.

mod node;
mod repo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use optimystic_actors::storage::StorageKind;

/// Optimystic: versioned blocks replicated over a peer-to-peer network.
#[derive(Debug, Parser)]
#[command(name = "optimystic", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: serve the repo over libp2p until SIGINT/SIGTERM.
    ///
    /// Prints `listening on <multiaddr>/p2p/<peerId>` on stdout for each listen address.
    /// With no flags: embedded storage in ./data, listening on /ip4/127.0.0.1/tcp/7410.
    Node(NodeArgs),
    /// Run one repo operation: reads the request JSON on stdin, prints the reply JSON.
    ///
    /// Local (`--data-dir`) or remote (`--peer`). Exit status 0 for every reply
    /// (including `"success":false`), 1 with one line on stderr for malformed input,
    /// invalid ids, a failed operation (nothing changes), an unreachable peer or a timeout.
    Repo(RepoArgs),
}

/// Arguments of `optimystic node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Data directory: storage, identity key (created if absent).
    #[arg(long, default_value = "./data", env = "OPTIMYSTIC_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (repeatable).
    #[arg(long, default_value = crate::node::DEFAULT_LISTEN)]
    pub listen: Vec<Multiaddr>,
    /// Peer to connect to at start, with /p2p/<peerId> (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Prefix of every protocol id.
    #[arg(long, default_value = optimystic_actors::net::DEFAULT_PREFIX, env = "OPTIMYSTIC_PROTOCOL_PREFIX")]
    pub protocol_prefix: String,
    /// Storage backend.
    #[arg(long, default_value = "embedded", value_parser = parse_storage, env = "OPTIMYSTIC_STORAGE")]
    pub storage: StorageKind,
    /// Most block actors kept alive (least recently used ones are passivated).
    #[arg(long, default_value_t = 10_000)]
    pub max_live_blocks: usize,
}

/// Arguments of `optimystic repo`.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// Data directory of a local store (must not be in use by a running node).
    #[arg(
        long,
        default_value = "./data",
        env = "OPTIMYSTIC_DATA_DIR",
        conflicts_with = "peer"
    )]
    pub data_dir: PathBuf,
    /// Storage backend of the local store.
    #[arg(long, default_value = "embedded", value_parser = parse_storage, env = "OPTIMYSTIC_STORAGE")]
    pub storage: StorageKind,
    /// Send the request to a running node instead: its multiaddr with /p2p/<peerId>.
    #[arg(long)]
    pub peer: Option<Multiaddr>,
    /// Seconds to wait for a remote reply (dial included).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Protocol prefix of the remote node.
    #[arg(long, default_value = optimystic_actors::net::DEFAULT_PREFIX, env = "OPTIMYSTIC_PROTOCOL_PREFIX")]
    pub protocol_prefix: String,
    /// Speak only the JSON protocol (as a seed JavaScript client does).
    #[arg(long)]
    pub json: bool,
    /// The operation; its request JSON is read from stdin.
    #[arg(value_enum)]
    pub op: RepoOp,
}

/// A repo operation and the request it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RepoOp {
    /// BlockGets → {blockId: {block?, state}}
    Get,
    /// PendRequest → PendResult
    Pend,
    /// CommitRequest → CommitResult
    Commit,
    /// TrxBlocks → {}
    Cancel,
}

fn parse_storage(s: &str) -> Result<StorageKind, String> {
    match s.parse()? {
        StorageKind::Memory => Err("memory storage is for tests only; use embedded or file".into()),
        k => Ok(k),
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Node(args) => node::run(args),
        Command::Repo(args) => repo::run(args),
    }
}
