//! `gatemeter rules export`: Prometheus rules for the configured SLOs.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use gatemeter_alerts::rules_export::export;

use crate::error::CliError;
use crate::settings::Settings;

#[derive(Debug, Clone, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RulesCommand {
    /// Write Prometheus recording and alerting rules for the SLOs of the
    /// config's [[alerts.slo]] (valid for `promtool check rules`).
    Export {
        /// Write here instead of standard output.
        #[arg(long, short = 'o', env = "GATEMETER_RULES_OUTPUT")]
        output: Option<PathBuf>,
    },
}

pub fn run(settings: &Settings, args: &RulesArgs) -> Result<(), CliError> {
    match &args.command {
        RulesCommand::Export { output } => {
            let source = settings
                .config_path
                .as_ref()
                .map_or_else(|| "no config file".to_owned(), |p| p.display().to_string());
            let text = export(&settings.alerts.slo, &source);
            match output {
                Some(path) => {
                    std::fs::write(path, text).map_err(|e| CliError::io(path.display(), e))
                }
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
    }
}
