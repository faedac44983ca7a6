//! Temporal filters: `now()` in a materialized view's WHERE, as in
//! `WHERE ts > now() - INTERVAL '1 hour'`, whose rows leave (or enter) the view as time passes.
//!
//! DataFusion folds `now()` into a constant when it optimizes a plan, which would freeze such a
//! view at its creation time. Before a view's plan is optimized, `now()` is replaced by
//! [`LIVE_NOW`], the same clock marked volatile so that it stays in the plan; lowering then
//! turns each comparison with it into the bounds of a [`TemporalFilter`]
//! (crate::dataflow::temporal_filter::TemporalFilter), and rejects it anywhere else.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ScalarUDF, Volatility, create_udf,
};

use crate::dataflow::temporal_filter::{Bound, BoundKind, clock_nanoseconds};
use crate::error::{PlanError, Result};

/// The name of the volatile `now()` a view's plan keeps.
pub const LIVE_NOW: &str = "tributary_live_now";

fn now_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
}

fn live_now() -> Arc<ScalarUDF> {
    Arc::new(create_udf(
        LIVE_NOW,
        vec![],
        now_type(),
        Volatility::Volatile,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
                Some(clock_nanoseconds()),
                Some("+00:00".into()),
            )))
        }),
    ))
}

/// Replaces every `now()` (and `current_timestamp`) in `plan`, subqueries included, by the
/// volatile [`LIVE_NOW`].
pub fn keep_now_live(plan: LogicalPlan) -> Result<LogicalPlan> {
    let function = live_now();
    let rewritten = plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expression| {
            expression.transform_up(|inner| match inner {
                Expr::ScalarFunction(call) if call.func.name() == "now" => Ok(Transformed::yes(
                    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&function), vec![])),
                )),
                other => Ok(Transformed::no(other)),
            })
        })
    })?;
    Ok(rewritten.data)
}

/// `expression` as the user wrote it: the live clock shown as `now()`.
pub fn shown(expression: &Expr) -> String {
    expression
        .to_string()
        .replace(&format!("{LIVE_NOW}()"), "now()")
}

/// Whether `expression` reads the live clock.
pub fn reads_clock(expression: &Expr) -> bool {
    expression
        .exists(|inner| {
            Ok(matches!(inner, Expr::ScalarFunction(call) if call.func.name() == LIVE_NOW))
        })
        .unwrap_or(false)
}

/// The bound a conjunct `expression` puts on the time: `row_expression op now() ± interval`
/// (either way round). Anything else reading the clock is rejected with 0A000.
pub fn bound(expression: &Expr) -> Result<(Expr, Bound)> {
    let unsupported = || {
        PlanError::Unsupported(format!(
            "now() in a materialized view only in comparisons such as ts > now() - INTERVAL '1 hour', not {}",
            shown(expression)
        ))
    };
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expression else {
        return Err(unsupported().into());
    };
    let (row_side, op, clock_side) = match (reads_clock(left), reads_clock(right)) {
        (false, true) => (left.as_ref(), *op, right.as_ref()),
        (true, false) => (
            right.as_ref(),
            op.swap().ok_or_else(unsupported)?,
            left.as_ref(),
        ),
        _ => return Err(unsupported().into()),
    };
    let offset = clock_offset(clock_side).ok_or_else(unsupported)?;
    // row op now + offset  ⇔  now (op reversed) row − offset.
    let kind = match op {
        // now < row − offset: visible until then.
        Operator::Gt => BoundKind::Before,
        Operator::GtEq => BoundKind::AtOrBefore,
        // now > row − offset: visible from then on.
        Operator::Lt => BoundKind::After,
        Operator::LtEq => BoundKind::AtOrAfter,
        _ => return Err(unsupported().into()),
    };
    Ok((
        row_side.clone(),
        Bound {
            kind,
            offset_nanoseconds: offset,
        },
    ))
}

/// `now()`, `now() + interval` or `now() - interval`: the interval in nanoseconds.
fn clock_offset(expression: &Expr) -> Option<i64> {
    match expression {
        Expr::ScalarFunction(call) if call.func.name() == LIVE_NOW => Some(0),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Expr::ScalarFunction(call) = left.as_ref() else {
                return None;
            };
            if call.func.name() != LIVE_NOW {
                return None;
            }
            let interval = interval_nanoseconds(right)?;
            match op {
                Operator::Plus => Some(interval),
                Operator::Minus => interval.checked_neg(),
                _ => None,
            }
        }
        Expr::Cast(cast) => clock_offset(&cast.expr),
        _ => None,
    }
}

fn interval_nanoseconds(expression: &Expr) -> Option<i64> {
    const DAY: i64 = 86_400_000_000_000;
    match expression {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(interval)), _)
            if interval.months == 0 =>
        {
            i64::from(interval.days)
                .checked_mul(DAY)?
                .checked_add(interval.nanoseconds)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(interval)), _) => i64::from(interval.days)
            .checked_mul(DAY)?
            .checked_add(i64::from(interval.milliseconds).checked_mul(1_000_000)?),
        Expr::Cast(cast) => interval_nanoseconds(&cast.expr),
        _ => None,
    }
}
