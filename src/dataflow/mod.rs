//! Incremental dataflows: operators that turn input changes into output changes, one epoch at a
//! time.

pub mod aggregate;
pub mod exchange;
pub mod filter;
pub mod group_index;
pub mod join;
pub mod plan;
pub mod project;
pub mod render;
pub mod temporal_filter;
#[cfg(test)]
mod testing;
pub mod top_n;
pub mod union;
pub mod unnest;
pub mod watermark;
pub mod window;
pub mod workers;

use crate::error::{DataflowError, ExecutionError};
pub use crate::storage::Epoch;
pub use crate::storage::change_batch::{self, ChangeBatch};
pub use plan::{DataflowPlan, OperatorId};
pub use render::render;
pub use workers::Dataflow;

/// Whether this worker keeps the state of a key (see [`Operator::restore`]).
pub type Owned<'a> = &'a dyn Fn(&[u8]) -> Result<bool, DataflowError>;

/// One incremental operator. Only `process` is required; the rest have defaults that fit a
/// stateless (linear) operator.
pub trait Operator: Send {
    /// Takes one batch of changes arriving on input `port` (always 0 for a unary operator; 0 is
    /// the left and 1 the right input of a join) and returns the output changes it emits right
    /// away.
    fn process(
        &mut self,
        port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError>;

    /// The epoch's input is complete: returns the output changes held back until now. Stateless
    /// operators hold nothing back.
    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        Ok(Vec::new())
    }

    /// The clock time (nanoseconds since 1970) at which the operator has output due without
    /// any input: a temporal filter's next row to enter or leave. Others never do.
    fn wakeup(&self) -> Option<i64> {
        None
    }

    /// The rows the operator kept out for arriving behind a watermark. Only a watermark's
    /// filter keeps any out.
    fn late_rows(&self) -> Option<watermark::LateRows> {
        None
    }

    /// The operator's state, encoded for a checkpoint. Stateless operators have none.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        Ok(None)
    }

    /// Adds to the operator's state the part of `state` (what [`Operator::checkpoint`] wrote,
    /// on this worker or another) whose keys `owned` accepts: the state of its group, join or
    /// partition key, in `arrow-row` encoding. Called on a freshly rendered operator at an epoch
    /// boundary, once per worker the checkpoint was taken on, so that state saved with another
    /// number of workers reaches the worker owning each key now. Operators whose state is not
    /// keyed take all of it. Stateless operators are never given any.
    fn restore(&mut self, _state: &[u8], _owned: Owned<'_>) -> Result<(), DataflowError> {
        Err(
            ExecutionError::Internal(format!("{} keeps no state to restore", self.describe()))
                .into(),
        )
    }

    /// Called once after [`Operator::restore`] was given every saved state, when they were saved
    /// on another number of workers. An operator whose output depends on how rows were spread
    /// over the workers (a partial aggregate, and the final one reading it) makes its next
    /// output agree with the new spread; the others need nothing.
    fn redistributed(&mut self) -> Result<(), DataflowError> {
        Ok(())
    }

    /// A one-line description for EXPLAIN and logs; by default the operator's type name.
    fn describe(&self) -> String {
        let name = std::any::type_name::<Self>();
        name.rsplit("::").next().unwrap_or(name).to_string()
    }
}
