//! INSERT: DataFusion plans the source (VALUES or a SELECT) cast to the table's columns; the rows
//! go to the coordinator and the statement returns once every view reflects them.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{DmlStatement, Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_plan::collect;
use datafusion::sql::sqlparser::ast::Statement;

use super::plan_dml;
use crate::catalog::Relation;
use crate::coordinator::TableChange;
use crate::error::{PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};

pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    let (table, dml) = plan_dml(session, statement, parameters).await?;
    check_assignable(&dml, &table)?;
    let state = &session.state;
    // VALUES has nothing to optimize (and is planned with the session's state); an
    // INSERT ... SELECT does.
    let physical = match dml.input.as_ref() {
        LogicalPlan::Projection(projection)
            if matches!(projection.input.as_ref(), LogicalPlan::Values(_)) =>
        {
            state
                .query_planner()
                .create_physical_plan(&dml.input, state)
                .await?
        }
        // A fresh state: optimizing folds now() with the time the state was taken.
        _ => {
            session
                .context
                .state()
                .create_physical_plan(&dml.input)
                .await?
        }
    };
    let batches = collect(physical, session.state.task_ctx()).await?;
    let rows = session
        .coordinator
        .write(table.id, TableChange::Insert(batches))
        .await?;
    Ok(QueryResult::Command(CommandTag::with_rows(
        "INSERT 0", rows,
    )))
}

/// Postgres's assignment rule: DataFusion would cast a boolean into an integer column (or a
/// number into a timestamp); Postgres refuses with 42804. Text literals may go anywhere.
fn check_assignable(dml: &DmlStatement, table: &Relation) -> Result<()> {
    let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
        return Ok(());
    };
    let input_schema = projection.input.schema();
    // With a table to insert into, DataFusion casts VALUES literals to the column types while
    // planning VALUES itself; those casts are where a mismatch hides.
    if let LogicalPlan::Values(values) = projection.input.as_ref() {
        for row in &values.values {
            for (index, cell) in row.iter().enumerate() {
                let Expr::Cast(cast) = cell else { continue };
                let source = cast.expr.get_type(input_schema)?;
                let target = cast.field.data_type();
                if !assignable(&source, target) {
                    let column = input_schema.field(index).name();
                    let name = projection
                        .expr
                        .iter()
                        .zip(table.schema.fields())
                        .find(|(expression, _)| {
                            expression
                                .column_refs()
                                .iter()
                                .any(|reference| reference.name() == column)
                        })
                        .map(|(_, field)| field.name().clone())
                        .unwrap_or_else(|| column.clone());
                    return Err(mismatch(&name, target, &source));
                }
            }
        }
    }
    for (expression, field) in projection.expr.iter().zip(table.schema.fields()) {
        let mut inner = expression;
        while let Expr::Alias(alias) = inner {
            inner = alias.expr.as_ref();
        }
        let source = match inner {
            Expr::Cast(cast) => cast.expr.get_type(input_schema)?,
            Expr::TryCast(cast) => cast.expr.get_type(input_schema)?,
            Expr::ScalarFunction(_) => continue,
            other => other.get_type(input_schema)?,
        };
        if !assignable(&source, field.data_type()) {
            return Err(mismatch(field.name(), field.data_type(), &source));
        }
    }
    Ok(())
}

fn assignable(source: &DataType, target: &DataType) -> bool {
    if source == target
        || matches!(
            source,
            DataType::Null | DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        )
    {
        return true;
    }
    let numeric = |t: &DataType| t.is_numeric();
    let temporal = |t: &DataType| t.is_temporal();
    match target {
        DataType::Boolean => matches!(source, DataType::Boolean),
        t if numeric(t) => numeric(source),
        t if temporal(t) => temporal(source),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
        _ => true,
    }
}

fn mismatch(column: &str, target: &DataType, source: &DataType) -> crate::error::Error {
    PlanError::DatatypeMismatch(format!(
        "column \"{column}\" is of type {} but expression is of type {}",
        crate::server::arrow_type_name(target),
        crate::server::arrow_type_name(source)
    ))
    .into()
}
