//! Ingest health metrics (README.md, "HTTP API"), registered in a registry the caller
//! passes in. Labels are bounded: a closed result set, the closed set of
//! dead-letter classes, and source partitions.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub const EVENTS_TOTAL: &str = "gatemeter_ingest_events_total";
pub const DEAD_LETTERS_TOTAL: &str = "gatemeter_ingest_dead_letters_total";
pub const FLUSH_DURATION: &str = "gatemeter_ingest_flush_duration_seconds";
pub const FILES_TOTAL: &str = "gatemeter_ingest_files_total";
pub const BYTES_TOTAL: &str = "gatemeter_ingest_bytes_written_total";
pub const COMMITS_TOTAL: &str = "gatemeter_ingest_commits_total";
pub const LAG: &str = "gatemeter_ingest_partition_lag_messages";
pub const ASSIGNED: &str = "gatemeter_ingest_assigned_partitions";
pub const UNREAD: &str = "gatemeter_ingest_unread_partitions";
pub const CONSUMER_ERRORS_TOTAL: &str = "gatemeter_ingest_consumer_errors_total";
pub const REDACTIONS_TOTAL: &str = "gatemeter_privacy_redactions_total";

#[derive(Clone)]
pub struct IngestMetrics {
    /// `result` is `stored`, `dead_letter` or `replayed` (dropped because it
    /// was at or below the committed position).
    pub events: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub flush_duration: Histogram,
    pub files: IntCounter,
    pub bytes: IntCounter,
    pub commits: IntCounter,
    pub lag: IntGaugeVec,
    /// Partitions of the topic this process holds now.
    pub assigned: IntGaugeVec,
    /// Partitions of the topic nobody alive reads ([`crate::unread`]).
    pub unread: IntGaugeVec,
    pub consumer_errors: IntCounter,
    /// Values replaced before storage because they looked like a secret or
    /// an e-mail, by field and finding.
    pub redactions: IntCounterVec,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = IngestMetrics {
            events: IntCounterVec::new(
                Opts::new(
                    EVENTS_TOTAL,
                    "Events read by ingest, by result (stored, dead_letter, replayed)",
                ),
                &["result"],
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    DEAD_LETTERS_TOTAL,
                    "Events sent to the dead-letter table, by error class",
                ),
                &["class"],
            )?,
            flush_duration: Histogram::with_opts(
                HistogramOpts::new(
                    FLUSH_DURATION,
                    "Time to write a flush's files and its Delta commit",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            files: IntCounter::new(FILES_TOTAL, "Parquet files committed")?,
            bytes: IntCounter::new(BYTES_TOTAL, "Parquet bytes committed")?,
            commits: IntCounter::new(COMMITS_TOTAL, "Lake commits written")?,
            lag: IntGaugeVec::new(
                Opts::new(
                    LAG,
                    "Messages in the partition not yet committed to the lake",
                ),
                &["topic", "partition"],
            )?,
            assigned: IntGaugeVec::new(
                Opts::new(ASSIGNED, "Partitions of the topic assigned to this process"),
                &["topic"],
            )?,
            unread: IntGaugeVec::new(
                Opts::new(
                    UNREAD,
                    "Partitions of the topic not assigned to this process, behind the broker's high watermark in the lake and stored no further since the last look (30 s): read by nobody alive",
                ),
                &["topic"],
            )?,
            consumer_errors: IntCounter::new(
                CONSUMER_ERRORS_TOTAL,
                "Errors reported by the Kafka consumer",
            )?,
            redactions: IntCounterVec::new(
                Opts::new(
                    REDACTIONS_TOTAL,
                    "Event values replaced by a keyed hash before storage because they looked like a secret or an e-mail, by field and finding",
                ),
                &["field", "finding"],
            )?,
        };
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.dead_letters.clone()))?;
        registry.register(Box::new(metrics.flush_duration.clone()))?;
        registry.register(Box::new(metrics.files.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.commits.clone()))?;
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.assigned.clone()))?;
        registry.register(Box::new(metrics.unread.clone()))?;
        registry.register(Box::new(metrics.consumer_errors.clone()))?;
        registry.register(Box::new(metrics.redactions.clone()))?;
        Ok(metrics)
    }

    /// Counts what the privacy policy replaced in one message.
    pub fn record_redactions(&self, redactions: &[gatemeter_schema::privacy::Redaction]) {
        for redaction in redactions {
            self.redactions
                .with_label_values(&[redaction.field, redaction.finding.as_str()])
                .inc();
        }
    }

    /// Counts what one lake commit wrote (ingest and import alike).
    pub fn record_commit(&self, summary: &gatemeter_lake::CommitSummary) {
        self.events
            .with_label_values(&["stored"])
            .inc_by(summary.rows);
        self.events
            .with_label_values(&["dead_letter"])
            .inc_by(summary.dead_letters);
        for (class, count) in &summary.dead_letters_by_class {
            self.dead_letters.with_label_values(&[class]).inc_by(*count);
        }
        self.files.inc_by(summary.files as u64);
        self.bytes.inc_by(summary.bytes);
        self.commits.inc();
    }

    /// Totals for progress lines: (stored, dead letters, files).
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.events.with_label_values(&["stored"]).get(),
            self.events.with_label_values(&["dead_letter"]).get(),
            self.files.get(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_commit_counts_its_dead_letters_by_class() {
        let registry = Registry::new();
        let metrics = IngestMetrics::register(&registry).expect("register");
        let summary = |by_class: BTreeMap<&'static str, u64>| gatemeter_lake::CommitSummary {
            version: 1,
            files: 1,
            rows: 5,
            dead_letters: by_class.values().sum(),
            dead_letters_by_class: by_class,
            bytes: 100,
        };
        metrics.record_commit(&summary(BTreeMap::from([
            ("bad_json", 2),
            ("missing_field", 1),
        ])));
        metrics.record_commit(&summary(BTreeMap::from([("bad_json", 1)])));
        let by_class = |class: &str| metrics.dead_letters.with_label_values(&[class]).get();
        assert_eq!((by_class("bad_json"), by_class("missing_field")), (3, 1));
        assert_eq!(metrics.totals(), (10, 4, 2));
        let exported = registry
            .gather()
            .into_iter()
            .find(|family| family.name() == DEAD_LETTERS_TOTAL)
            .expect("exported");
        assert_eq!(exported.get_metric().len(), 2);
    }
}
