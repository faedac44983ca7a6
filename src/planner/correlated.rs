//! Correlated scalar subqueries DataFusion cannot decorrelate become joins with the distinct
//! values the outer rows correlate on.
//!
//! DataFusion turns a correlated scalar subquery into an outer join only when it is an aggregate
//! and every correlation is an equality (`WHERE x.c = t.c`). Anything else (`WHERE x.c > t.c`,
//! an outer column in the subquery's SELECT list, a subquery without an aggregate) stayed in
//! the plan and failed with "Physical plan does not support logical expression ScalarSubquery".
//! This module rewrites
//!
//! ```text
//! SELECT t.a, (SELECT count(*) FROM x WHERE x.c > t.c) FROM t
//! ```
//!
//! into, in effect,
//!
//! ```text
//! SELECT t.a, coalesce(s.count, 0)
//! FROM t LEFT JOIN (
//!   SELECT d.c, count(*) FROM x, (SELECT DISTINCT c FROM t) AS d WHERE x.c > d.c GROUP BY d.c
//! ) AS s ON t.c IS NOT DISTINCT FROM s.c
//! ```
//!
//! The outer columns inside the subquery read the distinct outer values instead (the "domain"),
//! joined in at the lowest node that uses them and carried up to the aggregate, which groups by
//! them. An outer row whose value finds no group gets what the aggregate gives on no rows (0 for
//! count, NULL for the others), so the rewrite keeps Postgres's answer where the plain join would
//! lose it. A subquery without an aggregate chooses its row per domain value instead: with
//! `ORDER BY ... LIMIT 1`, the row numbered 1 in each value's rows (a top-N per value in a view);
//! without, the only row, where a second one is Postgres's error 21000 (ad hoc queries only).
//! Plans made this way are ordinary joins, aggregates and windows: ad hoc queries run them, and
//! materialized views maintain them incrementally.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, JoinType, NullEquality, Result as DataFusionResult};
use datafusion::error::DataFusionError;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Accumulator, Aggregate, AggregateUDF, AggregateUDFImpl, BinaryExpr, Distinct, Expr,
    ExprFunctionExt, FetchType, LogicalPlan, LogicalPlanBuilder, Operator, Projection, Signature,
    SkipType, SortExpr, Subquery, Volatility, lit, when,
};

use crate::error::Result;

/// Rewrites every correlated scalar subquery of `plan`'s filters and projections that DataFusion
/// would leave in place (see the module's doc) into a join; the others are left as they are.
pub fn correlated_scalar_subqueries_as_joins(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut joined = 0usize;
    let rewritten = plan.transform_up(|node| match node {
        LogicalPlan::Projection(projection) if projection.expr.iter().any(needs_rewrite) => {
            let mut input = Arc::unwrap_or_clone(projection.input);
            let mut expressions = Vec::with_capacity(projection.expr.len());
            let mut changed = false;
            for expression in projection.expr {
                let name = expression.schema_name().to_string();
                let (joined_input, rewritten) = join_subqueries(input, expression, &mut joined)?;
                input = joined_input;
                changed |= rewritten.transformed;
                expressions.push(rewritten.data.alias_if_changed(name)?);
            }
            let plan = LogicalPlan::Projection(Projection::try_new(expressions, Arc::new(input))?);
            Ok(Transformed::new_transformed(plan, changed))
        }
        LogicalPlan::Filter(filter) if needs_rewrite(&filter.predicate) => {
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
            let changed = predicate.transformed;
            let plan = LogicalPlanBuilder::from(input)
                .filter(predicate.data)?
                .project(columns)?
                .build()?;
            Ok(Transformed::new_transformed(plan, changed))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(rewritten.data)
}

/// Whether `expression` holds a correlated scalar subquery DataFusion would not decorrelate.
fn needs_rewrite(expression: &Expr) -> bool {
    expression
        .exists(|inner| {
            Ok(matches!(inner, Expr::ScalarSubquery(subquery) if rewritten_here(subquery)))
        })
        .unwrap_or(false)
}

/// Whether `subquery` is correlated and DataFusion would leave it in the plan: it decorrelates
/// an aggregate correlated by equalities only.
fn rewritten_here(subquery: &Subquery) -> bool {
    let decorrelated_by_datafusion = correlated_by_equalities_only(&subquery.subquery)
        && matches!(
            Shape::of(&subquery.subquery),
            Some(Shape::Aggregated { .. })
        );
    !subquery.outer_ref_columns.is_empty() && !decorrelated_by_datafusion
}

/// Whether every outer column in `plan` is one side of an equality with a column of its own, in
/// a filter: what DataFusion's own decorrelation takes.
fn correlated_by_equalities_only(plan: &LogicalPlan) -> bool {
    let mut only_equalities = true;
    let _ = plan.apply(|node| {
        for expression in node.expressions() {
            if !expression.contains_outer() {
                continue;
            }
            let LogicalPlan::Filter(filter) = node else {
                only_equalities = false;
                continue;
            };
            only_equalities &= split_conjunction(&filter.predicate)
                .into_iter()
                .filter(|conjunct| conjunct.contains_outer())
                .all(is_equality_with_outer_column);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    only_equalities
}

fn is_equality_with_outer_column(conjunct: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = conjunct
    else {
        return false;
    };
    let plain = |expression: &Expr| match expression.clone().unalias_nested().data {
        Expr::Cast(cast) => *cast.expr,
        other => other,
    };
    matches!(
        (plain(left), plain(right)),
        (Expr::Column(_), Expr::OuterReferenceColumn(..))
            | (Expr::OuterReferenceColumn(..), Expr::Column(_))
    )
}

/// Joins `plan` with every rewritable correlated scalar subquery of `expression` and puts the
/// subquery's value in its place.
fn join_subqueries(
    plan: LogicalPlan,
    expression: Expr,
    joined: &mut usize,
) -> DataFusionResult<(LogicalPlan, Transformed<Expr>)> {
    let mut plan = plan;
    let expression = expression.transform_up(|inner| match inner {
        Expr::ScalarSubquery(subquery) if rewritten_here(&subquery) => {
            match decorrelate(&plan, &subquery, joined)? {
                Some((with_subquery, value)) => {
                    plan = with_subquery;
                    Ok(Transformed::yes(value))
                }
                None => Ok(Transformed::no(Expr::ScalarSubquery(subquery))),
            }
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok((plan, expression))
}

/// The distinct outer values one subquery correlates on, and what the subquery calls them.
struct Domain {
    /// The outer columns the subquery reads, each once.
    outer: Vec<Column>,
    /// The name each one's value has inside the rewritten subquery (unqualified, unique).
    names: Vec<String>,
    /// `SELECT DISTINCT outer... AS names...` over the outer plan.
    plan: LogicalPlan,
}

impl Domain {
    fn columns(&self) -> impl Iterator<Item = Expr> + '_ {
        self.names
            .iter()
            .map(|name| Expr::Column(Column::from_name(name)))
    }

    /// `expression` with each outer column replaced by the domain's column for it.
    fn replace_outer(&self, expression: Expr) -> DataFusionResult<Expr> {
        Ok(expression
            .transform_up(|inner| match inner {
                Expr::OuterReferenceColumn(field, column) => {
                    match self.outer.iter().position(|outer| *outer == column) {
                        Some(index) => Ok(Transformed::yes(Expr::Column(Column::from_name(
                            &self.names[index],
                        )))),
                        None => Ok(Transformed::no(Expr::OuterReferenceColumn(field, column))),
                    }
                }
                other => Ok(Transformed::no(other)),
            })?
            .data)
    }

    fn cross_join(&self, plan: LogicalPlan) -> DataFusionResult<LogicalPlan> {
        LogicalPlanBuilder::from(plan)
            .cross_join(self.plan.clone())?
            .build()
    }

    /// `plan` with the domain's columns: joined in where it reads outer columns (see
    /// [`extend`]), or beside every row when it reads none (its rows are then the same for
    /// every outer value).
    fn extend_or_join(&self, plan: &LogicalPlan) -> DataFusionResult<Option<LogicalPlan>> {
        Ok(match extend(plan, self)? {
            Some((extended, true)) => Some(extended),
            Some((unchanged, false)) => Some(self.cross_join(unchanged)?),
            None => None,
        })
    }
}

/// `outer` left-joined with `subquery` grouped by the outer values it correlates on, and the
/// expression giving the subquery's value in each joined row; `None` when the subquery is not of
/// a shape this rewrite keeps exact (see [`extend`]).
fn decorrelate(
    outer: &LogicalPlan,
    subquery: &Subquery,
    joined: &mut usize,
) -> DataFusionResult<Option<(LogicalPlan, Expr)>> {
    let mut outer_columns: Vec<Column> = Vec::new();
    for reference in &subquery.outer_ref_columns {
        if let Expr::OuterReferenceColumn(_, column) = reference
            && !outer_columns.contains(column)
        {
            outer_columns.push(column.clone());
        }
    }
    if outer_columns.is_empty()
        || !outer_columns
            .iter()
            .all(|column| outer.schema().has_column(column))
    {
        return Ok(None);
    }
    let Some(shape) = Shape::of(&subquery.subquery) else {
        return Ok(None);
    };
    *joined += 1;
    let alias = format!("__correlated_{joined}");
    let names: Vec<String> = (0..outer_columns.len())
        .map(|index| format!("{alias}_{index}"))
        .collect();
    let domain_plan = LogicalPlanBuilder::from(outer.clone())
        .aggregate(
            outer_columns
                .iter()
                .zip(&names)
                .map(|(column, name)| Expr::Column(column.clone()).alias(name)),
            Vec::<Expr>::new(),
        )?
        .build()?;
    let domain = Domain {
        outer: outer_columns,
        names,
        plan: domain_plan,
    };
    let made = match shape {
        Shape::Aggregated { above, aggregate } => aggregated(&domain, &alias, above, aggregate)?,
        Shape::Rows {
            value,
            order,
            first_only,
            rows,
        } => chosen_row(&domain, &alias, value, order, first_only, rows)?,
    };
    let Some((grouped, value)) = made else {
        return Ok(None);
    };
    if value.exists(|inner| {
        Ok(matches!(
            inner,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ))
    })? {
        return Ok(None);
    }
    let right_keys: Vec<Column> = domain
        .names
        .iter()
        .map(|name| Column::new(Some(alias.as_str()), name))
        .collect();
    let joined_plan = LogicalPlanBuilder::from(outer.clone())
        .join_detailed(
            grouped,
            JoinType::Left,
            (domain.outer.clone(), right_keys),
            None,
            NullEquality::NullEqualsNull,
        )?
        .build()?;
    Ok(Some((joined_plan, value)))
}

/// What a correlated scalar subquery computes, as far as this rewrite takes it.
enum Shape<'a> {
    /// An aggregate without GROUP BY (one row whatever its input), under projections and aliases
    /// (`above`, outermost first).
    Aggregated {
        above: Vec<&'a LogicalPlan>,
        aggregate: &'a Aggregate,
    },
    /// `value` of the rows of `rows`: of the first in `order` when `first_only` (LIMIT 1),
    /// otherwise of the only one (more than one is an error, as in Postgres).
    Rows {
        value: Expr,
        order: Vec<SortExpr>,
        first_only: bool,
        rows: &'a LogicalPlan,
    },
}

impl<'a> Shape<'a> {
    fn of(plan: &'a LogicalPlan) -> Option<Self> {
        // Projections and aliases over an aggregate without GROUP BY; otherwise, below
        // projections, aliases, one LIMIT 1 and the ORDER BY under it, the rows chosen from.
        let mut chain = Vec::new();
        let mut node = plan;
        loop {
            match node {
                LogicalPlan::Projection(projection) => {
                    chain.push(node);
                    node = projection.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(alias) => {
                    chain.push(node);
                    node = alias.input.as_ref();
                }
                LogicalPlan::Aggregate(aggregate)
                    if aggregate.group_expr.is_empty()
                        && chain.iter().all(|above| {
                            matches!(
                                above,
                                LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_)
                            )
                        }) =>
                {
                    return Some(Shape::Aggregated {
                        above: chain,
                        aggregate,
                    });
                }
                LogicalPlan::Limit(limit) => {
                    let skips = !matches!(limit.get_skip_type(), Ok(SkipType::Literal(0)));
                    let first = matches!(limit.get_fetch_type(), Ok(FetchType::Literal(Some(1))));
                    if skips || !first {
                        return None;
                    }
                    chain.push(node);
                    node = limit.input.as_ref();
                }
                LogicalPlan::Sort(sort) if matches!(sort.fetch, None | Some(1)) => {
                    chain.push(node);
                    node = sort.input.as_ref();
                }
                _ => break,
            }
        }
        // The chosen value and the order, written over the rows' columns.
        let rows = node;
        let mut values: Vec<Expr> = (0..rows.schema().fields().len())
            .map(|index| {
                let (qualifier, field) = rows.schema().qualified_field(index);
                Expr::Column(Column::from((qualifier, field)))
            })
            .collect();
        let mut order = Vec::new();
        let mut first_only = false;
        for node in chain.into_iter().rev() {
            match node {
                LogicalPlan::Projection(projection) => {
                    values = projection
                        .expr
                        .iter()
                        .map(|expression| {
                            substitute(expression, projection.input.schema(), &values)
                        })
                        .collect::<Option<Vec<_>>>()?;
                }
                LogicalPlan::Sort(sort) => {
                    // A sort above the LIMIT does not choose the row.
                    if first_only {
                        continue;
                    }
                    first_only |= sort.fetch == Some(1);
                    order = sort
                        .expr
                        .iter()
                        .map(|sort_expression| {
                            Some(SortExpr::new(
                                substitute(&sort_expression.expr, sort.input.schema(), &values)?,
                                sort_expression.asc,
                                sort_expression.nulls_first,
                            ))
                        })
                        .collect::<Option<Vec<_>>>()?;
                }
                LogicalPlan::Limit(_) => first_only = true,
                _ => {}
            }
        }
        let value = values.into_iter().next()?;
        Some(Shape::Rows {
            value,
            order,
            first_only,
            rows,
        })
    }
}

/// `expression` (over `schema`) with each column replaced by the expression for its position in
/// `values`; `None` when a column is not in `schema`.
fn substitute(expression: &Expr, schema: &DFSchema, values: &[Expr]) -> Option<Expr> {
    expression
        .clone()
        .unalias_nested()
        .data
        .transform_up(|inner| match inner {
            Expr::Column(column) => {
                let index = schema.index_of_column(&column)?;
                Ok(Transformed::yes(values[index].clone()))
            }
            other => Ok(Transformed::no(other)),
        })
        .ok()
        .map(|substituted| substituted.data)
}

/// The aggregate of a [`Shape::Aggregated`] subquery grouped by the domain, and its value in
/// terms of the joined rows: each aggregate's column (or its value over no rows where the outer
/// value found none), then the nodes above it applied in turn.
fn aggregated(
    domain: &Domain,
    alias: &str,
    above: Vec<&LogicalPlan>,
    aggregate: &Aggregate,
) -> DataFusionResult<Option<(LogicalPlan, Expr)>> {
    let Some(input) = domain.extend_or_join(&aggregate.input)? else {
        return Ok(None);
    };
    // Named apart from the outer query's columns: an outer aggregate's `count(*)` (HAVING) would
    // otherwise be ambiguous with the subquery's once they are joined.
    let aggregates = aggregate
        .aggr_expr
        .iter()
        .enumerate()
        .map(|(index, expression)| {
            let unnamed = expression.clone().unalias_nested().data;
            Ok(domain
                .replace_outer(unnamed)?
                .alias(format!("{alias}_value_{index}")))
        })
        .collect::<DataFusionResult<Vec<_>>>()?;
    let grouped = LogicalPlanBuilder::from(input)
        .aggregate(domain.columns(), aggregates)?
        .alias(alias)?
        .build()?;
    // The subquery's output, in terms of the joined rows: each aggregate's column (or its value
    // over no rows where the outer value found none), then the nodes above it applied in turn.
    let groups = domain.names.len();
    let mut values = Vec::with_capacity(aggregate.aggr_expr.len());
    for (index, expression) in aggregate.aggr_expr.iter().enumerate() {
        let (qualifier, field) = grouped.schema().qualified_field(groups + index);
        let column = Expr::Column(Column::from((qualifier, field)));
        let over_no_rows = match expression.clone().unalias_nested().data {
            Expr::AggregateFunction(function) => function.func.default_value(field.data_type())?,
            _ => return Ok(None),
        };
        values.push(if over_no_rows.is_null() {
            column
        } else {
            when(column.clone().is_null(), lit(over_no_rows)).otherwise(column)?
        });
    }
    for node in above.into_iter().rev() {
        if let LogicalPlan::Projection(projection) = node {
            let input_schema = projection.input.schema();
            values = projection
                .expr
                .iter()
                .map(|expression| {
                    let substituted = expression.clone().unalias_nested().data.transform_up(
                        |inner| match inner {
                            Expr::Column(column) => {
                                let index = input_schema.index_of_column(&column)?;
                                Ok(Transformed::yes(values[index].clone()))
                            }
                            Expr::OuterReferenceColumn(_, column) => {
                                Ok(Transformed::yes(Expr::Column(column)))
                            }
                            other => Ok(Transformed::no(other)),
                        },
                    )?;
                    Ok(substituted.data)
                })
                .collect::<DataFusionResult<Vec<_>>>()?;
        }
    }
    let [value] = <[Expr; 1]>::try_from(values).map_err(|values| {
        datafusion::error::DataFusionError::Plan(format!(
            "a scalar subquery gives {} columns",
            values.len()
        ))
    })?;
    Ok(Some((grouped, value)))
}

/// The row a [`Shape::Rows`] subquery chooses, per domain value: the first in the subquery's
/// order, or the only one.
fn chosen_row(
    domain: &Domain,
    alias: &str,
    value: Expr,
    order: Vec<SortExpr>,
    first_only: bool,
    rows: &LogicalPlan,
) -> DataFusionResult<Option<(LogicalPlan, Expr)>> {
    let Some(input) = domain.extend_or_join(rows)? else {
        return Ok(None);
    };
    let value = domain.replace_outer(value)?;
    let name = format!("{alias}_value_0");
    let grouped = if first_only {
        // The first row of each domain value's rows: ROW_NUMBER() = 1, which views maintain as
        // a top-N per value. Without an ORDER BY any row will do; the smallest value is taken,
        // so that a view and its recomputation agree.
        let order = if order.is_empty() {
            vec![SortExpr::new(value.clone(), true, false)]
        } else {
            order
                .into_iter()
                .map(|sort| {
                    Ok(SortExpr::new(
                        domain.replace_outer(sort.expr)?,
                        sort.asc,
                        sort.nulls_first,
                    ))
                })
                .collect::<DataFusionResult<Vec<_>>>()?
        };
        // Unnamed, as SQL plans it: views recognise ROW_NUMBER() in a window node's own column.
        let numbered = row_number()
            .partition_by(domain.columns().collect())
            .order_by(order)
            .build()?;
        let windowed = LogicalPlanBuilder::from(input)
            .window(vec![numbered])?
            .build()?;
        let (qualifier, field) = windowed
            .schema()
            .qualified_field(windowed.schema().fields().len() - 1);
        let number = Expr::Column(Column::from((qualifier, field)));
        LogicalPlanBuilder::from(windowed)
            .filter(number.eq(lit(1u64)))?
            .project(domain.columns().chain([value.alias(name.as_str())]))?
            .alias(alias)?
            .build()?
    } else {
        let only = AggregateUDF::new_from_impl(OnlyValue::default()).call(vec![value]);
        LogicalPlanBuilder::from(input)
            .aggregate(domain.columns(), vec![only.alias(name.as_str())])?
            .alias(alias)?
            .build()?
    };
    Ok(Some((
        grouped,
        Expr::Column(Column::new(Some(alias), name)),
    )))
}

/// `plan` (a subquery's input below its aggregate) with the domain's columns joined in where an
/// outer column is first read and carried up to its output; the flag says whether it holds
/// them (nothing read an outer column when it does not). `None` where carrying them would change
/// the answer or is not written yet: an outer column in a join condition, below a LIMIT, a window,
/// a set operation or an aggregate without GROUP BY, or on both sides of a join.
fn extend(plan: &LogicalPlan, domain: &Domain) -> DataFusionResult<Option<(LogicalPlan, bool)>> {
    let reads = |node: &LogicalPlan| {
        node.expressions()
            .iter()
            .any(|expression| expression.contains_outer())
    };
    if !plan.exists(|node| Ok(reads(node)))? {
        return Ok(Some((plan.clone(), false)));
    }
    // From here the node or a node below it reads an outer column.
    let reads_outer = reads(plan);
    let with_domain = |input: &LogicalPlan| domain.extend_or_join(input);
    let extended = match plan {
        LogicalPlan::Filter(filter) => {
            let Some(input) = with_domain(&filter.input)? else {
                return Ok(None);
            };
            LogicalPlanBuilder::from(input)
                .filter(domain.replace_outer(filter.predicate.clone())?)?
                .build()?
        }
        LogicalPlan::Projection(projection) => {
            let Some(input) = with_domain(&projection.input)? else {
                return Ok(None);
            };
            // Named as before: the nodes above refer to the columns by name.
            let mut expressions = projection
                .expr
                .iter()
                .map(|expression| {
                    let name = expression.schema_name().to_string();
                    domain
                        .replace_outer(expression.clone())?
                        .alias_if_changed(name)
                })
                .collect::<DataFusionResult<Vec<_>>>()?;
            expressions.extend(domain.columns());
            LogicalPlan::Projection(Projection::try_new(expressions, Arc::new(input))?)
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let Some(input) = with_domain(&alias.input)? else {
                return Ok(None);
            };
            LogicalPlanBuilder::from(input)
                .alias(alias.alias.clone())?
                .build()?
        }
        // A global aggregate has a row even over no input; grouped by the domain it would have
        // none for a value that finds nothing.
        LogicalPlan::Aggregate(aggregate) if !reads_outer && !aggregate.group_expr.is_empty() => {
            let Some(input) = with_domain(&aggregate.input)? else {
                return Ok(None);
            };
            let mut groups = aggregate.group_expr.clone();
            groups.extend(domain.columns());
            LogicalPlan::Aggregate(Aggregate::try_new(
                Arc::new(input),
                groups,
                aggregate.aggr_expr.clone(),
            )?)
        }
        LogicalPlan::Join(join) if !reads_outer => {
            let (Some((left, left_extended)), Some((right, right_extended))) =
                (extend(&join.left, domain)?, extend(&join.right, domain)?)
            else {
                return Ok(None);
            };
            let keeps_extended_side = match (left_extended, right_extended) {
                (true, false) => matches!(
                    join.join_type,
                    JoinType::Inner
                        | JoinType::Left
                        | JoinType::LeftSemi
                        | JoinType::LeftAnti
                        | JoinType::LeftMark
                ),
                (false, true) => matches!(
                    join.join_type,
                    JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
                ),
                _ => false,
            };
            if !keeps_extended_side {
                return Ok(None);
            }
            plan.with_new_exprs(plan.expressions(), vec![left, right])?
        }
        LogicalPlan::Sort(sort) if sort.fetch.is_none() => {
            let Some(input) = with_domain(&sort.input)? else {
                return Ok(None);
            };
            plan.with_new_exprs(plan.expressions(), vec![input])?
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let Some(input) = with_domain(input)? else {
                return Ok(None);
            };
            LogicalPlan::Distinct(Distinct::All(Arc::new(input)))
        }
        _ => return Ok(None),
    };
    Ok(Some((extended, true)))
}

/// The only value of its group: the rows a scalar subquery without an aggregate returns for one
/// outer row. A second row is Postgres's error (21000); no row is NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct OnlyValue {
    signature: Signature,
}

impl Default for OnlyValue {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for OnlyValue {
    fn name(&self) -> &str {
        "scalar_subquery_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DataFusionResult<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan("a scalar subquery's value is one column".into()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DataFusionResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(
                args.return_field
                    .as_ref()
                    .clone()
                    .with_name("value")
                    .with_nullable(true),
            ),
            Arc::new(Field::new("rows", DataType::UInt64, false)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DataFusionResult<Box<dyn Accumulator>> {
        Ok(Box::new(OnlyValueAccumulator {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }
}

#[derive(Debug)]
struct OnlyValueAccumulator {
    value: ScalarValue,
    rows: u64,
}

impl OnlyValueAccumulator {
    /// Counts `rows` more rows, whose value (when there is one) `value` reads.
    fn add(
        &mut self,
        rows: u64,
        value: impl FnOnce() -> DataFusionResult<ScalarValue>,
    ) -> DataFusionResult<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            // Worded as DataFusion words it, which the error mapping gives 21000.
            return Err(DataFusionError::Execution(
                "Scalar subquery returned more than one row".into(),
            ));
        }
        self.value = value()?;
        Ok(())
    }
}

impl Accumulator for OnlyValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DataFusionResult<()> {
        let Some(array) = values.first() else {
            return Ok(());
        };
        self.add(array.len() as u64, || ScalarValue::try_from_array(array, 0))
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DataFusionResult<()> {
        let [values, rows] = states else {
            return Err(DataFusionError::Internal(
                "scalar_subquery_value's state is a value and a row count".into(),
            ));
        };
        let Some(rows) = rows.as_any().downcast_ref::<UInt64Array>() else {
            return Err(DataFusionError::Internal(
                "scalar_subquery_value's row count is not UInt64".into(),
            ));
        };
        for index in 0..rows.len() {
            self.add(rows.value(index), || {
                ScalarValue::try_from_array(values, index)
            })?;
        }
        Ok(())
    }

    fn state(&mut self) -> DataFusionResult<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::UInt64(Some(self.rows)),
        ])
    }

    fn evaluate(&mut self) -> DataFusionResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() - std::mem::size_of_val(&self.value)
    }
}
