//! The named queries of `queries/`: each file starts with a header —
//! `-- name:`, `-- kind: view|report`, `-- unit:`, one `-- param: NAME TYPE
//! DEFAULT` line per parameter — that is the documentation finance reads.
//! Parameters appear in the SQL as `{{name}}` and are substituted as typed
//! literals (never spliced as raw text).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::Serialize;

use crate::error::QueryError;
use crate::window::standard_timestamp_literal;

/// Every file of `queries/`, compiled in so the binary needs no data files.
pub const SOURCES: &[&str] = &[
    include_str!("../../../queries/attempts.sql"),
    include_str!("../../../queries/billing_anomalies.sql"),
    include_str!("../../../queries/byok_vs_platform_spend.sql"),
    include_str!("../../../queries/cold_starts.sql"),
    include_str!("../../../queries/cost_breakdown.sql"),
    include_str!("../../../queries/cost_per_successful_outcome_by_app.sql"),
    include_str!("../../../queries/hourly_requests.sql"),
    include_str!("../../../queries/hourly_usage.sql"),
    include_str!("../../../queries/latency_breakdown.sql"),
    include_str!("../../../queries/latency_vs_throttling.sql"),
    include_str!("../../../queries/model_usage_share.sql"),
    include_str!("../../../queries/policy_violations.sql"),
    include_str!("../../../queries/price_book_changes.sql"),
    include_str!("../../../queries/provider_uptime.sql"),
    include_str!("../../../queries/rate_limit_telemetry.sql"),
    include_str!("../../../queries/requests.sql"),
    include_str!("../../../queries/retry_policy_audit.sql"),
    include_str!("../../../queries/retry_storms.sql"),
    include_str!("../../../queries/retry_waste_by_provider.sql"),
    include_str!("../../../queries/spend_by_team_model_mtd.sql"),
    include_str!("../../../queries/throughput_ramp.sql"),
    include_str!("../../../queries/top_keys_by_spend.sql"),
    include_str!("../../../queries/unpriced_attempts.sql"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Timestamp,
    Integer,
    Text,
    /// `true` or `false`.
    Boolean,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// The default as written; `month_start` means the first instant of the
    /// current UTC month.
    pub default: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedQuery {
    pub name: String,
    pub kind: String,
    pub unit: String,
    pub params: Vec<Param>,
    /// The comment lines after the header: what the query answers.
    pub description: String,
    #[serde(skip)]
    pub sql: String,
}

fn parse(source: &str) -> Result<NamedQuery, QueryError> {
    let mut query = NamedQuery {
        name: String::new(),
        kind: String::new(),
        unit: String::new(),
        params: Vec::new(),
        description: String::new(),
        sql: String::new(),
    };
    let mut description = Vec::new();
    let mut body = Vec::new();
    for line in source.lines() {
        match line.strip_prefix("--").map(str::trim) {
            Some(comment) if body.is_empty() => {
                if let Some(value) = comment.strip_prefix("name:") {
                    query.name = value.trim().to_owned();
                } else if let Some(value) = comment.strip_prefix("kind:") {
                    query.kind = value.trim().to_owned();
                } else if let Some(value) = comment.strip_prefix("unit:") {
                    query.unit = value.trim().to_owned();
                } else if let Some(value) = comment.strip_prefix("param:") {
                    let parts: Vec<&str> = value.split_whitespace().collect();
                    let bad = || QueryError::QueryParam {
                        query: query.name.clone(),
                        reason: format!("header `param:{value}` must be NAME TYPE DEFAULT"),
                    };
                    let [name, kind, default] = parts[..] else {
                        return Err(bad());
                    };
                    let kind = match kind {
                        "timestamp" => ParamType::Timestamp,
                        "integer" => ParamType::Integer,
                        "text" => ParamType::Text,
                        "boolean" => ParamType::Boolean,
                        _ => return Err(bad()),
                    };
                    query.params.push(Param {
                        name: name.to_owned(),
                        kind,
                        default: default.to_owned(),
                    });
                } else if !comment.starts_with("params:") {
                    description.push(comment.to_owned());
                }
            }
            _ => body.push(line),
        }
    }
    query.description = description.join(" ");
    query.sql = body.join("\n");
    if query.name.is_empty() {
        return Err(QueryError::QueryParam {
            query: "?".into(),
            reason: "a file in queries/ has no `-- name:` header".into(),
        });
    }
    Ok(query)
}

/// Every named query (views and reports), by name.
pub fn catalog() -> Result<BTreeMap<String, NamedQuery>, QueryError> {
    SOURCES
        .iter()
        .map(|s| parse(s).map(|q| (q.name.clone(), q)))
        .collect()
}

fn literal(
    query: &str,
    param: &Param,
    value: &str,
    now: DateTime<Utc>,
) -> Result<String, QueryError> {
    let bad = |reason: String| QueryError::QueryParam {
        query: query.to_owned(),
        reason,
    };
    match param.kind {
        ParamType::Timestamp => {
            let at = if value == "month_start" {
                Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
                    .single()
                    .unwrap_or(now)
            } else {
                DateTime::parse_from_rfc3339(value)
                    .map_err(|e| {
                        bad(format!(
                            "parameter `{}`: `{value}` is not an RFC 3339 time ({e})",
                            param.name
                        ))
                    })?
                    .with_timezone(&Utc)
            };
            // A standard timestamp literal is read at nanosecond precision.
            if at.timestamp_nanos_opt().is_none() {
                return Err(bad(format!(
                    "parameter `{}`: `{value}` is outside the times a SQL literal holds (1677-09-22 to 2262-04-11)",
                    param.name
                )));
            }
            Ok(standard_timestamp_literal(at.timestamp_micros()))
        }
        ParamType::Integer => value.parse::<u64>().map(|n| n.to_string()).map_err(|_| {
            bad(format!(
                "parameter `{}`: `{value}` is not a whole number",
                param.name
            ))
        }),
        ParamType::Text => Ok(format!("'{}'", value.replace('\'', "''"))),
        ParamType::Boolean => match value {
            "true" | "false" => Ok(value.to_owned()),
            _ => Err(bad(format!(
                "parameter `{}`: `{value}` is not true or false",
                param.name
            ))),
        },
    }
}

/// The SQL of `name` with its parameters bound (`given` overrides defaults).
pub fn bind(
    name: &str,
    given: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<String, QueryError> {
    let catalog = catalog()?;
    let query = catalog
        .get(name)
        .ok_or_else(|| QueryError::UnknownQuery(name.to_owned()))?;
    for key in given.keys() {
        if !query.params.iter().any(|p| &p.name == key) {
            let known: Vec<&str> = query.params.iter().map(|p| p.name.as_str()).collect();
            return Err(QueryError::QueryParam {
                query: name.to_owned(),
                reason: format!(
                    "unknown parameter `{key}` (known: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
    }
    let mut sql = query.sql.clone();
    for param in &query.params {
        let value = given.get(&param.name).unwrap_or(&param.default);
        sql = sql.replace(
            &format!("{{{{{}}}}}", param.name),
            &literal(name, param, value, now)?,
        );
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_queries_is_compiled_in_with_a_header() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../queries");
        let on_disk = std::fs::read_dir(dir)
            .expect("queries/")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
            .count();
        let catalog = catalog().expect("headers parse");
        assert_eq!(catalog.len(), on_disk);
        for query in catalog.values() {
            assert!(
                !query.unit.is_empty() && !query.kind.is_empty() && !query.description.is_empty(),
                "{}",
                query.name
            );
        }
    }

    #[test]
    fn parameters_are_typed_literals() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 22, 5, 0, 0)
            .single()
            .expect("time");
        let sql = bind("spend_by_team_model_mtd", &BTreeMap::new(), now).expect("binds");
        // Standard SQL, as PostgreSQL and DuckDB read it, never a cast only
        // DataFusion knows.
        assert!(
            sql.contains("TIMESTAMP WITH TIME ZONE '2026-11-01 00:00:00.000000+00:00'"),
            "{sql}"
        );
        assert!(!sql.contains("arrow_cast"), "{sql}");
        let far = BTreeMap::from([("to".to_owned(), "2300-01-01T00:00:00Z".to_owned())]);
        assert!(bind("retry_storms", &far, now)
            .expect_err("past 2262")
            .to_string()
            .contains("parameter `to`: `2300-01-01T00:00:00Z` is outside"));
        let given = BTreeMap::from([("limit".to_owned(), "3; DROP TABLE x".to_owned())]);
        let err = bind("top_keys_by_spend", &given, now).expect_err("not a number");
        assert!(err.to_string().contains("limit"));
        let given = BTreeMap::from([("nope".to_owned(), "1".to_owned())]);
        assert!(bind("top_keys_by_spend", &given, now)
            .expect_err("unknown")
            .to_string()
            .contains("unknown parameter `nope`"));
        let flag = |value: &str| {
            let given = BTreeMap::from([("require_zero_retention".to_owned(), value.to_owned())]);
            bind("policy_violations", &given, now)
        };
        assert!(flag("true").expect("a boolean").contains("true AND NOT"));
        assert!(flag("yes")
            .expect_err("not a boolean")
            .to_string()
            .contains("`yes` is not true or false"));
        assert!(matches!(
            bind("missing", &BTreeMap::new(), now),
            Err(QueryError::UnknownQuery(_))
        ));
    }
}
