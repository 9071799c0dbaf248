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
    let mut stats = StatsBuilder::default();
    stats.add(batch);
    stats.finish()
}

/// What is known of one column's bounds over the batches added so far.
#[derive(Debug, Clone, PartialEq)]
enum ColumnBounds {
    /// Only nulls so far.
    Empty,
    Known(Value, Value),
    /// Some batch had values but no bound (a long string, a NaN).
    Unknown,
}

/// The stats of a file written batch by batch: each batch's bounds merged
/// into the file's, equal to [`file_stats`] of all the rows together.
#[derive(Debug, Default)]
pub struct StatsBuilder {
    rows: usize,
    /// Per column, in schema order: name, null count, bounds.
    columns: Vec<(String, usize, ColumnBounds)>,
}

/// The lesser (`less`) or greater of two bounds of the same column.
fn pick(a: Value, b: Value, less: bool) -> Value {
    let a_first = match (&a, &b) {
        (Value::String(x), Value::String(y)) => x <= y,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x <= y,
            _ => x.as_f64().unwrap_or(f64::NAN) <= y.as_f64().unwrap_or(f64::NAN),
        },
        _ => true,
    };
    if a_first == less {
        a
    } else {
        b
    }
}

impl StatsBuilder {
    pub fn add(&mut self, batch: &RecordBatch) {
        if self.columns.is_empty() {
            self.columns = batch
                .schema()
                .fields()
                .iter()
                .filter(|field| !matches!(field.data_type(), DataType::Decimal128(..)))
                .map(|field| (field.name().clone(), 0, ColumnBounds::Empty))
                .collect();
        }
        self.rows += batch.num_rows();
        for (name, nulls, known) in &mut self.columns {
            let Some(column) = batch.column_by_name(name) else {
                continue;
            };
            *nulls += column.null_count();
            if column.null_count() == column.len() {
                continue;
            }
            *known = match (
                std::mem::replace(known, ColumnBounds::Unknown),
                bounds(column.as_ref()),
            ) {
                (ColumnBounds::Unknown, _) | (_, None) => ColumnBounds::Unknown,
                (ColumnBounds::Empty, Some((low, high))) => ColumnBounds::Known(low, high),
                (ColumnBounds::Known(low, high), Some((l, h))) => {
                    ColumnBounds::Known(pick(low, l, true), pick(high, h, false))
                }
            };
        }
    }

    /// The JSON `stats` of all the rows added.
    pub fn finish(&self) -> String {
        let mut mins = Map::new();
        let mut maxs = Map::new();
        let mut nulls = Map::new();
        for (name, null_count, known) in &self.columns {
            nulls.insert(name.clone(), json!(null_count));
            if let ColumnBounds::Known(low, high) = known {
                mins.insert(name.clone(), low.clone());
                maxs.insert(name.clone(), high.clone());
            }
        }
        json!({
            "numRecords": self.rows,
            "minValues": mins,
            "maxValues": maxs,
            "nullCount": nulls,
        })
        .to_string()
    }
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

    #[test]
    fn stats_added_batch_by_batch_equal_the_stats_of_all_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("input_tokens", DataType::Int64, true),
            Field::new("team", DataType::Utf8, true),
            Field::new("tags", DataType::Utf8, true),
        ]));
        let long = "y".repeat(40);
        let batch =
            |tokens: Vec<Option<i64>>, teams: Vec<Option<&str>>, tags: Vec<Option<&str>>| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(tokens)),
                        Arc::new(StringArray::from(teams)),
                        Arc::new(StringArray::from(tags)),
                    ],
                )
                .expect("batch")
            };
        let parts = [
            batch(vec![None, None], vec![Some("m"), None], vec![None, None]),
            batch(
                vec![Some(9), Some(-3)],
                vec![Some("b"), Some("z")],
                vec![Some("t"), None],
            ),
            batch(vec![Some(4)], vec![None], vec![Some(long.as_str())]),
            batch(vec![Some(12)], vec![Some("c")], vec![Some("a")]),
        ];
        let whole = arrow::compute::concat_batches(&schema, &parts).expect("concat");
        let mut builder = StatsBuilder::default();
        for part in &parts {
            builder.add(part);
        }
        assert_eq!(builder.finish(), file_stats(&whole));
        let stats: Value = serde_json::from_str(&builder.finish()).expect("json");
        assert_eq!(stats["minValues"]["input_tokens"], -3);
        assert_eq!(stats["maxValues"]["team"], "z");
        assert!(
            stats["minValues"].get("tags").is_none(),
            "one tag is too long"
        );
    }
}
