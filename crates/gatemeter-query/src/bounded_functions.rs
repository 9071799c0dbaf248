//! Scalar functions whose cost the caller chooses, with a bound checked
//! before any work (docs/security.md, "Limits of one query"). One call of
//! `repeat('x', 1000000000)`, `replace(s, 'a', <64 KiB>)` or
//! `levenshtein(a, b)` over long strings could take gigabytes, or minutes of
//! a query thread that a timeout cannot interrupt; the memory limit does not
//! see what a scalar function allocates. These wrap the built-ins of the
//! same names (and the `||` operator on strings) and refuse a call whose
//! result could be longer than [`MAX_VALUE_BYTES`] for one row or
//! [`MAX_BATCH_BYTES`] over a batch, or whose work could pass
//! [`MAX_VALUE_WORK`] / [`MAX_BATCH_WORK`].
//!
//! Each bound comes from the arguments alone: lengths (in bytes, an upper
//! bound of characters), counts and the number of rows. Every function
//! whose result grows faster than the sum of its inputs is here, and the
//! ones that add their inputs up (`concat`, `||`, `overlay`) are bounded
//! too, so nesting cannot build a large value from bounded pieces.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::kernels::concat_elements::concat_elements_utf8;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

mod arguments;

use arguments::{largest, series_point, series_points, smallest_step, text_of, Texts};

/// The longest value one call may return for one row.
pub const MAX_VALUE_BYTES: i64 = 1 << 20;
/// The most one call may return over all the rows of a batch: each value
/// under the limit, a batch of thousands of them would still be gigabytes
/// (`repeat(…, 1000000)` over 1,000 rows).
pub const MAX_BATCH_BYTES: i64 = 32 << 20;
/// The most steps (character pairs) of one `levenshtein` call for one row.
pub const MAX_VALUE_WORK: i64 = 1 << 28;
/// The most steps of one `levenshtein` call over a batch.
pub const MAX_BATCH_WORK: i64 = 1 << 31;
/// What a value that is not a string may take, as text or in an array.
const OTHER_VALUE_BYTES: i64 = 24;

/// How a call's cost follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(text, n)`: the text `n` times.
    Repeat,
    /// `lpad` / `rpad(text, n, …)`: `n` characters.
    Pad,
    /// `concat`, `overlay`, `||`: at most the sum of the arguments.
    Sum,
    /// `concat_ws(separator, …)`: the arguments and a separator between each.
    ConcatWs,
    /// `replace(text, from, to)`: counted row by row.
    Replace,
    /// `regexp_replace(text, pattern, replacement[, flags])`: every position
    /// a match, each replaced by the replacement with every group reference
    /// expanded to the whole text.
    RegexpReplace,
    /// `array_repeat(element, n)`: `n` elements.
    ArrayRepeat,
    /// `array_resize(array, n[, value])`: `n` elements.
    ArrayResize,
    /// `range` / `generate_series(start, stop[, step])`: one element per step.
    Series,
    /// `levenshtein(a, b)`: the product of the lengths, in work.
    Product,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    bound: Bound,
    /// The built-in's signature, volatile: a call on constants is then
    /// evaluated per batch (where the batch bound applies) instead of once
    /// at planning, whose result a projection would copy into every row of
    /// a batch before any limit sees it.
    signature: Signature,
}

fn bounded(inner: ScalarUDF, bound: Bound) -> ScalarUDF {
    let mut signature = inner.signature().clone();
    signature.volatility = Volatility::Volatile;
    ScalarUDF::from(Bounded {
        inner: Arc::new(inner),
        bound,
        signature,
    })
}

/// The bounded functions, to register over the built-ins of the same names.
pub fn bounded_functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{core, regex, string, unicode};
    use datafusion::functions_nested::{range, repeat, resize};
    let built_ins: [(Arc<ScalarUDF>, Bound); 13] = [
        (string::repeat(), Bound::Repeat),
        (unicode::lpad(), Bound::Pad),
        (unicode::rpad(), Bound::Pad),
        (string::concat(), Bound::Sum),
        (core::overlay(), Bound::Sum),
        (string::concat_ws(), Bound::ConcatWs),
        (string::replace(), Bound::Replace),
        (regex::regexp_replace(), Bound::RegexpReplace),
        (repeat::array_repeat_udf(), Bound::ArrayRepeat),
        (resize::array_resize_udf(), Bound::ArrayResize),
        (range::range_udf(), Bound::Series),
        (range::gen_series_udf(), Bound::Series),
        (string::levenshtein(), Bound::Product),
    ];
    built_ins
        .into_iter()
        .map(|(inner, bound)| bounded(inner.as_ref().clone(), bound))
        .collect()
}

/// Plans the syntax that would reach a built-in without the function
/// registry — `a || b` on strings and `OVERLAY(… PLACING …)` — as the
/// bounded functions, so a tree of them cannot build a value of gigabytes
/// from bounded pieces. It goes first among the planners; `||` on arrays
/// is left to the array planner.
#[derive(Debug)]
pub struct BoundedSyntaxPlanner {
    operator: Arc<ScalarUDF>,
    overlay: Arc<ScalarUDF>,
}

impl Default for BoundedSyntaxPlanner {
    fn default() -> Self {
        BoundedSyntaxPlanner {
            operator: Arc::new(bounded(
                ScalarUDF::from(ConcatOperator::default()),
                Bound::Sum,
            )),
            overlay: Arc::new(bounded(
                datafusion::functions::core::overlay().as_ref().clone(),
                Bound::Sum,
            )),
        }
    }
}

impl ExprPlanner for BoundedSyntaxPlanner {
    fn plan_overlay(&self, args: Vec<Expr>) -> Result<PlannerResult<Vec<Expr>>> {
        Ok(PlannerResult::Planned(self.overlay.call(args)))
    }

    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &datafusion::common::DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let is_list = |e: &Expr| {
            e.get_type(schema).is_ok_and(|t| {
                matches!(
                    t,
                    DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
                )
            })
        };
        if is_list(&expr.left) || is_list(&expr.right) {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(
            self.operator.call(vec![expr.left, expr.right]),
        ))
    }
}

/// `a || b` on strings: null when either is null, as SQL's operator.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
}

impl Default for ConcatOperator {
    fn default() -> Self {
        ConcatOperator {
            signature: Signature::user_defined(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => exec_err!("||: expected two operands"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(vec![DataType::Utf8; arg_types.len()])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return exec_err!("||: expected two operands");
        };
        if let (ColumnarValue::Scalar(left), ColumnarValue::Scalar(right)) = (left, right) {
            let joined = match (text_of(left), text_of(right)) {
                (Some(left), Some(right)) => Some(format!("{left}{right}")),
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(joined)));
        }
        let rows = args.number_rows;
        let as_utf8 = |value: &ColumnarValue| -> Result<ArrayRef> {
            let array = value.to_array(rows)?;
            Ok(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?)
        };
        let (left, right) = (as_utf8(left)?, as_utf8(right)?);
        let joined: StringArray =
            concat_elements_utf8(left.as_string::<i32>(), right.as_string::<i32>())?;
        Ok(ColumnarValue::Array(Arc::new(joined)))
    }
}

/// The most a call may produce for one row and over the batch, and which
/// limits those are measured against.
struct Cost {
    value: i64,
    batch: i64,
    unit: &'static str,
    value_limit: i64,
    batch_limit: i64,
}

impl Cost {
    fn bytes(value: i64, batch: i64) -> Cost {
        Cost {
            value,
            batch,
            unit: "bytes",
            value_limit: MAX_VALUE_BYTES,
            batch_limit: MAX_BATCH_BYTES,
        }
    }
}

impl Bounded {
    fn cost(&self, args: &[ColumnarValue], rows: usize) -> Cost {
        let texts: Vec<Texts> = args.iter().map(Texts::of).collect();
        let rows_i64 = rows as i64;
        let arg = |index: usize| args.get(index);
        let longest = |index: usize| texts.get(index).map_or(0, |t| t.longest());
        let per_row = |value: i64| Cost::bytes(value, value.saturating_mul(rows_i64));
        match self.bound {
            Bound::Repeat => {
                per_row(longest(0).saturating_mul(arg(1).and_then(largest).unwrap_or(0).max(0)))
            }
            Bound::Pad => {
                // `n` characters of the text and the fill: one byte each
                // when both are ASCII, up to four otherwise.
                let ascii = [0, 2]
                    .iter()
                    .all(|&index| texts.get(index).is_none_or(Texts::is_ascii));
                let width = if ascii { 1 } else { 4 };
                per_row(arg(1).and_then(largest).unwrap_or(0).saturating_mul(width))
            }
            Bound::Sum => Cost::bytes(
                texts
                    .iter()
                    .map(|t| t.longest())
                    .fold(0, i64::saturating_add),
                texts
                    .iter()
                    .map(|t| t.total(rows))
                    .fold(0, i64::saturating_add),
            ),
            Bound::ConcatWs => {
                let separators = (texts.len() as i64 - 2).max(0);
                let rest = texts.get(1..).unwrap_or_default();
                Cost::bytes(
                    longest(0)
                        .saturating_mul(separators)
                        .saturating_add(rest.iter().map(|t| t.longest()).sum()),
                    texts
                        .first()
                        .map_or(0, |t| t.total(rows))
                        .saturating_mul(separators)
                        .saturating_add(rest.iter().map(|t| t.total(rows)).sum()),
                )
            }
            Bound::Replace => replace_cost(&texts, rows),
            Bound::RegexpReplace => regexp_replace_cost(&texts, args, rows),
            Bound::ArrayRepeat => {
                let count = arg(1).and_then(largest).unwrap_or(0).max(0);
                per_row(count.saturating_mul(longest(0).max(8)))
            }
            Bound::ArrayResize => {
                let count = arg(1).and_then(largest).unwrap_or(0).max(0);
                per_row(count.saturating_mul(longest(2).max(8)))
            }
            Bound::Series => {
                // The widest span over the rows, in either direction.
                let (points, step) = match args {
                    [stop] => (vec![Some(0), series_point(stop, largest)], Some(1)),
                    [start, stop] => (series_points(start, stop), Some(1)),
                    [start, stop, step] => (series_points(start, stop), smallest_step(step)),
                    _ => (vec![None], None),
                };
                let points: Option<Vec<i64>> = points.into_iter().collect();
                let elements = match (points, step) {
                    (Some(points), Some(step)) if step > 0 => {
                        let low = points.iter().copied().min().unwrap_or(0);
                        let high = points.iter().copied().max().unwrap_or(0);
                        (high.saturating_sub(low) / step).saturating_add(1)
                    }
                    // A zero step or nulls: the built-in answers.
                    _ => 0,
                };
                per_row(elements.saturating_mul(8))
            }
            Bound::Product => {
                let (a, b) = (texts.first(), texts.get(1));
                let work = |row: usize| {
                    a.map_or(0, |t| t.len_at(row))
                        .saturating_mul(b.map_or(0, |t| t.len_at(row)))
                };
                let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
                let (value, batch) = if scalar {
                    (work(0), work(0).saturating_mul(rows_i64))
                } else {
                    most_and_sum((0..rows).map(work))
                };
                Cost {
                    value,
                    batch,
                    unit: "steps",
                    value_limit: MAX_VALUE_WORK,
                    batch_limit: MAX_BATCH_WORK,
                }
            }
        }
    }
}

/// The largest of `values` and their sum.
fn most_and_sum(values: impl Iterator<Item = i64>) -> (i64, i64) {
    values.fold((0, 0), |(most, sum), value| {
        (most.max(value), sum.saturating_add(value))
    })
}

/// `replace`'s result, row by row: each occurrence of `from` (every
/// character boundary when it is empty) becomes `to`.
fn replace_cost(texts: &[Texts], rows: usize) -> Cost {
    let [text, from, to] = texts else {
        return Cost::bytes(0, 0);
    };
    let row_len = |row: usize| -> i64 {
        let (Some(text), Some(from), Some(to)) = (text.get(row), from.get(row), to.get(row)) else {
            return 0;
        };
        let count = if from.is_empty() {
            text.chars().count() + 1
        } else {
            text.matches(from).count()
        } as i64;
        (text.len() as i64)
            .saturating_sub(count.saturating_mul(from.len() as i64))
            .saturating_add(count.saturating_mul(to.len() as i64))
    };
    let all_scalar = [text, from, to]
        .iter()
        .all(|t| matches!(t, Texts::Scalar(_) | Texts::Other));
    if all_scalar {
        let value = row_len(0);
        return Cost::bytes(value, value.saturating_mul(rows as i64));
    }
    let (value, batch) = most_and_sum((0..rows).map(row_len));
    Cost::bytes(value, batch)
}

/// `regexp_replace`'s result at most: every position a match (once without
/// the `g` flag), each replaced by the replacement with each group
/// reference (`$1`, `\1`, `${name}`) as long as the whole text.
fn regexp_replace_cost(texts: &[Texts], args: &[ColumnarValue], rows: usize) -> Cost {
    let (Some(text), Some(replacement)) = (texts.first(), texts.get(2)) else {
        return Cost::bytes(0, 0);
    };
    let global = match args.get(3) {
        None => false,
        Some(ColumnarValue::Scalar(flags)) => text_of(flags).is_some_and(|f| f.contains('g')),
        Some(ColumnarValue::Array(_)) => true,
    };
    let longest_replacement = replacement.longest();
    let references = match replacement {
        Texts::Scalar(text) => text.as_deref().map_or(0, reference_count),
        Texts::Array(array) => array
            .iter()
            .flatten()
            .map(reference_count)
            .max()
            .unwrap_or(0),
        Texts::Other => 0,
    };
    let bound = |len: i64| -> i64 {
        let per_match = longest_replacement.saturating_add(references.saturating_mul(len));
        let matches = if global { len.saturating_add(1) } else { 1 };
        len.saturating_add(matches.saturating_mul(per_match))
    };
    let value = bound(text.longest());
    let batch = match text {
        Texts::Array(array) => (0..array.len())
            .map(|row| bound(text.len_at(row)))
            .fold(0, i64::saturating_add),
        _ => value.saturating_mul(rows as i64),
    };
    Cost::bytes(value, batch)
}

fn reference_count(replacement: &str) -> i64 {
    replacement.matches(['$', '\\']).count() as i64
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let cost = self.cost(&args.args, args.number_rows);
        if cost.value > cost.value_limit {
            return exec_err!(
                "{}: one value could take {} {}, over the limit of {}",
                self.inner.name(),
                cost.value,
                cost.unit,
                cost.value_limit
            );
        }
        if cost.batch > cost.batch_limit {
            return exec_err!(
                "{}: {} rows could take {} {}, over the limit of {} a batch",
                self.inner.name(),
                args.number_rows,
                cost.batch,
                cost.unit,
                cost.batch_limit
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
        for function in bounded_functions() {
            ctx.register_udf(function);
        }
        let state = ctx.state();
        let mut planners: Vec<Arc<dyn ExprPlanner>> =
            vec![Arc::new(BoundedSyntaxPlanner::default())];
        planners.extend(state.expr_planners().iter().cloned());
        let ctx = SessionContext::new_with_state(
            datafusion::execution::SessionStateBuilder::new_from_existing(state)
                .with_expr_planners(planners)
                .build(),
        );
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn calls_over_the_bound_are_refused_before_any_work() {
        for sql in [
            "SELECT lpad('x', 2000000000, 'y')",
            "SELECT rpad('x', 2000000000)",
            "SELECT length(repeat('x', 1000000000))",
            "SELECT length(repeat(repeat('ab', 1000), 1000))",
            "SELECT lpad('x', n) FROM (VALUES (1), (5000000)) AS t(n)",
            "SELECT lpad('x', 300000, 'é')",
            // Each value under the bound, the batch of them over it.
            "SELECT length(repeat('x', 1000000)) FROM generate_series(1, 100)",
            "SELECT repeat('x', 1000000) FROM generate_series(1, 100)",
            // Multiplying: one call of gigabytes.
            "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 60000)))",
            "SELECT length(replace(repeat('a', 1000), '', repeat('b', 60000)))",
            "SELECT length(regexp_replace(repeat('a', 1000000), 'a', repeat('b', 60000), 'g'))",
            "SELECT length(regexp_replace(repeat('a', 5000), 'a', '$0$0$0', 'g'))",
            "SELECT cardinality(array_repeat(repeat('a', 60000), 1000000))",
            "SELECT cardinality(list_repeat(1, 100000000))",
            "SELECT cardinality(array_resize([1], 100000000, 0))",
            "SELECT cardinality(range(1, 10000000000))",
            "SELECT cardinality(generate_series(1, 10000000000, 1))",
            "SELECT cardinality(range(TIMESTAMP '2000-01-01', TIMESTAMP '2200-01-01', INTERVAL '1 second'))",
            "SELECT cardinality(range(DATE '2000-01-01', DATE '9000-01-01', INTERVAL '1 day'))",
            "SELECT levenshtein(repeat('a', 1000000), repeat('b', 1000000))",
            // Adding up: nesting cannot grow a value past the bound.
            "SELECT length(concat(repeat('a', 600000), repeat('b', 600000)))",
            "SELECT length(repeat('a', 600000) || repeat('b', 600000))",
            "WITH t AS (SELECT repeat('a', 300000) AS r) SELECT length((r || r) || (r || r)) FROM t",
            "WITH a AS (SELECT repeat('a', 400000) AS r), b AS (SELECT r || r AS r FROM a), \
             c AS (SELECT r || r AS r FROM b) SELECT length(r) FROM c",
            "SELECT length(concat_ws(repeat(',', 100000), 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'))",
            "SELECT length(overlay(repeat('a', 600000) placing repeat('b', 600000) from 2))",
        ] {
            let error = run(sql).await.expect_err(sql).to_string();
            assert!(error.contains("over the limit"), "{sql}: {error}");
        }
    }

    #[tokio::test]
    async fn calls_within_the_bound_are_the_built_ins() {
        let wide = run("SELECT length(lpad('x', 1000000, '-')) AS n")
            .await
            .expect("a million ASCII characters");
        assert!(wide.contains("| 1000000 |"), "{wide}");
        let table = run("SELECT lpad('7', 3, '0') AS a, rpad('ab', 4, '.') AS b, \
             repeat('xy', 3) AS c, concat('a', NULL, 'b') AS d, 'a' || 'b' || 1 AS e, \
             replace('banana', 'an', 'AN') AS f, regexp_replace('a-b-c', '-', '+', 'g') AS g, \
             concat_ws(',', 'x', 'y') AS h, levenshtein('kitten', 'sitting') AS i, \
             cardinality(range(1, 5)) AS j, cardinality(array_repeat('z', 3)) AS k, \
             overlay('abc' placing 'x' from 2) AS l, ('a' || NULL) IS NULL AS m")
        .await
        .expect("within the bound");
        assert!(
            table.contains("| 007 | ab.. | xyxyxy | ab | ab1 | bANANa | a+b+c | x,y | 3 | 4 | 3 | axc | true |"),
            "{table}"
        );
        // Long lake-like values with many short replacements stay allowed:
        // the count is exact, not every character a match.
        let many = run("SELECT length(replace(repeat('a,b', 200000), ',', ', ')) AS n")
            .await
            .expect("within the bound");
        assert!(many.contains("| 800000 |"), "{many}");
        let column = run("SELECT 'x' || c AS joined FROM (VALUES ('a'), (NULL)) AS t(c)")
            .await
            .expect("operator on a column");
        assert!(
            column.contains("| xa ") && column.contains("|        |"),
            "{column}"
        );
        let arrays = run("SELECT [1, 2] || [3] AS a").await.expect("array ||");
        assert!(arrays.contains("[1, 2, 3]"), "{arrays}");
    }
}
