//! The raw lake tables for long-lived sessions: the committed files are
//! looked up when a query scans, not when the session is built, so a session
//! that serves many queries (the PostgreSQL endpoint) sees every new commit
//! and still never an orphan.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use gatemeter_schema::attempts_schema;

use crate::engine::{lake_table, CommittedFiles, FileSelection, Window};

#[derive(Debug)]
pub(crate) struct LiveLakeTable {
    files: CommittedFiles,
    selection: FileSelection,
    data_dir: PathBuf,
}

impl LiveLakeTable {
    pub(crate) fn new(
        files: CommittedFiles,
        selection: FileSelection,
        data_dir: PathBuf,
    ) -> LiveLakeTable {
        LiveLakeTable {
            files,
            selection,
            data_dir,
        }
    }
}

#[async_trait]
impl TableProvider for LiveLakeTable {
    fn schema(&self) -> SchemaRef {
        attempts_schema()
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
        let files = self.files.current();
        let table = lake_table(
            &self.data_dir,
            self.selection.pick(&files),
            Window::default(),
        )
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        table.scan(state, projection, filters, limit).await
    }
}
