//! Rendering: the live operators of a [`DataflowPlan`], ready to run, one copy per worker (one
//! only, on the first worker, for an operator whose input is gathered).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use super::aggregate::{Aggregate, AggregateCall, AggregatePhase, WindowClosing};
use super::exchange::{KeyOwner, PartitionKey};
use super::filter::Filter;
use super::join::{Join, JoinDefinition};
use super::plan::{
    AggregateSpec, DataflowPlan, Functions, Input, JoinSpec, OperatorId, OperatorSpec, Route,
    ScalarExpression, SortKeySpec, TopNSpec, TypeSpec, WindowSpec,
};
use super::project::Project;
use super::temporal_filter::TemporalFilter;
use super::top_n::{SortKey, TopN, TopNDefinition};
use super::union::Union;
use super::unnest::Unnest;
use super::watermark::{LateRowFilter, WatermarkCell};
use super::window::{Window, WindowCall, WindowDefinition};
use super::workers::{Node, Ownership, Port, Routing, Shard, Stream, runs_on};
use super::{Dataflow, Operator};
use crate::error::{DataflowError, ExecutionError};

/// Makes one fresh copy of an operator.
type OperatorFactory = Box<dyn Fn() -> Result<Box<dyn Operator>, DataflowError> + Send>;

/// Builds the operators of `plan` for `workers` workers. `functions` resolves the functions the
/// plan's expressions call.
pub fn render(
    plan: &DataflowPlan,
    workers: usize,
    functions: &Functions,
) -> Result<Dataflow, DataflowError> {
    let workers = workers.max(1);
    let mut nodes: Vec<Node> = Vec::with_capacity(plan.nodes.len());
    let mut operators: Vec<Vec<Option<Box<dyn Operator>>>> = (0..workers)
        .map(|_| Vec::with_capacity(plan.nodes.len()))
        .collect();
    let mut position: HashMap<OperatorId, usize> = HashMap::new();
    // A late-row filter's watermark, read by the aggregates that close windows with it.
    let mut watermarks: HashMap<OperatorId, WatermarkCell> = HashMap::new();
    for plan_node in &plan.nodes {
        let ports = plan_node
            .inputs
            .iter()
            .enumerate()
            .map(|(port, edge)| {
                let from = match edge.from {
                    Input::Relation(id) => Stream::Relation(id),
                    Input::Operator(id) => position
                        .get(&id)
                        .map(|&index| Stream::Node(index))
                        .ok_or_else(|| {
                            internal(format!("operator {} reads unknown #{id}", plan_node.id))
                        })?,
                };
                let routing = match &edge.route {
                    Route::Forward | Route::Partitioned(_) => Routing::Forward,
                    Route::Gather => Routing::Gather,
                    Route::Hash(key) => {
                        let schema = plan_node
                            .operator
                            .input_schema(port)
                            .ok_or_else(|| {
                                internal(format!("operator {} hashes no input", plan_node.id))
                            })?
                            .decode()?;
                        Routing::Hash(PartitionKey::new(
                            compile_all(&key.expressions, &schema, functions)?,
                            types(&key.types)?,
                        )?)
                    }
                };
                Ok(Port { from, routing })
            })
            .collect::<Result<Vec<_>, DataflowError>>()?;
        let node = Node {
            id: plan_node.id,
            ownership: ownership(plan_node)?,
            ports,
        };
        let make = factory(
            &plan_node.operator,
            functions,
            &mut watermarks,
            plan_node.id,
        )?;
        for (worker, operators) in operators.iter_mut().enumerate() {
            operators.push(runs_on(&node, worker).then(&make).transpose()?);
        }
        position.insert(plan_node.id, nodes.len());
        nodes.push(node);
    }
    let shards = operators.into_iter().map(Shard::new).collect();
    Dataflow::new(nodes, shards, Arc::new(plan.clone()))
}

/// Which worker keeps which part of a node's state (see [`Ownership`]).
fn ownership(node: &super::plan::PlanNode) -> Result<Ownership, DataflowError> {
    if node.inputs.iter().any(|edge| edge.route == Route::Gather) {
        return Ok(Ownership::First);
    }
    // The edges of a keyed operator agree on which of its key's columns own it.
    let Some(hashed) = node.inputs.iter().find_map(|edge| match &edge.route {
        Route::Hash(key) | Route::Partitioned(key) => Some(key),
        Route::Forward | Route::Gather => None,
    }) else {
        return Ok(Ownership::Anywhere);
    };
    let key_types = match &node.operator {
        // A partial aggregate's rows are hashed by its min/max argument, not by its groups.
        OperatorSpec::Aggregate(aggregate) if aggregate.phase == AggregatePhase::Partial => {
            &hashed.types
        }
        OperatorSpec::Aggregate(aggregate) => &aggregate.group_types,
        OperatorSpec::Join(join) => &join.key_types,
        OperatorSpec::TopN(top_n) => &top_n.partition_types,
        OperatorSpec::Window(window) => &window.partition_types,
        _ => {
            return Err(internal(format!(
                "operator {} is hashed but keeps no keyed state",
                node.id
            )));
        }
    };
    let key_types = types(key_types)?;
    let positions = hashed
        .key_positions
        .clone()
        .unwrap_or_else(|| (0..key_types.len()).collect());
    Ok(Ownership::ByKey(KeyOwner::columns(&key_types, positions)?))
}

/// What builds fresh copies of one operator: its expressions are compiled once, here.
fn factory(
    spec: &OperatorSpec,
    functions: &Functions,
    watermarks: &mut HashMap<OperatorId, WatermarkCell>,
    id: OperatorId,
) -> Result<OperatorFactory, DataflowError> {
    Ok(match spec {
        OperatorSpec::Filter { input, predicate } => {
            let predicate = compile(predicate, &input.decode()?, functions)?;
            Box::new(move || Ok(Box::new(Filter::new(Arc::clone(&predicate)))))
        }
        OperatorSpec::Project {
            input,
            expressions,
            output,
        } => {
            let expressions = compile_all(expressions, &input.decode()?, functions)?;
            let output = output.arrow()?;
            Box::new(move || {
                Ok(Box::new(Project::new(
                    expressions.clone(),
                    Arc::clone(&output),
                )))
            })
        }
        OperatorSpec::Unnest {
            sources,
            lists,
            output,
            ..
        } => {
            let output = output.arrow()?;
            let (sources, lists) = (sources.clone(), lists.clone());
            Box::new(move || {
                Ok(Box::new(Unnest::new(
                    sources.clone(),
                    lists.clone(),
                    Arc::clone(&output),
                )))
            })
        }
        OperatorSpec::TemporalFilter { input, bounds } => {
            let schema = input.decode()?;
            let bounds = bounds
                .iter()
                .map(|(expression, bound)| {
                    Ok((compile(expression, &schema, functions)?, (*bound).into()))
                })
                .collect::<Result<Vec<_>, DataflowError>>()?;
            let output = input.arrow()?;
            Box::new(move || {
                Ok(Box::new(TemporalFilter::new(
                    bounds.clone(),
                    Arc::clone(&output),
                )?))
            })
        }
        OperatorSpec::LateRowFilter {
            relation,
            time_column,
            delay_nanoseconds,
        } => {
            // One watermark per filter, shared with the aggregates it closes windows for: a
            // late-row filter is never copied.
            let cell = WatermarkCell::default();
            watermarks.insert(id, cell.clone());
            let (relation, time_column, delay_nanoseconds) =
                (*relation, *time_column, *delay_nanoseconds);
            Box::new(move || {
                Ok(Box::new(LateRowFilter::new(
                    relation,
                    time_column,
                    delay_nanoseconds,
                    cell.clone(),
                )))
            })
        }
        OperatorSpec::Aggregate(aggregate) => aggregate_factory(aggregate, functions, watermarks)?,
        OperatorSpec::Join(join) => {
            let definition = join_definition(join, functions)?;
            Box::new(move || Ok(Box::new(Join::new(definition.clone())?)))
        }
        OperatorSpec::TopN(top_n) => {
            let definition = top_n_definition(top_n, functions)?;
            Box::new(move || Ok(Box::new(TopN::new(definition.clone())?)))
        }
        OperatorSpec::Window(window) => {
            let definition = window_definition(window, functions)?;
            Box::new(move || Ok(Box::new(Window::new(definition.clone())?)))
        }
        OperatorSpec::Union { output } => {
            let output = output.arrow()?;
            Box::new(move || Ok(Box::new(Union::new(Arc::clone(&output)))))
        }
    })
}

fn aggregate_factory(
    aggregate: &AggregateSpec,
    functions: &Functions,
    watermarks: &HashMap<OperatorId, WatermarkCell>,
) -> Result<OperatorFactory, DataflowError> {
    let schema = aggregate.input.decode()?;
    let group_expressions = compile_all(&aggregate.group_by, &schema, functions)?;
    let group_types = types(&aggregate.group_types)?;
    let calls = aggregate
        .calls
        .iter()
        .map(|call| {
            Ok(AggregateCall {
                function: call.function,
                argument: compile(&call.argument, &schema, functions)?,
                input_type: call.input_type.decode()?,
                output_type: call.output_type.decode()?,
                distinct: call.distinct,
                filter: call
                    .filter
                    .as_ref()
                    .map(|filter| compile(filter, &schema, functions))
                    .transpose()?,
                order_by: sort_keys(&call.order_by, &schema, functions)?,
                delimiter: call.delimiter.clone(),
            })
        })
        .collect::<Result<Vec<_>, DataflowError>>()?;
    let closing = aggregate
        .closing
        .as_ref()
        .map(|closing| {
            Ok::<_, DataflowError>(WindowClosing {
                group_column: closing.group_column,
                end_offset_nanoseconds: closing.end_offset_nanoseconds,
                watermarks: closing
                    .watermarks
                    .iter()
                    .map(|id| {
                        watermarks.get(id).cloned().ok_or_else(|| {
                            internal(format!("an aggregate closes windows with unknown #{id}"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            })
        })
        .transpose()?;
    let output = aggregate.output.arrow()?;
    let phase = aggregate.phase;
    Ok(Box::new(move || {
        let mut operator = Aggregate::new(
            group_expressions.clone(),
            group_types.clone(),
            calls.clone(),
            Arc::clone(&output),
        )?
        .with_phase(phase)?;
        if let Some(closing) = &closing {
            operator = operator.close_windows(closing.clone())?;
        }
        Ok(Box::new(operator))
    }))
}

fn join_definition(
    join: &JoinSpec,
    functions: &Functions,
) -> Result<JoinDefinition, DataflowError> {
    let left = join.left.decode()?;
    let right = join.right.decode()?;
    let filter = match &join.filter {
        Some(filter) => Some(compile(filter, &left.join(&right)?, functions)?),
        None => None,
    };
    Ok(JoinDefinition {
        kind: join.kind,
        left_keys: compile_all(&join.left_keys, &left, functions)?,
        right_keys: compile_all(&join.right_keys, &right, functions)?,
        key_types: types(&join.key_types)?,
        filter,
        nulls_equal: join.nulls_equal,
        null_aware: join.null_aware,
        left_schema: join.left.arrow()?,
        right_schema: join.right.arrow()?,
        output_schema: join.output.arrow()?,
    })
}

fn top_n_definition(
    top_n: &TopNSpec,
    functions: &Functions,
) -> Result<TopNDefinition, DataflowError> {
    let schema = top_n.input.decode()?;
    Ok(TopNDefinition {
        partition_by: compile_all(&top_n.partition_by, &schema, functions)?,
        partition_types: types(&top_n.partition_types)?,
        order_by: sort_keys(&top_n.order_by, &schema, functions)?,
        offset: top_n.offset,
        limit: top_n.limit,
        row_number: top_n.row_number,
        input_schema: top_n.input.arrow()?,
        output_schema: top_n.output.arrow()?,
    })
}

fn window_definition(
    window: &WindowSpec,
    functions: &Functions,
) -> Result<WindowDefinition, DataflowError> {
    let schema = window.input.decode()?;
    let calls = window
        .calls
        .iter()
        .map(|call| {
            Ok(WindowCall {
                kind: call.kind,
                arguments: compile_all(&call.arguments, &schema, functions)?,
                offset: call.offset,
                frame: call.frame,
                output_type: call.output_type.decode()?,
            })
        })
        .collect::<Result<Vec<_>, DataflowError>>()?;
    Ok(WindowDefinition {
        partition_by: compile_all(&window.partition_by, &schema, functions)?,
        partition_types: types(&window.partition_types)?,
        order_by: sort_keys(&window.order_by, &schema, functions)?,
        calls,
        input_schema: window.input.arrow()?,
        output_schema: window.output.arrow()?,
    })
}

fn sort_keys(
    keys: &[SortKeySpec],
    schema: &DFSchema,
    functions: &Functions,
) -> Result<Vec<SortKey>, DataflowError> {
    keys.iter()
        .map(|key| {
            Ok(SortKey {
                expression: compile(&key.expression, schema, functions)?,
                data_type: key.data_type.decode()?,
                descending: key.descending,
                nulls_first: key.nulls_first,
            })
        })
        .collect()
}

fn types(types: &[TypeSpec]) -> Result<Vec<datafusion::arrow::datatypes::DataType>, DataflowError> {
    types.iter().map(TypeSpec::decode).collect()
}

fn compile_all(
    expressions: &[ScalarExpression],
    schema: &DFSchema,
    functions: &Functions,
) -> Result<Vec<Arc<dyn PhysicalExpr>>, DataflowError> {
    expressions
        .iter()
        .map(|expression| compile(expression, schema, functions))
        .collect()
}

/// The physical form of `expression` over rows of `schema`.
pub fn compile(
    expression: &ScalarExpression,
    schema: &DFSchema,
    functions: &Functions,
) -> Result<Arc<dyn PhysicalExpr>, DataflowError> {
    compile_logical(expression.decode(functions)?, schema)
}

/// The physical form of a logical expression over rows of `schema`: what the planner checks a
/// view's expressions with before it puts them in a plan.
pub fn compile_logical(
    expression: Expr,
    schema: &DFSchema,
) -> Result<Arc<dyn PhysicalExpr>, DataflowError> {
    let expression = fixed_intervals_as_durations(expression, schema)?;
    Ok(create_physical_expr(
        &expression,
        schema,
        &datafusion::execution::context::ExecutionProps::new(),
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )?)
}

/// `timestamp ± INTERVAL` without months or days (as in TUMBLE and HOP windows and most
/// event-time conditions) becomes `timestamp ± duration`: the same
/// instant, computed as one integer addition per row instead of Arrow's calendar arithmetic,
/// which converts every value to a date and time and back (a third of Nexmark q5's time).
fn fixed_intervals_as_durations(
    expression: Expr,
    schema: &DFSchema,
) -> Result<Expr, DataflowError> {
    use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
    use datafusion::common::ScalarValue;
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let rewritten = expression.transform_up(|node| {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &node else {
            return Ok(Transformed::no(node));
        };
        let Expr::Literal(
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano {
                months: 0,
                days: 0,
                nanoseconds,
            })),
            _,
        ) = right.as_ref()
        else {
            return Ok(Transformed::no(node));
        };
        if !matches!(op, Operator::Plus | Operator::Minus) {
            return Ok(Transformed::no(node));
        }
        let duration = match left.get_type(schema)? {
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                ScalarValue::DurationNanosecond(Some(*nanoseconds))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) if nanoseconds % 1_000 == 0 => {
                ScalarValue::DurationMicrosecond(Some(nanoseconds / 1_000))
            }
            DataType::Timestamp(TimeUnit::Millisecond, _) if nanoseconds % 1_000_000 == 0 => {
                ScalarValue::DurationMillisecond(Some(nanoseconds / 1_000_000))
            }
            DataType::Timestamp(TimeUnit::Second, _) if nanoseconds % 1_000_000_000 == 0 => {
                ScalarValue::DurationSecond(Some(nanoseconds / 1_000_000_000))
            }
            _ => return Ok(Transformed::no(node)),
        };
        Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
            left.clone(),
            *op,
            Box::new(Expr::Literal(duration, None)),
        ))))
    })?;
    Ok(rewritten.data)
}

fn internal(message: String) -> DataflowError {
    ExecutionError::Internal(format!("cannot render a dataflow plan: {message}")).into()
}
