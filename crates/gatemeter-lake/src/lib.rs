//! The gatemeter Parquet lake (SPEC 2.1–2.3).
//!
//! Layout under the data directory:
//! - `attempts/date=YYYY-MM-DD/hour=HH/{commit}-{n}.parquet` — the table,
//!   Hive-partitioned by `request_start` (UTC), zstd, sorted, with statistics;
//! - `dead_letters/{commit}-{n}.parquet` — rejected events, without payloads;
//! - `_gatemeter/commits/{sequence}.json` — commit records, written
//!   create-only after the files they name. A file no record names is an
//!   orphan of a crash and is deleted when the lake is next opened; a file
//!   a compaction record took out stays until [`Lake::vacuum`].
//!
//! The lake sits on `object_store`, so local disk and S3-compatible storage
//! are the same code.

mod compact;
mod error;
mod lake;
pub mod manifest;
mod parquet_file;
pub mod paths;

pub use compact::{deduplicate, CompactionPlan, CompactionSummary};
pub use error::LakeError;
pub use lake::{CommitSummary, FailPoint, Lake, PendingCommit, RecoveryReport};
pub use manifest::{CommitRecord, FileEntry, SourceOffsets};

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod lake_tests;
