//! Scalar subqueries left in a view's plan become cross joins the dataflow maintains; in an ad
//! hoc statement's plan their result is typed as possibly NULL.
//!
//! DataFusion decorrelates IN, EXISTS and correlated scalar subqueries into joins, but leaves
//! an uncorrelated scalar subquery (`WHERE v > (SELECT avg(y) FROM b)`) in the expression, to be
//! run once per query. A view must follow the subquery's result as it changes, so the subquery
//! is joined to the outer query instead: when it is an aggregate without GROUP BY it has
//! exactly one row, and a cross join with one row adds its value as a column.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError, Result as DataFusionResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{PlanError, Result};

/// Rewrites every filter and projection of `plan` that compares with a scalar subquery into a
/// cross join with the subquery, followed by the same filter or projection over its column.
pub fn scalar_subqueries_as_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    check_scalar_subqueries(&plan)?;
    let mut joined = 0usize;
    let rewritten = plan.transform_up(|node| match node {
        LogicalPlan::Filter(filter) if has_scalar_subquery(&filter.predicate) => {
            let columns: Vec<Expr> = filter
                .input
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            let (input, predicate) = join_subqueries(
                Arc::unwrap_or_clone(filter.input),
                filter.predicate,
                &mut joined,
            )?;
            let plan = LogicalPlanBuilder::from(input)
                .filter(predicate)?
                .project(columns)?
                .build()?;
            Ok(Transformed::yes(plan))
        }
        LogicalPlan::Projection(projection) if projection.expr.iter().any(has_scalar_subquery) => {
            let mut input = Arc::unwrap_or_clone(projection.input);
            let mut expressions = Vec::with_capacity(projection.expr.len());
            for expression in projection.expr {
                let name = expression.schema_name().to_string();
                let (joined_input, rewritten) = join_subqueries(input, expression, &mut joined)?;
                input = joined_input;
                expressions.push(rewritten.alias_if_changed(name)?);
            }
            let plan = LogicalPlanBuilder::from(input)
                .project(expressions)?
                .build()?;
            Ok(Transformed::yes(plan))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(rewritten.data)
}

fn has_scalar_subquery(expression: &Expr) -> bool {
    expression
        .exists(|node| Ok(matches!(node, Expr::ScalarSubquery(_))))
        .unwrap_or(false)
}

/// Joins each scalar subquery of `expression` to `plan` and puts its column in its place.
fn join_subqueries(
    plan: LogicalPlan,
    expression: Expr,
    joined: &mut usize,
) -> datafusion::error::Result<(LogicalPlan, Expr)> {
    let mut plan = plan;
    let expression = expression
        .transform_up(|node| match node {
            Expr::ScalarSubquery(subquery) => {
                *joined += 1;
                let subquery = LogicalPlanBuilder::from(Arc::unwrap_or_clone(subquery.subquery))
                    .alias(format!("__scalar_subquery_{joined}"))?
                    .build()?;
                let (qualifier, field) = subquery.schema().qualified_field(0);
                let column = Expr::Column(Column::from((qualifier, field)));
                let outer = std::mem::take(&mut plan);
                plan = LogicalPlanBuilder::from(outer)
                    .cross_join(subquery)?
                    .build()?;
                Ok(Transformed::yes(column))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    Ok((plan, expression))
}

/// Only scalar subqueries that always return one row, whatever their input, can become a
/// cross join: uncorrelated aggregates without GROUP BY.
fn check_scalar_subqueries(plan: &LogicalPlan) -> Result<()> {
    let mut problem = None;
    plan.apply(|node| {
        for expression in node.expressions() {
            expression.apply(|inner| {
                if let Expr::ScalarSubquery(subquery) = inner {
                    if !subquery.outer_ref_columns.is_empty() {
                        problem = Some(format!("correlated scalar subquery {inner}"));
                    } else if !always_one_row(&subquery.subquery) {
                        problem = Some(format!(
                            "scalar subquery that is not an aggregate without GROUP BY: {inner}"
                        ));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match problem {
        Some(problem) => Err(PlanError::Unsupported(format!(
            "{problem} is not supported in materialized views"
        ))
        .into()),
        None => Ok(()),
    }
}

fn always_one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(projection) => always_one_row(&projection.input),
        LogicalPlan::SubqueryAlias(alias) => always_one_row(&alias.input),
        LogicalPlan::Aggregate(aggregate) => aggregate.group_expr.is_empty(),
        _ => false,
    }
}

/// Wraps every uncorrelated scalar subquery of an ad hoc statement's plan in
/// [`SUBQUERY_OR_NULL`], whose result may be NULL. A subquery that finds no row answers NULL,
/// but DataFusion 55 takes its nullability from the subquery's column: the simplifier then
/// decided `(SELECT 'x' FROM t WHERE false) IS NULL` was false, and
/// `(SELECT 1 FROM t WHERE false)` failed the batch holding the NULL (XX000 "declared as
/// non-nullable"). Run before the analyzer and optimizer; the wrapper keeps the subquery's
/// column name, so nothing that refers to it changes. Views lower their subqueries themselves
/// and never see it.
pub fn nullable_scalar_subqueries(plan: LogicalPlan) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up_with_subqueries(|node| {
        let rewritten = node.map_expressions(|expression| {
            expression.transform_up(|inner| match inner {
                // A correlated one is decorrelated into an outer join, whose side is nullable.
                Expr::ScalarSubquery(subquery) if subquery.outer_ref_columns.is_empty() => Ok(
                    Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                        Arc::new(ScalarUDF::new_from_impl(SubqueryOrNull::default())),
                        vec![Expr::ScalarSubquery(subquery)],
                    ))),
                ),
                other => Ok(Transformed::no(other)),
            })
        })?;
        if rewritten.transformed {
            // The node's schema says what its expressions were: non-nullable.
            rewritten.map_data(LogicalPlan::recompute_schema)
        } else {
            Ok(rewritten)
        }
    })?;
    Ok(rewritten.data)
}

/// The name [`SubqueryOrNull`] shows in EXPLAIN.
pub const SUBQUERY_OR_NULL: &str = "subquery_or_null";

/// Its argument, typed as possibly NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SubqueryOrNull {
    signature: Signature,
}

impl Default for SubqueryOrNull {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SubqueryOrNull {
    fn name(&self) -> &str {
        SUBQUERY_OR_NULL
    }

    fn schema_name(&self, args: &[Expr]) -> DataFusionResult<String> {
        Ok(args
            .iter()
            .map(|argument| argument.schema_name().to_string())
            .collect())
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DataFusionResult<DataType> {
        arg_types.first().cloned().ok_or_else(takes_one_value)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DataFusionResult<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let data_type = self.return_type(&types)?;
        Ok(Arc::new(Field::new(SUBQUERY_OR_NULL, data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        args.args.into_iter().next().ok_or_else(takes_one_value)
    }
}

fn takes_one_value() -> DataFusionError {
    DataFusionError::Plan(format!("{SUBQUERY_OR_NULL} takes one value"))
}
