//! Tests of the rollup index: which stored hours and days a window may
//! read, and when a stored file is no longer current.

use super::*;

fn file(path: &str) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        rows: 1,
        bytes: 1,
        min_request_start: None,
        max_request_start: None,
        deduplicated: false,
    }
}

fn paths(files: &[RollupFile]) -> Vec<String> {
    files.iter().map(|file| file.path.clone()).collect()
}

/// Both files of a stored period of the tables `names`.
fn stored(names: &[&str; 2], period: HourPartition, stamp: String) -> [Option<RollupFile>; 2] {
    [0, 1].map(|i| {
        Some(RollupFile {
            path: format!("rollups/{}/{period:?}.parquet", names[i]),
            bytes: 1,
            rows: Some(1),
            stamp: stamp.clone(),
        })
    })
}

const A: &str = "attempts/date=2026-11-01/hour=10/part-0123456789abcdef0123456789abcdef.parquet";
const B: &str = "attempts/date=2026-11-01/hour=10/part-fedcba9876543210fedcba9876543210.parquet";
const C: &str = "attempts/date=2026-11-01/hour=11/part-0123456789abcdef0123456789abcdef.parquet";

#[test]
fn an_hour_source_changes_with_its_files_only() {
    let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
    let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
    let before = hour_sources(&[file(A), file(C)]);
    let after = hour_sources(&[file(C), file(B), file(A)]);
    assert_ne!(before[&ten], after[&ten], "a late file changes its hour");
    assert_eq!(before[&eleven], after[&eleven], "and no other");
    assert_eq!(
        hour_sources(&[file(B), file(A)]),
        hour_sources(&[file(A), file(B)]),
        "the order files are listed in does not matter"
    );
}

#[test]
fn a_stored_hour_is_used_inside_the_window_with_its_stamp_only() {
    let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
    let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
    let files = [file(A), file(C)];
    let sources = hour_sources(&files);
    let stored = |hour, stamp| stored(&ROLLUP_VIEWS, hour, stamp);
    let index = RollupIndex {
        hours: BTreeMap::from([
            (ten, stored(ten, stamp("b1", &sources[&ten]))),
            (eleven, stored(eleven, stamp("b0", &sources[&eleven]))),
        ]),
        ..RollupIndex::default()
    };
    let all = index.usable(Window::default(), &files, "b1", RollupGrain::Hours.into());
    assert_eq!(all.hours, BTreeSet::from([ten]), "eleven has another basis");
    assert_eq!(all.files[0].len(), 1);
    let start_of_ten = ten.end_micros() - 3_600_000_000;
    let part = Window {
        from: Some(start_of_ten + 1),
        to: None,
    };
    assert!(
        index
            .usable(part, &files, "b1", RollupGrain::Hours.into())
            .is_empty(),
        "ten is cut"
    );
    let late = [file(A), file(B), file(C)];
    assert!(index
        .usable(Window::default(), &late, "b1", RollupGrain::Hours.into())
        .is_empty());
    assert!(index
        .usable(Window::default(), &files, "b1", RollupGrain::RawOnly.into())
        .is_empty());
}

#[test]
fn a_stored_day_stands_for_all_its_hours_inside_the_window_with_its_stamp_only() {
    let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
    let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
    let day = day_of(ten);
    let files = [file(A), file(C)];
    let hours = hour_sources(&files);
    let days = day_sources(&hours);
    let late = [file(A), file(B), file(C)];
    assert_ne!(days[&day], day_sources(&hour_sources(&late))[&day]);
    let index = RollupIndex {
        hours: BTreeMap::from([(ten, stored(&ROLLUP_VIEWS, ten, stamp("b", &hours[&ten])))]),
        days: BTreeMap::from([(day, stored(&DAILY_ROLLUPS, day, stamp("b", &days[&day])))]),
        ..RollupIndex::default()
    };
    let whole = index.usable(Window::default(), &files, "b", RollupGrain::Days.into());
    assert_eq!(whole.hours, BTreeSet::from([ten, eleven]));
    assert_eq!(whole.days, BTreeSet::from([day]));
    assert_eq!(
        paths(&whole.files[1]),
        vec![format!("rollups/daily_requests/{day:?}.parquet")]
    );
    let by_hours = index.usable(Window::default(), &files, "b", RollupGrain::Hours.into());
    assert_eq!(by_hours.hours, BTreeSet::from([ten]));
    let start = day.end_micros() - 3_600_000_000;
    let part_of_day = Window {
        from: Some(start),
        to: Some(start + DAY - 1),
    };
    let cut = index.usable(part_of_day, &files, "b", RollupGrain::Days.into());
    assert_eq!(
        cut.hours,
        BTreeSet::from([ten]),
        "the day is cut: its hours"
    );
    let after_late = index.usable(Window::default(), &late, "b", RollupGrain::Days.into());
    assert!(after_late.is_empty(), "a late file: neither day nor hour");
}

#[test]
fn a_query_by_model_reads_the_narrower_files_where_they_carry_the_stamp() {
    let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
    let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
    let files = [file(A), file(C)];
    let hours = hour_sources(&files);
    let narrow = [BY_MODEL_ROLLUPS[0], BY_MODEL_ROLLUPS[1]];
    let index = RollupIndex {
        hours: BTreeMap::from([
            (ten, stored(&ROLLUP_VIEWS, ten, stamp("b", &hours[&ten]))),
            (
                eleven,
                stored(&ROLLUP_VIEWS, eleven, stamp("b", &hours[&eleven])),
            ),
        ]),
        hours_by_model: BTreeMap::from([
            (ten, stored(&narrow, ten, stamp("b", &hours[&ten]))),
            (
                eleven,
                stored(&narrow, eleven, stamp("b", "an older source")),
            ),
        ]),
        ..RollupIndex::default()
    };
    let by_model = RollupReads {
        grain: RollupGrain::Hours,
        by_model: true,
    };
    let read = index.usable(Window::default(), &files, "b", by_model);
    assert_eq!(read.hours, BTreeSet::from([ten, eleven]));
    assert_eq!(
        paths(&read.files[0]),
        vec![
            format!("rollups/hourly_usage_by_model/{ten:?}.parquet"),
            format!("rollups/hourly_usage/{eleven:?}.parquet"),
        ],
        "eleven's narrower file is stale: its full one is read"
    );
    let (own, to_merge) = read.split_by_kind(0, by_model);
    assert_eq!(
        (paths(&own), paths(&to_merge)),
        (
            vec![format!("rollups/hourly_usage_by_model/{ten:?}.parquet")],
            vec![format!("rollups/hourly_usage/{eleven:?}.parquet")],
        ),
        "only the narrower file holds the view by model's own rows"
    );
    let full = index.usable(Window::default(), &files, "b", RollupGrain::Hours.into());
    assert!(full
        .files
        .iter()
        .flatten()
        .all(|file| !file.path.contains("by_model")));
}

/// Every stored rollup carries the basis it was computed with; a
/// release whose views' text differs, even by a comment, reads every
/// stored hour raw until `compact` computes it again (for a month of
/// 100M attempts, 44 minutes). This pins the views' basis so that such
/// a change is made on purpose, with the new value here and a line in
/// the release's notes.
#[test]
fn the_views_basis_changes_only_on_purpose() {
    assert_eq!(basis(&PriceBook::default()), "940a863797efd791");
}

#[test]
fn the_basis_follows_the_price_book() {
    let empty = PriceBook::default();
    let book = PriceBook::parse(
        "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\nopenai,gpt-4o,2026-01-01T00:00:00Z,2.5,10.0,1.25,3.125,0,10\n",
    )
    .expect("book");
    assert_ne!(basis(&empty), basis(&book));
    assert_eq!(basis(&book), basis(&book.clone()));
}
