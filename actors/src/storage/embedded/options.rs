//! [`EmbeddedOptions`]: the tuning of the embedded engine (block cache,
//! memtable size, background workers) and its presets.

/// Tuning of the embedded engine.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Block cache, bytes.
    pub cache_bytes: u64,
    /// Memtable size per keyspace, bytes (bounds memory used by unflushed writes).
    pub memtable_bytes: u64,
    /// Background flush/compaction threads.
    pub worker_threads: usize,
}

impl EmbeddedOptions {
    /// The tuning of a cluster node: one background worker. fjall 3.1's pool
    /// keeps its first worker for flushes and has it hand compaction requests
    /// back to the queue, so while the second worker runs a long compaction
    /// the first one spins re-queueing them: at 1,000,000 stored blocks the
    /// workers took 24% of a loaded 3-node cluster's CPU, and one worker gave
    /// 15% more pendCommits (docs/BENCHMARKS.md). A node's own writes are
    /// bounded by consensus (a few thousand per second), which one worker keeps
    /// up with; a local engine loading at tens of thousands per second keeps two
    /// (with one, its unflushed memtables grew past 1 GB).
    pub fn cluster_node() -> Self {
        Self {
            worker_threads: 1,
            ..Self::default()
        }
    }
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 32 << 20,
            memtable_bytes: 8 << 20,
            worker_threads: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EmbeddedOptions;

    #[test]
    fn a_cluster_node_runs_one_worker_and_keeps_the_default_sizes() {
        let node = EmbeddedOptions::cluster_node();
        let default = EmbeddedOptions::default();
        assert_eq!(node.worker_threads, 1);
        assert_eq!(default.worker_threads, 2);
        assert_eq!(node.cache_bytes, 32 << 20);
        assert_eq!(node.cache_bytes, default.cache_bytes);
        assert_eq!(node.memtable_bytes, 8 << 20);
        assert_eq!(node.memtable_bytes, default.memtable_bytes);
    }
}
