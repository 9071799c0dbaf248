//! Bearer tokens and roles on every route (docs/security.md, "Tokens,
//! roles and teams"). Probes (`/healthz`, `/readyz`) are always open;
//! `/metrics` needs `admin` unless `open_metrics`; SQL and the named queries
//! need `finance`; everything else `viewer`. The caller's [`Principal`]
//! rides in the request for the handlers, whose queries read only its
//! teams' rows, and in the response for the audit log.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatemeter_query::access::{Access, Principal, Role};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// The role a path needs; `None`: open to anyone.
pub fn required_role(path: &str, access: &Access) -> Option<Role> {
    match path {
        "/healthz" | "/readyz" => None,
        "/metrics" if access.open_metrics => None,
        "/metrics" => Some(Role::Admin),
        "/api/v1/sql" => Some(Role::Finance),
        path if path == "/api/v1/queries" || path.starts_with("/api/v1/queries/") => {
            Some(Role::Finance)
        }
        _ => Some(Role::Viewer),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    authenticate_with(&state.access, request, next).await
}

/// [`authenticate`] against `access` alone (the metrics-only listener has
/// no API state).
pub async fn authenticate_with(access: &Access, mut request: Request, next: Next) -> Response {
    let Some(needed) = required_role(request.uri().path(), access) else {
        return next.run(request).await;
    };
    let principal = if access.is_open() {
        Some(Principal::open())
    } else {
        bearer_token(request.headers()).and_then(|token| access.bearer(token))
    };
    let Some(principal) = principal else {
        let mut response = ApiError::Unauthorized(
            "send a valid API token as `Authorization: Bearer <token>` (gatemeter token create)"
                .into(),
        )
        .into_response();
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gatemeter\""),
        );
        return response;
    };
    let mut response = if principal.role < needed {
        ApiError::Forbidden(format!(
            "token `{}` has role {}; this endpoint needs {}",
            principal.token_id,
            principal.role.as_str(),
            needed.as_str()
        ))
        .into_response()
    } else {
        request.extensions_mut().insert(principal.clone());
        next.run(request).await
    };
    // For the audit line around this layer.
    response.extensions_mut().insert(principal);
    response
}

/// Whether a report entry (an SLO, budget or alert) belongs to the
/// principal's teams: a team-scoped token sees only entries scoped to one
/// of its teams, never global ones, which sum every team's traffic.
pub fn visible(principal: &Principal, entry: &Value) -> bool {
    let Some(teams) = principal.teams.teams() else {
        return true;
    };
    let team = entry
        .get("scope")
        .and_then(|scope| scope.get("team"))
        .or_else(|| entry.get("labels").and_then(|labels| labels.get("team")))
        .and_then(Value::as_str);
    team.is_some_and(|team| teams.contains(team))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatemeter_query::TeamScope;
    use serde_json::json;

    #[test]
    fn routes_need_the_documented_roles() {
        let access = Access::default();
        assert_eq!(required_role("/healthz", &access), None);
        assert_eq!(required_role("/metrics", &access), Some(Role::Admin));
        assert_eq!(
            required_role("/metrics", &Access::new(Vec::new(), true)),
            None
        );
        assert_eq!(required_role("/api/v1/sql", &access), Some(Role::Finance));
        assert_eq!(
            required_role("/api/v1/queries/top_keys_by_spend", &access),
            Some(Role::Finance)
        );
        assert_eq!(required_role("/api/v1/kpis", &access), Some(Role::Viewer));
        assert_eq!(
            required_role("/api/v1/queriesx", &access),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn bearer_headers_parse_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  gmt_x "));
        assert_eq!(bearer_token(&headers), Some("gmt_x"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn scoped_principals_see_only_their_teams_entries() {
        let scoped = Principal {
            token_id: "t".into(),
            role: Role::Viewer,
            teams: TeamScope::only(["search".to_owned()]),
        };
        assert!(visible(&scoped, &json!({"scope": {"team": "search"}})));
        assert!(visible(&scoped, &json!({"labels": {"team": "search"}})));
        assert!(!visible(&scoped, &json!({"scope": {"team": "ads"}})));
        assert!(!visible(&scoped, &json!({"scope": {}})));
        assert!(visible(&Principal::open(), &json!({"scope": {}})));
    }
}
