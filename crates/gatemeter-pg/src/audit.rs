//! Audit-log lines for PostgreSQL logins and statements (docs/security.md,
//! "Audit log"). A statement's rows are sent after its handler returns, so
//! its line is written when the last part of it ends: the handler and each
//! row stream hold a [`PendingAudit`], and the last one dropped writes it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::Utc;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{ClientInfo, METADATA_USER};
use datafusion_postgres::pgwire::error::PgWireError;
use gatemeter_query::access::{Access, Principal};
use gatemeter_query::audit::{AuditLog, AuditRecord};

/// Status of a statement whose rows the client stopped reading.
pub const CANCELLED: &str = "57014";

/// The SQLSTATE an error is answered with.
pub fn sqlstate(error: &PgWireError) -> String {
    match error {
        PgWireError::UserError(info) => info.code.clone(),
        PgWireError::InvalidPassword(_) => "28P01".to_owned(),
        _ => "XX000".to_owned(),
    }
}

/// The line of one login or statement, written when dropped.
pub struct PendingAudit {
    log: Arc<AuditLog>,
    record: AuditRecord,
    started: Instant,
    rows: AtomicU64,
    bytes: AtomicU64,
    status: Mutex<Option<String>>,
}

impl PendingAudit {
    /// The line for `endpoint` of `client`'s connection, run as the token
    /// the client logged in with; `None` when the log is off.
    pub fn start<C: ClientInfo>(
        log: &Arc<AuditLog>,
        access: &Access,
        client: &C,
        endpoint: &str,
        sql: Option<&str>,
    ) -> Option<Arc<PendingAudit>> {
        if !log.is_enabled() {
            return None;
        }
        let mut record = AuditRecord::new(Utc::now(), "postgres", endpoint.to_owned());
        record.peer = Some(client.socket_addr().to_string());
        let user = client.metadata().get(METADATA_USER);
        let principal = if access.is_open() {
            Some(Principal::open())
        } else {
            user.and_then(|user| access.by_id(user))
                .map(|(_, principal)| principal)
        };
        match principal {
            Some(principal) => record.set_principal(&principal),
            // A refused login: the name the client gave, cut short.
            None => record.token_id = user.map(|user| user.chars().take(128).collect()),
        }
        if let Some(sql) = sql {
            record.set_sql(sql);
        }
        Some(Arc::new(PendingAudit {
            log: log.clone(),
            record,
            started: Instant::now(),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            status: Mutex::new(None),
        }))
    }

    pub fn add_row(&self, bytes: usize) {
        self.rows.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Records how the work failed; the first failure is the one kept.
    pub fn fail(&self, code: &str) {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| code.to_owned());
    }

    /// Marks the errors among `responses` (a refused statement answers an
    /// error response rather than failing).
    pub fn note_responses<'a>(&self, responses: impl IntoIterator<Item = &'a Response>) {
        for response in responses {
            if let Response::Error(info) = response {
                self.fail(&info.code);
            }
        }
    }
}

impl Drop for PendingAudit {
    fn drop(&mut self) {
        let mut record = self.record.clone();
        // Statements count rows; logins have none.
        record.rows = record
            .sql
            .is_some()
            .then(|| self.rows.load(Ordering::Relaxed));
        record.bytes = self.bytes.load(Ordering::Relaxed);
        record.status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| "ok".to_owned());
        record.set_duration(self.started.elapsed());
        self.log.record(&record);
    }
}
