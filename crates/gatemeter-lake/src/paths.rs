//! Every object the lake writes has a path type of its own that formats and
//! parses back. Paths are lake-relative (`attempts/…`, `dead_letters/…`);
//! `in_table` gives the table-relative form the Delta log stores.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use gatemeter_schema::EpochMicros;
use object_store::path::Path;

/// Folder of the `attempts` table.
pub const ATTEMPTS_DIR: &str = "attempts";
/// Folder of the dead-letter table.
pub const DEAD_LETTERS_DIR: &str = "dead_letters";
/// Folder of gatemeter's own files beside the tables (alert state); nothing
/// of ours is ever written inside a table folder but data files.
pub const OWN_DIR: &str = "_gatemeter";
/// Folder of the commit records of the lake format before Delta Lake, read
/// only by `gatemeter migrate`.
pub const LEGACY_COMMITS_DIR: &str = "_gatemeter/commits";
/// The Delta transaction log inside a table folder.
pub const DELTA_LOG_DIR: &str = "_delta_log";

/// The Hive partition of an attempt: its `request_start` in UTC, to the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourPartition {
    pub date: NaiveDate,
    pub hour: u32,
}

impl HourPartition {
    pub fn of(request_start: EpochMicros) -> Self {
        let t = DateTime::from_timestamp_micros(request_start).unwrap_or_default();
        HourPartition {
            date: t.date_naive(),
            hour: t.hour(),
        }
    }

    /// The first microsecond after the partition's hour.
    pub fn end_micros(&self) -> EpochMicros {
        self.date
            .and_hms_opt(self.hour, 0, 0)
            .map_or(EpochMicros::MAX, |start| {
                start.and_utc().timestamp_micros() + 3_600_000_000
            })
    }

    /// The partition's folder, `attempts/date=YYYY-MM-DD/hour=HH`.
    pub fn dir(&self) -> String {
        format!("{ATTEMPTS_DIR}/{}", self.dir_in_table())
    }

    /// The partition's folder inside the table, `date=YYYY-MM-DD/hour=HH`.
    pub fn dir_in_table(&self) -> String {
        format!("date={}/hour={:02}", self.date_value(), self.hour)
    }

    /// The `date` partition value, `YYYY-MM-DD`.
    pub fn date_value(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}",
            self.date.year(),
            self.date.month(),
            self.date.day()
        )
    }

    /// The partition from the Delta log's partition values (`date` as
    /// `YYYY-MM-DD`, `hour` as an integer).
    pub fn from_values(date: &str, hour: &str) -> Option<Self> {
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let hour: u32 = hour.parse().ok()?;
        (hour < 24).then_some(HourPartition { date, hour })
    }

    fn parse_dir(date_part: &str, hour_part: &str) -> Option<Self> {
        let date = NaiveDate::parse_from_str(date_part.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        let hour_text = hour_part.strip_prefix("hour=")?;
        if hour_text.len() != 2 {
            return None;
        }
        let hour: u32 = hour_text.parse().ok()?;
        (hour < 24).then_some(HourPartition { date, hour })
    }
}

/// A data file of the `attempts` table:
/// `attempts/date=…/hour=…/part-{id}.parquet`, or `compacted-{id}.parquet`
/// for a file written by compaction (one row per `attempt_id`). The id is a
/// random UUID, so two writers never write the same object: a writer that
/// loses a commit race leaves an unnamed file behind, never a replaced one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataFilePath {
    pub partition: HourPartition,
    pub id: String,
    pub compacted: bool,
}

/// A file of the dead-letter table: `dead_letters/part-{id}.parquet`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadLetterPath {
    pub id: String,
}

const PART_PREFIX: &str = "part-";
const COMPACTED_PREFIX: &str = "compacted-";

/// A new random file id: 32 lowercase hex digits.
pub fn new_file_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn parse_file_id(name: &str) -> Option<(String, bool)> {
    let stem = name.strip_suffix(".parquet")?;
    let (id, compacted) = match stem.strip_prefix(COMPACTED_PREFIX) {
        Some(id) => (id, true),
        None => (stem.strip_prefix(PART_PREFIX)?, false),
    };
    let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| (id.to_owned(), compacted))
}

impl DataFilePath {
    /// A new file of `partition`, as an ingest flush or a compaction writes it.
    pub fn new(partition: HourPartition, compacted: bool) -> Self {
        DataFilePath {
            partition,
            id: new_file_id(),
            compacted,
        }
    }

    /// The path inside the table folder, as the Delta log names the file.
    pub fn in_table(&self) -> String {
        let prefix = if self.compacted {
            COMPACTED_PREFIX
        } else {
            PART_PREFIX
        };
        format!(
            "{}/{prefix}{}.parquet",
            self.partition.dir_in_table(),
            self.id
        )
    }

    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.split('/');
        let (table, date, hour, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if table != ATTEMPTS_DIR || parts.next().is_some() {
            return None;
        }
        let partition = HourPartition::parse_dir(date, hour)?;
        let (id, compacted) = parse_file_id(name)?;
        Some(DataFilePath {
            partition,
            id,
            compacted,
        })
    }
}

impl fmt::Display for DataFilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ATTEMPTS_DIR}/{}", self.in_table())
    }
}

impl DeadLetterPath {
    pub fn new() -> Self {
        DeadLetterPath { id: new_file_id() }
    }

    /// The path inside the table folder, as the Delta log names the file.
    pub fn in_table(&self) -> String {
        format!("{PART_PREFIX}{}.parquet", self.id)
    }

    pub fn parse(path: &str) -> Option<Self> {
        let name = path.strip_prefix(DEAD_LETTERS_DIR)?.strip_prefix('/')?;
        match parse_file_id(name)? {
            (id, false) => Some(DeadLetterPath { id }),
            (_, true) => None,
        }
    }
}

impl Default for DeadLetterPath {
    fn default() -> Self {
        DeadLetterPath::new()
    }
}

impl fmt::Display for DeadLetterPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{DEAD_LETTERS_DIR}/{}", self.in_table())
    }
}

/// The object-store path of anything that displays as a lake-relative path.
pub fn object_path(path: &impl fmt::Display) -> Path {
    Path::from(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> EpochMicros {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .timestamp_micros()
    }

    #[test]
    fn partition_is_the_utc_hour_of_request_start() {
        let p = HourPartition::of(micros("2026-11-01T23:59:59.999+00:00"));
        assert_eq!(p.dir(), "attempts/date=2026-11-01/hour=23");
        let p = HourPartition::of(micros("2026-11-02T00:30:00+02:00"));
        assert_eq!(p.dir(), "attempts/date=2026-11-01/hour=22");
    }

    #[test]
    fn data_file_paths_round_trip() {
        let path = DataFilePath {
            partition: HourPartition::of(micros("2026-01-05T07:00:00Z")),
            id: "0123456789abcdef0123456789abcdef".into(),
            compacted: false,
        };
        let text = path.to_string();
        assert_eq!(
            text,
            "attempts/date=2026-01-05/hour=07/part-0123456789abcdef0123456789abcdef.parquet"
        );
        assert_eq!(DataFilePath::parse(&text), Some(path.clone()));
        let compacted = DataFilePath {
            compacted: true,
            ..path
        };
        assert_eq!(
            compacted.in_table(),
            "date=2026-01-05/hour=07/compacted-0123456789abcdef0123456789abcdef.parquet"
        );
        assert_eq!(DataFilePath::parse(&compacted.to_string()), Some(compacted));
    }

    #[test]
    fn new_files_never_share_a_name() {
        let partition = HourPartition::of(micros("2026-01-05T07:00:00Z"));
        let a = DataFilePath::new(partition, false);
        let b = DataFilePath::new(partition, false);
        assert_ne!(a, b);
        assert_eq!(DataFilePath::parse(&a.to_string()), Some(a));
        let dl = DeadLetterPath::new();
        assert_eq!(DeadLetterPath::parse(&dl.to_string()), Some(dl));
    }

    #[test]
    fn partition_values_round_trip() {
        let p = HourPartition::of(micros("2026-01-05T07:00:00Z"));
        assert_eq!(p.date_value(), "2026-01-05");
        assert_eq!(HourPartition::from_values("2026-01-05", "7"), Some(p));
        assert_eq!(HourPartition::from_values("2026-01-05", "24"), None);
    }

    #[test]
    fn foreign_names_do_not_parse() {
        for bad in [
            "attempts/date=2026-01-05/hour=07/part-0.parquet",
            "attempts/date=2026-01-05/hour=24/part-0123456789abcdef0123456789abcdef.parquet",
            "attempts/date=2026-13-05/hour=07/part-0123456789abcdef0123456789abcdef.parquet",
            "attempts/date=2026-01-05/hour=7/part-0123456789abcdef0123456789abcdef.parquet",
            "attempts/date=2026-01-05/part-0123456789abcdef0123456789abcdef.parquet",
            "attempts/date=2026-01-05/hour=07/00000000000000000042-0003.parquet",
            "other/date=2026-01-05/hour=07/part-0123456789abcdef0123456789abcdef.parquet",
        ] {
            assert_eq!(DataFilePath::parse(bad), None, "{bad}");
        }
        assert_eq!(DeadLetterPath::parse("dead_letters/x.parquet"), None);
    }
}
