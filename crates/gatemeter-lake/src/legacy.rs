//! The lake format before Delta Lake, read only by `gatemeter migrate`:
//! numbered commit records under `_gatemeter/commits/`, each listing the
//! files it added (and, from compaction, removed) and source offsets.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::LakeError;
use crate::location::LakeLocation;
use crate::manifest::{FileEntry, SourceOffsets};
use crate::paths::{ATTEMPTS_DIR, LEGACY_COMMITS_DIR};

#[derive(Debug, Clone, Deserialize)]
struct CommitRecord {
    sequence: u64,
    #[serde(default)]
    files: Vec<FileEntry>,
    #[serde(default)]
    dead_letter_files: Vec<FileEntry>,
    #[serde(default)]
    offsets: SourceOffsets,
    #[serde(default)]
    removed: Vec<String>,
}

/// The committed state of a legacy lake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyState {
    pub commits: u64,
    pub data_files: BTreeMap<String, FileEntry>,
    pub dead_letter_files: BTreeMap<String, FileEntry>,
    pub offsets: SourceOffsets,
}

/// Replays every legacy commit record under `data_dir`, in sequence order.
pub fn read_legacy(data_dir: &Path) -> Result<LegacyState, LakeError> {
    let dir = data_dir.join(LEGACY_COMMITS_DIR);
    let unreadable = |path: &Path, reason: String| LakeError::CorruptCommit {
        path: path.display().to_string(),
        reason,
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| unreadable(&dir, e.to_string()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut state = LegacyState::default();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|e| unreadable(&path, e.to_string()))?;
        let record: CommitRecord =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(&path, e.to_string()))?;
        if record.sequence != state.commits {
            return Err(unreadable(
                &path,
                format!(
                    "sequence {} where {} was expected",
                    record.sequence, state.commits
                ),
            ));
        }
        for file in record.files {
            state.data_files.insert(file.path.clone(), file);
        }
        for file in record.dead_letter_files {
            state.dead_letter_files.insert(file.path.clone(), file);
        }
        for path in record.removed {
            state.data_files.remove(&path);
        }
        for (topic, partitions) in record.offsets {
            state.offsets.entry(topic).or_default().extend(partitions);
        }
        state.commits += 1;
    }
    Ok(state)
}

/// A lake still in the format before Delta Lake is converted by `gatemeter
/// migrate`, never read as if it were empty.
pub(crate) fn refuse_legacy(location: &LakeLocation) -> Result<(), LakeError> {
    let Some(dir) = location.local_dir() else {
        return Ok(());
    };
    let legacy = dir.join(LEGACY_COMMITS_DIR).is_dir();
    let delta = dir
        .join(ATTEMPTS_DIR)
        .join(crate::paths::DELTA_LOG_DIR)
        .is_dir();
    if legacy && !delta {
        return Err(LakeError::LegacyFormat {
            path: dir.display().to_string(),
        });
    }
    Ok(())
}
