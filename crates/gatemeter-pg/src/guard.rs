//! The read-only gate of the PostgreSQL endpoint, as a query hook that runs
//! before any other: every statement passes the same syntax-tree check as
//! `POST /api/v1/sql`, and `SET` only touches the connection's client
//! settings, never the engine's.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::PgWireResult;
use gatemeter_query::read_only::check_read_only;
use gatemeter_query::QueryEngine;

use crate::error::{read_only_violation, server_error};

/// Client settings the built-in `SET` hook keeps per connection.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// What becomes of a `SET`.
#[derive(Debug, PartialEq, Eq)]
enum SetVerdict {
    /// A client setting: the built-in hook stores it for the connection.
    ClientSetting,
    /// Anything else clients send on connect (`client_encoding`, time
    /// zone, …): answered `SET`, changes nothing.
    Acknowledge,
    /// An engine option (`datafusion.*`): memory, threads and spilling are
    /// the server's limits, not the client's.
    Refuse,
}

fn judge_set(set: &Set) -> SetVerdict {
    if set.to_string().to_lowercase().contains("datafusion.") {
        return SetVerdict::Refuse;
    }
    match set {
        Set::SingleAssignment { variable, .. }
            if CLIENT_SETTINGS.contains(&variable.to_string().to_lowercase().as_str()) =>
        {
            SetVerdict::ClientSetting
        }
        _ => SetVerdict::Acknowledge,
    }
}

/// Statements the later built-in hooks answer without touching data.
fn answered_by_builtin_hooks(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
    )
}

pub struct ReadOnlyGuard {
    engine: Arc<QueryEngine>,
}

impl ReadOnlyGuard {
    pub fn new(engine: Arc<QueryEngine>) -> ReadOnlyGuard {
        ReadOnlyGuard { engine }
    }

    /// `None` lets the statement through; `Some(error)` refuses it.
    fn refusal(statement: &Statement) -> Option<datafusion_postgres::pgwire::error::PgWireError> {
        if let Statement::Set(set) = statement {
            return (judge_set(set) == SetVerdict::Refuse).then(|| {
                read_only_violation(&format!(
                    "`{set}` would change the engine's limits; they are set by the server"
                ))
            });
        }
        if answered_by_builtin_hooks(statement) {
            return None;
        }
        check_read_only(&statement.to_string())
            .err()
            .map(|e| read_only_violation(&e.to_string()))
    }

    /// Applies commits made since the last query, so each statement sees the
    /// lake as it is now.
    async fn refresh(&self) -> Option<PgWireResult<Response>> {
        match self.engine.refresh().await {
            Ok(_) => None,
            Err(e) => Some(Err(server_error(&e))),
        }
    }
}

#[async_trait]
impl QueryHook for ReadOnlyGuard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(error) = Self::refusal(statement) {
            return Some(Err(error));
        }
        match statement {
            Statement::Set(set) if judge_set(set) == SetVerdict::Acknowledge => {
                Some(Ok(Response::Execution(Tag::new("SET"))))
            }
            statement
                if matches!(statement, Statement::Set(_))
                    || answered_by_builtin_hooks(statement) =>
            {
                None
            }
            _ => self.refresh().await,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::refusal(statement).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Parsing refused what is not allowed; here only freshness is left.
        if matches!(statement, Statement::Set(_)) || answered_by_builtin_hooks(statement) {
            return None;
        }
        self.refresh().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn set_of(sql: &str) -> Set {
        match Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0)
        {
            Statement::Set(set) => set,
            other => panic!("not a SET: {other}"),
        }
    }

    #[test]
    fn engine_options_are_refused_client_settings_kept() {
        assert_eq!(
            judge_set(&set_of("SET datafusion.runtime.memory_limit = '100G'")),
            SetVerdict::Refuse
        );
        assert_eq!(
            judge_set(&set_of("SET DataFusion.Execution.Target_Partitions TO 64")),
            SetVerdict::Refuse
        );
        assert_eq!(
            judge_set(&set_of("SET application_name = 'grafana'")),
            SetVerdict::ClientSetting
        );
        assert_eq!(
            judge_set(&set_of("SET extra_float_digits = 3")),
            SetVerdict::ClientSetting
        );
        assert_eq!(
            judge_set(&set_of("SET client_encoding = 'UTF8'")),
            SetVerdict::Acknowledge
        );
        assert_eq!(
            judge_set(&set_of("SET TIME ZONE 'UTC'")),
            SetVerdict::Acknowledge
        );
    }

    #[test]
    fn writes_are_refused_reads_pass() {
        let statement = |sql: &str| {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parses")
                .remove(0)
        };
        for sql in [
            "CREATE TABLE t (a INT)",
            "INSERT INTO price_book VALUES (1)",
            "DROP VIEW attempts",
            "COPY attempts TO '/tmp/x.parquet'",
            "UPDATE attempts SET team = 'x'",
        ] {
            assert!(
                ReadOnlyGuard::refusal(&statement(sql)).is_some(),
                "{sql} must be refused"
            );
        }
        for sql in [
            "SELECT 1",
            "SELECT team, sum(cost_usd) FROM attempts GROUP BY team",
            "SHOW TIME ZONE",
            "BEGIN",
            "COMMIT",
        ] {
            assert!(
                ReadOnlyGuard::refusal(&statement(sql)).is_none(),
                "{sql} must pass"
            );
        }
    }
}
