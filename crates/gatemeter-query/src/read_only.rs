//! The SQL endpoint is read-only (docs/security.md): a statement is checked on its
//! syntax tree before anything is planned — exactly one query (or EXPLAIN of
//! one), no nested DML, no `SELECT … INTO`, no table named by a path or URL.
//! The plan is then verified again with DataFusion's [`SQLOptions`] (no DDL,
//! no DML, no SET), so a construct this check does not know still cannot
//! write.

use std::ops::ControlFlow;

use datafusion::execution::context::SQLOptions;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};

use crate::error::QueryError;

/// What a read-only caller may plan: queries only.
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

fn forbidden(reason: impl Into<String>) -> QueryError {
    QueryError::Forbidden(reason.into())
}

/// The first word of a statement, for the error message ("CREATE", "COPY").
fn verb(statement: &impl std::fmt::Display) -> String {
    statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or("statement")
        .to_uppercase()
}

/// How deep a statement may nest: expressions inside expressions, and set
/// operations (`UNION ALL` chains). Planning recurses over both, and a
/// client-chosen depth must end as a clear error, never as a stack overflow
/// or minutes of planning; dashboards and reports stay far below it.
pub const MAX_NESTING: usize = 256;

/// The longest literal a statement may hold. A constant is copied into
/// every row of a batch (8,192 rows) before any limit sees the result, so
/// a megabyte literal would be gigabytes.
pub const MAX_LITERAL_BYTES: usize = 64 << 10;

fn too_complex(what: &str, depth: usize) -> QueryError {
    QueryError::BadSql(format!(
        "statement too complex: {what} nested deeper than {MAX_NESTING} (found {depth})"
    ))
}

/// How many set operations are nested in `body`, walked without recursion.
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0usize)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if let SetExpr::SetOperation { left, right, .. } = expr {
            pending.push((left, depth + 1));
            pending.push((right, depth + 1));
        }
    }
    deepest
}

/// Walks a query for anything that writes or reads outside the lake, and
/// for nesting past [`MAX_NESTING`].
#[derive(Default)]
struct ReadOnlyVisitor {
    expression_depth: usize,
}

impl Visitor for ReadOnlyVisitor {
    type Break = QueryError;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<QueryError> {
        if let Expr::Value(value) = expr {
            let length = value.to_string().len();
            if length > MAX_LITERAL_BYTES {
                return ControlFlow::Break(QueryError::BadSql(format!(
                    "a literal of {length} bytes is over the limit of {MAX_LITERAL_BYTES}"
                )));
            }
        }
        self.expression_depth += 1;
        if self.expression_depth > MAX_NESTING {
            return ControlFlow::Break(too_complex("expressions", self.expression_depth));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<QueryError> {
        self.expression_depth = self.expression_depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<QueryError> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            other => ControlFlow::Break(forbidden(format!(
                "{} is not allowed inside a query",
                verb(other)
            ))),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<QueryError> {
        let depth = set_operation_depth(&query.body);
        if depth > MAX_NESTING {
            return ControlFlow::Break(too_complex("set operations", depth));
        }
        if let SetExpr::Select(select) = query.body.as_ref() {
            if select.into.is_some() {
                return ControlFlow::Break(forbidden(
                    "SELECT … INTO creates a table; SQL here is read-only",
                ));
            }
        }
        match query.body.as_ref() {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break(forbidden(
                    "data-modifying statements are not allowed; SQL here is read-only",
                ))
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<QueryError> {
        let name = relation.to_string();
        if name.contains('/') || name.contains('\\') || name.contains(':') || name.contains('\'') {
            return ControlFlow::Break(forbidden(format!(
                "table {name} looks like a path or URL; only the lake's tables and views can be read"
            )));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<QueryError> {
        match factor {
            TableFactor::Table {
                args: Some(_),
                name,
                ..
            } => {
                let lowered = name.to_string().to_lowercase();
                // Table functions that read files would reach outside the lake.
                if lowered.starts_with("read_")
                    || lowered.contains("parquet")
                    || lowered.contains("csv")
                    || lowered.contains("json")
                {
                    return ControlFlow::Break(forbidden(format!(
                        "table function {name} is not allowed"
                    )));
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Refuses anything but a single read-only query, with the reason.
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| QueryError::BadSql(e.to_string()))?;
    match statements.len() {
        0 => Err(QueryError::BadSql("no statement given".into())),
        1 => check_statement(&statements[0], false),
        n => Err(forbidden(format!(
            "{n} statements given; send exactly one query"
        ))),
    }
}

/// The same check on a statement another parser already produced (the
/// PostgreSQL endpoint's): the tree that will be planned is the tree that
/// is checked, so no re-printing or dialect difference can slip past.
pub fn check_parsed_statement(statement: &Statement) -> Result<(), QueryError> {
    check_sql_statement(statement, false)
}

/// A query, or EXPLAIN of one (`explained`: already inside an EXPLAIN).
fn check_sql_statement(statement: &Statement, explained: bool) -> Result<(), QueryError> {
    let query = match statement {
        Statement::Query(_) => statement,
        Statement::Explain {
            statement: inner, ..
        } if !explained && matches!(inner.as_ref(), Statement::Query(_)) => inner.as_ref(),
        other => {
            return Err(forbidden(format!(
                "{} is not allowed; SQL here is read-only",
                verb(other)
            )));
        }
    };
    match query.visit(&mut ReadOnlyVisitor::default()) {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// DataFusion's statement kinds around [`check_sql_statement`].
fn check_statement(statement: &DfStatement, explained: bool) -> Result<(), QueryError> {
    match statement {
        DfStatement::Statement(statement) => check_sql_statement(statement, explained),
        DfStatement::Explain(explain) if !explained => check_statement(&explain.statement, true),
        DfStatement::Explain(_) => Err(forbidden("EXPLAIN is allowed only for a query")),
        DfStatement::CreateExternalTable(_) => Err(forbidden(
            "CREATE EXTERNAL TABLE is not allowed; only the lake can be read",
        )),
        DfStatement::CopyTo(_) => Err(forbidden("COPY is not allowed; SQL here is read-only")),
        DfStatement::Reset(_) => Err(forbidden("RESET is not allowed; SQL here is read-only")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "SELECT team, sum(cost_usd) FROM attempts GROUP BY team",
            "WITH t AS (SELECT * FROM requests) SELECT count(*) FROM t",
            "EXPLAIN SELECT * FROM attempts",
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM attempts UNION ALL SELECT * FROM attempts",
            format!("SELECT {}", vec!["1"; 200].join("+")).as_str(),
        ] {
            assert!(
                check_read_only(sql).is_ok(),
                "{sql}: {:?}",
                check_read_only(sql)
            );
        }
    }

    #[test]
    fn writes_are_refused_with_a_reason() {
        for (sql, reason) in [
            ("DROP TABLE attempts", "DROP"),
            ("INSERT INTO attempts SELECT * FROM attempts", "INSERT"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            (
                "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
                "EXTERNAL",
            ),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("SELECT * INTO t FROM attempts", "INTO"),
            ("SELECT * FROM '/etc/passwd'", "path or URL"),
            ("EXPLAIN DELETE FROM attempts", "DELETE"),
            ("EXPLAIN COPY attempts TO '/tmp/x'", "COPY"),
            (
                format!("SELECT {}", vec!["1"; 4000].join("+")).as_str(),
                "too complex",
            ),
            (
                vec!["SELECT 1"; 2000].join(" UNION ALL ").as_str(),
                "too complex",
            ),
            (
                format!("SELECT '{}'", "x".repeat(70_000)).as_str(),
                "over the limit",
            ),
        ] {
            let error = check_read_only(sql).expect_err(sql).to_string();
            assert!(error.contains(reason), "{sql}: {error}");
        }
    }
}
