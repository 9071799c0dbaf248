//! Queries for the network endpoints run on their own thread pool with a
//! timeout and a row cap (the memory limit is the session's pool), so a
//! query bomb never starves the runtime that answers `/healthz`. A query
//! past its timeout is aborted: dropping DataFusion's stream cancels every
//! task it spawned.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::memory_pool::MemoryConsumer;
use futures::StreamExt;

use crate::engine::{QueryEngine, Window};
use crate::error::QueryError;
use crate::read_only::{check_read_only, read_only_options};
use crate::team_scope::TeamScope;

/// Limits of one query from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub timeout: Duration,
    /// Rows a result may hold; one more is an error, never a silent cut.
    pub max_rows: usize,
    /// Bytes a result may hold (its columns in memory, or the rows sent to
    /// a PostgreSQL client): a few wide rows can be as big as many narrow
    /// ones, and a result is held whole before it is encoded.
    pub max_result_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
        }
    }
}

/// [`QueryLimits::max_result_bytes`] unless configured: 64 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 64 << 20;

/// Stack of a query thread. Parsing, the read-only check, planning and
/// optimizing recurse over the statement's tree, whose depth a client
/// chooses (`1+1+…+1`, a chain of `UNION ALL`); a thread's default 2 MiB
/// let one such statement overflow and abort the whole process. The space
/// is reserved, not used, until a deep statement needs it.
const QUERY_THREAD_STACK_BYTES: usize = 256 << 20;

/// A result: its schema (also when it has no rows) and batches.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

pub struct QueryExecutor {
    /// `Option` only so that drop can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    limits: QueryLimits,
}

impl QueryExecutor {
    pub fn new(threads: usize, limits: QueryLimits) -> Result<QueryExecutor, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("gatemeter-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Runtime(e.to_string()))?;
        Ok(QueryExecutor {
            runtime: Some(runtime),
            limits,
        })
    }

    pub fn limits(&self) -> QueryLimits {
        self.limits
    }

    /// The query pool, for servers whose every task is query work (the
    /// PostgreSQL endpoint): they then never take the HTTP threads.
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.handle().clone())
    }

    /// Runs `work` on the query pool within the timeout.
    pub async fn run<T, F>(&self, work: F) -> Result<T, QueryError>
    where
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| QueryError::Runtime("shut down".into()))?;
        let task = runtime.spawn(work);
        let abort = task.abort_handle();
        match tokio::time::timeout(self.limits.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(QueryError::Runtime(join_error.to_string())),
            Err(_) => {
                abort.abort();
                Err(QueryError::Timeout(self.limits.timeout))
            }
        }
    }

    /// Checks that `sql` only reads, then runs it over `window`'s session,
    /// the rows of `teams`, within the limits.
    pub async fn sql(
        &self,
        engine: Arc<QueryEngine>,
        window: Window,
        teams: TeamScope,
        sql: String,
    ) -> Result<QueryResult, QueryError> {
        self.sql_then(engine, window, teams, sql, Ok::<_, QueryError>)
            .await?
    }

    /// [`Self::sql`], then `finish` (encoding the result for the client) on
    /// the query pool too: turning a large result into JSON or CSV is CPU
    /// work that must not take the threads answering `/healthz`.
    pub async fn sql_then<T, E>(
        &self,
        engine: Arc<QueryEngine>,
        window: Window,
        teams: TeamScope,
        sql: String,
        finish: impl FnOnce(QueryResult) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, QueryError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let limits = self.limits;
        self.run(async move {
            // On the query pool's large stacks, like the planning after it.
            check_read_only(&sql)?;
            engine.refresh().await?;
            let ctx = engine.scoped_session(window, &teams).await?;
            let frame = ctx.sql_with_options(&sql, read_only_options()).await?;
            let result = collect_capped(frame, limits).await?;
            Ok(finish(result))
        })
        .await
    }
}

/// The bytes a batch's rows hold, counting only the slice of each buffer
/// the batch uses (a `LIMIT` slices a large batch without copying).
fn result_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
}

/// Collects a frame's batches, failing once more than `limits.max_rows`
/// rows or `limits.max_result_bytes` bytes arrive. The bytes held are also
/// reserved from the session's memory pool, so a result counts against the
/// query's memory limit alongside the operators still producing it.
pub async fn collect_capped(
    frame: datafusion::dataframe::DataFrame,
    limits: QueryLimits,
) -> Result<QueryResult, QueryError> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let pool = frame.task_ctx().memory_pool().clone();
    let reservation = MemoryConsumer::new("query result").register(&pool);
    let mut stream = frame.execute_stream().await?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        if rows > limits.max_rows {
            return Err(QueryError::TooManyRows(limits.max_rows));
        }
        let batch_bytes = result_bytes(&batch);
        bytes = bytes.saturating_add(batch_bytes);
        if bytes > limits.max_result_bytes {
            return Err(QueryError::ResultTooLarge(limits.max_result_bytes));
        }
        reservation.try_grow(batch_bytes)?;
        batches.push(batch);
    }
    Ok(QueryResult { schema, batches })
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueryConfig;

    async fn engine(dir: &std::path::Path) -> Arc<QueryEngine> {
        Arc::new(
            QueryEngine::open(QueryConfig {
                data_dir: dir.to_path_buf(),
                ..QueryConfig::default()
            })
            .await
            .expect("engine"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_past_the_byte_cap_are_refused_a_limit_of_them_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = engine(dir.path()).await;
        let executor = QueryExecutor::new(
            1,
            QueryLimits {
                max_result_bytes: 1 << 20,
                ..QueryLimits::default()
            },
        )
        .expect("executor");
        // 5,000 rows of 1,000 characters: about 5 MB, well under the row cap.
        let wide = "SELECT repeat('x', 1000) AS wide FROM generate_series(1, 5000)";
        let error = executor
            .sql(
                engine.clone(),
                Window::default(),
                TeamScope::all(),
                wide.to_owned(),
            )
            .await
            .expect_err("5 MB is over a 1 MiB cap");
        assert!(
            matches!(error, QueryError::ResultTooLarge(cap) if cap == 1 << 20),
            "{error}"
        );
        let limited = executor
            .sql(
                engine,
                Window::default(),
                TeamScope::all(),
                format!("{wide} LIMIT 100"),
            )
            .await
            .expect("100 kB fits");
        let rows: usize = limited.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 100);
    }
}
