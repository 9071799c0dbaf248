//! The stored rollup files a query reads, as one table: through the
//! [`ColumnCache`] when the lake is local and their columns fit in it, so a
//! dashboard refreshing the same recent hours merges kept columns instead
//! of decompressing the same Parquet pages again; else DataFusion's Parquet
//! scan. A rollup file, like a lake file, never changes once written
//! (docs/lake.md, "Rollups"). The tables the KPI statements read return
//! each cached file's rows condensed (`condensed.rs`).

use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use gatemeter_lake::RollupFile;

use crate::cached_scan::{CachedLakeScan, ScanFile};
use crate::column_cache::{ColumnCache, CACHED_BYTES_PER_VALUE};
use crate::condensed::CondensedCache;
use crate::engine::LakeRoot;

#[derive(Debug)]
pub(crate) struct StoredRollupTable {
    root: LakeRoot,
    files: Vec<RollupFile>,
    schema: SchemaRef,
    column_cache: Option<Arc<ColumnCache>>,
    condensed: Option<Arc<CondensedCache>>,
}

impl StoredRollupTable {
    /// The rollup `files` (lake relative) read as `schema`; a column of
    /// `schema` a file lacks (a file by model has no key, environment, app
    /// or org) reads as nulls.
    pub(crate) fn new(
        root: LakeRoot,
        files: Vec<RollupFile>,
        schema: SchemaRef,
        column_cache: Option<Arc<ColumnCache>>,
    ) -> StoredRollupTable {
        StoredRollupTable {
            root,
            files,
            schema,
            column_cache,
            condensed: None,
        }
    }

    /// The table returning each file's rows merged over the columns a
    /// query does not read, kept in `cache` (`condensed.rs`): only for
    /// statements that add its rows up, never count them.
    pub(crate) fn condensed(mut self, cache: Option<Arc<CondensedCache>>) -> StoredRollupTable {
        self.condensed = cache;
        self
    }

    /// The files as the column cache reads them, when it may: the lake is
    /// local, every file's row count is in the log, and `columns` of all
    /// of them are estimated to fit in the cache (a larger scan would push
    /// out what the dashboards refresh from).
    fn through_cache(&self, columns: usize) -> Option<(Arc<ColumnCache>, Vec<ScanFile>)> {
        let cache = self.column_cache.as_ref()?;
        let dir = self.root.local_dir()?;
        let bytes_per_row = (columns.max(1) as u64) * CACHED_BYTES_PER_VALUE;
        let mut estimate = 0u64;
        let mut files = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let rows = file.rows?;
            estimate = estimate.saturating_add(rows.saturating_mul(bytes_per_row));
            files.push(ScanFile {
                path: dir.join(&file.path),
                rows,
            });
        }
        (!files.is_empty() && estimate <= cache.budget() as u64).then(|| (cache.clone(), files))
    }
}

#[async_trait]
impl TableProvider for StoredRollupTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Parquet prunes with them; the rows are filtered again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        if let Some((cache, files)) = self.through_cache(projection.len()) {
            let scan = CachedLakeScan::new(
                files,
                self.schema.clone(),
                projection,
                cache,
                state.config().target_partitions(),
            )?;
            return Ok(Arc::new(match &self.condensed {
                Some(condensed) => scan.condensing(condensed.clone()),
                None => scan,
            }));
        }
        let paths: Vec<String> = self.files.iter().map(|file| file.path.clone()).collect();
        let statistics = state.runtime_env().cache_manager.get_file_statistic_cache();
        listing_table(&self.root, &paths, self.schema.clone(), statistics)?
            .scan(state, Some(&projection), filters, limit)
            .await
    }
}

/// The stored rollup `files` (lake relative) as one Parquet table of
/// `schema`, their statistics kept in `statistics` when given.
pub(crate) fn listing_table(
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
