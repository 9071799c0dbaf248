#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("commit record {path} is unreadable: {reason}")]
    CorruptCommit { path: String, reason: String },
    #[error("commit {sequence} was written by another writer first")]
    LostCommitRace { sequence: u64 },
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("object store URL {url}: {reason}")]
    StoreUrl { url: String, reason: String },
}
