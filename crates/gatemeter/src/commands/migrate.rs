//! `gatemeter migrate`: converts a lake written before the Delta Lake
//! format into Delta tables in place (docs/lake.md, "Migrating").

use clap::Args;
use gatemeter_lake::Lake;

use crate::error::CliError;
use crate::settings::Settings;

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {}

pub async fn run(settings: &Settings, _args: &MigrateArgs) -> Result<(), CliError> {
    let report = Lake::migrate_local(&settings.data_dir).await?;
    println!(
        "migrated {}: {} legacy commits → {} data files, {} dead-letter files and {} source partitions in one Delta commit per table; _gatemeter/commits may now be deleted",
        settings.data_dir.display(),
        report.legacy_commits,
        report.data_files,
        report.dead_letter_files,
        report.partitions
    );
    Ok(())
}
