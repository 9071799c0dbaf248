//! The commit record: the one object whose creation makes a flush visible.
//! It lists the files the flush wrote and each source partition's next
//! offset, and is written create-only, so two writers can never both own the
//! same sequence number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The newest commit record format this build reads. Format 1 only adds
/// files; format 2 (written by compaction) also takes files out of the
/// table, so a build that knows only format 1 refuses such a lake instead
/// of counting both the compacted file and the files it replaced.
pub const COMMIT_FORMAT_VERSION: u32 = 2;

/// The format of a record that only adds files, readable by every build.
pub const ADD_ONLY_FORMAT_VERSION: u32 = 1;

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
    /// Written by compaction: one row per `attempt_id` (the winner among
    /// every copy the replaced files held), so a query needs to compare its
    /// rows only with copies in files committed later.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
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
    /// Data files this commit takes out of the table (compaction replaced
    /// them); they stay on storage until vacuumed, for readers that listed
    /// them before this commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}
