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
use futures::StreamExt;

use crate::engine::{QueryEngine, Window};
use crate::error::QueryError;
use crate::read_only::{check_read_only, read_only_options};

/// Limits of one query from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    pub timeout: Duration,
    /// Rows a result may hold; one more is an error, never a silent cut.
    pub max_rows: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Duration::from_secs(30),
            max_rows: 100_000,
        }
    }
}

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

    /// Checks that `sql` only reads, then runs it over `window`'s session
    /// within the limits.
    pub async fn sql(
        &self,
        engine: Arc<QueryEngine>,
        window: Window,
        sql: String,
    ) -> Result<QueryResult, QueryError> {
        let max_rows = self.limits.max_rows;
        self.run(async move {
            // On the query pool's large stacks, like the planning after it.
            check_read_only(&sql)?;
            engine.refresh().await?;
            let ctx = engine.session(window).await?;
            let frame = ctx.sql_with_options(&sql, read_only_options()).await?;
            collect_capped(frame, max_rows).await
        })
        .await
    }
}

/// Collects a frame's batches, failing once more than `max_rows` arrive.
pub async fn collect_capped(
    frame: datafusion::dataframe::DataFrame,
    max_rows: usize,
) -> Result<QueryResult, QueryError> {
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame.execute_stream().await?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        if rows > max_rows {
            return Err(QueryError::TooManyRows(max_rows));
        }
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
