//! A query window `[from, to)` over `request_start`, and the lake's
//! timestamp as a SQL literal: in standard SQL for statements users see,
//! in the lake's exact type for those the engine writes for itself.

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

/// A SQL literal of the lake's timestamp type (µs, UTC), for statements
/// the engine plans itself (a bucket's origin must have the column's type).
pub fn timestamp_literal(micros: EpochMicros) -> String {
    format!(
        "arrow_cast('{}', 'Timestamp(µs, \"UTC\")')",
        rfc3339(micros)
    )
}

/// A standard SQL literal of the instant `micros` (`TIMESTAMP WITH TIME
/// ZONE '2026-11-01 00:00:00.000000+00:00'`), as PostgreSQL, DuckDB and
/// gatemeter read it. Compared with a timestamp column it is folded into
/// the column's type before planning, so files are pruned by it as by a
/// literal of the lake's own type.
pub fn standard_timestamp_literal(micros: EpochMicros) -> String {
    let text = DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S%.6f+00:00");
    format!("TIMESTAMP WITH TIME ZONE '{text}'")
}

/// The instant `micros` as RFC 3339 text, to the microsecond.
pub fn rfc3339(micros: EpochMicros) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{RecordBatch, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Rows of a lake-typed column at and around an instant: a standard
    /// literal selects exactly the rows the lake-typed literal selects.
    #[tokio::test]
    async fn a_standard_literal_compares_as_the_lake_typed_one() {
        let at = 1_795_910_400_000_000; // 2026-11-29T00:00:00Z
        let column = TimestampMicrosecondArray::from(vec![at - 1, at, at + 1]).with_timezone("UTC");
        let schema = Arc::new(Schema::new(vec![Field::new(
            "request_start",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(column)]).expect("batch");
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch).expect("table");
        let count = |literal: String| {
            let ctx = ctx.clone();
            async move {
                let sql = format!(
                    "SELECT count(*) FILTER (WHERE request_start >= {literal}) AS at_or_after, \
                     count(*) FILTER (WHERE request_start < {literal}) AS before FROM t"
                );
                let batches = ctx
                    .sql(&sql)
                    .await
                    .expect(&sql)
                    .collect()
                    .await
                    .expect(&sql);
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .expect("text")
                    .to_string()
            }
        };
        assert_eq!(
            standard_timestamp_literal(at),
            "TIMESTAMP WITH TIME ZONE '2026-11-29 00:00:00.000000+00:00'"
        );
        let standard = count(standard_timestamp_literal(at)).await;
        assert_eq!(standard, count(timestamp_literal(at)).await);
        assert!(standard.contains("| 2           | 1      |"), "{standard}");
        assert_eq!(
            count(standard_timestamp_literal(at + 1)).await,
            count(timestamp_literal(at + 1)).await
        );
    }
}
