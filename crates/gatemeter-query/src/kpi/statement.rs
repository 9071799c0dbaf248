//! The KPI table of docs/kpis.md as one SQL statement over the `attempts`
//! and `requests` views: request-level figures grouped from `requests`,
//! attempt-level figures from `attempts`, joined on the group keys. Every
//! ratio is NULL (never NaN) when its denominator is zero.

use std::fmt::Write;

use super::definitions::{Bindings, KPI_DEFINITIONS};
use super::{quote_literal, KpiQuery, KpiSettings, KpiSource};
use crate::error::QueryError;

impl KpiQuery {
    /// The KPI statement. `baseline` names a table with the same keys and a
    /// `baseline_spend` column (the trailing-7-day spend scaled to the
    /// window's length), or is `None` when there is no baseline.
    pub fn sql(
        &self,
        settings: &KpiSettings,
        baseline: Option<&str>,
        source: KpiSource,
    ) -> Result<String, QueryError> {
        self.validate()?;
        let keys = self.keys();
        let columns = self.kpi_columns(settings, baseline.is_some());
        // The sides the chosen KPIs read: request figures (`rk`), attempt
        // figures (`ak`) or both.
        let chosen: Vec<&(&str, String)> = columns
            .iter()
            .filter(|(name, _)| self.wants(name))
            .collect();
        let reads = |side: &str| {
            let prefix = format!("{side}.");
            chosen.iter().any(|(_, expr)| expr.contains(&prefix))
        };
        // A KPI that reads neither side (a constant) still needs rows.
        let requests = reads("rk");
        let attempts = reads("ak") || !requests;
        let key = |k: &str| match (requests, attempts) {
            (true, true) => format!("COALESCE(rk.{k}, ak.{k})"),
            (true, false) => format!("rk.{k}"),
            _ => format!("ak.{k}"),
        };
        let mut ctes = Vec::new();
        match source {
            KpiSource::Raw => {
                if requests {
                    ctes.push(format!(
                        "rk AS ({})",
                        self.raw_request_figures(settings, Percentiles::Exact)
                    ));
                }
                if attempts {
                    ctes.push(format!(
                        "ak AS ({})",
                        self.raw_attempt_figures(Percentiles::Exact)
                    ));
                }
            }
            KpiSource::RawAndRollups => {
                // The raw part first, then the stored one, merged.
                if requests {
                    ctes.push(format!(
                        "rk_parts AS ({} UNION ALL {})",
                        self.raw_request_figures(settings, Percentiles::Sketched),
                        self.rolled_up_request_figures(settings, StoredFigures::Part),
                    ));
                    ctes.push(format!("rk AS ({})", self.merged_request_figures()));
                }
                if attempts {
                    ctes.push(format!(
                        "ak_parts AS ({} UNION ALL {})",
                        self.raw_attempt_figures(Percentiles::Sketched),
                        self.rolled_up_attempt_figures(StoredFigures::Part),
                    ));
                    ctes.push(format!("ak AS ({})", self.merged_attempt_figures()));
                }
            }
            KpiSource::Rollups => {
                // No raw part: the stored rows grouped once give each
                // side's figures, with nothing left to merge.
                if requests {
                    ctes.push(format!(
                        "rk AS ({})",
                        self.rolled_up_request_figures(settings, StoredFigures::Whole)
                    ));
                }
                if attempts {
                    ctes.push(format!(
                        "ak AS ({})",
                        self.rolled_up_attempt_figures(StoredFigures::Whole)
                    ));
                }
            }
        }
        let mut select: Vec<String> = keys.iter().map(|k| format!("{} AS {k}", key(k))).collect();
        select.extend(
            chosen
                .iter()
                .map(|(name, expr)| format!("{expr} AS {name}")),
        );
        let from = match (requests, attempts) {
            (true, true) => {
                let on = if keys.is_empty() {
                    "true".to_owned()
                } else {
                    keys.iter()
                        .map(|k| format!("(rk.{k} IS NOT DISTINCT FROM ak.{k})"))
                        .collect::<Vec<_>>()
                        .join(" AND ")
                };
                format!("rk FULL OUTER JOIN ak ON {on}")
            }
            (true, false) => "rk".to_owned(),
            _ => "ak".to_owned(),
        };
        let mut sql = format!(
            "WITH {} SELECT {} FROM {from}",
            ctes.join(", "),
            select.join(", ")
        );
        if let Some(table) = baseline.filter(|_| self.wants("cost_variance_pct")) {
            let on = if keys.is_empty() {
                "true".to_owned()
            } else {
                keys.iter()
                    .map(|k| format!("({} IS NOT DISTINCT FROM b.{k})", key(k)))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            };
            let _ = write!(sql, " LEFT JOIN {table} b ON {on}");
        }
        if !keys.is_empty() {
            let order: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
            let _ = write!(sql, " ORDER BY {}", order.join(", "));
        }
        Ok(sql)
    }
}

impl KpiQuery {
    /// Every KPI column of [`KPI_NAMES`](super::KPI_NAMES) with its
    /// expression over the joined figures `rk` and `ak` (and the baseline
    /// `b` when there is one), from queries/kpis/.
    fn kpi_columns(&self, settings: &KpiSettings, baseline: bool) -> Vec<(&'static str, String)> {
        let minutes = match (self.bucket_minutes(), self.window_minutes) {
            (Some(m), _) | (None, Some(m)) => format!("{m}.0"),
            (None, None) => "ak.observed_minutes".to_owned(),
        };
        // A row without attempt figures has no tokens, so its limit may be
        // looked up by the attempt side's key alone.
        let bindings = Bindings {
            budget: format!("{:?}", 1.0 - settings.slo_target),
            minutes,
            tpm_limit: self
                .tpm_limit_expr(settings, &|k| format!("ak.{k}"))
                .unwrap_or_else(|| NULL_DOUBLE.to_owned()),
            baseline_spend: if baseline {
                "b.baseline_spend".to_owned()
            } else {
                NULL_DOUBLE.to_owned()
            },
        };
        KPI_DEFINITIONS
            .iter()
            .map(|kpi| (kpi.name, kpi.sql(&bindings)))
            .collect()
    }
}

/// What a placeholder with nothing to bind reads as: the KPI is null.
const NULL_DOUBLE: &str = "CAST(NULL AS DOUBLE)";

/// Whether the raw figures carry exact percentiles or sketches to merge
/// with the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Percentiles {
    Exact,
    Sketched,
}

/// The request figures `rk` holds, in order, and how the merged ones
/// combine the parts' (all sums).
const REQUEST_COUNTS: &[&str] = &[
    "requests",
    "retried_requests",
    "fallback_requests",
    "fallback_successes",
    "successful_requests",
    "valid_requests",
    "good_requests",
    "compliant_requests",
    "judged_requests",
];

/// The attempt counts `ak` holds that merge by summing.
const ATTEMPT_SUMS: &[&str] = &[
    "attempts",
    "spend_usd",
    "tokens",
    "respent_tokens",
    "successful_final_tokens",
    "successful_attempts",
    "drifted_attempts",
    "streaming_attempts",
    "interrupted_streams",
    "unpriced_attempts",
    "valid_attempts",
    "provider_failed_attempts",
];

/// An attempt that is not valid for uptime: the client's fault (as for
/// request validity, docs/diagnostics.md "Uptime per provider").
const INVALID_ATTEMPT: &str = "COALESCE(error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden'), false) OR outcome = 'cancelled'";
/// An attempt the provider itself failed.
const PROVIDER_FAILURE: &str =
    "outcome = 'error' AND error_class IN ('provider_error', 'timeout', 'network', 'no_provider')";

/// Each percentile column: its name stem, the sketch it is read from, and
/// the raw column and filter of its exact form.
const REQUEST_PERCENTILES: &[(&str, &str, &str, &str)] =
    &[("latency", "latency_sketch", "e2e_latency_ms", "successful")];
const ATTEMPT_PERCENTILES: &[(&str, &str, &str, &str)] = &[
    (
        "attempt_latency",
        "duration_sketch",
        "duration_ms",
        "outcome = 'success'",
    ),
    (
        "ttft",
        "ttft_sketch",
        "ttft_ms",
        "outcome = 'success' AND streaming",
    ),
];

const QUANTILES: [(&str, f64); 3] = [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)];

/// What the stored rows grouped by the keys give: a part to merge with the
/// raw part (sums, sketches, first and last times), or, with no raw part,
/// the side's whole figures (percentiles read from the merged sketches,
/// the observed minutes computed) in the columns of the merged figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredFigures {
    Part,
    Whole,
}

impl StoredFigures {
    /// The sketch columns: merged as they are, or read as percentiles.
    fn sketches(self, columns: &[(&str, &str, &str, &str)]) -> String {
        match self {
            StoredFigures::Part => columns
                .iter()
                .map(|(_, sketch, _, _)| format!(", ddsketch_merge({sketch}) AS {sketch}"))
                .collect(),
            StoredFigures::Whole => KpiQuery::merged_percentiles(columns),
        }
    }
}

/// The minutes between the first request's start and the last attempt's
/// end, from the first and last times of the rows grouped.
const OBSERVED_MINUTES: &str = "CAST(CAST(max(last_attempt_end) AS BIGINT) - CAST(min(first_request_start) AS BIGINT) AS DOUBLE) / 60000000.0 AS observed_minutes";

impl KpiQuery {
    /// Percentile columns: exact over the raw rows, or one sketch each.
    fn raw_percentiles(percentiles: Percentiles, columns: &[(&str, &str, &str, &str)]) -> String {
        let mut out = String::new();
        for (stem, sketch, column, filter) in columns {
            match percentiles {
                Percentiles::Exact => {
                    for (suffix, p) in QUANTILES {
                        let _ = write!(
                            out,
                            ", percentile_cont({column}, {p}) FILTER (WHERE {filter}) AS {stem}_{suffix}_ms"
                        );
                    }
                }
                Percentiles::Sketched => {
                    let _ = write!(
                        out,
                        ", ddsketch({column}) FILTER (WHERE {filter}) AS {sketch}"
                    );
                }
            }
        }
        out
    }

    /// Percentiles read from the merged sketches of the parts.
    fn merged_percentiles(columns: &[(&str, &str, &str, &str)]) -> String {
        let mut out = String::new();
        for (stem, sketch, _, _) in columns {
            for (suffix, p) in QUANTILES {
                let _ = write!(
                    out,
                    ", ddsketch_quantile(ddsketch_merge({sketch}), {p}) AS {stem}_{suffix}_ms"
                );
            }
        }
        out
    }

    /// Request figures of the raw rows, grouped by the keys.
    fn raw_request_figures(&self, settings: &KpiSettings, percentiles: Percentiles) -> String {
        let source = match &settings.allowed_providers {
            Some(allowed) => {
                let list = if allowed.is_empty() {
                    "NULL".to_owned()
                } else {
                    allowed
                        .iter()
                        .map(|p| quote_literal(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "(SELECT r.*, c.compliant FROM requests r JOIN (SELECT request_id, bool_and(COALESCE(provider IN ({list}), false)) AS compliant FROM attempts GROUP BY request_id) c ON c.request_id = r.request_id)"
                )
            }
            None => "(SELECT *, CAST(NULL AS BOOLEAN) AS compliant FROM requests)".to_owned(),
        };
        format!(
            "SELECT {keys}\
             count(*) AS requests, \
             count(*) FILTER (WHERE attempts > 1) AS retried_requests, \
             count(*) FILTER (WHERE fallbacks > 0) AS fallback_requests, \
             count(*) FILTER (WHERE fallbacks > 0 AND successful) AS fallback_successes, \
             count(*) FILTER (WHERE successful) AS successful_requests, \
             count(*) FILTER (WHERE valid) AS valid_requests, \
             count(*) FILTER (WHERE good) AS good_requests, \
             count(*) FILTER (WHERE compliant) AS compliant_requests, \
             count(compliant) AS judged_requests\
             {percentiles} \
             FROM {source}{filter}{group_by}",
            keys = self.select_keys("request_start"),
            percentiles = Self::raw_percentiles(percentiles, REQUEST_PERCENTILES),
            filter = self.filter_clause(),
            group_by = self.group_by_clause(),
        )
    }

    /// Request figures of the stored hours, in the columns of
    /// [`Self::raw_request_figures`]. A stored row's requests are compliant
    /// when every provider they tried is allowed.
    fn rolled_up_request_figures(&self, settings: &KpiSettings, form: StoredFigures) -> String {
        let (compliant, judged) = match &settings.allowed_providers {
            Some(allowed) => {
                let allowed: Vec<String> = allowed
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| quote_literal(p))
                    .collect();
                let condition = if allowed.is_empty() {
                    "false".to_owned()
                } else {
                    format!(
                        "array_has_all(make_array({}), tried_providers)",
                        allowed.join(", ")
                    )
                };
                (
                    format!("sum(CASE WHEN {condition} THEN requests ELSE 0 END)"),
                    "sum(requests)".to_owned(),
                )
            }
            None => (
                "CAST(0 AS BIGINT)".to_owned(),
                "CAST(0 AS BIGINT)".to_owned(),
            ),
        };
        format!(
            "SELECT {keys}\
             sum(requests) AS requests, sum(retried_requests) AS retried_requests, \
             sum(fallback_requests) AS fallback_requests, sum(fallback_successes) AS fallback_successes, \
             sum(successful_requests) AS successful_requests, sum(valid_requests) AS valid_requests, \
             sum(good_requests) AS good_requests, {compliant} AS compliant_requests, \
             {judged} AS judged_requests{sketches} \
             FROM {table}{filter}{group_by}",
            keys = self.select_keys("hour"),
            sketches = form.sketches(REQUEST_PERCENTILES),
            table = crate::stored_rollups::stored_name("hourly_requests"),
            filter = self.filter_clause(),
            group_by = self.group_by_clause(),
        )
    }

    /// Attempt figures of the raw rows, grouped by the keys.
    fn raw_attempt_figures(&self, percentiles: Percentiles) -> String {
        let spend = match percentiles {
            Percentiles::Exact => "sum(cost_usd)",
            Percentiles::Sketched => "CAST(sum(cost_usd) AS DECIMAL(38, 9))",
        };
        let observed = match percentiles {
            Percentiles::Exact => "CAST(CAST(max(attempt_end) AS BIGINT) - CAST(min(request_start) AS BIGINT) AS DOUBLE) / 60000000.0 AS observed_minutes",
            Percentiles::Sketched => "min(request_start) AS first_request_start, max(attempt_end) AS last_attempt_end",
        };
        format!(
            "SELECT {keys}\
             count(*) AS attempts, \
             {spend} AS spend_usd, \
             sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) AS tokens, \
             sum(CASE WHEN is_final_attempt THEN 0 ELSE COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) END) AS respent_tokens, \
             sum(CASE WHEN is_final_attempt AND outcome = 'success' THEN COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) ELSE 0 END) AS successful_final_tokens, \
             count(*) FILTER (WHERE outcome = 'success') AS successful_attempts, \
             count(*) FILTER (WHERE outcome = 'success' AND served_model IS NOT NULL AND served_model <> requested_model) AS drifted_attempts, \
             count(*) FILTER (WHERE streaming) AS streaming_attempts, \
             count(*) FILTER (WHERE streaming AND outcome = 'partial') AS interrupted_streams, \
             count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_attempts, \
             count(*) FILTER (WHERE NOT ({INVALID_ATTEMPT})) AS valid_attempts, \
             count(*) FILTER (WHERE {PROVIDER_FAILURE}) AS provider_failed_attempts, \
             {observed}\
             {percentiles} \
             FROM attempts{filter}{group_by}",
            keys = self.select_keys("request_start"),
            percentiles = Self::raw_percentiles(percentiles, ATTEMPT_PERCENTILES),
            filter = self.filter_clause(),
            group_by = self.group_by_clause(),
        )
    }

    /// Attempt figures of the stored hours, in the columns of
    /// [`Self::raw_attempt_figures`] with sketches, or whole.
    fn rolled_up_attempt_figures(&self, form: StoredFigures) -> String {
        let times = match form {
            StoredFigures::Part => {
                "min(first_request_start) AS first_request_start, max(last_attempt_end) AS last_attempt_end"
            }
            StoredFigures::Whole => OBSERVED_MINUTES,
        };
        format!(
            "SELECT {keys}\
             sum(attempts) AS attempts, \
             CAST(sum(spend_usd) AS DECIMAL(38, 9)) AS spend_usd, \
             sum(input_tokens + output_tokens) AS tokens, \
             sum(input_tokens + output_tokens - final_tokens) AS respent_tokens, \
             sum(CASE WHEN outcome = 'success' THEN final_tokens ELSE 0 END) AS successful_final_tokens, \
             sum(CASE WHEN outcome = 'success' THEN attempts ELSE 0 END) AS successful_attempts, \
             sum(CASE WHEN outcome = 'success' AND served_model IS NOT NULL AND served_model <> requested_model THEN attempts ELSE 0 END) AS drifted_attempts, \
             sum(streaming_attempts) AS streaming_attempts, \
             sum(CASE WHEN outcome = 'partial' THEN streaming_attempts ELSE 0 END) AS interrupted_streams, \
             sum(unpriced_attempts) AS unpriced_attempts, \
             sum(CASE WHEN NOT ({INVALID_ATTEMPT}) THEN attempts ELSE 0 END) AS valid_attempts, \
             sum(CASE WHEN {PROVIDER_FAILURE} THEN attempts ELSE 0 END) AS provider_failed_attempts, \
             {times}{sketches} \
             FROM {table}{filter}{group_by}",
            keys = self.select_keys("hour"),
            sketches = form.sketches(ATTEMPT_PERCENTILES),
            table = crate::stored_rollups::stored_name("hourly_usage"),
            filter = self.filter_clause(),
            group_by = self.group_by_clause(),
        )
    }

    /// The plain key columns of a part, for merging parts.
    fn key_list(&self) -> String {
        self.keys().iter().map(|k| format!("{k}, ")).collect()
    }

    fn merged_request_figures(&self) -> String {
        let sums: Vec<String> = REQUEST_COUNTS
            .iter()
            .map(|c| format!("sum({c}) AS {c}"))
            .collect();
        format!(
            "SELECT {keys}{sums}{percentiles} FROM rk_parts{group_by}",
            keys = self.key_list(),
            sums = sums.join(", "),
            percentiles = Self::merged_percentiles(REQUEST_PERCENTILES),
            group_by = self.group_by_clause(),
        )
    }

    fn merged_attempt_figures(&self) -> String {
        let sums: Vec<String> = ATTEMPT_SUMS
            .iter()
            .map(|c| format!("sum({c}) AS {c}"))
            .collect();
        format!(
            "SELECT {keys}{sums}, {OBSERVED_MINUTES}{percentiles} FROM ak_parts{group_by}",
            keys = self.key_list(),
            sums = sums.join(", "),
            percentiles = Self::merged_percentiles(ATTEMPT_PERCENTILES),
            group_by = self.group_by_clause(),
        )
    }
}

#[cfg(test)]
#[path = "statement_tests.rs"]
mod tests;
