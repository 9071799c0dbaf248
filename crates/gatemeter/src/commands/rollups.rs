//! The rollup step of `gatemeter compact` (docs/lake.md, "Rollups"): the
//! hourly rollups of every settled hour whose stored ones no longer hold
//! (none yet, a late event or compaction changed its raw files, or the
//! views or price book changed) are computed and stored, then the daily
//! ones of every settled day, with a progress bar over the hours and days.

use std::time::Instant;

use gatemeter_query::stored_rollups::{store_rollups, RollupProgress, SLICE_ROWS};
use gatemeter_query::QueryEngine;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;
use crate::settings::Settings;

/// What the rollup step did.
#[derive(Debug, Default)]
pub struct RollupTotals {
    pub stored: gatemeter_query::stored_rollups::RollupTotals,
    pub seconds: f64,
}

/// Stores the rollups of the hours before `settled_before` (µs) that are
/// due.
pub async fn write_rollups(
    settings: &Settings,
    settled_before: i64,
    retention: chrono::Duration,
) -> Result<RollupTotals, CliError> {
    let started = Instant::now();
    let engine = QueryEngine::open(crate::commands::kpis::query_config(settings)).await?;
    let location = settings.lake_location()?;
    let mut bar: Option<ProgressBar> = None;
    let mut show = |step: RollupProgress<'_>| match step {
        RollupProgress::Started {
            table,
            due,
            periods,
        } => {
            let progress = ProgressBar::new(due as u64);
            progress.set_style(
                ProgressStyle::with_template(&format!(
                    "rollup {{msg}} {{bar:40}} {{pos}}/{{len}} {periods}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            progress.set_message(table.to_owned());
            bar = Some(progress);
        }
        RollupProgress::Stored => {
            if let Some(progress) = &bar {
                progress.inc(1);
            }
        }
        RollupProgress::Finished => {
            if let Some(progress) = bar.take() {
                progress.finish_and_clear();
            }
        }
    };
    let totals = store_rollups(
        &engine,
        &location,
        (settled_before, SLICE_ROWS),
        retention,
        &mut show,
    )
    .await?;
    Ok(RollupTotals {
        stored: totals,
        seconds: started.elapsed().as_secs_f64(),
    })
}
