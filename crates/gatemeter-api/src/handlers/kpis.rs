//! KPI rows, the scorecard, and the SLO / budget / alert reports.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use gatemeter_query::access::Principal;
use gatemeter_query::output::json_rows;
use gatemeter_query::scorecard::{parse_duration, scorecard};
use gatemeter_query::{kpis, KpiQuery, Window, DIMENSIONS};
use serde_json::{json, Value};

use crate::auth::visible;
use crate::error::ApiError;
use crate::state::AppState;

pub fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name}=`{text}`: expected an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"
            ))
        })
}

fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `from`, `to`, `group_by`, `bucket`, `exact_percentiles`, `kpis` and
/// `<dimension>=<value>` filters;
/// anything else is refused by name.
fn kpi_request(params: &BTreeMap<String, String>) -> Result<(Window, KpiQuery), ApiError> {
    let mut window = Window::default();
    let mut query = KpiQuery::default();
    for (key, value) in params {
        match key.as_str() {
            "from" => window.from = Some(parse_time(key, value)?),
            "to" => window.to = Some(parse_time(key, value)?),
            "group_by" => query.group_by = comma_list(value),
            "bucket" => query.bucket = Some(value.clone()),
            "kpis" => query.kpis = comma_list(value),
            "exact_percentiles" => {
                query.exact_percentiles = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "exact_percentiles=`{value}`: expected true or false"
                        )))
                    }
                }
            }
            dimension if DIMENSIONS.contains(&dimension) => {
                query.filters.push((key.clone(), value.clone()))
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}` (from, to, group_by, bucket, exact_percentiles, kpis or a dimension: {})",
                    DIMENSIONS.join(", ")
                )))
            }
        }
    }
    query.validate()?;
    Ok((window, query))
}

/// The non-empty items of a comma-separated list.
fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub async fn get_kpis(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (window, mut query) = kpi_request(&params)?;
    query.scope = principal.teams;
    let engine = state.engine.clone();
    let settings = state.kpi_settings.clone();
    let rows = state
        .executor
        .run(async move {
            engine.refresh().await?;
            json_rows(&kpis(&engine, window, &query, &settings).await?)
        })
        .await?;
    Ok(Json(json!({"rows": rows})))
}

pub async fn get_scorecard(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut length = parse_duration("24h").map_err(ApiError::BadRequest)?;
    let mut end = Utc::now().timestamp_micros();
    for (key, value) in &params {
        match key.as_str() {
            "window" => {
                length = parse_duration(value)
                    .map_err(|e| ApiError::BadRequest(format!("window: {e}")))?
            }
            "at" => end = parse_time(key, value)?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}` (window, at)"
                )))
            }
        }
    }
    let engine = state.engine.clone();
    let settings = state.kpi_settings.clone();
    let targets = state.scorecard_targets.clone();
    let lines = state
        .executor
        .run(async move {
            engine.refresh().await?;
            scorecard(&engine, end, length, &settings, &targets, &principal.teams).await
        })
        .await?;
    Ok(Json(json!({
        "from": rfc3339(end - length),
        "to": rfc3339(end),
        "kpis": lines,
    })))
}

/// The report entries `principal` may see.
fn visible_entries(principal: &Principal, entries: Vec<Value>) -> Vec<Value> {
    entries
        .into_iter()
        .filter(|entry| visible(principal, entry))
        .collect()
}

pub async fn get_slo(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<Value> {
    Json(json!({"slos": visible_entries(&principal, state.reports().slos)}))
}

pub async fn get_budgets(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<Value> {
    Json(json!({"budgets": visible_entries(&principal, state.reports().budgets)}))
}

pub async fn get_alerts(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<Value> {
    Json(json!({"alerts": visible_entries(&principal, state.reports().alerts)}))
}
