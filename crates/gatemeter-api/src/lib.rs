//! gatemeter's HTTP API (README.md, "HTTP API"): health, readiness and metrics; KPIs,
//! scorecard, SLO, budgets and alerts; read-only SQL and the named queries;
//! and the OpenAPI document of all of it. The router is built from one
//! table of endpoints, which the OpenAPI test compares with the document.

pub mod audit;
pub mod auth;
pub mod encode;
pub mod error;
mod handlers;
pub mod http_metrics;
pub mod listener;
pub mod metrics_only;
pub mod openapi;
pub mod state;

use std::future::Future;

use axum::routing::{get, post, MethodRouter};
use axum::Router;

pub use error::ApiError;
pub use state::{AppState, Reports};

/// One route of the API.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

fn endpoint(method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> Endpoint {
    Endpoint {
        method,
        path,
        handler,
    }
}

/// Every endpoint the router serves.
pub fn endpoints() -> Vec<Endpoint> {
    use handlers::{health, kpis, sql};
    vec![
        endpoint("get", "/healthz", get(health::healthz)),
        endpoint("get", "/readyz", get(health::readyz)),
        endpoint("get", "/metrics", get(health::metrics)),
        endpoint("get", "/api/v1/kpis", get(kpis::get_kpis)),
        endpoint("get", "/api/v1/scorecard", get(kpis::get_scorecard)),
        endpoint("get", "/api/v1/slo", get(kpis::get_slo)),
        endpoint("get", "/api/v1/budgets", get(kpis::get_budgets)),
        endpoint("get", "/api/v1/alerts", get(kpis::get_alerts)),
        endpoint("post", "/api/v1/sql", post(sql::post_sql)),
        endpoint("get", "/api/v1/queries", get(sql::list_queries)),
        endpoint("get", "/api/v1/queries/{name}", get(sql::run_named_query)),
        endpoint("get", "/api/v1/openapi.json", get(openapi::get_openapi)),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for Endpoint { path, handler, .. } in endpoints() {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn(listener::read_body_in_time))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http_metrics::track,
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint at {}; see /api/v1/openapi.json",
        uri.path()
    ))
}

/// Serves the API on `listener` (over TLS when `tls` is given) until
/// `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve_router(listener, router(state), tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use gatemeter_query::access::{token_sha256, Access, Credential, Role};
    use gatemeter_query::audit::{AuditConfig, AuditLog};
    use gatemeter_query::executor::{QueryExecutor, QueryLimits};
    use gatemeter_query::{KpiSettings, QueryConfig, QueryEngine};
    use tower::ServiceExt;

    use super::*;

    async fn state(dir: &std::path::Path) -> AppState {
        state_with(dir, Access::default(), AuditLog::disabled()).await
    }

    async fn state_with(dir: &std::path::Path, access: Access, audit: AuditLog) -> AppState {
        let engine = QueryEngine::open(QueryConfig {
            data_dir: dir.to_path_buf(),
            ..QueryConfig::default()
        })
        .await
        .expect("engine");
        let executor = QueryExecutor::new(1, QueryLimits::default()).expect("executor");
        AppState::new(
            Arc::new(engine),
            executor,
            prometheus::Registry::new(),
            KpiSettings::default(),
            gatemeter_query::scorecard::default_targets(),
            access,
            Arc::new(audit),
        )
        .expect("state")
    }

    async fn call(
        state: &AppState,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        call_as(state, None, method, path, body).await
    }

    async fn call_as(
        state: &AppState,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"))
            .uri(path.replace("{name}", "unpriced_attempts"))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_owned())).expect("request");
        let response = router(state.clone())
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_endpoint_answers_its_documented_method() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state(dir.path()).await;
        state.set_ready(true);
        for endpoint in endpoints() {
            let body = if endpoint.method == "post" {
                r#"{"sql": "SELECT 1 AS one"}"#
            } else {
                ""
            };
            let (status, _) = call(&state, endpoint.method, endpoint.path, body).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{} {}",
                endpoint.method,
                endpoint.path
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_are_json_with_a_code_and_readiness_waits_for_recovery() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state(dir.path()).await;
        assert_eq!(
            call(&state, "get", "/readyz", "").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (status, body) = call(
            &state,
            "post",
            "/api/v1/sql",
            r#"{"sql": "DROP TABLE attempts"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "forbidden_statement");
        let (status, body) = call(&state, "get", "/api/v1/kpis?group_by=nope", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"));
        let (status, body) = call(&state, "get", "/api/v1/queries/no_such_query", "").await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (StatusCode::NOT_FOUND, "not_found".into())
        );
        let (status, _) = call(&state, "get", "/api/v1/nowhere", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_audit_log_records_who_ran_what_and_the_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = |id: &str, role| Credential {
            id: id.to_owned(),
            role,
            teams: Some(vec!["search".to_owned()]),
            sha256: token_sha256(&format!("secret-{id}")),
            scram: None,
        };
        let access = Access::new(
            vec![token("fin", Role::Finance), token("view", Role::Viewer)],
            false,
        );
        let path = dir.path().join("audit.log");
        let audit = AuditLog::open(AuditConfig {
            path: path.clone(),
            max_bytes: AuditConfig::DEFAULT_MAX_BYTES,
            keep: 1,
        })
        .expect("audit log");
        let state = state_with(dir.path(), access, audit).await;
        state.set_ready(true);
        let sql = r#"{"sql": "SELECT 1 AS one UNION ALL SELECT 2"}"#;
        assert_eq!(
            call_as(&state, Some("secret-fin"), "post", "/api/v1/sql", sql)
                .await
                .0,
            StatusCode::OK
        );
        let bad = r#"{"sql": "DROP TABLE attempts"}"#;
        assert_eq!(
            call_as(&state, Some("secret-fin"), "post", "/api/v1/sql", bad)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            call_as(&state, Some("secret-view"), "post", "/api/v1/sql", sql)
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call_as(&state, Some("wrong"), "get", "/api/v1/kpis", "")
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(call(&state, "get", "/healthz", "").await.0, StatusCode::OK);

        let text = std::fs::read_to_string(&path).expect("audit log");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect();
        let summary: Vec<_> = lines
            .iter()
            .map(|line| {
                (
                    line["endpoint"].as_str().unwrap_or_default().to_owned(),
                    line["token_id"].as_str().map(str::to_owned),
                    line["status"].as_str().unwrap_or_default().to_owned(),
                    line["rows"].as_u64(),
                )
            })
            .collect();
        let fin = Some("fin".to_owned());
        assert_eq!(
            summary,
            [
                (
                    "POST /api/v1/sql".to_owned(),
                    fin.clone(),
                    "200".to_owned(),
                    Some(2)
                ),
                ("POST /api/v1/sql".to_owned(), fin, "400".to_owned(), None),
                (
                    "POST /api/v1/sql".to_owned(),
                    Some("view".to_owned()),
                    "403".to_owned(),
                    None
                ),
                ("GET /api/v1/kpis".to_owned(), None, "401".to_owned(), None),
            ]
        );
        assert_eq!(lines[0]["sql"], "SELECT 1 AS one UNION ALL SELECT 2");
        assert_eq!(lines[1]["sql"], "DROP TABLE attempts");
        assert_eq!(lines[0]["teams"], serde_json::json!(["search"]));
        assert_eq!(lines[0]["role"], "finance");
        assert!(lines[0]["bytes"].as_u64().unwrap_or_default() > 0);
        assert!(!text.contains("secret-"), "tokens never reach the log");
    }
}
