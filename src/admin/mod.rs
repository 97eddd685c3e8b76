//! HTTP admin server (actix-web): `GET /` (a status page, `src/ui/`), `GET /health`,
//! `GET /ready` (see [`crate::health`]),
//! `GET /metrics` (Prometheus text), `GET /status`
//! (JSON), `POST /v1/repo/{get,pend,commit,cancel,pendCommit}` (the JSON of DESIGN
//! §3), `GET /v1/watch` (a block's revisions as server-sent events),
//! `GET /v1/backup` (a consistent backup file),
//! `GET /v1/peers` (the peer book), `POST /v1/peers/{peerId}/remove`
//! (retire a peer from every configuration) and `POST`/`GET /v1/leave` (a
//! graceful leave of this node, and its progress; docs/OPERATIONS.md).
//! Every error is `{"error":{"code","message"}}` with a 4xx/5xx status.

mod blocks;
mod error;
mod membership;
mod metrics;
mod probes;
mod repo;
mod status;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::net::NetClient;
use optimystic_actors::storage::RawStorage;
use prometheus_client::registry::Registry;

use self::blocks::{backup, block_copies, watch};
use self::error::not_found;
use self::membership::{leave, leave_progress, peers, remove_peer};
use self::metrics::metrics;
use self::probes::{health, ready};
use self::repo::repo_op;
use self::status::status;
use self::ui::{page, script};

pub use self::metrics::render;
pub use self::repo::MAX_BODY;

/// What the handlers need.
#[derive(Clone)]
pub struct AdminState {
    /// The node's repo (writes through the cluster when it has peers).
    pub repo: crate::node::NodeRepo,
    /// The network (status).
    pub net: NetClient,
    /// Every metric.
    pub registry: Arc<Registry>,
    /// Storage (status).
    pub storage: Arc<dyn RawStorage>,
    /// Engine metrics (status).
    pub engine: Arc<EngineMetrics>,
    /// Start time.
    pub started: Instant,
    /// Configured cluster size.
    pub cluster_size: usize,
}

/// Binds and starts the server on the current System; returns its handle and
/// the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, state: AdminState) -> std::io::Result<(ServerHandle, SocketAddr)> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/", web::get().to(page))
            .route("/ui.js", web::get().to(script))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
            .route("/status", web::get().to(status))
            .route("/v1/repo/{op}", web::post().to(repo_op))
            .route("/v1/peers", web::get().to(peers))
            .route("/v1/watch", web::get().to(watch))
            .route("/v1/backup", web::get().to(backup))
            .route("/v1/peers/{peer}/remove", web::post().to(remove_peer))
            .route("/v1/leave", web::post().to(leave))
            .route("/v1/leave", web::get().to(leave_progress))
            .route("/v1/blocks/{id}", web::get().to(block_copies))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok((handle, bound))
}
