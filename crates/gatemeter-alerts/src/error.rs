#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{0}")]
    Allowlist(String),
    #[error("alerts config: {0}")]
    Config(String),
    #[error("{0}")]
    Query(#[from] gatemeter_query::QueryError),
    #[error("alert state {path}: {reason}")]
    State { path: String, reason: String },
    #[error("notify {target}: {reason}")]
    Notify { target: String, reason: String },
}
