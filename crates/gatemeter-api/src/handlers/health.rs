//! Liveness, readiness and the Prometheus scrape endpoint. None of these
//! touch the query pool, so they answer while a heavy query runs.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::{Encoder, TextEncoder};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "recovering"})),
        )
            .into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    scrape(&state.registry)
}

/// `registry` in Prometheus' text format (the API's and the metrics-only
/// listener's `/metrics`).
pub fn scrape(registry: &prometheus::Registry) -> Result<Response, ApiError> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    encoder.encode(&registry.gather(), &mut body)?;
    Ok(([(CONTENT_TYPE, encoder.format_type().to_owned())], body).into_response())
}
