//! `repeat`, `lpad` and `rpad` with a bound on the result: the caller
//! chooses how long their result is, so one call (`lpad('x', 2000000000,
//! 'y')`, `repeat('x', 1000000000)`) could take gigabytes and minutes of a
//! query thread that a timeout cannot interrupt. These replace the built-in
//! functions of the same name and refuse, before any work, a result longer
//! than [`MAX_STRING_RESULT_CHARS`].

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The longest string these functions return, in characters.
pub const MAX_STRING_RESULT_CHARS: i64 = 1 << 20;
/// The most characters one call may return over all the rows of a batch:
/// each value under the limit, a batch of thousands of them would still be
/// gigabytes (`repeat(…, 1000000)` over 1,000 rows).
pub const MAX_BATCH_RESULT_CHARS: i64 = 32 << 20;

/// How the result length follows from the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ResultLength {
    /// `repeat(text, n)`: the length of `text` times `n`.
    Repeat,
    /// `lpad` / `rpad(text, n, …)`: `n`.
    Pad,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    length: ResultLength,
    /// The built-in's signature, volatile: a call on constants is then
    /// evaluated per batch (where the batch bound applies) instead of once
    /// at planning, whose result a projection would copy into every row of
    /// a batch before any limit sees it.
    signature: Signature,
}

/// The bounded `repeat`, `lpad` and `rpad`, to register over the built-ins.
pub fn bounded_string_functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{string, unicode};
    [
        (string::repeat(), ResultLength::Repeat),
        (unicode::lpad(), ResultLength::Pad),
        (unicode::rpad(), ResultLength::Pad),
    ]
    .into_iter()
    .map(|(inner, length)| {
        let mut signature = inner.signature().clone();
        signature.volatility = Volatility::Volatile;
        ScalarUDF::from(Bounded {
            inner,
            length,
            signature,
        })
    })
    .collect()
}

/// The largest integer among `value`'s rows (none for an all-null one).
fn largest_integer(value: &ColumnarValue) -> Option<i64> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Int64(n)) => *n,
        ColumnarValue::Scalar(other) => {
            other.cast_to(&DataType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(n) => n,
                _ => None,
            })
        }
        ColumnarValue::Array(array) => {
            let array = datafusion::arrow::compute::cast(array, &DataType::Int64).ok()?;
            datafusion::arrow::compute::max(array.as_primitive::<Int64Type>())
        }
    }
}

/// The longest string among `value`'s rows, in characters.
fn longest_string(value: &ColumnarValue) -> i64 {
    let chars = |text: &str| text.chars().count() as i64;
    match value {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(text) | ScalarValue::LargeUtf8(text) | ScalarValue::Utf8View(text),
        ) => text.as_deref().map_or(0, chars),
        ColumnarValue::Scalar(_) => 0,
        ColumnarValue::Array(array) => {
            let Ok(array) = datafusion::arrow::compute::cast(array, &DataType::Utf8View) else {
                return 0;
            };
            array
                .as_string_view()
                .iter()
                .flatten()
                .map(chars)
                .max()
                .unwrap_or(0)
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let count = args.args.get(1).and_then(largest_integer).unwrap_or(0);
        let length = match self.length {
            ResultLength::Pad => count,
            ResultLength::Repeat => args
                .args
                .first()
                .map_or(0, longest_string)
                .saturating_mul(count),
        };
        if length > MAX_STRING_RESULT_CHARS {
            return exec_err!(
                "{}: a result of {length} characters is over the limit of {MAX_STRING_RESULT_CHARS}",
                self.inner.name()
            );
        }
        let batch = length.saturating_mul(args.number_rows as i64);
        if batch > MAX_BATCH_RESULT_CHARS {
            return exec_err!(
                "{}: {} rows of up to {length} characters are over the limit of {MAX_BATCH_RESULT_CHARS} characters a batch",
                self.inner.name(),
                args.number_rows
            );
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn run(sql: &str) -> Result<String> {
        let ctx = SessionContext::new();
        for function in bounded_string_functions() {
            ctx.register_udf(function);
        }
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn results_over_the_bound_are_refused_before_any_work() {
        for sql in [
            "SELECT lpad('x', 2000000000, 'y')",
            "SELECT rpad('x', 2000000000)",
            "SELECT length(repeat('x', 1000000000))",
            "SELECT length(repeat(repeat('ab', 1000), 1000))",
            "SELECT lpad('x', n) FROM (VALUES (1), (5000000)) AS t(n)",
            // Each value under the bound, the batch of them over it.
            "SELECT length(repeat('x', 1000000)) FROM generate_series(1, 100)",
            "SELECT repeat('x', 1000000) FROM generate_series(1, 100)",
        ] {
            let error = run(sql).await.expect_err(sql).to_string();
            assert!(error.contains("over the limit"), "{sql}: {error}");
        }
    }

    #[tokio::test]
    async fn results_within_the_bound_are_the_built_ins() {
        let table =
            run("SELECT lpad('7', 3, '0') AS a, rpad('ab', 4, '.') AS b, repeat('xy', 3) AS c")
                .await
                .expect("within the bound");
        assert!(table.contains("| 007 | ab.. | xyxyxy |"), "{table}");
    }
}
