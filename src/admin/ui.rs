//! The status page: `GET /` and its script `GET /ui.js` (both from `src/ui/`,
//! built into the binary).

use actix_web::HttpResponse;

/// `GET /`: the status page (plain HTML; its script reads the JSON endpoints
/// and `/metrics` every second).
pub(super) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(include_str!("../ui/index.html"))
}

/// `GET /ui.js`: the status page's script.
pub(super) async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("../ui/ui.js"))
}
