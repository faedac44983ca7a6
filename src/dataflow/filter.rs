//! Filter: keeps the changes whose row satisfies a predicate (WHERE, HAVING).

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::physical_expr::PhysicalExpr;

use super::{ChangeBatch, Operator};
use crate::error::{DataflowError, ExecutionError};

/// Incremental rule: filtering is linear, `σ(ΔR) = Δσ(R)`. A change passes exactly when its row
/// passes, whatever its weight, so inserts and deletes of a row always agree. The predicate must
/// be deterministic (the planner rejects volatile functions).
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

impl Operator for Filter {
    fn process(
        &mut self,
        _port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let mask = self
            .predicate
            .evaluate(&input.rows)?
            .into_array(input.len())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| {
                ExecutionError::Internal(format!(
                    "filter predicate {} is not boolean",
                    self.predicate
                ))
            })?;
        if mask.true_count() == input.len() && mask.null_count() == 0 {
            return Ok(vec![input]);
        }
        Ok(vec![input.filter(mask)?])
    }

    fn describe(&self) -> String {
        format!("Filter: {}", self.predicate)
    }
}
