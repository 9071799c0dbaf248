//! What every handler shares: the query engine and its executor, the
//! metrics registry, readiness, KPI settings, the alert reports, the tokens
//! and the audit log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use gatemeter_query::access::Access;
use gatemeter_query::audit::AuditLog;
use gatemeter_query::executor::QueryExecutor;
use gatemeter_query::scorecard::Target;
use gatemeter_query::{KpiSettings, QueryEngine};
use serde_json::Value;

use crate::http_metrics::HttpMetrics;

/// SLO, budget and alert reports as the alert evaluator last wrote them.
#[derive(Debug, Clone, Default)]
pub struct Reports {
    pub slos: Vec<Value>,
    pub budgets: Vec<Value>,
    pub alerts: Vec<Value>,
}

pub struct AppStateInner {
    pub engine: Arc<QueryEngine>,
    pub executor: QueryExecutor,
    pub registry: prometheus::Registry,
    pub kpi_settings: KpiSettings,
    pub scorecard_targets: Vec<Target>,
    pub http_metrics: HttpMetrics,
    /// The configured API tokens; none: open.
    pub access: Access,
    /// Where each request is recorded; shared with the PostgreSQL endpoint.
    pub audit: Arc<AuditLog>,
    ready: AtomicBool,
    reports: RwLock<Reports>,
}

#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        engine: Arc<QueryEngine>,
        executor: QueryExecutor,
        registry: prometheus::Registry,
        kpi_settings: KpiSettings,
        scorecard_targets: Vec<Target>,
        access: Access,
        audit: Arc<AuditLog>,
    ) -> Result<AppState, prometheus::Error> {
        let http_metrics = HttpMetrics::register(&registry)?;
        Ok(AppState(Arc::new(AppStateInner {
            engine,
            executor,
            registry,
            kpi_settings,
            scorecard_targets,
            http_metrics,
            access,
            audit,
            ready: AtomicBool::new(false),
            reports: RwLock::new(Reports::default()),
        })))
    }

    /// Ready once the lake is recovered (set by whoever recovers it).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn reports(&self) -> Reports {
        self.reports
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_reports(&self, reports: Reports) {
        *self.reports.write().unwrap_or_else(PoisonError::into_inner) = reports;
    }
}
