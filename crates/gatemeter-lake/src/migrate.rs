//! `gatemeter migrate`: a lake of the format before Delta Lake becomes two
//! Delta tables in place. The data files stay where they are; one commit
//! per table names the live ones with their statistics and every source
//! partition's next offset, so ingest resumes exactly where it stopped.

use chrono::Utc;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::{DeltaOperation, SaveMode};

use crate::actions::{add_action, commit_metadata, partition_values, txn_actions};
use crate::error::LakeError;
use crate::lake::Lake;
use crate::legacy::read_legacy;
use crate::location::LakeLocation;
use crate::manifest::FileEntry;
use crate::paths::{
    HourPartition, ATTEMPTS_DIR, DEAD_LETTERS_DIR, DELTA_LOG_DIR, LEGACY_COMMITS_DIR,
};
use crate::stats::bounds_stats;
use crate::table::Attempt;

/// What a migration converted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub legacy_commits: u64,
    pub data_files: usize,
    pub dead_letter_files: usize,
    pub partitions: usize,
}

fn add_for(file: &FileEntry, table_dir: &str) -> Result<Action, LakeError> {
    let in_table = file
        .path
        .strip_prefix(table_dir)
        .and_then(|p| p.strip_prefix('/'))
        .ok_or_else(|| LakeError::CorruptCommit {
            path: file.path.clone(),
            reason: format!("not a file of {table_dir}/"),
        })?;
    let mut partition = None;
    if table_dir == ATTEMPTS_DIR {
        let mut parts = in_table.split('/');
        let found = match (parts.next(), parts.next()) {
            (Some(date), Some(hour)) => date
                .strip_prefix("date=")
                .zip(hour.strip_prefix("hour="))
                .and_then(|(d, h)| HourPartition::from_values(d, h)),
            _ => None,
        }
        .ok_or_else(|| LakeError::CorruptCommit {
            path: file.path.clone(),
            reason: "no date=/hour= partition in its path".to_owned(),
        })?;
        partition = Some(found);
    }
    let stats = bounds_stats(file.rows, file.min_request_start, file.max_request_start);
    Ok(Action::Add(add_action(
        in_table,
        file.bytes as i64,
        partition_values(partition),
        stats,
    )))
}

impl Lake {
    /// Converts the legacy lake in `dir` in place. Refused when `dir` holds
    /// no legacy commit records or is a Delta lake already.
    pub async fn migrate_local(dir: &std::path::Path) -> Result<MigrateReport, LakeError> {
        if !dir.join(LEGACY_COMMITS_DIR).is_dir() {
            return Err(LakeError::DataDir {
                path: dir.display().to_string(),
                reason: "no legacy lake here (no _gatemeter/commits); nothing to migrate"
                    .to_owned(),
            });
        }
        if dir.join(ATTEMPTS_DIR).join(DELTA_LOG_DIR).is_dir() {
            return Err(LakeError::DataDir {
                path: dir.display().to_string(),
                reason: "already a Delta lake; nothing to migrate".to_owned(),
            });
        }
        let legacy = read_legacy(dir)?;
        let location = LakeLocation::local(dir)?;
        let (mut attempts, mut dead_letters) = Lake::create_tables(&location).await?;
        let operation = || DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: None,
            predicate: None,
        };
        let metadata = || commit_metadata(&format!("migrate {}", Utc::now().to_rfc3339()));
        for (table, files, dir_name) in [
            (&mut attempts, &legacy.data_files, ATTEMPTS_DIR),
            (
                &mut dead_letters,
                &legacy.dead_letter_files,
                DEAD_LETTERS_DIR,
            ),
        ] {
            let mut actions = files
                .values()
                .map(|file| add_for(file, dir_name))
                .collect::<Result<Vec<_>, _>>()?;
            actions.extend(txn_actions(&legacy.offsets));
            if let Attempt::Conflict = table.try_commit(actions, operation(), metadata()).await? {
                return Err(LakeError::LostCommitRace {
                    detail: format!("another writer wrote to {dir_name} during the migration"),
                });
            }
        }
        Ok(MigrateReport {
            legacy_commits: legacy.commits,
            data_files: legacy.data_files.len(),
            dead_letter_files: legacy.dead_letter_files.len(),
            partitions: legacy.offsets.values().map(|p| p.len()).sum(),
        })
    }
}
