//! A DataFusion session over the **committed** lake: only files named by a
//! commit record are read, the price book is a table, and the views of
//! `queries/attempts.sql` and `queries/requests.sql` are registered by name.
//!
//! A session is built per query window: the raw tables then hold only the
//! rows whose `request_start` is in the window, read only from files whose
//! committed min/max overlap it. Every attempt carries its request's start,
//! so a window never splits a request, and the views (whose window functions
//! would block filter pushdown) work on the window alone.
//!
//! The stored rows come as two tables, so the `attempts` view deduplicates
//! only what compaction has not: `attempts_compacted_raw` (files written by
//! compaction, one row per attempt) and `attempts_fresh_raw` (files written
//! since); `attempts_raw` is both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Decimal128Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, GreedyMemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use gatemeter_lake::{FileEntry, Lake};
use gatemeter_schema::{attempts_schema, EpochMicros, Usd};

use crate::error::QueryError;
use crate::live::LiveLakeTable;
use crate::price_book::PriceBook;
use crate::yielding::YieldingJoins;

/// The views, in dependency order, as shipped in `queries/`.
pub const VIEWS: &[(&str, &str)] = &[
    ("attempts", include_str!("../../../queries/attempts.sql")),
    ("requests", include_str!("../../../queries/requests.sql")),
];

/// Window of requests by `request_start`: `[from, to)`; either end open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<EpochMicros>,
    pub to: Option<EpochMicros>,
}

impl Window {
    pub fn overlaps(&self, file: &FileEntry) -> bool {
        let (Some(min), Some(max)) = (file.min_request_start, file.max_request_start) else {
            return true;
        };
        self.from.is_none_or(|from| max >= from) && self.to.is_none_or(|to| min < to)
    }

    /// Whether every row of `file` is in the window, by its committed
    /// min/max.
    fn contains(&self, file: &FileEntry) -> bool {
        let (Some(min), Some(max)) = (file.min_request_start, file.max_request_start) else {
            return false;
        };
        self.from.is_none_or(|from| min >= from) && self.to.is_none_or(|to| max < to)
    }

    fn sql_filter(&self) -> String {
        let mut clauses = Vec::new();
        if let Some(from) = self.from {
            clauses.push(format!("request_start >= {}", timestamp_literal(from)));
        }
        if let Some(to) = self.to {
            clauses.push(format!("request_start < {}", timestamp_literal(to)));
        }
        if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        }
    }
}

/// A SQL literal of the lake's timestamp type (µs, UTC).
pub fn timestamp_literal(micros: EpochMicros) -> String {
    let text = DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true);
    format!("arrow_cast('{text}', 'Timestamp(µs, \"UTC\")')")
}

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub data_dir: PathBuf,
    pub prices: Option<PathBuf>,
    /// Memory a query may use before it spills or fails.
    pub memory_limit_bytes: usize,
    pub target_partitions: usize,
    /// Whether a query over its memory limit may spill to temporary files
    /// (the CLI) or must fail (the API, where one query must not fill the
    /// disk).
    pub allow_spill: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            data_dir: PathBuf::from("./gatemeter-data"),
            prices: None,
            memory_limit_bytes: 1 << 30,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            allow_spill: true,
        }
    }
}

/// Loads the price book named in the config (an empty book when none is).
pub fn load_price_book(path: Option<&Path>) -> Result<PriceBook, QueryError> {
    match path {
        None => Ok(PriceBook::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| QueryError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            PriceBook::parse(&text)
        }
    }
}

pub struct QueryEngine {
    config: QueryConfig,
    price_book: PriceBook,
    /// Parquet footers, page indexes and file statistics, shared by every
    /// session: lake files never change once written, and reading them
    /// again for each query is most of a small query's time.
    file_caches: Arc<CacheManager>,
    /// The committed state, re-read incrementally so that a long-lived
    /// engine (the API) sees new commits; `None` until a commit exists.
    lake: tokio::sync::Mutex<Option<Lake>>,
    files: CommittedFiles,
}

/// The committed data files as of the engine's last refresh, shared with
/// the live tables that read them at scan time.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommittedFiles(Arc<std::sync::RwLock<Arc<Vec<FileEntry>>>>);

impl CommittedFiles {
    pub(crate) fn current(&self) -> Arc<Vec<FileEntry>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, files: Vec<FileEntry>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(files);
    }
}

/// The lake's committed data files, or none when nothing was committed yet.
async fn load_lake(data_dir: &Path) -> Result<Option<Lake>, QueryError> {
    if !data_dir.join(gatemeter_lake::paths::COMMITS_DIR).exists() {
        return Ok(None);
    }
    Ok(Some(Lake::load_local(data_dir, None).await?))
}

impl QueryEngine {
    /// Reads the commit log (no file is touched) and the price book.
    pub async fn open(config: QueryConfig) -> Result<QueryEngine, QueryError> {
        let price_book = load_price_book(config.prices.as_deref())?;
        QueryEngine::open_with_price_book(config, price_book).await
    }

    /// Like [`QueryEngine::open`], with a price book already loaded.
    pub async fn open_with_price_book(
        config: QueryConfig,
        price_book: PriceBook,
    ) -> Result<QueryEngine, QueryError> {
        let lake = load_lake(&config.data_dir).await?;
        let files = lake
            .as_ref()
            .map(|l| l.data_files().cloned().collect())
            .unwrap_or_default();
        Ok(QueryEngine {
            config,
            price_book,
            file_caches: CacheManager::try_new(&CacheManagerConfig::default())?,
            lake: tokio::sync::Mutex::new(lake),
            files: {
                let committed = CommittedFiles::default();
                committed.replace(files);
                committed
            },
        })
    }

    /// Applies commit records written since the last look (by an ingester
    /// in this or another process); returns how many were new.
    pub async fn refresh(&self) -> Result<u64, QueryError> {
        let mut lake = self.lake.lock().await;
        let applied = match lake.as_mut() {
            Some(lake) => lake.reload().await?,
            None => {
                *lake = load_lake(&self.config.data_dir).await?;
                u64::from(lake.is_some())
            }
        };
        if applied > 0 {
            if let Some(lake) = lake.as_ref() {
                self.files.replace(lake.data_files().cloned().collect());
            }
        }
        Ok(applied)
    }

    pub fn price_book(&self) -> &PriceBook {
        &self.price_book
    }

    /// A session whose `attempts_raw`, `attempts` and `requests` cover `window`.
    pub async fn session(&self, window: Window) -> Result<SessionContext, QueryError> {
        let ctx = self.new_context()?;
        let files = self.files.current();
        let data_dir = self.data_dir();
        let [compacted, fresh] = [FileSelection::Compacted, FileSelection::Fresh]
            .map(|selection| lake_table(&data_dir, selection.pick(&files), window));
        // Rows are filtered by the window only when a file reaches past one
        // of its ends: for hour-aligned windows over hour partitions the
        // files alone select the window, and a per-row filter would only
        // cost time.
        let straddled = files
            .iter()
            .any(|file| window.overlaps(file) && !window.contains(file));
        let filter = if straddled {
            window.sql_filter()
        } else {
            String::new()
        };
        self.register_tables(&ctx, [compacted?, fresh?], &filter)
            .await?;
        Ok(ctx)
    }

    /// A long-lived session over whatever is committed when each query
    /// scans (call [`QueryEngine::refresh`] before a query to see new
    /// commits). Every query on it shares its memory pool: give each
    /// client its own with [`QueryEngine::fork_session`].
    pub async fn live_session(&self) -> Result<SessionContext, QueryError> {
        let ctx = self.new_context()?;
        let data_dir = self.data_dir();
        let [compacted, fresh] =
            [FileSelection::Compacted, FileSelection::Fresh].map(|selection| {
                Arc::new(LiveLakeTable::new(
                    self.files.clone(),
                    selection,
                    data_dir.clone(),
                )) as Arc<dyn TableProvider>
            });
        self.register_tables(&ctx, [compacted, fresh], "").await?;
        Ok(ctx)
    }

    /// `template`'s tables, views, functions and settings with a memory
    /// pool of its own (this engine's limit).
    pub fn fork_session(&self, template: &SessionContext) -> Result<SessionContext, QueryError> {
        let state = SessionStateBuilder::new_from_existing(template.state())
            .with_runtime_env(self.runtime_env()?)
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// An empty context with this engine's settings, memory pool, file
    /// caches and planner rules.
    fn new_context(&self) -> Result<SessionContext, QueryError> {
        let state = SessionStateBuilder::new()
            .with_config(self.session_config())
            .with_runtime_env(self.runtime_env()?)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(YieldingJoins))
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    fn session_config(&self) -> SessionConfig {
        let mut session_config = SessionConfig::new()
            .with_target_partitions(self.config.target_partitions.max(1))
            .with_information_schema(true);
        let options = session_config.options_mut();
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        options.execution.parquet.enable_page_index = true;
        session_config
    }

    fn runtime_env(&self) -> Result<Arc<RuntimeEnv>, QueryError> {
        let limit = self.config.memory_limit_bytes;
        let runtime = if self.config.allow_spill {
            // Operators that can spill share the pool fairly and spill when
            // over their share.
            RuntimeEnvBuilder::new().with_memory_pool(Arc::new(FairSpillPool::new(limit)))
        } else {
            // Nothing may spill, so a fair share would fail a query whose
            // sorts together fit the limit: the limit holds for their sum,
            // and over it the query fails instead of filling the disk.
            RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(GreedyMemoryPool::new(limit)))
                .with_disk_manager_builder(
                    DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                )
        };
        let caches = CacheManagerConfig::default()
            .with_file_metadata_cache(Some(self.file_caches.get_file_metadata_cache()))
            .with_file_statistics_cache(self.file_caches.get_file_statistic_cache());
        Ok(runtime.with_cache_manager(caches).build_arc()?)
    }

    fn data_dir(&self) -> PathBuf {
        std::fs::canonicalize(&self.config.data_dir)
            .unwrap_or_else(|_| self.config.data_dir.clone())
    }

    /// The raw tables (the lake's two kinds of files under `raw_filter`),
    /// the price book, the views and the aggregates they use.
    async fn register_tables(
        &self,
        ctx: &SessionContext,
        [compacted, fresh]: [Arc<dyn TableProvider>; 2],
        raw_filter: &str,
    ) -> Result<(), QueryError> {
        ctx.register_udaf(crate::extreme_by::arg_max_null());
        ctx.register_udaf(crate::extreme_by::arg_min_null());
        ctx.register_table("attempts_lake_compacted", compacted)?;
        ctx.register_table("attempts_lake_fresh", fresh)?;
        for kind in ["compacted", "fresh"] {
            ctx.sql(&format!(
                "CREATE VIEW attempts_{kind}_raw AS SELECT * FROM attempts_lake_{kind}{raw_filter}"
            ))
            .await?;
        }
        ctx.sql(
            "CREATE VIEW attempts_raw AS \
             SELECT * FROM attempts_compacted_raw UNION ALL SELECT * FROM attempts_fresh_raw",
        )
        .await?;
        ctx.register_table("price_book", Arc::new(price_book_table(&self.price_book)?))?;
        for (name, body) in VIEWS {
            ctx.sql(&format!("CREATE VIEW {name} AS {body}")).await?;
        }
        Ok(())
    }
}

/// Which of the committed data files a raw table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileSelection {
    /// Written by compaction: one row per attempt.
    Compacted,
    /// Written by ingest or import since: may repeat an attempt.
    Fresh,
}

impl FileSelection {
    pub(crate) fn pick<'a>(
        self,
        files: &'a [FileEntry],
    ) -> impl Iterator<Item = &'a FileEntry> + 'a {
        files
            .iter()
            .filter(move |file| file.deduplicated == (self == FileSelection::Compacted))
    }
}

/// The committed files of `files` that overlap `window`, as one table.
pub(crate) fn lake_table<'a>(
    data_dir: &Path,
    files: impl Iterator<Item = &'a FileEntry>,
    window: Window,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    let urls: Vec<ListingTableUrl> = files
        .filter(|file| window.overlaps(file))
        .map(|file| ListingTableUrl::parse(data_dir.join(&file.path).to_string_lossy()))
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Ok(Arc::new(MemTable::try_new(
            attempts_schema(),
            vec![vec![]],
        )?));
    }
    let listing_options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let table_config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(listing_options)
        .with_schema(attempts_schema());
    Ok(Arc::new(ListingTable::try_new(table_config)?))
}

/// Per-token and per-request prices carry 15 decimals so that tokens × price
/// is exact before the one rounding to 9 decimals in the `attempts` view.
const PER_UNIT_SCALE: i8 = 15;

fn price_book_table(book: &PriceBook) -> Result<MemTable, QueryError> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let money = DataType::Decimal128(Usd::PRECISION, Usd::SCALE as i8);
    let per_unit = DataType::Decimal128(38, PER_UNIT_SCALE);
    let schema = Arc::new(Schema::new(vec![
        Field::new("provider", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("effective_from", ts.clone(), false),
        Field::new("effective_to", ts, true),
        Field::new("input_per_1m", money.clone(), false),
        Field::new("output_per_1m", money.clone(), false),
        Field::new("cache_read_per_1m", money.clone(), false),
        Field::new("cache_write_per_1m", money.clone(), false),
        Field::new("request_fee", money.clone(), false),
        Field::new("web_search_per_1k", money, false),
        Field::new("input_per_token", per_unit.clone(), false),
        Field::new("output_per_token", per_unit.clone(), false),
        Field::new("cache_read_per_token", per_unit.clone(), false),
        Field::new("cache_write_per_token", per_unit.clone(), false),
        Field::new("web_search_per_request", per_unit, false),
    ]));
    let rows = book.rows();
    let mut provider = StringBuilder::new();
    let mut model = StringBuilder::new();
    let ts_builder = || TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let (mut from, mut to) = (ts_builder(), ts_builder());
    let money_builder = || -> Result<Decimal128Builder, QueryError> {
        Ok(Decimal128Builder::with_capacity(rows.len())
            .with_precision_and_scale(Usd::PRECISION, Usd::SCALE as i8)?)
    };
    let unit_builder = || -> Result<Decimal128Builder, QueryError> {
        Ok(Decimal128Builder::with_capacity(rows.len())
            .with_precision_and_scale(38, PER_UNIT_SCALE)?)
    };
    let mut per_1m: Vec<Decimal128Builder> =
        (0..6).map(|_| money_builder()).collect::<Result<_, _>>()?;
    let mut per_unit_columns: Vec<Decimal128Builder> =
        (0..5).map(|_| unit_builder()).collect::<Result<_, _>>()?;
    for row in rows {
        provider.append_value(&row.provider);
        model.append_value(&row.model);
        from.append_value(row.effective_from);
        to.append_option(row.effective_to);
        let prices = [
            row.input_per_1m,
            row.output_per_1m,
            row.cache_read_per_1m,
            row.cache_write_per_1m,
            row.request_fee,
            row.web_search_per_1k,
        ];
        for (builder, price) in per_1m.iter_mut().zip(prices) {
            builder.append_value(price.0);
        }
        // From 1e-9 USD per 1M tokens to 1e-15 USD per token: same digits.
        // Per web search: per_1k ÷ 1000 → ×1e6 ÷ 1e3.
        let per_unit = [
            row.input_per_1m.0,
            row.output_per_1m.0,
            row.cache_read_per_1m.0,
            row.cache_write_per_1m.0,
            row.web_search_per_1k.0 * 1000,
        ];
        for (builder, value) in per_unit_columns.iter_mut().zip(per_unit) {
            builder.append_value(value);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(provider.finish()),
        Arc::new(model.finish()),
        Arc::new(from.finish()),
        Arc::new(to.finish()),
    ];
    columns.extend(per_1m.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(
        per_unit_columns
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef),
    );
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}
