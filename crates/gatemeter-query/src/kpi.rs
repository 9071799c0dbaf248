//! What a KPI request is (docs/kpis.md): the dimensions, the KPIs and the
//! buckets it may name, the settings KPIs are measured against, and the
//! request itself with its checks. `statement` turns it into SQL; the
//! KPIs themselves are defined in queries/kpis/ (`definitions`).

pub mod definitions;
mod statement;

pub use definitions::KPI_NAMES;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::error::QueryError;

/// Columns a KPI can be grouped by (docs/kpis.md). Request-level
/// figures group by the request's value: attribution from its first
/// attempt, provider / served model / attempt kind / error class from its
/// final attempt.
pub const DIMENSIONS: &[&str] = &[
    "team",
    "api_key_id",
    "environment",
    "app",
    "org_id",
    "requested_model",
    "served_model",
    "provider",
    "key_type",
    "attempt_kind",
    "error_class",
];

/// Time buckets accepted by `--bucket` / `bucket=`.
/// Each bucket's SQL interval and length in minutes.
pub const BUCKETS: &[(&str, &str, u64)] = &[
    ("1m", "1 minute", 1),
    ("5m", "5 minutes", 5),
    ("15m", "15 minutes", 15),
    ("1h", "1 hour", 60),
    ("6h", "6 hours", 360),
    ("1d", "1 day", 1440),
];

/// Targets and limits the KPIs are measured against (from config).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiSettings {
    /// Availability SLO target, e.g. 0.999.
    pub slo_target: f64,
    /// Tokens-per-minute limit of everything together: the limit of the
    /// ungrouped (and only-bucketed) rows.
    pub tpm_limit: Option<f64>,
    /// Tokens-per-minute limits per scope: dimension → value → limit, e.g.
    /// `provider` → `openai` → 800000. A grouped row takes the limit of the
    /// first group-by dimension that has a table here; a row without a
    /// limit of its own has a NULL `effective_throughput_pct`, since the
    /// global limit is not that scope's capacity.
    pub scoped_tpm_limits: BTreeMap<String, BTreeMap<String, f64>>,
    /// Providers allowed by policy; `compliance_score` is NULL without a list.
    pub allowed_providers: Option<Vec<String>>,
}

impl Default for KpiSettings {
    fn default() -> Self {
        KpiSettings {
            slo_target: 0.999,
            tpm_limit: None,
            scoped_tpm_limits: BTreeMap::new(),
            allowed_providers: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KpiQuery {
    pub group_by: Vec<String>,
    /// One of [`BUCKETS`].
    pub bucket: Option<String>,
    /// Length of the window in minutes, when it has both ends: the
    /// denominator of tokens per minute.
    pub window_minutes: Option<u64>,
    /// Only rows whose dimension has this value (`team=search`): requests
    /// by the request's value, attempts by their own.
    pub filters: Vec<(String, String)>,
    /// The teams whose rows the caller may read, enforced in the scan.
    pub scope: crate::TeamScope,
    /// Compute from raw rows only, with exact percentiles, never from the
    /// stored rollups (`--exact-percentiles`, `exact_percentiles=true`).
    pub exact_percentiles: bool,
    /// Only these of [`KPI_NAMES`] (`--kpis`, `kpis=`), besides the group
    /// columns; empty for all. What no chosen KPI needs is neither read
    /// nor merged: spend alone reads no request rows and no sketch.
    pub kpis: Vec<String>,
}

/// Where the KPI statement reads the rows of its window from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KpiSource {
    /// The `attempts` and `requests` views; percentiles exact.
    Raw,
    /// Those views for the hours not rolled up plus the stored rollups
    /// (`rollup_hourly_usage`, `rollup_hourly_requests`) for the rest;
    /// counts and money exact, percentiles from merged sketches (1%).
    RawAndRollups,
    /// The stored rollups alone, when no raw file is left in the window:
    /// the same figures as [`KpiSource::RawAndRollups`] (an empty raw
    /// part adds nothing), without planning the views over no rows.
    Rollups,
}

/// A SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl KpiQuery {
    /// `WHERE …` for the filters, or nothing.
    pub fn filter_clause(&self) -> String {
        if self.filters.is_empty() {
            return String::new();
        }
        let clauses: Vec<String> = self
            .filters
            .iter()
            .map(|(dimension, value)| format!("{dimension} = {}", quote_literal(value)))
            .collect();
        format!(" WHERE {}", clauses.join(" AND "))
    }

    pub fn validate(&self) -> Result<(), QueryError> {
        for dimension in self
            .group_by
            .iter()
            .chain(self.filters.iter().map(|(d, _)| d))
        {
            if !DIMENSIONS.contains(&dimension.as_str()) {
                return Err(QueryError::UnknownDimension(
                    dimension.clone(),
                    DIMENSIONS.join(", "),
                ));
            }
        }
        if let Some(bucket) = &self.bucket {
            if !BUCKETS.iter().any(|(name, _, _)| name == bucket) {
                return Err(QueryError::BadBucket(bucket.clone()));
            }
        }
        if let Some(unknown) = self
            .kpis
            .iter()
            .find(|kpi| !KPI_NAMES.contains(&kpi.as_str()))
        {
            return Err(QueryError::UnknownKpi(
                unknown.clone(),
                KPI_NAMES.join(", "),
            ));
        }
        Ok(())
    }

    /// Whether the output has the column `kpi`.
    pub fn wants(&self, kpi: &str) -> bool {
        self.kpis.is_empty() || self.kpis.iter().any(|chosen| chosen == kpi)
    }

    fn bucket_spec(&self) -> Option<&'static (&'static str, &'static str, u64)> {
        let bucket = self.bucket.as_deref()?;
        BUCKETS.iter().find(|(name, _, _)| *name == bucket)
    }

    fn bucket_interval(&self) -> Option<&'static str> {
        self.bucket_spec().map(|(_, interval, _)| *interval)
    }

    pub fn bucket_minutes(&self) -> Option<u64> {
        self.bucket_spec().map(|(_, _, minutes)| *minutes)
    }

    /// The TPM limit each output row is measured against, as a SQL
    /// expression over the joined key columns, or `None` when no row has one.
    fn tpm_limit_expr(
        &self,
        settings: &KpiSettings,
        key: &dyn Fn(&str) -> String,
    ) -> Option<String> {
        if self.group_by.is_empty() {
            return settings
                .tpm_limit
                .filter(|limit| *limit > 0.0)
                .map(|limit| format!("{limit:?}"));
        }
        let (dimension, limits) = self.group_by.iter().find_map(|d| {
            settings
                .scoped_tpm_limits
                .get(d)
                .filter(|l| !l.is_empty())
                .map(|limits| (d, limits))
        })?;
        let mut case = format!("CASE {}", key(dimension));
        for (value, limit) in limits {
            let _ = write!(case, " WHEN {} THEN {limit:?}", quote_literal(value));
        }
        case.push_str(" END");
        Some(case)
    }

    /// The group columns (dimensions, then `bucket_start`).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = self.group_by.clone();
        if self.bucket.is_some() {
            keys.push("bucket_start".into());
        }
        keys
    }

    /// The group columns as a select list (each followed by `, `), the
    /// bucket computed from `time_column`.
    fn select_keys(&self, time_column: &str) -> String {
        let mut out = String::new();
        for dimension in &self.group_by {
            let _ = write!(out, "{dimension}, ");
        }
        if let Some(interval) = self.bucket_interval() {
            let _ = write!(
                out,
                "date_bin(INTERVAL '{interval}', {time_column}, {}) AS bucket_start, ",
                crate::engine::timestamp_literal(0)
            );
        }
        out
    }

    /// ` GROUP BY` the group columns, or nothing.
    fn group_by_clause(&self) -> String {
        let keys = self.keys();
        if keys.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", keys.join(", "))
        }
    }
}
