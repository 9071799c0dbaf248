//! `gatemeter compact`: merges each settled hour partition's files into one
//! deduplicated file (one Delta commit per partition), writes a checkpoint
//! of the log, then vacuums: deletes files no version within the retention
//! names (replaced by compaction, or left by a flush that never committed).
//! Between compaction and the checkpoint it stores the hourly rollups of
//! the hours it rewrote and of settled hours without one
//! ([`crate::commands::rollups`]).

use chrono::Utc;
use clap::Args;
use gatemeter_lake::{CompactionPlan, CompactionSummary, Lake, LakeError};
use gatemeter_query::scorecard::parse_duration;
use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::rollups::write_rollups;
use crate::error::CliError;
use crate::settings::Settings;

/// How often a partition is planned again after another writer committed
/// first (each try re-reads the log, so it includes what that writer added).
const ATTEMPTS_PER_PARTITION: usize = 3;

#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Compact an hour partition only once its hour ended this long ago
    /// (m, h or d); events arriving later are folded in by the next run.
    #[arg(long, env = "GATEMETER_COMPACT_SETTLED_AFTER", default_value = "1h", value_parser = parse_duration)]
    pub settled_after: i64,
    /// Keep files the table no longer names this long (m, h or d) before
    /// vacuum deletes them: replaced files, so queries and outside readers
    /// that listed them can finish, and files of flushes not yet committed,
    /// so a running writer never loses one.
    #[arg(long, alias = "keep-replaced", env = "GATEMETER_COMPACT_RETENTION", default_value = "1d", value_parser = parse_retention)]
    pub retention: i64,
    /// Print what would be compacted and change nothing.
    #[arg(long, env = "GATEMETER_COMPACT_DRY_RUN")]
    pub dry_run: bool,
}

/// A retention: a duration as everywhere, or zero (`0m`) to vacuum every
/// unreferenced file now, for a lake no writer is using.
fn parse_retention(text: &str) -> Result<i64, String> {
    match text.strip_suffix(['m', 'h', 'd']) {
        Some("0") => Ok(0),
        _ => parse_duration(text),
    }
}

#[derive(Debug, Default)]
struct Totals {
    partitions: usize,
    files_replaced: usize,
    rows_read: u64,
    rows_written: u64,
    bytes_before: u64,
    bytes_after: u64,
}

impl Totals {
    fn add(&mut self, summary: &CompactionSummary) {
        self.partitions += 1;
        self.files_replaced += summary.files_replaced;
        self.rows_read += summary.rows_read;
        self.rows_written += summary.rows_written;
        self.bytes_before += summary.bytes_before;
        self.bytes_after += summary.bytes_after;
    }
}

pub async fn run(settings: &Settings, args: &CompactArgs) -> Result<(), CliError> {
    let location = settings.lake_location()?;
    if Lake::open_existing(&location).await?.is_none() {
        println!(
            "nothing to compact: no lake in {}",
            settings.data_dir.display()
        );
        return Ok(());
    }
    let (mut lake, _) = Lake::open(&location, crate::fail_point()?).await?;
    let settled_before = Utc::now().timestamp_micros() - args.settled_after;
    let plans = lake.compaction_plans(settled_before);
    if args.dry_run {
        for plan in &plans {
            println!(
                "{}: {} files, {} rows, {} bytes",
                plan.partition.dir(),
                plan.files.len(),
                plan.rows(),
                plan.bytes()
            );
        }
        println!("{} partitions to compact", plans.len());
        return Ok(());
    }

    let progress = ProgressBar::new(plans.iter().map(CompactionPlan::rows).sum());
    progress.set_style(
        ProgressStyle::with_template("compacting {bar:40} {pos}/{len} rows {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut totals = Totals::default();
    for plan in &plans {
        progress.set_message(plan.partition.dir());
        if let Some(summary) = compact_partition(&mut lake, plan, settled_before).await? {
            totals.add(&summary);
        }
        progress.inc(plan.rows());
    }
    progress.finish_and_clear();
    let retention = chrono::Duration::microseconds(args.retention);
    let rollups = write_rollups(settings, settled_before, retention).await?;

    lake.checkpoint().await?;
    let vacuumed = lake.vacuum(retention).await?;
    println!(
        "compacted {} partitions: {} files → {}, {} rows → {} ({} duplicate copies dropped), {} → {} bytes; vacuum deleted {} files",
        totals.partitions,
        totals.files_replaced,
        totals.partitions,
        totals.rows_read,
        totals.rows_written,
        totals.rows_read - totals.rows_written,
        totals.bytes_before,
        totals.bytes_after,
        vacuumed.len()
    );
    let stored = &rollups.stored;
    println!(
        "rollups: {} hours, {} files, {} bytes ({} bytes an hour); {} days, {} files, {} bytes; by model {} files, {} bytes; in {:.1} s",
        stored.hours,
        stored.files,
        stored.bytes,
        stored.bytes.checked_div(stored.hours as u64).unwrap_or(0),
        stored.days,
        stored.day_files,
        stored.day_bytes,
        stored.by_model_files,
        stored.by_model_bytes,
        rollups.seconds
    );
    Ok(())
}

/// Compacts one partition, planning it again if another writer committed
/// first; `None` when it no longer needs compaction or stayed contended.
async fn compact_partition(
    lake: &mut Lake,
    plan: &CompactionPlan,
    settled_before: i64,
) -> Result<Option<CompactionSummary>, CliError> {
    let mut plan = plan.clone();
    for _ in 0..ATTEMPTS_PER_PARTITION {
        match lake.compact(&plan).await {
            Ok(summary) => return Ok(Some(summary)),
            Err(LakeError::LostCommitRace { .. }) => {
                // The lake reloaded: plan this partition from what it holds now.
                let Some(again) = lake
                    .compaction_plans(settled_before)
                    .into_iter()
                    .find(|p| p.partition == plan.partition)
                else {
                    return Ok(None);
                };
                plan = again;
            }
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!(
        "{}: other writers kept committing; left for the next run",
        plan.partition.dir()
    );
    Ok(None)
}
