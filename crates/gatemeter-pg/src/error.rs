//! Errors of the PostgreSQL endpoint: what stops it from starting, and the
//! SQLSTATE-coded errors a client sees.

use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Query(#[from] gatemeter_query::QueryError),
    #[error("pg_catalog: {0}")]
    Catalog(String),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// SQLSTATE 25006 `read_only_sql_transaction`, as PostgreSQL answers a
/// write on a read-only connection.
pub fn read_only_violation(reason: &str) -> PgWireError {
    user_error("25006", format!("gatemeter is read-only: {reason}"))
}

/// SQLSTATE 57014 `query_canceled`, PostgreSQL's answer to a statement
/// timeout.
pub fn timed_out(limit: std::time::Duration) -> PgWireError {
    user_error(
        "57014",
        format!(
            "canceling statement: it ran longer than the limit of {} ms",
            limit.as_millis()
        ),
    )
}

/// SQLSTATE 54000 `program_limit_exceeded`.
pub fn too_many_rows(max_rows: usize) -> PgWireError {
    user_error(
        "54000",
        format!("the result has more than {max_rows} rows; add a LIMIT or aggregate"),
    )
}

/// SQLSTATE 54000 `program_limit_exceeded`, for bytes.
pub fn result_too_large(max_bytes: usize) -> PgWireError {
    user_error(
        "54000",
        format!(
            "the result is larger than {max_bytes} bytes; select fewer columns, add a LIMIT or aggregate"
        ),
    )
}

/// SQLSTATE 42601 `syntax_error`.
pub fn syntax_error(message: &str) -> PgWireError {
    user_error("42601", message.to_owned())
}

/// SQLSTATE XX000 with no internal detail; the detail goes to the log.
pub fn server_error(error: &dyn std::fmt::Display) -> PgWireError {
    tracing::error!(%error, "pg endpoint");
    user_error("XX000", "internal error; see the gatemeter log".to_owned())
}
