//! Prepared statements of the extended protocol: parsed and described once at Parse.

use std::sync::Arc;

use crate::sql::Statement;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::api::stmt::QueryParser;
use pgwire::api::{ClientInfo, Type};
use pgwire::error::PgWireResult;

use super::{encode, to_pgwire_error};
use crate::error::ParseError;
use crate::session::Session;

/// A statement as the portal store keeps it.
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    pub statement: Statement,
    /// `$n`'s type as DataFusion inferred it at Parse, if it could.
    pub parameter_types: Vec<Option<DataType>>,
    pub result_schema: Option<SchemaRef>,
}

/// Parses and describes statements for one connection's session.
pub struct StatementParser {
    pub session: Arc<Session>,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = crate::sql::parse(sql).map_err(|e| to_pgwire_error(&e.into()))?;
        if types
            .iter()
            .any(|declared| declared.as_ref() == Some(&Type::VOID))
            && let Some(Statement::Standard(statement)) = statements.first_mut()
        {
            let is_void = |name: &str| {
                name.strip_prefix('$')
                    .and_then(|number| number.parse::<usize>().ok())
                    .and_then(|number| types.get(number.checked_sub(1)?))
                    .is_some_and(|declared| declared.as_ref() == Some(&Type::VOID))
            };
            crate::sql::functions_in_from::drop_void_arguments(statement, &is_void);
        }
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            _ => {
                let error = ParseError::Syntax(
                    "cannot insert multiple commands into a prepared statement".into(),
                );
                return Err(to_pgwire_error(&error.into()));
            }
        };
        let description = self
            .session
            .describe(&statement)
            .await
            .map_err(|e| to_pgwire_error(&e))?;
        Ok(Some(PreparedStatement {
            statement,
            parameter_types: description.parameter_types,
            result_schema: description.result_schema,
        }))
    }

    fn get_parameter_types(&self, statement: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        Ok(statement
            .parameter_types
            .iter()
            .map(|data_type| {
                data_type
                    .as_ref()
                    .and_then(super::types::arrow_to_pg_type)
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect())
    }

    fn get_result_schema(
        &self,
        statement: &PreparedStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.result_schema {
            Some(schema) => encode::fields(schema, column_format.unwrap_or(&Format::UnifiedText)),
            None => Ok(Vec::new()),
        }
    }
}
