//! Integer `+`, `-` and `*` fail with 22003 on overflow, as in Postgres, instead of wrapping
//! (DataFusion's default), in ad hoc queries and views alike.
//!
//! The rule runs after type coercion, so both operands have the result's type. It computes in a
//! type twice as wide, where the operation cannot overflow, and narrows the result with a cast
//! that fails when the value does not fit: `a + b` over INT becomes
//! `CAST(CAST(a AS BIGINT) + CAST(b AS BIGINT) AS INT)`, over BIGINT the same through
//! DECIMAL(38, 0). Constants fold the same way, so `2147483647::int * 2::int` fails too (the
//! simplifier leaves an expression whose evaluation fails for the run to report). Division,
//! modulo, negation and casts already fail on overflow.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DataFusionResult;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug)]
pub struct CheckedIntegerArithmetic;

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn name(&self) -> &str {
        "checked_integer_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DataFusionResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            // A rewritten expression keeps its name, so parents still find the column.
            let names = NamePreserver::new(&node);
            node.map_expressions(|expression| {
                let name = names.save(&expression);
                let rewritten = expression.transform_up(|inner| checked(inner, &schema))?;
                Ok(if rewritten.transformed {
                    Transformed::yes(name.restore(rewritten.data))
                } else {
                    rewritten
                })
            })
        })
        .map(|transformed| transformed.data)
    }
}

/// The wider type `operand`'s integer type computes in, if it is one this rule checks.
fn wider(operand: &DataType) -> Option<DataType> {
    match operand {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => Some(DataType::Int64),
        DataType::Int64 => Some(DataType::Decimal128(38, 0)),
        _ => None,
    }
}

fn checked(expression: Expr, schema: &DFSchema) -> DataFusionResult<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expression else {
        return Ok(Transformed::no(expression));
    };
    if !matches!(op, Operator::Plus | Operator::Minus | Operator::Multiply) {
        return Ok(Transformed::no(expression));
    }
    // Types that cannot be settled here (an unresolved column) are left to the planner.
    let (Ok(left_type), Ok(right_type)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(expression));
    };
    if left_type != right_type {
        return Ok(Transformed::no(expression));
    }
    let Some(wide) = wider(&left_type) else {
        return Ok(Transformed::no(expression));
    };
    // Already the checked form (a view's plan analyzed again): computed wide, narrowed outside.
    if [left, right]
        .iter()
        .all(|operand| is_widened(operand, &left_type, schema))
    {
        return Ok(Transformed::no(expression));
    }
    let widened = |operand: &Expr| Expr::Cast(Cast::new(Box::new(operand.clone()), wide.clone()));
    let computed = Expr::BinaryExpr(BinaryExpr::new(
        Box::new(widened(left)),
        *op,
        Box::new(widened(right)),
    ));
    Ok(Transformed::yes(Expr::Cast(Cast::new(
        Box::new(computed),
        left_type,
    ))))
}

/// Whether `operand` is a narrower integer cast up to `wide`, as this rule writes it.
fn is_widened(operand: &Expr, wide: &DataType, schema: &DFSchema) -> bool {
    let Expr::Cast(Cast { expr, field }) = operand else {
        return false;
    };
    field.data_type() == wide
        && expr
            .get_type(schema)
            .is_ok_and(|narrow| wider(&narrow).as_ref() == Some(wide))
}
