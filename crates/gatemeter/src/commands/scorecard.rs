//! `gatemeter scorecard`: the 12-KPI scorecard of a window.

use chrono::{DateTime, Utc};
use clap::Args;
use gatemeter_query::scorecard::{parse_duration, scorecard, targets_with};
use gatemeter_query::{KpiSettings, QueryEngine};

use crate::commands::kpis::{query_config, TableFormat};
use crate::error::CliError;
use crate::settings::Settings;

#[derive(Debug, Clone, Args)]
pub struct ScorecardArgs {
    /// Window length: a number and m, h or d (e.g. 30m, 24h, 7d).
    #[arg(long, env = "GATEMETER_SCORECARD_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub window: i64,
    /// End of the window, RFC 3339 [default: now].
    #[arg(long, env = "GATEMETER_SCORECARD_AT")]
    pub at: Option<DateTime<Utc>>,
    #[arg(long, env = "GATEMETER_SCORECARD_FORMAT", value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

pub async fn run(settings: &Settings, args: &ScorecardArgs) -> Result<(), CliError> {
    let engine = QueryEngine::open(query_config(settings)).await?;
    let targets = targets_with(&settings.scorecard_targets)?;
    let end = args.at.unwrap_or_else(Utc::now).timestamp_micros();
    let lines = scorecard(
        &engine,
        end,
        args.window,
        &KpiSettings::from(settings),
        &targets,
        &gatemeter_query::TeamScope::all(),
    )
    .await?;
    match args.format {
        TableFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&lines).unwrap_or_default()
        ),
        TableFormat::Csv => {
            println!("kpi,direction,target,value,baseline,status");
            for l in &lines {
                let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
                println!(
                    "{},{:?},{},{},{},{:?}",
                    l.kpi,
                    l.direction,
                    l.target,
                    opt(l.value),
                    opt(l.baseline),
                    l.status
                );
            }
        }
        TableFormat::Table => {
            println!(
                "{:<26} {:>10} {:>14} {:>14}  status",
                "kpi", "target", "value", "baseline"
            );
            for l in &lines {
                let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
                println!(
                    "{:<26} {:>10} {:>14} {:>14}  {}",
                    l.kpi,
                    l.target,
                    opt(l.value),
                    opt(l.baseline),
                    format!("{:?}", l.status).to_lowercase()
                );
            }
        }
    }
    Ok(())
}
