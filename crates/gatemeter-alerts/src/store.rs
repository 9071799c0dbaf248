//! Alert records persisted between runs (`_gatemeter/alerts/state.json` in
//! the data folder), written to a temporary file and renamed over the old
//! one, so a crash leaves either the old or the new state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::AlertError;
use crate::state::AlertRecord;

pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    pub fn in_data_dir(data_dir: &Path) -> StateStore {
        StateStore {
            path: data_dir
                .join("_gatemeter")
                .join("alerts")
                .join("state.json"),
        }
    }

    fn error(&self, reason: impl ToString) -> AlertError {
        AlertError::State {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn load(&self) -> Result<BTreeMap<String, AlertRecord>, AlertError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.error(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(self.error(e)),
        }
    }

    pub fn save(&self, records: &BTreeMap<String, AlertRecord>) -> Result<(), AlertError> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.error(e))?;
        }
        let temporary = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(records).map_err(|e| self.error(e))?;
        std::fs::write(&temporary, bytes).map_err(|e| self.error(e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::in_data_dir(dir.path());
        assert!(store.load().expect("empty").is_empty());
        let mut records = BTreeMap::new();
        records.insert("slo:availability:page".to_owned(), AlertRecord::default());
        store.save(&records).expect("save");
        assert_eq!(
            StateStore::in_data_dir(dir.path()).load().expect("load"),
            records
        );
    }
}
