//! Live traffic series (README.md, "HTTP API") from the attempts each commit stored:
//! requests, attempts, tokens, spend, and attempt-duration and TTFT
//! histograms with the OpenTelemetry GenAI bucket boundaries.
//!
//! Cardinality is bounded: label values come from the events, so each label
//! admits a fixed number of distinct values (first come) and maps the rest
//! to `other`; nothing is labelled by key, user or request. Counters move
//! only after the lake commit succeeded, so a replayed message is never
//! counted; a producer's duplicate copy of an attempt is (the lake dedups at
//! query time, a counter cannot).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use gatemeter_schema::{AttemptEvent, AttemptRow, Usd};
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub const REQUESTS_TOTAL: &str = "gatemeter_requests_total";
pub const ATTEMPTS_TOTAL: &str = "gatemeter_attempts_total";
pub const ATTEMPT_DURATION: &str = "gatemeter_attempt_duration_seconds";
pub const TTFT: &str = "gatemeter_time_to_first_token_seconds";
pub const TOKENS_TOTAL: &str = "gatemeter_tokens_total";
pub const SPEND_TOTAL: &str = "gatemeter_spend_usd_total";
pub const SLO_REQUESTS_TOTAL: &str = "gatemeter_slo_requests_total";

/// `gen_ai.client.operation.duration` bucket boundaries (seconds).
pub const OPERATION_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.server.time_to_first_token` bucket boundaries (seconds).
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Prices an attempt the way the `attempts` view does (`None`: unpriced).
pub type Pricer = Arc<dyn Fn(&AttemptEvent) -> Option<Usd> + Send + Sync>;

/// How many distinct values each label admits before `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelCaps {
    pub teams: usize,
    pub providers: usize,
    pub models: usize,
}

impl Default for LabelCaps {
    fn default() -> Self {
        LabelCaps {
            teams: 20,
            providers: 20,
            models: 50,
        }
    }
}

pub const OTHER: &str = "other";

/// First-come admission of label values, per label.
#[derive(Debug, Default)]
struct Admitted {
    values: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Admitted {
    fn label(&mut self, label: &'static str, value: &str, cap: usize) -> String {
        let admitted = self.values.entry(label).or_default();
        if admitted.contains(value) || (admitted.len() < cap && value != OTHER) {
            admitted.insert(value.to_owned());
            value.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

#[derive(Clone)]
pub struct TrafficMetrics {
    pub requests: IntCounterVec,
    pub attempts: IntCounterVec,
    pub attempt_duration: HistogramVec,
    pub ttft: HistogramVec,
    pub tokens: IntCounterVec,
    pub spend: CounterVec,
    /// Requests valid for the availability SLO (docs/kpis.md), `good` or `bad`.
    pub slo_requests: IntCounterVec,
    caps: LabelCaps,
    admitted: Arc<Mutex<Admitted>>,
    pricer: Option<Pricer>,
}

impl TrafficMetrics {
    pub fn register(
        registry: &Registry,
        caps: LabelCaps,
        pricer: Option<Pricer>,
    ) -> Result<Self, prometheus::Error> {
        let metrics = TrafficMetrics {
            requests: IntCounterVec::new(
                Opts::new(REQUESTS_TOTAL, "Client requests by final provider, requested model and final outcome"),
                &["provider", "model", "outcome"],
            )?,
            attempts: IntCounterVec::new(
                Opts::new(ATTEMPTS_TOTAL, "Upstream attempts by provider, requested model and attempt kind"),
                &["provider", "model", "attempt_kind"],
            )?,
            attempt_duration: HistogramVec::new(
                HistogramOpts::new(ATTEMPT_DURATION, "Duration of upstream attempts (attempt_end - attempt_start)")
                    .buckets(OPERATION_DURATION_BUCKETS.to_vec()),
                &["provider", "model"],
            )?,
            ttft: HistogramVec::new(
                HistogramOpts::new(TTFT, "Time to first token of streaming attempts").buckets(TTFT_BUCKETS.to_vec()),
                &["provider", "model"],
            )?,
            tokens: IntCounterVec::new(
                Opts::new(TOKENS_TOTAL, "Tokens of upstream attempts by provider, requested model and direction"),
                &["provider", "model", "direction"],
            )?,
            spend: CounterVec::new(
                Opts::new(SPEND_TOTAL, "Spend in USD by team, provider and requested model (exact figures: SQL)"),
                &["team", "provider", "model"],
            )?,
            slo_requests: IntCounterVec::new(
                Opts::new(
                    SLO_REQUESTS_TOTAL,
                    "Requests valid for the availability SLO (no client errors, not cancelled), by result good or bad",
                ),
                &["team", "provider", "model", "result"],
            )?,
            caps,
            admitted: Arc::new(Mutex::new(Admitted::default())),
            pricer,
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.attempts.clone()))?;
        registry.register(Box::new(metrics.attempt_duration.clone()))?;
        registry.register(Box::new(metrics.ttft.clone()))?;
        registry.register(Box::new(metrics.tokens.clone()))?;
        registry.register(Box::new(metrics.spend.clone()))?;
        registry.register(Box::new(metrics.slo_requests.clone()))?;
        Ok(metrics)
    }

    /// What a commit of `rows` will add, worked out before the commit so
    /// that it can be applied only if the commit succeeds.
    pub fn stage(&self, rows: &[AttemptRow]) -> TrafficDelta {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        let mut delta = TrafficDelta::default();
        for row in rows {
            let event = &row.event;
            let provider = admitted.label("provider", &event.provider, self.caps.providers);
            let model = admitted.label("model", &event.requested_model, self.caps.models);
            let team = admitted.label("team", &event.team, self.caps.teams);
            delta.push(Observation::Attempt([
                provider.clone(),
                model.clone(),
                event.attempt_kind.as_str().to_owned(),
            ]));
            if event.is_final {
                delta.push(Observation::Request([
                    provider.clone(),
                    model.clone(),
                    event.outcome.as_str().to_owned(),
                ]));
                if let Some(result) = slo_result(event) {
                    delta.push(Observation::SloRequest([
                        team.clone(),
                        provider.clone(),
                        model.clone(),
                        result.to_owned(),
                    ]));
                }
            }
            let duration = (event.attempt_end - event.attempt_start).max(0) as f64 / 1e6;
            delta.push(Observation::Duration(
                [provider.clone(), model.clone()],
                duration,
            ));
            if let (Some(ttft), true) = (event.ttft_ms, event.streaming) {
                delta.push(Observation::Ttft(
                    [provider.clone(), model.clone()],
                    ttft / 1000.0,
                ));
            }
            for (direction, count) in [
                ("input", event.input_tokens),
                ("output", event.output_tokens),
            ] {
                if let Some(count) = count.filter(|c| *c > 0) {
                    delta.push(Observation::Tokens(
                        [provider.clone(), model.clone(), direction.to_owned()],
                        count as u64,
                    ));
                }
            }
            if let Some(cost) = self.pricer.as_ref().and_then(|price| price(event)) {
                // Prometheus counters are floats; the exact figure is in SQL.
                let usd = cost.0 as f64 / 1e9;
                if usd > 0.0 {
                    delta.push(Observation::Spend([team, provider, model], usd));
                }
            }
        }
        delta
    }

    /// Adds a staged delta (after its commit succeeded).
    pub fn apply(&self, delta: TrafficDelta) {
        for observation in delta.observations {
            match observation {
                Observation::Attempt(labels) => self.attempts.with_label_values(&labels).inc(),
                Observation::Request(labels) => self.requests.with_label_values(&labels).inc(),
                Observation::Duration(labels, seconds) => self
                    .attempt_duration
                    .with_label_values(&labels)
                    .observe(seconds),
                Observation::Ttft(labels, seconds) => {
                    self.ttft.with_label_values(&labels).observe(seconds)
                }
                Observation::Tokens(labels, count) => {
                    self.tokens.with_label_values(&labels).inc_by(count)
                }
                Observation::Spend(labels, usd) => {
                    self.spend.with_label_values(&labels).inc_by(usd)
                }
                Observation::SloRequest(labels) => {
                    self.slo_requests.with_label_values(&labels).inc()
                }
            }
        }
    }
}

/// One series update, labels already bounded.
#[derive(Debug, Clone, PartialEq)]
enum Observation {
    Attempt([String; 3]),
    Request([String; 3]),
    Duration([String; 2], f64),
    Ttft([String; 2], f64),
    Tokens([String; 3], u64),
    Spend([String; 3], f64),
    SloRequest([String; 4]),
}

/// A final attempt's request for the availability SLO: `None` when not
/// valid (a client error or cancelled), else good when successful.
fn slo_result(event: &AttemptEvent) -> Option<&'static str> {
    use gatemeter_schema::{ErrorClass, Outcome};
    let client_error = matches!(
        event.error_class,
        Some(
            ErrorClass::BadRequest
                | ErrorClass::Auth
                | ErrorClass::InsufficientCredits
                | ErrorClass::Forbidden
        )
    );
    if client_error || event.outcome == Outcome::Cancelled {
        None
    } else if event.outcome == Outcome::Success {
        Some("good")
    } else {
        Some("bad")
    }
}

/// Updates staged for one commit.
#[derive(Debug, Default)]
pub struct TrafficDelta {
    observations: Vec<Observation>,
}

impl TrafficDelta {
    fn push(&mut self, observation: Observation) {
        self.observations.push(observation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_past_the_cap_become_other() {
        let mut admitted = Admitted::default();
        assert_eq!(admitted.label("team", "a", 2), "a");
        assert_eq!(admitted.label("team", "b", 2), "b");
        assert_eq!(admitted.label("team", "c", 2), OTHER);
        assert_eq!(admitted.label("team", "a", 2), "a");
        // A value literally called `other` never takes a slot of its own.
        assert_eq!(admitted.label("provider", OTHER, 2), OTHER);
        assert_eq!(admitted.label("provider", "x", 2), "x");
    }

    #[test]
    fn a_staged_commit_counts_only_once_applied() {
        let line = br#"{"schema_version":1,"attempt_id":"a","request_id":"r","attempt_index":0,"attempt_kind":"initial","is_final":true,"request_start":"2026-11-01T10:00:00Z","attempt_start":"2026-11-01T10:00:00Z","attempt_end":"2026-11-01T10:00:01.5Z","requested_model":"m","provider":"p","team":"t","api_key_id":"k","environment":"prod","outcome":"success","streaming":true,"ttft_ms":120,"input_tokens":100,"output_tokens":50,"cost_usd":"0.25"}"#;
        let events = gatemeter_schema::decode_message(line).expect("decodes");
        let rows: Vec<AttemptRow> = events
            .into_iter()
            .map(|event| AttemptRow {
                event: event.expect("valid"),
                source: gatemeter_schema::SourcePosition {
                    topic: "t".into(),
                    partition: 0,
                    offset: 0,
                },
            })
            .collect();
        let registry = Registry::new();
        let metrics = TrafficMetrics::register(
            &registry,
            LabelCaps::default(),
            Some(Arc::new(|e: &AttemptEvent| e.cost_usd)),
        )
        .expect("register");
        let delta = metrics.stage(&rows);
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["p", "m", "success"])
                .get(),
            0
        );
        metrics.apply(delta);
        assert_eq!(
            metrics
                .requests
                .with_label_values(&["p", "m", "success"])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .attempts
                .with_label_values(&["p", "m", "initial"])
                .get(),
            1
        );
        assert_eq!(
            metrics
                .tokens
                .with_label_values(&["p", "m", "output"])
                .get(),
            50
        );
        assert_eq!(
            metrics.spend.with_label_values(&["t", "p", "m"]).get(),
            0.25
        );
        assert_eq!(
            metrics
                .slo_requests
                .with_label_values(&["t", "p", "m", "good"])
                .get(),
            1
        );
        let duration = metrics.attempt_duration.with_label_values(&["p", "m"]);
        assert_eq!(
            (duration.get_sample_count(), duration.get_sample_sum()),
            (1, 1.5)
        );
        assert_eq!(
            metrics.ttft.with_label_values(&["p", "m"]).get_sample_sum(),
            0.12
        );
    }
}
