//! `POST /v1/repo/{op}`: the repo operations (`get`, `pend`, `commit`, `cancel`,
//! `pendCommit`) as the JSON of DESIGN §3, with bodies capped at [`MAX_BODY`].

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use futures::StreamExt;
use optimystic_actors::model::{ErrorCode, OpKind, RepoOperation};
use optimystic_actors::net::codes;
use optimystic_actors::service::repo_error;

use super::error::{error, ApiError};
use super::AdminState;

/// Largest request body accepted (the block-carrying frame limit).
pub const MAX_BODY: usize = 8 << 20;

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

pub(super) async fn repo_op(
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
