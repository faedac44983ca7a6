//! INSERT: DataFusion plans the source (VALUES or a SELECT) cast to the table's columns; the rows
//! go to the coordinator and the statement returns once every view reflects them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DFSchema, ParamValues, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, DmlStatement, Expr, ExprSchemable, LogicalPlan, Projection, Values,
};
use datafusion::physical_plan::collect;
use datafusion::sql::sqlparser::ast::{SelectItem, Statement};

use super::{depends_on_time_or_chance, plan_dml};
use crate::catalog::{Relation, without_constraints};
use crate::coordinator::TableChange;
use crate::error::{Error, ExecutionError, PlanError, Result};
use crate::planner::physical_expr;
use crate::session::{CommandTag, QueryResult, Session};

pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    // DataFusion plans no RETURNING: the rows are written without it, then it is computed
    // over them.
    let (statement, returning) = without_returning(statement);
    let (table, dml) = plan_dml(session, &statement, parameters).await?;
    check_assignable(&dml, &table)?;
    let batches = match dml.input.as_ref() {
        LogicalPlan::Projection(projection) => match projection.input.as_ref() {
            // now() and friends need DataFusion's simplifier, which fixes the statement's time.
            LogicalPlan::Values(values) if !depends_on_time_or_chance(&dml.input) => {
                match evaluate_values(projection, values) {
                    Ok(batch) => vec![batch],
                    // What the direct path cannot compute goes to DataFusion: subqueries in
                    // VALUES (DataFusion refuses them too, with 0A000), and functions its
                    // simplifier rewrites first (coalesce).
                    Err(
                        Error::Plan(PlanError::Unsupported(_))
                        | Error::Execution(ExecutionError::Internal(_)),
                    ) => run(session, &dml.input).await?,
                    Err(error) => return Err(error),
                }
            }
            _ => run(session, &dml.input).await?,
        },
        _ => run(session, &dml.input).await?,
    };
    let inserted = returning.as_ref().map(|_| batches.clone());
    let rows = session
        .coordinator
        .write(table.id, TableChange::Insert(batches))
        .await?
        .rows;
    let tag = CommandTag::with_rows("INSERT 0", rows);
    match (returning, inserted) {
        (Some(items), Some(inserted)) => {
            let (schema, batches) = returning_rows(&table, &inserted, &items).await?;
            Ok(QueryResult::Returning {
                schema,
                batches,
                tag,
            })
        }
        _ => Ok(QueryResult::Command(tag)),
    }
}

/// The statement (INSERT, UPDATE or DELETE) without its RETURNING list, and the list.
pub(super) fn without_returning(
    statement: &Statement,
) -> (std::borrow::Cow<'_, Statement>, Option<Vec<SelectItem>>) {
    match statement {
        Statement::Insert(insert) if insert.returning.is_some() => {
            let mut stripped = insert.clone();
            let returning = stripped.returning.take();
            (
                std::borrow::Cow::Owned(Statement::Insert(stripped)),
                returning,
            )
        }
        Statement::Update(update) if update.returning.is_some() => {
            let mut stripped = update.clone();
            let returning = stripped.returning.take();
            (
                std::borrow::Cow::Owned(Statement::Update(stripped)),
                returning,
            )
        }
        Statement::Delete(delete) if delete.returning.is_some() => {
            let mut stripped = delete.clone();
            let returning = stripped.returning.take();
            (
                std::borrow::Cow::Owned(Statement::Delete(stripped)),
                returning,
            )
        }
        _ => (std::borrow::Cow::Borrowed(statement), None),
    }
}

/// RETURNING's items computed over the rows a statement wrote to `table`, with the column
/// names Postgres gives them. The rows are a one-off table of their own, named as the table is,
/// so that `RETURNING *`, `RETURNING id` and `RETURNING t.id * 2` read them.
pub(super) async fn returning_rows(
    table: &Relation,
    rows: &[RecordBatch],
    items: &[SelectItem],
) -> Result<(datafusion::arrow::datatypes::SchemaRef, Vec<RecordBatch>)> {
    let schema = without_constraints(&table.schema);
    let rows = rows
        .iter()
        .map(|batch| RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let written = datafusion::datasource::MemTable::try_new(Arc::clone(&schema), vec![rows])?;
    let config = datafusion::prelude::SessionConfig::new()
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
    let context = datafusion::prelude::SessionContext::new_with_config(config);
    context.register_table(
        datafusion::common::TableReference::bare(table.name.clone()),
        Arc::new(written),
    )?;
    let list = items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {list} FROM {}",
        super::quoted_identifier(&table.name)
    );
    let frame = context.sql(&sql).await?;
    let planned = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    let query = super::standard_statement(&sql)?;
    let schema = super::query::postgres_schema(&query, &planned);
    let batches = batches
        .into_iter()
        .map(|batch| RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Runs an INSERT's source query. A fresh state: optimizing folds now() with the time the state
/// was taken.
pub(super) async fn run(session: &Session, plan: &LogicalPlan) -> Result<Vec<RecordBatch>> {
    let state = session.context.state();
    let physical = state.create_physical_plan(plan).await?;
    Ok(collect(physical, state.task_ctx()).await?)
}

/// `INSERT ... VALUES` computed directly: the rows are a handful of constant expressions, and
/// DataFusion's physical planning would cost more than the rest of the statement together.
fn evaluate_values(projection: &Projection, values: &Values) -> Result<RecordBatch> {
    let no_columns = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let empty = DFSchema::empty();
    let mut columns: Vec<Vec<ScalarValue>> =
        vec![Vec::with_capacity(values.values.len()); values.schema.fields().len()];
    for row in &values.values {
        for (cells, expression) in columns.iter_mut().zip(row) {
            let value = physical_expr(expression, &empty)?.evaluate(&no_columns)?;
            cells.push(match value {
                ColumnarValue::Scalar(scalar) => scalar,
                ColumnarValue::Array(array) => ScalarValue::try_from_array(&array, 0)?,
            });
        }
    }
    let arrays = columns
        .into_iter()
        .zip(values.schema.fields())
        .map(|(cells, field)| {
            let array = ScalarValue::iter_to_array(cells)?;
            Ok(if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type())?
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let source = RecordBatch::try_new(without_constraints(values.schema.as_arrow()), arrays)?;
    let output = projection
        .expr
        .iter()
        .map(|expression| {
            physical_expr(expression, &values.schema)?
                .evaluate(&source)?
                .into_array(source.num_rows())
                .map_err(Into::into)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(
        without_constraints(projection.schema.as_arrow()),
        output,
    )?)
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
