//! Planning: the DataFusion context over snapshots, Postgres type rules, and lowering of
//! logical plans to incremental dataflows.

pub mod checked_arithmetic;
pub mod colocate;
pub mod context;
pub mod correlated;
pub mod correlated_not_in;
pub mod datetime_template;
pub mod format_function;
pub mod interval_arithmetic;
pub mod jsonb_functions;
pub mod jsonb_operators;
pub mod long_in_lists;
pub mod lower;
pub mod number_template;
pub mod plan_functions;
pub mod postgres_arrays;
pub mod postgres_avg;
pub mod postgres_casts;
pub mod postgres_formats;
pub mod postgres_types;
pub mod sequence_functions;
pub mod session_functions;
pub mod set_operations;
pub mod subqueries;
pub mod system;
pub mod temporal;
pub mod two_phase;

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};

use crate::error::{PlanError, Result};

/// A function's arguments as columns of the call's rows, and whether every one was a single
/// value (then so is the result: see [`scalar_or_array`]).
pub fn argument_arrays(
    args: &datafusion::logical_expr::ScalarFunctionArgs,
) -> datafusion::common::Result<(Vec<datafusion::arrow::array::ArrayRef>, bool)> {
    use datafusion::logical_expr::ColumnarValue;
    let scalar = args
        .args
        .iter()
        .all(|argument| matches!(argument, ColumnarValue::Scalar(_)));
    Ok((ColumnarValue::values_to_arrays(&args.args)?, scalar))
}

/// A function's result: one value when every argument was one (`scalar`), else the column.
pub fn scalar_or_array(
    result: datafusion::arrow::array::ArrayRef,
    scalar: bool,
) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::logical_expr::ColumnarValue;
    Ok(if scalar {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&result, 0)?)
    } else {
        ColumnarValue::Array(result)
    })
}

/// Compiles a logical expression over `schema` into one evaluated on whole batches. Subqueries
/// cannot be evaluated row by row here and are rejected, naming the subquery.
pub fn physical_expr(expression: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    let mut subquery = None;
    let _ = expression.apply(|node| {
        if matches!(
            node,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
        ) {
            subquery = Some(node.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Some(subquery) = subquery {
        return Err(PlanError::Unsupported(format!(
            "subquery {subquery} is not supported here yet"
        ))
        .into());
    }
    let expression = rewrite_functions_made_to_be_simplified(expression.clone(), schema)?;
    Ok(create_physical_expr(
        &expression,
        schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?)
}

/// Functions DataFusion runs only after its simplifier has rewritten them (their own
/// evaluation is an internal error). Plans that went through the optimizer no longer hold
/// them; expressions planned here without it (DELETE and UPDATE predicates, INSERT's VALUES;
/// found by `tests/fuzz.rs`) get the same rewrite. Only these: the simplifier would also fold
/// now() into a constant.
const SIMPLIFIED_BEFORE_RUNNING: &[&str] = &[
    "coalesce",
    "nvl",
    "nvl2",
    "arrow_cast",
    "arrow_try_cast",
    "cast_to_type",
    "try_cast_to_type",
];

fn rewrite_functions_made_to_be_simplified(expression: Expr, schema: &DFSchema) -> Result<Expr> {
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    let rewritten = expression.transform_up(|node| match node {
        Expr::ScalarFunction(function)
            if SIMPLIFIED_BEFORE_RUNNING.contains(&function.func.name()) =>
        {
            let ScalarFunction { func, args } = function;
            Ok(match func.simplify(args, &context)? {
                ExprSimplifyResult::Simplified(simplified) => Transformed::yes(simplified),
                ExprSimplifyResult::Original(args) => {
                    Transformed::no(Expr::ScalarFunction(ScalarFunction { func, args }))
                }
            })
        }
        other => Ok(Transformed::no(other)),
    })?;
    Ok(rewritten.data)
}
