//! Team scoping (docs/security.md, "Tokens, roles and teams"): a token
//! scoped to teams sees only their rows. The scope rides in the session's
//! config and every raw lake table adds its filter inside the scan, below
//! every view, so no SQL (views, CTEs, subqueries, set operations, window
//! functions, EXPLAIN ANALYZE) can reach another team's rows.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use datafusion::logical_expr::{col, lit, Expr};

/// The teams a session may read: all of them, or a set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamScope(Option<Arc<BTreeSet<String>>>);

impl TeamScope {
    /// Every team's rows.
    pub fn all() -> TeamScope {
        TeamScope(None)
    }

    /// Only rows whose `team` is one of `teams` (none at all when empty).
    pub fn only(teams: impl IntoIterator<Item = String>) -> TeamScope {
        TeamScope(Some(Arc::new(teams.into_iter().collect())))
    }

    /// The teams of a scoped session; `None` for all.
    pub fn teams(&self) -> Option<&BTreeSet<String>> {
        self.0.as_deref()
    }

    /// The row filter a scan adds; `None` when unscoped.
    pub(crate) fn predicate(&self) -> Option<Expr> {
        let teams = self.0.as_ref()?;
        if teams.is_empty() {
            return Some(lit(false));
        }
        Some(col("team").in_list(teams.iter().map(|team| lit(team.as_str())).collect(), false))
    }
}

/// The scope of a session that is decided after the session is made (a
/// PostgreSQL connection forks its session before the client logs in).
/// Until it is set, the session reads no rows at all.
#[derive(Debug, Clone, Default)]
pub struct ScopeSlot(Arc<OnceLock<TeamScope>>);

impl ScopeSlot {
    pub fn filled(teams: TeamScope) -> ScopeSlot {
        ScopeSlot(Arc::new(OnceLock::from(teams)))
    }

    /// Sets the scope once; `false` if it was already set.
    pub fn set(&self, teams: TeamScope) -> bool {
        self.0.set(teams).is_ok()
    }

    fn predicate(&self) -> Option<Expr> {
        match self.0.get() {
            Some(teams) => teams.predicate(),
            None => Some(lit(false)),
        }
    }
}

/// The session config extension carrying the scope; a session without one
/// is unscoped (the CLI, the alert evaluator).
#[derive(Debug)]
pub(crate) struct RowScope {
    pub(crate) slot: ScopeSlot,
}

impl RowScope {
    /// The row filter a scan adds; `None` when unscoped.
    pub(crate) fn predicate(&self) -> Option<Expr> {
        self.slot.predicate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscoped_has_no_filter_empty_scope_reads_nothing() {
        assert_eq!(TeamScope::all().predicate(), None);
        assert_eq!(TeamScope::only([]).predicate(), Some(lit(false)));
        let scoped = TeamScope::only(["b".to_owned(), "a".to_owned()]);
        assert_eq!(
            scoped.predicate().map(|p| p.to_string()),
            Some("team IN ([Utf8(\"a\"), Utf8(\"b\")])".to_owned())
        );
    }

    #[test]
    fn an_unset_slot_reads_nothing_until_set_once() {
        let slot = ScopeSlot::default();
        let scope = RowScope { slot: slot.clone() };
        assert_eq!(scope.predicate(), Some(lit(false)));
        assert!(slot.set(TeamScope::all()));
        assert_eq!(scope.predicate(), None);
        assert!(!slot.set(TeamScope::only([])), "a scope is set once");
        assert_eq!(scope.predicate(), None);
    }
}
