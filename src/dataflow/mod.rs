//! Incremental dataflows: operators that turn input changes into output changes, one epoch at a
//! time.

pub mod aggregate;
pub mod change_batch;
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
pub mod watermark;

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::RelationId;
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{Decoder, Encoder};
pub use change_batch::ChangeBatch;
pub use plan::{DataflowPlan, OperatorId};
pub use render::render;

/// An epoch number. Epoch N is complete when every dataflow has seen its barrier.
pub type Epoch = u64;

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

/// Where a node of a dataflow reads its changes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The epoch's changes of a relation (table, source or view) outside the dataflow.
    Relation(RelationId),
    /// The output of an earlier node of the same dataflow.
    Node(usize),
}

/// One operator of a dataflow and the streams feeding its ports, in port order.
pub struct Node {
    /// The operator's id in the plan it was rendered from: what its saved state is filed under.
    pub id: OperatorId,
    pub operator: Box<dyn Operator>,
    pub inputs: Vec<Stream>,
}

/// The dataflow maintaining one materialized view: a graph of operators, stored in topological
/// order (every node reads only relations and earlier nodes). The last node's output is the
/// view's changes. A relation read twice (a self-join) feeds both ports the same changes.
pub struct Dataflow {
    nodes: Vec<Node>,
    /// The relations the nodes read, each once: the coordinator asks on every epoch.
    inputs: Vec<RelationId>,
    /// What the nodes were rendered from.
    plan: Arc<DataflowPlan>,
}

impl Dataflow {
    /// A dataflow over `nodes` rendered from `plan`; they must be in topological order and not
    /// empty.
    pub fn new(nodes: Vec<Node>, plan: Arc<DataflowPlan>) -> Result<Self, DataflowError> {
        for (index, node) in nodes.iter().enumerate() {
            if node
                .inputs
                .iter()
                .any(|input| matches!(input, Stream::Node(earlier) if *earlier >= index))
            {
                return Err(ExecutionError::Internal(format!(
                    "dataflow node {index} reads a later node"
                ))
                .into());
            }
        }
        if nodes.is_empty() {
            return Err(ExecutionError::Internal("a dataflow without operators".into()).into());
        }
        let mut inputs = Vec::new();
        for node in &nodes {
            for input in &node.inputs {
                if let Stream::Relation(id) = input
                    && !inputs.contains(id)
                {
                    inputs.push(*id);
                }
            }
        }
        Ok(Self {
            nodes,
            inputs,
            plan,
        })
    }

    /// The plan the dataflow was rendered from.
    pub fn plan(&self) -> &DataflowPlan {
        &self.plan
    }

    /// The relations the dataflow reads, each once, in the order first read.
    pub fn inputs(&self) -> &[RelationId] {
        &self.inputs
    }

    /// The earliest time any operator has output due without input (see
    /// [`Operator::wakeup`]).
    pub fn wakeup(&self) -> Option<i64> {
        self.nodes
            .iter()
            .filter_map(|node| node.operator.wakeup())
            .min()
    }

    /// What the dataflow's watermark filters kept out, one entry per relation.
    pub fn late_rows(&self) -> Vec<watermark::LateRows> {
        self.nodes
            .iter()
            .filter_map(|node| node.operator.late_rows())
            .collect()
    }

    /// Runs one epoch: feeds every node the epoch's changes of its inputs, port by port, closes
    /// the epoch at each node in topological order, and returns the view's changes.
    pub fn step(
        &mut self,
        deltas: &HashMap<RelationId, Vec<ChangeBatch>>,
        epoch: Epoch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let mut outputs: Vec<Vec<ChangeBatch>> = Vec::with_capacity(self.nodes.len());
        for node in &mut self.nodes {
            let mut output = Vec::new();
            for (port, input) in node.inputs.iter().enumerate() {
                let batches = match input {
                    Stream::Relation(id) => deltas.get(id).map(Vec::as_slice).unwrap_or_default(),
                    Stream::Node(index) => outputs[*index].as_slice(),
                };
                for batch in batches {
                    if !batch.is_empty() {
                        output.extend(node.operator.process(port, batch.clone())?);
                    }
                }
            }
            output.extend(node.operator.barrier(epoch)?);
            outputs.push(output);
        }
        Ok(outputs.pop().unwrap_or_default())
    }

    /// The state of every operator that keeps one, filed under its operator id, for a
    /// checkpoint.
    pub fn checkpoint(&self) -> Result<Vec<u8>, DataflowError> {
        let mut states = Vec::new();
        for node in &self.nodes {
            if let Some(state) = node.operator.checkpoint()? {
                states.push((node.id, state));
            }
        }
        let mut encoder = Encoder::default();
        encoder.u64(states.len() as u64);
        for (id, state) in &states {
            encoder.u64(u64::from(*id)).bytes(state);
        }
        Ok(encoder.finish())
    }

    /// Restores what [`Dataflow::checkpoint`] wrote, each state into the operator with its id.
    /// The dataflow must be rendered from the plan the checkpoint was taken with.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let corrupted = |reason: String| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a dataflow: {reason}"
            )))
        };
        let mut decoder = Decoder::new(state);
        let count = decoder.count().map_err(corrupted)?;
        for _ in 0..count {
            let id = decoder.u64().map_err(corrupted)?;
            let state = decoder.bytes().map_err(corrupted)?;
            let node = self
                .nodes
                .iter_mut()
                .find(|node| u64::from(node.id) == id)
                .ok_or_else(|| corrupted(format!("the plan has no operator #{id}")))?;
            node.operator.restore(state)?;
        }
        Ok(())
    }

    /// One line per node: its number, operator and inputs.
    pub fn describe(&self) -> Vec<String> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let inputs: Vec<String> = node
                    .inputs
                    .iter()
                    .map(|input| match input {
                        Stream::Relation(id) => format!("relation {id}"),
                        Stream::Node(node) => format!("#{node}"),
                    })
                    .collect();
                format!(
                    "#{index} (operator {}) {} <- {}",
                    node.id,
                    node.operator.describe(),
                    inputs.join(", ")
                )
            })
            .collect()
    }
}

/// The states of `operators` in order, each present or absent: how an exchange checkpoints its
/// copies.
pub(crate) fn checkpoint_operators<'a>(
    operators: impl ExactSizeIterator<Item = &'a dyn Operator>,
) -> Result<Vec<u8>, DataflowError> {
    let mut encoder = Encoder::default();
    encoder.u64(operators.len() as u64);
    for operator in operators {
        match operator.checkpoint()? {
            Some(state) => encoder.u8(1).bytes(&state),
            None => encoder.u8(0),
        };
    }
    Ok(encoder.finish())
}

/// What [`checkpoint_operators`] wrote: one entry per operator, `None` for one without state.
/// `what` names the holder in the error a corrupted checkpoint gives.
pub(crate) fn operator_states<'a>(
    state: &'a [u8],
    what: &str,
) -> Result<Vec<Option<&'a [u8]>>, DataflowError> {
    let corrupted = |reason: String| {
        DataflowError::from(ExecutionError::Internal(format!(
            "cannot restore {what}: {reason}"
        )))
    };
    let mut decoder = Decoder::new(state);
    let count = decoder.count().map_err(corrupted)?;
    (0..count)
        .map(|_| match decoder.u8().map_err(corrupted)? {
            1 => Ok(Some(decoder.bytes().map_err(corrupted)?)),
            _ => Ok(None),
        })
        .collect()
}
