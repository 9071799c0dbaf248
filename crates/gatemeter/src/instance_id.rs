//! The consumer's static member id in the Kafka group
//! (`group.instance.id`, docs/operations.md "Scale out"): the same for
//! every run on one host over one lake, so a restarted ingester takes its
//! partitions back at once.

use std::path::Path;

use crate::error::CliError;

/// `explicit` (`--instance-id`, the config file's `kafka.instance_id`)
/// when given, checked; empty for a dynamic member; else the default of
/// this host and `data_dir`.
pub fn resolve(explicit: Option<String>, data_dir: &Path) -> Result<Option<String>, CliError> {
    match explicit {
        Some(id) if id.is_empty() => Ok(None),
        Some(id) => check_instance_id(id).map(Some),
        None => Ok(Some(default_instance_id(&host_name(), data_dir))),
    }
}

/// Kafka takes at most 249 letters, digits, `.`, `_` and `-` as a
/// `group.instance.id`.
const INSTANCE_ID_MAX: usize = 249;

fn instance_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// `id` when Kafka takes it as a `group.instance.id`.
fn check_instance_id(id: String) -> Result<String, CliError> {
    if id.len() > INSTANCE_ID_MAX || !id.chars().all(instance_id_char) {
        return Err(CliError::Usage(format!(
            "--instance-id `{id}`: use up to {INSTANCE_ID_MAX} letters, digits, '.', '_' or '-' (none for a dynamic member)"
        )));
    }
    Ok(id)
}

/// This machine's name, as the kernel has it (a pod's name on Kubernetes).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gatemeter".to_owned())
}

/// The same for every run on one host over one lake, so a restarted
/// ingester is the same static member; different for another host or
/// another lake. Two ingesters on one host over one lake need their own
/// `--instance-id` each (docs/operations.md, "Scale out").
fn default_instance_id(host: &str, data_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let location = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(location.to_string_lossy().as_bytes());
    let host: String = host
        .chars()
        .map(|c| if instance_id_char(c) { c } else { '-' })
        .take(INSTANCE_ID_MAX - 20)
        .collect();
    format!("{host}-{}", &hex::encode(digest)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_host_and_the_lake_an_explicit_id_is_checked_and_empty_is_dynamic() {
        let id = default_instance_id("node 7.example", Path::new("/no/such/lake"));
        assert!(id.starts_with("node-7.example-"), "{id}");
        assert_eq!(
            id,
            default_instance_id("node 7.example", Path::new("/no/such/lake"))
        );
        assert_ne!(
            id,
            default_instance_id("node 7.example", Path::new("/no/such/other"))
        );
        assert!(id.chars().all(instance_id_char));
        let lake = Path::new("/no/such/lake");
        assert_eq!(
            resolve(Some("ingest-0".into()), lake).expect("id"),
            Some("ingest-0".to_owned())
        );
        assert_eq!(resolve(Some(String::new()), lake).expect("dynamic"), None);
        assert!(resolve(None, lake).expect("default").is_some());
        let error = resolve(Some("in gest/0".into()), lake).expect_err("refused");
        assert!(
            error.to_string().contains("--instance-id `in gest/0`"),
            "{error}"
        );
    }
}
