#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("lake: {0}")]
    Lake(#[from] gatemeter_lake::LakeError),
    #[error("reading {path}: {reason}")]
    Input { path: String, reason: String },
    #[error("reading the topic's partitions: {0}")]
    Metadata(String),
    #[error("invalid Kafka option `{0}`: expected key=value")]
    BadOption(String),
}
