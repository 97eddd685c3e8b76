//! `GET /status`: the node at a glance as JSON — identity, addresses, peers,
//! storage, load and replication.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use optimystic_actors::net::codes;
use serde::Serialize;

use super::error::error;
use super::AdminState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusReply {
    peer_id: String,
    listen_addrs: Vec<String>,
    connected_peers: Vec<String>,
    cluster_size: usize,
    storage: StorageStatus,
    block_count: u64,
    active_transactions: i64,
    inbound_requests: usize,
    live_block_actors: i64,
    replication: ReplicationStatus,
    uptime_seconds: u64,
    version: &'static str,
}

/// Data that follows membership, as this node sees it (the `/metrics` of the
/// same names: docs/OPERATIONS.md, "Watching replication").
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplicationStatus {
    caught_up: bool,
    under_replicated: i64,
    repair_queue: i64,
    blocks_repaired: u64,
    antientropy_rounds: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StorageStatus {
    backend: &'static str,
    size_bytes: u64,
    blocks: u64,
    bytes_written: u64,
    commits: u64,
}

pub(super) async fn status(state: web::Data<AdminState>) -> HttpResponse {
    let net = match state.net.status().await {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                e.to_string(),
            )
        }
    };
    let blocks = state.storage.block_count().unwrap_or(0);
    let stats = state.storage.stats();
    HttpResponse::Ok().json(StatusReply {
        peer_id: net.peer_id.to_string(),
        // Dialable as printed: each with this node's `/p2p/` id.
        listen_addrs: net
            .listen_addrs
            .iter()
            .map(|a| {
                a.clone()
                    .with_p2p(net.peer_id)
                    .unwrap_or_else(|a| a)
                    .to_string()
            })
            .collect(),
        connected_peers: net.connected.iter().map(ToString::to_string).collect(),
        cluster_size: state.cluster_size,
        storage: StorageStatus {
            backend: state.storage.backend(),
            size_bytes: state.storage.disk_bytes().unwrap_or(0),
            blocks,
            bytes_written: stats.bytes.get(),
            commits: stats.batches.get(),
        },
        block_count: blocks,
        active_transactions: state.engine.repo.active(),
        inbound_requests: net.inbound_in_flight,
        live_block_actors: state.engine.registry.live.get(),
        replication: {
            let r = state.repo.repair_metrics();
            ReplicationStatus {
                caught_up: r.caught_up.get() > 0,
                under_replicated: r.under_replicated.get(),
                repair_queue: r.queue_depth.get(),
                blocks_repaired: r.blocks_repaired.get(),
                antientropy_rounds: r.rounds.get(),
            }
        },
        uptime_seconds: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_status_keys_are_camel_case() {
        let v = serde_json::to_value(ReplicationStatus {
            caught_up: true,
            under_replicated: 2,
            repair_queue: 3,
            blocks_repaired: 4,
            antientropy_rounds: 5,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "caughtUp": true,
                "underReplicated": 2,
                "repairQueue": 3,
                "blocksRepaired": 4,
                "antientropyRounds": 5
            })
        );
    }

    #[test]
    fn storage_status_keys_are_camel_case() {
        let v = serde_json::to_value(StorageStatus {
            backend: "memory",
            size_bytes: 10,
            blocks: 1,
            bytes_written: 20,
            commits: 2,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "backend": "memory",
                "sizeBytes": 10,
                "blocks": 1,
                "bytesWritten": 20,
                "commits": 2
            })
        );
    }
}
