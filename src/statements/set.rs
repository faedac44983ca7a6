//! Session statements: SET, SHOW (one parameter or ALL), RESET, DISCARD, DEALLOCATE, BEGIN,
//! COMMIT, ROLLBACK.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{DiscardObject, Ident, Reset, Set, Statement};

use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session, TransactionChange};

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

fn is_show_all(variable: &[Ident]) -> bool {
    variable_name(variable) == "all"
}

pub(super) fn show_schema(variable: &[Ident]) -> SchemaRef {
    if is_show_all(variable) {
        return Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("setting", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, false),
        ]));
    }
    Arc::new(Schema::new(vec![Field::new(
        variable_name(variable),
        DataType::Utf8,
        false,
    )]))
}

pub(super) fn execute(session: &Session, statement: &Statement) -> Result<QueryResult> {
    let variables = &session.variables;
    match statement {
        Statement::ShowVariable { variable } => {
            let schema = show_schema(variable);
            let columns = if is_show_all(variable) {
                let all = variables.all();
                vec![
                    Arc::new(StringArray::from_iter_values(all.iter().map(|a| &a.0))) as _,
                    Arc::new(StringArray::from_iter_values(all.iter().map(|a| &a.1))) as _,
                    Arc::new(StringArray::from_iter_values(all.iter().map(|a| &a.2))) as _,
                ]
            } else {
                let name = variable_name(variable);
                let value = variables
                    .get(&name)
                    .ok_or_else(|| PlanError::UndefinedParameter(name.clone()))?;
                vec![Arc::new(StringArray::from(vec![value])) as _]
            };
            let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
            Ok(QueryResult::Rows {
                schema,
                batches: vec![batch],
            })
        }
        Statement::Set(Set::SingleAssignment {
            variable, values, ..
        }) => {
            let value = values
                .iter()
                .map(|value| value.to_string().trim_matches('\'').to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if variable
                .to_string()
                .eq_ignore_ascii_case("statement_timeout")
            {
                crate::session::parse_statement_timeout(&value)?;
            }
            variables.set(&variable.to_string(), value);
            Ok(command("SET"))
        }
        Statement::Set(_) => Ok(command("SET")),
        Statement::Reset(reset) => {
            match &reset.reset {
                Reset::ALL => variables.reset_all(),
                Reset::ConfigurationParameter(name) => variables.reset(&name.to_string()),
            }
            Ok(command("RESET"))
        }
        Statement::Discard { object_type } => {
            // Connection poolers send DISCARD ALL between clients: forget the session's
            // parameters and cached plans.
            match object_type {
                DiscardObject::ALL => {
                    variables.reset_all();
                    session.forget_plans();
                }
                DiscardObject::PLANS => session.forget_plans(),
                DiscardObject::SEQUENCES | DiscardObject::TEMP => {}
            }
            Ok(command(&format!("DISCARD {object_type}")))
        }
        Statement::Deallocate { name, .. } => {
            // Prepared statements of the protocol are closed by the protocol; SQL PREPARE is not
            // supported, so only ALL names something.
            if name.value.eq_ignore_ascii_case("all") && name.quote_style.is_none() {
                session.forget_plans();
                Ok(command("DEALLOCATE ALL"))
            } else {
                Err(PlanError::UndefinedPreparedStatement(name.value.clone()).into())
            }
        }
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
        // Every statement commits on its own (see the README), so savepoints mark nothing and
        // ROLLBACK TO one leaves the transaction block open, as in Postgres.
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Ok(command("ROLLBACK")),
        Statement::Rollback { .. } => Ok(QueryResult::Command(CommandTag {
            command: "ROLLBACK".into(),
            rows: None,
            transaction: Some(TransactionChange::End),
        })),
        Statement::Savepoint { .. } => Ok(command("SAVEPOINT")),
        Statement::ReleaseSavepoint { .. } => Ok(command("RELEASE")),
        other => Err(PlanError::Unsupported(format!("statement not supported: {other}")).into()),
    }
}

fn command(tag: &str) -> QueryResult {
    QueryResult::Command(CommandTag::new(tag))
}
