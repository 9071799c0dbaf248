//! Every object the lake writes has a path type of its own that formats and
//! parses back, so recovery can tell data, dead letters and commit records
//! apart by name alone.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use gatemeter_schema::EpochMicros;
use object_store::path::Path;

/// Folder of the `attempts` table.
pub const ATTEMPTS_DIR: &str = "attempts";
/// Folder of the dead-letter table.
pub const DEAD_LETTERS_DIR: &str = "dead_letters";
/// Folder of the commit records: the lake's source of truth.
pub const COMMITS_DIR: &str = "_gatemeter/commits";

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
        format!(
            "{ATTEMPTS_DIR}/date={:04}-{:02}-{:02}/hour={:02}",
            self.date.year(),
            self.date.month(),
            self.date.day(),
            self.hour
        )
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

/// A data file: `attempts/date=…/hour=…/{commit:020}-{n:04}.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataFilePath {
    pub partition: HourPartition,
    pub commit: u64,
    pub n: u32,
}

/// A file written by compaction:
/// `attempts/date=…/hour=…/{commit:020}-compacted-{nonce:016x}.parquet`. The
/// nonce keeps two compactions that plan the same sequence number from
/// writing the same object (the loser's file must stay an orphan, never
/// overwrite the winner's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompactedFilePath {
    pub partition: HourPartition,
    pub commit: u64,
    pub nonce: u64,
}

impl fmt::Display for CompactedFilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{:020}-compacted-{:016x}.parquet",
            self.partition.dir(),
            self.commit,
            self.nonce
        )
    }
}

/// A dead-letter file: `dead_letters/{commit:020}-{n:04}.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeadLetterPath {
    pub commit: u64,
    pub n: u32,
}

/// A commit record: `_gatemeter/commits/{sequence:020}.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitPath {
    pub sequence: u64,
}

fn parse_file_name(name: &str, extension: &str) -> Option<(u64, u32)> {
    let stem = name.strip_suffix(extension)?;
    let (commit, n) = stem.split_once('-')?;
    if commit.len() != 20 || n.len() != 4 {
        return None;
    }
    Some((commit.parse().ok()?, n.parse().ok()?))
}

impl fmt::Display for DataFilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{:020}-{:04}.parquet",
            self.partition.dir(),
            self.commit,
            self.n
        )
    }
}

impl DataFilePath {
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.split('/');
        let (table, date, hour, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if table != ATTEMPTS_DIR || parts.next().is_some() {
            return None;
        }
        let partition = HourPartition::parse_dir(date, hour)?;
        let (commit, n) = parse_file_name(name, ".parquet")?;
        Some(DataFilePath {
            partition,
            commit,
            n,
        })
    }
}

impl fmt::Display for DeadLetterPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{DEAD_LETTERS_DIR}/{:020}-{:04}.parquet",
            self.commit, self.n
        )
    }
}

impl DeadLetterPath {
    pub fn parse(path: &str) -> Option<Self> {
        let name = path.strip_prefix(DEAD_LETTERS_DIR)?.strip_prefix('/')?;
        let (commit, n) = parse_file_name(name, ".parquet")?;
        Some(DeadLetterPath { commit, n })
    }
}

impl fmt::Display for CommitPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{COMMITS_DIR}/{:020}.json", self.sequence)
    }
}

impl CommitPath {
    pub fn parse(path: &str) -> Option<Self> {
        let name = path
            .strip_prefix(COMMITS_DIR)?
            .strip_prefix('/')?
            .strip_suffix(".json")?;
        if name.len() != 20 {
            return None;
        }
        Some(CommitPath {
            sequence: name.parse().ok()?,
        })
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
            commit: 42,
            n: 3,
        };
        let text = path.to_string();
        assert_eq!(
            text,
            "attempts/date=2026-01-05/hour=07/00000000000000000042-0003.parquet"
        );
        assert_eq!(DataFilePath::parse(&text), Some(path));
    }

    #[test]
    fn dead_letter_and_commit_paths_round_trip() {
        let dl = DeadLetterPath { commit: 7, n: 0 };
        assert_eq!(DeadLetterPath::parse(&dl.to_string()), Some(dl));
        let c = CommitPath { sequence: 12345 };
        assert_eq!(
            c.to_string(),
            "_gatemeter/commits/00000000000000012345.json"
        );
        assert_eq!(CommitPath::parse(&c.to_string()), Some(c));
    }

    #[test]
    fn foreign_names_do_not_parse() {
        for bad in [
            "attempts/date=2026-01-05/hour=07/part-0.parquet",
            "attempts/date=2026-01-05/hour=24/00000000000000000042-0003.parquet",
            "attempts/date=2026-13-05/hour=07/00000000000000000042-0003.parquet",
            "attempts/date=2026-01-05/hour=7/00000000000000000042-0003.parquet",
            "attempts/date=2026-01-05/00000000000000000042-0003.parquet",
            "attempts/date=2026-01-05/hour=07/00000000000000000042-0003.parquet#1",
            "other/date=2026-01-05/hour=07/00000000000000000042-0003.parquet",
        ] {
            assert_eq!(DataFilePath::parse(bad), None, "{bad}");
        }
        assert_eq!(CommitPath::parse("_gatemeter/commits/12.json"), None);
        assert_eq!(DeadLetterPath::parse("dead_letters/x.parquet"), None);
    }
}
