//! `/healthz` and `/metrics` alone, on `--http-listen`, for a process
//! without the API role (an ingester, an alert evaluator), so every role
//! can be scraped. The same token rule as the API (docs/security.md):
//! `/metrics` needs an `admin` token unless `open_metrics`; nothing of
//! the lake is served.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use gatemeter_query::access::Access;
use prometheus::Registry;

use crate::error::ApiError;

#[derive(Clone)]
struct Scrape {
    registry: Registry,
    access: Arc<Access>,
}

async fn metrics(State(scrape): State<Scrape>) -> Result<Response, ApiError> {
    crate::handlers::health::scrape(&scrape.registry)
}

async fn authenticate(State(scrape): State<Scrape>, request: Request, next: Next) -> Response {
    crate::auth::authenticate_with(&scrape.access, request, next).await
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint at {}: this process serves /healthz and /metrics only (no api role)",
        uri.path()
    ))
}

/// The router: `/healthz`, `/metrics` of `registry`, behind `access`.
pub fn router(registry: Registry, access: Access) -> Router {
    let scrape = Scrape {
        registry,
        access: Arc::new(access),
    };
    Router::new()
        .route("/healthz", get(crate::handlers::health::healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            scrape.clone(),
            authenticate,
        ))
        .with_state(scrape)
}

/// Serves [`router`] on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    access: Access,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve_router(listener, router(registry, access), tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use gatemeter_query::access::{token_sha256, Credential, Role};
    use tower::ServiceExt;

    use super::*;

    async fn get_status(router: &Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn metrics_need_an_admin_token_and_nothing_else_is_served() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("gatemeter_probe_total", "a probe").expect("c");
        registry
            .register(Box::new(counter.clone()))
            .expect("register");
        counter.inc();
        let credential = |id: &str, role| Credential {
            id: id.to_owned(),
            role,
            teams: None,
            sha256: token_sha256(id),
            scram: None,
        };
        let access = Access::new(
            vec![
                credential("ops", Role::Admin),
                credential("viewer", Role::Viewer),
            ],
            false,
        );
        let router = router(registry, access);
        assert_eq!(
            get_status(&router, "/healthz", None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            get_status(&router, "/metrics", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_status(&router, "/metrics", Some("viewer")).await.0,
            StatusCode::FORBIDDEN
        );
        let (status, body) = get_status(&router, "/metrics", Some("ops")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("gatemeter_probe_total 1"), "{body}");
        let (status, body) = get_status(&router, "/api/v1/kpis", Some("ops")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("no api role"), "{body}");
    }
}
