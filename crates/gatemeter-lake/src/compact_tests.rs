use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, Duration};
use gatemeter_schema::AttemptRow;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::lake::{Lake, PendingCommit};
use crate::lake_tests::row_from_json;
use crate::manifest::SourceOffsets;
use crate::LakeError;

fn copy(attempt: &str, version: i64, request_start: &str, offset: i64) -> AttemptRow {
    let json = format!(
        r#"{{"schema_version":1,"attempt_id":"{attempt}","event_version":{version},"request_id":"r-{attempt}",
        "attempt_index":0,"attempt_kind":"initial","is_final":true,"request_start":"{request_start}",
        "attempt_start":"{request_start}","attempt_end":"{request_start}","requested_model":"m",
        "provider":"p","api_key_id":"k","environment":"prod","outcome":"success"}}"#
    );
    row_from_json(&json, offset)
}

async fn commit(lake: &mut Lake, rows: Vec<AttemptRow>, next_offset: i64) {
    lake.commit(PendingCommit {
        writer: "test".into(),
        rows,
        offsets: SourceOffsets::from([("t".to_owned(), BTreeMap::from([(0, next_offset)]))]),
        ..Default::default()
    })
    .await
    .expect("commit");
}

fn micros(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .timestamp_micros()
}

fn read(dir: &Path, path: &str) -> RecordBatch {
    let bytes = bytes::Bytes::from(std::fs::read(dir.join(path)).expect("read"));
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches");
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

/// The `attempt_id` column of `batch`, in order.
fn attempt_ids(batch: &RecordBatch) -> Vec<&str> {
    batch
        .column_by_name("attempt_id")
        .expect("attempt_id")
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect()
}

/// Hour 10 gets three files: a, b; b again (producer duplicate) and a
/// correction of a (version 2); c. Hour 11 gets one file.
async fn lake_with_duplicates(dir: &Path) -> Lake {
    let (mut lake, _) = Lake::open_local(dir, None).await.expect("open");
    commit(
        &mut lake,
        vec![
            copy("a", 1, "2026-11-01T10:05:00Z", 0),
            copy("b", 1, "2026-11-01T10:01:00Z", 1),
        ],
        2,
    )
    .await;
    commit(
        &mut lake,
        vec![
            copy("b", 1, "2026-11-01T10:01:00Z", 2),
            copy("a", 2, "2026-11-01T10:05:00Z", 3),
            copy("d", 1, "2026-11-01T11:30:00Z", 4),
        ],
        5,
    )
    .await;
    commit(&mut lake, vec![copy("c", 1, "2026-11-01T10:03:00Z", 5)], 6).await;
    lake
}

#[tokio::test]
async fn only_settled_partitions_with_work_are_planned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = lake_with_duplicates(dir.path()).await;
    // Hour 11 has one file but it is not deduplicated yet; it is not settled
    // until 12:00.
    let plans = lake.compaction_plans(micros("2026-11-01T11:59:59Z"));
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].partition.hour, 10);
    assert_eq!((plans[0].files.len(), plans[0].rows()), (3, 5));
    assert_eq!(
        lake.compaction_plans(micros("2026-11-01T12:00:00Z")).len(),
        2
    );
}

#[tokio::test]
async fn compaction_keeps_one_winning_copy_per_attempt_in_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lake = lake_with_duplicates(dir.path()).await;
    let plan = lake.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    let summary = lake.compact(&plan).await.expect("compact");
    assert_eq!(
        (
            summary.version,
            summary.files_replaced,
            summary.rows_read,
            summary.rows_written
        ),
        (4, 3, 5, 3)
    );

    let hour10: Vec<_> = lake
        .data_files()
        .filter(|f| f.path.contains("hour=10"))
        .cloned()
        .collect();
    assert_eq!(hour10.len(), 1);
    assert!(hour10[0].deduplicated && hour10[0].path.contains("/compacted-"));
    assert_eq!(
        hour10[0].min_request_start,
        Some(micros("2026-11-01T10:01:00Z"))
    );
    assert_eq!(
        hour10[0].max_request_start,
        Some(micros("2026-11-01T10:05:00Z"))
    );

    // Sorted by request_start; the correction of `a` won.
    let batch = read(dir.path(), &hour10[0].path);
    let ids = attempt_ids(&batch);
    assert_eq!(ids, ["b", "c", "a"]);
    let versions = batch
        .column_by_name("event_version")
        .expect("event_version")
        .as_primitive::<Int64Type>();
    assert_eq!(versions.value(2), 2);

    // Nothing left to do there; a reader loading the log agrees; offsets kept.
    assert!(lake
        .compaction_plans(micros("2026-11-01T11:00:00Z"))
        .is_empty());
    let location = crate::LakeLocation::local(dir.path()).expect("location");
    let mut reader = Lake::open_existing(&location)
        .await
        .expect("load")
        .expect("a lake");
    assert_eq!(reader.data_files().count(), 2);
    assert_eq!(
        reader.load_offsets("t", &[0]).await.expect("offsets")[&0],
        Some(6)
    );
}

#[tokio::test]
async fn replaced_files_stay_readable_until_vacuumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lake = lake_with_duplicates(dir.path()).await;
    let plan = lake.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    lake.compact(&plan).await.expect("compact");
    let replaced: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();

    // A reader that listed them before the compaction can still read them.
    let (mut reopened, _) = Lake::open_local(dir.path(), None).await.expect("reopen");
    assert!(reopened
        .vacuum(Duration::minutes(15))
        .await
        .expect("vacuum")
        .is_empty());
    for path in &replaced {
        assert!(dir.path().join(path).exists(), "{path}");
    }
    let mut vacuumed = reopened.vacuum(Duration::zero()).await.expect("vacuum");
    vacuumed.sort();
    let mut expected = replaced.clone();
    expected.sort();
    assert_eq!(vacuumed, expected);
    for path in &replaced {
        assert!(!dir.path().join(path).exists(), "{path}");
    }
    assert_eq!(reopened.data_files().count(), 2);
}

#[tokio::test]
async fn a_late_file_committed_during_compaction_stays_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut compactor = lake_with_duplicates(dir.path()).await;
    let (mut ingest, _) = Lake::open_local(dir.path(), None).await.expect("open");
    ingest.load_offsets("t", &[0]).await.expect("offsets");
    let plan = compactor.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    commit(
        &mut ingest,
        vec![copy("e", 1, "2026-11-01T10:59:00Z", 6)],
        7,
    )
    .await;

    let summary = compactor.compact(&plan).await.expect("compact");
    assert_eq!(summary.files_replaced, 3);
    let hour10: Vec<_> = compactor
        .data_files()
        .filter(|f| f.path.contains("hour=10"))
        .cloned()
        .collect();
    assert_eq!(hour10.len(), 2, "the compacted file and the late one");
    assert_eq!(hour10.iter().map(|f| f.rows).sum::<u64>(), 4);
}

#[tokio::test]
async fn a_compaction_that_loses_the_race_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = lake_with_duplicates(dir.path()).await;
    let (mut second, _) = Lake::open_local(dir.path(), None).await.expect("open");
    let plan = second.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    first.compact(&plan).await.expect("first compacts");

    let lost = second.compact(&plan).await;
    assert!(
        matches!(lost, Err(LakeError::LostCommitRace { .. })),
        "{lost:?}"
    );
    // The first compaction's file is live; nothing is left to plan.
    assert!(second
        .compaction_plans(micros("2026-11-01T11:00:00Z"))
        .is_empty());
    assert_eq!(
        second
            .data_files()
            .filter(|f| f.path.contains("hour=10"))
            .map(|f| f.rows)
            .sum::<u64>(),
        3
    );
}

/// A lake of the schema before `retry_after_ms` and `zero_data_retention`:
/// the first writer appends them to the table's schema, writes its rows
/// with them, and compaction merges the old file's rows (nulls there) with
/// the new ones into a file of the whole schema.
#[tokio::test]
async fn a_lake_of_the_earlier_schema_gains_the_new_columns_and_compacts_old_rows_with_new() {
    use arrow::array::Array;
    use arrow::datatypes::Float64Type;

    let dir = tempfile::tempdir().expect("tempdir");
    let old = [copy("a", 1, "2026-11-01T10:05:00Z", 0)];
    crate::earlier_release::write_earlier_lake(dir.path(), &old)
        .await
        .expect("earlier lake");
    let log = |dir: &Path| -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir.join("attempts/_delta_log")).expect("log") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                text.push_str(&std::fs::read_to_string(path).expect("commit"));
            }
        }
        text
    };
    assert!(!log(dir.path()).contains("retry_after_ms"));

    let (mut lake, report) = Lake::open_local(dir.path(), None).await.expect("open");
    assert_eq!(report.data_files, 1, "the earlier file is kept");
    assert!(
        log(dir.path()).contains("zero_data_retention"),
        "columns added"
    );
    let json = r#"{"schema_version":1,"attempt_id":"b","request_id":"r-b","attempt_index":0,
        "attempt_kind":"initial","is_final":true,"request_start":"2026-11-01T10:01:00Z",
        "attempt_start":"2026-11-01T10:01:00Z","attempt_end":"2026-11-01T10:01:02Z",
        "requested_model":"m","provider":"p","api_key_id":"k","environment":"prod",
        "outcome":"error","http_status":429,"error_class":"rate_limited",
        "retry_after_ms":1500,"zero_data_retention":true}"#;
    commit(&mut lake, vec![row_from_json(json, 1)], 2).await;
    // A second writer opening it now finds nothing to add.
    let before = log(dir.path()).len();
    Lake::open_local(dir.path(), None).await.expect("reopen");
    assert_eq!(log(dir.path()).len(), before, "no second schema commit");

    let plan = lake.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    assert_eq!(plan.files.len(), 2);
    lake.compact(&plan).await.expect("compact");
    let file = lake.data_files().next().expect("compacted").path.clone();
    let batch = read(dir.path(), &file);
    assert_eq!(
        batch.num_columns(),
        gatemeter_schema::attempts_schema().fields().len()
    );
    let ids = attempt_ids(&batch);
    assert_eq!(ids, ["b", "a"], "sorted by request_start");
    let waits = batch
        .column_by_name("retry_after_ms")
        .expect("retry_after_ms")
        .as_primitive::<Float64Type>()
        .clone();
    assert_eq!((waits.value(0), waits.is_null(1)), (1500.0, true));
    let retention = batch
        .column_by_name("zero_data_retention")
        .expect("zero_data_retention")
        .as_boolean()
        .clone();
    assert_eq!((retention.value(0), retention.is_null(1)), (true, true));
}
