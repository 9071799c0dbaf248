//! A DataFusion session over the **committed** lake: only files the Delta
//! log's current version names are read, the price book is a table, and the views of
//! `queries/attempts.sql` and `queries/requests.sql` are registered by name.
//!
//! A session is scoped to a query window: the raw tables then hold only the
//! rows whose `request_start` is in the window, read only from files whose
//! committed min/max overlap it. Every attempt carries its request's start,
//! so a window never splits a request, and the views (whose window functions
//! would block filter pushdown) work on the window alone.
//!
//! The stored rows come as two tables, so the `attempts` view deduplicates
//! only what compaction has not: `attempts_compacted_raw` (files written by
//! compaction, one row per attempt) and `attempts_fresh_raw` (files written
//! since); `attempts_raw` is both.
//!
//! Planning the views takes longer than a small query runs, so they are
//! planned once per engine, over tables that pick their files when a query
//! scans ([`LiveLakeTable`]); a session is a copy of such a template with
//! its own catalog, memory pool and [`SessionScope`] (the committed files as
//! of its creation and its window).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::datasource::ViewTable;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::planner::ExprPlanner;
use datafusion::prelude::{SessionConfig, SessionContext};
use gatemeter_lake::{FileEntry, Lake, LakeLocation};

use crate::column_cache::{ColumnCache, ColumnCacheStats};
use crate::condensed::{CondensedCache, CONDENSED_SHARE_OF_COLUMN_CACHE};
use crate::error::QueryError;
pub(crate) use crate::lake_files::{
    lake_location, lake_table, scan_schema, CommittedFiles, FileSelection, LakeRoot, SessionScope,
};
use crate::live::LiveLakeTable;
pub use crate::price_book::load_price_book;
use crate::price_book::price_book_table;
use crate::price_book::PriceBook;
use crate::rollup_view::{Derivation, RolledUpView, StoredHours};
use crate::shared_memory::SharedLimitPool;
use crate::stored_rollups::{
    RollupTables, SharedRollupIndex, BY_MODEL_ROLLUPS, DAILY_ROLLUPS, ROLLUP_VIEWS,
};
use crate::team_scope::{RowScope, ScopeSlot, TeamScope};
pub use crate::window::{timestamp_literal, Window};
use crate::yielding::YieldingJoins;

mod rollup_session;

/// The views, in dependency order, as shipped in `queries/`.
pub const VIEWS: &[(&str, &str)] = &[
    ("attempts", include_str!("../../../queries/attempts.sql")),
    ("requests", include_str!("../../../queries/requests.sql")),
    (
        "hourly_usage",
        include_str!("../../../queries/hourly_usage.sql"),
    ),
    (
        "hourly_requests",
        include_str!("../../../queries/hourly_requests.sql"),
    ),
];

#[derive(Debug, Clone)]
pub struct QueryConfig {
    pub data_dir: PathBuf,
    pub prices: Option<PathBuf>,
    /// Memory a query may use before it spills or fails.
    pub memory_limit_bytes: usize,
    /// Memory all the queries of the engine may use together; `None`: each
    /// query is held to its own limit only (one-shot commands).
    pub shared_memory_limit_bytes: Option<usize>,
    pub target_partitions: usize,
    /// Whether a query over its memory limit may spill to temporary files
    /// (the CLI) or must fail (the API, where one query must not fill the
    /// disk).
    pub allow_spill: bool,
    /// Bytes of decoded lake columns kept between queries (0: none). Worth
    /// it for a long-lived engine answering the same dashboards again and
    /// again; a one-shot command only pays for the memory.
    pub column_cache_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            data_dir: PathBuf::from("./gatemeter-data"),
            prices: None,
            memory_limit_bytes: 1 << 30,
            shared_memory_limit_bytes: None,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            allow_spill: true,
            column_cache_bytes: 0,
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
    /// Decoded lake columns kept across sessions; `None` when the config
    /// keeps none.
    column_cache: Option<Arc<ColumnCache>>,
    /// Stored rollup files' rows condensed for the KPI statements
    /// (`condensed.rs`), beside the column cache.
    condensed_cache: Option<Arc<CondensedCache>>,
    /// The planned views, one template per [`TablesPresent`], built when
    /// first needed.
    templates: [tokio::sync::OnceCell<SessionContext>; 4],
    /// The store and bucket URL of a lake on object storage.
    remote_store: Option<(Arc<dyn object_store::ObjectStore>, url::Url)>,
    /// The budget every query's pool also draws from, when configured.
    shared_memory: Option<Arc<GreedyMemoryPool>>,
    /// The stored rollup tables, re-read with the lake.
    rollup_tables: tokio::sync::Mutex<RollupTables>,
    /// Their stored hours as of the last refresh.
    rollup_index: SharedRollupIndex,
    /// What a stored hour must have been computed with to be read: this
    /// engine's views and price book.
    rollup_basis: String,
}

/// Which of the two kinds of files a session's window holds any of. A
/// template whose window holds none of a kind reads that raw table as empty
/// (`WHERE false`), so the planner drops the branches of the views that
/// would read it: with no fresh files, no deduplication is planned at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TablesPresent {
    compacted: bool,
    fresh: bool,
}

impl TablesPresent {
    const ALL: TablesPresent = TablesPresent {
        compacted: true,
        fresh: true,
    };

    fn of(scope: &SessionScope) -> TablesPresent {
        let any = |selection: FileSelection| selection.pick(&scope.files).any(|f| scope.reads(f));
        TablesPresent {
            compacted: any(FileSelection::Compacted),
            fresh: any(FileSelection::Fresh),
        }
    }

    fn index(self) -> usize {
        usize::from(self.compacted) * 2 + usize::from(self.fresh)
    }

    fn holds(self, selection: FileSelection) -> bool {
        match selection {
            FileSelection::Compacted => self.compacted,
            FileSelection::Fresh => self.fresh,
        }
    }
}

/// The lake's committed data files, or none while no writer created it.
async fn load_lake(data_dir: &Path) -> Result<Option<Lake>, QueryError> {
    match lake_location(data_dir)? {
        Some(location) => Ok(Lake::open_existing(&location).await?),
        None => Ok(None),
    }
}

impl QueryEngine {
    /// Reads the lake's Delta logs (no file is touched) and the price book.
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
        let remote_store = match LakeRoot::of(&config.data_dir) {
            LakeRoot::Local(_) => None,
            LakeRoot::Remote(url) => LakeLocation::parse(url.as_str())?.remote_store()?,
        };
        let column_cache = (config.column_cache_bytes > 0)
            .then(|| Arc::new(ColumnCache::new(config.column_cache_bytes)));
        let condensed_cache = (config.column_cache_bytes > 0).then(|| {
            Arc::new(CondensedCache::new(
                config.column_cache_bytes / CONDENSED_SHARE_OF_COLUMN_CACHE,
            ))
        });
        let mut rollup_tables = RollupTables::new(config.data_dir.clone());
        let rollup_index = rollup_tables.refresh().await?.unwrap_or_default();
        Ok(QueryEngine {
            rollup_tables: tokio::sync::Mutex::new(rollup_tables),
            rollup_index: SharedRollupIndex::new(rollup_index),
            rollup_basis: crate::stored_rollups::basis(&price_book),
            shared_memory: config
                .shared_memory_limit_bytes
                .map(|limit| Arc::new(GreedyMemoryPool::new(limit))),
            config,
            column_cache,
            condensed_cache,
            price_book,
            file_caches: CacheManager::try_new(&CacheManagerConfig::default())?,
            lake: tokio::sync::Mutex::new(lake),
            files: {
                let committed = CommittedFiles::default();
                committed.replace(files);
                committed
            },
            templates: Default::default(),
            remote_store,
        })
    }

    /// Loads Delta commits made since the last look (by an ingester in this
    /// or another process); returns how many were new.
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
        drop(lake);
        let rollups = self.rollup_tables.lock().await.refresh().await?;
        let rollups_changed = rollups.is_some();
        if let Some(index) = rollups {
            self.rollup_index.replace(index);
        }
        Ok(applied + u64::from(rollups_changed))
    }

    /// Where the lake's files are read from.
    pub(crate) fn lake_root(&self) -> LakeRoot {
        LakeRoot::of(&self.config.data_dir)
    }

    /// The committed data files as of the last refresh.
    pub fn committed_files(&self) -> Arc<Vec<FileEntry>> {
        self.files.current()
    }

    pub fn price_book(&self) -> &PriceBook {
        &self.price_book
    }

    /// Hits, misses and size of the column cache; `None` without one.
    pub fn column_cache_stats(&self) -> Option<ColumnCacheStats> {
        self.column_cache.as_ref().map(|cache| cache.stats())
    }

    /// Hits and misses of condensed rollup files, by file.
    pub fn condensed_cache_stats(&self) -> Option<ColumnCacheStats> {
        self.condensed_cache.as_ref().map(|cache| cache.stats())
    }

    /// A session whose `attempts_raw`, `attempts` and `requests` cover
    /// `window`, over the files committed as of now, every team's rows.
    pub async fn session(&self, window: Window) -> Result<SessionContext, QueryError> {
        self.scoped_session(window, &TeamScope::all()).await
    }

    /// [`Self::session`] reading only the rows of `teams`.
    pub async fn scoped_session(
        &self,
        window: Window,
        teams: &TeamScope,
    ) -> Result<SessionContext, QueryError> {
        let scope = SessionScope {
            window,
            ..SessionScope::everything(self.files.current())
        };
        let template = self.template(TablesPresent::of(&scope)).await?;
        self.scoped_copy(template, scope, teams).await
    }

    /// A long-lived session over whatever is committed when each query
    /// scans (call [`QueryEngine::refresh`] before a query to see new
    /// commits). Every query on it shares its memory pool: give each
    /// client its own with [`QueryEngine::fork_session`].
    pub async fn live_session(&self) -> Result<SessionContext, QueryError> {
        self.build_template(TablesPresent::ALL).await
    }

    /// `template`'s tables, views, functions and settings with a memory
    /// pool of its own (this engine's limit). It reads no rows until the
    /// returned slot is given the caller's team scope.
    pub fn fork_session(
        &self,
        template: &SessionContext,
    ) -> Result<(SessionContext, ScopeSlot), QueryError> {
        let slot = ScopeSlot::default();
        let template_state = template.state();
        let config = template_state
            .config()
            .clone()
            .with_extension(Arc::new(RowScope { slot: slot.clone() }));
        let state = SessionStateBuilder::new_from_existing(template_state)
            .with_config(config)
            .with_runtime_env(self.runtime_env()?)
            .build();
        Ok((SessionContext::new_with_state(state), slot))
    }

    async fn template(&self, present: TablesPresent) -> Result<&SessionContext, QueryError> {
        self.templates[present.index()]
            .get_or_try_init(|| self.build_template(present))
            .await
    }

    /// The views over live raw tables, those `present` does not hold read
    /// as empty.
    async fn build_template(&self, present: TablesPresent) -> Result<SessionContext, QueryError> {
        let ctx = self.new_context()?;
        let root = LakeRoot::of(&self.config.data_dir);
        let tables = [FileSelection::Compacted, FileSelection::Fresh].map(|selection| {
            Arc::new(LiveLakeTable::new(
                self.files.clone(),
                selection,
                root.clone(),
                self.column_cache.clone(),
            )) as Arc<dyn TableProvider>
        });
        self.register_tables(&ctx, tables, present).await?;
        Ok(ctx)
    }

    /// A session with `template`'s views in a catalog of its own (tables a
    /// caller registers stay in it), a memory pool of its own, `scope` and
    /// the rows of `teams`.
    async fn scoped_copy(
        &self,
        template: &SessionContext,
        scope: SessionScope,
        teams: &TeamScope,
    ) -> Result<SessionContext, QueryError> {
        let template_state = template.state();
        let options = template_state.config().options();
        let (catalog_name, schema_name) = (
            options.catalog.default_catalog.clone(),
            options.catalog.default_schema.clone(),
        );
        let schema = MemorySchemaProvider::new();
        if let Some(template_schema) = template
            .catalog(&catalog_name)
            .and_then(|catalog| catalog.schema(&schema_name))
        {
            for name in template_schema.table_names() {
                if let Some(table) = template_schema.table(&name).await? {
                    schema.register_table(name, table)?;
                }
            }
        }
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(&schema_name, Arc::new(schema))?;
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(catalog_name, Arc::new(catalog));
        let config = template_state
            .config()
            .clone()
            .with_create_default_catalog_and_schema(false)
            .with_extension(Arc::new(scope))
            .with_extension(Arc::new(RowScope {
                slot: ScopeSlot::filled(teams.clone()),
            }));
        let state = SessionStateBuilder::new_from_existing(template_state)
            .with_config(config)
            .with_catalog_list(Arc::new(catalogs))
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
        // Ours first: the built-in planners would plan `||` and OVERLAY
        // with the unbounded functions.
        let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(
            crate::bounded_functions::BoundedSyntaxPlanner::default(),
        )];
        planners.extend(state.expr_planners().iter().cloned());
        let state = SessionStateBuilder::new_from_existing(state)
            .with_expr_planners(planners)
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
        // The limit holds for the sum of a query's operators; one that needs
        // more than is left spills (the CLI) or fails the query (the API,
        // where one query must not fill the disk). A fair split among the
        // operators that can spill (DataFusion's FairSpillPool) gave each
        // of them a small share, and a week's request roll-up spilled to
        // disk under a 1 GiB limit (3.1 s instead of 1.9 s) although the
        // whole query fits in 700 MiB.
        let pool: Arc<dyn MemoryPool> = match &self.shared_memory {
            Some(shared) => Arc::new(SharedLimitPool::new(limit, shared.clone())),
            None => Arc::new(GreedyMemoryPool::new(limit)),
        };
        let runtime = RuntimeEnvBuilder::new().with_memory_pool(pool);
        let runtime = if self.config.allow_spill {
            runtime
        } else {
            runtime.with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
        };
        let caches = CacheManagerConfig::default()
            .with_file_metadata_cache(Some(self.file_caches.get_file_metadata_cache()))
            .with_file_statistics_cache(self.file_caches.get_file_statistic_cache());
        let runtime = runtime.with_cache_manager(caches).build_arc()?;
        if let Some((store, bucket)) = &self.remote_store {
            runtime.register_object_store(bucket, store.clone());
        }
        Ok(runtime)
    }

    /// The raw tables (the lake's two kinds of files; a kind `present`
    /// does not hold reads as empty), the price book, the views and the
    /// aggregates they use.
    async fn register_tables(
        &self,
        ctx: &SessionContext,
        [compacted, fresh]: [Arc<dyn TableProvider>; 2],
        present: TablesPresent,
    ) -> Result<(), QueryError> {
        ctx.register_udaf(crate::extreme_by::arg_max_null());
        ctx.register_udaf(crate::extreme_by::arg_min_null());
        ctx.register_table("attempts_lake_compacted", compacted)?;
        ctx.register_table("attempts_lake_fresh", fresh)?;
        for (kind, selection) in [
            ("compacted", FileSelection::Compacted),
            ("fresh", FileSelection::Fresh),
        ] {
            let empty = if present.holds(selection) {
                ""
            } else {
                " WHERE false"
            };
            register_view(
                ctx,
                &format!("attempts_{kind}_raw"),
                &format!("SELECT * FROM attempts_lake_{kind}{empty}"),
            )
            .await?;
        }
        register_view(
            ctx,
            "attempts_raw",
            "SELECT * FROM attempts_compacted_raw UNION ALL SELECT * FROM attempts_fresh_raw",
        )
        .await?;
        ctx.register_table("price_book", Arc::new(price_book_table(&self.price_book)?))?;
        ctx.register_udf(crate::attempt_cost::attempt_cost(&self.price_book));
        ctx.register_udf(crate::attempt_cost::attempt_cost_source(&self.price_book));
        for function in crate::bounded_functions::bounded_functions() {
            ctx.register_udf(function);
        }
        for function in crate::bounded_aggregates::bounded_aggregates() {
            ctx.register_udaf(function);
        }
        for function in crate::sketch_functions::sketch_aggregates() {
            ctx.register_udaf(function);
        }
        for function in crate::sketch_functions::sketch_scalars() {
            ctx.register_udf(function);
        }
        for (name, body) in VIEWS {
            let view = planned_view(ctx, body).await?;
            match ROLLUP_VIEWS.iter().position(|rollup| rollup == name) {
                Some(position) => {
                    self.register_derived_views(ctx, &view, position)?;
                    ctx.register_table(
                        *name,
                        Arc::new(RolledUpView::new(view, position, self.stored_hours())),
                    )?
                }
                None => ctx.register_table(*name, view)?,
            };
        }
        Ok(())
    }

    /// The daily and by-model views of the hourly rollup view at
    /// `position` (its plan over raw rows is `hourly`), named as the
    /// stored rollups they read.
    fn register_derived_views(
        &self,
        ctx: &SessionContext,
        hourly: &Arc<ViewTable>,
        position: usize,
    ) -> Result<(), QueryError> {
        let derived = [
            (DAILY_ROLLUPS[position], true, false),
            (BY_MODEL_ROLLUPS[position], false, true),
            (BY_MODEL_ROLLUPS[position + 2], true, true),
        ];
        for (name, days, by_model) in derived {
            let derivation = Derivation { days, by_model };
            let view =
                RolledUpView::derived(hourly.clone(), position, self.stored_hours(), derivation)?;
            ctx.register_table(name, Arc::new(view))?;
        }
        Ok(())
    }

    /// Where the rolled-up views look up stored hours.
    fn stored_hours(&self) -> StoredHours {
        StoredHours {
            files: self.files.clone(),
            index: self.rollup_index.clone(),
            basis: self.rollup_basis.clone(),
            root: LakeRoot::of(&self.config.data_dir),
            column_cache: self.column_cache.clone(),
        }
    }
}

/// Registers the view `name` ([`planned_view`]).
async fn register_view(ctx: &SessionContext, name: &str, body: &str) -> Result<(), QueryError> {
    ctx.register_table(name, planned_view(ctx, body).await?)?;
    Ok(())
}

/// The view of `body` with its plan already optimized: a query inlines the
/// view's plan and optimizes the whole again, and starting from the
/// optimized view (empty branches gone, subqueries decorrelated,
/// expressions simplified) saves that work on every query.
async fn planned_view(ctx: &SessionContext, body: &str) -> Result<Arc<ViewTable>, QueryError> {
    let state = ctx.state();
    let plan = state.create_logical_plan(body).await?;
    let optimized = state.optimize(&plan)?;
    Ok(Arc::new(ViewTable::new(optimized, Some(body.to_string()))))
}
