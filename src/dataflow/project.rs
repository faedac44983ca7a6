//! Project: computes the output columns (scalar expressions, CASE, casts) of each change.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::{ChangeBatch, Operator};
use crate::error::DataflowError;

/// Incremental rule: projection is linear, `π(ΔR) = Δπ(R)`: each change maps to the projected
/// row with the same weight. Distinct input rows may project to equal output rows; the weights
/// then simply add up where the changes are consolidated (in the view's arrangement).
pub struct Project {
    expressions: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Project {
    pub fn new(expressions: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Self {
            expressions,
            schema,
        }
    }
}

impl Operator for Project {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let rows = input.len();
        let columns = self
            .expressions
            .iter()
            .map(|expression| expression.evaluate(&input.rows)?.into_array(rows))
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let output =
            RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        Ok(vec![ChangeBatch::new(output, input.weights)])
    }

    fn describe(&self) -> String {
        let expressions: Vec<String> = self.expressions.iter().map(|e| e.to_string()).collect();
        format!("Project: {}", expressions.join(", "))
    }
}
