//! Prometheus text: [`render`] encodes a registry, `GET /metrics` serves the
//! node's.

use actix_web::{web, HttpResponse};
use prometheus_client::registry::Registry;

use super::AdminState;

/// Prometheus text of a registry.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

pub(super) async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(render(&state.registry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn an_empty_registry_is_just_the_end_marker() {
        assert_eq!(render(&Registry::default()), "# EOF\n");
    }

    #[test]
    fn a_counter_renders_with_its_help_type_and_total() {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        registry.register("requests", "Requests", counter.clone());
        counter.inc();
        assert_eq!(
            render(&registry),
            "# HELP requests Requests.\n\
             # TYPE requests counter\n\
             requests_total 1\n\
             # EOF\n"
        );
    }
}
