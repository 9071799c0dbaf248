//! `gatemeter serve [--roles ingest,api,alerts]`: the long-running service.
//! Roles run in one process or in separate ones. Shutdown is ordered: stop
//! consuming, flush and commit, then stop HTTP.

use clap::{Args, ValueEnum};
use gatemeter_ingest::{run_ingest, IngestMetrics, IngestOptions};
use gatemeter_lake::Lake;
use tokio::sync::oneshot;
use tracing::info;

use crate::error::CliError;
use crate::service::{api_state, bind, prepare_listeners, start_alerts, start_pg, traffic_metrics};
use crate::settings::{FlushOptions, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Role {
    /// Consume Kafka into the lake (needs --brokers).
    Ingest,
    /// Serve the HTTP API, SQL and /metrics.
    Api,
    /// Evaluate alert rules and notify.
    Alerts,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Roles to run in this process. Without `api`, --http-listen serves
    /// /healthz and /metrics only.
    #[arg(
        long,
        env = "GATEMETER_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "ingest,api,alerts"
    )]
    pub roles: Vec<Role>,
    #[command(flatten)]
    pub flush: FlushOptions,
    /// Serve HTTP or PostgreSQL outside loopback without API tokens.
    #[arg(long, env = "GATEMETER_INSECURE_OPEN")]
    pub insecure_open: bool,
}

pub async fn run(settings: &Settings, args: &ServeArgs) -> Result<(), CliError> {
    let registry = prometheus::Registry::new();
    let book = gatemeter_query::engine::load_price_book(settings.prices.as_deref())?;
    let wants = |role| args.roles.contains(&role);
    // Without the API, `--http-listen` serves /healthz and /metrics alone.
    let metrics_only = !wants(Role::Api);
    let tls = if wants(Role::Api) {
        prepare_listeners(settings, settings.pg_listen.as_deref(), args.insecure_open)?
    } else {
        prepare_listeners(settings, None, args.insecure_open)?
    };
    let ingest_source = match (wants(Role::Ingest), settings.kafka_source()) {
        (true, Ok(source)) => Some(source),
        (true, Err(_)) => {
            eprintln!("ingest: no Kafka brokers configured; serving the lake as it is");
            None
        }
        (false, _) => None,
    };

    // HTTP first, answering 503 on /readyz until the lake is recovered.
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let mut api = if wants(Role::Api) {
        let listener = bind("--http-listen", &settings.http_listen, false).await?;
        let address = listener
            .local_addr()
            .map_err(|e| CliError::io(&settings.http_listen, e))?;
        let state = api_state(settings, book.clone(), registry.clone()).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "api: {scheme}://{address}/api/v1/kpis  (OpenAPI: {scheme}://{address}/api/v1/openapi.json)"
        );
        let pg = match &settings.pg_listen {
            Some(pg_listen) => {
                let pg_tls = tls.as_ref().map(|tls| tls.pg.clone());
                let pg = start_pg(&state, pg_listen, false, pg_tls).await?;
                eprintln!(
                    "postgres: psql -h {} -p {} -d gatemeter{}",
                    pg.address.ip(),
                    pg.address.port(),
                    if tls.is_some() {
                        " (sslmode=require)"
                    } else {
                        ""
                    }
                );
                Some(pg)
            }
            None => None,
        };
        let server_state = state.clone();
        let http_tls = tls.as_ref().map(|tls| tls.http.clone());
        let server = tokio::spawn(async move {
            gatemeter_api::serve(listener, server_state, http_tls, async {
                let _ = http_stopped.await;
            })
            .await
        });
        Some((state, server, pg))
    } else {
        None
    };
    let (stop_scrape, scrape_stopped) = oneshot::channel::<()>();
    let scrape = if metrics_only {
        let listener = bind("--http-listen", &settings.http_listen, false).await?;
        let address = listener
            .local_addr()
            .map_err(|e| CliError::io(&settings.http_listen, e))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("metrics: {scheme}://{address}/metrics");
        let (registry, access) = (registry.clone(), settings.access.clone());
        let http_tls = tls.as_ref().map(|tls| tls.http.clone());
        Some(tokio::spawn(async move {
            gatemeter_api::metrics_only::serve(listener, registry, access, http_tls, async {
                let _ = scrape_stopped.await;
            })
            .await
        }))
    } else {
        None
    };
    let (stop_alerts, alerts_stopped) = oneshot::channel::<()>();
    let alerts = if wants(Role::Alerts) {
        let engine = match &api {
            Some((state, _, _)) => state.engine.clone(),
            None => std::sync::Arc::new(
                gatemeter_query::QueryEngine::open_with_price_book(
                    crate::commands::kpis::query_config(settings),
                    book.clone(),
                )
                .await?,
            ),
        };
        let rules = settings.alerts.slo.len()
            + settings.alerts.budget.len()
            + settings.alerts.threshold.len();
        info!(
            rules,
            "alerts: evaluating every {} s", settings.alerts.interval_seconds
        );
        let api_state = api.as_ref().map(|(state, _, _)| state.clone());
        Some(start_alerts(
            settings,
            settings.alerts.clone(),
            engine,
            &registry,
            api_state,
            alerts_stopped,
        )?)
    } else {
        None
    };

    let outcome = match ingest_source {
        Some(source) => {
            let (lake, recovery) =
                Lake::open(&settings.lake_location()?, crate::fail_point()?).await?;
            eprintln!(
                "lake {}: Delta table version {}, {} data files",
                settings.data_dir.display(),
                recovery.version,
                recovery.data_files
            );
            if let Some((state, _, _)) = &api {
                state.set_ready(true);
            }
            let metrics = IngestMetrics::register(&registry)?;
            let traffic = traffic_metrics(&registry, book)?;
            let options = IngestOptions {
                source,
                policy: settings.flush,
                privacy: settings.privacy_policy()?,
                until_caught_up: false,
                catch_up_deadline: gatemeter_ingest::DEFAULT_CATCH_UP_DEADLINE,
            };
            // Returns once shutdown was asked and the buffer is committed.
            run_ingest(
                options,
                lake,
                metrics,
                Some(traffic),
                crate::shutdown_signal(),
            )
            .await
            .map(|report| {
                eprintln!(
                    "ingest stopped: {} events stored, {} dead letters, {} commits",
                    report.stored, report.dead_letters, report.commits
                );
            })
            .map_err(CliError::from)
        }
        None => {
            if let Some((state, _, _)) = &api {
                state.set_ready(true);
            }
            crate::shutdown_signal().await;
            Ok(())
        }
    };
    // Ingest has flushed and committed: stop the evaluator, then the
    // PostgreSQL endpoint (on the API's query pool), then HTTP.
    let _ = stop_alerts.send(());
    if let Some(runner) = alerts {
        runner.join().await;
    }
    if let Some(pg) = api.as_mut().and_then(|(_, _, pg)| pg.take()) {
        pg.stop().await?;
    }
    let _ = stop_scrape.send(());
    if let Some(server) = scrape {
        match server.await {
            Ok(result) => result.map_err(|e| CliError::io("http", e))?,
            Err(e) => return Err(CliError::Usage(format!("metrics server task failed: {e}"))),
        }
    }
    let _ = stop_http.send(());
    if let Some((_, server, _)) = api {
        match server.await {
            Ok(result) => result.map_err(|e| CliError::io("http", e))?,
            Err(e) => return Err(CliError::Usage(format!("http server task failed: {e}"))),
        }
    }
    outcome
}
