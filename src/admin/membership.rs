//! Membership: `GET /v1/peers` (the peer book), `POST /v1/peers/{peerId}/remove`
//! (retire a peer) and `POST`/`GET /v1/leave` (this node's graceful leave).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use optimystic_actors::model::ErrorCode;
use optimystic_actors::service::repo_error;
use serde::Serialize;

use super::AdminState;

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
pub(super) async fn peers(state: web::Data<AdminState>) -> HttpResponse {
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

/// `POST /v1/peers/{peerId}/remove`: retires the peer (durably a candidate for
/// no region); the placement driver replaces it, after handing its replacement
/// the data, in every configuration that has it.
pub(super) async fn remove_peer(
    state: web::Data<AdminState>,
    peer: web::Path<String>,
) -> HttpResponse {
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
pub(super) async fn leave(state: web::Data<AdminState>) -> HttpResponse {
    leave_reply(state.repo.leave().await)
}

/// `GET /v1/leave`: how far this node's leave has come: `{"leaving","regions",
/// "copies","replacements","clusterSize","done"}`; `done` once the node is in no
/// configuration and every block it held is on every member of its
/// configuration (nothing under-replicated).
pub(super) async fn leave_progress(state: web::Data<AdminState>) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_entry_keys_are_camel_case() {
        let v = serde_json::to_value(PeerEntry {
            peer_id: "p1".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/7410".into()],
            regions: 2,
            retired: false,
            connected: true,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "peerId": "p1",
                "addrs": ["/ip4/127.0.0.1/tcp/7410"],
                "regions": 2,
                "retired": false,
                "connected": true
            })
        );
    }
}
