use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, Duration, Utc};
use gatemeter_schema::AttemptRow;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::lake::{Lake, PendingCommit};
use crate::lake_tests::row_from_json;
use crate::manifest::SourceOffsets;
use crate::paths::object_path;
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

async fn read(store: &Arc<dyn ObjectStore>, path: &str) -> RecordBatch {
    let bytes = store
        .get(&object_path(&path))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches");
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

/// Hour 10 gets three files: a, b; b again (producer duplicate) and a
/// correction of a (version 2); c. Hour 11 gets one file.
async fn lake_with_duplicates(store: &Arc<dyn ObjectStore>) -> Lake {
    let (mut lake, _) = Lake::open(store.clone(), None).await.expect("open");
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
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let lake = lake_with_duplicates(&store).await;
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
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut lake = lake_with_duplicates(&store).await;
    let plan = lake.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    let summary = lake.compact(&plan).await.expect("compact");
    assert_eq!(
        (
            summary.sequence,
            summary.files_replaced,
            summary.rows_read,
            summary.rows_written
        ),
        (3, 3, 5, 3)
    );

    let hour10: Vec<_> = lake
        .data_files()
        .filter(|f| f.path.contains("hour=10"))
        .cloned()
        .collect();
    assert_eq!(hour10.len(), 1);
    assert!(hour10[0].deduplicated && hour10[0].path.contains("-compacted-"));
    assert_eq!(
        hour10[0].min_request_start,
        Some(micros("2026-11-01T10:01:00Z"))
    );
    assert_eq!(
        hour10[0].max_request_start,
        Some(micros("2026-11-01T10:05:00Z"))
    );

    // Sorted by request_start; the correction of `a` won.
    let batch = read(&store, &hour10[0].path).await;
    let ids: Vec<&str> = batch
        .column_by_name("attempt_id")
        .expect("attempt_id")
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
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
    let reader = Lake::load(store.clone()).await.expect("load");
    assert_eq!(reader.data_files().count(), 2);
    assert_eq!(reader.next_offset("t", 0), Some(6));
}

#[tokio::test]
async fn replaced_files_survive_recovery_until_vacuumed() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut lake = lake_with_duplicates(&store).await;
    let plan = lake.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    lake.compact(&plan).await.expect("compact");
    let replaced: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();

    // A reader that listed them before the compaction can still read them.
    let (mut reopened, report) = Lake::open(store.clone(), None).await.expect("reopen");
    assert!(report.orphans_deleted.is_empty(), "{report:?}");
    assert!(reopened
        .vacuum(Utc::now() - Duration::minutes(15))
        .await
        .expect("vacuum")
        .is_empty());
    let mut vacuumed = reopened
        .vacuum(Utc::now() + Duration::seconds(1))
        .await
        .expect("vacuum");
    vacuumed.sort();
    assert_eq!(vacuumed, replaced);
    for path in &replaced {
        assert!(store.head(&object_path(path)).await.is_err(), "{path}");
    }
}

#[tokio::test]
async fn a_compaction_that_loses_the_race_changes_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut compactor = lake_with_duplicates(&store).await;
    let (mut ingest, _) = Lake::open(store.clone(), None).await.expect("open");
    let plan = compactor.compaction_plans(micros("2026-11-01T11:00:00Z"))[0].clone();
    commit(
        &mut ingest,
        vec![copy("e", 1, "2026-11-01T10:59:00Z", 6)],
        7,
    )
    .await;

    let lost = compactor.compact(&plan).await;
    assert!(
        matches!(lost, Err(LakeError::LostCommitRace { sequence: 3 })),
        "{lost:?}"
    );
    // The old files are live, plus the late one; the new plan includes it.
    let plans = compactor.compaction_plans(micros("2026-11-01T11:00:00Z"));
    assert_eq!((plans[0].files.len(), plans[0].rows()), (4, 6));
    // The loser's compacted file is an orphan for the next recovery.
    let (_, report) = Lake::open(store.clone(), None).await.expect("reopen");
    assert_eq!(report.orphans_deleted.len(), 1);
    assert!(report.orphans_deleted[0].contains("-compacted-"));
}
