//! `POST /api/v1/sql` (read-only, limited) and the named queries of
//! `queries/`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use chrono::Utc;
use gatemeter_query::access::Principal;
use gatemeter_query::{named, Window};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::with_sql;
use crate::encode::{negotiate, respond};
use crate::error::ApiError;
use crate::handlers::kpis::parse_time;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
    /// Optional window on `request_start`: only files and rows inside it
    /// are read (the same as a WHERE on request_start, but cheaper).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

pub async fn post_sql(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "body: {}; send {{\"sql\": \"SELECT …\"}}",
            e.body_text()
        ))
    })?;
    let sql = request.sql.clone();
    Ok(with_sql(
        sql,
        run_sql(state, principal, headers, request).await,
    ))
}

async fn run_sql(
    state: AppState,
    principal: Principal,
    headers: HeaderMap,
    request: SqlRequest,
) -> Result<Response, ApiError> {
    let format = negotiate(&headers)?;
    let window = Window {
        from: request
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?,
        to: request
            .to
            .as_deref()
            .map(|t| parse_time("to", t))
            .transpose()?,
    };
    state
        .executor
        .sql_then(
            state.engine.clone(),
            window,
            principal.teams,
            request.sql,
            move |result| respond(&result, format),
        )
        .await?
}

pub async fn list_queries() -> Result<Json<Value>, ApiError> {
    let catalog = named::catalog()?;
    Ok(Json(
        json!({"queries": catalog.values().collect::<Vec<_>>()}),
    ))
}

pub async fn run_named_query(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = negotiate(&headers)?;
    let sql = named::bind(&name, &params, Utc::now())?;
    let outcome = state
        .executor
        .sql_then(
            state.engine.clone(),
            Window::default(),
            principal.teams,
            sql.clone(),
            move |result| respond(&result, format),
        )
        .await
        .map_err(ApiError::from)
        .and_then(|encoded| encoded);
    Ok(with_sql(sql, outcome))
}
