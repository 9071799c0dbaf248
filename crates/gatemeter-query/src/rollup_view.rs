//! `hourly_usage` and `hourly_requests` as SQL sees them (the SQL endpoint,
//! PostgreSQL, Grafana's panels): the stored rollup rows of every hour
//! whose stamp still matches (docs/lake.md, "Rollups"), and the view
//! computed over the raw files of every other hour. Both give the same rows
//! for a settled hour, so a query cannot tell which it read, only how fast
//! it came back.
//!
//! The daily and by-model views (`daily_usage`, `hourly_usage_by_model`,
//! `daily_usage_by_model` and the same of requests) are the same parts
//! merged once more into their rows, reading the daily and by-model
//! rollups where those are current.
//!
//! Which hours are stored is decided when a query scans, against the files
//! the session reads, so a long-lived session (PostgreSQL) follows every
//! compaction and every late file.

use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{provider_as_source, TableProvider, TableType, ViewTable};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::functions::expr_fn::date_trunc;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    cast, col, lit, Expr, LogicalPlanBuilder, TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;

use gatemeter_lake::RollupFile;

use crate::column_cache::ColumnCache;
use crate::engine::{CommittedFiles, LakeRoot, SessionScope};
use crate::sketch_functions::sketch_aggregates;
use crate::stored_files::StoredRollupTable;
use crate::stored_rollups::{
    stored_schema, MergeRule, RollupGrain, RollupReads, SharedRollupIndex, BY_MODEL_OMITS,
};
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
    pub(crate) column_cache: Option<Arc<ColumnCache>>,
}

/// What a view derived from an hourly rollup view does to its rows
/// (docs/lake.md, "Rollups in SQL by day and by model"): hours merged into their UTC day,
/// and/or rows merged over all but the columns the rollups by model keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Derivation {
    pub(crate) days: bool,
    pub(crate) by_model: bool,
}

impl Derivation {
    /// The stored rollups its rows can be read from.
    fn reads(self) -> RollupReads {
        RollupReads {
            grain: if self.days {
                RollupGrain::Days
            } else {
                RollupGrain::Hours
            },
            by_model: self.by_model,
        }
    }

    /// `rows`, of an hourly rollup view's columns, merged as this view's
    /// rows: grouped by its dimensions (and the hour's day), counts and
    /// sums added, time bounds at their extremes, sketches merged.
    fn apply(self, rows: LogicalPlanBuilder) -> Result<LogicalPlanBuilder> {
        let schema = Arc::clone(rows.schema());
        let merge_sketches = sketch_aggregates()
            .into_iter()
            .find(|function| function.name() == "ddsketch_merge")
            .ok_or_else(|| DataFusionError::Internal("no ddsketch_merge".into()))?;
        let (mut groups, mut merged, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for field in schema.fields() {
            let name = field.name();
            if self.by_model && BY_MODEL_OMITS.contains(&name.as_str()) {
                continue;
            }
            let column = col(name);
            names.push(name.clone());
            match MergeRule::of(field) {
                MergeRule::Group if self.days && name == "hour" => {
                    groups.push(date_trunc(lit("day"), column).alias(name))
                }
                MergeRule::Group => groups.push(column),
                MergeRule::Sum => merged.push(sum(column).alias(name)),
                MergeRule::Min => merged.push(min(column).alias(name)),
                MergeRule::Max => merged.push(max(column).alias(name)),
                MergeRule::Sketch => merged.push(merge_sketches.call(vec![column]).alias(name)),
            }
        }
        rows.aggregate(groups, merged)?
            .project(names.iter().map(|name| col(name.as_str())))
    }
}

/// One rollup view: stored rows where they hold, the view over raw rows
/// elsewhere; or a view derived from one, over the same parts.
#[derive(Debug)]
pub(crate) struct RolledUpView {
    /// The hourly view over the raw tables.
    raw: Arc<ViewTable>,
    /// The hourly view's position in [`crate::stored_rollups::ROLLUP_VIEWS`].
    position: usize,
    stored: StoredHours,
    derivation: Option<Derivation>,
    schema: SchemaRef,
}

impl RolledUpView {
    pub(crate) fn new(raw: Arc<ViewTable>, position: usize, stored: StoredHours) -> RolledUpView {
        let schema = raw.schema();
        RolledUpView {
            raw,
            position,
            stored,
            derivation: None,
            schema,
        }
    }

    /// The view `derivation` makes of the hourly view `raw`.
    pub(crate) fn derived(
        raw: Arc<ViewTable>,
        position: usize,
        stored: StoredHours,
        derivation: Derivation,
    ) -> Result<RolledUpView> {
        let plan = derivation.apply(LogicalPlanBuilder::from(raw.logical_plan().clone()))?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        Ok(RolledUpView {
            raw,
            position,
            stored,
            derivation: Some(derivation),
            schema,
        })
    }

    /// The columns of the hourly view this view's rows are merged from:
    /// without those the rollups by model leave out, for a view by model.
    fn source_fields(&self) -> Vec<Field> {
        let by_model = self.derivation.is_some_and(|d| d.by_model);
        self.raw
            .schema()
            .fields()
            .iter()
            .filter(|field| !(by_model && BY_MODEL_OMITS.contains(&field.name().as_str())))
            .map(|field| field.as_ref().clone())
            .collect()
    }

    /// The hourly view's rows over the raw tables, in [`Self::source_fields`].
    fn raw_rows(&self) -> Result<LogicalPlanBuilder> {
        let columns = self.source_fields().into_iter().map(|f| col(f.name()));
        LogicalPlanBuilder::from(self.raw.logical_plan().clone()).project(columns)
    }

    /// The stored files as a table of [`Self::source_fields`], cast to the
    /// types of `target` (the hourly view's, or a derived view's own for
    /// files that already hold its rows).
    fn stored_rows(
        &self,
        files: Vec<RollupFile>,
        teams: Option<Expr>,
        target: &Schema,
    ) -> Result<LogicalPlanBuilder> {
        let fields = self.source_fields();
        let table = StoredRollupTable::new(
            self.stored.root.clone(),
            files,
            stored_schema(&Schema::new(fields.clone())),
            self.stored.column_cache.clone(),
        );
        let mut plan =
            LogicalPlanBuilder::scan("stored", provider_as_source(Arc::new(table)), None)?;
        if let Some(teams) = teams {
            plan = plan.filter(teams)?;
        }
        // Stored strings are plain UTF-8; the view's are string views.
        let as_view_types: Vec<Expr> = target
            .fields()
            .iter()
            .map(|field| cast(col(field.name()), field.data_type().clone()).alias(field.name()))
            .collect();
        plan.project(as_view_types)
    }
}

#[async_trait]
impl TableProvider for RolledUpView {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
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
        let own_kind = self
            .derivation
            .map_or(RollupGrain::Hours.into(), Derivation::reads);
        let rolled =
            self.stored
                .index
                .usable(scope.window, &scope.files, &self.stored.basis, own_kind);
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
        let mut plan = self.raw_rows()?;
        let teams = state
            .config()
            .get_extension::<RowScope>()
            .and_then(|scope| scope.predicate());
        let scoped = teams.is_some();
        // A file of this view's own grain and width holds its rows already:
        // it joins the merged rows as it is, so a query summing a column
        // reads that column alone. Every other part is merged.
        let (finished, to_merge) = rolled.split_by_kind(self.position, own_kind);
        if !to_merge.is_empty() {
            let source = Schema::new(self.source_fields());
            plan = plan.union(
                self.stored_rows(to_merge, teams.clone(), &source)?
                    .build()?,
            )?;
        }
        if let Some(derivation) = self.derivation {
            plan = derivation.apply(plan)?;
        }
        if !finished.is_empty() {
            let own = self.schema();
            plan = plan.union(self.stored_rows(finished, teams, &own)?.build()?)?;
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
