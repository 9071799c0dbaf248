//! Query results in the format the caller's `Accept` header asks for:
//! JSON (default), CSV or an Arrow IPC stream.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::ipc::writer::StreamWriter;
use gatemeter_query::executor::QueryResult;
use gatemeter_query::output::{csv, json_rows};
use gatemeter_query::QueryError;
use serde_json::json;

use crate::audit::ResultRows;
use crate::error::ApiError;

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

/// The first acceptable type of the `Accept` header (no header: JSON).
pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let Some(accept) = headers.get(ACCEPT) else {
        return Ok(Format::Json);
    };
    let accept = accept
        .to_str()
        .map_err(|_| ApiError::BadRequest("Accept header is not text".into()))?;
    for item in accept.split(',') {
        let media = item
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => return Ok(Format::Json),
            "text/csv" | "text/*" => return Ok(Format::Csv),
            ARROW_STREAM => return Ok(Format::Arrow),
            _ => {}
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "Accept `{accept}`: answers are application/json, text/csv or {ARROW_STREAM}"
    )))
}

/// `result` encoded as `format`, carrying its row count for the audit log.
pub fn respond(result: &QueryResult, format: Format) -> Result<Response, ApiError> {
    let rows: usize = result.batches.iter().map(|batch| batch.num_rows()).sum();
    let mut response = encode(result, format)?;
    response.extensions_mut().insert(ResultRows(rows as u64));
    Ok(response)
}

fn encode(result: &QueryResult, format: Format) -> Result<Response, ApiError> {
    match format {
        Format::Json => {
            let columns: Vec<_> = result
                .schema
                .fields()
                .iter()
                .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let rows = json_rows(&result.batches)?;
            Ok(axum::Json(json!({"columns": columns, "rows": rows})).into_response())
        }
        Format::Csv => {
            let mut text = csv(&result.batches)?;
            if text.is_empty() {
                let names: Vec<&str> = result
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                text = format!("{}\n", names.join(","));
            }
            Ok(([(CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
        }
        Format::Arrow => {
            let mut writer =
                StreamWriter::try_new(Vec::new(), &result.schema).map_err(QueryError::from)?;
            for batch in &result.batches {
                writer.write(batch).map_err(QueryError::from)?;
            }
            writer.finish().map_err(QueryError::from)?;
            let bytes = writer.into_inner().map_err(QueryError::from)?;
            Ok(([(CONTENT_TYPE, ARROW_STREAM)], bytes).into_response())
        }
    }
}
