//! `gatemeter demo`: everything on one machine with no set-up — an
//! in-process Kafka-protocol broker (librdkafka's mock cluster), the
//! synthetic gateway producing into it, the ingester writing the lake and
//! the HTTP API over it, with the URLs to open and a live line of what is
//! happening.

use std::time::{Duration, Instant};

use clap::Args;
use gatemeter_ingest::{run_ingest, IngestMetrics, IngestOptions, KafkaSource};
use gatemeter_lake::Lake;
use gatemeter_query::PriceBook;
use indicatif::ProgressBar;
use rdkafka::mocking::MockCluster;

use crate::commands::produce::{generator_for, produce_into, producer_config, ProduceArgs, Sink};
use crate::error::CliError;
use crate::service::{api_state, bind, prepare_listeners, start_alerts, start_pg, traffic_metrics};
use crate::settings::{Settings, DEFAULT_DEMO_PG_LISTEN};
use crate::synth::Scenario;

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Client requests per second of synthetic traffic.
    #[arg(long, env = "GATEMETER_DEMO_RATE", default_value_t = 200.0)]
    pub rate: f64,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long, env = "GATEMETER_DEMO_DURATION")]
    pub duration: Option<u64>,
    /// Serve HTTP or PostgreSQL outside loopback without API tokens.
    #[arg(long, env = "GATEMETER_INSECURE_OPEN")]
    pub insecure_open: bool,
}

const PARTITIONS: i32 = 4;

pub async fn run(settings: &Settings, args: &DemoArgs) -> Result<(), CliError> {
    let pg_listen = settings
        .pg_listen
        .as_deref()
        .unwrap_or(DEFAULT_DEMO_PG_LISTEN);
    let tls = prepare_listeners(settings, Some(pg_listen), args.insecure_open)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let cluster = MockCluster::new(1)?;
    cluster.create_topic(&settings.topic, PARTITIONS, 1)?;
    let brokers = cluster.bootstrap_servers();
    let (lake, recovery) = Lake::open_local(&settings.data_dir, None).await?;
    let registry = prometheus::Registry::new();
    let metrics = IngestMetrics::register(&registry)?;
    let book = demo_price_book(settings)?;
    let traffic = traffic_metrics(&registry, book.clone())?;
    let listener = bind("--http-listen", &settings.http_listen, true).await?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::io(&settings.http_listen, e))?;
    let state = api_state(settings, book, registry.clone()).await?;
    state.set_ready(true);
    let pg = start_pg(
        &state,
        pg_listen,
        settings.pg_listen.is_none(),
        tls.as_ref().map(|tls| tls.pg.clone()),
    )
    .await?;
    // The demo watches an availability SLO even without a config file.
    let mut alerts = settings.alerts.clone();
    if alerts.slo.is_empty() {
        alerts.slo.push(gatemeter_alerts::config::SloConfig {
            name: "availability".into(),
            kind: gatemeter_alerts::config::SloKind::Availability,
            target: 0.999,
            latency_threshold_ms: None,
            scope: Default::default(),
        });
    }
    let (stop_alerts, alerts_stopped) = tokio::sync::oneshot::channel::<()>();
    let alerts_task = start_alerts(
        settings,
        alerts,
        state.engine.clone(),
        &registry,
        Some(state.clone()),
        alerts_stopped,
    )?;
    let engine = state.engine.clone();
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_tls = tls.map(|tls| tls.http);
    let server = tokio::spawn(gatemeter_api::serve(listener, state, http_tls, async {
        let _ = http_stopped.await;
    }));
    println!("gatemeter demo");
    println!(
        "  broker      in-process Kafka mock cluster at {brokers}, topic {}",
        settings.topic
    );
    println!(
        "  lake        {} (Delta table version {})",
        settings.data_dir.display(),
        recovery.version
    );
    println!("  traffic     synthetic gateway, {} requests/s", args.rate);
    println!("  kpis        {scheme}://{address}/api/v1/kpis?group_by=provider");
    println!("  scorecard   {scheme}://{address}/api/v1/scorecard?window=1h");
    println!("  metrics     {scheme}://{address}/metrics");
    println!("  openapi     {scheme}://{address}/api/v1/openapi.json");
    println!(
        "  sql         curl -s {scheme}://{address}/api/v1/sql -H 'content-type: application/json' -d '{{\"sql\": \"SELECT team, sum(cost_usd) AS spend_usd FROM attempts GROUP BY team\"}}'"
    );
    println!(
        "  psql        psql -h {} -p {} -d gatemeter -c 'SELECT team, sum(cost_usd) AS spend_usd FROM attempts GROUP BY team'",
        pg.address.ip(),
        pg.address.port()
    );
    println!(
        "  stop        Ctrl-C{}",
        args.duration
            .map(|s| format!(" or after {s} s"))
            .unwrap_or_default()
    );

    let produce_args = ProduceArgs {
        rate: args.rate,
        count: u64::MAX,
        scenario: Scenario::Default,
        replay: None,
        simulated_rate: None,
        seed: rand_seed(),
        start: None,
        duplicates: 0.002,
        corrections: 0.002,
        malformed: 0.002,
        output: None,
        partitions: PARTITIONS,
    };
    let mut sink = Sink::Kafka {
        producer: producer_config(&brokers, &[]).create()?,
        topic: settings.topic.clone(),
    };
    let producer_task = tokio::spawn(async move {
        let mut generator = generator_for(&produce_args);
        produce_into(
            &mut sink,
            &mut generator,
            &produce_args,
            &ProgressBar::hidden(),
        )
        .await
    });

    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    let stop = async move {
        match deadline {
            Some(deadline) => tokio::select! {
                () = crate::shutdown_signal() => {}
                () = tokio::time::sleep_until(deadline.into()) => {}
            },
            None => crate::shutdown_signal().await,
        }
    };
    let options = IngestOptions {
        source: KafkaSource {
            brokers,
            topic: settings.topic.clone(),
            group: settings.group.clone(),
            // One demo process: no member to come back as.
            instance_id: None,
            options: Vec::new(),
        },
        policy: settings.flush,
        privacy: settings.privacy_policy()?,
        until_caught_up: false,
        catch_up_deadline: gatemeter_ingest::DEFAULT_CATCH_UP_DEADLINE,
    };
    let live = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            tokio::join!(live_line(metrics), kpi_line(engine));
        })
    };
    let report = run_ingest(options, lake, metrics, Some(traffic), stop).await;
    live.abort();
    // Ingest has committed what it buffered: stop the evaluator, then HTTP.
    let _ = stop_alerts.send(());
    alerts_task.join().await;
    // The PostgreSQL endpoint runs on the API's query pool: stop it while
    // the API state (which owns that pool) is still alive.
    pg.stop().await?;
    let _ = stop_http.send(());
    if let Ok(Err(e)) = server.await {
        eprintln!("http: {e}");
    }
    let report = report?;
    // Stop the producer before the broker goes away, so it does not report
    // the broker's disappearance as an error.
    producer_task.abort();
    let _ = producer_task.await;
    println!(
        "stopped: {} events stored, {} dead letters, {} commits in {}",
        report.stored,
        report.dead_letters,
        report.commits,
        settings.data_dir.display()
    );
    drop(cluster);
    Ok(())
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(42, |d| d.as_nanos() as u64)
}

/// Prints one line every two seconds: rates and totals from the metrics.
async fn live_line(metrics: IngestMetrics) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (stored, dead, files) = metrics.totals();
        // Averaged since start: events land in the lake a flush at a time.
        let rate = stored as f64 / started.elapsed().as_secs_f64().max(1e-3);
        println!("ingest  {rate:>8.0} events/s  stored {stored:>9}  dead letters {dead:>6}  files {files:>5}");
    }
}

/// The price list the demo's synthetic providers charge, used when no
/// `--prices` is given so the demo needs no files.
const DEMO_PRICES: &str = include_str!("../../../../config/prices.csv");

/// The `--prices` book, else the built-in list.
fn demo_price_book(settings: &Settings) -> Result<PriceBook, CliError> {
    Ok(match &settings.prices {
        Some(path) => gatemeter_query::engine::load_price_book(Some(path))?,
        None => PriceBook::parse(DEMO_PRICES)?,
    })
}

/// Every ten seconds, the headline KPIs of the last five minutes, computed
/// by the API's query engine from what is committed in the lake.
async fn kpi_line(engine: std::sync::Arc<gatemeter_query::QueryEngine>) {
    use gatemeter_query::{kpis, KpiQuery, KpiSettings, Window};
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = chrono::Utc::now().timestamp_micros();
        let window = Window {
            from: Some(now - 300_000_000),
            to: Some(now + 60_000_000),
        };
        let rows = match engine.refresh().await {
            Ok(_) => kpis(
                &engine,
                window,
                &KpiQuery::default(),
                &KpiSettings::default(),
            )
            .await
            .and_then(|batches| gatemeter_query::output::json_rows(&batches)),
            Err(e) => Err(e),
        };
        match rows.as_deref() {
            Ok([row, ..]) => {
                let number = |name: &str| {
                    row[name]
                        .as_f64()
                        .map_or("-".to_owned(), |v| format!("{v:.3}"))
                };
                let percent = |name: &str| {
                    row[name]
                        .as_f64()
                        .map_or("-".to_owned(), |v| format!("{:.2}%", v * 100.0))
                };
                println!(
                    "kpis    last 5 min: requests {}  availability {}  p95 {} ms  ttft p95 {} ms  retry amplification {}  fallback rate {}  spend ${}  cost/success ${}",
                    row["requests"],
                    percent("availability"),
                    number("latency_p95_ms"),
                    number("ttft_p95_ms"),
                    number("retry_amplification"),
                    percent("fallback_rate"),
                    row["spend_usd"].as_str().unwrap_or("-"),
                    row["cost_per_successful_outcome_usd"].as_str().unwrap_or("-"),
                );
            }
            Ok([]) => {}
            Err(e) => eprintln!("kpis: {e}"),
        }
    }
}
