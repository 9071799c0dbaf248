//! Record batches as JSON rows, CSV, a table or Parquet — the formats of
//! `gatemeter kpis` and `gatemeter query`. Money (decimals) is written as an
//! exact decimal string, never a float; a NaN or infinite float is `null`.

use chrono::{DateTime, SecondsFormat};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Number, Value};

use crate::error::QueryError;

fn decimal_text(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return value.to_string();
    }
    let divisor = 10i128.pow(scale as u32);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / divisor as u128,
        abs % divisor as u128,
        width = scale as usize
    )
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn timestamp(micros: Option<i64>) -> Value {
    micros
        .and_then(DateTime::from_timestamp_micros)
        .map_or(Value::Null, |t| {
            Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        })
}

fn cell(array: &ArrayRef, row: usize) -> Result<Value, QueryError> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => Value::String(decimal_text(
            array.as_primitive::<Decimal128Type>().value(row),
            *scale,
        )),
        DataType::Timestamp(unit, _) => timestamp(match unit {
            TimeUnit::Second => array
                .as_primitive::<TimestampSecondType>()
                .value(row)
                .checked_mul(1_000_000),
            TimeUnit::Millisecond => array
                .as_primitive::<TimestampMillisecondType>()
                .value(row)
                .checked_mul(1000),
            TimeUnit::Microsecond => {
                Some(array.as_primitive::<TimestampMicrosecondType>().value(row))
            }
            TimeUnit::Nanosecond => {
                Some(array.as_primitive::<TimestampNanosecondType>().value(row) / 1000)
            }
        }),
        _ => {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
            Value::String(formatter.value(row).to_string())
        }
    })
}

/// One JSON object per row, keyed by column name.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Value>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut object = Map::with_capacity(schema.fields().len());
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                object.insert(field.name().clone(), cell(column, row)?);
            }
            rows.push(Value::Object(object));
        }
    }
    Ok(rows)
}

/// CSV with a header; money as exact decimals, NULL as an empty field.
pub fn csv(batches: &[RecordBatch]) -> Result<String, QueryError> {
    let mut out = String::new();
    let Some(first) = batches.first() else {
        return Ok(out);
    };
    let schema = first.schema();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect();
    out.push_str(&names.join(","));
    out.push('\n');
    for row in json_rows(batches)? {
        let Value::Object(object) = row else { continue };
        let cells: Vec<String> = object
            .values()
            .map(|v| match v {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A plain-text table for terminals.
pub fn table(batches: &[RecordBatch]) -> Result<String, QueryError> {
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}

/// The batches as one Parquet file's bytes.
pub fn parquet(batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut buffer = Vec::new();
    let Some(first) = batches.first() else {
        return Ok(buffer);
    };
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut buffer, first.schema(), None)
            .map_err(datafusion::error::DataFusionError::from)?;
    for batch in batches {
        writer
            .write(batch)
            .map_err(datafusion::error::DataFusionError::from)?;
    }
    writer
        .close()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::decimal_text;

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(decimal_text(6_000_000_000, 9), "6.000000000");
        assert_eq!(decimal_text(-1_500, 3), "-1.500");
        assert_eq!(decimal_text(5, 9), "0.000000005");
        assert_eq!(decimal_text(42, 0), "42");
    }
}
