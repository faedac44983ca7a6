//! UPDATE: DataFusion plans the new value of every column (cast to the column's type); the
//! coordinator removes the matching rows and inserts their updated versions in one epoch.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::logical_expr::{Filter, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::Statement;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::sql::sqlparser::ast::SelectItem;

use super::plan_dml;
use crate::catalog::Relation;
use crate::coordinator::{TableChange, Written};
use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};

/// RETURNING computes its items over the rows as updated.
pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    let (statement, returning) = super::insert::without_returning(statement);
    let (table, dml) = plan_dml(session, &statement, parameters).await?;
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
    let written = session
        .coordinator
        .write(
            table.id,
            TableChange::Update {
                predicate,
                assignments,
            },
        )
        .await?;
    let tag = CommandTag::with_rows("UPDATE", written.rows);
    with_returning(&table, written, returning, tag, |weight| weight > 0).await
}

/// The result of an UPDATE or DELETE: its tag, or with RETURNING its items over the written
/// rows whose weight `returned` picks (the new versions of updated rows, the deleted rows).
pub(super) async fn with_returning(
    table: &Relation,
    written: Written,
    returning: Option<Vec<SelectItem>>,
    tag: CommandTag,
    returned: impl Fn(i64) -> bool,
) -> Result<QueryResult> {
    let Some(items) = returning else {
        return Ok(QueryResult::Command(tag));
    };
    let rows = written
        .changes
        .iter()
        .map(|change| {
            let picked: BooleanArray = change
                .weights
                .values()
                .iter()
                .map(|&weight| Some(returned(weight)))
                .collect();
            datafusion::arrow::compute::filter_record_batch(&change.rows, &picked)
        })
        .collect::<std::result::Result<Vec<RecordBatch>, _>>()?;
    let (schema, batches) = super::insert::returning_rows(table, &rows, &items).await?;
    Ok(QueryResult::Returning {
        schema,
        batches,
        tag,
    })
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
