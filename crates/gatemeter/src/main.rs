//! The `gatemeter` command line.

mod audit_config;
mod auth_config;
mod commands;
mod error;
mod instance_id;
mod privacy;
mod random;
mod service;
mod settings;
mod synth;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatemeter_lake::FailPoint;

use commands::{
    compact::CompactArgs, demo::DemoArgs, import::ImportArgs, ingest::IngestArgs, kpis::KpisArgs,
    migrate::MigrateArgs, produce::ProduceArgs, query::QueryArgs, rules::RulesArgs,
    scorecard::ScorecardArgs, serve::ServeArgs, token::TokenArgs,
};
use error::CliError;
use settings::{FlushOptions, GlobalOptions, Settings};

/// Observability and cost analytics for LLM API gateways.
#[derive(Debug, Parser)]
#[command(name = "gatemeter", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything with no broker and no config: in-process broker,
    /// synthetic gateway, ingest into the lake, with a live line.
    Demo(DemoArgs),
    /// The long-running service: ingest, the HTTP API and alerts, by role.
    Serve(ServeArgs),
    /// Consume attempt events from Kafka into the lake, exactly once.
    Ingest(IngestArgs),
    /// Write JSONL files of events to the lake without Kafka (backfill).
    Import(ImportArgs),
    /// Send synthetic or replayed gateway traffic into Kafka.
    Produce(ProduceArgs),
    /// Every KPI over a window, grouped by dimensions and time buckets.
    Kpis(KpisArgs),
    /// Run read-only SQL over the lake's views.
    Query(QueryArgs),
    /// The 12-KPI scorecard of a window against its targets.
    Scorecard(ScorecardArgs),
    /// Prometheus rules for the configured SLOs (`rules export`).
    Rules(RulesArgs),
    /// Merge each settled hour's files into one deduplicated file,
    /// checkpoint the log and vacuum unreferenced files.
    Compact(CompactArgs),
    /// Convert a lake of the format before Delta Lake in place, once.
    Migrate(MigrateArgs),
    /// API tokens for HTTP and PostgreSQL (`token create`).
    Token(TokenArgs),
}

/// The crash fail point for tests, from `GATEMETER_FAIL_POINT`
/// (e.g. `after_data_files@3`); never set in production.
pub(crate) fn fail_point() -> Result<Option<FailPoint>, CliError> {
    match std::env::var("GATEMETER_FAIL_POINT") {
        Ok(text) if !text.is_empty() => text
            .parse()
            .map(Some)
            .map_err(|e: String| CliError::Usage(format!("GATEMETER_FAIL_POINT: {e}"))),
        _ => Ok(None),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let no_flush = FlushOptions::default();
    let flush = match &cli.command {
        Command::Ingest(args) => &args.flush,
        Command::Import(args) => &args.flush,
        Command::Serve(args) => &args.flush,
        Command::Demo(_)
        | Command::Produce(_)
        | Command::Kpis(_)
        | Command::Query(_)
        | Command::Scorecard(_)
        | Command::Rules(_)
        | Command::Compact(_)
        | Command::Migrate(_)
        | Command::Token(_) => &no_flush,
    };
    let settings = Settings::resolve(&cli.global, flush)?;
    match &cli.command {
        Command::Demo(args) => commands::demo::run(&settings, args).await,
        Command::Serve(args) => commands::serve::run(&settings, args).await,
        Command::Ingest(args) => commands::ingest::run(&settings, args).await,
        Command::Import(args) => commands::import::run(&settings, args).await,
        Command::Produce(args) => commands::produce::run(&settings, args).await,
        Command::Kpis(args) => commands::kpis::run(&settings, args).await,
        Command::Query(args) => commands::query::run(&settings, args).await,
        Command::Scorecard(args) => commands::scorecard::run(&settings, args).await,
        Command::Rules(args) => commands::rules::run(&settings, args),
        Command::Compact(args) => commands::compact::run(&settings, args).await,
        Command::Migrate(args) => commands::migrate::run(&settings, args).await,
        Command::Token(args) => commands::token::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEMETER_LOG")
                // The Delta kernel logs an error for every table it finds
                // missing before gatemeter creates it; our own errors say
                // what went wrong.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,buoyant_kernel=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gatemeter: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatemeter: error: {e}");
            ExitCode::FAILURE
        }
    }
}
