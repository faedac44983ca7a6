//! A correlated `NOT IN (SELECT ...)` in a filter becomes a `NOT EXISTS` that keeps Postgres's
//! NULL rule within the rows the correlation selects.
//!
//! DataFusion plans `x NOT IN (SELECT y FROM s WHERE s.c = t.c ...)` as a null-aware anti join
//! whose NULL check ignores the correlation: one NULL `y` anywhere in `s` drops every outer row,
//! where Postgres looks only at the rows of `s` the correlation keeps for each outer row (which
//! may be none: `NOT IN` over no rows is true). As a conjunct of a filter, where NULL and false
//! both drop the row, `x NOT IN (S)` keeps a row exactly when
//!
//! ```text
//! NOT EXISTS (SELECT 1 FROM S WHERE y = x OR y IS NULL OR x IS NULL)
//! ```
//!
//! which DataFusion decorrelates into an ordinary anti join, and views maintain.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::expr::{Exists, InSubquery};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, LogicalPlanBuilder, Subquery};

use crate::error::Result;

/// Rewrites every correlated `NOT IN` subquery that is a conjunct of a filter of `plan`.
pub fn correlated_not_in_as_not_exists(plan: LogicalPlan) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up(|node| match node {
        LogicalPlan::Filter(filter)
            if split_conjunction(&filter.predicate)
                .into_iter()
                .any(is_correlated_not_in) =>
        {
            let schema = Arc::clone(filter.input.schema());
            let conjuncts = split_conjunction(&filter.predicate)
                .into_iter()
                .map(|conjunct| match conjunct {
                    Expr::InSubquery(in_subquery) if is_correlated_not_in(conjunct) => {
                        as_not_exists(in_subquery, &schema)
                    }
                    other => Ok(other.clone()),
                })
                .collect::<datafusion::common::Result<Vec<_>>>()?;
            let Some(predicate) = conjunction(conjuncts) else {
                return Ok(Transformed::no(LogicalPlan::Filter(filter)));
            };
            Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
                predicate,
                filter.input,
            )?)))
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(rewritten.data)
}

fn is_correlated_not_in(conjunct: &Expr) -> bool {
    matches!(conjunct, Expr::InSubquery(InSubquery { negated: true, subquery, .. })
        if !subquery.outer_ref_columns.is_empty())
}

/// `x NOT IN (S)` as `NOT EXISTS (SELECT * FROM S WHERE y = x OR y IS NULL OR x IS NULL)`,
/// where `x` reads the outer row (`schema`) from inside the subquery.
fn as_not_exists(in_subquery: &InSubquery, schema: &DFSchema) -> datafusion::common::Result<Expr> {
    let plan = in_subquery.subquery.subquery.as_ref();
    let (qualifier, field) = plan.schema().qualified_field(0);
    let inner = Expr::Column(Column::from((qualifier, field)));
    let mut outer_columns = Vec::new();
    let outer = in_subquery
        .expr
        .as_ref()
        .clone()
        .transform(|expression| match expression {
            Expr::Column(column) => {
                let (_, field) = schema.qualified_field_from_column(&column)?;
                let reference = Expr::OuterReferenceColumn(Arc::clone(field), column);
                outer_columns.push(reference.clone());
                Ok(Transformed::yes(reference))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    let matching = inner
        .clone()
        .eq(outer.clone())
        .or(inner.is_null())
        .or(outer.is_null());
    let filtered = LogicalPlanBuilder::from(plan.clone())
        .filter(matching)?
        .build()?;
    let mut outer_ref_columns = in_subquery.subquery.outer_ref_columns.clone();
    for column in outer_columns {
        if !outer_ref_columns.contains(&column) {
            outer_ref_columns.push(column);
        }
    }
    Ok(Expr::Exists(Exists {
        subquery: Subquery {
            subquery: Arc::new(filtered),
            outer_ref_columns,
            spans: in_subquery.subquery.spans.clone(),
        },
        negated: true,
    }))
}
