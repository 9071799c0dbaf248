//! `attempt_cost(...)` and `attempt_cost_source(...)`: the `attempts`
//! view's `cost_usd` and `cost_source`, computed row by row with the price
//! book's own formula ([`PriceBook::price`]) and row lookup
//! ([`PriceBook::row_at`]).
//!
//! Why not a join against the `price_book` table: the effective-dated
//! range join plus the decimal CASE over its columns were a third of the
//! CPU of a one-day drill-down (10 ms joining, 12 ms in the CASE, for
//! 55,000 attempts of which three in four need no price at all). Here an
//! attempt that was not billed or reported its cost is never looked up,
//! and one that needs a price costs a binary search and a few integer
//! multiplications. Both functions follow the rules of docs/kpis.md in order:
//! `billed = false` costs 0 (`unbilled`), then the reported cost
//! (`reported`), then the book's row in force at `attempt_start` for
//! (provider, served model, else requested model) (`price_book`), else
//! NULL (`unpriced`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Int64Array, StringBuilder, StringViewArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, internal_datafusion_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use gatemeter_schema::Usd;

use crate::price_book::{PriceBook, Pricing, Usage};

/// Which of the two functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Cost,
    Source,
}

#[derive(Debug)]
struct AttemptCost {
    output: Output,
    signature: Signature,
    book: Arc<PriceBook>,
}

// Two instances are the same function when they price with the same book.
impl PartialEq for AttemptCost {
    fn eq(&self, other: &Self) -> bool {
        self.output == other.output && self.book == other.book
    }
}

impl Eq for AttemptCost {}

impl Hash for AttemptCost {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.output.hash(state);
        self.book.rows().len().hash(state);
    }
}

const COST_TYPE: DataType = DataType::Decimal128(Usd::PRECISION, Usd::SCALE as i8);

/// Arguments both functions take, in order.
fn attempt_arguments() -> Vec<DataType> {
    vec![
        DataType::Boolean,                                              // billed
        COST_TYPE,                                                      // cost_usd
        DataType::Utf8View,                                             // provider
        DataType::Utf8View,                                             // served_model
        DataType::Utf8View,                                             // requested_model
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), // attempt_start
    ]
}

/// The usage columns `attempt_cost` takes after [`attempt_arguments`].
const USAGE_COLUMNS: usize = 5;

/// `attempt_cost(billed, cost_usd, provider, served_model, requested_model,
/// attempt_start, input_tokens, output_tokens, cache_read_tokens,
/// cache_write_tokens, web_search_requests)`: DECIMAL(20, 9), NULL when
/// unpriced.
pub fn attempt_cost(book: &PriceBook) -> ScalarUDF {
    let mut arguments = attempt_arguments();
    arguments.extend(std::iter::repeat_n(DataType::Int64, USAGE_COLUMNS));
    new_function(book, Output::Cost, arguments)
}

/// `attempt_cost_source(billed, cost_usd, provider, served_model,
/// requested_model, attempt_start)`: `unbilled`, `reported`, `price_book`
/// or `unpriced`.
pub fn attempt_cost_source(book: &PriceBook) -> ScalarUDF {
    new_function(book, Output::Source, attempt_arguments())
}

fn new_function(book: &PriceBook, output: Output, arguments: Vec<DataType>) -> ScalarUDF {
    ScalarUDF::from(AttemptCost {
        output,
        signature: Signature::exact(arguments, Volatility::Immutable),
        book: Arc::new(book.clone()),
    })
}

fn argument<'a, T: 'static>(arrays: &'a [ArrayRef], index: usize, name: &str) -> Result<&'a T> {
    arrays
        .get(index)
        .and_then(|array| array.as_any().downcast_ref::<T>())
        .ok_or_else(|| internal_datafusion_err!("attempt cost: argument {name} has the wrong type"))
}

impl ScalarUDFImpl for AttemptCost {
    fn name(&self) -> &str {
        match self.output {
            Output::Cost => "attempt_cost",
            Output::Source => "attempt_cost_source",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::Cost => COST_TYPE,
            Output::Source => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let attempts = Attempts {
            billed: argument(&arrays, 0, "billed")?,
            reported: argument(&arrays, 1, "cost_usd")?,
            provider: argument(&arrays, 2, "provider")?,
            served_model: argument(&arrays, 3, "served_model")?,
            requested_model: argument(&arrays, 4, "requested_model")?,
            attempt_start: argument(&arrays, 5, "attempt_start")?,
            book: &self.book,
        };
        let rows = args.number_rows;
        let array: ArrayRef = match self.output {
            Output::Cost => {
                let names = [
                    "input_tokens",
                    "output_tokens",
                    "cache_read_tokens",
                    "cache_write_tokens",
                    "web_search_requests",
                ];
                let mut usage: Vec<&Int64Array> = Vec::with_capacity(USAGE_COLUMNS);
                for (offset, name) in names.iter().enumerate() {
                    usage.push(argument(&arrays, 6 + offset, name)?);
                }
                Arc::new(attempts.costs(rows, &usage)?)
            }
            Output::Source => {
                let mut sources = StringBuilder::with_capacity(rows, rows * "price_book".len());
                for row in 0..rows {
                    sources.append_value(attempts.priced(row).source());
                }
                Arc::new(sources.finish())
            }
        };
        Ok(ColumnarValue::Array(array))
    }
}

/// One batch's attempt columns.
struct Attempts<'a> {
    billed: &'a BooleanArray,
    reported: &'a Decimal128Array,
    provider: &'a StringViewArray,
    served_model: &'a StringViewArray,
    requested_model: &'a StringViewArray,
    attempt_start: &'a TimestampMicrosecondArray,
    book: &'a PriceBook,
}

impl Attempts<'_> {
    /// How row `row` is priced. A NULL `billed` counts as billed, as
    /// `CASE WHEN NOT billed` would have it.
    fn priced(&self, row: usize) -> Pricing<'_> {
        let billed = !self.billed.is_valid(row) || self.billed.value(row);
        let reported = self
            .reported
            .is_valid(row)
            .then(|| Usd(self.reported.value(row)));
        self.book.pricing(billed, reported, || self.book_key(row))
    }

    /// What the book is looked up by for row `row`: (provider, served
    /// model, else requested model, `attempt_start`).
    fn book_key(&self, row: usize) -> Option<(&str, &str, i64)> {
        let provider = text_at(self.provider, row)?;
        let model =
            text_at(self.served_model, row).or_else(|| text_at(self.requested_model, row))?;
        let at = self
            .attempt_start
            .is_valid(row)
            .then(|| self.attempt_start.value(row))?;
        Some((provider, model, at))
    }

    fn costs(&self, rows: usize, usage: &[&Int64Array]) -> Result<Decimal128Array> {
        let count = |column: usize, row: usize| {
            usage
                .get(column)
                .filter(|array| array.is_valid(row))
                .map(|array| array.value(row))
        };
        let mut values = Vec::with_capacity(rows);
        let mut valid = Vec::with_capacity(rows);
        for row in 0..rows {
            let cost = self
                .priced(row)
                .cost(|| Usage {
                    input: count(0, row),
                    output: count(1, row),
                    cache_read: count(2, row),
                    cache_write: count(3, row),
                    web_search_requests: count(4, row),
                })
                .map(|usd| usd.0);
            values.push(cost.unwrap_or_default());
            valid.push(cost.is_some());
        }
        let array = Decimal128Array::new(values.into(), Some(NullBuffer::from(valid)))
            .with_precision_and_scale(Usd::PRECISION, Usd::SCALE as i8)?;
        if let Err(error) = array.validate_decimal_precision(Usd::PRECISION) {
            return exec_err!("an attempt's cost does not fit DECIMAL(20, 9): {error}");
        }
        Ok(array)
    }
}

fn text_at(array: &StringViewArray, row: usize) -> Option<&str> {
    array.is_valid(row).then(|| array.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The functions as a SQL user calls them, with literals: each rule of
    /// docs/kpis.md in order, and the one rounding half away from zero.
    #[tokio::test]
    async fn sql_calls_apply_the_rules_in_order_and_round_half_away_from_zero() {
        let book = PriceBook::parse(
            "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\n\
             p,m,2026-01-01T00:00:00Z,0.0005,2,0,0,0.000000010,0\n",
        )
        .expect("parses");
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_udf(attempt_cost(&book));
        ctx.register_udf(attempt_cost_source(&book));
        let start = "arrow_cast('2026-01-02T00:00:00Z', 'Timestamp(µs, \"UTC\")')";
        let call = |billed: &str, reported: &str, served: &str, input: i64, output: i64| {
            let args = format!("{billed}, {reported}, 'p', {served}, 'm', {start}");
            format!(
                "SELECT CAST(attempt_cost({args}, {input}, {output}, 0, 0, 0) AS VARCHAR), attempt_cost_source({args})"
            )
        };
        let mut answers = Vec::new();
        for sql in [
            // 1 token × $0.0005/1M = $0.0000000005: rounds up to 1e-9, plus the fee.
            call("true", "NULL", "NULL", 1, 0),
            call("true", "NULL", "NULL", 0, 1000),
            call("true", "CAST(0.25 AS DECIMAL(20, 9))", "NULL", 1, 0),
            call("false", "CAST(0.25 AS DECIMAL(20, 9))", "NULL", 1, 0),
            call("true", "NULL", "'other'", 1, 0),
        ] {
            let batches = ctx
                .sql(&sql)
                .await
                .expect("plans")
                .collect()
                .await
                .expect("runs");
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .expect("formats")
                .to_string();
            let row = text.lines().nth(3).expect("one row").to_owned();
            answers.push(
                row.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        assert_eq!(
            answers,
            [
                "0.000000011 price_book",
                "0.002000010 price_book",
                "0.250000000 reported",
                "0.000000000 unbilled",
                "unpriced",
            ]
        );
    }
}
