//! The probes: `GET /health` (alive: the network actor answers) and `GET /ready`
//! (ready to serve, as [`crate::health`] judges it).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use optimystic_actors::net::codes;

use super::error::error;
use super::AdminState;

/// How long `/health` and `/ready` wait for the network actor.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /health`: alive — the HTTP server and the network actor answer.
pub(super) async fn health(state: web::Data<AdminState>) -> HttpResponse {
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
pub(super) async fn ready(state: web::Data<AdminState>) -> HttpResponse {
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
