//! DELETE: the WHERE predicate is compiled here and evaluated by the coordinator against the
//! table's current rows, so concurrent statements never delete the same row twice.

use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;

use super::plan_dml;
use super::update::{compile_predicate, with_returning};
use crate::coordinator::TableChange;
use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};

/// RETURNING computes its items over the deleted rows.
pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    let (statement, returning) = super::insert::without_returning(statement);
    let (table, dml) = plan_dml(session, &statement, parameters).await?;
    let predicate = match dml.input.as_ref() {
        LogicalPlan::TableScan(_) => None,
        LogicalPlan::Filter(filter) => Some(compile_predicate(session, filter).await?),
        other => {
            return Err(PlanError::Unsupported(format!(
                "DELETE with {} is not supported",
                other.display()
            ))
            .into());
        }
    };
    let written = session
        .coordinator
        .write(table.id, TableChange::Delete { predicate })
        .await?;
    let tag = CommandTag::with_rows("DELETE", written.rows);
    with_returning(&table, written, returning, tag, |weight| weight < 0).await
}
