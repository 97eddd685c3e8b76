//! The `optimystic` command line.

mod repo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Run one repo operation: reads the request JSON on stdin, prints the reply JSON.
    ///
    /// Exit status 0 for every reply (including `"success":false`), 1 with one line on
    /// stderr for malformed input, invalid ids or a failed operation (nothing changes).
    Repo(RepoArgs),
}

/// Arguments of `optimystic repo`.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// Data directory of a local store (must not be in use by a running node).
    #[arg(long, default_value = "./data", env = "OPTIMYSTIC_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Storage backend of the local store.
    #[arg(long, default_value = "embedded", value_parser = parse_storage, env = "OPTIMYSTIC_STORAGE")]
    pub storage: StorageKind,
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
        Command::Repo(args) => repo::run(args),
    }
}
