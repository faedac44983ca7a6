//! `interval * number`, `number * interval` and `interval / number` as Postgres computes them
//! (DataFusion refuses the types: `2 * INTERVAL '1 minute'` was 42804). An expression planner,
//! asked by DataFusion's SQL planner about every binary operator, plans them as
//! [`IntervalScaled`] calls.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, IntervalMonthDayNanoBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);
const NANOS_PER_DAY: f64 = 86_400.0 * 1e9;
/// Postgres counts a fraction of a month as days of a 30-day month.
const DAYS_PER_MONTH: f64 = 30.0;

/// The functions the planner writes, for the session to know them by name (views store their
/// plans by function name).
pub fn interval_functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(IntervalScaled::new(false)),
        ScalarUDF::new_from_impl(IntervalScaled::new(true)),
    ]
}

/// Plans an interval multiplied or divided by a number as [`IntervalScaled`].
#[derive(Debug)]
pub struct IntervalArithmetic;

impl ExprPlanner for IntervalArithmetic {
    fn plan_binary_op(
        &self,
        expression: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (Ok(left_type), Ok(right_type)) = (
            expression.left.get_type(schema),
            expression.right.get_type(schema),
        ) else {
            return Ok(PlannerResult::Original(expression));
        };
        let is_interval = |data_type: &DataType| matches!(data_type, DataType::Interval(_));
        let RawBinaryExpr { op, left, right } = expression;
        let (interval, factor, divide) = match op {
            BinaryOperator::Multiply if is_interval(&left_type) && right_type.is_numeric() => {
                (left, right, false)
            }
            BinaryOperator::Multiply if is_interval(&right_type) && left_type.is_numeric() => {
                (right, left, false)
            }
            BinaryOperator::Divide if is_interval(&left_type) && right_type.is_numeric() => {
                (left, right, true)
            }
            op => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        let function = ScalarUDF::new_from_impl(IntervalScaled::new(divide));
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                Arc::new(function),
                vec![
                    interval.cast_to(&INTERVAL, schema)?,
                    factor.cast_to(&DataType::Float64, schema)?,
                ],
            ),
        )))
    }
}

/// An interval times a number (or divided by one), as Postgres scales it: the fraction of the
/// months carried into days of 30, the fraction of the days into time, time rounded to the
/// microsecond.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IntervalScaled {
    divide: bool,
    signature: Signature,
}

impl IntervalScaled {
    fn new(divide: bool) -> Self {
        Self {
            divide,
            signature: Signature::exact(vec![INTERVAL, DataType::Float64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IntervalScaled {
    fn name(&self) -> &str {
        if self.divide {
            "interval_divided_by"
        } else {
            "interval_times"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(INTERVAL)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, scalar) = super::argument_arrays(&args)?;
        let intervals = cast(&arrays[0], &INTERVAL)?;
        let intervals = intervals.as_primitive::<IntervalMonthDayNanoType>();
        let factors = cast(&arrays[1], &DataType::Float64)?;
        let factors = factors.as_primitive::<Float64Type>();
        let mut out = IntervalMonthDayNanoBuilder::with_capacity(intervals.len());
        for row in 0..intervals.len() {
            if intervals.is_null(row) || factors.is_null(row) {
                out.append_null();
                continue;
            }
            let factor = factors.value(row);
            if self.divide && factor == 0.0 {
                return Err(DataFusionError::Execution("division by zero".into()));
            }
            let factor = if self.divide { 1.0 / factor } else { factor };
            out.append_value(scale(intervals.value(row), factor)?);
        }
        let result: datafusion::arrow::array::ArrayRef = Arc::new(out.finish());
        super::scalar_or_array(result, scalar)
    }
}

fn scale(interval: IntervalMonthDayNano, factor: f64) -> Result<IntervalMonthDayNano> {
    let out_of_range = || DataFusionError::Execution("interval out of range".into());
    let months = f64::from(interval.months) * factor;
    let whole_months = months.trunc();
    let days = f64::from(interval.days) * factor + (months - whole_months) * DAYS_PER_MONTH;
    let whole_days = days.trunc();
    let nanoseconds = interval.nanoseconds as f64 * factor + (days - whole_days) * NANOS_PER_DAY;
    let micros = (nanoseconds / 1_000.0).round();
    let fits = |value: f64, limit: f64| value.is_finite() && value.abs() <= limit;
    if !fits(whole_months, f64::from(i32::MAX))
        || !fits(whole_days, f64::from(i32::MAX))
        || !fits(micros, i64::MAX as f64 / 1_000.0)
    {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(
        whole_months as i32,
        whole_days as i32,
        micros as i64 * 1_000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn scales_as_postgres_does() {
        let minute = IntervalMonthDayNano::new(0, 0, 60_000_000_000);
        assert_eq!(
            scale(minute, 2.0).unwrap(),
            IntervalMonthDayNano::new(0, 0, 2 * 60_000_000_000)
        );
        let day = IntervalMonthDayNano::new(0, 1, 0);
        assert_eq!(
            scale(day, 1.5).unwrap(),
            IntervalMonthDayNano::new(0, 1, 12 * HOUR)
        );
        let month = IntervalMonthDayNano::new(1, 0, 0);
        assert_eq!(
            scale(month, 0.5).unwrap(),
            IntervalMonthDayNano::new(0, 15, 0)
        );
        let mixed = IntervalMonthDayNano::new(1, 1, HOUR);
        assert_eq!(
            scale(mixed, -2.0).unwrap(),
            IntervalMonthDayNano::new(-2, -2, -2 * HOUR)
        );
        assert!(scale(IntervalMonthDayNano::new(i32::MAX, 0, 0), 2.0).is_err());
    }
}
