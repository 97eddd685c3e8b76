//! The `optimystic` command line.

mod backup;
mod bench;
mod devnet;
mod env_error;
mod http;
mod latency;
mod leave;
mod node;
mod peers;
mod repo;
mod status;

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

/// Parses the command line; on a bad value that came from an `OPTIMYSTIC_*`
/// variable rather than a flag, the error names the variable.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => cli,
        Err(e) => match env_error::blame_variable(&e, &argv, |name| std::env::var_os(name)) {
            Some(message) => {
                eprintln!("error: {message}");
                std::process::exit(2);
            }
            None => e.exit(),
        },
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: serve the repo over libp2p until SIGINT/SIGTERM.
    ///
    /// Prints `listening on <multiaddr>/p2p/<peerId>` on stdout for each listen address.
    /// With no flags: embedded storage in ./data, listening on /ip4/127.0.0.1/tcp/7410,
    /// no HTTP admin server.
    Node(Box<NodeArgs>),
    /// Show a node's status (peers, storage, uptime) from its HTTP admin server.
    Status(AdminArgs),
    /// Status plus mailboxes sorted by depth and repo operation counts; with
    /// `--block ID`, which peers hold which revision of that block instead.
    Inspect(InspectArgs),
    /// Start a local cluster on loopback, run a sample workload, keep it running.
    ///
    /// Prints each node's address and metrics URL; Ctrl-C stops it (or --once).
    Devnet(DevnetArgs),
    /// Load generator: drive running nodes through RepoClient and report throughput,
    /// latency percentiles (p50/p90/p99/max) and errors by kind.
    Bench(BenchArgs),
    /// Run one repo operation: reads the request JSON on stdin, prints the reply JSON.
    ///
    /// Local (`--data-dir`) or remote (`--peer`). Exit status 0 for every reply
    /// (including `"success":false`), 1 with one line on stderr for malformed input,
    /// invalid ids, a failed operation (nothing changes), an unreachable peer or a timeout.
    Repo(RepoArgs),
    /// A node's peers: list them, or remove one from every configuration.
    Peers(PeersArgs),
    /// Leave the network gracefully: the node hands every block it holds to the
    /// blocks' next configurations and is replaced wherever it is a member.
    ///
    /// Waits (up to `--wait`) and exits 0 only once the node is in no
    /// configuration and every block it held is on every member of its
    /// configuration; then stop the node. A configuration never drops below
    /// --cluster-size: with too few other live peers the leave cannot finish.
    Leave(LeaveArgs),
    /// Take a consistent backup of a running node's blocks (embedded storage)
    /// from its HTTP admin server into the file OUT.
    Backup {
        /// The node's HTTP admin address (host:port or URL).
        #[arg(long)]
        http: String,
        /// The backup file to write.
        out: PathBuf,
    },
    /// Fill an empty data directory from a backup file (checked whole first).
    /// A node started on it serves every block; it keeps none of the old node's
    /// identity or configurations (docs/OPERATIONS.md, "Backup and restore").
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to fill (empty or absent).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print a shell completion script: `optimystic completions bash >
    /// /etc/bash_completion.d/optimystic` (zsh: into a directory of `$fpath` as
    /// `_optimystic`; fish: `~/.config/fish/completions/optimystic.fish`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Arguments of `optimystic peers`.
#[derive(Debug, clap::Args)]
pub struct PeersArgs {
    #[command(subcommand)]
    pub command: PeersCommand,
}

/// What `optimystic peers` does.
#[derive(Debug, clap::Subcommand)]
pub enum PeersCommand {
    /// Every peer the node has had in a configuration: regions, connected, retired.
    List(AdminArgs),
    /// Retire PEER: it becomes a candidate for no region, and is replaced (once
    /// its replacement holds the data) in every configuration that has it.
    ///
    /// Waits until none of the node's configurations has PEER (`--wait`, 0 to
    /// return at once). A configuration never drops below --cluster-size: with
    /// no live peer to take its place, PEER stays.
    Remove(RemoveArgs),
}

/// Arguments of `optimystic peers remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The PeerId to retire.
    pub peer: String,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Seconds to wait for the node's configurations to drop PEER.
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
}

/// Arguments of `optimystic leave`.
#[derive(Debug, clap::Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Seconds to wait for the leave to finish (0: start it and return).
    #[arg(long, default_value_t = 300)]
    pub wait: u64,
}

/// Arguments of `optimystic node`. Every setting can also come from a TOML file
/// (`--config`) or an `OPTIMYSTIC_*` variable; a flag beats its variable, which
/// beats the file, which beats the default.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// TOML file of settings (keys as the flags, e.g. `data-dir = "/var/lib/optimystic"`).
    #[arg(long, env = "OPTIMYSTIC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Data directory: storage, identity key (created if absent) [default: ./data].
    #[arg(long, env = "OPTIMYSTIC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on, repeatable [default: /ip4/127.0.0.1/tcp/7410].
    #[arg(long, env = "OPTIMYSTIC_LISTEN", value_delimiter = ',')]
    pub listen: Option<Vec<String>>,
    /// Peer to connect to at start, with /p2p/<peerId>; repeatable.
    #[arg(long, env = "OPTIMYSTIC_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Option<Vec<String>>,
    /// Prefix of every protocol id [default: /db-p2p].
    #[arg(long, env = "OPTIMYSTIC_PROTOCOL_PREFIX")]
    pub protocol_prefix: Option<String>,
    /// Storage backend: embedded or file [default: embedded].
    #[arg(long, env = "OPTIMYSTIC_STORAGE")]
    pub storage: Option<String>,
    /// Serve the HTTP admin API (/metrics, /status, /v1/repo/*) on this address,
    /// e.g. 127.0.0.1:7480 [default: off]. Binds exactly what you give.
    #[arg(long, env = "OPTIMYSTIC_HTTP")]
    pub http: Option<String>,
    /// Most block actors kept in memory [default: 10000].
    #[arg(long, env = "OPTIMYSTIC_MAX_LIVE_BLOCKS")]
    pub max_live_blocks: Option<usize>,
    /// Peers per block cluster [default: 3].
    #[arg(long, env = "OPTIMYSTIC_CLUSTER_SIZE")]
    pub cluster_size: Option<usize>,
    /// Log format: text or json; the level comes from RUST_LOG [default: text].
    #[arg(long, env = "OPTIMYSTIC_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Deadline of each network request, and of each cluster transaction (its
    /// record expires this long after it starts), in ms [default: 30000].
    #[arg(long, env = "OPTIMYSTIC_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Inbound requests accepted per second from one peer; 0 = unlimited
    /// [default: 16000]. Over it a peer gets `rate_limited` errors.
    #[arg(long, env = "OPTIMYSTIC_MAX_REQUESTS_PER_PEER")]
    pub max_requests_per_peer: Option<u32>,
    /// Most pending transactions one block may hold; a pend past it gets
    /// `too_many_pending` [default: 256].
    #[arg(long, env = "OPTIMYSTIC_MAX_PENDING_PER_BLOCK")]
    pub max_pending_per_block: Option<usize>,
    /// Most cluster transactions in progress at once on this node as a member; a
    /// new one past it gets `busy` [default: 4096].
    #[arg(long, env = "OPTIMYSTIC_MAX_ACTIVE_TRANSACTIONS")]
    pub max_active_transactions: Option<usize>,
    /// How long a member may be unreachable before placement replaces it with the
    /// next live peer of its regions' targets (once that peer holds the data), in
    /// ms [default: 60000]. Never shrinks a configuration below --cluster-size.
    #[arg(long, env = "OPTIMYSTIC_DEAD_PEER_TIMEOUT_MS")]
    pub dead_peer_timeout_ms: Option<u64>,
    /// Pause between anti-entropy rounds, in ms: each round compares this node's
    /// blocks with one co-member's by region digests and repairs the blocks that
    /// differ from what a majority holds; 0 = off [default: 30000].
    #[arg(long, env = "OPTIMYSTIC_ANTI_ENTROPY_INTERVAL_MS")]
    pub anti_entropy_interval_ms: Option<u64>,
    /// Most blocks anti-entropy repairs per second [default: 200].
    #[arg(long, env = "OPTIMYSTIC_REPAIR_RATE")]
    pub repair_rate: Option<u32>,
    /// A private network: the pre-shared key file (`swarm.key` format:
    /// `/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits). Only nodes and clients
    /// with the key can connect at all [default: an open network].
    #[arg(long, env = "OPTIMYSTIC_NETWORK_KEY")]
    pub network_key: Option<String>,
    /// A permissioned network: a file of the PeerIds that may be members of a
    /// configuration (one per line, `#` comments; it must list this node). Others
    /// may still connect as clients [default: anyone may be a member].
    #[arg(long, env = "OPTIMYSTIC_ALLOW_PEERS")]
    pub allow_peers: Option<String>,
    /// On SIGINT/SIGTERM, first leave the network gracefully (as `optimystic
    /// leave`), then stop; a second signal stops at once. Exits 1 if the leave
    /// did not finish [default: off].
    #[arg(long, env = "OPTIMYSTIC_LEAVE_ON_SHUTDOWN", num_args = 0..=1, default_missing_value = "true")]
    pub leave_on_shutdown: Option<bool>,
    /// Longest wait for --leave-on-shutdown's leave, in ms [default: 300000].
    #[arg(long, env = "OPTIMYSTIC_LEAVE_TIMEOUT_MS")]
    pub leave_timeout_ms: Option<u64>,
}

impl NodeArgs {
    /// The effective settings.
    pub fn settings(&self) -> Result<crate::config::Settings, String> {
        let o = crate::config::Overrides {
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            bootstrap: self.bootstrap.clone(),
            protocol_prefix: self.protocol_prefix.clone(),
            storage: self.storage.clone(),
            http: self.http.clone(),
            max_live_blocks: self.max_live_blocks,
            cluster_size: self.cluster_size,
            log_format: self.log_format.clone(),
            request_timeout_ms: self.request_timeout_ms,
            max_requests_per_peer: self.max_requests_per_peer,
            max_pending_per_block: self.max_pending_per_block,
            max_active_transactions: self.max_active_transactions,
            dead_peer_timeout_ms: self.dead_peer_timeout_ms,
            anti_entropy_interval_ms: self.anti_entropy_interval_ms,
            repair_rate: self.repair_rate,
            network_key: self.network_key.clone(),
            allow_peers: self.allow_peers.clone(),
            leave_on_shutdown: self.leave_on_shutdown,
            leave_timeout_ms: self.leave_timeout_ms,
        };
        crate::config::Settings::resolve(self.config.as_deref(), o)
    }
}

/// Arguments of `optimystic status` and `optimystic inspect`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The node's HTTP admin address (its --http).
    #[arg(long, default_value = "127.0.0.1:7480", env = "OPTIMYSTIC_HTTP")]
    pub http: String,
}

/// Arguments of `optimystic inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// A block: list each member of its configuration (and this node) with
    /// the revision and pending transactions its own copy holds.
    #[arg(long)]
    pub block: Option<String>,
}

/// Arguments of `optimystic bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Node to send requests to (…/p2p/<peerId>); repeat to spread clients over nodes.
    #[arg(long, required = true)]
    pub peer: Vec<Multiaddr>,
    /// Concurrent clients (requests in flight).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// insert: new blocks; update: pend+commit on existing blocks; read: gets;
    /// mixed: 70% reads, 30% updates.
    #[arg(long, value_enum, default_value = "insert")]
    pub workload: Workload,
    /// Blocks the update/read/mixed workloads work on.
    #[arg(long, default_value_t = 1000)]
    pub blocks: u64,
    /// Bytes of payload per block.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write with one pendCommit request per transaction (one agreed record)
    /// instead of a pend then a commit.
    #[arg(long)]
    pub one_round: bool,
    /// The private network's pre-shared key file, when the nodes have one.
    #[arg(long, env = "OPTIMYSTIC_NETWORK_KEY")]
    pub network_key: Option<PathBuf>,
}

/// A bench workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Pend + commit of new blocks.
    Insert,
    /// Pend + commit of updates to existing blocks.
    Update,
    /// Gets of existing blocks.
    Read,
    /// 70% reads, 30% updates.
    Mixed,
}

/// Arguments of `optimystic devnet`.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Folder for the nodes' data (default: a new folder under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Transactions in the sample workload.
    #[arg(long, default_value_t = 200)]
    pub ops: usize,
    /// Stop after the workload instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

/// Arguments of `optimystic repo`.
#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// Data directory of a local store (must not be in use by a running node)
    /// [default: OPTIMYSTIC_DATA_DIR, else ./data]. The variable is read only for a
    /// local store: it never conflicts with --peer.
    #[arg(long, conflicts_with = "peer")]
    pub data_dir: Option<PathBuf>,
    /// Storage backend of the local store [default: OPTIMYSTIC_STORAGE, else
    /// embedded]; ignored with --peer.
    #[arg(long, value_parser = parse_storage)]
    pub storage: Option<StorageKind>,
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
    /// The private network's pre-shared key file, when the node has one.
    #[arg(long, env = "OPTIMYSTIC_NETWORK_KEY")]
    pub network_key: Option<PathBuf>,
    /// The operation; its request JSON is read from stdin (`watch` reads none).
    #[arg(value_enum)]
    pub op: RepoOp,
    /// `watch`: the block to watch.
    #[arg(required_if_eq("op", "watch"))]
    pub block: Option<String>,
    /// `watch`: start after this revision (resume where a watch stopped)
    /// instead of at the current one.
    #[arg(long)]
    pub from: Option<u64>,
    /// `watch`: stop after this many revisions (default: until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
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
    /// {pend: PendRequest, commit: CommitRequest} → {pend, commit?} (one round)
    PendCommit,
    /// BLOCK → one line of JSON per committed revision, `{blockId, rev, trxId,
    /// block?}`, in order, as they commit (with --peer)
    Watch,
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
        Command::Node(args) => node::run(*args),
        Command::Repo(args) => {
            init_logging("text");
            repo::run(args)
        }
        Command::Status(a) => status::status(&a.http),
        Command::Bench(a) => {
            init_logging("text");
            bench::run(a)
        }
        Command::Inspect(a) => match a.block {
            Some(b) => status::block(&a.admin.http, &b),
            None => status::inspect(&a.admin.http),
        },
        Command::Peers(p) => match p.command {
            PeersCommand::List(a) => peers::list(&a.http),
            PeersCommand::Remove(r) => peers::remove(
                &r.admin.http,
                &r.peer,
                std::time::Duration::from_secs(r.wait),
            ),
        },
        Command::Leave(a) => leave::leave(&a.admin.http, std::time::Duration::from_secs(a.wait)),
        Command::Devnet(a) => {
            init_logging("text");
            devnet::run(a)
        }
        Command::Backup { http, out } => backup::backup(&http, &out),
        Command::Restore { file, data_dir } => backup::restore(&file, &data_dir),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "optimystic",
                &mut std::io::stdout(),
            );
            0
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`), as text or JSON
/// lines; text is colored only on a terminal and without `NO_COLOR`
/// (<https://no-color.org>), so log files and journald get plain lines.
pub fn init_logging(format: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,libp2p_kad=error"));
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}
