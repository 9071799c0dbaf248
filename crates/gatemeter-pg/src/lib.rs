//! The PostgreSQL wire-protocol endpoint (README.md, "Grafana, psql and finance tools"): `psql`, Grafana's
//! built-in PostgreSQL datasource, Metabase and spreadsheet tools connect
//! without plugins and query the same views as `POST /api/v1/sql`.
//!
//! - The protocol and the `pg_catalog` tables clients read on connect come
//!   from `datafusion-postgres` (pgwire inside).
//! - Read-only like HTTP: every statement passes the same syntax-tree check
//!   first ([`guard`]); engine options cannot be `SET`.
//! - The same limits as HTTP: a memory pool per connection with spilling
//!   off, the query timeout and the row cap over the rows a client reads
//!   ([`limits`]). Run the server on the query pool
//!   ([`gatemeter_query::executor::QueryExecutor::handle`]) so a heavy query
//!   never takes the threads that answer `/healthz`.
//! - Fresh: the session's lake table lists the committed files when a query
//!   scans, and each statement first applies the commits made since the
//!   last one.
//! - With API tokens configured, clients log in with SCRAM-SHA-256 as a
//!   token's id with the token as password, and read only its teams' rows
//!   ([`login`]).
//! - With a certificate configured, only TLS connections are let in.
//! - Every login and statement is an audit-log line ([`audit`]).

mod audit;
mod connection;
mod error;
pub mod guard;
pub mod limits;
pub mod login;
mod single_statement;

use std::future::Future;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire::api::ConnectionManager;
use datafusion_postgres::pgwire::tokio::{process_socket, TlsAcceptor};
use gatemeter_query::access::Access;
use gatemeter_query::audit::AuditLog;
use gatemeter_query::executor::QueryLimits;
use gatemeter_query::QueryEngine;
use tokio::net::TcpListener;

pub use error::PgError;

use connection::{ConnectionHandlers, EndpointShared};

/// The catalog name clients see as the database (`current_database()`).
const CATALOG: &str = "datafusion";

pub struct PgEndpoint {
    engine: Arc<QueryEngine>,
    /// Tables, views, `pg_catalog` and functions every connection forks.
    template: SessionContext,
    shared: EndpointShared,
    tls: Option<TlsAcceptor>,
}

/// Who may connect and how they are recorded.
pub struct Security {
    /// The API tokens clients log in with; none: open.
    pub access: Arc<Access>,
    /// Where each login and statement is recorded.
    pub audit: Arc<AuditLog>,
    /// With an acceptor, clients must connect over TLS.
    pub tls: Option<TlsAcceptor>,
}

impl PgEndpoint {
    pub async fn new(
        engine: Arc<QueryEngine>,
        limits: QueryLimits,
        security: Security,
    ) -> Result<PgEndpoint, PgError> {
        let template = engine.live_session().await?;
        setup_pg_catalog(&template, CATALOG, EmptyContextProvider)
            .map_err(|e| PgError::Catalog(e.to_string()))?;
        Ok(PgEndpoint {
            engine,
            template,
            shared: EndpointShared {
                limits,
                connections: Arc::new(ConnectionManager::new()),
                access: security.access,
                audit: security.audit,
                tls_required: security.tls.is_some(),
            },
            tls: security.tls,
        })
    }

    /// Serves clients on `listener` until `shutdown` resolves. Call it on
    /// the runtime that should run the queries: the listener is moved onto
    /// it here.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), PgError> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: keep serving the others.
                        tracing::warn!(%error, "pg: accept failed");
                        continue;
                    }
                },
            };
            let session = match self.engine.fork_session(&self.template) {
                Ok(session) => session,
                Err(error) => {
                    tracing::error!(%error, "pg: cannot open a session");
                    continue;
                }
            };
            let handlers = Arc::new(ConnectionHandlers::new(
                session,
                self.engine.clone(),
                &self.shared,
            ));
            let tls = self.tls.clone();
            tokio::spawn(async move {
                if let Err(error) = process_socket(socket, tls, handlers).await {
                    tracing::debug!(%error, %peer, "pg: connection ended");
                }
            });
        }
    }
}
