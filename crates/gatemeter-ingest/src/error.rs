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
    #[error("not caught up after {seconds} s: {behind} of topic {topic} not stored up to the high watermark read at start")]
    NotCaughtUp {
        topic: String,
        seconds: u64,
        behind: String,
    },
    #[error("the Kafka consumer stopped: {0}")]
    Fatal(String),
}
