//! `gatemeter ingest [--until-caught-up]`: Kafka into the lake.

use clap::Args;
use std::time::Duration;

use gatemeter_ingest::{run_ingest, IngestMetrics, IngestOptions, DEFAULT_CATCH_UP_DEADLINE};
use gatemeter_lake::Lake;

use crate::error::CliError;
use crate::settings::{FlushOptions, Settings};

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Stop once every partition of the topic is stored up to the end it
    /// had at start (by this process or another member of the group).
    #[arg(long, env = "GATEMETER_UNTIL_CAUGHT_UP")]
    pub until_caught_up: bool,
    /// With --until-caught-up: fail (exit 1, naming the partitions still
    /// behind) when not caught up after this many seconds.
    #[arg(long, env = "GATEMETER_CATCH_UP_DEADLINE_SECS", default_value_t = DEFAULT_CATCH_UP_DEADLINE.as_secs())]
    pub catch_up_deadline_secs: u64,
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
        catch_up_deadline: Duration::from_secs(args.catch_up_deadline_secs),
    };
    let report = run_ingest(options, lake, metrics, None, crate::shutdown_signal()).await?;
    println!(
        "stored {} events, {} dead letters in {} commits",
        report.stored, report.dead_letters, report.commits
    );
    Ok(())
}
