//! Prometheus export: a `prometheus-client` collector that reads the engine's and
//! network's atomics at scrape time (no copying between scrapes).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::metrics::{
    ActorMetrics, ActorSnapshot, Counter, EngineMetrics, HistogramSnapshot, Outcome, RepoOp,
    LATENCY_BUCKETS_US,
};
use crate::net::NetMetrics;
use crate::storage::RawStorage;

/// Everything a node exports under `optimystic_*`.
#[derive(Clone)]
pub struct NodeCollector {
    /// Engine metrics.
    pub engine: Arc<EngineMetrics>,
    /// Network metrics.
    pub net: Arc<NetMetrics>,
    /// The storage backend (write counters, block count).
    pub storage: Arc<dyn RawStorage>,
    /// Further actor kinds (cluster member, coordinator).
    pub actors: Vec<Arc<ActorMetrics>>,
    /// Transaction outcomes, when the node takes part in consensus.
    pub txns: Option<Arc<crate::coordinator::TxnMetrics>>,
    /// Promises this node's members dropped at expiry.
    pub expired: Option<Arc<Counter>>,
    /// What anti-entropy did, when the node takes part in consensus.
    pub repair: Option<Arc<crate::repair::RepairMetrics>>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

type Enc<'a, 'b> = &'a mut DescriptorEncoder<'b>;

fn gauge(e: Enc<'_, '_>, name: &str, help: &str, v: i64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn counter(e: Enc<'_, '_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
}

fn actors(e: Enc<'_, '_>, snaps: &[ActorSnapshot]) -> std::fmt::Result {
    let labels = |s: &ActorSnapshot| [("actor", s.kind.to_string())];
    let mut m = e.encode_descriptor(
        "optimystic_actor_mailbox_depth",
        "Messages queued for an actor kind and not yet being handled",
        None,
        MetricType::Gauge,
    )?;
    for s in snaps {
        m.encode_family(&labels(s))?.encode_gauge(&s.depth)?;
    }
    let mut m = e.encode_descriptor(
        "optimystic_actor_mailbox_high_water",
        "Highest mailbox depth seen for an actor kind",
        None,
        MetricType::Gauge,
    )?;
    for s in snaps {
        m.encode_family(&labels(s))?.encode_gauge(&s.high_water)?;
    }
    let mut m = e.encode_descriptor(
        "optimystic_actor_messages_handled",
        "Messages handled by an actor kind",
        None,
        MetricType::Counter,
    )?;
    for s in snaps {
        m.encode_family(&labels(s))?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&s.handled, None)?;
    }
    let mut m = e.encode_descriptor(
        "optimystic_actor_handler_latency_seconds",
        "Time from a handler's start to its reply, by actor kind",
        None,
        MetricType::Histogram,
    )?;
    for s in snaps {
        let buckets = buckets(&s.latency);
        m.encode_family(&labels(s))?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                s.latency.sum_us as f64 / 1e6,
                s.latency.count,
                &buckets,
                None,
            )?;
    }
    Ok(())
}

fn buckets(h: &HistogramSnapshot) -> Vec<(f64, u64)> {
    LATENCY_BUCKETS_US
        .iter()
        .map(|us| *us as f64 / 1e6)
        .chain([f64::INFINITY])
        .zip(h.buckets.iter().copied())
        .collect()
}

impl Collector for NodeCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let mut snaps = vec![
            self.engine.block_actor.snapshot(),
            self.net.swarm_actor.snapshot(),
            self.net.repo_service.snapshot(),
        ];
        snaps.extend(self.actors.iter().map(|a| a.snapshot()));
        actors(&mut e, &snaps)?;
        let r = &self.engine.registry;
        gauge(
            &mut e,
            "optimystic_block_actors_live",
            "BlockActors alive now",
            r.live.get(),
        )?;
        gauge(
            &mut e,
            "optimystic_block_actors_live_high_water",
            "Most BlockActors alive at once",
            r.live_high_water.get(),
        )?;
        counter(
            &mut e,
            "optimystic_block_actors_activated",
            "BlockActors activated",
            r.activated.get(),
        )?;
        counter(
            &mut e,
            "optimystic_block_actors_passivated",
            "BlockActors passivated",
            r.passivated.get(),
        )?;

        let mut m = e.encode_descriptor(
            "optimystic_repo_requests",
            "Repo operations by kind and outcome (success, stale, error)",
            None,
            MetricType::Counter,
        )?;
        for (op, name) in [
            (RepoOp::Get, "get"),
            (RepoOp::Pend, "pend"),
            (RepoOp::Commit, "commit"),
            (RepoOp::Cancel, "cancel"),
            (RepoOp::PendCommit, "pendCommit"),
        ] {
            for (outcome, oname) in [
                (Outcome::Success, "success"),
                (Outcome::Stale, "stale"),
                (Outcome::Error, "error"),
            ] {
                let v = self.engine.repo.get(op, outcome);
                m.encode_family(&[("op", name), ("outcome", oname)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)?;
            }
        }

        let st = self.storage.stats();
        counter(
            &mut e,
            "optimystic_storage_commits",
            "Write batches made durable",
            st.batches.get(),
        )?;
        counter(
            &mut e,
            "optimystic_storage_syncs",
            "fsync/fdatasync calls",
            st.syncs.get(),
        )?;
        counter(
            &mut e,
            "optimystic_storage_bytes_written",
            "Bytes of records written",
            st.bytes.get(),
        )?;
        counter(
            &mut e,
            "optimystic_storage_write_failures",
            "Write batches that failed",
            st.failures.get(),
        )?;
        counter(
            &mut e,
            "optimystic_storage_corrupt_reads",
            "Reads that found a damaged record (checksum, truncation, encoding); the block is restored from peers",
            st.corrupt.get(),
        )?;
        if let Ok(n) = self.storage.disk_bytes() {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            gauge(
                &mut e,
                "optimystic_storage_disk_bytes",
                "Bytes the store occupies on disk",
                n,
            )?;
        }
        if let Ok(n) = self.storage.approximate_block_count() {
            gauge(
                &mut e,
                "optimystic_storage_blocks",
                "Blocks stored (approximate on the embedded engine)",
                i64::try_from(n).unwrap_or(i64::MAX),
            )?;
        }

        if let Some(t) = &self.txns {
            let mut m = e.encode_descriptor(
                "optimystic_transactions",
                "Cluster transactions by outcome (started, committed, aborted, expired, in_doubt, local, forwarded)",
                None,
                MetricType::Counter,
            )?;
            let expired = self.expired.as_ref().map_or(0, |c| c.get());
            for (name, c) in [
                ("started", t.started.get()),
                ("committed", t.committed.get()),
                ("aborted", t.aborted.get()),
                ("expired", expired),
                ("in_doubt", t.in_doubt.get()),
                ("local", t.local.get()),
                ("forwarded", t.forwarded.get()),
            ] {
                m.encode_family(&[("outcome", name)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&c, None)?;
            }
            let mut m = e.encode_descriptor(
                "optimystic_config_changes",
                "Configuration changes this node proposed, by outcome (started, committed, aborted, in_doubt)",
                None,
                MetricType::Counter,
            )?;
            let ch = &t.changes;
            for (name, c) in [
                ("started", ch.started.get()),
                ("committed", ch.committed.get()),
                ("aborted", ch.aborted.get()),
                ("in_doubt", ch.in_doubt.get()),
            ] {
                m.encode_family(&[("outcome", name)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&c, None)?;
            }
            let mut m = e.encode_descriptor(
                "optimystic_transaction_operations",
                "Client writes carried by cluster records (divided by started records: the mean batch)",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                &t.operations.get(),
                None,
            )?;
            let mut m = e.encode_descriptor(
                "optimystic_transaction_phase_seconds",
                "Latency of each two-phase-commit phase, seen by the coordinator",
                None,
                MetricType::Histogram,
            )?;
            for (phase, h) in [("promise", &t.phase1), ("commit", &t.phase2)] {
                let s = h.snapshot();
                m.encode_family(&[("phase", phase)])?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        s.sum_us as f64 / 1e6,
                        s.count,
                        &buckets(&s),
                        None,
                    )?;
            }
        }

        if let Some(r) = &self.repair {
            for (name, help, v) in [
                (
                    "optimystic_antientropy_rounds",
                    "Anti-entropy rounds run (one co-member compared per round)",
                    r.rounds.get(),
                ),
                (
                    "optimystic_antientropy_regions_differing",
                    "Regions whose digest differed from the co-member's, summed over rounds",
                    r.regions_differing.get(),
                ),
                (
                    "optimystic_antientropy_blocks_checked",
                    "Blocks compared with their cluster because a co-member's head differed",
                    r.blocks_checked.get(),
                ),
                (
                    "optimystic_repair_blocks",
                    "Blocks whose copy here was moved to what a majority of their cluster holds",
                    r.blocks_repaired.get(),
                ),
                (
                    "optimystic_handoff_blocks",
                    "Copies forgotten because the configuration this node left holds them",
                    r.blocks_handed_off.get(),
                ),
                (
                    "optimystic_stray_pendings_dropped",
                    "Pending transactions dropped because fewer than a majority of their configuration hold them",
                    r.stray_pendings_dropped.get(),
                ),
            ] {
                counter(&mut e, name, help, v)?;
            }
            gauge(
                &mut e,
                "optimystic_caught_up",
                "1 once this node, since it started, compared its copies with enough co-members of each configuration to hold every acknowledged write",
                r.caught_up.get(),
            )?;
            gauge(
                &mut e,
                "optimystic_repair_queue_depth",
                "Blocks in this node's repair queue: found to compare with their cluster, not settled yet",
                r.queue_depth.get(),
            )?;
            gauge(
                &mut e,
                "optimystic_blocks_under_replicated",
                "Blocks this node is a member for that are not on every member of their configuration as far as it knows (queued here for repair, or a member not connected)",
                r.under_replicated.get(),
            )?;
        }

        gauge(
            &mut e,
            "optimystic_peers_connected",
            "Peers (members and clients) with at least one open connection",
            self.net.connected(),
        )?;
        let mut m = e.encode_descriptor(
            "optimystic_inbound_rejected",
            "Inbound frames and requests refused, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in self.net.rejected() {
            m.encode_family(&[("reason", reason)])?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&n, None)?;
        }
        Ok(())
    }
}
