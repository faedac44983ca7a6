//! INSERT: DataFusion plans the source (VALUES or a SELECT) cast to the table's columns; the rows
//! go to the coordinator and the statement returns once every view reflects them.

use datafusion::common::ParamValues;
use datafusion::physical_plan::collect;
use datafusion::sql::sqlparser::ast::Statement;

use super::plan_dml;
use crate::coordinator::TableChange;
use crate::error::Result;
use crate::session::{CommandTag, QueryResult, Session};

pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    let (table, dml) = plan_dml(session, statement, parameters).await?;
    let state = session.context.state();
    let physical = state.create_physical_plan(&dml.input).await?;
    let batches = collect(physical, session.context.task_ctx()).await?;
    let rows = session
        .coordinator
        .write(table.id, TableChange::Insert(batches))
        .await?;
    Ok(QueryResult::Command(CommandTag::with_rows(
        "INSERT 0", rows,
    )))
}
