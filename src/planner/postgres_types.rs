//! Postgres result types for aggregates and aggregate window functions, applied to every plan (ad-hoc queries and views alike).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result as DataFusionResult;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Expr, ExprSchemable, LogicalPlan, Projection, Window,
    WindowFunctionDefinition,
};
use datafusion::optimizer::AnalyzerRule;

/// Postgres returns NUMERIC for `sum(bigint)` and for `avg` of any integer; DataFusion returns
/// Int64 and Float64. This rule casts such arguments to a decimal first, so DataFusion's own
/// type rules then produce a decimal result: `sum(bigint)` becomes DECIMAL(38, 0), `avg(int)`
/// and `avg(numeric(p, s))` become DECIMAL(38, 16) — Postgres shows 16 fractional digits for
/// typical averages.
/// The same holds for `sum` and `avg` as window functions (`OVER (...)`).
/// The rewritten aggregate keeps its original name, so the rest of the plan still finds it.
#[derive(Debug)]
pub struct PostgresAggregateTypes;

/// Scale of the decimal an integer `avg` argument is cast to; DataFusion adds 4 for the result.
const AVG_ARGUMENT_SCALE: i8 = 12;

impl AnalyzerRule for PostgresAggregateTypes {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DataFusionResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let aggregate = match node {
                LogicalPlan::Aggregate(aggregate) => aggregate,
                LogicalPlan::Window(window) => return rewrite_window(window),
                other => return Ok(Transformed::no(other)),
            };
            let input_schema = Arc::clone(aggregate.input.schema());
            let mut changed = false;
            let aggregates = aggregate
                .aggr_expr
                .iter()
                .map(|expression| {
                    let rewritten = rewrite_aggregate(expression, &input_schema)?;
                    changed |= rewritten.is_some();
                    Ok(rewritten.unwrap_or_else(|| expression.clone()))
                })
                .collect::<DataFusionResult<Vec<_>>>()?;
            if !changed {
                return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
            }
            let rebuilt = Aggregate::try_new(
                Arc::clone(&aggregate.input),
                aggregate.group_expr.clone(),
                aggregates,
            )?;
            Ok(Transformed::yes(LogicalPlan::Aggregate(rebuilt)))
        })
        .and_then(|transformed| {
            // Parents cached the aggregate's old output types; recompute them bottom-up.
            transformed
                .data
                .transform_up_with_subqueries(|node| Ok(Transformed::yes(node.recompute_schema()?)))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "postgres_aggregate_types"
    }
}

/// A window node with its `sum` and `avg` calls rewritten as [`rewrite_aggregate`] does, and its
/// ROW_NUMBER, RANK and DENSE_RANK (UInt64 in DataFusion, which clients would see as NUMERIC)
/// cast to BIGINT by a projection above it that keeps every column's name.
fn rewrite_window(window: Window) -> DataFusionResult<Transformed<LogicalPlan>> {
    let rewritten = rewrite_window_aggregates(window)?;
    let LogicalPlan::Window(window) = &rewritten.data else {
        return Ok(rewritten);
    };
    let schema = Arc::clone(&window.schema);
    let first_output = window.input.schema().fields().len();
    let unsigned = |place: usize| {
        place >= first_output && *schema.field(place).data_type() == DataType::UInt64
    };
    if !(first_output..schema.fields().len()).any(unsigned) {
        return Ok(rewritten);
    }
    let expressions = schema
        .iter()
        .enumerate()
        .map(|(place, (qualifier, field))| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if unsigned(place) {
                column
                    .cast_to(&DataType::Int64, schema.as_ref())
                    .map(|cast| cast.alias_qualified(qualifier.cloned(), field.name()))
            } else {
                Ok(column)
            }
        })
        .collect::<DataFusionResult<Vec<_>>>()?;
    let projection = Projection::try_new(expressions, Arc::new(rewritten.data))?;
    Ok(Transformed::yes(LogicalPlan::Projection(projection)))
}

/// A window node with its `sum` and `avg` calls rewritten as [`rewrite_aggregate`] does.
fn rewrite_window_aggregates(window: Window) -> DataFusionResult<Transformed<LogicalPlan>> {
    let input_schema = Arc::clone(window.input.schema());
    let mut changed = false;
    let expressions = window
        .window_expr
        .iter()
        .map(|expression| {
            let (inner, alias) = match expression {
                Expr::Alias(alias) => (alias.expr.as_ref(), Some(alias.name.clone())),
                other => (other, None),
            };
            let Expr::WindowFunction(function) = inner else {
                return Ok(expression.clone());
            };
            let WindowFunctionDefinition::AggregateUDF(udf) = &function.fun else {
                return Ok(expression.clone());
            };
            let [argument] = function.params.args.as_slice() else {
                return Ok(expression.clone());
            };
            let Some((target, replacement)) =
                postgres_argument_type(udf, &argument.get_type(input_schema.as_ref())?)
            else {
                return Ok(expression.clone());
            };
            changed = true;
            let mut rewritten = function.as_ref().clone();
            rewritten.params.args = vec![argument.clone().cast_to(&target, input_schema.as_ref())?];
            rewritten.fun = WindowFunctionDefinition::AggregateUDF(replacement);
            let name = alias.unwrap_or_else(|| expression.schema_name().to_string());
            Ok(Expr::WindowFunction(Box::new(rewritten)).alias(name))
        })
        .collect::<DataFusionResult<Vec<_>>>()?;
    if !changed {
        return Ok(Transformed::no(LogicalPlan::Window(window)));
    }
    Ok(Transformed::yes(LogicalPlan::Window(Window::try_new(
        expressions,
        window.input,
    )?)))
}

/// The type Postgres's rule wants `function`'s argument of type `argument` cast to, and the
/// function to call on it (Tributary's rounding avg for avg); `None` when it stays as it is.
fn postgres_argument_type(
    function: &Arc<AggregateUDF>,
    argument: &DataType,
) -> Option<(DataType, Arc<AggregateUDF>)> {
    let target = match (function.name(), argument) {
        ("sum", DataType::Int64 | DataType::UInt64) => DataType::Decimal128(38, 0),
        ("avg", integer) if integer.is_integer() => DataType::Decimal128(38, AVG_ARGUMENT_SCALE),
        ("avg", DataType::Decimal128(_, scale)) if *scale < AVG_ARGUMENT_SCALE => {
            DataType::Decimal128(38, AVG_ARGUMENT_SCALE)
        }
        _ => return None,
    };
    // Postgres rounds an average's last digit; DataFusion's decimal average truncates it.
    let function = if function.name() == "avg" {
        Arc::new(AggregateUDF::from(
            super::postgres_avg::PostgresAvg::default(),
        ))
    } else {
        Arc::clone(function)
    };
    Some((target, function))
}

fn rewrite_aggregate(
    expression: &Expr,
    input_schema: &datafusion::common::DFSchemaRef,
) -> DataFusionResult<Option<Expr>> {
    let (inner, alias) = match expression {
        Expr::Alias(alias) => (alias.expr.as_ref(), Some(alias.name.clone())),
        other => (other, None),
    };
    let Expr::AggregateFunction(function) = inner else {
        return Ok(None);
    };
    let [argument] = function.params.args.as_slice() else {
        return Ok(None);
    };
    let argument_type = argument.get_type(input_schema.as_ref())?;
    let Some((target, func)) = postgres_argument_type(&function.func, &argument_type) else {
        return Ok(None);
    };
    let name = alias.unwrap_or_else(|| expression.schema_name().to_string());
    let mut params = function.params.clone();
    params.args = vec![argument.clone().cast_to(&target, input_schema.as_ref())?];
    let rewritten = Expr::AggregateFunction(AggregateFunction { func, params });
    Ok(Some(rewritten.alias(name)))
}

/// Postgres's `string_agg` returns text; DataFusion's returns LargeUtf8, which is Tributary's
/// jsonb. A projection over each aggregate computing `string_agg` casts its column to text,
/// keeping the column's name, so the result is text to clients and to the plan above.
#[derive(Debug)]
pub struct TextStringAgg;

impl AnalyzerRule for TextStringAgg {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DataFusionResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Aggregate(aggregate) = &node else {
                return Ok(Transformed::no(node));
            };
            let schema = Arc::clone(&aggregate.schema);
            // The aggregates' columns come last, after the group columns.
            let first_aggregate = schema.fields().len() - aggregate.aggr_expr.len();
            let is_string_agg = |place: usize| {
                place >= first_aggregate
                    && matches!(
                        aggregate.aggr_expr[place - first_aggregate].clone().unalias(),
                        Expr::AggregateFunction(function) if function.func.name() == "string_agg"
                    )
            };
            let casts: Vec<usize> = (0..schema.fields().len())
                .filter(|&place| {
                    *schema.field(place).data_type() == crate::sql::jsonb::JSONB
                        && is_string_agg(place)
                })
                .collect();
            if casts.is_empty() {
                return Ok(Transformed::no(node));
            }
            let expressions = schema
                .iter()
                .enumerate()
                .map(|(place, (qualifier, field))| {
                    let column = Expr::Column(datafusion::common::Column::from((qualifier, field)));
                    if casts.contains(&place) {
                        Expr::Cast(datafusion::logical_expr::Cast::new(
                            Box::new(column),
                            DataType::Utf8,
                        ))
                        .alias_qualified(qualifier.cloned(), field.name())
                    } else {
                        column
                    }
                })
                .collect::<Vec<_>>();
            Ok(Transformed::yes(LogicalPlan::Projection(
                datafusion::logical_expr::Projection::try_new(expressions, Arc::new(node))?,
            )))
        })
        .and_then(|transformed| {
            if !transformed.transformed {
                return Ok(transformed);
            }
            // Parents cached the column's old type; recompute them bottom-up.
            transformed
                .data
                .transform_up_with_subqueries(|node| Ok(Transformed::yes(node.recompute_schema()?)))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "text_string_agg"
    }
}
