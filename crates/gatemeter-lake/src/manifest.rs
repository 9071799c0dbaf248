//! What the lake knows of one committed file, and source positions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One file of a table, as its log names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lake-relative path (`attempts/date=…/hour=…/part-….parquet`).
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Bounds of `request_start` in the file (µs since epoch, from the
    /// millisecond statistics, so rounded outward); absent for dead-letter
    /// files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_request_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_start: Option<i64>,
    /// Written by compaction (`compacted-….parquet`): one row per
    /// `attempt_id` (the winner among every copy the replaced files held),
    /// so a query needs to compare its rows only with copies in other files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

/// The next offset to read for each partition of each source topic.
pub type SourceOffsets = BTreeMap<String, BTreeMap<i32, i64>>;
