//! Every error the API can answer with, and the one mapping from our
//! errors and DataFusion's to a status code. The matches have no wildcard
//! arm: a new error variant must be placed here on purpose. Internal detail
//! (paths, I/O errors, our bugs) is logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use datafusion::error::DataFusionError;
use gatemeter_query::QueryError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad parameter, named in the message.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("{0}")]
    Metrics(#[from] prometheus::Error),
}

/// How an error answers: status, stable code and whether its message may be
/// shown to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub status: StatusCode,
    pub code: &'static str,
    pub public: bool,
}

const fn class(status: StatusCode, code: &'static str, public: bool) -> Classified {
    Classified {
        status,
        code,
        public,
    }
}

const BAD_QUERY: Classified = class(StatusCode::BAD_REQUEST, "bad_query", true);
const INTERNAL: Classified = class(StatusCode::INTERNAL_SERVER_ERROR, "internal", false);

/// DataFusion's errors: the caller's query (400), over a limit (413), or
/// ours (500).
pub fn classify_datafusion(error: &DataFusionError) -> Classified {
    match error {
        DataFusionError::SQL(_, _)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(_, _)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_)
        | DataFusionError::ArrowError(_, _)
        | DataFusionError::Substrait(_) => BAD_QUERY,
        DataFusionError::ResourcesExhausted(_) => {
            class(StatusCode::PAYLOAD_TOO_LARGE, "resources_exhausted", true)
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify_datafusion(inner)
        }
        DataFusionError::Shared(inner) => classify_datafusion(inner),
        DataFusionError::Collection(errors) => errors.first().map_or(INTERNAL, classify_datafusion),
        DataFusionError::ParquetError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::IoError(_)
        | DataFusionError::Internal(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::External(_)
        | DataFusionError::Ffi(_) => INTERNAL,
    }
}

pub fn classify_query(error: &QueryError) -> Classified {
    match error {
        QueryError::DataFusion(inner) => classify_datafusion(inner),
        QueryError::Forbidden(_) => class(StatusCode::BAD_REQUEST, "forbidden_statement", true),
        QueryError::BadSql(_) => BAD_QUERY,
        QueryError::UnknownDimension(_, _)
        | QueryError::UnknownKpi(_, _)
        | QueryError::BadBucket(_)
        | QueryError::BadWindow { .. } => class(StatusCode::BAD_REQUEST, "bad_parameter", true),
        QueryError::QueryParam { .. } => class(StatusCode::BAD_REQUEST, "bad_parameter", true),
        QueryError::UnknownQuery(_) => class(StatusCode::NOT_FOUND, "not_found", true),
        QueryError::Timeout(_) => class(StatusCode::GATEWAY_TIMEOUT, "timeout", true),
        QueryError::TooManyRows(_) => class(StatusCode::PAYLOAD_TOO_LARGE, "too_many_rows", true),
        QueryError::ResultTooLarge(_) => {
            class(StatusCode::PAYLOAD_TOO_LARGE, "result_too_large", true)
        }
        QueryError::Arrow(_)
        | QueryError::Lake(_)
        | QueryError::Io { .. }
        | QueryError::PriceBook { .. }
        | QueryError::Runtime(_) => INTERNAL,
    }
}

impl ApiError {
    pub fn classify(&self) -> Classified {
        match self {
            ApiError::BadRequest(_) => class(StatusCode::BAD_REQUEST, "bad_parameter", true),
            ApiError::NotFound(_) => class(StatusCode::NOT_FOUND, "not_found", true),
            ApiError::NotAcceptable(_) => class(StatusCode::NOT_ACCEPTABLE, "not_acceptable", true),
            ApiError::Unauthorized(_) => class(StatusCode::UNAUTHORIZED, "unauthorized", true),
            ApiError::Forbidden(_) => class(StatusCode::FORBIDDEN, "forbidden", true),
            ApiError::PayloadTooLarge(_) => {
                class(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", true)
            }
            ApiError::RequestTimeout(_) => class(StatusCode::REQUEST_TIMEOUT, "body_timeout", true),
            ApiError::Query(error) => classify_query(error),
            ApiError::Metrics(_) => INTERNAL,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let classified = self.classify();
        let message = if classified.public {
            tracing::debug!(code = classified.code, error = %self, "request refused");
            self.to_string()
        } else {
            tracing::error!(code = classified.code, error = %self, "internal error");
            "internal error; see the server log".to_owned()
        };
        (
            classified.status,
            Json(json!({"error": {"code": classified.code, "message": message}})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_are_4xx_and_ours_are_500_without_detail() {
        let plan = ApiError::Query(QueryError::DataFusion(DataFusionError::Plan(
            "table x not found".into(),
        )));
        assert_eq!(plan.classify(), BAD_QUERY);
        let nested = DataFusionError::Context(
            "while running".into(),
            Box::new(DataFusionError::ResourcesExhausted("sort".into())),
        );
        assert_eq!(
            classify_datafusion(&nested).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let io = ApiError::Query(QueryError::Io {
            path: "/secret/path".into(),
            reason: "denied".into(),
        });
        assert_eq!(io.classify(), INTERNAL);
        let response = io.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            classify_query(&QueryError::Timeout(std::time::Duration::from_secs(1))).status,
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
