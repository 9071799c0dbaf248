//! Where the lake lives: a local folder (the default) or an object-store
//! URL (`s3://bucket/prefix`, `gs://…`, `az://…`), with the storage options
//! that `object_store` reads (credentials come from the usual environment
//! variables, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL` and so on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::LakeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeLocation {
    /// The lake's root, ending in `/`; the tables are folders under it.
    root: Url,
    storage_options: HashMap<String, String>,
}

/// A bucket's store and its URL (`s3://bucket/`).
pub type RemoteStore = (std::sync::Arc<dyn object_store::ObjectStore>, Url);

impl LakeLocation {
    /// A local folder, created if missing.
    pub fn local(dir: &Path) -> Result<LakeLocation, LakeError> {
        let data_dir_error = |reason: String| LakeError::DataDir {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| data_dir_error(e.to_string()))?;
        let absolute = dir
            .canonicalize()
            .map_err(|e| data_dir_error(e.to_string()))?;
        let root = Url::from_directory_path(&absolute)
            .map_err(|()| data_dir_error("not an absolute path".to_owned()))?;
        Ok(LakeLocation {
            root,
            storage_options: HashMap::new(),
        })
    }

    /// The root URL (ending in `/`) when `text` names an object store
    /// (`s3://…`); `None` for a local path or a `file://` URL.
    pub fn object_store_root(text: &str) -> Option<Url> {
        let mut root = Url::parse(text).ok()?;
        // One letter is a Windows drive (`C:\lake`), not a scheme.
        if root.scheme().len() <= 1 || root.scheme() == "file" {
            return None;
        }
        if !root.path().ends_with('/') {
            let path = format!("{}/", root.path());
            root.set_path(&path);
        }
        Some(root)
    }

    /// A local path or an object-store URL, as `--data-dir` takes it.
    pub fn parse(text: &str) -> Result<LakeLocation, LakeError> {
        if let Some(root) = LakeLocation::object_store_root(text) {
            return Ok(LakeLocation {
                root,
                storage_options: storage_options_from_env(),
            });
        }
        match Url::parse(text) {
            Ok(url) if url.scheme() == "file" => {
                let path = url.to_file_path().map_err(|()| LakeError::StoreUrl {
                    url: text.to_owned(),
                    reason: "not a local path".to_owned(),
                })?;
                LakeLocation::local(&path)
            }
            _ => LakeLocation::local(Path::new(text)),
        }
    }

    /// The URL of table `name`.
    pub fn table_url(&self, name: &str) -> Result<Url, LakeError> {
        self.root
            .join(&format!("{name}/"))
            .map_err(|e| LakeError::StoreUrl {
                url: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// The root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The folder on local disk, for a local lake.
    pub fn local_dir(&self) -> Option<PathBuf> {
        (self.root.scheme() == "file")
            .then(|| self.root.to_file_path().ok())
            .flatten()
    }

    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.storage_options
    }

    /// For a lake on object storage: the store of its bucket and the
    /// bucket's URL (`s3://bucket/`), for readers that read the data files
    /// themselves. `None` for a local lake.
    pub fn remote_store(&self) -> Result<Option<RemoteStore>, LakeError> {
        if self.local_dir().is_some() {
            return Ok(None);
        }
        let store_error = |reason: String| LakeError::StoreUrl {
            url: self.root.to_string(),
            reason,
        };
        let bucket = Url::parse(&format!(
            "{}://{}/",
            self.root.scheme(),
            self.root.host_str().unwrap_or_default()
        ))
        .map_err(|e| store_error(e.to_string()))?;
        match self.root.scheme() {
            "s3" | "s3a" => {
                let store = crate::storage::s3_store(&bucket, &self.storage_options)
                    .map_err(|e| store_error(e.to_string()))?;
                Ok(Some((store, bucket)))
            }
            other => Err(store_error(format!(
                "`{other}://` is not supported; use a local folder or s3://bucket/prefix"
            ))),
        }
    }
}

/// Options for S3-compatible stores that object_store does not take from
/// the environment by itself: plain HTTP to an endpoint given as `http://`
/// (a local MinIO or test server).
fn storage_options_from_env() -> HashMap<String, String> {
    let mut options = HashMap::new();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"));
    if endpoint.is_ok_and(|e| e.starts_with("http://")) {
        options.insert("allow_http".to_owned(), "true".to_owned());
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_folders_under_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = LakeLocation::parse(&dir.path().display().to_string()).expect("local");
        let attempts = location.table_url("attempts").expect("url");
        assert_eq!(attempts.scheme(), "file");
        assert!(attempts.path().ends_with("/attempts/"), "{attempts}");
        assert_eq!(
            location.local_dir().expect("local dir"),
            dir.path().canonicalize().expect("canonical")
        );
        let s3 = LakeLocation::parse("s3://bucket/lake").expect("s3");
        assert_eq!(
            s3.table_url("dead_letters").expect("url").as_str(),
            "s3://bucket/lake/dead_letters/"
        );
        assert_eq!(s3.local_dir(), None);
    }
}
