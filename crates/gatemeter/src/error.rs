/// Everything the binary reports as a one-line error with a nonzero exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("{0}")]
    Ingest(#[from] gatemeter_ingest::IngestError),
    #[error("lake: {0}")]
    Lake(#[from] gatemeter_lake::LakeError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("trace {path}: {source}")]
    Trace {
        path: String,
        source: crate::synth::replay::TraceError,
    },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}")]
    Query(#[from] gatemeter_query::QueryError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("postgres endpoint: {0}")]
    Pg(#[from] gatemeter_pg::PgError),
}

impl CliError {
    pub fn io(path: impl std::fmt::Display, error: std::io::Error) -> Self {
        CliError::Io {
            path: path.to_string(),
            reason: error.to_string(),
        }
    }
}
