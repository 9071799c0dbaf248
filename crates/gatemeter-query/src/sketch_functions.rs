//! The [`DdSketch`] in SQL (docs/lake.md, "Rollups"):
//!
//! - `ddsketch(value)`: the sketch of a group's values, as `BINARY`;
//! - `ddsketch_merge(sketch)`: the sketch of a group's sketches (hours into
//!   a window);
//! - `ddsketch_quantile(sketch, q)`: the value at quantile `q`, within 1 %;
//! - `ddsketch_count(sketch)`: how many values it holds.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, UInt64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use crate::sketch::DdSketch;

/// The sketch functions, to register in every session.
pub fn sketch_aggregates() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(SketchAggregate::new("ddsketch", DataType::Float64)),
        AggregateUDF::from(SketchAggregate::new("ddsketch_merge", DataType::Binary)),
    ]
}

pub fn sketch_scalars() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(SketchRead::quantile()),
        ScalarUDF::from(SketchRead::count()),
    ]
}

fn read(bytes: &[u8]) -> Result<DdSketch> {
    DdSketch::from_bytes(bytes).or_else(|e| exec_err!("{e}"))
}

/// `ddsketch(value)` over numbers, `ddsketch_merge(sketch)` over sketches.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SketchAggregate {
    name: &'static str,
    input: DataType,
    signature: Signature,
}

impl SketchAggregate {
    fn new(name: &'static str, input: DataType) -> SketchAggregate {
        SketchAggregate {
            name,
            // Any number in: `coerce_types` casts it to the input type.
            signature: Signature::user_defined(Volatility::Immutable),
            input,
        }
    }
}

impl AggregateUDFImpl for SketchAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 1 {
            return exec_err!("{}: expected one argument", self.name);
        }
        Ok(vec![self.input.clone()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sketch]", args.name),
            DataType::Binary,
            true,
        ))])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SketchAccumulator {
            sketch: DdSketch::new(),
            merges: self.input == DataType::Binary,
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(SketchGroups {
            sketches: Vec::new(),
            heap_bytes: 0,
            merges: self.input == DataType::Binary,
        }))
    }
}

/// The sketch of every group of a grouped aggregation in one vector, so
/// that a batch of stored sketches merges row by row into its groups
/// (DataFusion's per-group adapter copies each group's rows out first).
#[derive(Debug)]
struct SketchGroups {
    sketches: Vec<DdSketch>,
    heap_bytes: usize,
    merges: bool,
}

impl SketchGroups {
    fn grow(&mut self, total_num_groups: usize) {
        if total_num_groups > self.sketches.len() {
            self.sketches.resize_with(total_num_groups, DdSketch::new);
        }
    }

    /// Merges row `i` of `sketches` into group `group_indices[i]` where
    /// `take(i)` holds.
    fn merge_rows(
        &mut self,
        sketches: &ArrayRef,
        group_indices: &[usize],
        take: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let sketches = sketches.as_binary::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if sketches.is_valid(row) && take(row) {
                let sketch = &mut self.sketches[group];
                let before = sketch.heap_bytes();
                merge_into(sketch, sketches.value(row))?;
                self.heap_bytes = self.heap_bytes + sketch.heap_bytes() - before;
            }
        }
        Ok(())
    }

    fn take(&mut self, emit_to: EmitTo) -> Vec<DdSketch> {
        let taken = emit_to.take_needed(&mut self.sketches);
        let freed: usize = taken.iter().map(DdSketch::heap_bytes).sum();
        self.heap_bytes = self.heap_bytes.saturating_sub(freed);
        taken
    }
}

impl GroupsAccumulator for SketchGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        let Some(values) = values.first() else {
            return Ok(());
        };
        let passes = |row: usize| opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        if self.merges {
            return self.merge_rows(values, group_indices, passes);
        }
        let values = values.as_primitive::<Float64Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if values.is_valid(row) && passes(row) {
                let sketch = &mut self.sketches[group];
                let before = sketch.heap_bytes();
                sketch.add(values.value(row));
                self.heap_bytes = self.heap_bytes + sketch.heap_bytes() - before;
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.grow(total_num_groups);
        match values.first() {
            Some(states) => self.merge_rows(states, group_indices, |_| true),
            None => Ok(()),
        }
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sketches = self.take(emit_to);
        let array: BinaryArray = sketches
            .iter()
            .map(|s| (!s.is_empty()).then(|| s.to_bytes()))
            .collect();
        Ok(Arc::new(array))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let sketches = self.take(emit_to);
        let array: BinaryArray = sketches.iter().map(|s| Some(s.to_bytes())).collect();
        Ok(vec![Arc::new(array)])
    }

    /// Each row as a state of its own: its sketch (a stored sketch as it
    /// is, a value as a sketch of one), none where it is null or filtered
    /// out.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let Some(values) = values.first() else {
            return exec_err!("ddsketch: expected one argument");
        };
        let passes = |row: usize| opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        let states: BinaryArray = if self.merges {
            let sketches = values.as_binary::<i32>();
            (0..sketches.len())
                .map(|row| (sketches.is_valid(row) && passes(row)).then(|| sketches.value(row)))
                .collect()
        } else {
            let numbers = values.as_primitive::<Float64Type>();
            (0..numbers.len())
                .map(|row| {
                    (numbers.is_valid(row) && passes(row)).then(|| {
                        let mut sketch = DdSketch::new();
                        sketch.add(numbers.value(row));
                        sketch.to_bytes()
                    })
                })
                .collect()
        };
        Ok(vec![Arc::new(states)])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.sketches.capacity() * std::mem::size_of::<DdSketch>()
            + self.heap_bytes
    }
}

fn merge_into(sketch: &mut DdSketch, bytes: &[u8]) -> Result<()> {
    sketch.merge_bytes(bytes).or_else(|e| exec_err!("{e}"))
}

#[derive(Debug)]
struct SketchAccumulator {
    sketch: DdSketch,
    /// The input is sketches, not values.
    merges: bool,
}

impl SketchAccumulator {
    fn merge_sketches(&mut self, sketches: &ArrayRef) -> Result<()> {
        for bytes in sketches.as_binary::<i32>().iter().flatten() {
            merge_into(&mut self.sketch, bytes)?;
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        if self.merges {
            return self.merge_sketches(values);
        }
        for value in values.as_primitive::<Float64Type>().iter().flatten() {
            self.sketch.add(value);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        match states.first() {
            Some(sketches) => self.merge_sketches(sketches),
            None => Ok(()),
        }
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(
            (!self.sketch.is_empty()).then(|| self.sketch.to_bytes()),
        ))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.sketch.to_bytes()))])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.heap_bytes()
    }
}

/// `ddsketch_quantile(sketch, q)` and `ddsketch_count(sketch)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SketchRead {
    name: &'static str,
    signature: Signature,
    returns: DataType,
}

impl SketchRead {
    fn quantile() -> SketchRead {
        SketchRead {
            name: "ddsketch_quantile",
            signature: Signature::one_of(
                vec![TypeSignature::Exact(vec![
                    DataType::Binary,
                    DataType::Float64,
                ])],
                Volatility::Immutable,
            ),
            returns: DataType::Float64,
        }
    }

    fn count() -> SketchRead {
        SketchRead {
            name: "ddsketch_count",
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
            returns: DataType::UInt64,
        }
    }
}

impl ScalarUDFImpl for SketchRead {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(sketches) = arrays.first() else {
            return exec_err!("{}: expected a sketch", self.name);
        };
        let sketches = sketches.as_binary::<i32>();
        let sketch_at = |row: usize| -> Result<Option<DdSketch>> {
            if sketches.is_null(row) {
                return Ok(None);
            }
            read(sketches.value(row)).map(Some)
        };
        if self.returns == DataType::UInt64 {
            let mut counts = datafusion::arrow::array::PrimitiveBuilder::<UInt64Type>::new();
            for row in 0..sketches.len() {
                counts.append_option(sketch_at(row)?.map(|s| s.count()));
            }
            return Ok(ColumnarValue::Array(Arc::new(counts.finish())));
        }
        let Some(quantiles) = arrays.get(1) else {
            return exec_err!("{}: expected a quantile", self.name);
        };
        let quantiles = quantiles.as_primitive::<Float64Type>();
        let mut values = Float64Builder::with_capacity(sketches.len());
        for row in 0..sketches.len() {
            let q = (!quantiles.is_null(row)).then(|| quantiles.value(row));
            if q.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
                return exec_err!("{}: the quantile must be between 0 and 1", self.name);
            }
            values.append_option(sketch_at(row)?.zip(q).and_then(|(s, q)| s.quantile(q)));
        }
        Ok(ColumnarValue::Array(Arc::new(values.finish())))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    fn context() -> SessionContext {
        let ctx = SessionContext::new();
        for function in sketch_aggregates() {
            ctx.register_udaf(function);
        }
        for function in sketch_scalars() {
            ctx.register_udf(function);
        }
        ctx
    }

    async fn one_row(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("formats")
            .to_string();
        table
            .lines()
            .nth(3)
            .unwrap_or_default()
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .filter(|cell| !cell.is_empty())
            .collect()
    }

    #[tokio::test]
    async fn sketches_of_parts_merge_into_the_sketch_of_the_whole() {
        let ctx = context();
        // Latencies 1..=10000 in ten groups; the merged groups answer as the
        // sketch of all of them, and both are within 1% of the exact p95.
        let cells = one_row(
            &ctx,
            "WITH v AS (SELECT value AS ms, value % 10 AS part FROM generate_series(1, 10000)), \
             parts AS (SELECT part, ddsketch(ms) AS s FROM v GROUP BY part) \
             SELECT ddsketch_quantile((SELECT ddsketch_merge(s) FROM parts), 0.95) AS merged, \
                    ddsketch_quantile((SELECT ddsketch(ms) FROM v), 0.95) AS whole, \
                    ddsketch_count((SELECT ddsketch_merge(s) FROM parts)) AS n",
        )
        .await;
        assert_eq!(cells[0], cells[1], "{cells:?}");
        let p95: f64 = cells[0].parse().expect("a number");
        assert!((p95 - 9500.0).abs() <= 95.0, "{p95}");
        assert_eq!(cells[2], "10000");
    }

    #[tokio::test]
    async fn grouped_and_filtered_sketches_answer_as_one_sketch_per_group() {
        let ctx = context();
        // Many groups of parts, merged per group (the grouped path) and
        // over one group's rows alone (the single-group path), with a
        // FILTER and nulls in both.
        let sql = |group: &str| {
            format!(
                "WITH v AS (SELECT value, value % 7 AS g, value % 50 AS part,                    CASE WHEN value % 11 = 0 THEN NULL ELSE CAST(value AS DOUBLE) END AS ms                    FROM generate_series(1, 20000)),                  parts AS (SELECT g, part, ddsketch(ms) FILTER (WHERE value % 3 <> 0) AS s                    FROM v GROUP BY g, part)                  SELECT ddsketch_quantile(ddsketch_merge(s) FILTER (WHERE part <> 4), 0.9),                    ddsketch_count(ddsketch_merge(s) FILTER (WHERE part <> 4))                  FROM parts {group}"
            )
        };
        let grouped = one_row(
            &ctx,
            &format!("{} ORDER BY g LIMIT 1 OFFSET 2", sql("GROUP BY g")),
        )
        .await;
        let alone = one_row(&ctx, &sql("WHERE g = 2")).await;
        assert_eq!(grouped, alone);
        let exact = one_row(
            &ctx,
            "SELECT percentile_cont(CAST(value AS DOUBLE), 0.9), count(*) FROM generate_series(1, 20000)              WHERE value % 7 = 2 AND value % 11 <> 0 AND value % 3 <> 0 AND value % 50 <> 4",
        )
        .await;
        assert_eq!(grouped[1], exact[1], "{grouped:?} {exact:?}");
        let (estimate, truth): (f64, f64) = (
            grouped[0].parse().expect("estimate"),
            exact[0].parse().expect("exact"),
        );
        assert!(
            (estimate - truth).abs() <= 0.01 * truth,
            "{estimate} vs {truth}"
        );
    }

    #[tokio::test]
    async fn quantiles_are_within_one_percent_of_percentile_cont() {
        let ctx = context();
        // Skewed, gappy latencies: squares, reduced, as long tails are.
        for q in ["0.5", "0.9", "0.95", "0.99", "0.999"] {
            let cells = one_row(
                &ctx,
                &format!(
                    "WITH v AS (SELECT CAST((value * value) % 99991 AS DOUBLE) + 0.5 AS ms \
                     FROM generate_series(1, 20000)) \
                     SELECT ddsketch_quantile(ddsketch(ms), {q}), percentile_cont(ms, {q}) FROM v"
                ),
            )
            .await;
            let estimate: f64 = cells[0].parse().expect("estimate");
            let exact: f64 = cells[1].parse().expect("exact");
            assert!(
                (estimate - exact).abs() <= 0.01 * exact,
                "q {q}: {estimate} vs {exact}"
            );
        }
    }

    #[tokio::test]
    async fn bad_sketches_and_quantiles_are_errors() {
        let ctx = context();
        for sql in [
            "SELECT ddsketch_quantile(X'02', 0.5)",
            "SELECT ddsketch_quantile((SELECT ddsketch(1.0)), 1.5)",
        ] {
            let outcome = match ctx.sql(sql).await {
                Ok(frame) => frame.collect().await.map(|_| ()),
                Err(e) => Err(e),
            };
            assert!(outcome.is_err(), "{sql}");
        }
    }
}
