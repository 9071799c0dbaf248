//! The `[auth]` config keys (docs/security.md, "Tokens, roles and teams"):
//! API tokens as hashes, and whether `/metrics` is open; and the rule that
//! a listener outside loopback needs tokens or `--insecure-open`.

use std::net::SocketAddr;
use std::path::Path;

use gatemeter_query::access::{Access, Credential, Role, ScramSecret};
use serde::Deserialize;

use crate::error::CliError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFileConfig {
    #[serde(default)]
    open_metrics: bool,
    #[serde(default)]
    tokens: Vec<TokenFileConfig>,
}

/// One `[[auth.tokens]]` entry, as `gatemeter token create` prints it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFileConfig {
    id: String,
    role: String,
    teams: Option<Vec<String>>,
    /// Hex SHA-256 of the token.
    sha256: String,
    /// `<salt hex>:<salted password hex>` for PostgreSQL logins.
    scram: Option<String>,
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.trim()).ok()
}

impl AuthFileConfig {
    pub fn resolve(self, config: Option<&Path>) -> Result<Access, CliError> {
        let error = |index: usize, reason: String| CliError::Config {
            path: config.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: format!("auth.tokens[{index}]: {reason}"),
        };
        let mut credentials: Vec<Credential> = Vec::new();
        for (index, token) in self.tokens.into_iter().enumerate() {
            let role = Role::parse(&token.role).ok_or_else(|| {
                error(
                    index,
                    format!("role `{}`: expected one of {}", token.role, Role::ALLOWED),
                )
            })?;
            let sha256: [u8; 32] = hex_bytes(&token.sha256)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| error(index, "sha256: expected 64 hex digits".into()))?;
            let scram = match &token.scram {
                None => None,
                Some(text) => {
                    let parsed = text
                        .split_once(':')
                        .and_then(|(salt, salted)| Some((hex_bytes(salt)?, hex_bytes(salted)?)));
                    let (salt, salted_password) = parsed.ok_or_else(|| {
                        error(
                            index,
                            "scram: expected <salt hex>:<salted password hex>".into(),
                        )
                    })?;
                    Some(ScramSecret {
                        salt,
                        salted_password,
                    })
                }
            };
            if token.id.trim().is_empty() || credentials.iter().any(|c| c.id == token.id) {
                return Err(error(
                    index,
                    format!("id `{}`: empty or used twice", token.id),
                ));
            }
            credentials.push(Credential {
                id: token.id,
                role,
                teams: token.teams,
                sha256,
                scram,
            });
        }
        Ok(Access::new(credentials, self.open_metrics))
    }
}

/// Refuses to listen on `address` outside loopback without tokens, unless
/// `insecure_open`: anyone who can reach the port would read every team's
/// spend.
pub fn check_exposure(
    flag: &str,
    address: &str,
    access: &Access,
    insecure_open: bool,
) -> Result<(), CliError> {
    if !access.is_open() {
        return Ok(());
    }
    let loopback = address
        .parse::<SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
    if loopback {
        tracing::info!("{flag} {address}: no API tokens configured; open on loopback");
        return Ok(());
    }
    if insecure_open {
        tracing::warn!("{flag} {address}: no API tokens configured; open to anyone who can reach it (--insecure-open)");
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "{flag} {address} is not loopback and no API tokens are configured: add [[auth.tokens]] (gatemeter token create) or pass --insecure-open"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_listeners_need_tokens_or_the_flag() {
        let open = Access::default();
        assert!(check_exposure("--http-listen", "127.0.0.1:8080", &open, false).is_ok());
        let error = check_exposure("--http-listen", "0.0.0.0:8080", &open, false)
            .expect_err("exposed")
            .to_string();
        assert!(
            error.contains("--insecure-open") && error.contains("0.0.0.0:8080"),
            "{error}"
        );
        assert!(check_exposure("--pg-listen", "0.0.0.0:5433", &open, true).is_ok());
    }

    #[test]
    fn token_entries_are_checked_by_field() {
        let parse = |text: &str| {
            toml::from_str::<AuthFileConfig>(text)
                .expect("toml")
                .resolve(None)
        };
        let good = format!(
            "[[tokens]]\nid = \"fin\"\nrole = \"finance\"\nteams = [\"search\"]\nsha256 = \"{}\"\nscram = \"00ff:abcd\"\n",
            "ab".repeat(32)
        );
        let access = parse(&good).expect("valid");
        assert!(!access.is_open());
        let (credential, _) = access.by_id("fin").expect("fin");
        assert_eq!(
            credential.scram.as_ref().map(|s| s.salt.clone()),
            Some(vec![0, 255])
        );
        let bad_role = good.replace("finance", "root");
        assert!(parse(&bad_role)
            .expect_err("role")
            .to_string()
            .contains("role `root`"));
        let bad_hash = good.replace(&"ab".repeat(32), "xyz");
        assert!(parse(&bad_hash)
            .expect_err("hash")
            .to_string()
            .contains("sha256"));
    }
}
