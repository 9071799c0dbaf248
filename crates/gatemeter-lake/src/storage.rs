//! S3-compatible object storage for the lake (`s3://bucket/prefix`), the
//! same code path as local disk: `deltalake-core` knows only `file://` and
//! `memory://` by itself, so the lake registers a store factory for `s3://`
//! (object_store's Amazon S3 client, configured from the usual `AWS_*`
//! environment variables) and Delta's default log store, which commits a
//! version with a conditional put (`If-None-Match: *`), as S3, MinIO and R2
//! support.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use deltalake_core::logstore::{
    default_logstore, logstore_factories, object_store_factories, LogStore, LogStoreFactory,
    ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake_core::{DeltaResult, DeltaTableError};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};
use url::Url;

use crate::error::LakeError;

/// How a request the store refuses or drops is tried again: from half a
/// second, doubling up to 15 s between tries, for up to 5 minutes, so a
/// store that is throttling or briefly away delays a flush, not fails it.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 30,
        retry_timeout: Duration::from_secs(300),
    }
}

/// The S3 client for `url` (any path in the bucket), from the environment
/// and then `options` (object_store's configuration keys).
pub fn s3_store(
    url: &Url,
    options: &HashMap<String, String>,
) -> Result<Arc<dyn object_store::ObjectStore>, object_store::Error> {
    let mut builder = AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_retry(retry_config());
    for (key, value) in options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()) {
            builder = builder.with_config(key, value);
        }
    }
    Ok(Arc::new(builder.build()?))
}

struct S3Stores;

impl ObjectStoreFactory for S3Stores {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let store = s3_store(url, &config.raw)?;
        let path = Path::from_url_path(url.path()).map_err(|e| DeltaTableError::GenericError {
            source: Box::new(e),
        })?;
        Ok((store, path))
    }
}

struct ConditionalPutLogs;

impl LogStoreFactory for ConditionalPutLogs {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Makes `s3://` URLs known to the Delta log; idempotent.
pub fn register_object_stores() -> Result<(), LakeError> {
    static REGISTERED: Once = Once::new();
    let scheme = Url::parse("s3://").map_err(|e| LakeError::StoreUrl {
        url: "s3://".to_owned(),
        reason: e.to_string(),
    })?;
    REGISTERED.call_once(|| {
        object_store_factories().insert(scheme.clone(), Arc::new(S3Stores));
        logstore_factories().insert(scheme, Arc::new(ConditionalPutLogs));
    });
    Ok(())
}
