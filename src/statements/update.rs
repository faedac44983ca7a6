//! UPDATE: DataFusion plans the new value of every column (cast to the column's type); the
//! coordinator removes the matching rows and inserts their updated versions in one epoch.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::logical_expr::{Filter, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::Statement;

use super::plan_dml;
use crate::coordinator::TableChange;
use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};

pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    let (table, dml) = plan_dml(session, statement, parameters).await?;
    let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
        return Err(PlanError::Unsupported("UPDATE of this form is not supported".into()).into());
    };
    let predicate = match projection.input.as_ref() {
        LogicalPlan::TableScan(_) => None,
        LogicalPlan::Filter(filter)
            if matches!(filter.input.as_ref(), LogicalPlan::TableScan(_)) =>
        {
            Some(compile_predicate(filter)?)
        }
        _ => return Err(PlanError::Unsupported("UPDATE ... FROM is not supported".into()).into()),
    };
    let assignments = projection
        .expr
        .iter()
        .map(|expression| compile(expression, projection.input.schema()))
        .collect::<Result<Vec<_>>>()?;
    let rows = session
        .coordinator
        .write(
            table.id,
            TableChange::Update {
                predicate,
                assignments,
            },
        )
        .await?;
    Ok(QueryResult::Command(CommandTag::with_rows("UPDATE", rows)))
}

pub(super) fn compile_predicate(filter: &Filter) -> Result<Arc<dyn PhysicalExpr>> {
    compile(&filter.predicate, filter.input.schema())
}

fn compile(
    expression: &datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Arc<dyn PhysicalExpr>> {
    crate::planner::physical_expr(expression, schema)
}
