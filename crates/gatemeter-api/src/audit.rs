//! One audit-log line per request (docs/security.md, "Audit log"), health
//! probes excepted. It wraps authentication, so refused requests are
//! recorded too; the handlers that run SQL leave the statement and the row
//! count in the response for it.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gatemeter_query::access::Principal;
use gatemeter_query::audit::AuditRecord;

use crate::error::ApiError;
use crate::state::AppState;

/// The statement a handler ran, for the audit line.
#[derive(Debug, Clone)]
struct AuditedSql(String);

/// How many rows a handler answered with.
#[derive(Debug, Clone, Copy)]
pub struct ResultRows(pub u64);

/// `outcome` as a response that carries `sql` for the audit line.
pub fn with_sql(sql: String, outcome: Result<Response, ApiError>) -> Response {
    let mut response = outcome.into_response();
    response.extensions_mut().insert(AuditedSql(sql));
    response
}

pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !state.audit.is_enabled() || path == "/healthz" || path == "/readyz" {
        return next.run(request).await;
    }
    let time = Utc::now();
    let started = Instant::now();
    let endpoint = format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map_or(path, |target| target.as_str())
    );
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.to_string());
    let response = next.run(request).await;

    let mut record = AuditRecord::new(time, "http", endpoint);
    record.peer = peer;
    if let Some(principal) = response.extensions().get::<Principal>() {
        record.set_principal(principal);
    }
    if let Some(AuditedSql(sql)) = response.extensions().get::<AuditedSql>() {
        record.set_sql(sql);
    }
    record.rows = response
        .extensions()
        .get::<ResultRows>()
        .map(|ResultRows(rows)| *rows);
    let size = response.body().size_hint();
    record.bytes = size.exact().unwrap_or(size.lower());
    record.status = response.status().as_str().to_owned();
    record.set_duration(started.elapsed());
    state.audit.record(&record);
    response
}
