//! The gatemeter lake (docs/lake.md): two Delta Lake tables
//! under one root, with gatemeter's own files beside them.
//!
//! - `attempts/` — Delta table partitioned by `date`/`hour` of
//!   `request_start` (UTC); data files
//!   `date=YYYY-MM-DD/hour=HH/part-{uuid}.parquet` (or `compacted-{uuid}`),
//!   zstd, sorted by `request_start`, with statistics;
//! - `dead_letters/` — Delta table of rejected events, without payloads;
//! - `_gatemeter/` — our own state (alerts), never inside a table.
//!
//! A flush writes uniquely named files, then one Delta commit naming them
//! with one app transaction per source partition (`gatemeter:<topic>:<p>`,
//! version = the partition's next offset). The log, not Kafka, is the
//! source of truth. Files no commit names (a crash, a lost race) are
//! invisible to every Delta reader and are removed by vacuum once older
//! than its retention.
//!
//! The lake sits on `object_store`: local disk and S3-compatible storage
//! share the write path, the log and compaction. What only a local lake
//! does (refusing a folder of the format before Delta Lake, the query
//! engine's column cache) checks `LakeLocation::local_dir` where it is.

mod actions;
mod compact;
#[cfg(any(test, feature = "fixtures"))]
pub mod earlier_release;
mod error;
mod lake;
pub mod legacy;
mod location;
pub mod manifest;
mod merge;
mod migrate;
mod parquet_file;
pub mod paths;
mod rollup;
mod stats;
mod storage;
mod table;

pub use actions::app_id;
pub use compact::{CompactionPlan, CompactionSummary};
pub use error::LakeError;
pub use lake::{CommitSummary, FailPoint, Lake, OpenReport, PendingCommit};
pub use location::LakeLocation;
pub use manifest::{FileEntry, SourceOffsets};
pub use migrate::MigrateReport;
pub use rollup::{RollupFile, RollupTable, StoredHour, ROLLUPS_DIR};
pub use storage::register_object_stores;

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod lake_tests;
