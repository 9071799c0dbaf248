use std::collections::BTreeMap;

use gatemeter_schema::{decode_event, AttemptRow, DeadLetter, DecodeError, SourcePosition};

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
    at_partition(json, 0, offset)
}

fn at_partition(json: &str, partition: i32, offset: i64) -> AttemptRow {
    AttemptRow {
        event: decode_event(json.as_bytes()).expect("valid event"),
        source: SourcePosition {
            topic: "t".into(),
            partition,
            offset,
        },
    }
}

pub(crate) fn offsets(partition: i32, next: i64) -> SourceOffsets {
    BTreeMap::from([("t".to_owned(), BTreeMap::from([(partition, next)]))])
}

fn dead_letter(offset: i64) -> DeadLetter {
    DeadLetter::new(
        SourcePosition {
            topic: "t".into(),
            partition: 0,
            offset,
        },
        None,
        &DecodeError::MissingField("provider"),
        b"{}",
    )
}

async fn open(dir: &tempfile::TempDir) -> Lake {
    Lake::open_local(dir.path(), None).await.expect("open").0
}

#[tokio::test]
async fn a_commit_splits_rows_by_hour_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut lake, report) = Lake::open_local(dir.path(), None).await.expect("open");
    assert_eq!((report.version, report.data_files), (0, 0));
    let summary = lake
        .commit(PendingCommit {
            writer: "test".into(),
            rows: vec![
                row(1, "2026-11-01T10:59:00Z", 0),
                row(2, "2026-11-01T11:00:00Z", 1),
                row(3, "2026-11-01T10:01:00Z", 2),
            ],
            dead_letters: vec![dead_letter(3)],
            offsets: offsets(0, 4),
        })
        .await
        .expect("commit");
    assert_eq!(
        (
            summary.version,
            summary.files,
            summary.rows,
            summary.dead_letters
        ),
        (1, 3, 3, 1)
    );
    let stored = lake.stored_files().await.expect("list");
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored[0].starts_with("attempts/date=2026-11-01/hour=10/part-"));
    assert!(stored[1].starts_with("attempts/date=2026-11-01/hour=11/part-"));
    assert!(stored[2].starts_with("dead_letters/part-"));

    let (mut reopened, report) = Lake::open_local(dir.path(), None).await.expect("reopen");
    assert_eq!(
        (report.version, report.data_files, report.dead_letter_files),
        (1, 2, 1)
    );
    assert_eq!(reopened.next_offset("t", 0), None, "not asked yet");
    let found = reopened.load_offsets("t", &[0, 1]).await.expect("offsets");
    assert_eq!(found, BTreeMap::from([(0, Some(4)), (1, None)]));
    assert_eq!(reopened.next_offset("t", 0), Some(4));
    let hour10 = reopened
        .data_files()
        .find(|f| f.path.contains("hour=10"))
        .expect("hour 10 file");
    assert_eq!(hour10.rows, 2);
    assert!(!hour10.deduplicated);
    assert!(hour10.min_request_start < hour10.max_request_start);
}

#[tokio::test]
async fn a_second_writer_of_a_partition_loses_the_race_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = open(&dir).await;
    let mut zombie = open(&dir).await;
    for lake in [&mut first, &mut zombie] {
        lake.load_offsets("t", &[0]).await.expect("offsets");
    }
    first
        .commit(PendingCommit {
            writer: "first".into(),
            rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
            dead_letters: vec![dead_letter(1)],
            offsets: offsets(0, 2),
        })
        .await
        .expect("commit");
    let lost = zombie
        .commit(PendingCommit {
            writer: "zombie".into(),
            rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
            dead_letters: vec![dead_letter(1)],
            offsets: offsets(0, 2),
        })
        .await;
    assert!(
        matches!(lost, Err(LakeError::LostCommitRace { .. })),
        "{lost:?}"
    );
    // Nothing of the zombie's is visible; it learns the winner's position.
    assert_eq!(zombie.data_files().count(), 1);
    zombie.reload().await.expect("reload");
    assert_eq!(zombie.dead_letter_files().map(|f| f.rows).sum::<u64>(), 1);
    assert_eq!(
        zombie.load_offsets("t", &[0]).await.expect("offsets")[&0],
        Some(2)
    );
}

#[tokio::test]
async fn a_zombie_whose_snapshot_already_holds_the_move_is_refused_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut zombie = open(&dir).await;
    let mut owner = open(&dir).await;
    zombie.load_offsets("t", &[0]).await.expect("offsets");
    owner.load_offsets("t", &[0]).await.expect("offsets");
    owner
        .commit(PendingCommit {
            writer: "owner".into(),
            rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
            offsets: offsets(0, 1),
            ..Default::default()
        })
        .await
        .expect("commit");
    // The zombie reloads for another partition: its snapshot now holds the
    // owner's commit, so a commit on it would not conflict.
    zombie.load_offsets("t", &[1]).await.expect("offsets");
    let lost = zombie
        .commit(PendingCommit {
            writer: "zombie".into(),
            rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
            offsets: offsets(0, 1),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(lost, Err(LakeError::LostCommitRace { .. })),
        "{lost:?}"
    );
    assert_eq!(zombie.data_files().map(|f| f.rows).sum::<u64>(), 1);
}

#[tokio::test]
async fn writers_of_different_partitions_both_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = open(&dir).await;
    let mut b = open(&dir).await;
    a.load_offsets("t", &[0]).await.expect("offsets");
    b.load_offsets("t", &[1]).await.expect("offsets");
    let json = |n: u32| {
        format!(
            r#"{{"schema_version":1,"attempt_id":"b{n}","request_id":"r","attempt_index":0,
            "attempt_kind":"initial","is_final":true,"request_start":"2026-11-01T10:00:00Z",
            "attempt_start":"2026-11-01T10:00:00Z","attempt_end":"2026-11-01T10:00:00Z","requested_model":"m",
            "provider":"p","api_key_id":"k","environment":"prod","outcome":"success"}}"#
        )
    };
    for round in 0..3i64 {
        a.commit(PendingCommit {
            writer: "a".into(),
            rows: vec![at_partition(&json(round as u32), 0, round)],
            offsets: offsets(0, round + 1),
            ..Default::default()
        })
        .await
        .expect("a commits");
        // b's snapshot is behind a's commit every time: it retries, since
        // nobody moved its partition.
        b.commit(PendingCommit {
            writer: "b".into(),
            rows: vec![at_partition(&json(100 + round as u32), 1, round)],
            offsets: offsets(1, round + 1),
            ..Default::default()
        })
        .await
        .expect("b commits");
    }
    let mut reader = open(&dir).await;
    assert_eq!(reader.data_files().map(|f| f.rows).sum::<u64>(), 6);
    let found = reader.load_offsets("t", &[0, 1]).await.expect("offsets");
    assert_eq!(found, BTreeMap::from([(0, Some(3)), (1, Some(3))]));
}

#[tokio::test]
async fn uncommitted_files_stay_invisible_until_vacuumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lake = open(&dir).await;
    lake.commit(PendingCommit {
        writer: "test".into(),
        rows: vec![row(1, "2026-11-01T10:00:00Z", 0)],
        offsets: offsets(0, 1),
        ..Default::default()
    })
    .await
    .expect("commit");
    let orphan = dir
        .path()
        .join("attempts/date=2026-11-01/hour=10/part-0123456789abcdef0123456789abcdef.parquet");
    std::fs::write(&orphan, b"half").expect("orphan");

    // Opening deletes nothing: the file may be a live writer's.
    let (mut reopened, report) = Lake::open_local(dir.path(), None).await.expect("reopen");
    assert_eq!(report.data_files, 1);
    assert!(orphan.exists());
    assert!(reopened
        .vacuum(chrono::Duration::days(1))
        .await
        .expect("vacuum")
        .is_empty());
    assert!(orphan.exists());
    let vacuumed = reopened
        .vacuum(chrono::Duration::zero())
        .await
        .expect("vacuum");
    assert_eq!(vacuumed.len(), 1, "{vacuumed:?}");
    assert!(vacuumed[0].ends_with("part-0123456789abcdef0123456789abcdef.parquet"));
    assert!(!orphan.exists());
    assert_eq!(reopened.data_files().count(), 1);
}

#[tokio::test]
async fn a_legacy_lake_is_refused_until_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("_gatemeter/commits")).expect("dir");
    let refused = Lake::open_local(dir.path(), None).await;
    assert!(
        matches!(refused, Err(LakeError::LegacyFormat { .. })),
        "{:?}",
        refused.err()
    );
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

#[tokio::test]
async fn migrate_names_the_legacy_files_with_their_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = [
        row(1, "2026-11-01T10:01:00Z", 0),
        row(2, "2026-11-01T10:02:00Z", 1),
    ];
    let batch = gatemeter_schema::attempts_batch(rows.iter(), 0).expect("batch");
    let bytes = crate::parquet_file::encode(&batch, Some("request_start")).expect("parquet");
    let path = "attempts/date=2026-11-01/hour=10/00000000000000000000-0000.parquet";
    std::fs::create_dir_all(dir.path().join("attempts/date=2026-11-01/hour=10")).expect("dir");
    std::fs::write(dir.path().join(path), &bytes).expect("file");
    std::fs::create_dir_all(dir.path().join("_gatemeter/commits")).expect("dir");
    let record = serde_json::json!({
        "format_version": 1, "sequence": 0, "committed_at": "2026-11-01T11:00:00Z", "writer": "ingest",
        "files": [{"path": path, "rows": 2, "bytes": bytes.len(),
                   "min_request_start": rows[0].event.request_start,
                   "max_request_start": rows[1].event.request_start}],
        "dead_letter_files": [], "offsets": {"t": {"0": 2}}
    });
    std::fs::write(
        dir.path()
            .join("_gatemeter/commits/00000000000000000000.json"),
        record.to_string(),
    )
    .expect("record");

    let report = Lake::migrate_local(dir.path()).await.expect("migrate");
    assert_eq!(
        (report.legacy_commits, report.data_files, report.partitions),
        (1, 1, 1)
    );
    let mut lake = open(&dir).await;
    let files: Vec<_> = lake.data_files().cloned().collect();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].path.as_str(), files[0].rows), (path, 2));
    assert_eq!(
        files[0].min_request_start,
        Some(rows[0].event.request_start)
    );
    assert_eq!(
        lake.load_offsets("t", &[0]).await.expect("offsets")[&0],
        Some(2)
    );
    assert!(Lake::migrate_local(dir.path()).await.is_err(), "only once");
}

#[tokio::test]
async fn dead_letters_are_counted_by_class_once_however_often_they_are_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lake = open(&dir).await;
    lake.load_offsets("t", &[0]).await.expect("offsets");
    let class = dead_letter(0).error_class;
    let commit = |letters: Vec<DeadLetter>, next: i64| PendingCommit {
        writer: "test".into(),
        rows: vec![],
        dead_letters: letters,
        offsets: offsets(0, next),
    };
    let first = lake
        .commit(commit(vec![dead_letter(1), dead_letter(2)], 3))
        .await
        .expect("commit");
    assert_eq!(first.dead_letters_by_class, BTreeMap::from([(class, 2)]));
    // A replay from offset 1 after a crash: only offset 3 is new.
    let replayed = lake
        .commit(commit(
            vec![dead_letter(1), dead_letter(2), dead_letter(3)],
            4,
        ))
        .await
        .expect("commit");
    assert_eq!(replayed.dead_letters_by_class, BTreeMap::from([(class, 1)]));
    assert_eq!(replayed.dead_letters, 1);
}
