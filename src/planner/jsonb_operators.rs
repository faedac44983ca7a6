//! The jsonb operators (`->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`, `?|`, `?&`, `||`, `-`) as
//! the functions Postgres defines them with. An expression planner, asked by DataFusion's SQL
//! planner about every binary operator, plans those with a jsonb operand; DataFusion's own
//! planners have already taken `@>` and `||` between arrays.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use super::jsonb_functions::{Kind, function};
use crate::sql::jsonb::JSONB;

#[derive(Debug)]
pub struct JsonbOperators;

impl ExprPlanner for JsonbOperators {
    fn plan_binary_op(
        &self,
        expression: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let left_type = expression.left.get_type(schema).ok();
        let right_type = expression.right.get_type(schema).ok();
        let is_jsonb = |data_type: &Option<DataType>| data_type.as_ref() == Some(&JSONB);
        // An untyped literal beside jsonb is read as jsonb, as Postgres resolves `unknown`.
        let is_text_literal = |expression: &Expr| {
            matches!(
                expression,
                Expr::Literal(value, _) if matches!(value.data_type(), DataType::Utf8 | DataType::Null)
            )
        };
        let is_integer = right_type.as_ref().is_some_and(DataType::is_integer);
        let RawBinaryExpr { op, left, right } = expression;
        let kind = match op {
            BinaryOperator::Arrow if is_jsonb(&left_type) && is_integer => Kind::ArrayElement,
            BinaryOperator::Arrow if is_jsonb(&left_type) => Kind::ObjectField,
            BinaryOperator::LongArrow if is_jsonb(&left_type) && is_integer => {
                Kind::ArrayElementText
            }
            BinaryOperator::LongArrow if is_jsonb(&left_type) => Kind::ObjectFieldText,
            BinaryOperator::HashArrow if is_jsonb(&left_type) => Kind::ExtractPath,
            BinaryOperator::HashLongArrow if is_jsonb(&left_type) => Kind::ExtractPathText,
            BinaryOperator::AtArrow if is_jsonb(&left_type) || is_jsonb(&right_type) => {
                Kind::Contains
            }
            BinaryOperator::ArrowAt if is_jsonb(&left_type) || is_jsonb(&right_type) => {
                Kind::Contained
            }
            BinaryOperator::Question if is_jsonb(&left_type) => Kind::Exists,
            BinaryOperator::QuestionPipe if is_jsonb(&left_type) => Kind::ExistsAny,
            BinaryOperator::QuestionAnd if is_jsonb(&left_type) => Kind::ExistsAll,
            BinaryOperator::StringConcat
                if (is_jsonb(&left_type) && (is_jsonb(&right_type) || is_text_literal(&right)))
                    || (is_jsonb(&right_type) && is_text_literal(&left)) =>
            {
                Kind::Concat
            }
            BinaryOperator::Minus if is_jsonb(&left_type) => Kind::Delete,
            op => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(function(kind), vec![left, right]),
        )))
    }
}
