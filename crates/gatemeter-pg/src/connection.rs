//! One client connection: its own session (the shared tables and catalog,
//! a memory pool of its own), datafusion-postgres answering the protocol
//! and the catalog queries clients send, our guard in front of it, our
//! limits around it and an audit line per statement.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::pgwire::api::auth::StartupHandler;
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::portal::Portal;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers,
};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::DfSessionService;
use futures::Sink;
use gatemeter_query::access::Access;
use gatemeter_query::audit::AuditLog;
use gatemeter_query::executor::QueryLimits;
use gatemeter_query::team_scope::ScopeSlot;
use gatemeter_query::QueryEngine;
use tokio::time::Instant;

use crate::audit::{sqlstate, PendingAudit};
use crate::error::timed_out;
use crate::guard::ReadOnlyGuard;
use crate::limits::{limit_response, limit_responses};
use crate::login::Login;
use crate::single_statement::SingleStatementParser;

/// The handlers of one connection.
pub struct ConnectionHandlers {
    service: Arc<LimitedService>,
    startup: Arc<Login>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    /// `slot` is `session`'s team scope, filled once the client logs in.
    pub fn new(
        (session, slot): (SessionContext, ScopeSlot),
        engine: Arc<QueryEngine>,
        endpoint: &EndpointShared,
    ) -> ConnectionHandlers {
        let EndpointShared {
            limits,
            connections,
            access,
            audit,
            tls_required,
        } = endpoint;
        // The guard first; no cursor hook, whose statements would run
        // outside the limits.
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnlyGuard::new(engine)),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        ConnectionHandlers {
            service: Arc::new({
                let inner = DfSessionService::new_with_hooks(Arc::new(session), hooks);
                let parser = Arc::new(SingleStatementParser::new(inner.query_parser()));
                LimitedService {
                    inner,
                    limits: *limits,
                    parser,
                    access: access.clone(),
                    audit: audit.clone(),
                }
            }),
            startup: Arc::new(Login::new(
                access.clone(),
                connections.clone(),
                slot,
                audit.clone(),
                *tls_required,
            )),
            cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
        }
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// What every connection of one endpoint shares.
pub struct EndpointShared {
    pub limits: QueryLimits,
    pub connections: Arc<ConnectionManager>,
    pub access: Arc<Access>,
    pub audit: Arc<AuditLog>,
    /// Clients must connect over TLS.
    pub tls_required: bool,
}

/// datafusion-postgres's service with the timeout over planning, the
/// timeout and row cap over the rows, and an audit line per statement.
struct LimitedService {
    inner: DfSessionService,
    limits: QueryLimits,
    parser: Arc<SingleStatementParser>,
    access: Arc<Access>,
    audit: Arc<AuditLog>,
}

impl LimitedService {
    async fn within_timeout<T>(
        &self,
        started: Instant,
        work: impl std::future::Future<Output = PgWireResult<T>>,
    ) -> PgWireResult<T> {
        tokio::time::timeout_at(started + self.limits.timeout, work)
            .await
            .map_err(|_| timed_out(self.limits.timeout))?
    }
}

fn audit_failure(audit: Option<&PendingAudit>, error: &PgWireError) {
    if let Some(audit) = audit {
        audit.fail(&sqlstate(error));
    }
}

#[async_trait]
impl SimpleQueryHandler for LimitedService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let audit = PendingAudit::start(&self.audit, &self.access, client, "query", Some(query));
        let started = Instant::now();
        let responses = self
            .within_timeout(
                started,
                SimpleQueryHandler::do_query(&self.inner, client, query),
            )
            .await
            .inspect_err(|error| audit_failure(audit.as_deref(), error))?;
        if let Some(audit) = &audit {
            audit.note_responses(&responses);
        }
        Ok(limit_responses(
            responses,
            self.limits,
            started,
            audit.as_ref(),
        ))
    }
}

#[async_trait]
impl ExtendedQueryHandler for LimitedService {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = SingleStatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = &portal.statement.statement.0;
        let audit = PendingAudit::start(&self.audit, &self.access, client, "execute", Some(sql));
        let started = Instant::now();
        let response = self
            .within_timeout(
                started,
                ExtendedQueryHandler::do_query(&self.inner, client, portal, max_rows),
            )
            .await
            .inspect_err(|error| audit_failure(audit.as_deref(), error))?;
        if let Some(audit) = &audit {
            audit.note_responses([&response]);
        }
        Ok(limit_response(
            response,
            self.limits,
            started,
            audit.as_ref(),
        ))
    }
}
