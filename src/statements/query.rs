//! SELECT (and EXPLAIN): planned and run by DataFusion over the pinned snapshot.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::execute_stream;
use datafusion::sql::sqlparser::ast::Statement;
use futures::StreamExt;

use super::{PlanStage, cached_plan, parameter_types};
use crate::dataflow::change_batch::with_schema;
use crate::error::{Error, ExecutionError, Result};
use crate::session::{Description, QueryResult, Session};
use crate::sql::names;

/// Plans the query and starts it: its rows come as the client takes them.
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
    let mut rest = execute_stream(physical, session.state.task_ctx())?;
    // The first batch is made before the statement returns, so a query that fails from its
    // start (division by zero, a failed view) is refused before any row description is sent.
    let first = match rest.next().await {
        Some(batch) => Some(with_schema(&batch?, &schema)?),
        None => None,
    };
    Ok(QueryResult::Streamed(RowStream {
        schema,
        first,
        rest,
        deadline: None,
    }))
}

/// A query's rows, made batch by batch as they are asked for: a client that reads slowly (or
/// not at all) holds the query at the batch it is on, instead of the server building the whole
/// result first. Dropping it stops the query and frees what it held.
pub struct RowStream {
    /// The result's schema, with Postgres's column names.
    pub schema: SchemaRef,
    first: Option<RecordBatch>,
    rest: SendableRecordBatchStream,
    /// The statement_timeout's end, which holds for the whole result.
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for RowStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RowStream")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl RowStream {
    /// The next batch; `None` after the last. A panic inside the query becomes an internal
    /// error, as one while planning does.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        let next = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(self.rest.next()));
        let outcome = match self.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                Ok(outcome) => outcome,
                Err(_) => return Some(Err(ExecutionError::StatementTimeout.into())),
            },
            None => next.await,
        };
        match outcome {
            Ok(None) => None,
            Ok(Some(batch)) => Some(
                batch
                    .map_err(Error::from)
                    .and_then(|batch| with_schema(&batch, &self.schema).map_err(Error::from)),
            ),
            Err(panic) => {
                let message = crate::error::panic_message(&panic);
                tracing::error!(%message, "query panicked");
                Some(Err(ExecutionError::Internal(message).into()))
            }
        }
    }

    /// Every remaining batch, for callers that need the whole result (DECLARE, the library's
    /// `Session::execute`).
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await {
            batches.push(batch?);
        }
        Ok(batches)
    }
}

pub(super) async fn describe(session: &Session, statement: &Statement) -> Result<Description> {
    let optimized = cached_plan(session, statement, PlanStage::Optimized).await?;
    // Parameters are typed from the plan before optimization: common subexpression elimination
    // moves a `$1` used twice into a projection, away from what says its type.
    let analyzed = cached_plan(session, statement, PlanStage::Analyzed).await?;
    let parameter_types = parameter_types(&analyzed)?;
    let schema = Arc::new(optimized.schema().as_arrow().clone());
    Ok(Description {
        parameter_types,
        result_schema: Some(postgres_schema(statement, &schema)),
    })
}

/// The metadata that says how a column is sent (a catalog's `oid` or `"char"` column), kept
/// only while the column still holds what it describes: `elemtype::regtype::text` is text,
/// though DataFusion's cast keeps the metadata of the oid it was.
fn wire_metadata(field: &Field) -> std::collections::HashMap<String, String> {
    let mut metadata = field.metadata().clone();
    // arrow-pg sends an oid-tagged column as a 4-byte oid.
    if !matches!(field.data_type(), DataType::Int32 | DataType::UInt32) {
        metadata.remove(arrow_pg::datatypes::PG_OID_ALIAS_KEY);
    }
    if !matches!(field.data_type(), DataType::Utf8 | DataType::Utf8View) {
        metadata.remove(arrow_pg::datatypes::PG_CHAR_KEY);
    }
    metadata
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
            .map(|(field, name)| {
                Field::new(name, field.data_type().clone(), true)
                    .with_metadata(wire_metadata(field))
            })
            .collect::<Vec<_>>(),
    ))
}
