//! Who may ask what (docs/security.md, "Tokens, roles and teams"). API
//! tokens live in the config file as hashes only; a token has a role and
//! may be scoped to teams. HTTP presents one as `Authorization: Bearer`, the
//! PostgreSQL endpoint as the password of the user named by the token's id.

use sha2::{Digest, Sha256};

use crate::team_scope::TeamScope;

/// What a token may reach; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// KPIs, the scorecard, SLO, budget and alert pages, dashboards.
    Viewer,
    /// Also SQL (HTTP and PostgreSQL) and the named queries.
    Finance,
    /// Everything, `/metrics` included.
    Admin,
}

impl Role {
    pub const ALLOWED: &'static str = "viewer, finance, admin";

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "finance" => Some(Role::Finance),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Finance => "finance",
            Role::Admin => "admin",
        }
    }
}

/// One configured token: never the token itself, only its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// A name for logs and the PostgreSQL user name.
    pub id: String,
    pub role: Role,
    /// `None`: every team.
    pub teams: Option<Vec<String>>,
    /// SHA-256 of the token, for HTTP bearer checks.
    pub sha256: [u8; 32],
    /// The SCRAM-SHA-256 salt and salted password of the token, for the
    /// PostgreSQL endpoint; `None`: the token cannot log in there.
    pub scram: Option<ScramSecret>,
}

/// SCRAM-SHA-256 iterations of every token's salted password (RFC 7677's
/// minimum, as PostgreSQL uses).
pub const SCRAM_ITERATIONS: usize = 4096;

/// What SCRAM-SHA-256 needs to check a token without storing it: the salt
/// and PBKDF2-HMAC-SHA-256(token, salt, [`SCRAM_ITERATIONS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token id, or `open` when no tokens are configured.
    pub token_id: String,
    pub role: Role,
    pub teams: TeamScope,
}

impl Principal {
    /// Everything, as when no tokens are configured.
    pub fn open() -> Principal {
        Principal {
            token_id: "open".to_owned(),
            role: Role::Admin,
            teams: TeamScope::all(),
        }
    }

    fn of(credential: &Credential) -> Principal {
        Principal {
            token_id: credential.id.clone(),
            role: credential.role,
            teams: match &credential.teams {
                None => TeamScope::all(),
                Some(teams) => TeamScope::only(teams.iter().cloned()),
            },
        }
    }
}

/// The configured tokens. Without any, every caller is [`Principal::open`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    credentials: Vec<Credential>,
    /// `/metrics` without a token even when tokens are configured.
    pub open_metrics: bool,
}

impl Access {
    pub fn new(credentials: Vec<Credential>, open_metrics: bool) -> Access {
        Access {
            credentials,
            open_metrics,
        }
    }

    pub fn is_open(&self) -> bool {
        self.credentials.is_empty()
    }

    /// The principal of a bearer token; `None` for an unknown token. Every
    /// configured hash is compared in full, so the time taken says nothing
    /// about which one came close.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        if self.is_open() {
            return Some(Principal::open());
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for credential in &self.credentials {
            if constant_time_eq(&credential.sha256, &digest) {
                found = Some(credential);
            }
        }
        found.map(Principal::of)
    }

    /// The credential whose id is `user` (the PostgreSQL login).
    pub fn by_id(&self, user: &str) -> Option<(&Credential, Principal)> {
        self.credentials
            .iter()
            .find(|credential| credential.id == user)
            .map(|credential| (credential, Principal::of(credential)))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 of a token, as the config stores it.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(id: &str, token: &str, role: Role, teams: Option<&[&str]>) -> Credential {
        Credential {
            id: id.to_owned(),
            role,
            teams: teams.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            sha256: token_sha256(token),
            scram: None,
        }
    }

    #[test]
    fn a_token_maps_to_its_role_and_teams_unknown_ones_to_nothing() {
        let access = Access::new(
            vec![
                credential("fin", "gmt_fin", Role::Finance, Some(&["search"])),
                credential("ops", "gmt_ops", Role::Admin, None),
            ],
            false,
        );
        let fin = access.bearer("gmt_fin").expect("known");
        assert_eq!((fin.token_id.as_str(), fin.role), ("fin", Role::Finance));
        assert_eq!(fin.teams, TeamScope::only(["search".to_owned()]));
        assert!(access
            .bearer("gmt_ops")
            .expect("known")
            .teams
            .teams()
            .is_none());
        assert_eq!(access.bearer("gmt_nope"), None);
        assert_eq!(access.bearer(""), None);
        assert_eq!(
            access.by_id("fin").map(|(c, _)| c.role),
            Some(Role::Finance)
        );
        assert!(access.by_id("nobody").is_none());
    }

    #[test]
    fn without_tokens_everyone_is_open_and_roles_are_ordered() {
        let access = Access::default();
        assert_eq!(access.bearer("anything"), Some(Principal::open()));
        assert!(Role::Viewer < Role::Finance && Role::Finance < Role::Admin);
        assert_eq!(Role::parse("finance"), Some(Role::Finance));
        assert_eq!(Role::parse("root"), None);
    }
}
