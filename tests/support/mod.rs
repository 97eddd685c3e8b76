//! Helpers for the black-box tests: node processes and in-process nodes.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod faults;
pub mod history;
pub mod logged;

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

    /// The HTTP admin address it printed (started with `--http`), as `host:port`:
    /// from the lines read before `listening on`, else the next ones (the two
    /// lines come in either order; deadline 10 s).
    pub fn http_addr(&self) -> Option<String> {
        let http = |l: &str| {
            l.strip_prefix("http on http://")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        };
        self.seen.iter().find_map(|l| http(l)).or_else(|| {
            std::iter::from_fn(|| self.lines.recv_timeout(Duration::from_secs(10)).ok())
                .find_map(|l| http(&l))
        })
    }

    /// The PeerId part of the address.
    pub fn peer_id(&self) -> String {
        self.addr.rsplit("/p2p/").next().unwrap().to_string()
    }

    /// SIGTERM, then wait (deadline 30 s); returns the exit code.
    pub fn stop(self) -> Option<i32> {
        self.stop_within(Duration::from_secs(30))
    }

    /// SIGTERM, then wait up to `limit`; returns the exit code.
    pub fn stop_within(mut self, limit: Duration) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + limit;
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

static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by every test of a binary that runs node processes, so they run one at a
/// time: three debug nodes already load both cores of the machines this suite
/// runs on, and a test's bounds are derived from its configured timeouts, which
/// assume the cores are its own. (Cargo runs test binaries one after another.)
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
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
    BlockId, BlockOperation, PendPolicy, PendRequest, Region, RepoMessage, RepoOperation,
    Transforms, TrxId,
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

/// The request timeout of the test clients [`repo_client`] makes.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A repo client of the node at `addr` (…/p2p/<peerId>).
pub fn repo_client(net: &NetClient, addr: &str) -> RepoClient {
    let addr: Multiaddr = addr.parse().unwrap();
    RepoClient::new(
        net.clone(),
        peer_of(&addr).unwrap(),
        vec![addr],
        CLIENT_TIMEOUT,
    )
}

/// An outside peer with its own identity that proposes records as their
/// coordinator, the way docs/CONSENSUS.md says a coordinator builds them: its own
/// entry in the peer set, named in `message.coordinator`, sending the proposal
/// itself. It serves nothing, so it vanishes the moment a test stops talking.
pub struct Proposer {
    pub key: libp2p::identity::Keypair,
    pub net: NetClient,
    /// Configuration epochs its records name, by region (learned with
    /// [`Proposer::learn`]).
    epochs: std::sync::Mutex<std::collections::BTreeMap<Region, u64>>,
}

impl Proposer {
    pub fn new() -> Self {
        Self::with_key(libp2p::identity::Keypair::generate_ed25519())
    }

    /// A proposer speaking with identity `key` (a member's, taken over).
    pub fn with_key(key: libp2p::identity::Keypair) -> Self {
        let net = NetClient::start_client_as(NetConfig::default(), key.clone()).unwrap();
        Self {
            key,
            net,
            epochs: Default::default(),
        }
    }

    /// Asks the node at (`peer`, `addr`) for every region's configuration, as
    /// docs/PROTOCOL.md's `configs` does, and names those epochs from now on.
    pub async fn learn(&self, peer: &str, addr: &str) {
        let all: Vec<Region> = Region::all().collect();
        for chunk in all.chunks(512) {
            let reply = optimystic_actors::net::cluster_configs(
                &self.net,
                peer.parse().unwrap(),
                vec![addr.parse().unwrap()],
                chunk.to_vec(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            let mut e = self.epochs.lock().unwrap();
            for v in reply.view {
                if let Some(c) = v.config {
                    e.insert(v.region, c.epoch);
                }
            }
        }
    }

    /// The epochs a record of `operations` names.
    fn epochs_for(&self, operations: &[RepoOperation]) -> std::collections::BTreeMap<Region, u64> {
        let e = self.epochs.lock().unwrap();
        optimystic_actors::cluster::message_blocks(operations)
            .iter()
            .map(Region::of)
            .filter_map(|r| Some((r, *e.get(&r)?)))
            .collect()
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
        let epochs = self.epochs_for(&operations);
        self.record_naming(members, operations, ttl_ms, epochs)
    }

    /// [`Self::record`] naming `epochs` as the configurations it plans with.
    pub fn record_naming(
        &self,
        members: &[(String, String)],
        operations: Vec<RepoOperation>,
        ttl_ms: u64,
        epochs: std::collections::BTreeMap<Region, u64>,
    ) -> ClusterRecord {
        let mut r = record_of(members, operations, ttl_ms, Some(self.id()), epochs);
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
    epochs: std::collections::BTreeMap<Region, u64>,
) -> ClusterRecord {
    use base64::Engine as _;
    let message = RepoMessage {
        operations,
        expiration: Some(optimystic_actors::model::now_ms() + ttl_ms),
        coordinator,
        epochs,
        change: None,
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

/// Whether every region's configuration, as held by its members among `nodes`,
/// is its target: the `k` of `nodes` closest to it (docs/CONSENSUS.md,
/// "Configurations"), the same configuration on each of those members — and no
/// node outside the target still counts itself a member (one that missed its
/// removal is sent it: "A member that missed a change").
pub fn settled(nodes: &[&NodeHandle], k: usize) -> bool {
    unsettled_region(nodes, k).is_none()
}

/// The first region that has not settled, as [`settled`] judges.
fn unsettled_region(nodes: &[&NodeHandle], k: usize) -> Option<Region> {
    use optimystic_actors::membership::target;
    let ids: Vec<libp2p::PeerId> = nodes.iter().map(|n| n.peer_id()).collect();
    Region::all().find(|r| {
        let want: std::collections::BTreeSet<String> = target(*r, &ids, k)
            .iter()
            .map(ToString::to_string)
            .collect();
        let (inside, outside): (Vec<&&NodeHandle>, Vec<&&NodeHandle>) = nodes
            .iter()
            .partition(|n| want.contains(&n.peer_id().to_string()));
        let held: Vec<_> = inside.iter().map(|n| n.configs().config(*r)).collect();
        let at_target = held
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| c.members == want) && *c == held[0]);
        !at_target || outside.iter().any(|n| n.configs().table().is_member(*r))
    })
}

/// Waits (at most a minute) until [`settled`] holds.
pub async fn settle(nodes: &[&NodeHandle], k: usize) {
    settle_within(nodes, k, Duration::from_secs(60)).await;
}

/// Waits (at most `limit`) until [`settled`] holds; past it, fails naming what
/// each node holds of the first region that has not settled.
pub async fn settle_within(nodes: &[&NodeHandle], k: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !settled(nodes, k) {
        if Instant::now() >= deadline {
            let stuck = unsettled_region(nodes, k);
            let held: Vec<String> = stuck
                .map(|r| {
                    nodes
                        .iter()
                        .map(|n| format!("{}: {:?}", n.peer_id(), n.configs().config(r)))
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "configurations not settled within {limit:?}: region {stuck:?} held as {held:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node of `nodes` is connected to all the others (30 s), then
/// until their configurations settle on clusters of `k`.
pub async fn connect_and_settle(nodes: &[(NodeHandle, Multiaddr)], k: usize) {
    for (n, _) in nodes {
        let net = n.net().clone();
        eventually(Duration::from_secs(30), || {
            let net = net.clone();
            async move { net.status().await.unwrap().members.len() == nodes.len() - 1 }
        })
        .await;
    }
    let handles: Vec<&NodeHandle> = nodes.iter().map(|(n, _)| n).collect();
    settle(&handles, k).await;
}

/// In-process nodes A, B, C (B and C bootstrapping from A), connected, with
/// every region configured as all three (clusters of 3).
pub async fn three_nodes(dirs: &[tempfile::TempDir; 3]) -> Vec<(NodeHandle, Multiaddr)> {
    let a = start_node(dirs[0].path(), vec![]).await;
    let b = start_node(dirs[1].path(), vec![a.1.clone()]).await;
    let c = start_node(dirs[2].path(), vec![a.1.clone()]).await;
    let nodes = vec![a, b, c];
    connect_and_settle(&nodes, 3).await;
    nodes
}

/// Four in-process nodes configured as one cluster of four (every region), the
/// fourth then stopped and its identity taken over by the returned [`Proposer`]:
/// a member that coordinates exactly as a test scripts it. `adjust` sets node
/// `i`'s configuration.
pub async fn three_and_a_proposer(
    dirs: &[tempfile::TempDir; 4],
    adjust: impl Fn(usize, &mut NodeConfig),
) -> (Vec<(NodeHandle, Multiaddr)>, Proposer) {
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let boot = nodes
            .first()
            .map(|(_, a): &(NodeHandle, Multiaddr)| vec![a.clone()]);
        nodes.push(
            start_node_with(d.path(), boot.unwrap_or_default(), |c| {
                c.cluster_size = 4;
                adjust(i, c);
            })
            .await,
        );
    }
    for (n, _) in &nodes {
        let net = n.net().clone();
        eventually(Duration::from_secs(30), || {
            let net = net.clone();
            async move { net.status().await.unwrap().members.len() == 3 }
        })
        .await;
    }
    let handles: Vec<&NodeHandle> = nodes.iter().map(|(n, _)| n).collect();
    settle(&handles, 4).await;
    let (d, _) = nodes.pop().unwrap();
    d.shutdown().await;
    let key = optimystic_actors::net::load_or_create_identity(dirs[3].path()).unwrap();
    let p = Proposer::with_key(key);
    p.learn(&nodes[0].0.peer_id().to_string(), &nodes[0].1.to_string())
        .await;
    (nodes, p)
}

pub fn four_dirs() -> [tempfile::TempDir; 4] {
    [(); 4].map(|()| tempfile::tempdir().unwrap())
}

/// Whether every region's configuration, as each of `nodes` (PeerId, address)
/// that is in its target reports it over the cluster protocol's `configs`, is
/// that target: the `k` of `nodes` closest to it.
pub async fn settled_over_net(net: &NetClient, nodes: &[(String, String)], k: usize) -> bool {
    use optimystic_actors::membership::target;
    let ids: Vec<libp2p::PeerId> = nodes.iter().map(|(id, _)| id.parse().unwrap()).collect();
    let all: Vec<Region> = Region::all().collect();
    let mut held: std::collections::BTreeMap<
        Region,
        Vec<Option<optimystic_actors::model::Config>>,
    > = Default::default();
    for (id, addr) in nodes {
        for chunk in all.chunks(1024) {
            let want: Vec<Region> = chunk
                .iter()
                .copied()
                .filter(|r| target(*r, &ids, k).iter().any(|p| p.to_string() == *id))
                .collect();
            let Ok(reply) = optimystic_actors::net::cluster_configs(
                net,
                id.parse().unwrap(),
                vec![addr.parse().unwrap()],
                want,
                Duration::from_secs(10),
            )
            .await
            else {
                return false;
            };
            for v in reply.view {
                held.entry(v.region).or_default().push(v.config);
            }
        }
    }
    all.iter().all(|r| {
        let want: std::collections::BTreeSet<String> = target(*r, &ids, k)
            .iter()
            .map(ToString::to_string)
            .collect();
        held.get(r).is_some_and(|h| {
            h.len() == want.len()
                && h.iter()
                    .all(|c| c.as_ref().is_some_and(|c| c.members == want) && *c == h[0])
        })
    })
}

/// Waits (at most a minute) until [`settled_over_net`] holds.
pub async fn settle_over_net(net: &NetClient, nodes: &[(String, String)], k: usize) {
    eventually(Duration::from_secs(60), || settled_over_net(net, nodes, k)).await;
}

/// Four node processes (flags `extra`) configured as one cluster of four, the
/// fourth then killed and its identity taken over by the returned [`Proposer`].
pub async fn processes_and_a_proposer(
    dirs: &[tempfile::TempDir; 4],
    extra: &[&str],
) -> (Vec<NodeProcess>, Proposer) {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for d in dirs {
        let mut args = vec!["--cluster-size", "4"];
        args.extend_from_slice(extra);
        let boot = nodes.first().map(|n| n.addr.clone());
        if let Some(b) = &boot {
            args.extend(["--bootstrap", b.as_str()]);
        }
        nodes.push(NodeProcess::start(d.path(), &args));
    }
    let net = client_net();
    let ids: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.peer_id(), n.addr.clone()))
        .collect();
    settle_over_net(&net, &ids, 4).await;
    nodes.pop().unwrap().kill();
    let key = optimystic_actors::net::load_or_create_identity(dirs[3].path()).unwrap();
    let p = Proposer::with_key(key);
    p.learn(&nodes[0].peer_id(), &nodes[0].addr).await;
    (nodes, p)
}

/// Waits until the configurations of the node processes `nodes` have settled
/// on clusters of `k` (see [`settled_over_net`]).
pub async fn settle_processes(nodes: &[&NodeProcess], k: usize) {
    let net = client_net();
    let ids: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.peer_id(), n.addr.clone()))
        .collect();
    settle_over_net(&net, &ids, k).await;
}
