//! Reading blocks: `GET /v1/blocks/{id}` (which peers hold which revision),
//! `GET /v1/watch` (a block's revisions as server-sent events) and
//! `GET /v1/backup` (every block, as one backup file).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use optimystic_actors::net::codes;
use optimystic_actors::service::repo_error;

use super::error::error;
use super::AdminState;

/// `GET /v1/blocks/{id}`: which peers hold which revision of the block (see
/// [`crate::copies`]).
pub(super) async fn block_copies(
    state: web::Data<AdminState>,
    id: web::Path<String>,
) -> HttpResponse {
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

/// `GET /v1/watch` parameters.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WatchQuery {
    block_id: String,
    from: Option<u64>,
}

/// `GET /v1/watch?blockId=ID[&from=REV]`: server-sent events, one `revision`
/// event per committed revision of the block, in order, each with `id:` its
/// revision (a reconnecting client's `Last-Event-ID` resumes after it); a read
/// that failed is an `error` event and the watch goes on (docs/PROTOCOL.md,
/// "Watching a block").
pub(super) async fn watch(
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
pub(super) async fn backup(state: web::Data<AdminState>) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;

    type Query = web::Query<WatchQuery>;

    #[test]
    fn a_watch_query_takes_block_id_and_an_optional_from() {
        let q = Query::from_query("blockId=b1&from=3").unwrap();
        assert_eq!(q.block_id, "b1");
        assert_eq!(q.from, Some(3));
        let q = Query::from_query("blockId=b2").unwrap();
        assert_eq!((q.block_id.as_str(), q.from), ("b2", None));
    }

    #[test]
    fn a_watch_query_needs_a_block_id() {
        assert!(Query::from_query("from=3").is_err());
        assert!(Query::from_query("block_id=b1").is_err());
    }
}
