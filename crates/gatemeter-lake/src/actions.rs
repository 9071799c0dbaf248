//! The Delta log actions gatemeter writes (adds, removes, app
//! transactions, commit info) and how it reads an added file back; the
//! tables' layout and the meaning of an app transaction are in
//! docs/lake.md.

use std::collections::HashMap;

use chrono::Utc;
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, PrimitiveType, Remove, Transaction,
};

use crate::manifest::{FileEntry, SourceOffsets};
use crate::paths::{DataFilePath, HourPartition};
use crate::stats::read_stats;
use crate::table::LiveFile;

/// The app transaction id of one source partition: `gatemeter:<topic>:<partition>`,
/// whose version is the partition's next offset.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("gatemeter:{topic}:{partition}")
}

pub(crate) fn partition_columns() -> [(&'static str, DeltaType); 2] {
    [
        ("date", DeltaType::Primitive(PrimitiveType::Date)),
        ("hour", DeltaType::Primitive(PrimitiveType::Integer)),
    ]
}

/// What a commit says of its writer in the log's commitInfo.
pub(crate) fn commit_metadata(writer: &str) -> HashMap<String, serde_json::Value> {
    HashMap::from([(
        "gatemeter.writer".to_owned(),
        serde_json::Value::String(writer.to_owned()),
    )])
}

/// The Delta partition values of a file of `partition` (none for a table
/// without partitions).
pub(crate) fn partition_values(
    partition: Option<HourPartition>,
) -> HashMap<String, Option<String>> {
    partition
        .map(|p| {
            HashMap::from([
                ("date".to_owned(), Some(p.date_value())),
                ("hour".to_owned(), Some(p.hour.to_string())),
            ])
        })
        .unwrap_or_default()
}

/// The Remove action of a live file, as compaction and rollups replace it.
pub(crate) fn remove_action(
    path: &str,
    size: i64,
    partition_values: HashMap<String, Option<String>>,
) -> Action {
    Action::Remove(Remove {
        path: path.to_owned(),
        data_change: true,
        deletion_timestamp: Some(Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        partition_values: Some(partition_values),
        size: Some(size),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    })
}

pub(crate) fn add_action(
    in_table: &str,
    size: i64,
    partition_values: HashMap<String, Option<String>>,
    stats: String,
) -> Add {
    Add {
        path: in_table.to_owned(),
        partition_values,
        size,
        modification_time: Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

pub(crate) fn txn(topic: &str, partition: i32, next: i64) -> Transaction {
    Transaction {
        app_id: app_id(topic, partition),
        version: next,
        last_updated: Some(Utc::now().timestamp_millis()),
    }
}

pub(crate) fn txn_actions(offsets: &SourceOffsets) -> impl Iterator<Item = Action> + '_ {
    offsets.iter().flat_map(|(topic, partitions)| {
        partitions
            .iter()
            .map(move |(partition, next)| Action::Txn(txn(topic, *partition, *next)))
    })
}

/// The lake's view of one file the log names.
pub(crate) fn file_entry(table_dir: &str, file: &LiveFile) -> FileEntry {
    let path = format!("{table_dir}/{}", file.path);
    FileEntry {
        deduplicated: DataFilePath::parse(&path).is_some_and(|p| p.compacted),
        path,
        rows: file.rows.unwrap_or(0),
        bytes: file.size.max(0) as u64,
        min_request_start: file.min_request_start,
        max_request_start: file.max_request_start,
    }
}

/// The log's view of a file this process just added.
pub(crate) fn live_file(add: &Add) -> LiveFile {
    let stats = add.stats.as_deref().map(read_stats).unwrap_or_default();
    let value = |name: &str| add.partition_values.get(name).cloned().flatten();
    LiveFile {
        path: add.path.clone(),
        size: add.size,
        rows: stats.rows,
        min_request_start: stats.min_request_start,
        max_request_start: stats.max_request_start,
        partition: value("date")
            .zip(value("hour"))
            .and_then(|(date, hour)| HourPartition::from_values(&date, &hour)),
    }
}
