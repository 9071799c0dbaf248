#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("price book line {line}, column {column}: {reason}")]
    PriceBook {
        line: usize,
        column: String,
        reason: String,
    },
    #[error("query: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("lake: {0}")]
    Lake(#[from] gatemeter_lake::LakeError),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("unknown dimension `{0}` (one of: {1})")]
    UnknownDimension(String, String),
    #[error("unknown KPI `{0}` (one of: {1})")]
    UnknownKpi(String, String),
    #[error("bucket `{0}` is not one of 1m, 5m, 15m, 1h, 6h, 1d")]
    BadBucket(String),
    #[error("window: `from` ({from}) must be before `to` ({to})")]
    BadWindow { from: String, to: String },
    #[error("named query `{0}` does not exist")]
    UnknownQuery(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("SQL: {0}")]
    BadSql(String),
    #[error("the query ran longer than its limit of {0:?}")]
    Timeout(std::time::Duration),
    #[error("the result has more than {0} rows; add a LIMIT or aggregate")]
    TooManyRows(usize),
    #[error("the result is larger than {0} bytes; select fewer columns, add a LIMIT or aggregate")]
    ResultTooLarge(usize),
    #[error("query runtime: {0}")]
    Runtime(String),
    #[error("named query `{query}`: {reason}")]
    QueryParam { query: String, reason: String },
}
