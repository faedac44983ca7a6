//! Correlated scalar subqueries DataFusion cannot decorrelate become joins with the distinct
//! values the outer rows correlate on.
//!
//! DataFusion turns a correlated scalar subquery into an outer join only when every correlation
//! is an equality (`WHERE x.c = t.c`). Anything else (`WHERE x.c > t.c`, an outer column in the
//! subquery's SELECT list) stayed in the plan and failed with "Physical plan does not support
//! logical expression ScalarSubquery". For an aggregate without GROUP BY (exactly one row per
//! outer row: what such subqueries nearly always are), this module rewrites
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
//! lose it. Plans made this way are ordinary joins and aggregates: ad hoc queries run them, and
//! materialized views maintain them incrementally.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, JoinType, NullEquality, Result as DataFusionResult};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Distinct, Expr, LogicalPlan, LogicalPlanBuilder, Operator, Projection,
    Subquery, lit, when,
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
            Ok(matches!(inner, Expr::ScalarSubquery(subquery)
                if !subquery.outer_ref_columns.is_empty()
                    && !correlated_by_equalities_only(&subquery.subquery)))
        })
        .unwrap_or(false)
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
        Expr::ScalarSubquery(subquery)
            if !subquery.outer_ref_columns.is_empty()
                && !correlated_by_equalities_only(&subquery.subquery) =>
        {
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
    // The nodes above the aggregate, outermost first: projections and aliases only.
    let mut above = Vec::new();
    let mut node = subquery.subquery.as_ref();
    let aggregate = loop {
        match node {
            LogicalPlan::Projection(projection) => {
                above.push(node);
                node = projection.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(alias) => {
                above.push(node);
                node = alias.input.as_ref();
            }
            LogicalPlan::Aggregate(aggregate) if aggregate.group_expr.is_empty() => {
                break aggregate;
            }
            _ => return Ok(None),
        }
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
    let Some((input, extended)) = extend(&aggregate.input, &domain)? else {
        return Ok(None);
    };
    // An aggregate whose input never reads an outer column is the same for every outer value.
    let input = if extended {
        input
    } else {
        domain.cross_join(input)?
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
        .alias(alias.as_str())?
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

/// `plan` (a subquery's input below its aggregate) with the domain's columns joined in where an
/// outer column is first read and carried up to its output; the flag says whether it holds
/// them (nothing read an outer column when it does not). `None` where carrying them would change
/// the answer or is not written yet: an outer column in a join condition, below a LIMIT, a window,
/// a set operation or an aggregate without GROUP BY, or on both sides of a join.
fn extend(plan: &LogicalPlan, domain: &Domain) -> DataFusionResult<Option<(LogicalPlan, bool)>> {
    let reads_outer = plan
        .expressions()
        .iter()
        .any(|expression| expression.contains_outer());
    let below_reads_outer = |plan: &LogicalPlan| {
        plan.exists(|node| {
            Ok(node
                .expressions()
                .iter()
                .any(|expression| expression.contains_outer()))
        })
    };
    let extended = match plan {
        LogicalPlan::Filter(filter) => {
            let Some((input, extended)) = extend(&filter.input, domain)? else {
                return Ok(None);
            };
            if !reads_outer && !extended {
                return Ok(Some((plan.clone(), false)));
            }
            let input = if extended {
                input
            } else {
                domain.cross_join(input)?
            };
            LogicalPlanBuilder::from(input)
                .filter(domain.replace_outer(filter.predicate.clone())?)?
                .build()?
        }
        LogicalPlan::Projection(projection) => {
            let Some((input, extended)) = extend(&projection.input, domain)? else {
                return Ok(None);
            };
            if !reads_outer && !extended {
                return Ok(Some((plan.clone(), false)));
            }
            let input = if extended {
                input
            } else {
                domain.cross_join(input)?
            };
            let mut expressions = projection
                .expr
                .iter()
                .map(|expression| domain.replace_outer(expression.clone()))
                .collect::<DataFusionResult<Vec<_>>>()?;
            expressions.extend(domain.columns());
            LogicalPlan::Projection(Projection::try_new(expressions, Arc::new(input))?)
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let Some((input, extended)) = extend(&alias.input, domain)? else {
                return Ok(None);
            };
            if !extended {
                return Ok(Some((plan.clone(), false)));
            }
            LogicalPlanBuilder::from(input)
                .alias(alias.alias.clone())?
                .build()?
        }
        LogicalPlan::Aggregate(aggregate) => {
            if reads_outer {
                return Ok(None);
            }
            let Some((input, extended)) = extend(&aggregate.input, domain)? else {
                return Ok(None);
            };
            if !extended {
                return Ok(Some((plan.clone(), false)));
            }
            // A global aggregate has a row even over no input; grouped by the domain it would
            // have none for a value that finds nothing.
            if aggregate.group_expr.is_empty() {
                return Ok(None);
            }
            let mut groups = aggregate.group_expr.clone();
            groups.extend(domain.columns());
            LogicalPlan::Aggregate(Aggregate::try_new(
                Arc::new(input),
                groups,
                aggregate.aggr_expr.clone(),
            )?)
        }
        LogicalPlan::Join(join) => {
            if reads_outer {
                return Ok(None);
            }
            let (Some((left, left_extended)), Some((right, right_extended))) =
                (extend(&join.left, domain)?, extend(&join.right, domain)?)
            else {
                return Ok(None);
            };
            let keeps_extended_side = match (left_extended, right_extended) {
                (false, false) => return Ok(Some((plan.clone(), false))),
                (true, true) => false,
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
            };
            if !keeps_extended_side {
                return Ok(None);
            }
            plan.with_new_exprs(plan.expressions(), vec![left, right])?
        }
        LogicalPlan::Sort(sort) if sort.fetch.is_none() => {
            let Some((input, extended)) = extend(&sort.input, domain)? else {
                return Ok(None);
            };
            if !extended {
                return Ok(Some((plan.clone(), false)));
            }
            plan.with_new_exprs(plan.expressions(), vec![input])?
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let Some((input, extended)) = extend(input, domain)? else {
                return Ok(None);
            };
            if !extended {
                return Ok(Some((plan.clone(), false)));
            }
            LogicalPlan::Distinct(Distinct::All(Arc::new(input)))
        }
        other => {
            return Ok(if below_reads_outer(other)? {
                None
            } else {
                Some((other.clone(), false))
            });
        }
    };
    Ok(Some((extended, true)))
}
