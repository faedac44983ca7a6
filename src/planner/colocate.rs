//! Colocation: a hashed edge whose rows are already spread over the workers by the key it would
//! hash (a GROUP BY after a join on the same key) leaves them where they are.

use std::collections::HashMap;

use crate::dataflow::aggregate::AggregatePhase;
use crate::dataflow::join::JoinKind;
use crate::dataflow::plan::{
    DataflowPlan, Edge, Input, OperatorId, OperatorSpec, PartitionKeySpec, Route, ScalarExpression,
    TypeSpec,
};
use crate::error::Result;

/// How a node's output rows are spread over the workers: each is on the worker owning the hash
/// of these columns (position, and the type the value was cast to before hashing), in order.
type Partitioning = Vec<(usize, TypeSpec)>;

/// Turns every hashed edge whose input is partitioned by some of the operator's key columns
/// into a partitioned one (the rows stay), and hashes the other side of such a join by the same
/// columns.
pub fn colocate(plan: &mut DataflowPlan) -> Result<()> {
    let mut partitioned: HashMap<OperatorId, Partitioning> = HashMap::new();
    for node in &mut plan.nodes {
        let inputs: Vec<Option<Partitioning>> = node
            .inputs
            .iter()
            .map(|edge| match edge.from {
                Input::Operator(id) => partitioned.get(&id).cloned(),
                Input::Relation(_) => None,
            })
            .collect();
        let output = match &node.operator {
            OperatorSpec::Filter { .. } | OperatorSpec::TemporalFilter { .. } => {
                inputs.into_iter().next().flatten()
            }
            OperatorSpec::Project { expressions, .. } => {
                passed_on(inputs.into_iter().next().flatten(), expressions)
            }
            // A partial aggregate's rows stay on their worker: its group columns (output
            // column i is group column i) are where its input's were.
            // (Rows hashed by a min/max argument are spread by nothing it outputs.)
            OperatorSpec::Aggregate(aggregate) if aggregate.phase == AggregatePhase::Partial => {
                match node.inputs[0].route {
                    Route::Forward => {
                        passed_on(inputs.into_iter().next().flatten(), &aggregate.group_by)
                    }
                    _ => None,
                }
            }
            OperatorSpec::Union { .. } => {
                let first = inputs.first().cloned().flatten();
                first.filter(|first| inputs.iter().all(|input| input.as_ref() == Some(first)))
            }
            // (Its rows could keep the partitioning of the columns it copies; not worth it yet.)
            OperatorSpec::LateRowFilter { .. } | OperatorSpec::Unnest { .. } => None,
            OperatorSpec::Aggregate(aggregate) => {
                let positions = keyed(
                    &mut node.inputs[0],
                    inputs[0].as_ref(),
                    &aggregate.group_by,
                    &aggregate.group_types,
                );
                // Group column i is output column i.
                positions.map(|positions| {
                    positions
                        .into_iter()
                        .map(|i| (i, aggregate.group_types[i].clone()))
                        .collect()
                })
            }
            OperatorSpec::TopN(top_n) => {
                let positions = keyed(
                    &mut node.inputs[0],
                    inputs[0].as_ref(),
                    &top_n.partition_by,
                    &top_n.partition_types,
                );
                // The rows pass through with their columns where they were.
                positions.and_then(|positions| {
                    columns_of(&top_n.partition_by, &top_n.partition_types, &positions, 0)
                })
            }
            OperatorSpec::Window(window) => {
                let positions = keyed(
                    &mut node.inputs[0],
                    inputs[0].as_ref(),
                    &window.partition_by,
                    &window.partition_types,
                );
                // The input's columns come first in the output, where they were.
                positions.and_then(|positions| {
                    columns_of(&window.partition_by, &window.partition_types, &positions, 0)
                })
            }
            OperatorSpec::Join(join) => {
                let Some(positions) = colocate_join(
                    &mut node.inputs,
                    &inputs,
                    [&join.left_keys, &join.right_keys],
                    &join.key_types,
                ) else {
                    continue;
                };
                let left_width = join.left.decode()?.fields().len();
                let left = || columns_of(&join.left_keys, &join.key_types, &positions, 0);
                let right =
                    |offset| columns_of(&join.right_keys, &join.key_types, &positions, offset);
                match join.kind {
                    JoinKind::Inner => left().or_else(|| right(left_width)),
                    JoinKind::Left
                    | JoinKind::LeftSemi
                    | JoinKind::LeftAnti
                    | JoinKind::LeftMark => left(),
                    JoinKind::Right => right(left_width),
                    JoinKind::RightSemi | JoinKind::RightAnti | JoinKind::RightMark => right(0),
                    // Rows without a partner have NULL for the other side's key columns, and
                    // sit where their own key put them.
                    JoinKind::Full => None,
                }
            }
        };
        if let Some(output) = output.filter(|output| !output.is_empty()) {
            partitioned.insert(node.id, output);
        }
    }
    Ok(())
}

/// The partitioning of rows computed by `expressions` from rows partitioned as `input`: where
/// every partition column went, if each passes on as a plain column.
fn passed_on(
    input: Option<Partitioning>,
    expressions: &[ScalarExpression],
) -> Option<Partitioning> {
    input?
        .into_iter()
        .map(|(column, data_type)| {
            let position = expressions
                .iter()
                .position(|expression| expression.column() == Some(column))?;
            Some((position, data_type))
        })
        .collect()
}

/// For a one-input keyed operator: when its hashed input is already partitioned by some of its
/// key columns, the edge keeps the rows where they are. Returns the positions of the key columns
/// that place its rows, `None` when its input is gathered.
fn keyed(
    edge: &mut Edge,
    input: Option<&Partitioning>,
    key: &[ScalarExpression],
    types: &[TypeSpec],
) -> Option<Vec<usize>> {
    if !matches!(edge.route, Route::Hash(_)) {
        return None;
    }
    if let Some(positions) = input.and_then(|input| positions_in(input, key, types)) {
        edge.route = Route::Partitioned(key_spec(key, types, &positions));
        return Some(positions);
    }
    Some((0..key.len()).collect())
}

/// For a join hashed by key on both sides: when one side is already partitioned by some of the
/// key columns, that side stays and the other is hashed by the same columns. Returns the
/// positions of the key columns that place the rows, `None` when the join is gathered.
fn colocate_join(
    edges: &mut [Edge],
    inputs: &[Option<Partitioning>],
    keys: [&[ScalarExpression]; 2],
    types: &[TypeSpec],
) -> Option<Vec<usize>> {
    if edges.len() != 2
        || !edges
            .iter()
            .all(|edge| matches!(edge.route, Route::Hash(_)))
    {
        return None;
    }
    let found: Vec<Option<Vec<usize>>> = (0..2)
        .map(|side| {
            inputs[side]
                .as_ref()
                .and_then(|input| positions_in(input, keys[side], types))
        })
        .collect();
    let Some(positions) = found.iter().flatten().next().cloned() else {
        return Some((0..types.len()).collect());
    };
    for side in 0..2 {
        let key = key_spec(keys[side], types, &positions);
        edges[side].route = if found[side].as_ref() == Some(&positions) {
            Route::Partitioned(key)
        } else {
            Route::Hash(key)
        };
    }
    Some(positions)
}

/// Where the columns `partitioning` names are among `key` (each a plain column compared as the
/// type it was hashed as), in the partitioning's order; `None` if any is not in the key.
fn positions_in(
    partitioning: &Partitioning,
    key: &[ScalarExpression],
    types: &[TypeSpec],
) -> Option<Vec<usize>> {
    partitioning
        .iter()
        .map(|(column, data_type)| {
            key.iter().zip(types).position(|(expression, key_type)| {
                expression.column() == Some(*column) && key_type == data_type
            })
        })
        .collect()
}

/// The partition key of the key columns at `positions`.
fn key_spec(key: &[ScalarExpression], types: &[TypeSpec], positions: &[usize]) -> PartitionKeySpec {
    let whole = positions.len() == key.len() && positions.iter().enumerate().all(|(i, &p)| i == p);
    PartitionKeySpec {
        expressions: positions.iter().map(|&i| key[i].clone()).collect(),
        types: positions.iter().map(|&i| types[i].clone()).collect(),
        key_positions: (!whole).then(|| positions.to_vec()),
    }
}

/// The output partitioning of rows placed by the key columns at `positions` when they pass
/// through at their input position plus `offset`: only if every one is a plain column.
fn columns_of(
    key: &[ScalarExpression],
    types: &[TypeSpec],
    positions: &[usize],
    offset: usize,
) -> Option<Partitioning> {
    positions
        .iter()
        .map(|&i| Some((key[i].column()? + offset, types[i].clone())))
        .collect()
}
