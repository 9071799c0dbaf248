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
use gatemeter_query::read_only::check_parsed_statement;
use gatemeter_query::QueryEngine;

use crate::error::{read_only_violation, server_error};

/// Client settings the built-in `SET` hook keeps per connection. Only
/// these reach it: for any other name it would hand the statement to
/// DataFusion, which changes the session's engine options.
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
    /// Anything else clients send on connect (`client_encoding`, the time
    /// zone, …):
    /// answered `SET` here, changes nothing.
    Acknowledge,
    /// An engine option (`datafusion.*`, however quoted or spaced): memory,
    /// threads, spilling, paths and the dialect are the server's.
    Refuse,
}

/// `set` as one lowercase word run, quotes and spaces gone, so
/// `SET "DataFusion" . "execution"…` reads as `setdatafusion.execution…`.
fn normalized(set: &Set) -> String {
    set.to_string()
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '"' | '`' | '[' | ']'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn judge_set(set: &Set) -> SetVerdict {
    if normalized(set).contains("datafusion") {
        return SetVerdict::Refuse;
    }
    match set {
        Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            ..
        } if CLIENT_SETTINGS.contains(&variable.to_string().to_lowercase().as_str()) => {
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
        check_parsed_statement(statement)
            .err()
            .map(|e| read_only_violation(&e.to_string()))
    }

    /// After [`Self::refusal`] let `statement` through: `SET`s other than
    /// client settings are answered here; client settings and the
    /// transaction and `SHOW` statements go on to the built-in hooks; a
    /// query first sees the commits made since the last one.
    async fn answer(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
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
        self.answer(statement).await
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
        // Parsing refused what is not allowed; both protocols answer the rest
        // alike, so no `SET` reaches the engine by either.
        self.answer(statement).await
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
        for quoted in [
            r#"SET "datafusion".execution.target_partitions = 64"#,
            r#"SET "datafusion"."sql_parser"."dialect" = 'mysql'"#,
            r#"SET "DATAFUSION.runtime.memory_limit" TO '100G'"#,
            "SET LOCAL datafusion.execution.batch_size = 1",
        ] {
            assert_eq!(judge_set(&set_of(quoted)), SetVerdict::Refuse, "{quoted}");
        }
        assert_eq!(
            judge_set(&set_of("SET application_name = 'grafana'")),
            SetVerdict::ClientSetting
        );
        // Quoted or scoped, a client setting's name is no longer one the
        // built-in hook knows; it would pass the statement to the engine.
        assert_eq!(
            judge_set(&set_of(r#"SET "search_path" = 'x'"#)),
            SetVerdict::Acknowledge
        );
        assert_eq!(
            judge_set(&set_of("SET LOCAL search_path = 'x'")),
            SetVerdict::Acknowledge
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
