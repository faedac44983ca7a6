//! Session statements: SET, SHOW variable, BEGIN, COMMIT, ROLLBACK.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{Ident, Set, Statement};

use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session, TransactionChange};

/// Parameters every session starts with, as Postgres 16 reports them.
const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("timezone", "UTC"),
    ("intervalstyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("search_path", "public"),
    ("transaction_isolation", "read committed"),
    ("application_name", ""),
    ("extra_float_digits", "1"),
];

fn variable_name(variable: &[Ident]) -> String {
    let name = variable
        .iter()
        .map(|ident| ident.value.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    match name.as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "timezone".into(),
        _ => name,
    }
}

pub(super) fn show_schema(variable: &[Ident]) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        variable_name(variable),
        DataType::Utf8,
        false,
    )]))
}

pub(super) fn execute(session: &Session, statement: &Statement) -> Result<QueryResult> {
    match statement {
        Statement::ShowVariable { variable } => {
            let name = variable_name(variable);
            let value = session
                .settings
                .lock()
                .ok()
                .and_then(|settings| settings.get(&name).cloned())
                .or_else(|| {
                    DEFAULTS
                        .iter()
                        .find(|(key, _)| *key == name)
                        .map(|(_, value)| value.to_string())
                })
                .ok_or_else(|| PlanError::UndefinedParameter(name.clone()))?;
            let schema = show_schema(variable);
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(StringArray::from(vec![value]))],
            )?;
            Ok(QueryResult::Rows {
                schema,
                batches: vec![batch],
            })
        }
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let name = variable.to_string().to_lowercase();
            let value = values
                .iter()
                .map(|value| value.to_string().trim_matches('\'').to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(mut settings) = session.settings.lock() {
                settings.insert(name, value);
            }
            Ok(QueryResult::Command(CommandTag::new("SET")))
        }
        Statement::Set(_) => Ok(QueryResult::Command(CommandTag::new("SET"))),
        Statement::StartTransaction { .. } => Ok(QueryResult::Command(CommandTag {
            command: "BEGIN".into(),
            rows: None,
            transaction: Some(TransactionChange::Begin),
        })),
        Statement::Commit { .. } => Ok(QueryResult::Command(CommandTag {
            command: "COMMIT".into(),
            rows: None,
            transaction: Some(TransactionChange::End),
        })),
        Statement::Rollback { .. } => Ok(QueryResult::Command(CommandTag {
            command: "ROLLBACK".into(),
            rows: None,
            transaction: Some(TransactionChange::End),
        })),
        other => Err(PlanError::Unsupported(format!("statement not supported: {other}")).into()),
    }
}
