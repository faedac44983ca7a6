//! Incremental dataflows: operators that turn input changes into output changes, one epoch at a
//! time.

pub mod aggregate;
pub mod change_batch;
pub mod filter;
pub mod project;

use crate::catalog::RelationId;
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{Decoder, Encoder};
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

    /// The operator's state, encoded for a checkpoint. Stateless operators have none.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        Ok(None)
    }

    /// Replaces the operator's state with what [`Operator::checkpoint`] wrote, at an epoch
    /// boundary. Stateless operators are never given any.
    fn restore(&mut self, _state: &[u8]) -> Result<(), DataflowError> {
        Err(
            ExecutionError::Internal(format!("{} keeps no state to restore", self.describe()))
                .into(),
        )
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

    /// Every operator's state, in chain order, for a checkpoint.
    pub fn checkpoint(&self) -> Result<Vec<u8>, DataflowError> {
        let mut encoder = Encoder::default();
        encoder.u64(self.operators.len() as u64);
        for operator in &self.operators {
            match operator.checkpoint()? {
                Some(state) => encoder.u8(1).bytes(&state),
                None => encoder.u8(0),
            };
        }
        Ok(encoder.finish())
    }

    /// Restores what [`Dataflow::checkpoint`] wrote. The dataflow must have been planned from
    /// the same definition, so its operators line up.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let corrupted = |reason: String| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a dataflow: {reason}"
            )))
        };
        let mut decoder = Decoder::new(state);
        let count = decoder.count().map_err(corrupted)?;
        if count != self.operators.len() {
            return Err(corrupted(format!(
                "the checkpoint has {count} operators, the plan {}",
                self.operators.len()
            )));
        }
        for operator in &mut self.operators {
            if decoder.u8().map_err(corrupted)? == 1 {
                operator.restore(decoder.bytes().map_err(corrupted)?)?;
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> Vec<String> {
        self.operators
            .iter()
            .map(|operator| operator.describe())
            .collect()
    }
}
