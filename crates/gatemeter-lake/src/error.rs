#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("legacy commit record {path} is unreadable: {reason}")]
    CorruptCommit { path: String, reason: String },
    #[error("another writer committed first: {detail}")]
    LostCommitRace { detail: String },
    #[error("Delta table {table}: {reason}")]
    Delta { table: String, reason: String },
    #[error("{path} holds a lake in the format before Delta Lake: run `gatemeter migrate --data-dir {path}` once to convert it")]
    LegacyFormat { path: String },
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("object store URL {url}: {reason}")]
    StoreUrl { url: String, reason: String },
}
