//! A scan of lake files that reads each wanted column of a file from the
//! [`ColumnCache`] when it is kept there, and decodes (then keeps) the rest.
//!
//! It returns every row of its files: filters stay in a `FilterExec` above
//! (the lake tables push filters down as inexact), which on kept columns is
//! a pass over memory instead of Parquet pages. Files are spread over the
//! output partitions by rows, and each partition reads its files one after
//! the other on the blocking pool. A scan of stored rollup files for a
//! statement that only adds rows up may return each file's rows condensed
//! (`condensed.rs`).

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{Field, Schema, SchemaRef};
use datafusion::arrow::compute::concat;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{stream, StreamExt, TryStreamExt};

use crate::column_cache::ColumnCache;
use crate::condensed::{condense, CondensedCache};

/// One lake file of a scan.
#[derive(Debug, Clone)]
pub(crate) struct ScanFile {
    pub(crate) path: PathBuf,
    pub(crate) rows: u64,
}

#[derive(Debug)]
pub(crate) struct CachedLakeScan {
    /// The files of each output partition.
    partitions: Vec<Vec<ScanFile>>,
    /// The scan schema, whole, as the files are read.
    file_schema: SchemaRef,
    /// Indices into `file_schema` of the columns returned, in order.
    projection: Vec<usize>,
    cache: Arc<ColumnCache>,
    /// Where each file's rows are kept condensed, when the scan returns
    /// them so.
    condensed: Option<Arc<CondensedCache>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CachedLakeScan {
    pub(crate) fn new(
        files: Vec<ScanFile>,
        file_schema: SchemaRef,
        projection: Vec<usize>,
        cache: Arc<ColumnCache>,
        target_partitions: usize,
    ) -> Result<CachedLakeScan> {
        let schema = Arc::new(file_schema.project(&projection)?);
        let partitions = spread_by_rows(files, target_partitions.max(1));
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(CachedLakeScan {
            partitions,
            file_schema,
            projection,
            cache,
            condensed: None,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The scan returning each file's rows condensed (`condensed.rs`),
    /// kept in `cache`: only for statements that add rows up.
    pub(crate) fn condensing(mut self, cache: Arc<CondensedCache>) -> CachedLakeScan {
        self.condensed = Some(cache);
        self
    }
}

/// Files over `n` partitions (as many as there are files, at most),
/// largest first onto the partition with the fewest rows so far.
fn spread_by_rows(mut files: Vec<ScanFile>, n: usize) -> Vec<Vec<ScanFile>> {
    let n = n.min(files.len()).max(1);
    files.sort_by(|a, b| b.rows.cmp(&a.rows).then_with(|| a.path.cmp(&b.path)));
    let mut partitions: Vec<(u64, Vec<ScanFile>)> = vec![(0, Vec::new()); n];
    for file in files {
        if let Some(lightest) = partitions.iter_mut().min_by_key(|(rows, _)| *rows) {
            lightest.0 += file.rows;
            lightest.1.push(file);
        }
    }
    partitions
        .into_iter()
        .map(|(_, mut files)| {
            // In path order, which is time order within a partition.
            files.sort_by(|a, b| a.path.cmp(&b.path));
            files
        })
        .collect()
}

impl DisplayAs for CachedLakeScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        // Like DataFusion's Parquet scan: each partition's first files, so
        // EXPLAIN shows what a query reads.
        const SHOWN: usize = 3;
        let groups: Vec<String> = self
            .partitions
            .iter()
            .map(|files| {
                let mut shown: Vec<String> = files
                    .iter()
                    .take(SHOWN)
                    .map(|file| file.path.display().to_string())
                    .collect();
                if files.len() > SHOWN {
                    shown.push(format!("... {} more", files.len() - SHOWN));
                }
                format!("[{}]", shown.join(", "))
            })
            .collect();
        let columns: Vec<&str> = self
            .projection
            .iter()
            .map(|&i| self.file_schema.field(i).name().as_str())
            .collect();
        write!(
            f,
            "CachedLakeScan: file_groups={{{} groups: [{}]}}, projection=[{}]{}",
            groups.len(),
            groups.join(", "),
            columns.join(", "),
            if self.condensed.is_some() {
                ", condensed"
            } else {
                ""
            }
        )
    }
}

/// What one partition's stream records.
#[derive(Clone)]
struct ScanMetrics {
    files_condensed_cached: Count,
    columns_cached: Count,
    columns_decoded: Count,
    decode_time: Time,
}

impl ExecutionPlan for CachedLakeScan {
    fn name(&self) -> &str {
        "CachedLakeScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let files = self.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "CachedLakeScan has {} partitions, not {partition}",
                self.partitions.len()
            ))
        })?;
        let metrics = ScanMetrics {
            files_condensed_cached: MetricBuilder::new(&self.metrics)
                .counter("files_condensed_cached", partition),
            columns_cached: MetricBuilder::new(&self.metrics).counter("columns_cached", partition),
            columns_decoded: MetricBuilder::new(&self.metrics)
                .counter("columns_decoded", partition),
            decode_time: MetricBuilder::new(&self.metrics).subset_time("decode_time", partition),
        };
        let batch_size = context.session_config().batch_size().max(1);
        let schema = self.schema();
        let reader = Arc::new(FileReader {
            file_schema: self.file_schema.clone(),
            schema: schema.clone(),
            projection: self.projection.clone(),
            cache: self.cache.clone(),
            condensed: self.condensed.clone().map(|cache| {
                let fields: Arc<[Field]> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                (cache, fields)
            }),
            metrics,
        });
        let batches = stream::iter(files)
            .then(move |file| {
                let reader = reader.clone();
                async move {
                    tokio::task::spawn_blocking(move || reader.read(&file))
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?
                }
            })
            .map_ok(move |batch| stream::iter(slices(batch, batch_size).map(Ok)))
            .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// `batch` in pieces of at most `size` rows (views, not copies).
fn slices(batch: RecordBatch, size: usize) -> impl Iterator<Item = RecordBatch> {
    let rows = batch.num_rows();
    (0..rows)
        .step_by(size)
        .map(move |start| batch.slice(start, size.min(rows - start)))
}

/// Reads the scan's columns of one file at a time.
struct FileReader {
    file_schema: SchemaRef,
    schema: SchemaRef,
    projection: Vec<usize>,
    cache: Arc<ColumnCache>,
    /// The condensed rows' cache and the columns they are kept under.
    condensed: Option<(Arc<CondensedCache>, Arc<[Field]>)>,
    metrics: ScanMetrics,
}

impl FileReader {
    /// The rows of `file` the scan returns: condensed (kept or made and
    /// kept) when the scan condenses, else every row.
    fn read(&self, file: &ScanFile) -> Result<RecordBatch> {
        let Some((cache, fields)) = &self.condensed else {
            return self.read_rows(file);
        };
        if let Some(kept) = cache.get(&file.path, fields) {
            self.metrics.files_condensed_cached.add(1);
            return Ok(kept);
        }
        let condensed = condense(&self.read_rows(file)?)?;
        cache.insert(&file.path, fields.clone(), condensed.clone());
        Ok(condensed)
    }

    /// Every row of `file`, the projected columns: those kept from the
    /// cache, the others decoded and kept.
    fn read_rows(&self, file: &ScanFile) -> Result<RecordBatch> {
        let rows = usize::try_from(file.rows)
            .map_err(|_| DataFusionError::Internal(format!("{} rows", file.rows)))?;
        let wanted: Vec<&Field> = self
            .projection
            .iter()
            .map(|&index| self.file_schema.field(index))
            .collect();
        let mut columns = self.cache.get(&file.path, &wanted);
        let mut missing: Vec<usize> = self
            .projection
            .iter()
            .zip(&columns)
            .filter(|(_, kept)| kept.is_none())
            .map(|(&index, _)| index)
            .collect();
        self.metrics
            .columns_cached
            .add(self.projection.len() - missing.len());
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            let decoded = {
                let _timer = self.metrics.decode_time.timer();
                self.decode(&file.path, &missing, rows)?
            };
            self.metrics.columns_decoded.add(missing.len());
            for (index, column) in missing.iter().zip(decoded) {
                let name = self.file_schema.field(*index).name();
                self.cache.insert(&file.path, name, column.clone());
                for (wanted, slot) in self.projection.iter().zip(columns.iter_mut()) {
                    if wanted == index {
                        *slot = Some(column.clone());
                    }
                }
            }
        }
        let columns: Vec<ArrayRef> = columns.into_iter().flatten().collect();
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    /// Columns `indices` (ascending) of `path`, each as one array of all
    /// its `rows` rows, found in the file by name. A column the file does
    /// not hold reads as nulls: a lake file written before the lake's last
    /// columns were added (docs/lake.md "Schema changes"), or a rollup file
    /// by model, which leaves out the key, environment, app and org.
    fn decode(&self, path: &Path, indices: &[usize], rows: usize) -> Result<Vec<ArrayRef>> {
        let file = File::open(path)
            .map_err(|e| DataFusionError::Execution(format!("{}: {e}", path.display())))?;
        let footer = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
        // The file's own columns, each read as the type the scan wants
        // (the reader holds a file to its own nullability).
        let stored = footer.schema().clone();
        let as_wanted: Vec<Field> = stored
            .fields()
            .iter()
            .map(|field| {
                let own = field.as_ref().clone();
                match self.file_schema.field_with_name(field.name()) {
                    Ok(wanted) => own.with_data_type(wanted.data_type().clone()),
                    Err(_) => own,
                }
            })
            .collect();
        let position = |index: usize| stored.index_of(self.file_schema.field(index).name()).ok();
        let mut present: Vec<usize> = indices.iter().filter_map(|&i| position(i)).collect();
        present.sort_unstable();
        let decoded = if present.is_empty() {
            Vec::new()
        } else {
            let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(as_wanted)));
            let metadata = ArrowReaderMetadata::try_new(footer.metadata().clone(), options)?;
            read_columns(path, file, metadata, &present, rows)?
        };
        indices
            .iter()
            .map(|&index| match position(index) {
                Some(at) => present
                    .binary_search(&at)
                    .ok()
                    .and_then(|i| decoded.get(i).cloned())
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!("{}: a column short", path.display()))
                    }),
                None => Ok(new_null_array(
                    self.file_schema.field(index).data_type(),
                    rows,
                )),
            })
            .collect()
    }
}

/// Columns `indices` (ascending, all in the file) of `file` at `path`,
/// read with `metadata`, each as one array of all its `rows` rows.
fn read_columns(
    path: &Path,
    file: File,
    metadata: ArrowReaderMetadata,
    indices: &[usize],
    rows: usize,
) -> Result<Vec<ArrayRef>> {
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata);
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(rows.max(1))
        .build()?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if read != rows {
        return Err(DataFusionError::Execution(format!(
            "{}: {read} rows where the commit log says {rows}",
            path.display()
        )));
    }
    (0..indices.len())
        .map(|i| match batches.as_slice() {
            [only] => Ok(only.column(i).clone()),
            _ => {
                let pieces: Vec<&dyn arrow_array::Array> =
                    batches.iter().map(|b| b.column(i).as_ref()).collect();
                Ok(concat(&pieces)?)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, rows: u64) -> ScanFile {
        ScanFile {
            path: PathBuf::from(name),
            rows,
        }
    }

    #[test]
    fn files_are_spread_so_partitions_hold_about_as_many_rows() {
        let partitions = spread_by_rows(
            vec![file("a", 10), file("b", 60), file("c", 30), file("d", 25)],
            2,
        );
        let rows: Vec<u64> = partitions
            .iter()
            .map(|p| p.iter().map(|f| f.rows).sum())
            .collect();
        assert_eq!(rows, vec![60, 65]);
        let names: Vec<Vec<&str>> = partitions
            .iter()
            .map(|p| {
                p.iter()
                    .map(|f| f.path.to_str().unwrap_or_default())
                    .collect()
            })
            .collect();
        assert_eq!(names, vec![vec!["b"], vec!["a", "c", "d"]]);
    }

    #[test]
    fn fewer_files_than_partitions_make_one_partition_each() {
        assert_eq!(spread_by_rows(vec![file("a", 1)], 4).len(), 1);
        assert_eq!(spread_by_rows(vec![], 4).len(), 1);
    }

    #[test]
    fn slices_cover_every_row_once() {
        let column: ArrayRef = Arc::new(arrow_array::Int64Array::from_iter_values(0..10));
        let batch = RecordBatch::try_from_iter([("n", column)]).expect("batch");
        let sizes: Vec<usize> = slices(batch, 4).map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
    }
}
