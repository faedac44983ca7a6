//! SELECT (and EXPLAIN): planned and run by DataFusion over the pinned snapshot.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::physical_plan::collect;
use datafusion::sql::sqlparser::ast::Statement;

use super::{PlanStage, cached_plan, parameter_types};
use crate::dataflow::change_batch::with_schema;
use crate::error::Result;
use crate::session::{Description, QueryResult, Session};
use crate::sql::names;

pub(super) async fn execute(
    session: &Session,
    statement: &Statement,
    parameters: Option<ParamValues>,
) -> Result<QueryResult> {
    let mut logical = cached_plan(session, statement, PlanStage::Optimized).await?;
    if let Some(parameters) = parameters {
        logical = logical.with_param_values(parameters)?;
    }
    let state = &session.state;
    // Already optimized (and cached so): straight to physical planning.
    let physical = state
        .query_planner()
        .create_physical_plan(&logical, state)
        .await?;
    let schema = postgres_schema(statement, &physical.schema());
    let batches = collect(physical, session.state.task_ctx()).await?;
    let batches = batches
        .iter()
        .map(|batch| with_schema(batch, &schema))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(QueryResult::Rows { schema, batches })
}

pub(super) async fn describe(session: &Session, statement: &Statement) -> Result<Description> {
    let optimized = cached_plan(session, statement, PlanStage::Optimized).await?;
    let parameter_types = parameter_types(&optimized)?;
    let schema = Arc::new(optimized.schema().as_arrow().clone());
    Ok(Description {
        parameter_types,
        result_schema: Some(postgres_schema(statement, &schema)),
    })
}

/// The result schema with Postgres's column names, every column nullable (a result column
/// carries no constraint, and DataFusion's nullability guesses must not reject a NULL).
pub(crate) fn postgres_schema(statement: &Statement, schema: &SchemaRef) -> SchemaRef {
    let actual: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let renamed = match statement {
        Statement::Query(query) => match names::output_names(query) {
            Some(names) => names::apply(&names, &actual),
            None => actual,
        },
        _ => actual,
    };
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .zip(renamed)
            .map(|(field, name)| Field::new(name, field.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}
