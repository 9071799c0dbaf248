//! The privacy policy of ingest and import (docs/privacy.md): how
//! `user_id` and `tags` are stored, and the key of the keyed hashes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gatemeter_schema::{FieldHandling, PrivacyPolicy};
use serde::Deserialize;

use crate::error::CliError;

/// The environment variable holding the key (any text of 16 bytes or more).
pub const KEY_ENV: &str = "GATEMETER_PRIVACY_KEY";
/// The key file gatemeter creates in its state folder when none is given.
pub const KEY_FILE_NAME: &str = "privacy.key";
/// Shorter keys make guessing the hashed values too easy.
const MIN_KEY_BYTES: usize = 16;

/// The `[privacy]` config keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFileConfig {
    user_id: Option<String>,
    tags: Option<String>,
    key_file: Option<PathBuf>,
}

/// Resolved privacy settings; the key is read when ingest starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacySettings {
    pub user_id: FieldHandling,
    pub tags: FieldHandling,
    /// `None`: the `GATEMETER_PRIVACY_KEY` variable, else the state folder's
    /// key file (created on first use).
    pub key_file: Option<PathBuf>,
}

fn handling(
    config: Option<&Path>,
    key: &str,
    text: Option<String>,
    default: FieldHandling,
) -> Result<FieldHandling, CliError> {
    match text {
        None => Ok(default),
        Some(text) => FieldHandling::parse(&text).ok_or_else(|| CliError::Config {
            path: config.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: format!(
                "privacy.{key} = `{text}`: expected one of {}",
                FieldHandling::ALLOWED
            ),
        }),
    }
}

impl PrivacySettings {
    pub fn resolve(
        config: Option<&Path>,
        file: PrivacyFileConfig,
    ) -> Result<PrivacySettings, CliError> {
        Ok(PrivacySettings {
            user_id: handling(config, "user_id", file.user_id, FieldHandling::KeyedHash)?,
            tags: handling(config, "tags", file.tags, FieldHandling::Keep)?,
            key_file: file.key_file,
        })
    }

    /// The policy with its key: `key_file` if configured, else
    /// `GATEMETER_PRIVACY_KEY`, else `<state_dir>/privacy.key`, which is
    /// created with 32 random bytes if it does not exist. Every writer of
    /// one lake must use the same key, or the same user gets two hashes.
    pub fn policy(&self, state_dir: &Path) -> Result<Arc<PrivacyPolicy>, CliError> {
        let key = match (&self.key_file, std::env::var(KEY_ENV)) {
            (Some(path), _) => read_key(path)?,
            (None, Ok(text)) => checked_key(KEY_ENV, text.trim().as_bytes().to_vec())?,
            (None, Err(_)) => state_key(&state_dir.join(KEY_FILE_NAME))?,
        };
        Ok(Arc::new(PrivacyPolicy::new(key, self.user_id, self.tags)))
    }
}

fn checked_key(source: &str, key: Vec<u8>) -> Result<Vec<u8>, CliError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(CliError::Usage(format!(
            "privacy key from {source}: {} bytes, at least {MIN_KEY_BYTES} needed",
            key.len()
        )));
    }
    Ok(key)
}

fn read_key(path: &Path) -> Result<Vec<u8>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path.display(), e))?;
    checked_key(&path.display().to_string(), text.trim().as_bytes().to_vec())
}

/// Reads the state folder's key, creating it (readable by its owner only)
/// on first use.
fn state_key(path: &Path) -> Result<Vec<u8>, CliError> {
    if path.exists() {
        return read_key(path);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent.display(), e))?;
    }
    let text = crate::random::random_hex(32)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| CliError::io(path.display(), e))?;
            tracing::warn!(
                path = %path.display(),
                "created a privacy key; give every writer of this lake the same key ({KEY_ENV} or [privacy] key_file)"
            );
            Ok(text.into_bytes())
        }
        // Another writer created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(path),
        Err(e) => Err(CliError::io(path.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state").join(KEY_FILE_NAME);
        let first = state_key(&path).expect("created");
        assert_eq!(first.len(), 64);
        assert_eq!(state_key(&path).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
        }
    }

    #[test]
    fn short_keys_and_unknown_handlings_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = dir.path().join("short.key");
        std::fs::write(&short, "abc").expect("write");
        let error = read_key(&short).expect_err("3 bytes").to_string();
        assert!(error.contains("at least 16"), "{error}");
        let error = PrivacySettings::resolve(
            Some(Path::new("g.toml")),
            PrivacyFileConfig {
                user_id: Some("hash".into()),
                ..PrivacyFileConfig::default()
            },
        )
        .expect_err("unknown")
        .to_string();
        assert!(
            error.contains("privacy.user_id") && error.contains("keyed-hash"),
            "{error}"
        );
    }
}
