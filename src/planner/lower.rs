//! Lowering: an optimized DataFusion `LogicalPlan` becomes an incremental dataflow, or is
//! rejected with 0A000 naming the part that cannot be maintained.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;

use super::context::RelationProvider;
use crate::catalog::RelationId;
use crate::dataflow::aggregate::{Aggregate, AggregateCall, AggregateFunction};
use crate::dataflow::filter::Filter;
use crate::dataflow::project::Project;
use crate::dataflow::{Dataflow, Operator};
use crate::error::{Error, PlanError, Result};

/// Lowers `plan` (already analyzed and optimized) into the dataflow that maintains it.
pub fn lower(plan: &LogicalPlan) -> Result<Dataflow> {
    let mut operators: Vec<Box<dyn Operator>> = Vec::new();
    let input = lower_node(plan, &mut operators)?;
    Ok(Dataflow { input, operators })
}

fn unsupported(what: &str) -> Error {
    PlanError::Unsupported(format!("{what} is not supported in materialized views yet")).into()
}

/// Appends the operators computing `plan` to `operators` and returns the relation they read.
fn lower_node(plan: &LogicalPlan, operators: &mut Vec<Box<dyn Operator>>) -> Result<RelationId> {
    for expression in plan.expressions() {
        if expression.is_volatile() {
            return Err(PlanError::Unsupported(format!(
                "volatile function in materialized view: {expression}"
            ))
            .into());
        }
    }
    match plan {
        LogicalPlan::TableScan(scan) => {
            if scan.fetch.is_some() {
                return Err(unsupported("LIMIT"));
            }
            let provider = source_as_provider(&scan.source)?;
            let Some(relation) = provider.downcast_ref::<RelationProvider>() else {
                return Err(unsupported(&format!("reading {}", scan.table_name)));
            };
            let source_schema = relation.relation().schema.clone();
            let source_dfschema =
                DFSchema::try_from_qualified_schema(scan.table_name.clone(), &source_schema)?;
            for filter in &scan.filters {
                operators.push(Box::new(Filter::new(physical(filter, &source_dfschema)?)));
            }
            if let Some(projection) = &scan.projection {
                let expressions = projection
                    .iter()
                    .map(|&index| {
                        let column = Expr::Column(datafusion::common::Column::new(
                            Some(scan.table_name.clone()),
                            source_schema.field(index).name(),
                        ));
                        physical(&column, &source_dfschema)
                    })
                    .collect::<Result<Vec<_>>>()?;
                operators.push(Box::new(Project::new(
                    expressions,
                    nullable_schema(&scan.projected_schema),
                )));
            }
            Ok(relation.id())
        }
        LogicalPlan::Projection(projection) => {
            let input = lower_node(&projection.input, operators)?;
            let expressions = projection
                .expr
                .iter()
                .map(|expression| physical(expression, projection.input.schema()))
                .collect::<Result<Vec<_>>>()?;
            operators.push(Box::new(Project::new(
                expressions,
                nullable_schema(&projection.schema),
            )));
            Ok(input)
        }
        LogicalPlan::Filter(filter) => {
            let input = lower_node(&filter.input, operators)?;
            operators.push(Box::new(Filter::new(physical(
                &filter.predicate,
                filter.input.schema(),
            )?)));
            Ok(input)
        }
        LogicalPlan::Aggregate(aggregate) => {
            let input = lower_node(&aggregate.input, operators)?;
            let input_schema = aggregate.input.schema();
            if aggregate
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
            {
                return Err(unsupported("GROUPING SETS, ROLLUP and CUBE"));
            }
            let group_expressions = aggregate
                .group_expr
                .iter()
                .map(|expression| physical(expression, input_schema))
                .collect::<Result<Vec<_>>>()?;
            let group_types = aggregate
                .group_expr
                .iter()
                .map(|expression| expression.get_type(input_schema.as_ref()))
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            let output_schema = nullable_schema(&aggregate.schema);
            let calls = aggregate
                .aggr_expr
                .iter()
                .enumerate()
                .map(|(index, expression)| {
                    let output_type = output_schema
                        .field(group_expressions.len() + index)
                        .data_type()
                        .clone();
                    aggregate_call(expression, input_schema, output_type)
                })
                .collect::<Result<Vec<_>>>()?;
            operators.push(Box::new(Aggregate::new(
                group_expressions,
                group_types,
                calls,
                output_schema,
            )?));
            Ok(input)
        }
        LogicalPlan::SubqueryAlias(alias) => lower_node(&alias.input, operators),
        LogicalPlan::Sort(sort) => {
            if sort.fetch.is_some() {
                return Err(unsupported("ORDER BY ... LIMIT (top-N)"));
            }
            // A view is a set; an ORDER BY without LIMIT in its definition does not change it.
            lower_node(&sort.input, operators)
        }
        LogicalPlan::Limit(_) => Err(unsupported("LIMIT")),
        LogicalPlan::Join(_) => Err(unsupported("JOIN")),
        LogicalPlan::Union(_) => Err(unsupported("UNION")),
        LogicalPlan::Distinct(_) => Err(unsupported("DISTINCT")),
        LogicalPlan::Window(_) => Err(unsupported("window functions (OVER)")),
        LogicalPlan::Subquery(_) => Err(unsupported("subqueries")),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            Err(unsupported("a query without FROM"))
        }
        LogicalPlan::Unnest(_) => Err(unsupported("UNNEST")),
        LogicalPlan::RecursiveQuery(_) => Err(unsupported("WITH RECURSIVE")),
        LogicalPlan::Repartition(_) => Err(unsupported("repartitioning")),
        LogicalPlan::Extension(_) => Err(unsupported("extension plan nodes")),
        LogicalPlan::Statement(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Ddl(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::DescribeTable(_) => Err(unsupported("a statement")),
    }
}

fn aggregate_call(
    expression: &Expr,
    input_schema: &DFSchema,
    output_type: datafusion::arrow::datatypes::DataType,
) -> Result<AggregateCall> {
    let inner = match expression {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(function) = inner else {
        return Err(unsupported(&format!("aggregate expression {expression}")));
    };
    let name = function.func.name();
    let params = &function.params;
    if params.distinct {
        return Err(unsupported(&format!("{name}(DISTINCT ...)")));
    }
    if params.filter.is_some() {
        return Err(unsupported(&format!("{name}(...) FILTER (WHERE ...)")));
    }
    if !params.order_by.is_empty() {
        return Err(unsupported(&format!("{name}(... ORDER BY ...)")));
    }
    let aggregate_function = match name {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "avg" => AggregateFunction::Avg,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        other => return Err(unsupported(&format!("aggregate function {other}"))),
    };
    let [argument] = params.args.as_slice() else {
        return Err(unsupported(&format!(
            "{name} with {} arguments",
            params.args.len()
        )));
    };
    Ok(AggregateCall {
        function: aggregate_function,
        argument: physical(argument, input_schema)?,
        input_type: argument.get_type(input_schema)?,
        output_type,
    })
}

fn physical(expression: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    super::physical_expr(expression, schema)
}

/// The Arrow schema of a plan node with every column nullable: views carry no NOT NULL
/// constraints, and DataFusion's nullability inference must not reject a legitimate NULL.
pub fn nullable_schema(schema: &DFSchema) -> SchemaRef {
    crate::catalog::without_constraints(schema.as_arrow())
}
