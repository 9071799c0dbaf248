//! `hourly_usage` and `hourly_requests` as SQL sees them (the SQL endpoint,
//! PostgreSQL, Grafana's panels): the stored rollup rows of every hour
//! whose stamp still matches (docs/lake.md, "Rollups"), and the view
//! computed over the raw files of every other hour. Both give the same rows
//! for a settled hour, so a query cannot tell which it read, only how fast
//! it came back.
//!
//! Which hours are stored is decided when a query scans, against the files
//! the session reads, so a long-lived session (PostgreSQL) follows every
//! compaction and every late file.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{provider_as_source, TableProvider, TableType, ViewTable};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    cast, col, Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;

use crate::engine::{CommittedFiles, LakeRoot, SessionScope};
use crate::stored_rollups::{stored_schema, RollupGrain, SharedRollupIndex};
use crate::team_scope::RowScope;

/// Where a rolled-up view's stored hours are looked up.
#[derive(Debug, Clone)]
pub(crate) struct StoredHours {
    pub(crate) files: CommittedFiles,
    pub(crate) index: SharedRollupIndex,
    /// What a stored hour must have been computed with (the engine's views
    /// and price book).
    pub(crate) basis: String,
    pub(crate) root: LakeRoot,
}

/// One rollup view: stored rows where they hold, the view over raw rows
/// elsewhere.
#[derive(Debug)]
pub(crate) struct RolledUpView {
    /// The view over the raw tables.
    raw: Arc<ViewTable>,
    /// The view's position in [`crate::stored_rollups::ROLLUP_VIEWS`].
    position: usize,
    stored: StoredHours,
}

impl RolledUpView {
    pub(crate) fn new(raw: Arc<ViewTable>, position: usize, stored: StoredHours) -> RolledUpView {
        RolledUpView {
            raw,
            position,
            stored,
        }
    }

    /// The stored files as a table with the view's column types.
    fn stored_rows(
        &self,
        state: &SessionState,
        files: &[String],
        teams: Option<Expr>,
    ) -> Result<LogicalPlan> {
        let view_schema = self.raw.schema();
        let statistics = state.runtime_env().cache_manager.get_file_statistic_cache();
        let table = stored_table(
            &self.stored.root,
            files,
            stored_schema(view_schema.as_ref()),
            statistics,
        )?;
        let mut plan =
            LogicalPlanBuilder::scan("stored", provider_as_source(Arc::new(table)), None)?;
        if let Some(teams) = teams {
            plan = plan.filter(teams)?;
        }
        // Stored strings are plain UTF-8; the view's are string views.
        let as_view_types: Vec<Expr> = view_schema
            .fields()
            .iter()
            .map(|field| cast(col(field.name()), field.data_type().clone()).alias(field.name()))
            .collect();
        plan.project(as_view_types)?.build()
    }
}

#[async_trait]
impl TableProvider for RolledUpView {
    fn schema(&self) -> SchemaRef {
        self.raw.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Applied to both parts (the stored files prune by their hour
        // statistics) and again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = state
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("a session without its state".into()))?;
        let scope = state
            .config()
            .get_extension::<SessionScope>()
            .unwrap_or_else(|| Arc::new(SessionScope::everything(self.stored.files.current())));
        let rolled = self.stored.index.usable(
            scope.window,
            &scope.files,
            &self.stored.basis,
            RollupGrain::Hours,
        );
        // The raw view reads every hour of the session but the stored ones.
        let raw_scope = SessionScope {
            files: scope.files.clone(),
            window: scope.window,
            rolled_up: Arc::new(rolled.hours.clone()),
        };
        let config = state.config().clone().with_extension(Arc::new(raw_scope));
        let inner = SessionStateBuilder::new_from_existing(state.clone())
            .with_config(config)
            .build();
        let mut plan = LogicalPlanBuilder::from(self.raw.logical_plan().clone());
        let teams = state
            .config()
            .get_extension::<RowScope>()
            .and_then(|scope| scope.predicate());
        let scoped = teams.is_some();
        let stored_files = &rolled.files[self.position];
        if !stored_files.is_empty() {
            plan = plan.union(self.stored_rows(&inner, stored_files, teams)?)?;
        }
        // The filters name the columns as the query's scan qualified them.
        // A team-scoped query's own filters run only above (as over the raw
        // tables, docs/security.md): pushed into the stored files' scan they
        // would meet other teams' rows first, and an error could name one
        // of their values.
        let filter = conjunction(filters.iter().cloned().map(unnormalize_col));
        if let Some(filter) = filter.filter(|_| !scoped) {
            plan = plan.filter(filter)?;
        }
        if let Some(projection) = projection {
            let schema = self.schema();
            plan = plan.project(
                projection
                    .iter()
                    .map(|&index| col(schema.field(index).name())),
            )?;
        }
        if limit.is_some() {
            plan = plan.limit(0, limit)?;
        }
        inner.create_physical_plan(&plan.build()?).await
    }
}

/// The stored rollup `files` (lake relative) as one table of `schema`,
/// their statistics kept in the session's cache.
pub(crate) fn stored_table(
    root: &LakeRoot,
    files: &[String],
    schema: SchemaRef,
    statistics: Option<Arc<FileStatisticsCache>>,
) -> Result<ListingTable> {
    let urls: Vec<ListingTableUrl> = files
        .iter()
        .map(|path| ListingTableUrl::parse(root.file(path)))
        .collect::<Result<_>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(ListingTable::try_new(config)?.with_cache(statistics))
}
