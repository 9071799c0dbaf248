//! `gatemeter ingest [--until-caught-up]`: Kafka into the lake.

use clap::Args;
use gatemeter_ingest::{run_ingest, IngestMetrics, IngestOptions};
use gatemeter_lake::Lake;

use crate::error::CliError;
use crate::settings::{FlushOptions, Settings};

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Stop once every assigned partition is consumed to its end and flushed.
    #[arg(long, env = "GATEMETER_UNTIL_CAUGHT_UP")]
    pub until_caught_up: bool,
    #[command(flatten)]
    pub flush: FlushOptions,
}

pub async fn run(settings: &Settings, args: &IngestArgs) -> Result<(), CliError> {
    let source = settings.kafka_source()?;
    let (lake, recovery) = Lake::open(&settings.lake_location()?, crate::fail_point()?).await?;
    eprintln!(
        "lake {}: Delta table version {}, {} data files",
        settings.data_dir.display(),
        recovery.version,
        recovery.data_files
    );
    let metrics = IngestMetrics::register(&prometheus::Registry::new())?;
    let options = IngestOptions {
        source,
        policy: settings.flush,
        privacy: settings.privacy_policy()?,
        until_caught_up: args.until_caught_up,
    };
    let report = run_ingest(options, lake, metrics, None, crate::shutdown_signal()).await?;
    println!(
        "stored {} events, {} dead letters in {} commits",
        report.stored, report.dead_letters, report.commits
    );
    Ok(())
}
