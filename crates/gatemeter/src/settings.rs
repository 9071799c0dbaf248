//! Resolved settings: command line and `GATEMETER_*` environment first, then
//! the TOML config file, then defaults. Library crates get plain structs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gatemeter_ingest::{FlushPolicy, KafkaSource};
use gatemeter_lake::LakeLocation;
use gatemeter_query::KpiSettings;
use serde::Deserialize;

use crate::error::CliError;

pub const DEFAULT_DATA_DIR: &str = "./gatemeter-data";
pub const DEFAULT_TOPIC: &str = "gateway.attempts";
pub const DEFAULT_GROUP: &str = "gatemeter-ingest";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// Beside, not on, a local PostgreSQL's 5432.
pub const DEFAULT_DEMO_PG_LISTEN: &str = "127.0.0.1:5433";

/// Options every command shares (README.md, "Command line").
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOptions {
    /// TOML config file (see config/gatemeter.toml).
    #[arg(long, env = "GATEMETER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Lake folder [default: ./gatemeter-data].
    #[arg(long, env = "GATEMETER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Price book CSV (provider, model, effective_from, prices per 1M tokens).
    #[arg(long, env = "GATEMETER_PRICES", global = true)]
    pub prices: Option<PathBuf>,
    /// Kafka bootstrap servers, HOST:PORT,…
    #[arg(long, env = "GATEMETER_KAFKA_BROKERS", global = true)]
    pub brokers: Option<String>,
    /// Kafka topic of attempt events [default: gateway.attempts].
    #[arg(long, env = "GATEMETER_KAFKA_TOPIC", global = true)]
    pub topic: Option<String>,
    /// Kafka consumer group [default: gatemeter-ingest].
    #[arg(long, env = "GATEMETER_KAFKA_GROUP", global = true)]
    pub group: Option<String>,
    /// This ingester's static member id in the consumer group: a restarted
    /// ingester with the same id takes its partitions back at once; empty
    /// for a dynamic member [default: the host name and a hash of
    /// --data-dir].
    #[arg(long, env = "GATEMETER_INSTANCE_ID", global = true)]
    pub instance_id: Option<String>,
    /// librdkafka property, repeatable: -X security.protocol=ssl
    #[arg(
        short = 'X',
        value_name = "KEY=VALUE",
        env = "GATEMETER_KAFKA_OPTIONS",
        value_delimiter = ',',
        global = true
    )]
    pub kafka_options: Vec<String>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "GATEMETER_HTTP_LISTEN", global = true)]
    pub http_listen: Option<String>,
    /// PostgreSQL wire-protocol listen address for psql, Grafana and finance
    /// tools [default: off for serve, 127.0.0.1:5433 for the demo].
    #[arg(long, env = "GATEMETER_PG_LISTEN", global = true)]
    pub pg_listen: Option<String>,
    /// PEM certificate chain: HTTP and PostgreSQL then take only TLS
    /// connections (with --tls-key).
    #[arg(long, env = "GATEMETER_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "GATEMETER_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub query: QueryLimitOptions,
    #[command(flatten)]
    pub kpis: KpiOptions,
}

/// What KPIs are measured against (docs/kpis.md); the `[kpis]` config keys.
#[derive(Debug, Clone, Default, Args)]
pub struct KpiOptions {
    /// Availability SLO target behind the error-budget KPIs [default: 0.999].
    #[arg(long, env = "GATEMETER_SLO_TARGET", global = true)]
    pub slo_target: Option<f64>,
    /// Tokens-per-minute limit of ungrouped rows, for effective_throughput_pct.
    #[arg(long, env = "GATEMETER_TPM_LIMIT", global = true)]
    pub tpm_limit: Option<f64>,
    /// Providers allowed by policy, for compliance_score (comma-separated).
    #[arg(
        long,
        env = "GATEMETER_ALLOWED_PROVIDERS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_providers: Option<Vec<String>>,
}

/// Limits of queries from the network (docs/security.md).
#[derive(Debug, Clone, Default, Args)]
pub struct QueryLimitOptions {
    /// Stop a query after this many milliseconds [default: 30000].
    #[arg(long, env = "GATEMETER_QUERY_TIMEOUT_MS", global = true)]
    pub query_timeout_ms: Option<u64>,
    /// Refuse results of more rows than this [default: 100000].
    #[arg(long, env = "GATEMETER_QUERY_MAX_ROWS", global = true)]
    pub query_max_rows: Option<usize>,
    /// Refuse results larger than this many MiB [default: 64].
    #[arg(long, env = "GATEMETER_QUERY_MAX_RESULT_MB", global = true)]
    pub query_max_result_mb: Option<usize>,
    /// Memory one query may use, in MiB [default: 512].
    #[arg(long, env = "GATEMETER_QUERY_MEMORY_LIMIT_MB", global = true)]
    pub query_memory_limit_mb: Option<usize>,
    /// Memory all queries together may use, in MiB (HTTP and PostgreSQL
    /// alike) [default: the per-query limit times --query-threads].
    #[arg(long, env = "GATEMETER_QUERY_TOTAL_MEMORY_MB", global = true)]
    pub query_total_memory_mb: Option<usize>,
    /// Threads that run queries, apart from those answering HTTP [default: 2].
    #[arg(long, env = "GATEMETER_QUERY_THREADS", global = true)]
    pub query_threads: Option<usize>,
    /// Decoded lake columns `serve` keeps for the next queries, in MiB; 0
    /// keeps none [default: 256].
    #[arg(long, env = "GATEMETER_QUERY_COLUMN_CACHE_MB", global = true)]
    pub query_column_cache_mb: Option<usize>,
}

/// Resolved query limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuerySettings {
    pub limits: gatemeter_query::executor::QueryLimits,
    pub memory_limit_bytes: usize,
    /// What all the queries of `serve` may hold together.
    pub total_memory_bytes: usize,
    pub threads: usize,
    pub column_cache_bytes: usize,
}

/// Flush bounds of ingest and import.
#[derive(Debug, Clone, Default, Args)]
pub struct FlushOptions {
    /// Flush after this many buffered events [default: 100000].
    #[arg(long, env = "GATEMETER_FLUSH_ROWS")]
    pub flush_rows: Option<usize>,
    /// Flush after this many buffered payload bytes [default: 67108864].
    #[arg(long, env = "GATEMETER_FLUSH_BYTES")]
    pub flush_bytes: Option<usize>,
    /// Flush when the oldest buffered event is this old, in ms [default: 5000].
    #[arg(long, env = "GATEMETER_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    prices: Option<PathBuf>,
    #[serde(default)]
    kafka: KafkaFileConfig,
    #[serde(default)]
    ingest: IngestFileConfig,
    #[serde(default)]
    http: HttpFileConfig,
    #[serde(default)]
    pg: PgFileConfig,
    #[serde(default)]
    query: QueryFileConfig,
    #[serde(default)]
    kpis: KpisFileConfig,
    /// Scorecard targets by KPI name, overriding the seeds' defaults.
    #[serde(default)]
    scorecard: BTreeMap<String, f64>,
    #[serde(default)]
    alerts: gatemeter_alerts::config::AlertsConfig,
    #[serde(default)]
    privacy: crate::privacy::PrivacyFileConfig,
    #[serde(default)]
    auth: crate::auth_config::AuthFileConfig,
    #[serde(default)]
    tls: crate::tls::TlsFileConfig,
    #[serde(default)]
    audit: crate::audit_config::AuditFileConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpisFileConfig {
    slo_target: Option<f64>,
    tpm_limit: Option<f64>,
    /// `[kpis.tpm_limits.<dimension>]` tables: value = tokens per minute.
    #[serde(default)]
    tpm_limits: BTreeMap<String, BTreeMap<String, f64>>,
    allowed_providers: Option<Vec<String>>,
}

/// The SLO target, between 0 and 1 exclusive.
fn slo_target(given: Option<f64>) -> Result<f64, CliError> {
    match given {
        None => Ok(KpiSettings::default().slo_target),
        Some(target) if target > 0.0 && target < 1.0 => Ok(target),
        Some(target) => Err(CliError::Usage(format!(
            "slo_target {target}: must be between 0 and 1, e.g. 0.999 (--slo-target, GATEMETER_SLO_TARGET or [kpis])"
        ))),
    }
}

/// Checks `[kpis.tpm_limits]`: known dimensions, positive limits.
fn scoped_tpm_limits(
    path: Option<&Path>,
    limits: BTreeMap<String, BTreeMap<String, f64>>,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>, CliError> {
    let config_error = |reason: String| CliError::Config {
        path: path.map(|p| p.display().to_string()).unwrap_or_default(),
        reason,
    };
    for (dimension, values) in &limits {
        if !gatemeter_query::DIMENSIONS.contains(&dimension.as_str()) {
            return Err(config_error(format!(
                "kpis.tpm_limits.{dimension}: unknown dimension (one of {})",
                gatemeter_query::DIMENSIONS.join(", ")
            )));
        }
        if let Some((value, limit)) = values
            .iter()
            .find(|(_, limit)| !(**limit > 0.0 && limit.is_finite()))
        {
            return Err(config_error(format!(
                "kpis.tpm_limits.{dimension}.{value}: {limit} is not a positive tokens-per-minute limit"
            )));
        }
    }
    Ok(limits)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaFileConfig {
    brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    instance_id: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestFileConfig {
    flush_rows: Option<usize>,
    flush_bytes: Option<usize>,
    flush_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFileConfig {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PgFileConfig {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryFileConfig {
    timeout_ms: Option<u64>,
    max_rows: Option<usize>,
    max_result_mb: Option<usize>,
    memory_limit_mb: Option<usize>,
    total_memory_mb: Option<usize>,
    threads: Option<usize>,
    column_cache_mb: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub prices: Option<PathBuf>,
    pub brokers: Option<String>,
    pub topic: String,
    pub group: String,
    /// `group.instance.id` of this process's consumer (`None`: a dynamic
    /// member).
    pub instance_id: Option<String>,
    pub kafka_options: Vec<(String, String)>,
    pub http_listen: String,
    /// Where the PostgreSQL endpoint listens; `None`: not served (the demo
    /// then uses [`DEFAULT_DEMO_PG_LISTEN`]).
    pub pg_listen: Option<String>,
    pub query: QuerySettings,
    pub flush: FlushPolicy,
    pub kpi: KpiSettings,
    pub scorecard_targets: BTreeMap<String, f64>,
    pub alerts: gatemeter_alerts::config::AlertsConfig,
    pub privacy: crate::privacy::PrivacySettings,
    /// The API tokens; none: open (loopback only, unless --insecure-open).
    pub access: gatemeter_query::access::Access,
    /// The certificate HTTP and PostgreSQL serve; `None`: plain TCP.
    pub tls: Option<crate::tls::TlsSettings>,
    pub audit: crate::audit_config::AuditSettings,
    /// The config file the settings came from, for messages.
    pub config_path: Option<PathBuf>,
}

impl From<&Settings> for KpiSettings {
    fn from(settings: &Settings) -> Self {
        settings.kpi.clone()
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| CliError::Config {
        path: path.display().to_string(),
        reason: e.message().to_owned(),
    })
}

fn parse_kafka_option(text: &str) -> Result<(String, String), CliError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(CliError::Usage(format!("-X `{text}`: expected KEY=VALUE"))),
    }
}

impl Settings {
    /// Where the lake lives: `--data-dir` as a local folder or an
    /// `s3://bucket/prefix` URL (docs/lake.md, "Object storage").
    pub fn lake_location(&self) -> Result<LakeLocation, CliError> {
        Ok(LakeLocation::parse(&self.data_dir.to_string_lossy())?)
    }

    /// The folder gatemeter keeps its own state in (alert states):
    /// `--data-dir` for a local lake, `./gatemeter-state` beside a lake on
    /// object storage.
    pub fn state_dir(&self) -> Result<PathBuf, CliError> {
        Ok(self
            .lake_location()?
            .local_dir()
            .unwrap_or_else(|| PathBuf::from("./gatemeter-state")))
    }

    pub fn resolve(global: &GlobalOptions, flush: &FlushOptions) -> Result<Settings, CliError> {
        let file = match &global.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let mut kafka_options: Vec<(String, String)> = file.kafka.options.into_iter().collect();
        for option in &global.kafka_options {
            kafka_options.push(parse_kafka_option(option)?);
        }
        let data_dir = global
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let instance_id = crate::instance_id::resolve(
            global.instance_id.clone().or(file.kafka.instance_id),
            &data_dir,
        )?;
        let defaults = FlushPolicy::default();
        let flush_policy = FlushPolicy {
            max_rows: flush
                .flush_rows
                .or(file.ingest.flush_rows)
                .unwrap_or(defaults.max_rows)
                .max(1),
            max_bytes: flush
                .flush_bytes
                .or(file.ingest.flush_bytes)
                .unwrap_or(defaults.max_bytes)
                .max(1),
            max_age: flush
                .flush_interval_ms
                .or(file.ingest.flush_interval_ms)
                .map_or(defaults.max_age, Duration::from_millis),
        };
        let memory_limit_bytes = global
            .query
            .query_memory_limit_mb
            .or(file.query.memory_limit_mb)
            .unwrap_or(512)
            .max(16)
            << 20;
        let threads = global
            .query
            .query_threads
            .or(file.query.threads)
            .unwrap_or(2)
            .max(1);
        Ok(Settings {
            data_dir,
            prices: global.prices.clone().or(file.prices),
            brokers: global.brokers.clone().or(file.kafka.brokers),
            topic: global
                .topic
                .clone()
                .or(file.kafka.topic)
                .unwrap_or_else(|| DEFAULT_TOPIC.to_owned()),
            group: global
                .group
                .clone()
                .or(file.kafka.group)
                .unwrap_or_else(|| DEFAULT_GROUP.to_owned()),
            instance_id,
            kafka_options,
            http_listen: global
                .http_listen
                .clone()
                .or(file.http.listen)
                .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned()),
            pg_listen: global.pg_listen.clone().or(file.pg.listen),
            query: QuerySettings {
                limits: gatemeter_query::executor::QueryLimits {
                    timeout: Duration::from_millis(
                        global
                            .query
                            .query_timeout_ms
                            .or(file.query.timeout_ms)
                            .unwrap_or(30_000)
                            .max(1),
                    ),
                    max_rows: global
                        .query
                        .query_max_rows
                        .or(file.query.max_rows)
                        .unwrap_or(100_000)
                        .max(1),
                    max_result_bytes: global
                        .query
                        .query_max_result_mb
                        .or(file.query.max_result_mb)
                        .map_or(gatemeter_query::executor::DEFAULT_MAX_RESULT_BYTES, |mb| {
                            mb.max(1).saturating_mul(1 << 20)
                        }),
                },
                memory_limit_bytes,
                total_memory_bytes: global
                    .query
                    .query_total_memory_mb
                    .or(file.query.total_memory_mb)
                    .map_or(memory_limit_bytes.saturating_mul(threads), |mb| {
                        mb.saturating_mul(1 << 20)
                    })
                    .max(memory_limit_bytes),
                threads,
                column_cache_bytes: global
                    .query
                    .query_column_cache_mb
                    .or(file.query.column_cache_mb)
                    .unwrap_or(256)
                    .saturating_mul(1 << 20),
            },
            flush: flush_policy,
            kpi: KpiSettings {
                slo_target: slo_target(global.kpis.slo_target.or(file.kpis.slo_target))?,
                tpm_limit: global.kpis.tpm_limit.or(file.kpis.tpm_limit),
                scoped_tpm_limits: scoped_tpm_limits(
                    global.config.as_deref(),
                    file.kpis.tpm_limits,
                )?,
                allowed_providers: global
                    .kpis
                    .allowed_providers
                    .clone()
                    .or(file.kpis.allowed_providers),
            },
            scorecard_targets: file.scorecard,
            alerts: {
                file.alerts.validate().map_err(|e| CliError::Config {
                    path: global
                        .config
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    reason: e.to_string(),
                })?;
                file.alerts
            },
            privacy: crate::privacy::PrivacySettings::resolve(
                global.config.as_deref(),
                file.privacy,
            )?,
            access: file.auth.resolve(global.config.as_deref())?,
            tls: file
                .tls
                .resolve(global.tls_cert.clone(), global.tls_key.clone())?,
            audit: file.audit.resolve(global.config.as_deref())?,
            config_path: global.config.clone(),
        })
    }

    /// The privacy policy every writer applies, with its key.
    pub fn privacy_policy(&self) -> Result<Arc<gatemeter_schema::PrivacyPolicy>, CliError> {
        self.privacy.policy(&self.state_dir()?)
    }

    /// The Kafka source, or a clear error naming the missing flag.
    pub fn kafka_source(&self) -> Result<KafkaSource, CliError> {
        let brokers = self
            .brokers
            .clone()
            .filter(|b| !b.trim().is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                    "no Kafka brokers: pass --brokers HOST:PORT or set GATEMETER_KAFKA_BROKERS"
                        .into(),
                )
            })?;
        Ok(KafkaSource {
            brokers,
            topic: self.topic.clone(),
            group: self.group.clone(),
            instance_id: self.instance_id.clone(),
            options: self.kafka_options.clone(),
        })
    }
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
