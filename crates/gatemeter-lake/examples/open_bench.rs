//! How long opening a lake takes once it holds a month of commits (a
//! benchmark, not a test; BENCHMARKS.md, "Opening the lake").
//!
//! Builds, in a temporary folder, an `attempts` table shaped like 30 days
//! of ingest at a 5 s flush after hourly compaction: one file per hour for
//! 720 hours, app transactions for 8 source partitions, a checkpoint, and
//! 100 commits after it (each adding one file and advancing every
//! partition), as `gatemeter compact` leaves it between two runs. Then it
//! times, over `OPEN_BENCH_RUNS` runs (default 20): opening the lake the way
//! every command does, reading the 8 partitions' offsets the way an
//! ingester does on assignment, and a reload that finds nothing new.
//!
//! usage: cargo run --release -p gatemeter-lake --example open_bench

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use gatemeter_lake::{Lake, LakeLocation, PendingCommit, SourceOffsets};
use gatemeter_schema::{decode_event, AttemptRow, SourcePosition};

const HOURS: i64 = 30 * 24;
const PARTITIONS: i32 = 8;
const TRAILING_COMMITS: i64 = 100;

fn row(n: i64, at: DateTime<Utc>, partition: i32, offset: i64) -> AttemptRow {
    let time = at.to_rfc3339();
    let json = format!(
        r#"{{"schema_version":1,"attempt_id":"a{n}","request_id":"r{n}","attempt_index":0,
        "attempt_kind":"initial","is_final":true,"request_start":"{time}","attempt_start":"{time}",
        "attempt_end":"{time}","requested_model":"m","provider":"p","api_key_id":"k",
        "environment":"prod","outcome":"success"}}"#
    );
    AttemptRow {
        event: decode_event(json.as_bytes()).expect("a valid event"),
        source: SourcePosition {
            topic: "gateway.attempts".into(),
            partition,
            offset,
        },
    }
}

fn offsets(next: i64) -> SourceOffsets {
    BTreeMap::from([(
        "gateway.attempts".to_owned(),
        (0..PARTITIONS).map(|p| (p, next)).collect(),
    )])
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let (mut lake, _) = Lake::open_local(dir.path(), None).await.expect("open");
    let built = Instant::now();
    // The month, one row per hour (so one file per hour partition).
    let month: Vec<AttemptRow> = (0..HOURS)
        .map(|h| {
            row(
                h,
                start + Duration::hours(h),
                (h % i64::from(PARTITIONS)) as i32,
                h,
            )
        })
        .collect();
    lake.commit(PendingCommit {
        writer: "bench".into(),
        rows: month,
        offsets: offsets(HOURS),
        ..Default::default()
    })
    .await
    .expect("month");
    lake.checkpoint().await.expect("checkpoint");
    let now = start + Duration::hours(HOURS);
    for n in 0..TRAILING_COMMITS {
        let next = HOURS + n + 1;
        lake.commit(PendingCommit {
            writer: "bench".into(),
            rows: vec![row(next, now, (n % i64::from(PARTITIONS)) as i32, next)],
            offsets: offsets(next + 1),
            ..Default::default()
        })
        .await
        .expect("trailing commit");
    }
    drop(lake);
    eprintln!(
        "built {HOURS} hour files, a checkpoint and {TRAILING_COMMITS} commits after it in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let runs: usize = std::env::var("OPEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let location = LakeLocation::local(dir.path()).expect("location");
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let (mut open_ms, mut offsets_ms, mut reload_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (mut lake, report) = Lake::open(&location, None).await.expect("open");
        open_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            report.data_files as i64,
            HOURS + TRAILING_COMMITS,
            "every file is live"
        );
        let t = Instant::now();
        let found = lake
            .load_offsets("gateway.attempts", &partitions)
            .await
            .expect("offsets");
        offsets_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(found
            .values()
            .all(|next| *next == Some(HOURS + TRAILING_COMMITS + 1)));
        let t = Instant::now();
        assert_eq!(lake.reload().await.expect("reload"), 0);
        reload_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{{\"hour_files\": {HOURS}, \"trailing_commits\": {TRAILING_COMMITS}, \"partitions\": {PARTITIONS}, \"runs\": {runs}, \
         \"open_ms_median\": {:.1}, \"open_ms_max\": {:.1}, \"load_offsets_ms_median\": {:.1}, \"reload_unchanged_ms_median\": {:.1}}}",
        median(open_ms.clone()),
        open_ms.iter().copied().fold(0.0, f64::max),
        median(offsets_ms),
        median(reload_ms)
    );
}
