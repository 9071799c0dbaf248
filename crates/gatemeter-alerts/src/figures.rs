//! What the evaluator judges its alerts on: request counts of an SLO's
//! windows, spend of a budget's scope, and a threshold rule's KPI. The
//! [`Figures`] trait is the evaluator's only way to the lake, so its
//! conditions are tested with fixed figures; [`LakeFigures`] reads them
//! from the lake's raw rows and stored rollups.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use gatemeter_query::kpi::quote_literal;
use gatemeter_query::output::json_rows;
use gatemeter_query::stored_rollups::{stored_name, BY_MODEL_OMITS};
use gatemeter_query::{
    kpis, KpiQuery, KpiSettings, QueryEngine, RollupGrain, RollupReads, TeamScope, Window,
};
use serde_json::Value;

use crate::budget::Nanos;
use crate::config::{BudgetConfig, SloConfig, SloKind, ThresholdConfig};
use crate::error::AlertError;

/// The figures of one evaluation, read at `now`.
pub trait Figures: Send + Sync {
    /// Sees what was committed since the last evaluation.
    fn refresh(&self) -> impl Future<Output = Result<(), AlertError>> + Send;

    /// (valid, bad) requests of `slo` in `[now − window, now)`.
    fn slo_counts(
        &self,
        slo: &SloConfig,
        window: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(u64, u64), AlertError>> + Send;

    /// Spend of `budget`'s scope in `[from, to)`.
    fn spend(
        &self,
        budget: &BudgetConfig,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Nanos, AlertError>> + Send;

    /// `rule`'s KPI over its window ending at `now`; `None` when it has no
    /// value (no traffic, a zero denominator).
    fn kpi(
        &self,
        rule: &ThresholdConfig,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<f64>, AlertError>> + Send;
}

/// The figures as the lake holds them: raw rows for the recent edge,
/// stored rollups for settled days and hours (docs/lake.md, "Rollups").
pub struct LakeFigures {
    engine: Arc<QueryEngine>,
    kpi_settings: KpiSettings,
}

impl LakeFigures {
    pub fn new(engine: Arc<QueryEngine>, kpi_settings: KpiSettings) -> LakeFigures {
        LakeFigures {
            engine,
            kpi_settings,
        }
    }

    /// The first row of `sql` over `window`. Unless `reads` is raw only,
    /// the session also holds the stored rollups of the window's settled
    /// days and hours (`rollup_hourly_usage`, `rollup_hourly_requests`) and
    /// its raw views leave those hours out, so `sql` must add both up.
    async fn scalar_row(
        &self,
        window: Window,
        reads: RollupReads,
        sql: &str,
    ) -> Result<RecordBatch, AlertError> {
        let (ctx, _) = self
            .engine
            .rollup_session(window, &TeamScope::all(), reads)
            .await?;
        let batches = ctx
            .sql(sql)
            .await
            .map_err(gatemeter_query::QueryError::from)?
            .collect()
            .await
            .map_err(gatemeter_query::QueryError::from)?;
        batches
            .into_iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| AlertError::Config(format!("no row from `{sql}`")))
    }
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The column a scope key names: `model` is the requested model.
fn scope_column(key: &str) -> &str {
    if key == "model" {
        "requested_model"
    } else {
        key
    }
}

/// `WHERE` clauses of a scope.
fn scope_filter(scope: &BTreeMap<String, String>) -> Vec<String> {
    scope
        .iter()
        .map(|(key, value)| format!("{} = {}", scope_column(key), quote_literal(value)))
        .collect()
}

/// Whether a scope's rows are all in the rollups by model: it names none
/// of the columns they leave out.
fn by_model(scope: &BTreeMap<String, String>) -> bool {
    scope
        .keys()
        .all(|key| !BY_MODEL_OMITS.contains(&key.as_str()))
}

fn where_clause(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    }
}

impl Figures for LakeFigures {
    async fn refresh(&self) -> Result<(), AlertError> {
        self.engine.refresh().await?;
        Ok(())
    }

    async fn slo_counts(
        &self,
        slo: &SloConfig,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), AlertError> {
        let filter = where_clause(&scope_filter(&slo.scope));
        // An availability SLO's counts are in the stored rollups; a latency
        // SLO's threshold is the operator's, so its requests are read raw.
        let (sql, grain) = match (slo.kind, slo.latency_threshold_ms) {
            (SloKind::Latency, Some(ms)) => (
                format!(
                    "SELECT count(*) FILTER (WHERE valid) AS valid, count(*) FILTER (WHERE valid AND NOT (good AND e2e_latency_ms <= {ms:?})) AS bad FROM requests{filter}"
                ),
                RollupGrain::RawOnly,
            ),
            _ => (
                format!(
                    "SELECT CAST(sum(valid) AS BIGINT) AS valid, CAST(sum(bad) AS BIGINT) AS bad FROM (\
                     SELECT count(*) FILTER (WHERE valid) AS valid, count(*) FILTER (WHERE valid AND NOT good) AS bad FROM requests{filter} \
                     UNION ALL SELECT sum(valid_requests), sum(valid_requests - good_requests) FROM {stored}{filter})",
                    stored = stored_name("hourly_requests"),
                ),
                RollupGrain::Days,
            ),
        };
        let reads = RollupReads {
            grain,
            by_model: by_model(&slo.scope),
        };
        let window = Window {
            from: Some(micros(now - window)),
            to: Some(micros(now)),
        };
        let row = self.scalar_row(window, reads, &sql).await?;
        let count = |i: usize| row.column(i).as_primitive::<Int64Type>().value(0).max(0) as u64;
        Ok((count(0), count(1)))
    }

    async fn spend(
        &self,
        budget: &BudgetConfig,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Nanos, AlertError> {
        let mut clauses = scope_filter(&budget.scope);
        if !budget.include_byok {
            clauses.push("key_type <> 'byok'".to_owned());
        }
        let filter = where_clause(&clauses);
        let sql = format!(
            "SELECT CAST(sum(spend) AS DECIMAL(38, 9)) AS spend FROM (\
             SELECT CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend FROM attempts{filter} \
             UNION ALL SELECT CAST(sum(spend_usd) AS DECIMAL(38, 9)) FROM {stored}{filter})",
            stored = stored_name("hourly_usage"),
        );
        let window = Window {
            from: Some(micros(from)),
            to: Some(micros(to)),
        };
        let reads = RollupReads {
            grain: RollupGrain::Days,
            by_model: by_model(&budget.scope),
        };
        let row = self.scalar_row(window, reads, &sql).await?;
        let column = row.column(0).as_primitive::<Decimal128Type>();
        Ok(if column.is_null(0) {
            0
        } else {
            column.value(0)
        })
    }

    async fn kpi(
        &self,
        rule: &ThresholdConfig,
        now: DateTime<Utc>,
    ) -> Result<Option<f64>, AlertError> {
        let window = Window {
            from: Some(micros(now - Duration::minutes(rule.window_minutes as i64))),
            to: Some(micros(now)),
        };
        let query = KpiQuery {
            filters: rule
                .scope
                .iter()
                .map(|(key, value)| (scope_column(key).to_owned(), value.clone()))
                .collect(),
            ..KpiQuery::default()
        };
        let rows = json_rows(&kpis(&self.engine, window, &query, &self.kpi_settings).await?)?;
        Ok(rows.first().and_then(|row| match &row[rule.kpi.as_str()] {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }))
    }
}
