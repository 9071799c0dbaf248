//! A query window `[from, to)` over `request_start`, and the lake's
//! timestamp as a SQL literal.

use chrono::{DateTime, SecondsFormat, Utc};
use gatemeter_lake::FileEntry;
use gatemeter_schema::EpochMicros;

/// Window of requests by `request_start`: `[from, to)`; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<EpochMicros>,
    pub to: Option<EpochMicros>,
}

impl Window {
    pub fn overlaps(&self, file: &FileEntry) -> bool {
        let (Some(min), Some(max)) = (file.min_request_start, file.max_request_start) else {
            return true;
        };
        self.from.is_none_or(|from| max >= from) && self.to.is_none_or(|to| min < to)
    }

    /// Whether every row of `file` is in the window, by its committed
    /// min/max.
    pub(crate) fn contains(&self, file: &FileEntry) -> bool {
        let (Some(min), Some(max)) = (file.min_request_start, file.max_request_start) else {
            return false;
        };
        self.from.is_none_or(|from| min >= from) && self.to.is_none_or(|to| max < to)
    }
}

/// A SQL literal of the lake's timestamp type (µs, UTC).
pub fn timestamp_literal(micros: EpochMicros) -> String {
    let text = DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    format!("arrow_cast('{text}', 'Timestamp(µs, \"UTC\")')")
}
