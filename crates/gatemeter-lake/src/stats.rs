//! The per-file statistics a Delta Add action carries (`numRecords`,
//! `minValues`, `maxValues`, `nullCount`), computed from the batch written,
//! so outside engines skip files the way they do for any Delta table.
//!
//! Money columns carry no statistics (a decimal's JSON form differs between
//! engines, and no reader prunes on cost). Timestamps are written to the
//! millisecond, the minimum rounded down and the maximum up, so the bounds
//! still hold every value. A string longer than [`MAX_STRING_STAT`]
//! characters gets no bound rather than a truncated one that could be wrong.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{max, max_string, min, min_string};
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, SecondsFormat};
use gatemeter_schema::EpochMicros;
use serde_json::{json, Map, Value};

/// Longest string kept as a bound, as Delta writers do by default.
const MAX_STRING_STAT: usize = 32;

/// The JSON `stats` of an Add action for a file holding `batch`.
pub fn file_stats(batch: &RecordBatch) -> String {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let mut nulls = Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if matches!(field.data_type(), DataType::Decimal128(..)) {
            continue;
        }
        nulls.insert(field.name().clone(), json!(column.null_count()));
        if let Some((low, high)) = bounds(column.as_ref()) {
            mins.insert(field.name().clone(), low);
            maxs.insert(field.name().clone(), high);
        }
    }
    json!({
        "numRecords": batch.num_rows(),
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    })
    .to_string()
}

fn bounds(column: &dyn Array) -> Option<(Value, Value)> {
    match column.data_type() {
        DataType::Int32 => {
            let values = column.as_primitive::<Int32Type>();
            Some((json!(min(values)?), json!(max(values)?)))
        }
        DataType::Int64 => {
            let values = column.as_primitive::<Int64Type>();
            Some((json!(min(values)?), json!(max(values)?)))
        }
        DataType::Float64 => {
            let values = column.as_primitive::<Float64Type>();
            let (low, high) = (min(values)?, max(values)?);
            (low.is_finite() && high.is_finite()).then(|| (json!(low), json!(high)))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let values = column.as_primitive::<TimestampMicrosecondType>();
            let (low, high) = (min(values)?, max(values)?);
            Some((
                json!(millis_text(low.div_euclid(1000) * 1000)?),
                json!(millis_text(ceil_to_millis(high))?),
            ))
        }
        DataType::Utf8 => {
            let values = column.as_string::<i32>();
            let (low, high) = (min_string(values)?, max_string(values)?);
            (low.chars().count() <= MAX_STRING_STAT && high.chars().count() <= MAX_STRING_STAT)
                .then(|| (json!(low), json!(high)))
        }
        _ => None,
    }
}

/// Stats that hold only the row count and the `request_start` bounds (µs),
/// for files whose rows are not at hand (a migrated lake's).
pub fn bounds_stats(
    rows: u64,
    min_request_start: Option<EpochMicros>,
    max_request_start: Option<EpochMicros>,
) -> String {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    if let (Some(low), Some(high)) = (
        min_request_start.and_then(|t| millis_text(t.div_euclid(1000) * 1000)),
        max_request_start.and_then(|t| millis_text(ceil_to_millis(t))),
    ) {
        mins.insert("request_start".to_owned(), json!(low));
        maxs.insert("request_start".to_owned(), json!(high));
    }
    json!({"numRecords": rows, "minValues": mins, "maxValues": maxs}).to_string()
}

fn ceil_to_millis(micros: EpochMicros) -> EpochMicros {
    micros.div_euclid(1000) * 1000
        + if micros.rem_euclid(1000) == 0 {
            0
        } else {
            1000
        }
}

fn millis_text(micros: EpochMicros) -> Option<String> {
    Some(DateTime::from_timestamp_micros(micros)?.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// What the lake reads back from a file's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub rows: Option<u64>,
    pub min_request_start: Option<EpochMicros>,
    pub max_request_start: Option<EpochMicros>,
}

/// Reads `numRecords` and the `request_start` bounds of a stats JSON.
pub fn read_stats(stats: &str) -> ReadStats {
    let Ok(value) = serde_json::from_str::<Value>(stats) else {
        return ReadStats::default();
    };
    let time = |side: &str| {
        value
            .get(side)?
            .get("request_start")?
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|t| t.timestamp_micros())
    };
    ReadStats {
        rows: value.get("numRecords").and_then(Value::as_u64),
        min_request_start: time("minValues"),
        max_request_start: time("maxValues"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn bounds_round_outward_and_skip_money_and_long_strings() {
        let schema = Schema::new(vec![
            Field::new(
                "request_start",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("input_tokens", DataType::Int64, true),
            Field::new("team", DataType::Utf8, false),
            Field::new("tags", DataType::Utf8, true),
            Field::new("cost_usd", DataType::Decimal128(20, 9), true),
        ]);
        let long = "x".repeat(40);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_000_500, 2_000_001])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![Some(5), None])),
                Arc::new(StringArray::from(vec!["b", "a"])),
                Arc::new(StringArray::from(vec![Some(long.as_str()), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1), None])
                        .with_precision_and_scale(20, 9)
                        .expect("decimal"),
                ),
            ],
        )
        .expect("batch");
        let stats: Value = serde_json::from_str(&file_stats(&batch)).expect("json");
        assert_eq!(stats["numRecords"], 2);
        assert_eq!(
            stats["minValues"]["request_start"],
            "1970-01-01T00:00:01.000Z"
        );
        assert_eq!(
            stats["maxValues"]["request_start"],
            "1970-01-01T00:00:02.001Z"
        );
        assert_eq!(stats["minValues"]["input_tokens"], 5);
        assert_eq!(stats["nullCount"]["input_tokens"], 1);
        assert_eq!(stats["minValues"]["team"], "a");
        assert_eq!(stats["maxValues"]["team"], "b");
        assert!(stats["minValues"].get("tags").is_none());
        assert!(stats["nullCount"].get("cost_usd").is_none());
        let read = read_stats(&stats.to_string());
        assert_eq!(read.rows, Some(2));
        assert_eq!(read.min_request_start, Some(1_000_000));
        assert_eq!(read.max_request_start, Some(2_001_000));
    }
}
