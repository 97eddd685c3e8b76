//! How the admin API refuses: [`error`] and [`ApiError`], a status with the
//! `{"error":{"code","message"}}` body, and the fallback for unknown routes and
//! methods not allowed on known ones.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use optimystic_actors::net::ErrorReply;

pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    ApiError::new(status, code, message).response()
}

/// A refused request: its status and `{"error":{…}}` body.
pub(super) struct ApiError(StatusCode, ErrorReply);

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self(status, ErrorReply::new(code, message))
    }

    pub(super) fn response(self) -> HttpResponse {
        HttpResponse::build(self.0).json(self.1)
    }
}

pub(super) async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON body of a response.
    fn json(resp: HttpResponse) -> serde_json::Value {
        let body = actix_web::body::to_bytes(resp.into_body());
        let bytes = futures::executor::block_on(body).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn an_error_has_its_status_and_code_and_message_body() {
        let resp = error(StatusCode::NOT_FOUND, "not_found", "no route /x");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = json(resp);
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["message"], "no route /x");
    }

    #[test]
    fn an_api_error_answers_with_its_own_status() {
        let refused = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "big");
        let resp = refused.response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json(resp)["error"]["code"], "too_large");
    }
}
