//! Union: UNION ALL of its inputs (UNION is a DISTINCT aggregate over it).

use datafusion::arrow::datatypes::SchemaRef;

use super::change_batch::with_schema;
use super::{ChangeBatch, Operator};
use crate::error::DataflowError;

/// Incremental rule: UNION ALL is linear, `Δ(A ∪ B) = ΔA ∪ ΔB`: every change of every input
/// passes through unchanged, under the union's column names. The planner has already cast the
/// inputs to the union's column types.
pub struct Union {
    schema: SchemaRef,
}

impl Union {
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl Operator for Union {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let rows = with_schema(&input.rows, &self.schema)?;
        Ok(vec![ChangeBatch::new(rows, input.weights)])
    }

    fn describe(&self) -> String {
        "Union".into()
    }
}
