//! Two-phase aggregation: an aggregate whose groups are few at any one time (a global aggregate,
//! or one grouped only by window bounds) would bring every row to the worker or two owning those
//! groups; split in two, each worker aggregates its own share of the rows and only the partial
//! states cross to the group's owner, which merges them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};

use crate::dataflow::aggregate::{AggregateFunction, AggregatePhase, partial_state_types};
use crate::dataflow::plan::{
    AggregateSpec, Functions, PartitionKeySpec, Route, ScalarExpression, SchemaSpec,
};
use crate::error::Result;

/// Whether `aggregate` (lowered as `spec`) is worth splitting: every call's state merges, its
/// min and max calls (if any) read one argument, it does not emit on window close (a partial
/// aggregate would never learn a window closed), and its groups are few. An aggregate over many
/// groups is left whole: its rows spread over the workers by key anyway, and a partial phase
/// would only add a second pass over them.
pub fn worthwhile(aggregate: &Aggregate, spec: &AggregateSpec) -> Result<bool> {
    if spec.closing.is_some() || spec.phase != AggregatePhase::Whole {
        return Ok(false);
    }
    let mut extremes = spec.calls.iter().filter(|call| is_extreme(call.function));
    if let Some(first) = extremes.next()
        && extremes
            .any(|call| call.argument != first.argument || call.input_type != first.input_type)
    {
        return Ok(false);
    }
    for call in &spec.calls {
        let input_type = call.input_type.decode()?;
        if partial_state_types(call.function, &input_type, call.distinct).is_none() {
            return Ok(false);
        }
    }
    Ok(aggregate
        .group_expr
        .iter()
        .all(|expression| is_window_bound(expression, &aggregate.input)))
}

/// How rows reach the partial aggregate of `spec`. Counts and sums add up whatever share of the
/// rows a worker has, even a deletion whose insertion another worker saw, so the rows stay where
/// they are. A min or max does not: a worker holding a deleted value's insertion must see the
/// deletion too, so with min/max calls the rows are hashed by their argument (each value has
/// one worker, and the groups still spread over all of them).
pub fn partial_route(spec: &AggregateSpec) -> Route {
    match spec.calls.iter().find(|call| is_extreme(call.function)) {
        Some(call) => Route::Hash(PartitionKeySpec {
            expressions: vec![call.argument.clone()],
            types: vec![call.input_type.clone()],
            key_positions: None,
        }),
        None => Route::Forward,
    }
}

fn is_extreme(function: AggregateFunction) -> bool {
    matches!(function, AggregateFunction::Min | AggregateFunction::Max)
}

/// Splits `whole` into the partial aggregate (reading what `whole` read, as [`partial_route`]
/// says) and the final one (reading the partial one's output by group key): the group columns,
/// each group's row count, then each call's partial state. `output` is the aggregate's schema as
/// the query planned it.
pub fn split(
    whole: AggregateSpec,
    output: &DFSchema,
    functions: &Functions,
) -> Result<(AggregateSpec, AggregateSpec)> {
    let groups = whole.group_by.len();
    let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> = (0..groups)
        .map(|index| {
            let (qualifier, field) = output.qualified_field(index);
            (
                qualifier.cloned(),
                Arc::new(field.as_ref().clone().with_nullable(true)),
            )
        })
        .collect();
    fields.push((None, Arc::new(Field::new("rows", DataType::Int64, true))));
    // Where each call's state starts among the partial aggregate's output columns.
    let mut first_state_columns = Vec::with_capacity(whole.calls.len());
    for (index, call) in whole.calls.iter().enumerate() {
        let name = output.field(groups + index).name();
        let input_type = call.input_type.decode()?;
        let types =
            partial_state_types(call.function, &input_type, call.distinct).unwrap_or_default();
        first_state_columns.push(fields.len());
        for (part, data_type) in types.into_iter().enumerate() {
            let field = Field::new(format!("{name} state {part}"), data_type, true);
            fields.push((None, Arc::new(field)));
        }
    }
    let states = DFSchema::new_with_metadata(fields, HashMap::new())?;
    let column = |index: usize| -> Result<ScalarExpression> {
        let expression = Expr::Column(Column::from(states.qualified_field(index)));
        Ok(ScalarExpression::new(&expression, functions)?.at_column(index))
    };
    let final_calls = whole
        .calls
        .iter()
        .zip(&first_state_columns)
        .map(|(call, &first)| {
            let mut merged = call.clone();
            merged.argument = column(first)?;
            // The partial aggregate applied the FILTER; DISTINCT and ORDER BY never split.
            merged.filter = None;
            Ok(merged)
        })
        .collect::<Result<Vec<_>>>()?;
    let final_aggregate = AggregateSpec {
        input: SchemaSpec::new(&states)?,
        group_by: (0..groups).map(column).collect::<Result<Vec<_>>>()?,
        group_types: whole.group_types.clone(),
        calls: final_calls,
        output: whole.output.clone(),
        closing: None,
        phase: AggregatePhase::Final,
    };
    let partial = AggregateSpec {
        output: SchemaSpec::new(&states)?,
        phase: AggregatePhase::Partial,
        ..whole
    };
    Ok((partial, final_aggregate))
}

/// Whether `expression` over `input`'s output is the start or end of a TUMBLE or HOP window,
/// followed through aliases, subqueries and the group columns of aggregates below.
fn is_window_bound(expression: &Expr, input: &LogicalPlan) -> bool {
    let column = match expression {
        Expr::Alias(alias) => return is_window_bound(&alias.expr, input),
        Expr::Column(column) => column,
        _ => return false,
    };
    if column.name == "window_start" || column.name == "window_end" {
        return true;
    }
    let Ok(position) = input.schema().index_of_column(column) else {
        return false;
    };
    let same_position = |below: &LogicalPlan| {
        let column = Column::from(below.schema().qualified_field(position));
        is_window_bound(&Expr::Column(column), below)
    };
    match input {
        LogicalPlan::Projection(projection) => projection
            .expr
            .get(position)
            .is_some_and(|expression| is_window_bound(expression, &projection.input)),
        LogicalPlan::SubqueryAlias(alias) => same_position(&alias.input),
        LogicalPlan::Filter(filter) => same_position(&filter.input),
        LogicalPlan::Aggregate(aggregate) => aggregate
            .group_expr
            .get(position)
            .is_some_and(|expression| is_window_bound(expression, &aggregate.input)),
        _ => false,
    }
}
