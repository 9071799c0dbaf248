//! Cross and nested-loop joins make their output from rows they already
//! hold, without waiting on an input, so `SELECT count(*) FROM a, b, c`
//! keeps its worker threads busy for as long as it runs and never yields:
//! the query's timeout cannot fire and aborting it does nothing, and every
//! later query on that pool waits behind it. DataFusion's own
//! `EnsureCooperative` rule makes only scans and exchanges spend tokio's
//! cooperative budget; this rule also puts such joins under a
//! `CooperativeExec`, so each output batch spends budget, the task yields
//! regularly, and timeouts and cancellation take effect.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug, Default)]
pub(crate) struct YieldingJoins;

impl PhysicalOptimizerRule for YieldingJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.is::<CrossJoinExec>() || node.is::<NestedLoopJoinExec>() {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
                Ok(Transformed::yes(wrapped))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "yielding_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
