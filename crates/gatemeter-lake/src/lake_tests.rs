use std::collections::BTreeMap;
use std::sync::Arc;

use gatemeter_schema::{decode_event, AttemptRow, DeadLetter, DecodeError, SourcePosition};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::lake::{Lake, PendingCommit};
use crate::manifest::SourceOffsets;
use crate::LakeError;

fn row(attempt: u32, request_start: &str, offset: i64) -> AttemptRow {
    let json = format!(
        r#"{{"schema_version":1,"attempt_id":"a{attempt}","request_id":"r{attempt}","attempt_index":0,
        "attempt_kind":"initial","is_final":true,"request_start":"{request_start}",
        "attempt_start":"{request_start}","attempt_end":"{request_start}","requested_model":"m",
        "provider":"p","api_key_id":"k","environment":"prod","outcome":"success"}}"#
    );
    row_from_json(&json, offset)
}

/// The event `json`, read from offset `offset` of partition 0 of topic `t`.
pub(crate) fn row_from_json(json: &str, offset: i64) -> AttemptRow {
    AttemptRow {
        event: decode_event(json.as_bytes()).expect("valid event"),
        source: SourcePosition {
            topic: "t".into(),
            partition: 0,
            offset,
        },
    }
}

fn offsets(partition: i32, next: i64) -> SourceOffsets {
    BTreeMap::from([("t".to_owned(), BTreeMap::from([(partition, next)]))])
}

async fn all_paths(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut paths: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    paths.sort();
    paths
}

#[tokio::test]
async fn a_commit_splits_rows_by_hour_and_survives_reopening() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (mut lake, report) = Lake::open(store.clone(), None).await.expect("open");
    assert_eq!(report.commits, 0);
    let bad = DecodeError::MissingField("provider");
    let summary = lake
        .commit(PendingCommit {
            writer: "test".into(),
            rows: vec![
                row(1, "2026-11-01T10:59:00Z", 0),
                row(2, "2026-11-01T11:00:00Z", 1),
                row(3, "2026-11-01T10:01:00Z", 2),
            ],
            dead_letters: vec![DeadLetter::new(
                SourcePosition {
                    topic: "t".into(),
                    partition: 0,
                    offset: 3,
                },
                None,
                &bad,
                b"{}",
            )],
            offsets: offsets(0, 4),
        })
        .await
        .expect("commit");
    assert_eq!(
        (
            summary.sequence,
            summary.files,
            summary.rows,
            summary.dead_letters
        ),
        (0, 3, 3, 1)
    );
    assert_eq!(
        all_paths(&store).await,
        vec![
            "_gatemeter/commits/00000000000000000000.json",
            "attempts/date=2026-11-01/hour=10/00000000000000000000-0000.parquet",
            "attempts/date=2026-11-01/hour=11/00000000000000000000-0001.parquet",
            "dead_letters/00000000000000000000-0000.parquet",
        ]
    );
    let (reopened, report) = Lake::open(store, None).await.expect("reopen");
    assert_eq!(report.commits, 1);
    assert!(report.orphans_deleted.is_empty());
    assert_eq!(reopened.next_offset("t", 0), Some(4));
    let hour10 = reopened
        .data_files()
        .find(|f| f.path.contains("hour=10"))
        .expect("hour 10 file");
    assert_eq!(hour10.rows, 2);
    // Sorted by request_start: 10:01 first.
    assert!(hour10.min_request_start < hour10.max_request_start);
}

#[tokio::test]
async fn files_without_a_commit_record_are_deleted_at_open() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (mut lake, _) = Lake::open(store.clone(), None).await.expect("open");
    lake.commit(PendingCommit {
        writer: "test".into(),
        rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
        offsets: offsets(0, 1),
        ..Default::default()
    })
    .await
    .expect("commit");
    let orphan = "attempts/date=2026-11-01/hour=10/00000000000000000001-0000.parquet";
    store
        .put(&orphan.into(), PutPayload::from_static(b"half"))
        .await
        .expect("put");
    let (lake, report) = Lake::open(store.clone(), None).await.expect("reopen");
    assert_eq!(report.orphans_deleted, vec![orphan.to_owned()]);
    assert_eq!(lake.next_offset("t", 0), Some(1));
    assert!(!all_paths(&store).await.iter().any(|p| p == orphan));
}

#[tokio::test]
async fn a_second_writer_loses_the_race_and_sees_the_winner() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (mut first, _) = Lake::open(store.clone(), None).await.expect("open");
    let (mut zombie, _) = Lake::open(store.clone(), None).await.expect("open");
    first
        .commit(PendingCommit {
            writer: "first".into(),
            rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
            offsets: offsets(0, 1),
            ..Default::default()
        })
        .await
        .expect("commit");
    let lost = zombie
        .commit(PendingCommit {
            writer: "zombie".into(),
            rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
            offsets: offsets(0, 1),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(lost, Err(LakeError::LostCommitRace { sequence: 0 })),
        "{lost:?}"
    );
    // The zombie reloaded: it now knows the winner's offsets and files.
    assert_eq!(zombie.next_offset("t", 0), Some(1));
    assert_eq!(zombie.data_files().count(), 1);
}

#[test]
fn fail_points_parse() {
    use crate::FailPoint;
    assert_eq!(
        "after_data_files@3".parse(),
        Ok(FailPoint::AfterDataFiles { on_commit: 3 })
    );
    assert_eq!(
        "mid_data_files@1".parse(),
        Ok(FailPoint::MidDataFiles { on_commit: 1 })
    );
    assert!("after_data_files".parse::<FailPoint>().is_err());
    assert!("elsewhere@1".parse::<FailPoint>().is_err());
}
