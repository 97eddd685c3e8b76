//! The fault-injection harness: N node processes on loopback, faults injected
//! into them (SIGKILL, SIGSTOP/SIGCONT, restarts, dropped or delayed messages
//! between chosen peers, a full disk), a workload that records what was
//! acknowledged, and a checker run after each scenario.
//!
//! Message, disk and coordinator faults go through each node's rule file
//! (`OPTIMYSTIC_TEST_FAULTS`, read by debug builds only; see
//! `optimystic_actors::faults`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use optimystic_actors::model::*;
use optimystic_actors::net::{cluster_configs, fetch_archive, NetClient, RepoClient};
use optimystic_actors::storage::BlockArchive;
use serde_json::Value;

use super::history::{insert_trx, judge, trx_of, Expected};
use super::{append, bid, client_net, insert, repo_client, NodeProcess};

/// The recovery grace of docs/CONSENSUS.md, "Recovery": a member that promised
/// and holds no decision asks the others this long after the record's deadline.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(2);

/// How long a recovering member waits for each asked member's answer
/// (docs/CONSENSUS.md, "Recovery"; the members are asked at once).
pub const QUERY_WAIT: Duration = Duration::from_secs(5);

/// How long after a record whose deadline is `expiry` from now was proposed,
/// with nobody left to decide it, its block is free again and a write proves
/// it (docs/CONSENSUS.md, "Recovery"): the deadline, [`RECOVERY_GRACE`], one
/// query round ([`QUERY_WAIT`] at most), then the `requests` of the write in
/// flight when the block frees, each up to the test client's timeout
/// ([`super::CLIENT_TIMEOUT`]).
pub fn released_within(expiry: Duration, requests: u32) -> Duration {
    expiry + RECOVERY_GRACE + QUERY_WAIT + super::CLIENT_TIMEOUT * requests
}

/// [`released_within`] for nodes run with request timeout `timeout`: their
/// records expire one timeout after they start, and the write that proves the
/// release is the one in flight when it frees plus the next one (one timeout
/// each, the coordinator's own bound).
pub fn release_bound(timeout: Duration) -> Duration {
    timeout + RECOVERY_GRACE + QUERY_WAIT + timeout * 2
}

/// Message and disk faults of one node.
#[derive(Debug, Default, Clone)]
struct Rules {
    drop: BTreeSet<usize>,
    cut: BTreeSet<usize>,
    delay: BTreeMap<usize, u64>,
    drop_decisions: BTreeSet<usize>,
    pause_after_commit_point: Option<u64>,
    disk_full: bool,
    /// `hang-after-promises` or `hang-after-one-commit`.
    hang: Option<&'static str>,
    /// Rules the node reads once when it starts (`clock-offset`, `lazy-sync`).
    at_start: Vec<String>,
}

/// A cluster of node processes under test.
pub struct TestCluster {
    /// Each node's data directory.
    dirs: Vec<PathBuf>,
    /// The temporary directories the data directories live in.
    _tmp: Vec<tempfile::TempDir>,
    nodes: Vec<Option<NodeProcess>>,
    peer_ids: Vec<String>,
    addrs: Vec<String>,
    rules: Vec<Rules>,
    extra: Vec<String>,
    env: Vec<Vec<(String, String)>>,
    /// Nodes retired by the operator (`peers remove`) and stopped for good.
    retired: Vec<bool>,
    pub net: NetClient,
}

impl TestCluster {
    /// Starts `n` nodes (each later one bootstrapping from the first) with `extra`
    /// flags, and waits until a write through node 0 is readable on every node.
    pub async fn start(n: usize, extra: &[&str]) -> Self {
        Self::start_with_env(n, extra, &[]).await
    }

    /// [`TestCluster::start`], with environment variables for some nodes
    /// (`(node, name, value)`).
    pub async fn start_with_env(n: usize, extra: &[&str], env: &[(usize, &str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let c = Self::start_in(tmp.path(), n, extra, env, &[]).await;
        Self {
            _tmp: vec![tmp],
            ..c
        }
    }

    /// [`TestCluster::start`], with fault rules some nodes read once when they
    /// start (`(node, rule)`, e.g. `clock-offset 10000`; see
    /// `optimystic_actors::faults`).
    pub async fn start_with_rules(n: usize, extra: &[&str], rules: &[(usize, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let c = Self::start_in(tmp.path(), n, extra, &[], rules).await;
        Self {
            _tmp: vec![tmp],
            ..c
        }
    }

    /// [`TestCluster::start_with_env`] and [`TestCluster::start_with_rules`] with
    /// node `i`'s data in `root/n{i}`.
    pub async fn start_in(
        root: &std::path::Path,
        n: usize,
        extra: &[&str],
        env: &[(usize, &str, &str)],
        at_start: &[(usize, &str)],
    ) -> Self {
        let mut c = Self {
            dirs: (0..n).map(|i| root.join(format!("n{i}"))).collect(),
            _tmp: Vec::new(),
            nodes: (0..n).map(|_| None).collect(),
            peer_ids: vec![String::new(); n],
            addrs: vec![String::new(); n],
            rules: vec![Rules::default(); n],
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: vec![Vec::new(); n],
            retired: vec![false; n],
            net: client_net(),
        };
        for (i, k, v) in env {
            c.env[*i].push((k.to_string(), v.to_string()));
        }
        for (i, rule) in at_start {
            c.rules[*i].at_start.push(rule.to_string());
        }
        for i in 0..n {
            std::fs::create_dir_all(&c.dirs[i]).unwrap();
            c.write_rules(i);
            c.launch(i);
        }
        c.settle().await;
        let probe = "probe-cluster";
        let c0 = c.client(0);
        super::eventually(Duration::from_secs(60), || async {
            write(&c0, "probe-insert", 1, insert(probe)).await.is_ok()
                || latest_of(&c0, probe).await.is_some()
        })
        .await;
        for i in 0..n {
            let ci = c.client(i);
            super::eventually(Duration::from_secs(60), || async {
                latest_of(&ci, probe).await.is_some()
            })
            .await;
        }
        c
    }

    fn fault_file(&self, i: usize) -> PathBuf {
        self.dirs[i].join("faults")
    }

    fn write_rules(&self, i: usize) {
        let r = &self.rules[i];
        let mut text = String::new();
        for j in &r.drop {
            text.push_str(&format!("drop {}\n", self.peer_ids[*j]));
        }
        for j in &r.cut {
            text.push_str(&format!("cut {}\n", self.peer_ids[*j]));
        }
        for (j, ms) in &r.delay {
            text.push_str(&format!("delay {} {ms}\n", self.peer_ids[*j]));
        }
        for j in &r.drop_decisions {
            text.push_str(&format!("drop-decisions {}\n", self.peer_ids[*j]));
        }
        if let Some(ms) = r.pause_after_commit_point {
            text.push_str(&format!("pause-after-commit-point {ms}\n"));
        }
        if r.disk_full {
            text.push_str("disk-full\n");
        }
        for rule in &r.at_start {
            text.push_str(&format!("{rule}\n"));
        }
        if let Some(hang) = r.hang {
            text.push_str(&format!("{hang}\n"));
        }
        // Written whole, then renamed: a node never reads half a rule file. Synced
        // (file and directory), so the rules survive the power-cut file system's
        // cut (tests/power_loss.rs) like any durable file.
        let tmp = self.fault_file(i).with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, self.fault_file(i)).unwrap();
        let _ = std::fs::File::open(&self.dirs[i]).and_then(|d| d.sync_all());
    }

    /// Starts node `i`, bootstrapping from every running node (a restarted node
    /// listens on a new port here; in production its address stays the same and
    /// its peers redial it).
    fn launch(&mut self, i: usize) {
        let boot: Vec<String> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .filter_map(|j| self.nodes[j].as_ref().map(|n| n.addr.clone()))
            .collect();
        let mut args: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        for b in &boot {
            args.extend(["--bootstrap", b.as_str()]);
        }
        let file = self.fault_file(i);
        let mut env = vec![("OPTIMYSTIC_TEST_FAULTS", file.to_str().unwrap())];
        env.extend(self.env[i].iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let node = NodeProcess::start_with_env(&self.dirs[i], &args, &env);
        self.peer_ids[i] = node.peer_id();
        self.addrs[i] = node.addr.clone();
        self.nodes[i] = Some(node);
    }

    /// Nodes in the cluster, retired ones included (their indices stay).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The nodes not retired.
    pub fn members(&self) -> Vec<usize> {
        (0..self.len()).filter(|i| !self.retired[*i]).collect()
    }

    /// Starts one more node, bootstrapping from every running one; returns its
    /// index.
    pub fn join(&mut self) -> usize {
        let i = self.len();
        let tmp = tempfile::tempdir().unwrap();
        self.dirs.push(tmp.path().to_path_buf());
        self._tmp.push(tmp);
        self.nodes.push(None);
        self.peer_ids.push(String::new());
        self.addrs.push(String::new());
        self.rules.push(Rules::default());
        self.env.push(Vec::new());
        self.retired.push(false);
        self.write_rules(i);
        self.launch(i);
        i
    }

    /// Retires node `i` as an operator does — `optimystic peers remove` through
    /// node `via`'s HTTP admin (the cluster runs with `--http`), waiting until
    /// `via`'s configurations dropped it — then stops it for good.
    pub fn retire(&mut self, i: usize, via: usize) {
        let http = self
            .node(via)
            .http_addr()
            .expect("the cluster runs with --http");
        let out = Command::new(super::BIN)
            .args([
                "peers",
                "remove",
                &self.peer_ids[i],
                "--http",
                &http,
                "--wait",
                "120",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "peers remove: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.kill(i);
        self.retired[i] = true;
    }

    /// Takes node `i`'s process out of the cluster for good (to stop it, for
    /// instance with `--leave-on-shutdown`): it no longer counts as a member.
    pub fn take_for_good(&mut self, i: usize) -> NodeProcess {
        self.retired[i] = true;
        self.nodes[i].take().unwrap()
    }

    /// Node `i`'s process (it must be running).
    pub fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().unwrap()
    }

    /// Sets variable `k` of node `i`'s environment for its next start.
    pub fn set_env(&mut self, i: usize, k: &str, v: &str) {
        self.env[i].retain(|(name, _)| name != k);
        self.env[i].push((k.to_string(), v.to_string()));
    }

    /// Whether node `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// A client of node `i` (10 s timeout).
    pub fn client(&self, i: usize) -> RepoClient {
        repo_client(&self.net, &self.addrs[i])
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.kill();
        }
    }

    /// Members wanted per region (`--cluster-size`, else 3).
    pub fn cluster_size(&self) -> usize {
        self.extra
            .iter()
            .position(|f| f == "--cluster-size")
            .and_then(|i| self.extra.get(i + 1)?.parse().ok())
            .unwrap_or(3)
    }

    /// Waits until every region's configuration is its target among the
    /// running nodes (docs/CONSENSUS.md, "Configurations").
    pub async fn settle(&self) {
        let running: Vec<(String, String)> = (0..self.len())
            .filter(|i| self.nodes[*i].is_some())
            .map(|i| (self.peer_ids[i].clone(), self.addrs[i].clone()))
            .collect();
        super::settle_over_net(&self.net, &running, self.cluster_size()).await;
    }

    /// Node `i`'s data directory.
    pub fn dir(&self, i: usize) -> PathBuf {
        self.dirs[i].clone()
    }

    /// Node `i`, stopped, starts next time on the data in `dir` (for instance
    /// what survived a power cut).
    pub fn move_data(&mut self, i: usize, dir: PathBuf) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        self.dirs[i] = dir;
    }

    /// Starts node `i` again on its data directory (same PeerId, new port).
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        self.launch(i);
    }

    /// SIGSTOP node `i`: a hung peer (connections open, nothing answered).
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONT node `i`.
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].as_ref().unwrap().child.id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// Cuts node `i` off from every other node (both directions).
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.len() {
            if j != i {
                self.rules[i].drop.insert(j);
                self.rules[j].drop.insert(i);
                self.write_rules(j);
            }
        }
        self.write_rules(i);
    }

    /// A network partition between the nodes `a` and the nodes `b`: their
    /// connections close and new ones are refused, both directions. Returns once
    /// every node involved has applied it.
    pub async fn cut(&mut self, a: &[usize], b: &[usize]) {
        for (this, other) in [(a, b), (b, a)] {
            for i in this {
                self.rules[*i].cut.extend(other.iter().copied());
                self.write_rules(*i);
            }
        }
        for i in a.iter().chain(b) {
            let line = format!("fault: cut {} peers", self.rules[*i].cut.len());
            self.node(*i).wait_line(&line).await;
        }
    }

    /// Ends every partition [`Self::cut`] made, keeping the other faults.
    /// Returns once every node has applied it.
    pub async fn uncut(&mut self) {
        let cut: Vec<usize> = (0..self.len())
            .filter(|i| !self.rules[*i].cut.is_empty())
            .collect();
        for i in &cut {
            self.rules[*i].cut.clear();
            self.write_rules(*i);
        }
        for i in cut {
            self.node(i).wait_line("fault: cut 0 peers").await;
        }
    }

    /// Fails every request node `from` sends to node `to` (one direction).
    pub fn drop(&mut self, from: usize, to: usize) {
        self.rules[from].drop.insert(to);
        self.write_rules(from);
    }

    /// Delays every message node `from` sends to node `to` by `ms`.
    pub fn delay(&mut self, from: usize, to: usize, ms: u64) {
        self.rules[from].delay.insert(to, ms);
        self.write_rules(from);
    }

    /// Node `from`, as coordinator, stops delivering decided records to node `to`
    /// (its proposals still go out).
    pub fn drop_decisions(&mut self, from: usize, to: usize) {
        self.rules[from].drop_decisions.insert(to);
        self.write_rules(from);
    }

    /// Node `i`, coordinating a write across clusters, announces its commit point
    /// and waits `ms` before committing the other parts.
    pub fn pause_after_commit_point(&mut self, i: usize, ms: u64) {
        self.rules[i].pause_after_commit_point = Some(ms);
        self.write_rules(i);
    }

    /// Makes node `i`, as a coordinator, stop between the phases of any record on
    /// a `fault-*` block: `hang` is `hang-after-promises` or
    /// `hang-after-one-commit` (`None` lifts it).
    pub fn hang(&mut self, i: usize, hang: Option<&'static str>) {
        self.rules[i].hang = hang;
        self.write_rules(i);
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> &str {
        &self.addrs[i]
    }

    /// Node `i`'s PeerId.
    pub fn peer_id(&self, i: usize) -> &str {
        &self.peer_ids[i]
    }

    /// Makes every storage write of node `i` fail (or work again).
    pub fn disk_full(&mut self, i: usize, full: bool) {
        self.rules[i].disk_full = full;
        self.write_rules(i);
    }

    /// The configuration of `block`'s region as each running node reports it
    /// (`None`: it holds none).
    async fn configs_of(&self, block: &str) -> Result<BTreeMap<usize, Option<Config>>, String> {
        let region = Region::of(&bid(block));
        let mut seen = BTreeMap::new();
        for i in (0..self.len()).filter(|i| self.is_up(*i)) {
            let reply = cluster_configs(
                &self.net,
                self.peer_ids[i].parse().unwrap(),
                vec![self.addrs[i].parse().unwrap()],
                vec![region],
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| format!("node {i} did not answer configs: {e}"))?;
            seen.insert(i, reply.view.into_iter().next().and_then(|v| v.config));
        }
        Ok(seen)
    }

    /// The newest configuration of `block`'s region any running node reports.
    pub async fn newest_config(&self, block: &str) -> Result<Config, String> {
        newest(&self.configs_of(block).await?, block)
    }

    /// The members of `block`'s configuration (node indices): the newest one any
    /// running node reports, when each of its members runs and reports it too
    /// (the others know an older one or none).
    pub async fn members_of(&self, block: &str) -> Result<Vec<usize>, String> {
        let seen = self.configs_of(block).await?;
        let config = newest(&seen, block)?;
        config
            .members
            .iter()
            .map(|m| {
                let i = seen
                    .keys()
                    .copied()
                    .find(|i| self.peer_ids[*i] == *m)
                    .ok_or_else(|| format!("member {m} of {config:?} is not running"))?;
                match &seen[&i] {
                    Some(c) if *c == config => Ok(i),
                    other => Err(format!("member {i} holds {other:?}, not {config:?}")),
                }
            })
            .collect()
    }

    /// Waits, at most `limit`, until node `i`'s own copy of each of `blocks`
    /// (its storage, through the block protocol's archive: nothing repaired by
    /// asking) ends where every other running member's does — as an operator
    /// waits for a restarted node to catch up before stopping another.
    pub async fn wait_in_sync(&self, i: usize, blocks: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        for b in blocks {
            loop {
                let holders = self.members_of(b).await.unwrap_or_default();
                let copies = own_copies(self, &holders, b).await;
                let ends: Vec<_> = copies
                    .iter()
                    .map(|(_, a)| {
                        a.as_ref()
                            .and_then(|a| a.revisions.last())
                            .map(|r| r.trx_rev.clone())
                    })
                    .collect();
                if holders.contains(&i) && ends.windows(2).all(|w| w[0] == w[1]) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} has not caught up on {b} within {limit:?}: members {holders:?} end at {ends:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The transactions pending on node `i`'s own copy of `block` (its storage,
    /// through the block protocol's archive: nothing caught up by asking).
    pub async fn pending_on(&self, i: usize, block: &str) -> Vec<TrxId> {
        own_copies(self, &[i], block)
            .await
            .into_iter()
            .flat_map(|(_, a)| a.map(|a| a.pending).unwrap_or_default())
            .map(|(t, _)| t)
            .collect()
    }

    /// Pends an append of `value` to `block` at `rev` as `trx`, policy `f`,
    /// through node `via`; fails unless acknowledged. Returns the transaction.
    pub async fn pend_append(
        &self,
        via: usize,
        block: &str,
        trx: &str,
        rev: Rev,
        value: i64,
    ) -> TrxId {
        let trx_id = TrxId::new(trx).unwrap();
        let pend = self
            .client(via)
            .pend(PendRequest {
                trx_id: trx_id.clone(),
                rev: Some(rev),
                transforms: append(block, value),
                policy: PendPolicy::Fail,
            })
            .await
            .unwrap();
        assert!(pend.is_success(), "pend of {trx}: {pend:?}");
        trx_id
    }

    /// Cancels `trx` on `block` through node `via`; fails unless acknowledged.
    pub async fn cancel_on(&self, via: usize, block: &str, trx: &TrxId) {
        self.client(via)
            .cancel(TrxBlocks {
                trx_id: trx.clone(),
                block_ids: vec![bid(block)],
            })
            .await
            .unwrap();
    }

    /// Appends `value` to `block` as `trx` at `rev` through node 0, retrying
    /// every 200 ms until acknowledged; returns how many tries were refused.
    /// Past `limit` it fails, naming what member `watched` holds pending.
    pub async fn append_via_0_until(
        &self,
        block: &str,
        (trx, rev, value): (&str, Rev, i64),
        limit: Duration,
        watched: usize,
    ) -> usize {
        let deadline = Instant::now() + limit;
        let mut tries = 0;
        while let Err(e) = write(&self.client(0), trx, rev, append(block, value)).await {
            tries += 1;
            assert!(
                Instant::now() < deadline,
                "after {tries} tries the block still refuses writes: {e}; member {watched} holds {:?} pending",
                self.pending_on(watched, block).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tries
    }

    /// Removes every message, disk and hang fault (the rules read at start stay).
    pub fn heal(&mut self) {
        for i in 0..self.len() {
            self.rules[i] = Rules {
                at_start: std::mem::take(&mut self.rules[i].at_start),
                ..Rules::default()
            };
            self.write_rules(i);
        }
    }
}

/// The newest of the configurations `seen`.
fn newest(seen: &BTreeMap<usize, Option<Config>>, block: &str) -> Result<Config, String> {
    seen.values()
        .flatten()
        .max_by_key(|c| c.epoch)
        .cloned()
        .ok_or_else(|| format!("no node holds {block}'s configuration"))
}

/// Pend + commit of `t` as `trx` at `rev`. `Ok` only when both were acknowledged.
/// A pend or commit that failed (rather than being refused) may have landed: it is
/// cancelled, best effort, as a careful client does.
pub async fn write(c: &RepoClient, trx: &str, rev: Rev, t: Transforms) -> Result<(), String> {
    let ids: Vec<BlockId> = t.block_ids().into_iter().collect();
    let trx_id = TrxId::new(trx).unwrap();
    let cancel = || async {
        let _ = c
            .cancel(TrxBlocks {
                trx_id: trx_id.clone(),
                block_ids: ids.clone(),
            })
            .await;
    };
    let p = match c
        .pend(PendRequest {
            trx_id: trx_id.clone(),
            rev: Some(rev),
            transforms: t,
            policy: PendPolicy::Fail,
        })
        .await
    {
        Ok(p) => p,
        Err(e) => {
            cancel().await;
            return Err(format!("pend failed: {e}"));
        }
    };
    if !p.is_success() {
        return Err(format!("pend refused: {p:?}"));
    }
    let r = c
        .commit(CommitRequest {
            trx_id: trx_id.clone(),
            block_ids: ids.clone(),
            rev,
            header_id: None,
            tail_id: None,
        })
        .await;
    match r {
        Ok(r) if r.is_success() => Ok(()),
        other => {
            cancel().await;
            Err(format!("commit failed: {other:?}"))
        }
    }
}

/// A block's latest revision and `items` as node behind `c` serves them (a plain read).
pub async fn latest_of(c: &RepoClient, block: &str) -> Option<(Rev, Value)> {
    read_at(c, block, None).await
}

/// A block at revision `at` (or the latest), with its pending transactions.
async fn read_full(
    c: &RepoClient,
    block: &str,
    at: Option<Rev>,
) -> Option<(Rev, Value, Vec<String>)> {
    let context = at.map(|rev| TrxContext {
        committed: vec![],
        rev,
        trx_id: None,
    });
    let r = c
        .get(BlockGets {
            block_ids: vec![bid(block)],
            context,
            consistency: None,
        })
        .await
        .ok()?;
    let g = r.get(&bid(block))?;
    Some((
        g.state.latest.as_ref()?.rev,
        g.block.as_ref()?.fields["items"].clone(),
        g.state
            .pendings
            .iter()
            .flatten()
            .map(|t| t.as_str().to_string())
            .collect(),
    ))
}

/// A block at revision `at` (or the latest) and its `items`, as the node behind `c`
/// serves it.
pub async fn read_at(c: &RepoClient, block: &str, at: Option<Rev>) -> Option<(Rev, Value)> {
    read_full(c, block, at).await.map(|(r, v, _)| (r, v))
}

/// Appends unique values to a set of blocks through whichever nodes are given,
/// recording every acknowledged write.
pub struct Workload {
    blocks: Vec<String>,
    next_rev: BTreeMap<String, Rev>,
    next_value: i64,
    /// Acknowledged appends: block → (revision, value).
    pub acked: BTreeMap<String, Vec<(Rev, i64)>>,
    /// Appends not acknowledged (each may have landed): block → value → revision.
    unacked: BTreeMap<String, BTreeMap<i64, Rev>>,
    /// Writes that failed (not acknowledged; may or may not have landed).
    pub failed: usize,
    /// Why the last write failed.
    pub last_error: Option<String>,
    /// Transactions that failed in doubt and whose cancel did not go through yet.
    unresolved: Vec<TrxBlocks>,
}

impl Workload {
    /// Inserts `n` blocks named `{prefix}{i}` through `c`.
    pub async fn create(c: &RepoClient, prefix: &str, n: usize) -> Self {
        let mut w = Self {
            blocks: (0..n).map(|i| format!("{prefix}{i}")).collect(),
            next_rev: BTreeMap::new(),
            next_value: 1,
            acked: BTreeMap::new(),
            unacked: BTreeMap::new(),
            failed: 0,
            last_error: None,
            unresolved: Vec::new(),
        };
        for b in w.blocks.clone() {
            write(c, &insert_trx(&b), 1, insert(&b)).await.unwrap();
            w.next_rev.insert(b.clone(), 2);
            w.acked.insert(b, Vec::new());
        }
        w
    }

    /// The next append to the `k`-th block (round robin), to run with [`write`]
    /// and report with [`Workload::settle`].
    pub fn prepare(&mut self, k: usize) -> Append {
        let block = self.blocks[k % self.blocks.len()].clone();
        let rev = self.next_rev[&block];
        let value = self.next_value;
        self.next_value += 1;
        Append {
            trx: trx_of(&block, value),
            block,
            rev,
            value,
        }
    }

    /// Records how `a` ended (`Err` with why when not acknowledged); `c` serves the
    /// block's latest revision if the write may have landed.
    pub async fn settle(&mut self, c: &RepoClient, a: Append, outcome: Result<(), String>) -> bool {
        let Append {
            block,
            trx,
            rev,
            value,
        } = a;
        match outcome {
            Ok(()) => {
                self.acked.get_mut(&block).unwrap().push((rev, value));
                self.next_rev.insert(block, rev + 1);
                true
            }
            Err(e) => {
                self.failed += 1;
                self.unacked
                    .entry(block.clone())
                    .or_default()
                    .insert(value, rev);
                eprintln!("not acknowledged: {trx} at rev {rev}: {e}");
                self.last_error = Some(format!("{block} rev {rev}: {e}"));
                if !e.starts_with("pend refused") {
                    self.unresolved.push(TrxBlocks {
                        trx_id: TrxId::new(trx).unwrap(),
                        block_ids: vec![bid(&block)],
                    });
                }
                // An unacknowledged write may still have landed: go on from the
                // revision the node serves now.
                if let Some((latest, _)) = latest_of(c, &block).await {
                    self.next_rev.insert(block, (latest + 1).max(rev));
                }
                false
            }
        }
    }

    /// One append to the `k`-th block (round robin) through `c`; true if acknowledged.
    pub async fn step(&mut self, c: &RepoClient, k: usize) -> bool {
        let a = self.prepare(k);
        let outcome = write(c, &a.trx, a.rev, append(&a.block, a.value)).await;
        self.settle(c, a, outcome).await
    }

    /// Acknowledged writes in all.
    pub fn acked_count(&self) -> usize {
        self.acked.values().map(Vec::len).sum()
    }

    /// What was done to `block`, for [`judge`].
    pub fn expected(&self, block: &str) -> Expected {
        Expected {
            acked: self.acked[block].iter().copied().collect(),
            unacked: self.unacked.get(block).cloned().unwrap_or_default(),
        }
    }
}

/// One append of the workload, prepared.
#[derive(Debug, Clone)]
pub struct Append {
    pub block: String,
    pub trx: String,
    pub rev: Rev,
    pub value: i64,
}

/// Cancels every write that failed in doubt (a cancel of a transaction that
/// committed, or never pended, changes nothing), retrying through the nodes in
/// turn for up to `limit` each.
async fn resolve(clients: &[RepoClient], w: &mut Workload, limit: Duration) {
    for t in std::mem::take(&mut w.unresolved) {
        let deadline = Instant::now() + limit;
        let mut k = 0;
        while let Err(e) = clients[k % clients.len()].cancel(t.clone()).await {
            assert!(
                Instant::now() < deadline,
                "cancel of {} refused {limit:?} after the faults healed: {e}",
                t.trx_id
            );
            k += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the checker saw.
#[derive(Debug)]
pub struct Report {
    pub blocks: usize,
    pub acked: usize,
}

/// The checker, after a scenario (every fault healed, every node running):
/// 1. no block stays held: after cancelling what failed in doubt, a final write to
///    every block goes through within `release` (a reservation left behind would
///    refuse it; the callers derive `release` from the record expiry and the
///    recovery rules of docs/CONSENSUS.md);
/// 2. every node knows the same configuration for every block's region, and
///    each member's own copy — read straight from its storage through the block
///    protocol's archive, which neither catches up nor repairs — is exactly what
///    the workload did ([`judge`]: every revision, its transaction, transform and
///    items; nothing lost, nothing doubled, nothing pending, no member apart).
///    Background repair (anti-entropy) gets 30 s to finish first;
/// 3. every other node serves that block's latest revision and items to a
///    client (a plain read, which may fetch it from the members).
pub async fn check(c: &TestCluster, w: &mut Workload, release: Duration) -> Report {
    let members = c.members();
    let up: Vec<usize> = members.iter().copied().filter(|i| c.is_up(*i)).collect();
    assert_eq!(
        up.len(),
        members.len(),
        "the checker runs with every node up"
    );
    let clients: Vec<RepoClient> = up.iter().map(|i| c.client(*i)).collect();
    // 0. As a careful client does once it can: cancel what failed in doubt.
    resolve(&clients, w, release).await;
    // 1. A final write per block, through the nodes in turn, until it goes through.
    for (k, b) in w.blocks.clone().iter().enumerate() {
        let deadline = Instant::now() + release;
        loop {
            if w.step(&clients[k % clients.len()], k).await {
                break;
            }
            resolve(&clients, w, release).await;
            if Instant::now() >= deadline {
                let mut seen = Vec::new();
                for cl in &clients {
                    seen.push(read_full(cl, b, None).await);
                }
                panic!(
                    "block {b} still refuses writes {release:?} after the faults healed; last error: {:?}; nodes serve {seen:?}",
                    w.last_error
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for b in &w.blocks {
        // 2. Each member's own copy is the workload's history.
        let expected = w.expected(b);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (holders, latest) = loop {
            let verdict = match c.members_of(b).await {
                Ok(holders) => {
                    let copies = own_copies(c, &holders, b).await;
                    judge(b, &expected, &copies)
                        .map(|()| (holders, copies))
                        .map_err(|v| format!("{v:?}"))
                }
                Err(e) => Err(e),
            };
            match verdict {
                Ok((holders, copies)) => break (holders, latest_of_copies(&copies)),
                Err(v) => assert!(
                    Instant::now() < deadline,
                    "block {b}: {v}; the workload did {expected:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // 3. The others serve the members' latest.
        for i in up.iter().filter(|i| !holders.contains(*i)) {
            let cl = c.client(*i);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let got = latest_of(&cl, b).await;
                if got == latest {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "block {b}: node {i}, not a member, serves {got:?}; the members hold {latest:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Report {
        blocks: w.blocks.len(),
        acked: w.acked_count(),
    }
}

/// Each of `holders`' own copy of `block`: its archive from revision 1, as its
/// storage holds it.
async fn own_copies(
    c: &TestCluster,
    holders: &[usize],
    block: &str,
) -> Vec<(String, Option<BlockArchive>)> {
    let mut copies = Vec::new();
    for i in holders {
        let got = fetch_archive(
            &c.net,
            c.peer_id(*i).parse().unwrap(),
            vec![c.addr(*i).parse().unwrap()],
            &bid(block),
            Some(1),
            Duration::from_secs(10),
        )
        .await;
        let label = match &got {
            Ok(_) => format!("node {i}"),
            Err(e) => format!("node {i} (archive failed: {e})"),
        };
        copies.push((label, got.ok().flatten()));
    }
    copies
}

/// The latest revision and items of the first copy, as a plain read serves them.
fn latest_of_copies(copies: &[(String, Option<BlockArchive>)]) -> Option<(Rev, Value)> {
    let last = copies.first()?.1.as_ref()?.revisions.last()?;
    Some((
        last.trx_rev.rev,
        last.block.as_ref()?.fields.get("items")?.clone(),
    ))
}
