//! The `[audit]` config keys (docs/security.md, "Audit log"): on by
//! default, in `<state folder>/audit/audit.log`, rotated at 64 MiB with 5
//! old files kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gatemeter_query::audit::{AuditConfig, AuditLog};
use serde::Deserialize;

use crate::error::CliError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFileConfig {
    enabled: Option<bool>,
    file: Option<PathBuf>,
    max_mb: Option<u64>,
    keep: Option<usize>,
}

/// Resolved `[audit]` settings; the file is opened when serving starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub enabled: bool,
    /// `None`: `<state folder>/audit/audit.log`.
    pub file: Option<PathBuf>,
    pub max_bytes: u64,
    pub keep: usize,
}

impl AuditFileConfig {
    pub fn resolve(self, config: Option<&Path>) -> Result<AuditSettings, CliError> {
        let max_mb = self.max_mb.unwrap_or(AuditConfig::DEFAULT_MAX_BYTES >> 20);
        if max_mb == 0 || max_mb > 1 << 20 {
            return Err(CliError::Config {
                path: config.map(|p| p.display().to_string()).unwrap_or_default(),
                reason: format!("audit.max_mb = {max_mb}: expected 1 to {}", 1u64 << 20),
            });
        }
        Ok(AuditSettings {
            enabled: self.enabled.unwrap_or(true),
            file: self.file,
            max_bytes: max_mb << 20,
            keep: self.keep.unwrap_or(AuditConfig::DEFAULT_KEEP),
        })
    }
}

impl AuditSettings {
    /// The log, opened (and created) now so a path that cannot be written
    /// stops the start with its name.
    pub fn open(&self, state_dir: &Path) -> Result<Arc<AuditLog>, CliError> {
        if !self.enabled {
            return Ok(Arc::new(AuditLog::disabled()));
        }
        let path = self
            .file
            .clone()
            .unwrap_or_else(|| state_dir.join("audit").join("audit.log"));
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            max_bytes: self.max_bytes,
            keep: self.keep,
        })
        .map_err(|e| CliError::io(format!("audit log {}", path.display()), e))?;
        Ok(Arc::new(log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_is_on_by_default_and_sizes_are_checked() {
        let settings = AuditFileConfig::default().resolve(None).expect("defaults");
        assert!(settings.enabled);
        assert_eq!(settings.max_bytes, 64 << 20);
        let zero = AuditFileConfig {
            max_mb: Some(0),
            ..AuditFileConfig::default()
        };
        assert!(
            matches!(zero.resolve(None), Err(CliError::Config { reason, .. }) if reason.contains("audit.max_mb"))
        );
    }

    #[test]
    fn the_default_file_is_in_the_state_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = AuditFileConfig::default().resolve(None).expect("defaults");
        let log = settings.open(dir.path()).expect("open");
        assert!(log.is_enabled());
        assert!(dir.path().join("audit").join("audit.log").exists());
    }
}
