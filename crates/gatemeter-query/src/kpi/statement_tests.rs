//! Tests of the KPI statement: one column per KPI, and only the views and
//! figures the chosen KPIs need.

use super::*;
use crate::kpi::KPI_NAMES;

#[test]
fn every_kpi_has_one_column_in_output_order() {
    let names: Vec<&str> = KpiQuery::default()
        .kpi_columns(&KpiSettings::default(), true)
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(names, KPI_NAMES);
}

#[test]
fn with_rollups_only_no_raw_view_is_read() {
    let query = KpiQuery {
        group_by: vec!["team".into()],
        ..KpiQuery::default()
    };
    let settings = KpiSettings::default();
    let both = query
        .sql(&settings, None, KpiSource::RawAndRollups)
        .expect("sql");
    assert!(both.contains("FROM attempts") && both.contains("rollup_hourly_usage"));
    let stored = query.sql(&settings, None, KpiSource::Rollups).expect("sql");
    assert!(
        !stored.contains("FROM attempts") && !stored.contains("FROM requests"),
        "{stored}"
    );
    assert!(stored.contains("sum(requests) AS requests"), "{stored}");
    // Grouped once: the stored rows give the figures, nothing to merge.
    assert!(
        !stored.contains("_parts") && stored.contains("AS latency_p99_ms"),
        "{stored}"
    );
}

#[test]
fn a_chosen_kpi_reads_only_the_figures_it_needs() {
    let query = |kpis: &[&str]| KpiQuery {
        group_by: vec!["team".into()],
        kpis: kpis.iter().map(|k| (*k).to_owned()).collect(),
        ..KpiQuery::default()
    };
    let settings = KpiSettings::default();
    let spend = query(&["spend_usd"])
        .sql(&settings, None, KpiSource::RawAndRollups)
        .expect("sql");
    assert!(
        spend.contains("ak_parts") && !spend.contains("rk_parts"),
        "{spend}"
    );
    assert!(!spend.contains("ddsketch_merge(latency_sketch)"), "{spend}");
    let availability = query(&["availability"])
        .sql(&settings, None, KpiSource::Raw)
        .expect("sql");
    assert!(availability.contains("FROM rk ORDER BY"), "{availability}");
    let both = query(&["retry_amplification"])
        .sql(&settings, None, KpiSource::Raw)
        .expect("sql");
    assert!(both.contains("rk FULL OUTER JOIN ak"), "{both}");
    let constant = query(&["effective_throughput_pct"])
        .sql(&settings, None, KpiSource::Raw)
        .expect("sql");
    assert!(constant.contains("FROM ak ORDER BY"), "{constant}");
    assert!(matches!(
        query(&["spend"]).sql(&settings, None, KpiSource::Raw),
        Err(QueryError::UnknownKpi(name, _)) if name == "spend"
    ));
}
