//! `string_agg` with a bound on what it holds: each input value adds to one
//! growing string, which DataFusion's memory pool does not see, so
//! `string_agg(repeat('y', 1000000), ',') FROM generate_series(1, 1000)`
//! reached 2 GB before the timeout stopped it. The replacement checks the
//! accumulator's size after every batch and fails the query past
//! [`MAX_AGGREGATE_BYTES`], before it can take the process's memory.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF, Signature,
};

/// The most one aggregate's state may hold, in bytes.
pub const MAX_AGGREGATE_BYTES: usize = 64 << 20;

fn over_limit(name: &str, size: usize) -> Result<()> {
    if size > MAX_AGGREGATE_BYTES {
        return exec_err!(
            "{name}: the aggregate holds {size} bytes, over the limit of {MAX_AGGREGATE_BYTES}"
        );
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedAggregate {
    inner: Arc<AggregateUDF>,
}

/// The bounded aggregates, to register over the built-ins of the same name.
pub fn bounded_aggregates() -> Vec<AggregateUDF> {
    let string_agg = datafusion::functions_aggregate::string_agg::string_agg_udaf();
    vec![AggregateUDF::from(BoundedAggregate { inner: string_agg })]
}

impl AggregateUDFImpl for BoundedAggregate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(BoundedAccumulator {
            name: self.inner.name().to_owned(),
            inner: self.inner.accumulator(args)?,
        }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(BoundedGroupsAccumulator {
            name: self.inner.name().to_owned(),
            inner: self.inner.create_groups_accumulator(args)?,
        }))
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        // The built-in's reverse would be the unbounded built-in.
        ReversedUDAF::NotSupported
    }
}

#[derive(Debug)]
struct BoundedAccumulator {
    name: String,
    inner: Box<dyn Accumulator>,
}

impl Accumulator for BoundedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)?;
        over_limit(&self.name, self.inner.size())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)?;
        over_limit(&self.name, self.inner.size())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

struct BoundedGroupsAccumulator {
    name: String,
    inner: Box<dyn GroupsAccumulator>,
}

impl GroupsAccumulator for BoundedGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .update_batch(values, group_indices, opt_filter, total_num_groups)?;
        over_limit(&self.name, self.inner.size())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)?;
        over_limit(&self.name, self.inner.size())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.inner.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<usize> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn string_agg_stops_at_the_bound_and_works_below_it() {
        let ctx = SessionContext::new();
        for function in bounded_aggregates() {
            ctx.register_udaf(function);
        }
        let error = run(
            &ctx,
            "SELECT string_agg(repeat('y', 100000), ',') FROM generate_series(1, 1000)",
        )
        .await
        .expect_err("100 MB is over the bound")
        .to_string();
        assert!(error.contains("over the limit"), "{error}");
        let grouped = run(
            &ctx,
            "SELECT value % 2, string_agg(repeat('y', 100000), ',') FROM generate_series(1, 1000) GROUP BY value % 2",
        )
        .await
        .expect_err("grouped, too");
        assert!(grouped.to_string().contains("over the limit"), "{grouped}");
        assert_eq!(
            run(
                &ctx,
                "SELECT string_agg(CAST(value AS VARCHAR), ',') FROM generate_series(1, 1000)"
            )
            .await
            .expect("small"),
            1
        );
    }
}
