//! The long-running parts `serve` and `demo` share: the API state over the
//! lake, binding the HTTP listener, and the traffic metrics priced by the
//! same book as the KPIs.

use std::net::SocketAddr;
use std::sync::Arc;

use gatemeter_api::AppState;
use gatemeter_ingest::{LabelCaps, TrafficMetrics};
use gatemeter_query::executor::QueryExecutor;
use gatemeter_query::scorecard::targets_with;
use gatemeter_query::{PriceBook, QueryConfig, QueryEngine};
use tokio::net::TcpListener;

use crate::auth_config::check_exposure;
use crate::error::CliError;
use crate::settings::Settings;
use crate::tls::{TlsAcceptors, TlsSettings};

/// The query engine and API state over `settings.data_dir`, not yet ready.
pub async fn api_state(
    settings: &Settings,
    book: PriceBook,
    registry: prometheus::Registry,
) -> Result<AppState, CliError> {
    let config = QueryConfig {
        data_dir: settings.data_dir.clone(),
        prices: settings.prices.clone(),
        memory_limit_bytes: settings.query.memory_limit_bytes,
        shared_memory_limit_bytes: Some(settings.query.total_memory_bytes),
        target_partitions: settings.query.threads,
        // One query over its limit fails rather than filling the disk.
        allow_spill: false,
        column_cache_bytes: settings.query.column_cache_bytes,
    };
    let engine = QueryEngine::open_with_price_book(config, book).await?;
    let executor = QueryExecutor::new(settings.query.threads, settings.query.limits)?;
    Ok(AppState::new(
        Arc::new(engine),
        executor,
        registry,
        settings.kpi.clone(),
        targets_with(&settings.scorecard_targets)?,
        settings.access.clone(),
        settings.audit.open(&settings.state_dir()?)?,
    )?)
}

/// Traffic series on `registry`, spend priced with `book`.
pub fn traffic_metrics(
    registry: &prometheus::Registry,
    book: PriceBook,
) -> Result<TrafficMetrics, CliError> {
    let pricer: gatemeter_ingest::Pricer = Arc::new(move |event| book.attempt_cost(event));
    Ok(TrafficMetrics::register(
        registry,
        LabelCaps::default(),
        Some(pricer),
    )?)
}

/// What serving the API needs before it binds: the listeners may be
/// exposed where they are ([`check_exposure`]), and the TLS certificate, if
/// any, loads. `pg_listen`: the PostgreSQL address, if served.
pub fn prepare_listeners(
    settings: &Settings,
    pg_listen: Option<&str>,
    insecure_open: bool,
) -> Result<Option<TlsAcceptors>, CliError> {
    check_exposure(
        "--http-listen",
        &settings.http_listen,
        &settings.access,
        insecure_open,
    )?;
    if let Some(pg_listen) = pg_listen {
        check_exposure("--pg-listen", pg_listen, &settings.access, insecure_open)?;
    }
    settings
        .tls
        .as_ref()
        .map(TlsSettings::acceptors)
        .transpose()
}

/// Binds `address` (given by `flag`); with `next_free`, tries the
/// following ports (up to 20) when it is taken, as the demo does.
pub async fn bind(flag: &str, address: &str, next_free: bool) -> Result<TcpListener, CliError> {
    let parsed: SocketAddr = address.parse().map_err(|_| {
        CliError::Usage(format!(
            "{flag} `{address}`: expected HOST:PORT, e.g. 127.0.0.1:8080"
        ))
    })?;
    let attempts = if next_free { 20 } else { 1 };
    let mut last_error = None;
    for step in 0..attempts {
        let mut candidate = parsed;
        candidate.set_port(parsed.port().saturating_add(step));
        match TcpListener::bind(candidate).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(CliError::Usage(format!(
        "{flag}: cannot listen on {address}: {}",
        last_error.map_or_else(|| "no port tried".to_owned(), |e| e.to_string())
    )))
}

/// The PostgreSQL endpoint, running on the API's query pool.
pub struct PgRunner {
    pub address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), gatemeter_pg::PgError>>,
}

impl PgRunner {
    /// Stops accepting clients and waits for the accept loop to end.
    pub async fn stop(self) -> Result<(), CliError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(CliError::Usage(format!(
                "postgres endpoint task failed: {e}"
            ))),
        }
    }
}

/// Serves the PostgreSQL protocol on `address` over `state`'s engine, with
/// the limits, tokens and audit log of the HTTP API; only over TLS when
/// `tls` is given.
pub async fn start_pg(
    state: &AppState,
    address: &str,
    next_free: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<PgRunner, CliError> {
    let listener = bind("--pg-listen", address, next_free).await?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::io(address, e))?;
    let listener = listener.into_std().map_err(|e| CliError::io(address, e))?;
    let endpoint = gatemeter_pg::PgEndpoint::new(
        state.engine.clone(),
        state.executor.limits(),
        gatemeter_pg::Security {
            access: Arc::new(state.access.clone()),
            audit: state.audit.clone(),
            tls,
        },
    )
    .await?;
    let runtime = state.executor.handle().ok_or_else(|| {
        CliError::Usage("postgres endpoint: the query runtime has shut down".into())
    })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(endpoint.serve(listener, async {
        let _ = stopped.await;
    }));
    Ok(PgRunner {
        address: local,
        stop,
        task,
    })
}

/// The alert evaluator, on a runtime of its own so its queries never take
/// the threads that answer HTTP.
pub struct AlertsRunner {
    runtime: Option<tokio::runtime::Runtime>,
    task: tokio::task::JoinHandle<()>,
}

impl AlertsRunner {
    /// Waits for the evaluator to stop (after its stop signal).
    pub async fn join(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for AlertsRunner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts the alert evaluator on `engine`; its reports go to `api` when
/// this process serves the API. Stops when `stop` fires.
pub fn start_alerts(
    settings: &Settings,
    alerts: gatemeter_alerts::config::AlertsConfig,
    engine: Arc<QueryEngine>,
    registry: &prometheus::Registry,
    api: Option<AppState>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<AlertsRunner, CliError> {
    let evaluator = gatemeter_alerts::evaluator::Evaluator::new(
        alerts,
        engine,
        settings.kpi.clone(),
        &settings.state_dir()?,
        registry,
    )
    .map_err(|e| CliError::Usage(format!("alerts: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("gatemeter-alerts")
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("alerts: cannot start its runtime: {e}")))?;
    let task = runtime.spawn(evaluator.run(
        async {
            let _ = stop.await;
        },
        move |report| {
            if let Some(state) = &api {
                state.set_reports(gatemeter_api::Reports {
                    slos: report.slos,
                    budgets: report.budgets,
                    alerts: report.alerts,
                });
            }
        },
    ));
    Ok(AlertsRunner {
        runtime: Some(runtime),
        task,
    })
}
