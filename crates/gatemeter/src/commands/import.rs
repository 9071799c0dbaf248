//! `gatemeter import FILE.jsonl…`: backfill without Kafka.

use std::path::PathBuf;

use clap::Args;
use gatemeter_ingest::{import_file, IngestMetrics};
use gatemeter_lake::Lake;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;
use crate::settings::{FlushOptions, Settings};

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// JSON-lines files of attempt events (one event or array per line).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub flush: FlushOptions,
}

pub async fn run(settings: &Settings, args: &ImportArgs) -> Result<(), CliError> {
    for file in &args.files {
        if !file.is_file() {
            return Err(CliError::Usage(format!(
                "import: {} is not a readable file",
                file.display()
            )));
        }
    }
    let (mut lake, _) = Lake::open(&settings.lake_location()?, crate::fail_point()?).await?;
    let metrics = IngestMetrics::register(&prometheus::Registry::new())?;
    let privacy = settings.privacy_policy()?;
    let (mut stored, mut dead, mut skipped) = (0, 0, 0);
    for file in &args.files {
        let size = std::fs::metadata(file)
            .map_err(|e| CliError::io(file.display(), e))?
            .len();
        let progress = ProgressBar::new(size);
        progress.set_style(
            ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.set_message(file.display().to_string());
        let report = import_file(
            &mut lake,
            file,
            settings.flush,
            &privacy,
            &metrics,
            |bytes| progress.set_position(bytes),
        )
        .await?;
        progress.finish_and_clear();
        stored += report.stored;
        dead += report.dead_letters;
        skipped += report.already_imported;
    }
    println!("stored {stored} events, {dead} dead letters, {skipped} already imported");
    Ok(())
}
