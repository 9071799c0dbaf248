//! Reading the arguments of a bounded call (docs/security.md, "Limits of
//! one query"): string arguments row by row, and the largest or smallest
//! integer an argument can be, from which a call's cost is bounded before
//! it runs.

use datafusion::arrow::array::{Array, AsArray, StringViewArray};
use datafusion::arrow::datatypes::{DataType, Int64Type, IntervalUnit, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::ColumnarValue;

use super::OTHER_VALUE_BYTES;

pub(super) fn text_of(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(text) | ScalarValue::LargeUtf8(text) | ScalarValue::Utf8View(text) => {
            text.as_deref()
        }
        _ => None,
    }
}

/// A string argument, row by row.
pub(super) enum Texts {
    /// The same value on every row.
    Scalar(Option<String>),
    Array(StringViewArray),
    /// Not a string.
    Other,
}

impl Texts {
    pub(super) fn of(value: &ColumnarValue) -> Texts {
        match value {
            ColumnarValue::Scalar(scalar) => match scalar {
                ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_) => {
                    Texts::Scalar(text_of(scalar).map(str::to_owned))
                }
                _ => Texts::Other,
            },
            ColumnarValue::Array(array) => match array.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                    match datafusion::arrow::compute::cast(array, &DataType::Utf8View) {
                        Ok(view) => Texts::Array(view.as_string_view().clone()),
                        Err(_) => Texts::Other,
                    }
                }
                _ => Texts::Other,
            },
        }
    }

    pub(super) fn get(&self, row: usize) -> Option<&str> {
        match self {
            Texts::Scalar(text) => text.as_deref(),
            Texts::Array(array) => (!array.is_null(row)).then(|| array.value(row)),
            Texts::Other => None,
        }
    }

    /// Bytes of the value on `row`; a non-string counts as
    /// [`OTHER_VALUE_BYTES`].
    pub(super) fn len_at(&self, row: usize) -> i64 {
        match self {
            Texts::Other => OTHER_VALUE_BYTES,
            _ => self.get(row).map_or(0, |text| text.len() as i64),
        }
    }

    pub(super) fn is_ascii(&self) -> bool {
        match self {
            Texts::Scalar(text) => text.as_deref().is_none_or(str::is_ascii),
            Texts::Array(array) => array.iter().flatten().all(str::is_ascii),
            Texts::Other => true,
        }
    }

    pub(super) fn longest(&self) -> i64 {
        match self {
            Texts::Scalar(text) => text.as_deref().map_or(0, |t| t.len() as i64),
            Texts::Array(array) => (0..array.len())
                .map(|row| self.len_at(row))
                .max()
                .unwrap_or(0),
            Texts::Other => OTHER_VALUE_BYTES,
        }
    }

    pub(super) fn total(&self, rows: usize) -> i64 {
        match self {
            Texts::Array(array) => (0..array.len()).map(|row| self.len_at(row)).sum(),
            _ => self.longest().saturating_mul(rows as i64),
        }
    }
}

/// The integer `pick` chooses among `value`'s rows (none for an all-null one).
fn integer(value: &ColumnarValue, pick: fn(&[i64]) -> Option<i64>) -> Option<i64> {
    match value {
        ColumnarValue::Scalar(scalar) => match scalar.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(n) => n,
            _ => None,
        },
        ColumnarValue::Array(array) => {
            let array = datafusion::arrow::compute::cast(array, &DataType::Int64).ok()?;
            let values: Vec<i64> = array.as_primitive::<Int64Type>().iter().flatten().collect();
            pick(&values)
        }
    }
}

pub(super) fn largest(value: &ColumnarValue) -> Option<i64> {
    integer(value, |values| values.iter().copied().max())
}

fn smallest(value: &ColumnarValue) -> Option<i64> {
    integer(value, |values| values.iter().copied().min())
}

/// A point of a series as a number: integers as they are, dates and times
/// in microseconds (nanoseconds would overflow past 2262).
pub(super) fn series_point(
    value: &ColumnarValue,
    pick: fn(&ColumnarValue) -> Option<i64>,
) -> Option<i64> {
    let as_nanos = |data_type: &DataType| match data_type {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            Some(DataType::Timestamp(TimeUnit::Microsecond, None))
        }
        _ => None,
    };
    match as_nanos(&value.data_type()) {
        None => pick(value),
        Some(micros) => {
            let cast = value.cast_to(&micros, None).ok()?;
            let as_int = match cast {
                ColumnarValue::Scalar(scalar) => {
                    ColumnarValue::Scalar(scalar.cast_to(&DataType::Int64).ok()?)
                }
                ColumnarValue::Array(array) => ColumnarValue::Array(
                    datafusion::arrow::compute::cast(&array, &DataType::Int64).ok()?,
                ),
            };
            pick(&as_int)
        }
    }
}

/// The lowest and highest start and stop of a series.
pub(super) fn series_points(start: &ColumnarValue, stop: &ColumnarValue) -> Vec<Option<i64>> {
    vec![
        series_point(start, smallest),
        series_point(start, largest),
        series_point(stop, smallest),
        series_point(stop, largest),
    ]
}

/// The smallest step of a series: an integer, or an interval in
/// microseconds with a month taken as its shortest (28 days); at least 1.
pub(super) fn smallest_step(value: &ColumnarValue) -> Option<i64> {
    const DAY: i64 = 86_400_000_000;
    match value.data_type() {
        DataType::Interval(_) => {
            let cast = value
                .cast_to(&DataType::Interval(IntervalUnit::MonthDayNano), None)
                .ok()?;
            let array = cast.to_array(1).ok()?;
            array
                .as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()
                .iter()
                .flatten()
                .map(|step| {
                    (i64::from(step.months).saturating_mul(28 * DAY))
                        .saturating_add(i64::from(step.days).saturating_mul(DAY))
                        .saturating_add(step.nanoseconds / 1_000)
                        .saturating_abs()
                        .max(1)
                })
                .min()
        }
        _ => integer(value, |values| {
            values.iter().map(|v| v.saturating_abs()).min()
        }),
    }
}
