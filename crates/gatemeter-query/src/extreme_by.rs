//! `arg_max_null(value, key)` and `arg_min_null(value, key)`: per group,
//! the `value` of the row with the greatest (least) `key`, NULL values
//! included — DuckDB's functions of the same names. (DuckDB's `arg_max` /
//! `max_by` would skip rows whose value is NULL, so the final attempt's
//! NULL error class would become an earlier attempt's.) Rows whose key is
//! NULL are skipped; with no such row the result is NULL. Keys may be any
//! type the Arrow row format orders, structs included, so
//! `arg_max_null(outcome, struct(is_final, attempt_index, attempt_id))` is
//! "the outcome of the final attempt".
//!
//! Why not `last_value(outcome ORDER BY is_final, attempt_index,
//! attempt_id)`: DataFusion's ordered first/last keep every group's ordering
//! as `ScalarValue`s and compare them row by row, which made the per-request
//! roll-up of the `requests` view the most expensive step of every request
//! query. Here keys and values are encoded once per batch in the Arrow row
//! format (memcmp-comparable bytes), each group's winner is kept as bytes
//! in one arena, and arrays are decoded only when a group is emitted.

use std::mem::size_of;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::{not, nullif};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// Which end of the key order wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pick {
    Greatest,
    Least,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ExtremeBy {
    signature: Signature,
    pick: Pick,
}

/// `arg_max_null(value, key)`.
pub fn arg_max_null() -> AggregateUDF {
    AggregateUDF::from(ExtremeBy {
        signature: Signature::any(2, Volatility::Immutable),
        pick: Pick::Greatest,
    })
}

/// `arg_min_null(value, key)`.
pub fn arg_min_null() -> AggregateUDF {
    AggregateUDF::from(ExtremeBy {
        signature: Signature::any(2, Volatility::Immutable),
        pick: Pick::Least,
    })
}

impl AggregateUDFImpl for ExtremeBy {
    fn name(&self) -> &str {
        match self.pick {
            Pick::Greatest => "arg_max_null",
            Pick::Least => "arg_min_null",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{} takes (value, key)", self.name())))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let [value, key] = args.input_fields else {
            return Err(DataFusionError::Plan(format!(
                "{} takes (value, key)",
                self.name()
            )));
        };
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                value.data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "key"),
                key.data_type().clone(),
                true,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleGroup(self.groups(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups(&args)?))
    }
}

impl ExtremeBy {
    fn groups(&self, args: &AccumulatorArgs) -> Result<ExtremeByGroups> {
        let [value, key] = args.expr_fields else {
            return Err(DataFusionError::Plan(format!(
                "{} takes (value, key)",
                self.name()
            )));
        };
        ExtremeByGroups::try_new(
            self.pick,
            value.data_type().clone(),
            key.data_type().clone(),
        )
    }
}

/// Where a group's winning key and value bytes sit in the arena.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    key_len: usize,
    value_len: usize,
}

#[derive(Debug)]
struct ExtremeByGroups {
    pick: Pick,
    value_type: DataType,
    key_type: DataType,
    keys: RowConverter,
    values: RowConverter,
    /// Row-format encodings of a NULL value and a NULL key, emitted for
    /// groups that saw no row with a key.
    null_value: Vec<u8>,
    null_key: Vec<u8>,
    winners: Vec<Option<Slot>>,
    /// Every slot's key bytes followed by its value bytes; a slot replaced
    /// by a better row leaves its bytes behind until the next compaction.
    arena: Vec<u8>,
    garbage: usize,
}

/// Compact the arena once replaced bytes exceed this and half of it.
const ARENA_GARBAGE_LIMIT: usize = 1 << 20;

fn single_row(converter: &RowConverter, data_type: &DataType) -> Result<Vec<u8>> {
    let rows = converter.convert_columns(&[new_null_array(data_type, 1)])?;
    Ok(rows.row(0).as_ref().to_vec())
}

impl ExtremeByGroups {
    fn try_new(pick: Pick, value_type: DataType, key_type: DataType) -> Result<Self> {
        // NULLS LAST inside the key, as ORDER BY … ASC orders them.
        let key_options = SortOptions {
            descending: false,
            nulls_first: false,
        };
        let keys = RowConverter::new(vec![SortField::new_with_options(
            key_type.clone(),
            key_options,
        )])?;
        let values = RowConverter::new(vec![SortField::new(value_type.clone())])?;
        Ok(ExtremeByGroups {
            null_value: single_row(&values, &value_type)?,
            null_key: single_row(&keys, &key_type)?,
            pick,
            value_type,
            key_type,
            keys,
            values,
            winners: Vec::new(),
            arena: Vec::new(),
            garbage: 0,
        })
    }

    fn key_of(&self, slot: &Slot) -> &[u8] {
        &self.arena[slot.start..slot.start + slot.key_len]
    }

    fn value_of(&self, slot: &Slot) -> &[u8] {
        let start = slot.start + slot.key_len;
        &self.arena[start..start + slot.value_len]
    }

    fn beats(&self, candidate: &[u8], holder: &[u8]) -> bool {
        match self.pick {
            Pick::Greatest => candidate > holder,
            Pick::Least => candidate < holder,
        }
    }

    /// Offers each row (value, key) to its group; rows the filter drops or
    /// whose key is NULL take no part.
    fn offer(
        &mut self,
        value: &ArrayRef,
        key: &ArrayRef,
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if self.winners.len() < total_num_groups {
            self.winners.resize(total_num_groups, None);
        }
        let key_nulls = key.logical_nulls();
        let key_rows = self.keys.convert_columns(std::slice::from_ref(key))?;
        let mut value_rows: Option<Rows> = None;
        for (row, &group) in group_indices.iter().enumerate() {
            if key_nulls.as_ref().is_some_and(|nulls| nulls.is_null(row))
                || filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
            {
                continue;
            }
            let candidate = key_rows.row(row);
            let wins = match &self.winners[group] {
                None => true,
                Some(slot) => self.beats(candidate.as_ref(), self.key_of(slot)),
            };
            if !wins {
                continue;
            }
            // Values are encoded only for batches that change a winner.
            if value_rows.is_none() {
                value_rows = Some(self.values.convert_columns(std::slice::from_ref(value))?);
            }
            let encoded = value_rows.as_ref().map(|rows| rows.row(row));
            let value_bytes = encoded.as_ref().map_or(&[][..], |r| r.as_ref());
            if let Some(old) = self.winners[group] {
                self.garbage += old.key_len + old.value_len;
            }
            let start = self.arena.len();
            self.arena.extend_from_slice(candidate.as_ref());
            self.arena.extend_from_slice(value_bytes);
            self.winners[group] = Some(Slot {
                start,
                key_len: candidate.as_ref().len(),
                value_len: value_bytes.len(),
            });
        }
        if self.garbage > ARENA_GARBAGE_LIMIT && self.garbage * 2 > self.arena.len() {
            self.compact_arena(0);
        }
        Ok(())
    }

    /// Rewrites the arena with the slots from `first` on only.
    fn compact_arena(&mut self, first: usize) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for slot in self.winners[first..].iter_mut().flatten() {
            let start = arena.len();
            let len = slot.key_len + slot.value_len;
            arena.extend_from_slice(&self.arena[slot.start..slot.start + len]);
            slot.start = start;
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// The values (and keys) of groups `0..n`, decoded, without removing them.
    fn decode(&self, n: usize, converter: &RowConverter, key: bool) -> Result<ArrayRef> {
        let parser = converter.parser();
        let rows = self.winners[..n].iter().map(|slot| match (slot, key) {
            (Some(slot), true) => parser.parse(self.key_of(slot)),
            (Some(slot), false) => parser.parse(self.value_of(slot)),
            (None, true) => parser.parse(&self.null_key),
            (None, false) => parser.parse(&self.null_value),
        });
        let mut columns = converter.convert_rows(rows)?;
        columns.pop().ok_or_else(|| {
            DataFusionError::Internal("row conversion returned no column".to_owned())
        })
    }

    fn emitted(&self, emit_to: EmitTo) -> usize {
        match emit_to {
            EmitTo::All => self.winners.len(),
            EmitTo::First(n) => n.min(self.winners.len()),
        }
    }

    /// Forgets groups `0..n` (the rest move down, as `EmitTo::First` says).
    fn drop_first(&mut self, n: usize) {
        if n == self.winners.len() {
            self.winners.clear();
            self.arena.clear();
            self.garbage = 0;
        } else {
            self.compact_arena(n);
            self.winners.drain(..n);
        }
    }
}

impl GroupsAccumulator for ExtremeByGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let [value, key] = values else {
            return Err(DataFusionError::Internal(
                "arg_max_null/arg_min_null expect (value, key)".to_owned(),
            ));
        };
        self.offer(value, key, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let n = self.emitted(emit_to);
        let values = self.decode(n, &self.values, false)?;
        self.drop_first(n);
        Ok(values)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = self.emitted(emit_to);
        let values = self.decode(n, &self.values, false)?;
        let keys = self.decode(n, &self.keys, true)?;
        self.drop_first(n);
        Ok(vec![values, keys])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.update_batch(values, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let [value, key] = values else {
            return Err(DataFusionError::Internal(
                "arg_max_null/arg_min_null expect (value, key)".to_owned(),
            ));
        };
        // A row the filter drops keeps its place with a NULL key, which
        // merging skips.
        let key = match opt_filter {
            None => Arc::clone(key),
            Some(filter) => {
                let keep = datafusion::arrow::compute::kernels::boolean::is_not_null(filter)?;
                let keep = datafusion::arrow::compute::and(&keep, filter)?;
                nullif(key.as_ref(), &not(&keep)?)?
            }
        };
        Ok(vec![Arc::clone(value), key])
    }

    fn size(&self) -> usize {
        self.arena.capacity()
            + self.winners.capacity() * size_of::<Option<Slot>>()
            + self.keys.size()
            + self.values.size()
    }
}

/// The aggregate without GROUP BY: one group, index 0.
#[derive(Debug)]
struct SingleGroup(ExtremeByGroups);

impl Accumulator for SingleGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.0.winners.is_empty() {
            return ScalarValue::try_from(&self.0.value_type);
        }
        ScalarValue::try_from_array(&self.0.decode(1, &self.0.values, false)?, 0)
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        if self.0.winners.is_empty() {
            return Ok(vec![
                ScalarValue::try_from(&self.0.value_type)?,
                ScalarValue::try_from(&self.0.key_type)?,
            ]);
        }
        Ok(vec![
            ScalarValue::try_from_array(&self.0.decode(1, &self.0.values, false)?, 0)?,
            ScalarValue::try_from_array(&self.0.decode(1, &self.0.keys, true)?, 0)?,
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn run(sql: &str) -> Vec<String> {
        let ctx = SessionContext::new();
        ctx.register_udaf(arg_max_null());
        ctx.register_udaf(arg_min_null());
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
        text.lines().map(str::to_owned).collect()
    }

    const ROWS: &str = "(VALUES ('a', 'x', 1, true, 'id1'), ('a', NULL, 2, false, 'id2'), \
        ('a', 'z', 2, false, 'id0'), ('b', 'y', 5, false, 'id3'), ('b', 'w', NULL, false, 'id4'), \
        ('c', 'v', NULL, false, 'id5')) AS t(g, v, k, f, id)";

    #[tokio::test]
    async fn picks_the_value_at_the_extreme_key_per_group() {
        // hi, by (k, id): a has k = 2 twice, id2 > id0 breaks the tie and
        // id2's value is NULL; inside a struct a NULL k sorts last (as in
        // ORDER BY k ASC NULLS LAST), so b's and c's rows with NULL k win.
        // lo, by k alone: a NULL key takes no part, so c has no value.
        // fin, by (f, k, id): a's is_final-like flag wins over higher k.
        let lines = run(&format!(
            "SELECT g, arg_max_null(v, struct(k, id)) AS hi, arg_min_null(v, k) AS lo, \
             arg_max_null(v, struct(f, k, id)) AS fin FROM {ROWS} GROUP BY g ORDER BY g"
        ))
        .await;
        assert_eq!(
            lines[3..6],
            [
                "| a |    | x  | x   |",
                "| b | w  | y  | w   |",
                "| c | v  |    | v   |",
            ]
        );
    }

    #[tokio::test]
    async fn works_without_group_by_and_with_a_filter() {
        let lines = run(&format!(
            "SELECT arg_max_null(id, k) AS hi, arg_min_null(id, k) FILTER (WHERE g <> 'b') AS lo FROM {ROWS}"
        ))
        .await;
        assert_eq!(lines[3], "| id3 | id1 |");
    }

    #[tokio::test]
    async fn matches_ordered_last_value_on_few_and_many_groups() {
        // Enough rows for several batches and both aggregation phases; with
        // 150,000 groups the partial phase stops aggregating and passes rows
        // on as states (convert_to_state), filter included. The keys are
        // distinct (7919 is invertible modulo the prime 1000003).
        for groups in [1000, 150_000] {
            let sql = format!(
                "WITH t AS (SELECT value % {groups} AS g, value AS v, (value * 7919) % 1000003 AS k \
                 FROM generate_series(1, 200000)) \
                 SELECT count(*) FROM (SELECT g, arg_max_null(v, k) AS a, last_value(v ORDER BY k) AS b, \
                 arg_min_null(v, k) FILTER (WHERE v % 3 = 0) AS c, \
                 first_value(v ORDER BY k) FILTER (WHERE v % 3 = 0) AS d FROM t GROUP BY g) \
                 WHERE a = b AND c IS NOT DISTINCT FROM d"
            );
            let expected = format!("| {groups:<8} |");
            assert_eq!(run(&sql).await[3], expected, "{groups} groups");
        }
    }
}
