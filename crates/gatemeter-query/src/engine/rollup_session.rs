//! The session of an aggregate statement that reads stored rollups for
//! the settled hours of its window and raw rows for the rest (docs/lake.md,
//! "How queries use them").

use std::sync::Arc;

use arrow_schema::Schema;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::{LakeRoot, QueryEngine, SessionScope, TablesPresent, Window};
use crate::error::QueryError;
use crate::stored_files::StoredRollupTable;
use crate::stored_rollups::{RolledUpHours, RollupReads, BY_MODEL_OMITS, ROLLUP_VIEWS};
use crate::team_scope::TeamScope;

impl QueryEngine {
    /// A session for aggregates over `window` that reads the stored
    /// rollups where they hold (docs/lake.md, "Rollups"): the raw tables
    /// and views cover the window without the rolled-up hours, and
    /// `rollup_hourly_usage` / `rollup_hourly_requests` hold those hours'
    /// stored rows (with [`crate::RollupGrain::Days`], a whole stored day as rows
    /// whose `hour` is the day's start; with `by_model`, rows of the
    /// narrower rollups where current, null in the columns they omit);
    /// both only `teams`' rows. Their rows may come condensed (rows equal
    /// in every column a statement reads merged, `condensed.rs`): a
    /// statement over them adds rows up by each column's merge rule and
    /// never counts them. With [`crate::RollupGrain::RawOnly`] no hour is
    /// rolled up (and the rollup tables are empty).
    pub async fn rollup_session(
        &self,
        window: Window,
        teams: &TeamScope,
        reads: impl Into<RollupReads>,
    ) -> Result<(SessionContext, RolledUpHours), QueryError> {
        let files = self.files.current();
        let mut rolled = self
            .rollup_index
            .usable(window, &files, &self.rollup_basis, reads.into());
        let scope = SessionScope {
            files,
            window,
            rolled_up: Arc::new(rolled.hours.clone()),
        };
        let present = TablesPresent::of(&scope);
        rolled.rollups_only = !rolled.is_empty() && !present.compacted && !present.fresh;
        let template = self.template(present).await?;
        let ctx = self.scoped_copy(template, scope, teams).await?;
        self.register_rollups(&ctx, &rolled, teams).await?;
        Ok((ctx, rolled))
    }

    /// Registers each stored rollup's `rolled` hours as
    /// `rollup_<view>`, with the view's columns as stored and only the
    /// rows of `teams`.
    async fn register_rollups(
        &self,
        ctx: &SessionContext,
        rolled: &RolledUpHours,
        teams: &TeamScope,
    ) -> Result<(), QueryError> {
        let root = LakeRoot::of(&self.config.data_dir);
        for (view, files) in ROLLUP_VIEWS.iter().zip(&rolled.files) {
            // A file of the rollups by model has no key, environment, app
            // or org: those columns read as nulls there.
            let schema = crate::stored_rollups::stored_schema(
                ctx.table_provider(*view).await?.schema().as_ref(),
            );
            let schema = Arc::new(Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|field| {
                        let omitted = BY_MODEL_OMITS.contains(&field.name().as_str());
                        let nullable = field.is_nullable() || omitted;
                        field.as_ref().clone().with_nullable(nullable)
                    })
                    .collect::<Vec<_>>(),
            ));
            let table: Arc<dyn TableProvider> = if files.is_empty() {
                Arc::new(MemTable::try_new(schema, vec![vec![]])?)
            } else {
                Arc::new(
                    StoredRollupTable::new(
                        root.clone(),
                        files.clone(),
                        schema,
                        self.column_cache.clone(),
                    )
                    .condensed(self.condensed_cache.clone()),
                )
            };
            let table = match teams.predicate() {
                Some(only_teams) => ctx.read_table(table)?.filter(only_teams)?.into_view(),
                None => table,
            };
            ctx.register_table(crate::stored_rollups::stored_name(view), table)?;
        }
        Ok(())
    }
}
