//! Helpers for the black-box tests: node processes and in-process nodes.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod faults;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use optimystic::node::{NodeConfig, NodeHandle};
use optimystic_actors::net::NetEvent;
use optimystic_actors::storage::StorageKind;

pub const BIN: &str = env!("CARGO_BIN_EXE_optimystic");

/// A node process and the address it printed.
pub struct NodeProcess {
    pub child: Child,
    pub addr: String,
    pub lines: mpsc::Receiver<String>,
    /// Lines read before the first `listening on`, and that line.
    pub seen: Vec<String>,
}

impl NodeProcess {
    /// Starts `optimystic node` on a free loopback port and waits for its first
    /// `listening on` line (deadline 30 s).
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// [`NodeProcess::start`] with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            // OPTIMYSTIC_TEST_STDERR=1 shows the nodes' logs (with RUST_LOG).
            .stderr(if std::env::var_os("OPTIMYSTIC_TEST_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("node printed no listening line");
            seen.push(line.clone());
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.to_string();
            }
        };
        Self {
            child,
            addr,
            lines,
            seen,
        }
    }

    /// Waits (deadline 30 s) for a stdout line starting with `prefix`; returns it.
    /// Polls without blocking the thread, so the test's own tasks keep running.
    pub async fn wait_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.lines.try_recv() {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Disconnected) => panic!("node exited before {prefix:?}"),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(
                Instant::now() < deadline,
                "no line starting with {prefix:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The PeerId part of the address.
    pub fn peer_id(&self) -> String {
        self.addr.rsplit("/p2p/").next().unwrap().to_string()
    }

    /// SIGTERM, then wait (deadline 30 s); returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `optimystic repo --peer ADDR OP` with `input` on stdin.
pub fn remote(addr: &str, op: &str, input: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(["repo", "--peer", addr, "--timeout", "10"])
        .args(extra)
        .arg(op)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Starts an in-process node on a free loopback port; returns it with its address.
pub async fn start_node(dir: &Path, bootstrap: Vec<Multiaddr>) -> (NodeHandle, Multiaddr) {
    start_node_with(dir, bootstrap, |_| {}).await
}

/// [`start_node`] with the configuration adjusted by `adjust`.
pub async fn start_node_with(
    dir: &Path,
    bootstrap: Vec<Multiaddr>,
    adjust: impl FnOnce(&mut NodeConfig),
) -> (NodeHandle, Multiaddr) {
    let mut cfg = NodeConfig {
        data_dir: dir.to_path_buf(),
        storage: StorageKind::Embedded,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        ..NodeConfig::default()
    };
    adjust(&mut cfg);
    let mut node = NodeHandle::start(cfg).await.unwrap();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(NetEvent::Listening(a)) = node.next_event().await {
                return a;
            }
        }
    })
    .await
    .expect("node did not listen");
    (node, addr)
}

/// Waits until `check` holds, polling every 10 ms, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

use optimystic_actors::cluster::{message_hash, ClusterPeer, ClusterRecord};
use optimystic_actors::model::{
    BlockId, BlockOperation, PendPolicy, PendRequest, RepoMessage, RepoOperation, Transforms, TrxId,
};
use optimystic_actors::net::{peer_of, NetClient, NetConfig, RepoClient};

pub fn bid(s: &str) -> BlockId {
    BlockId::new(s).unwrap()
}

/// Inserts block `id` with an empty `items` array.
pub fn insert(id: &str) -> Transforms {
    let block = serde_json::from_value(
        serde_json::json!({"header": {"id": id, "type": "T", "collectionId": "c"}, "items": []}),
    )
    .unwrap();
    Transforms {
        inserts: Some([(bid(id), block)].into()),
        ..Transforms::default()
    }
}

/// Prepends `v` to block `id`'s `items`.
pub fn append(id: &str, v: i64) -> Transforms {
    let op = BlockOperation {
        entity: "items".into(),
        index: 0,
        delete_count: 0,
        inserted: serde_json::json!([v]),
    };
    Transforms {
        updates: Some([(bid(id), vec![op])].into()),
        ..Transforms::default()
    }
}

/// A client-only swarm on the current arbiter.
pub fn client_net() -> NetClient {
    NetClient::start_client(NetConfig::default()).unwrap()
}

/// A repo client of the node at `addr` (…/p2p/<peerId>).
pub fn repo_client(net: &NetClient, addr: &str) -> RepoClient {
    let addr: Multiaddr = addr.parse().unwrap();
    RepoClient::new(
        net.clone(),
        peer_of(&addr).unwrap(),
        vec![addr],
        Duration::from_secs(10),
    )
}

/// An outside peer with its own identity that proposes records as their
/// coordinator, the way docs/CONSENSUS.md says a coordinator builds them: its own
/// entry in the peer set, named in `message.coordinator`, sending the proposal
/// itself. It serves nothing, so it vanishes the moment a test stops talking.
pub struct Proposer {
    pub key: libp2p::identity::Keypair,
    pub net: NetClient,
}

impl Proposer {
    pub fn new() -> Self {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let net = NetClient::start_client_as(NetConfig::default(), key.clone()).unwrap();
        Self { key, net }
    }

    pub fn id(&self) -> String {
        self.key.public().to_peer_id().to_string()
    }

    /// A phase-1 record for a pend inserting `block`, among `members` (PeerId,
    /// address) and this proposer, expiring in `ttl_ms`.
    pub fn pend_record(
        &self,
        members: &[(String, String)],
        block: &str,
        ttl_ms: u64,
    ) -> ClusterRecord {
        let pend = RepoOperation::Pend(PendRequest {
            trx_id: TrxId::new(format!("orphan-{block}")).unwrap(),
            rev: Some(1),
            transforms: insert(block),
            policy: PendPolicy::Fail,
        });
        self.record(members, vec![pend], ttl_ms)
    }

    /// A phase-1 record of `operations` among `members` and this proposer.
    pub fn record(
        &self,
        members: &[(String, String)],
        operations: Vec<RepoOperation>,
        ttl_ms: u64,
    ) -> ClusterRecord {
        let mut r = record_of(members, operations, ttl_ms, Some(self.id()));
        let (id, entry) = optimystic_actors::cluster::peer_entry(&self.key, vec![]);
        r.peers.insert(id, entry);
        r
    }

    /// Adds this proposer's own approving promise to `r`: it holds none of the
    /// message's blocks.
    pub fn promise(&self, r: &mut ClusterRecord) {
        let state = optimystic_actors::cluster::message_blocks(&r.message.operations)
            .into_iter()
            .map(|b| (b, optimystic_actors::cluster::BlockState::default()))
            .collect();
        let vote = optimystic_actors::cluster::sign_promise(
            &self.key,
            r,
            optimystic_actors::cluster::VoteType::Approve,
            None,
            Some(state),
        );
        r.promises.insert(self.id(), vote);
    }

    /// Adds this proposer's approving promise to `r`, reporting the same state as
    /// member `like` did in its promise (the proposer then holds what it holds).
    pub fn promise_as(&self, r: &mut ClusterRecord, like: &str) {
        let state = r.promises[like].state.clone();
        let vote = optimystic_actors::cluster::sign_promise(
            &self.key,
            r,
            optimystic_actors::cluster::VoteType::Approve,
            None,
            state,
        );
        r.promises.insert(self.id(), vote);
    }

    /// Delivers `r` to the node at (`peer`, `addr`) on the cluster protocol.
    pub async fn send(
        &self,
        peer: &str,
        addr: &str,
        r: ClusterRecord,
    ) -> Result<ClusterRecord, optimystic_actors::net::NetError> {
        optimystic_actors::net::cluster_update(
            &self.net,
            peer.parse().unwrap(),
            vec![addr.parse().unwrap()],
            r,
            Duration::from_secs(10),
        )
        .await
    }
}

/// A phase-1 record of `operations` for `members` (peer id, address), expiring in
/// `ttl_ms`, naming `coordinator`.
pub fn record_of(
    members: &[(String, String)],
    operations: Vec<RepoOperation>,
    ttl_ms: u64,
    coordinator: Option<String>,
) -> ClusterRecord {
    use base64::Engine as _;
    let message = RepoMessage {
        operations,
        expiration: Some(optimystic_actors::model::now_ms() + ttl_ms),
        coordinator,
    };
    let peers = members
        .iter()
        .map(|(id, addr)| {
            let peer: libp2p::PeerId = id.parse().unwrap();
            let key =
                libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).unwrap();
            let public_key =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.encode_protobuf());
            (
                id.clone(),
                ClusterPeer {
                    multiaddrs: vec![addr.clone()],
                    public_key,
                },
            )
        })
        .collect();
    ClusterRecord {
        message_hash: message_hash(&message),
        peers,
        message: message.into(),
        promises: Default::default(),
        commits: Default::default(),
    }
}
