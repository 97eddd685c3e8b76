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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures::StreamExt;
use optimystic_actors::metrics::EngineMetrics;
use optimystic_actors::model::{ErrorCode, OpKind, RepoOperation};
use optimystic_actors::net::{codes, ErrorReply, NetClient};
use optimystic_actors::service::repo_error;
use optimystic_actors::storage::RawStorage;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Largest request body accepted (the block-carrying frame limit).
pub const MAX_BODY: usize = 8 << 20;

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

/// Prometheus text of a registry.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
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

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    ApiError::new(status, code, message).response()
}

/// A refused request: its status and `{"error":{…}}` body.
struct ApiError(StatusCode, ErrorReply);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self(status, ErrorReply::new(code, message))
    }

    fn response(self) -> HttpResponse {
        HttpResponse::build(self.0).json(self.1)
    }
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    let known = [
        "/health",
        "/ready",
        "/metrics",
        "/status",
        "/v1/peers",
        "/v1/watch",
        "/v1/backup",
        "/v1/leave",
    ]
    .contains(&req.path())
        || req.path().starts_with("/v1/repo/")
        || (req.path().starts_with("/v1/peers/") && req.path().ends_with("/remove"))
        || req.path().starts_with("/v1/blocks/");
    if known {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {}", req.method(), req.path()),
        );
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", req.path()),
    )
}

/// `GET /`: the status page (plain HTML; its script reads the JSON endpoints
/// and `/metrics` every second).
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("ui/index.html"))
}

/// `GET /ui.js`: the status page's script.
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("ui/ui.js"))
}

/// How long `/health` and `/ready` wait for the network actor.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /health`: alive — the HTTP server and the network actor answer.
async fn health(state: web::Data<AdminState>) -> HttpResponse {
    match tokio::time::timeout(PROBE_TIMEOUT, state.net.status()).await {
        Ok(Ok(_)) => HttpResponse::Ok().json(serde_json::json!({ "status": "alive" })),
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            e.to_string(),
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            format!("the network actor did not answer within {PROBE_TIMEOUT:?}"),
        ),
    }
}

/// `GET /ready`: 200 when storage answers, the node has joined a network and
/// every configuration it is a member of has a majority connected; 503 with the
/// same body (each check and what it found) otherwise.
async fn ready(state: web::Data<AdminState>) -> HttpResponse {
    let connected = match tokio::time::timeout(PROBE_TIMEOUT, state.net.status()).await {
        Ok(Ok(n)) => n.connected.iter().map(ToString::to_string).collect(),
        _ => Default::default(),
    };
    let storage = state
        .storage
        .approximate_block_count()
        .map_err(|e| e.to_string());
    let configs = state.repo.configs();
    let verdict = crate::health::Readiness::judge(storage, &configs.table(), &connected);
    let status = if verdict.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(verdict)
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(render(&state.registry))
}

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

async fn status(state: web::Data<AdminState>) -> HttpResponse {
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeerEntry {
    peer_id: String,
    addrs: Vec<String>,
    /// Regions of this node's configurations that have it as a member.
    regions: usize,
    retired: bool,
    connected: bool,
}

/// `GET /v1/peers`: every peer this node has had in a configuration, and those
/// retired.
async fn peers(state: web::Data<AdminState>) -> HttpResponse {
    let connected: std::collections::BTreeSet<String> = match state.net.status().await {
        Ok(n) => n.connected.iter().map(ToString::to_string).collect(),
        Err(_) => Default::default(),
    };
    let configs = state.repo.configs();
    let mut book = configs.book();
    for r in configs.retired() {
        book.entry(r)
            .or_insert_with(|| optimystic_actors::cluster::ClusterPeer {
                multiaddrs: Vec::new(),
                public_key: String::new(),
            });
    }
    let peers: Vec<PeerEntry> = book
        .into_iter()
        .map(|(id, p)| PeerEntry {
            regions: configs.regions_with(&id),
            retired: configs.is_retired(&id),
            connected: connected.contains(&id),
            addrs: p.multiaddrs,
            peer_id: id,
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({ "peers": peers }))
}

/// `GET /v1/blocks/{id}`: which peers hold which revision of the block (see
/// [`crate::copies`]).
async fn block_copies(state: web::Data<AdminState>, id: web::Path<String>) -> HttpResponse {
    let block = match optimystic_actors::model::BlockId::new(id.into_inner()) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, codes::INVALID, e.to_string()),
    };
    let copies = crate::copies::copies(
        &state.repo,
        &state.net,
        block,
        std::time::Duration::from_secs(5),
    )
    .await;
    HttpResponse::Ok().json(copies)
}

/// `POST /v1/peers/{peerId}/remove`: retires the peer (durably a candidate for
/// no region); the placement driver replaces it, after handing its replacement
/// the data, in every configuration that has it.
async fn remove_peer(state: web::Data<AdminState>, peer: web::Path<String>) -> HttpResponse {
    let peer = peer.into_inner();
    match state.repo.retire_peer(&peer).await {
        Ok(regions) => HttpResponse::Ok().json(serde_json::json!({
            "peerId": peer,
            "retired": true,
            "regions": regions,
        })),
        Err(e) => {
            let status = match e.code() {
                ErrorCode::Invalid => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            HttpResponse::build(status).json(repo_error(e))
        }
    }
}

/// `POST /v1/leave`: starts this node's graceful leave (idempotent) and
/// answers its progress (see [`leave_progress`]).
async fn leave(state: web::Data<AdminState>) -> HttpResponse {
    leave_reply(state.repo.leave().await)
}

/// `GET /v1/leave`: how far this node's leave has come: `{"leaving","regions",
/// "copies","replacements","clusterSize","done"}`; `done` once the node is in no
/// configuration and every block it held is on every member of its
/// configuration (nothing under-replicated).
async fn leave_progress(state: web::Data<AdminState>) -> HttpResponse {
    leave_reply(state.repo.leave_progress().await)
}

fn leave_reply(
    progress: Result<
        optimystic_actors::coordinator::LeaveProgress,
        optimystic_actors::model::RepoError,
    >,
) -> HttpResponse {
    match progress {
        Ok(p) => HttpResponse::Ok().json(p),
        Err(e) => HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE).json(repo_error(e)),
    }
}

/// `GET /v1/watch` parameters.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchQuery {
    block_id: String,
    from: Option<u64>,
}

/// `GET /v1/watch?blockId=ID[&from=REV]`: server-sent events, one `revision`
/// event per committed revision of the block, in order, each with `id:` its
/// revision (a reconnecting client's `Last-Event-ID` resumes after it); a read
/// that failed is an `error` event and the watch goes on (docs/PROTOCOL.md,
/// "Watching a block").
async fn watch(
    state: web::Data<AdminState>,
    req: actix_web::HttpRequest,
    query: web::Query<WatchQuery>,
) -> HttpResponse {
    let block = match optimystic_actors::model::BlockId::new(&query.block_id) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.to_string()),
    };
    let resumed = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>());
    let from = match resumed {
        Some(Ok(rev)) => Some(rev),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                "Last-Event-ID must be a revision number",
            )
        }
        None => query.from,
    };
    let events = state.repo.watch(block, from).map(|r| {
        let text = match r {
            Ok(rev) => format!(
                "id: {}\nevent: revision\ndata: {}\n\n",
                rev.rev,
                serde_json::to_string(&rev).unwrap_or_default()
            ),
            Err(e) => format!(
                "event: error\ndata: {}\n\n",
                serde_json::to_string(&repo_error(e)).unwrap_or_default()
            ),
        };
        Ok::<_, std::convert::Infallible>(web::Bytes::from(text))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(events)
}

/// `GET /v1/backup`: this node's blocks as of one instant, as a backup file
/// (`crate::backup`); 501 on a backend that cannot take one.
async fn backup(state: web::Data<AdminState>) -> HttpResponse {
    if !state.storage.exports() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported",
            format!(
                "backups need the embedded backend (this node runs {}): stop the node and copy its data directory instead",
                state.storage.backend()
            ),
        );
    }
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(crate::backup::stream(state.storage.clone()))
}

/// Reads the body up to [`MAX_BODY`] without buffering more.
async fn body(mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::BAD_REQUEST,
                format!("cannot read body: {e}"),
            )
        })?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {MAX_BODY} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

async fn repo_op(
    state: web::Data<AdminState>,
    op: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let name = op.into_inner();
    let Some(kind) = OpKind::from_name(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_OPERATION,
            format!("unknown operation {name:?}; expected get, pend, commit, cancel or pendCommit"),
        );
    };
    let bytes = match body(payload).await {
        Ok(b) => b,
        Err(e) => return e.response(),
    };
    let op = match RepoOperation::from_json(kind, &bytes) {
        Ok(op) => op,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, e.to_string())
                .response()
        }
    };
    match op.run(&state.repo).await {
        Ok(r) => HttpResponse::Ok().json(r.wire()),
        Err(e) => {
            let status = match e.code() {
                ErrorCode::Storage => StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unavailable | ErrorCode::Restore | ErrorCode::InDoubt => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                ErrorCode::PendConflict => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            HttpResponse::build(status).json(repo_error(e))
        }
    }
}
