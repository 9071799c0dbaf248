//! Logging in (docs/security.md, "Tokens, roles and teams"). With API
//! tokens configured, a client logs in with SCRAM-SHA-256 as the user named
//! by a token's id and the token as password; the connection's session then
//! reads only that token's teams. Tokens below the `finance` role, and
//! tokens made without a SCRAM secret, cannot log in. Without tokens the
//! endpoint is open, as on loopback it may be. With TLS configured, a
//! client that did not ask for it is refused before it logs in. Every
//! login, let in or refused, is an audit-log line.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    save_startup_parameters_to_metadata, AuthSource, DefaultServerParameterProvider, LoginInfo,
    Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;
use gatemeter_query::access::{Access, Role};
use gatemeter_query::audit::AuditLog;
use gatemeter_query::team_scope::ScopeSlot;
use gatemeter_query::TeamScope;

use crate::audit::{sqlstate, PendingAudit};

/// The passwords SCRAM checks: each token's salted password, by token id.
#[derive(Debug)]
struct TokenSecrets {
    access: Arc<Access>,
}

#[async_trait]
impl AuthSource for TokenSecrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        let refused = || PgWireError::InvalidPassword(user.to_owned());
        let (credential, principal) = self.access.by_id(user).ok_or_else(refused)?;
        if principal.role < Role::Finance {
            return Err(refused());
        }
        let secret = credential.scram.as_ref().ok_or_else(refused)?;
        Ok(Password::new(
            Some(secret.salt.clone()),
            secret.salted_password.clone(),
        ))
    }
}

struct Open {
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for Open {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// The startup of one connection: open, or SCRAM against the tokens; once
/// the client is in, its team scope goes into the session's slot.
pub struct Login {
    open: Open,
    scram: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    access: Arc<Access>,
    slot: ScopeSlot,
    audit: Arc<AuditLog>,
    tls_required: bool,
}

impl Login {
    pub fn new(
        access: Arc<Access>,
        connections: Arc<ConnectionManager>,
        slot: ScopeSlot,
        audit: Arc<AuditLog>,
        tls_required: bool,
    ) -> Login {
        let scram = (!access.is_open()).then(|| {
            let mut scram = ScramAuth::new(Arc::new(TokenSecrets {
                access: access.clone(),
            }));
            scram.set_iterations(gatemeter_query::access::SCRAM_ITERATIONS);
            SASLAuthStartupHandler::new(Arc::new(DefaultServerParameterProvider::default()))
                .with_scram(scram)
                .with_connection_manager(connections.clone())
        });
        Login {
            open: Open { connections },
            scram,
            access,
            slot,
            audit,
            tls_required,
        }
    }
}

/// The refusal of a client that did not ask for TLS where it is required.
fn tls_required_error() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        "28000".to_owned(),
        "this server accepts only TLS connections: connect with sslmode=require or stricter"
            .to_owned(),
    )))
}

#[async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            if let PgWireFrontendMessage::Startup(startup) = &message {
                // For the audit line: who tried.
                save_startup_parameters_to_metadata(client, startup);
            }
            let error = tls_required_error();
            if let Some(audit) =
                PendingAudit::start(&self.audit, &self.access, client, "login", None)
            {
                audit.fail(&sqlstate(&error));
            }
            return Err(error);
        }
        let outcome = match &self.scram {
            None => {
                self.slot.set(TeamScope::all());
                StartupHandler::on_startup(&self.open, client, message).await
            }
            Some(scram) => scram.on_startup(client, message).await,
        };
        let logged_in = matches!(client.state(), PgWireConnectionState::ReadyForQuery);
        if logged_in && self.scram.is_some() {
            let user = client
                .metadata()
                .get(datafusion_postgres::pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            // Authenticated: the user is a token id with a secret.
            if let Some((_, principal)) = self.access.by_id(&user) {
                self.slot.set(principal.teams);
            }
        }
        // One line per login attempt: when it succeeds or fails, not for
        // each message of the exchange.
        if logged_in || outcome.is_err() {
            if let Some(audit) =
                PendingAudit::start(&self.audit, &self.access, client, "login", None)
            {
                if let Err(error) = &outcome {
                    audit.fail(&sqlstate(error));
                }
            }
        }
        outcome
    }
}

/// The salted password SCRAM-SHA-256 checks `token` against.
pub fn salted_password(token: &str, salt: &[u8]) -> Vec<u8> {
    datafusion_postgres::pgwire::api::auth::sasl::scram::gen_salted_password(
        token,
        salt,
        gatemeter_query::access::SCRAM_ITERATIONS,
    )
}
