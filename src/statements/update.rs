//! UPDATE: DataFusion plans the new value of every column (cast to the column's type); the
//! coordinator removes the matching rows and inserts their updated versions in one epoch.

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, in_list};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::Statement;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::sql::sqlparser::ast::SelectItem;

use super::plan_dml;
use crate::catalog::Relation;
use crate::coordinator::{TableChange, Written};
use crate::error::{ExecutionError, PlanError, Result};
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
            Some(compile_predicate(session, filter).await?)
        }
        _ => return Err(PlanError::Unsupported("UPDATE ... FROM is not supported".into()).into()),
    };
    let mut assignments = Vec::with_capacity(projection.expr.len());
    for expression in &projection.expr {
        let expression = subqueries_as_values(session, expression.clone()).await?;
        assignments.push(compile(&expression, projection.input.schema())?);
    }
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

/// A WHERE clause compiled for the coordinator to evaluate on the table's rows.
pub(super) async fn compile_predicate(
    session: &Session,
    filter: &Filter,
) -> Result<Arc<dyn PhysicalExpr>> {
    let predicate = subqueries_as_values(session, filter.predicate.clone()).await?;
    compile(&predicate, filter.input.schema())
}

/// `expression` with each uncorrelated subquery run now, against the statement's snapshot, and
/// replaced by what it returned: a scalar subquery by its value, `x IN (SELECT ...)` by a list
/// of the values, EXISTS by true or false. dbt's incremental models delete `WHERE id IN (SELECT
/// id FROM new_rows)`. A correlated subquery is left in place (and refused when compiled).
async fn subqueries_as_values(session: &Session, expression: Expr) -> Result<Expr> {
    let mut uncorrelated = Vec::new();
    expression.apply(|node| {
        let subquery = match node {
            Expr::ScalarSubquery(subquery) => subquery,
            Expr::InSubquery(in_subquery) => &in_subquery.subquery,
            Expr::Exists(exists) => &exists.subquery,
            _ => return Ok(TreeNodeRecursion::Continue),
        };
        if subquery.outer_ref_columns.is_empty() {
            uncorrelated.push(node.clone());
        }
        Ok(TreeNodeRecursion::Jump)
    })?;
    let mut values = Vec::with_capacity(uncorrelated.len());
    for node in uncorrelated {
        let value = match &node {
            Expr::ScalarSubquery(subquery) => {
                let mut rows = subquery_values(session, &subquery.subquery).await?;
                if rows.len() > 1 {
                    return Err(ExecutionError::SubqueryReturnedRows.into());
                }
                let data_type = subquery.subquery.schema().field(0).data_type().clone();
                Expr::Literal(
                    match rows.pop() {
                        Some(value) => value,
                        None => ScalarValue::try_from(&data_type)?,
                    },
                    None,
                )
            }
            Expr::InSubquery(in_subquery) => {
                let list: Vec<Expr> = subquery_values(session, &in_subquery.subquery.subquery)
                    .await?
                    .into_iter()
                    .map(|value| Expr::Literal(value, None))
                    .collect();
                if list.is_empty() {
                    // Nothing is IN an empty set, not even NULL.
                    Expr::Literal(ScalarValue::Boolean(Some(in_subquery.negated)), None)
                } else {
                    in_list(*in_subquery.expr.clone(), list, in_subquery.negated)
                }
            }
            Expr::Exists(exists) => {
                let found = !subquery_values(session, &exists.subquery.subquery)
                    .await?
                    .is_empty();
                Expr::Literal(ScalarValue::Boolean(Some(found != exists.negated)), None)
            }
            _ => continue,
        };
        values.push((node, value));
    }
    if values.is_empty() {
        return Ok(expression);
    }
    Ok(expression
        .transform_down(
            |node| match values.iter().find(|(subquery, _)| *subquery == node) {
                Some((_, value)) => Ok(Transformed::new(
                    value.clone(),
                    true,
                    TreeNodeRecursion::Jump,
                )),
                None => Ok(Transformed::no(node)),
            },
        )?
        .data)
}

/// The first column of a subquery's rows.
async fn subquery_values(session: &Session, plan: &LogicalPlan) -> Result<Vec<ScalarValue>> {
    let mut values = Vec::new();
    for batch in super::insert::run(session, plan).await? {
        for row in 0..batch.num_rows() {
            values.push(ScalarValue::try_from_array(batch.column(0), row)?);
        }
    }
    Ok(values)
}

fn compile(
    expression: &datafusion::logical_expr::Expr,
    schema: &datafusion::common::DFSchema,
) -> Result<Arc<dyn PhysicalExpr>> {
    crate::planner::physical_expr(expression, schema)
}
