//! The Postgres dialect over DataFusion: parsing, Postgres column names and SQL types.

pub mod names;
pub mod types;

use datafusion::sql::sqlparser::ast::{ObjectName, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{ParseError, PlanError};

/// Splits and parses a query string into statements, in the Postgres dialect.
pub fn parse(sql: &str) -> Result<Vec<Statement>, ParseError> {
    Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|error| {
        let message = error.to_string();
        ParseError::Syntax(message.trim_start_matches("sql parser error: ").to_string())
    })
}

/// The name a relation is stored under: Postgres folds unquoted identifiers to lower case, and
/// `public.` (the only user schema) may be spelled out.
pub fn relation_name(name: &ObjectName) -> Result<String, PlanError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => Ok(identifier(ident)),
            None => Err(PlanError::Syntax(format!("invalid relation name {name}"))),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        _ => Err(PlanError::Unsupported(format!(
            "relation names outside schema public are not supported: {name}"
        ))),
    }
}

/// An identifier as Postgres resolves it: folded to lower case unless quoted.
pub fn identifier(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}
