//! A rendered dataflow, run as one shard per worker: every worker has its own copy of every
//! operator and its share of the rows, and rows change workers only on the plan's hashed and
//! gathered edges.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::exchange::{self, Hashed, KeyOwner, PartitionKey};
use super::{ChangeBatch, DataflowPlan, Epoch, Operator, OperatorId, watermark};
use crate::catalog::RelationId;
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{Decoder, Encoder};
use crate::storage::{Arrangement, ArrangementSnapshot};

/// Below this many input rows in an epoch the workers' shards run one after another on the
/// calling thread: handing work to the pool and waiting for it costs more than a small epoch's
/// work.
const PARALLEL_ROWS: usize = 2048;

/// Where a port reads its changes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The epoch's changes of a relation (table, source or view) outside the dataflow.
    Relation(RelationId),
    /// The output of an earlier node of the same dataflow.
    Node(usize),
}

/// How a port's rows reach the workers.
pub enum Routing {
    /// Each worker reads the rows it has: an operator's output on the same worker; a relation's
    /// changes, split among the workers.
    Forward,
    /// Each worker reads the rows whose key it owns, from every worker.
    Hash(PartitionKey),
    /// The first worker reads every row; the node runs only there.
    Gather,
}

pub struct Port {
    pub from: Stream,
    pub routing: Routing,
}

/// Which worker keeps which part of an operator's state: what a restore with another number of
/// workers follows.
pub enum Ownership {
    /// The operator keeps no state, or state about rows that may be anywhere.
    Anywhere,
    /// The operator runs on the first worker only.
    First,
    /// The worker owning each key keeps that key's state.
    ByKey(KeyOwner),
}

/// One operator of a dataflow: its id in the plan, the ports feeding it in port order, and how
/// its state is spread over the workers. Its copies live in the workers' shards.
pub struct Node {
    pub id: OperatorId,
    pub ports: Vec<Port>,
    pub ownership: Ownership,
}

impl Node {
    /// Whether the node runs on the first worker only.
    fn gathered(&self) -> bool {
        self.ports
            .iter()
            .any(|port| matches!(port.routing, Routing::Gather))
    }

    /// Whether the node reads rows from other workers, so must wait for all of them.
    fn exchanges(&self) -> bool {
        self.ports
            .iter()
            .any(|port| !matches!(port.routing, Routing::Forward))
    }
}

/// One worker's copy of every node's operator, `None` for a gathered node on the workers it does
/// not run on, and the worker's part of the view's contents.
pub struct Shard {
    pub operators: Vec<Option<Box<dyn Operator>>>,
    /// The last node's output on this worker, consolidated: the view's rows are the union of
    /// every worker's. A row's insertion and deletion may land on different workers (rows
    /// forwarded from a relation are split by position), so a shard may hold a negative
    /// count, cancelled when readers consolidate all shards.
    contents: Option<Arrangement>,
}

impl Shard {
    pub fn new(operators: Vec<Option<Box<dyn Operator>>>) -> Self {
        Self {
            operators,
            contents: None,
        }
    }
}

/// The dataflow maintaining one materialized view: a graph of nodes in topological order (every
/// node reads only relations and earlier nodes), run as one shard per worker. The last node's
/// output, from every worker, is the view's changes. A relation read twice (a self-join) feeds
/// both ports the same changes.
///
/// An epoch runs in stages: a stage starts at each node that reads rows from other workers, and
/// goes on through the nodes that read only what their own worker has (filters, projections,
/// an aggregate over rows already partitioned by its key). Each worker runs a whole stage on its
/// shard with no synchronization; the workers meet only between stages, where the rows of the
/// next hashed edge are sent to their owners.
pub struct Dataflow {
    nodes: Vec<Node>,
    shards: Vec<Shard>,
    /// Node index ranges, in order.
    stages: Vec<Range<usize>>,
    /// The relations the nodes read, each once: the coordinator asks on every epoch.
    inputs: Vec<RelationId>,
    /// What the nodes were rendered from.
    plan: Arc<DataflowPlan>,
    /// The view's columns its kept contents are sorted by first (its GROUP BY key), so that
    /// point reads by them are binary searches.
    contents_key: Vec<usize>,
}

impl Dataflow {
    /// A dataflow of `nodes` whose operators are in `shards` (one per worker, one operator slot
    /// per node), rendered from `plan`. The nodes must be in topological order and not empty.
    pub fn new(
        nodes: Vec<Node>,
        shards: Vec<Shard>,
        plan: Arc<DataflowPlan>,
    ) -> Result<Self, DataflowError> {
        for (index, node) in nodes.iter().enumerate() {
            if node
                .ports
                .iter()
                .any(|port| matches!(port.from, Stream::Node(earlier) if earlier >= index))
            {
                return Err(internal(format!(
                    "dataflow node {index} reads a later node"
                )));
            }
        }
        if nodes.is_empty() || shards.is_empty() {
            return Err(internal("a dataflow without operators or workers".into()));
        }
        if shards
            .iter()
            .any(|shard| shard.operators.len() != nodes.len())
        {
            return Err(internal("a shard without every node's slot".into()));
        }
        let mut inputs = Vec::new();
        for node in &nodes {
            for port in &node.ports {
                if let Stream::Relation(id) = port.from
                    && !inputs.contains(&id)
                {
                    inputs.push(id);
                }
            }
        }
        let mut stages: Vec<Range<usize>> = Vec::new();
        for (index, node) in nodes.iter().enumerate() {
            match stages.last_mut() {
                Some(stage) if !node.exchanges() => stage.end = index + 1,
                _ => stages.push(index..index + 1),
            }
        }
        Ok(Self {
            nodes,
            shards,
            stages,
            inputs,
            plan,
            contents_key: Vec::new(),
        })
    }

    /// The plan the dataflow was rendered from.
    pub fn plan(&self) -> &DataflowPlan {
        &self.plan
    }

    /// Sorts the contents kept from now on by `key` (columns of the view) first.
    pub fn sort_contents_by(&mut self, key: Vec<usize>) {
        self.contents_key = key;
    }

    /// From now on every worker keeps its part of the view's contents, in `schema`: each epoch's
    /// output is consolidated where it was computed, side by side.
    pub fn keep_contents(&mut self, schema: &SchemaRef) -> Result<(), DataflowError> {
        for shard in &mut self.shards {
            shard.contents = Some(Arrangement::keyed(Arc::clone(schema), &self.contents_key)?);
        }
        Ok(())
    }

    /// The view's contents as of the last epoch: every worker's part, read as one.
    pub fn contents(&self, schema: &SchemaRef) -> ArrangementSnapshot {
        ArrangementSnapshot::union(
            Arc::clone(schema),
            self.shards
                .iter()
                .filter_map(|shard| shard.contents.as_ref().map(Arrangement::snapshot)),
        )
    }

    /// Replaces the contents with `rows` (from a checkpoint), all on the first worker: readers
    /// consolidate the workers' parts, so it does not matter where a row is kept.
    pub fn restore_contents(
        &mut self,
        schema: &SchemaRef,
        rows: Vec<RecordBatch>,
    ) -> Result<(), DataflowError> {
        self.keep_contents(schema)?;
        let changes: Vec<ChangeBatch> = rows.into_iter().map(ChangeBatch::insertions).collect();
        if let Some(contents) = self.shards[0].contents.as_mut() {
            contents.apply(&changes)?;
        }
        Ok(())
    }

    /// The relations the dataflow reads, each once, in the order first read.
    pub fn inputs(&self) -> &[RelationId] {
        &self.inputs
    }

    fn operators(&self) -> impl Iterator<Item = &dyn Operator> {
        self.shards
            .iter()
            .flat_map(|shard| shard.operators.iter().flatten().map(AsRef::as_ref))
    }

    /// The earliest time any operator has output due without input (see
    /// [`Operator::wakeup`]).
    pub fn wakeup(&self) -> Option<i64> {
        self.operators()
            .filter_map(|operator| operator.wakeup())
            .min()
    }

    /// What the dataflow's watermark filters kept out, one entry per relation.
    pub fn late_rows(&self) -> Vec<watermark::LateRows> {
        self.operators()
            .filter_map(|operator| operator.late_rows())
            .collect()
    }

    /// Runs one epoch: stage by stage, sends the rows of the stage's first node to the workers
    /// that own them, then each worker feeds every node of the stage its changes, port by port,
    /// and closes the epoch there; each worker adds the last node's output to its part of the
    /// contents. Returns the view's changes from every worker.
    pub fn step(
        &mut self,
        deltas: &HashMap<RelationId, Vec<ChangeBatch>>,
        epoch: Epoch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let count = self.shards.len();
        let input_rows: usize = self
            .inputs
            .iter()
            .filter_map(|id| deltas.get(id))
            .flatten()
            .map(ChangeBatch::len)
            .sum();
        let parallel = count > 1 && input_rows >= PARALLEL_ROWS;
        if !parallel {
            return self.run_stages(deltas, epoch, false);
        }
        // The whole epoch runs on a worker of the pool, not only its stages: the work between
        // stages (routing rows to their owners, collecting outputs) then runs on a thread the
        // pool knows is busy, while the calling thread sleeps, rather than on a third thread
        // competing for the cores with workers that spin while they wait for the next stage.
        rayon::scope(|_| self.run_stages(deltas, epoch, true))
    }

    /// The stages of one epoch, in order, their shards side by side when `parallel`.
    fn run_stages(
        &mut self,
        deltas: &HashMap<RelationId, Vec<ChangeBatch>>,
        epoch: Epoch,
        parallel: bool,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let count = self.shards.len();
        // The changes of relations read where they are, split among the workers once.
        let mut split: HashMap<RelationId, Vec<Vec<ChangeBatch>>> = HashMap::new();
        for node in &self.nodes {
            for port in &node.ports {
                if let (Stream::Relation(id), Routing::Forward) = (port.from, &port.routing) {
                    split.entry(id).or_insert_with(|| {
                        exchange::split(
                            deltas.get(&id).map(Vec::as_slice).unwrap_or_default(),
                            count,
                        )
                    });
                }
            }
        }
        // Per worker, per node so far, the node's output on that worker.
        let mut outputs: Vec<Vec<Vec<ChangeBatch>>> = (0..count)
            .map(|_| Vec::with_capacity(self.nodes.len()))
            .collect();
        for stage in &self.stages {
            let first = &self.nodes[stage.start];
            let routed = first
                .ports
                .iter()
                .map(|port| {
                    let every = || -> Vec<ChangeBatch> {
                        match port.from {
                            Stream::Relation(id) => deltas.get(&id).cloned().unwrap_or_default(),
                            Stream::Node(index) => outputs
                                .iter()
                                .flat_map(|output| output[index].iter().cloned())
                                .collect(),
                        }
                    };
                    Ok(match &port.routing {
                        Routing::Forward => Routed::Forward,
                        Routing::Gather => Routed::Gathered(every()),
                        Routing::Hash(_) if count == 1 => Routed::Gathered(every()),
                        Routing::Hash(key) => {
                            Routed::Hashed(Hashed::new(key, every(), count, parallel)?)
                        }
                    })
                })
                .collect::<Result<Vec<_>, DataflowError>>()?;
            let work: Vec<_> = self
                .shards
                .iter_mut()
                .zip(outputs.iter_mut())
                .enumerate()
                .collect();
            let context = StageContext {
                nodes: &self.nodes,
                stage: stage.clone(),
                routed: &routed,
                split: &split,
                epoch,
            };
            exchange::for_each(work, parallel, |(worker, (shard, outputs))| {
                context.run(worker, shard, outputs)
            })?;
        }
        let last = self.nodes.len() - 1;
        Ok(outputs
            .into_iter()
            .flat_map(|mut output| output.swap_remove(last))
            .collect())
    }

    /// The state of every operator copy that keeps one, filed under its operator id and worker,
    /// for a checkpoint.
    pub fn checkpoint(&self) -> Result<Vec<u8>, DataflowError> {
        let mut states = Vec::new();
        for (worker, shard) in self.shards.iter().enumerate() {
            for (node, operator) in self.nodes.iter().zip(&shard.operators) {
                let Some(operator) = operator else {
                    continue;
                };
                if let Some(state) = operator.checkpoint()? {
                    states.push((node.id, worker, state));
                }
            }
        }
        let mut encoder = Encoder::default();
        encoder.u64(self.shards.len() as u64);
        encoder.u64(states.len() as u64);
        for (id, worker, state) in &states {
            encoder.u64(u64::from(*id)).u64(*worker as u64).bytes(state);
        }
        Ok(encoder.finish())
    }

    /// Restores what [`Dataflow::checkpoint`] wrote into freshly rendered operators, each state
    /// into the operator with its id. The dataflow must be rendered from the plan the checkpoint
    /// was taken with, on any number of workers: a state taken on another number is spread by
    /// the operator's ownership (each key to the worker that owns it now).
    pub fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let corrupted = |reason: String| internal(format!("cannot restore a dataflow: {reason}"));
        let mut decoder = Decoder::new(state);
        let saved_count = decoder.count().map_err(corrupted)?;
        let entries = decoder.count().map_err(corrupted)?;
        let count = self.shards.len();
        for _ in 0..entries {
            let id = decoder.u64().map_err(corrupted)?;
            let saved_worker = decoder.count().map_err(corrupted)?;
            let state = decoder.bytes().map_err(corrupted)?;
            let index = self
                .nodes
                .iter()
                .position(|node| u64::from(node.id) == id)
                .ok_or_else(|| corrupted(format!("the plan has no operator #{id}")))?;
            if saved_worker >= saved_count {
                return Err(corrupted(format!(
                    "operator #{id} saved on worker {saved_worker} of {saved_count}"
                )));
            }
            fn operator(
                shards: &mut [Shard],
                worker: usize,
                index: usize,
            ) -> Result<&mut Box<dyn Operator>, DataflowError> {
                shards[worker].operators[index].as_mut().ok_or_else(|| {
                    internal(format!(
                        "cannot restore a dataflow: node {index} is not on worker {worker}"
                    ))
                })
            }
            let everything = |_: &[u8]| Ok(true);
            if saved_count == count {
                operator(&mut self.shards, saved_worker, index)?.restore(state, &everything)?;
                continue;
            }
            match &self.nodes[index].ownership {
                Ownership::First => {
                    operator(&mut self.shards, 0, index)?.restore(state, &everything)?
                }
                Ownership::Anywhere => operator(&mut self.shards, saved_worker % count, index)?
                    .restore(state, &everything)?,
                Ownership::ByKey(owner) => {
                    for worker in 0..count {
                        let owned = |key: &[u8]| Ok(owner.owner(key, count)? == worker);
                        operator(&mut self.shards, worker, index)?.restore(state, &owned)?;
                    }
                }
            }
        }
        if saved_count != count {
            for shard in &mut self.shards {
                for operator in shard.operators.iter_mut().flatten() {
                    operator.redistributed()?;
                }
            }
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
                    .ports
                    .iter()
                    .map(|port| match port.from {
                        Stream::Relation(id) => format!("relation {id}"),
                        Stream::Node(node) => format!("#{node}"),
                    })
                    .collect();
                let operator = self
                    .operators_of(index)
                    .next()
                    .map(|operator| operator.describe())
                    .unwrap_or_default();
                format!(
                    "#{index} (operator {}) {operator} on {} of {} workers <- {}",
                    node.id,
                    self.operators_of(index).count(),
                    self.shards.len(),
                    inputs.join(", ")
                )
            })
            .collect()
    }

    fn operators_of(&self, node: usize) -> impl Iterator<Item = &dyn Operator> {
        self.shards
            .iter()
            .filter_map(move |shard| shard.operators[node].as_deref())
    }
}

/// The rows of one port of a stage's first node, on their way to the workers.
enum Routed {
    /// Each worker reads what it has.
    Forward,
    /// The first worker reads all of them.
    Gathered(Vec<ChangeBatch>),
    Hashed(Hashed),
}

/// What every worker's part of one stage reads.
struct StageContext<'a> {
    nodes: &'a [Node],
    stage: Range<usize>,
    routed: &'a [Routed],
    split: &'a HashMap<RelationId, Vec<Vec<ChangeBatch>>>,
    epoch: Epoch,
}

impl StageContext<'_> {
    /// Runs the stage's nodes on one worker's shard, appending each node's output on this worker
    /// to `outputs`.
    fn run(
        &self,
        worker: usize,
        shard: &mut Shard,
        outputs: &mut Vec<Vec<ChangeBatch>>,
    ) -> Result<(), DataflowError> {
        for index in self.stage.clone() {
            let node = &self.nodes[index];
            let Some(operator) = shard.operators[index].as_mut() else {
                outputs.push(Vec::new());
                continue;
            };
            let mut output = Vec::new();
            for (port_number, port) in node.ports.iter().enumerate() {
                let batches = match (&port.routing, port.from) {
                    (Routing::Forward, Stream::Relation(id)) => self
                        .split
                        .get(&id)
                        .map(|shares| shares[worker].clone())
                        .unwrap_or_default(),
                    (Routing::Forward, Stream::Node(from)) => outputs[from].clone(),
                    _ => match self.routed.get(port_number) {
                        Some(Routed::Hashed(hashed)) if index == self.stage.start => {
                            hashed.share(worker)?
                        }
                        Some(Routed::Gathered(batches)) if index == self.stage.start => {
                            if worker == 0 {
                                batches.clone()
                            } else {
                                Vec::new()
                            }
                        }
                        _ => {
                            return Err(internal(format!(
                                "node {index} exchanges rows inside a stage"
                            )));
                        }
                    },
                };
                for batch in batches {
                    if !batch.is_empty() {
                        output.extend(operator.process(port_number, batch)?);
                    }
                }
            }
            output.extend(operator.barrier(self.epoch)?);
            if index == self.nodes.len() - 1
                && let Some(contents) = shard.contents.as_mut()
            {
                contents.apply(&output)?;
            }
            outputs.push(output);
        }
        Ok(())
    }
}

fn internal(message: String) -> DataflowError {
    ExecutionError::Internal(message).into()
}

/// Whether `node` runs on worker `worker`: a gathered node only on the first.
pub(crate) fn runs_on(node: &Node, worker: usize) -> bool {
    worker == 0 || !node.gathered()
}
