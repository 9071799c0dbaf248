//! The audit log (docs/security.md, "Audit log"): one JSON line per HTTP
//! request and per PostgreSQL login and statement — who (token id, role,
//! team scope), what (endpoint, SQL text and its SHA-256), how much (rows,
//! bytes, duration) and how it ended (status). The file rotates by size and
//! keeps a fixed number of old files.
//!
//! Lines are written and flushed as each request ends, under a lock: a line
//! is a few hundred bytes, small next to the query it records, and nothing
//! is held in memory that a crash could lose.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::access::Principal;

/// The most SQL text a line keeps; the hash always covers all of it.
pub const MAX_SQL_CHARS: usize = 16 * 1024;

/// Where the log goes and when it rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// The file is rotated before a line would take it past this size.
    pub max_bytes: u64,
    /// How many rotated files (`audit.log.1` … `audit.log.N`) are kept.
    pub keep: usize,
}

impl AuditConfig {
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_KEEP: usize = 5;
}

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    #[serde(serialize_with = "rfc3339")]
    pub time: DateTime<Utc>,
    /// `http` or `postgres`.
    pub protocol: &'static str,
    /// `GET /api/v1/kpis?…`, or on PostgreSQL `login`, `query` (simple
    /// protocol) or `execute` (extended protocol).
    pub endpoint: String,
    pub peer: Option<String>,
    /// The token's id (`open` without tokens); on a refused login the user
    /// name the client gave; `null` when no valid token was sent.
    pub token_id: Option<String>,
    pub role: Option<&'static str>,
    /// The teams the caller may read; `null`: every team.
    pub teams: Option<Vec<String>>,
    pub sql_sha256: Option<String>,
    pub sql: Option<String>,
    /// Whether `sql` was cut at [`MAX_SQL_CHARS`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sql_truncated: bool,
    pub rows: Option<u64>,
    /// Bytes of the answer (HTTP body; PostgreSQL row data).
    pub bytes: u64,
    pub duration_ms: f64,
    /// The HTTP status code, or `ok` / the SQLSTATE on PostgreSQL.
    pub status: String,
}

fn rfc3339<S: serde::Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl AuditRecord {
    /// A record of a request that began at `time`, with nothing known yet.
    pub fn new(time: DateTime<Utc>, protocol: &'static str, endpoint: String) -> AuditRecord {
        AuditRecord {
            time,
            protocol,
            endpoint,
            peer: None,
            token_id: None,
            role: None,
            teams: None,
            sql_sha256: None,
            sql: None,
            sql_truncated: false,
            rows: None,
            bytes: 0,
            duration_ms: 0.0,
            status: String::new(),
        }
    }

    pub fn set_principal(&mut self, principal: &Principal) {
        self.token_id = Some(principal.token_id.clone());
        self.role = Some(principal.role.as_str());
        self.teams = principal
            .teams
            .teams()
            .map(|teams| teams.iter().cloned().collect());
    }

    pub fn set_sql(&mut self, sql: &str) {
        self.sql_sha256 = Some(hex(&Sha256::digest(sql.as_bytes())));
        self.sql_truncated = sql.chars().nth(MAX_SQL_CHARS).is_some();
        self.sql = Some(sql.chars().take(MAX_SQL_CHARS).collect());
    }

    pub fn set_duration(&mut self, elapsed: Duration) {
        // Microsecond precision is plenty and keeps lines short.
        self.duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The log file, rotated by size.
struct RotatingFile {
    config: AuditConfig,
    file: Option<File>,
    written: u64,
}

impl RotatingFile {
    fn open_current(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let file = open_private(&self.config.path)?;
            self.written = file.metadata()?.len();
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => Ok(file),
            None => Err(std::io::Error::other("the audit log is not open")),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.open_current()?;
        if self.written > 0 && self.written + line.len() as u64 > self.config.max_bytes {
            self.rotate()?;
        }
        let file = self.open_current()?;
        file.write_all(line)?;
        file.flush()?;
        self.written += line.len() as u64;
        Ok(())
    }

    /// `audit.log` → `audit.log.1` → … → `audit.log.<keep>`, the oldest
    /// dropped.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let path = &self.config.path;
        let numbered = |n: usize| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.config.keep == 0 {
            return remove_if_present(path);
        }
        remove_if_present(&numbered(self.config.keep))?;
        for n in (1..self.config.keep).rev() {
            rename_if_present(&numbered(n), &numbered(n + 1))?;
        }
        rename_if_present(path, &numbered(1))
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens `path` for appending, readable by its owner only: the log holds
/// the SQL text callers sent.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The audit log, or none (every record is dropped).
pub struct AuditLog {
    file: Option<Mutex<RotatingFile>>,
    failures: AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.file.is_some())
            .finish()
    }
}

impl AuditLog {
    pub fn disabled() -> AuditLog {
        AuditLog {
            file: None,
            failures: AtomicU64::new(0),
        }
    }

    /// Opens (creating it and its folder) the log at `config.path`, so a
    /// path that cannot be written fails at start, not at the first request.
    pub fn open(config: AuditConfig) -> std::io::Result<AuditLog> {
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = RotatingFile {
            config,
            file: None,
            written: 0,
        };
        file.open_current()?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
            failures: AtomicU64::new(0),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Appends `record` as one line. A failed write is logged (the first,
    /// then every 1,024th) and never fails the request it records.
    pub fn record(&self, record: &AuditRecord) {
        let Some(file) = &self.file else {
            return;
        };
        let outcome = serde_json::to_vec(record)
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                line.push(b'\n');
                file.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_line(&line)
            });
        if let Err(error) = outcome {
            let failures = self.failures.fetch_add(1, Ordering::Relaxed);
            if failures.is_multiple_of(1024) {
                tracing::warn!(%error, failures = failures + 1, "audit: cannot write the audit log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use crate::TeamScope;

    fn record(endpoint: &str) -> AuditRecord {
        let mut record = AuditRecord::new(Utc::now(), "http", endpoint.to_owned());
        record.status = "200".into();
        record
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn a_record_names_the_caller_and_hashes_the_whole_statement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit").join("audit.log");
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            max_bytes: AuditConfig::DEFAULT_MAX_BYTES,
            keep: 2,
        })
        .expect("open");
        let mut entry = record("POST /api/v1/sql");
        entry.set_principal(&Principal {
            token_id: "finance-search".into(),
            role: Role::Finance,
            teams: TeamScope::only(["search".to_owned(), "ads".to_owned()]),
        });
        let long_sql = format!("SELECT '{}'", "x".repeat(MAX_SQL_CHARS));
        entry.set_sql(&long_sql);
        entry.rows = Some(3);
        entry.set_duration(Duration::from_micros(12_345));
        log.record(&entry);
        log.record(&record("GET /metrics"));

        let written = lines(&path);
        assert_eq!(written.len(), 2);
        let first = &written[0];
        assert_eq!(first["token_id"], "finance-search");
        assert_eq!(first["role"], "finance");
        assert_eq!(first["teams"], serde_json::json!(["ads", "search"]));
        assert_eq!(first["rows"], 3);
        assert_eq!(first["duration_ms"], 12.345);
        assert_eq!(first["sql_truncated"], true);
        assert_eq!(
            first["sql"].as_str().map(|s| s.chars().count()),
            Some(MAX_SQL_CHARS)
        );
        assert_eq!(
            first["sql_sha256"],
            hex(&Sha256::digest(long_sql.as_bytes()))
        );
        assert!(written[1]["teams"].is_null() && written[1].get("sql_truncated").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_file_rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let line_bytes = serde_json::to_vec(&record("GET /x0")).expect("json").len() as u64 + 1;
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            // Three lines per file.
            max_bytes: 3 * line_bytes,
            keep: 2,
        })
        .expect("open");
        for n in 0..10 {
            log.record(&record(&format!("GET /x{n}")));
        }
        let endpoints = |path: &Path| -> Vec<String> {
            lines(path)
                .iter()
                .map(|line| line["endpoint"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(endpoints(&path), ["GET /x9"]);
        assert_eq!(
            endpoints(&dir.path().join("audit.log.1")),
            ["GET /x6", "GET /x7", "GET /x8"]
        );
        assert_eq!(
            endpoints(&dir.path().join("audit.log.2")),
            ["GET /x3", "GET /x4", "GET /x5"]
        );
        assert!(!dir.path().join("audit.log.3").exists());
    }

    #[test]
    fn an_unwritable_path_fails_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").expect("write");
        let opened = AuditLog::open(AuditConfig {
            path: blocker.join("audit.log"),
            max_bytes: 1024,
            keep: 1,
        });
        assert!(opened.is_err());
    }
}
