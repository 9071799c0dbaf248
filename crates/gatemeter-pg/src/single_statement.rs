//! The extended protocol carries one statement per Parse, as PostgreSQL
//! insists ("cannot insert multiple commands into a prepared statement").
//! datafusion-postgres would keep the first statement and silently drop
//! the rest; here a Parse of several is an error the client sees.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser as SqlParser;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::FieldInfo;
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::error::PgWireResult;
use datafusion_postgres::Parser;

use crate::error::syntax_error;

pub struct SingleStatementParser {
    inner: Arc<Parser>,
}

impl SingleStatementParser {
    pub fn new(inner: Arc<Parser>) -> SingleStatementParser {
        SingleStatementParser { inner }
    }
}

/// How many statements `sql` holds; `None` when it does not parse (the
/// inner parser then reports why).
fn statement_count(sql: &str) -> Option<usize> {
    SqlParser::parse_sql(&PostgreSqlDialect {}, sql)
        .ok()
        .map(|statements| statements.len())
}

#[async_trait]
impl QueryParser for SingleStatementParser {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if statement_count(sql).is_some_and(|count| count > 1) {
            return Err(syntax_error(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(statement, column_format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_statements_are_counted() {
        assert_eq!(statement_count("SELECT 1"), Some(1));
        assert_eq!(statement_count("SELECT 1; DROP TABLE attempts"), Some(2));
        assert_eq!(statement_count("SELECT 1;"), Some(1));
        assert_eq!(statement_count("SELEC nonsense ("), None);
    }
}
