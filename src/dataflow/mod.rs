//! Incremental dataflows: operators that turn input changes into output changes, one epoch at a
//! time.

pub mod aggregate;
pub mod change_batch;
pub mod filter;
pub mod project;

use crate::catalog::RelationId;
use crate::error::DataflowError;
pub use change_batch::ChangeBatch;

/// An epoch number. Epoch N is complete when every dataflow has seen its barrier.
pub type Epoch = u64;

/// One incremental operator. Only `process` is required; the rest have defaults that fit a
/// stateless (linear) operator.
pub trait Operator: Send {
    /// Takes one batch of input changes and returns the output changes it emits right away.
    fn process(&mut self, input: ChangeBatch) -> Result<Vec<ChangeBatch>, DataflowError>;

    /// The epoch's input is complete: returns the output changes held back until now. Stateless
    /// operators hold nothing back.
    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        Ok(Vec::new())
    }

    /// A one-line description for EXPLAIN and logs; by default the operator's type name.
    fn describe(&self) -> String {
        let name = std::any::type_name::<Self>();
        name.rsplit("::").next().unwrap_or(name).to_string()
    }
}

/// The dataflow maintaining one materialized view: a chain of operators fed by one input
/// relation. Every operator's output is the next one's input.
pub struct Dataflow {
    pub input: RelationId,
    pub operators: Vec<Box<dyn Operator>>,
}

impl Dataflow {
    /// Runs one epoch: pushes `input` through the chain, closing the epoch at each operator in
    /// turn, and returns the view's changes for the epoch.
    pub fn step(
        &mut self,
        input: Vec<ChangeBatch>,
        epoch: Epoch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let mut batches = input;
        for operator in &mut self.operators {
            let mut output = Vec::new();
            for batch in batches {
                if batch.is_empty() {
                    continue;
                }
                output.extend(operator.process(batch)?);
            }
            output.extend(operator.barrier(epoch)?);
            batches = output;
        }
        Ok(batches)
    }

    pub fn describe(&self) -> Vec<String> {
        self.operators
            .iter()
            .map(|operator| operator.describe())
            .collect()
    }
}
