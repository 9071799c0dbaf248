//! The commit record: the one object whose creation makes a flush visible.
//! It lists the files the flush wrote and each source partition's next
//! offset, and is written create-only, so two writers can never both own the
//! same sequence number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Current commit record format.
pub const COMMIT_FORMAT_VERSION: u32 = 1;

/// One file named by a commit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lake-relative path.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Smallest and largest `request_start` in the file (µs since epoch);
    /// absent for dead-letter files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_request_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_start: Option<i64>,
}

/// The next offset to read for each partition of each source topic.
pub type SourceOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub format_version: u32,
    pub sequence: u64,
    /// RFC 3339 wall-clock time of the commit, for people reading the log.
    pub committed_at: String,
    /// Who wrote it (`ingest`, `import`, …), for people reading the log.
    pub writer: String,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub dead_letter_files: Vec<FileEntry>,
    /// Next offsets of the partitions this commit advanced; a partition
    /// absent here keeps the offset of the last commit that named it.
    #[serde(default)]
    pub offsets: SourceOffsets,
}
