//! Logging in (docs/security.md, "Tokens, roles and teams"). With API
//! tokens configured, a client logs in with SCRAM-SHA-256 as the user named
//! by a token's id and the token as password; the connection's session then
//! reads only that token's teams. Tokens below the `finance` role, and
//! tokens made without a SCRAM secret, cannot log in. Without tokens the
//! endpoint is open, as on loopback it may be.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::ScramAuth;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;
use gatemeter_query::access::{Access, Role};
use gatemeter_query::team_scope::ScopeSlot;
use gatemeter_query::TeamScope;

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
}

impl Login {
    pub fn new(access: Arc<Access>, connections: Arc<ConnectionManager>, slot: ScopeSlot) -> Login {
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
        }
    }
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
        let Some(scram) = &self.scram else {
            self.slot.set(TeamScope::all());
            return StartupHandler::on_startup(&self.open, client, message).await;
        };
        scram.on_startup(client, message).await?;
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
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
        Ok(())
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
