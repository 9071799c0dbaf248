//! The raw lake tables: the committed files are looked up when a query
//! scans, not when the views are planned, so planned views serve every
//! session. A session with a [`SessionScope`] reads the files committed when
//! it was made, only those overlapping its window, and only the rows inside
//! it; one without (the PostgreSQL endpoint's long-lived session) reads what
//! is committed at each scan, so it sees every new commit and never a file
//! no version names.
//!
//! With a column cache, a scan of a session whose window is closed at both
//! ends reads its files through it ([`CachedLakeScan`]) when their columns
//! fit in it; a larger scan, and every scan of an open window (which relies
//! on Parquet statistics to skip files), reads Parquet.
//!
//! A session with a [`RowScope`] of teams reads only their rows: the filter
//! sits on the scan itself, under every view.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{col, lit, Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::ExecutionPlan;
use gatemeter_lake::FileEntry;

use crate::cached_scan::{CachedLakeScan, ScanFile};
use crate::column_cache::{ColumnCache, CACHED_BYTES_PER_VALUE};
use crate::engine::{
    lake_table, scan_schema, CommittedFiles, FileSelection, LakeRoot, SessionScope, Window,
};
use crate::team_scope::RowScope;

#[derive(Debug)]
pub(crate) struct LiveLakeTable {
    files: CommittedFiles,
    selection: FileSelection,
    root: LakeRoot,
    column_cache: Option<Arc<ColumnCache>>,
}

impl LiveLakeTable {
    pub(crate) fn new(
        files: CommittedFiles,
        selection: FileSelection,
        root: LakeRoot,
        column_cache: Option<Arc<ColumnCache>>,
    ) -> LiveLakeTable {
        LiveLakeTable {
            files,
            selection,
            root,
            column_cache,
        }
    }

    /// The scan of `files`: through the column cache when the window is
    /// closed and the columns fit in the cache, else from Parquet.
    async fn scan_files(
        &self,
        state: &dyn Session,
        files: Vec<&FileEntry>,
        window: Window,
        projection: &[usize],
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let bytes_per_row = (projection.len().max(1) as u64) * CACHED_BYTES_PER_VALUE;
        let estimate = files.iter().fold(0u64, |sum, file| {
            sum.saturating_add(file.rows.saturating_mul(bytes_per_row))
        });
        // The cache reads local files itself; a lake on object storage is
        // read through DataFusion's Parquet scan.
        let local_dir = self.root.local_dir();
        let cache = self.column_cache.as_ref().filter(|cache| {
            local_dir.is_some()
                && window.from.is_some()
                && window.to.is_some()
                && !files.is_empty()
                && estimate <= cache.budget() as u64
        });
        let (Some(cache), Some(local_dir)) = (cache, local_dir) else {
            let statistics_cache = state.runtime_env().cache_manager.get_file_statistic_cache();
            let table = lake_table(&self.root, files.into_iter(), statistics_cache)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let projection = projection.to_vec();
            return table.scan(state, Some(&projection), filters, limit).await;
        };
        let files = files
            .into_iter()
            .map(|file| ScanFile {
                path: local_dir.join(&file.path),
                rows: file.rows,
            })
            .collect();
        Ok(Arc::new(CachedLakeScan::new(
            files,
            self.schema(),
            projection.to_vec(),
            cache.clone(),
            state.config().target_partitions(),
        )?))
    }
}

#[async_trait]
impl TableProvider for LiveLakeTable {
    fn schema(&self) -> SchemaRef {
        scan_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Parquet statistics prune with them; the rows are filtered again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let scope = state
            .config()
            .get_extension::<SessionScope>()
            .unwrap_or_else(|| Arc::new(SessionScope::everything(self.files.current())));
        let window = scope.window;
        let team_filter = state
            .config()
            .get_extension::<RowScope>()
            .and_then(|scope| scope.predicate());
        let picked: Vec<&FileEntry> = self
            .selection
            .pick(&scope.files)
            .filter(|file| scope.reads(file))
            .collect();
        // Rows are filtered by the window only when a file reaches past one
        // of its ends: for hour-aligned windows over hour partitions the
        // files alone select the window, and a per-row filter would only
        // cost time. The team filter of a scoped session always applies.
        let window_filter =
            window_predicate(window).filter(|_| picked.iter().any(|file| !window.contains(file)));
        let team_filter_applies = team_filter.is_some();
        let row_filter = match (window_filter, team_filter) {
            (Some(window), Some(teams)) => Some(window.and(teams)),
            (one, other) => one.or(other),
        };
        let schema = self.schema();
        let mut scanned = projection
            .cloned()
            .unwrap_or_else(|| (0..schema.fields().len()).collect());
        let Some(row_filter) = row_filter else {
            return self
                .scan_files(state, picked, window, &scanned, filters, limit)
                .await;
        };
        // The filter reads request_start and team, which the query may not.
        let wanted = scanned.len();
        for column in row_filter.column_refs() {
            let index = schema.index_of(&column.name)?;
            if !scanned.contains(&index) {
                scanned.push(index);
            }
        }
        // A scoped session's scan evaluates nothing of the query's own
        // before the team filter: Parquet would apply pushed-down filters to
        // every row it reads, and one failing on another team's value
        // (`CAST(team AS INT)`) would name that value in its error. The
        // query's filters still run, above the scan.
        let mut pruning = if team_filter_applies {
            Vec::new()
        } else {
            filters.to_vec()
        };
        pruning.push(row_filter.clone());
        let scan = self
            .scan_files(state, picked, window, &scanned, &pruning, None)
            .await?;
        let predicate =
            state.create_physical_expr(row_filter, &DFSchema::try_from(scan.schema())?)?;
        let outputs = (scanned.len() > wanted).then(|| (0..wanted).collect());
        // The limit applies to the rows that pass.
        let filtered = FilterExecBuilder::new(predicate, scan)
            .apply_projection(outputs)?
            .with_fetch(limit)
            .build()?;
        Ok(Arc::new(filtered))
    }
}

/// `request_start` inside `window`, or `None` when the window is unbounded.
fn window_predicate(window: Window) -> Option<Expr> {
    let at = |micros| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    };
    let from = window.from.map(|from| col("request_start").gt_eq(at(from)));
    let to = window.to.map(|to| col("request_start").lt(at(to)));
    match (from, to) {
        (Some(from), Some(to)) => Some(from.and(to)),
        (one, other) => one.or(other),
    }
}
