//! Casts between text and times as Postgres does them: text to timestamp/date/interval accepts
//! what Postgres accepts ('2026-01-01 10:09', no seconds, and '2 days 03:00:00' are valid
//! Postgres and rejected by Arrow's parser), and timestamps and intervals become the text
//! Postgres prints ('2026-01-01 10:00:00+00', '1 day 02:00:00'), not Arrow's RFC 3339 and ISO
//! forms. Text to an array reads Postgres's array literal (`'{1,2}'::int[]`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, IntervalMonthDayNanoArray, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, IntervalMonthDayNanoType, IntervalUnit, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::ExecutionError;

/// Rewrites casts from text to a timestamp or date, and from a timestamp or interval to text,
/// into [`PostgresTimeCast`]. Runs after type coercion, so the casts coercion adds
/// (`at > '2026-01-01 10:00'`) are covered too.
#[derive(Debug)]
pub struct PostgresTextCasts;

impl AnalyzerRule for PostgresTextCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DataFusionResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = node
                .inputs()
                .first()
                .map(|input| Arc::clone(input.schema()));
            let schema = schema.unwrap_or_else(|| Arc::new(datafusion::common::DFSchema::empty()));
            // Parents refer to this node's columns by name; keep the names the casts had.
            let names = NamePreserver::new(&node);
            node.map_expressions(|expression| {
                let saved = names.save(&expression);
                Ok(expression
                    .transform_up(|expression| rewrite_cast(expression, &schema))?
                    .update_data(|expression| saved.restore(expression)))
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "postgres_text_casts"
    }
}

fn rewrite_cast(
    expression: Expr,
    schema: &datafusion::common::DFSchema,
) -> DataFusionResult<Transformed<Expr>> {
    let (inner, target) = match &expression {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            (expr, field.data_type().clone())
        }
        _ => return Ok(Transformed::no(expression)),
    };
    let Ok(source) = inner.get_type(schema) else {
        return Ok(Transformed::no(expression));
    };
    // Text becomes jsonb by parsing it (`'{"a": 1}'::jsonb`, and the casts coercion adds to a
    // literal compared with jsonb); other values as `to_jsonb` makes them.
    if target == crate::sql::jsonb::JSONB && source != target && source != DataType::Null {
        let kind = if matches!(source, DataType::Utf8 | DataType::Utf8View) {
            super::jsonb_functions::Kind::Input
        } else {
            super::jsonb_functions::Kind::ToJsonb
        };
        return Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                super::jsonb_functions::function(kind),
                vec![inner.as_ref().clone()],
            ),
        )));
    }
    if matches!(
        target,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) && matches!(
        source,
        DataType::Timestamp(_, _) | DataType::Interval(IntervalUnit::MonthDayNano)
    ) {
        let function = ScalarUDF::new_from_impl(PostgresTimeCast::new(target));
        return Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::new(function), vec![inner.as_ref().clone()]),
        )));
    }
    if !matches!(
        target,
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Interval(IntervalUnit::MonthDayNano)
            | DataType::List(_)
    ) {
        return Ok(Transformed::no(expression));
    }
    if !matches!(
        source,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Ok(Transformed::no(expression));
    }
    let function = ScalarUDF::new_from_impl(PostgresTimeCast::new(target));
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(Arc::new(function), vec![inner.as_ref().clone()]),
    )))
}

/// A cast between text and times done as Postgres does it: text parsed into a timestamp (with
/// or without time zone), a date or an interval, or a timestamp or interval printed as text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PostgresTimeCast {
    target: DataType,
    signature: Signature,
}

impl PostgresTimeCast {
    pub const NAME: &str = "postgres_time_cast";

    pub fn new(target: DataType) -> Self {
        Self {
            target,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// The type the cast produces.
    pub fn target(&self) -> &DataType {
        &self.target
    }
}

impl ScalarUDFImpl for PostgresTimeCast {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let Some(argument) = args.args.first() else {
            return Err(DataFusionError::Internal(
                "postgres_time_cast takes one argument".into(),
            ));
        };
        let is_scalar = matches!(argument, ColumnarValue::Scalar(_));
        // One value is cast once; a call over no rows (a constant IN list is evaluated so)
        // still has the value to cast.
        let values = argument.to_array(if is_scalar { 1 } else { args.number_rows })?;
        let result = match self.target {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                cast(&time_to_text(&values)?, &self.target)?
            }
            DataType::List(ref element) => super::postgres_arrays::text_to_array(&values, element)?,
            _ => text_to_time(&values, &self.target)?,
        };
        if is_scalar {
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&result, 0)?,
            ))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

pub(crate) fn text_to_time(values: &ArrayRef, target: &DataType) -> DataFusionResult<ArrayRef> {
    let text = cast(values, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    Ok(match target {
        DataType::Date32 => {
            let mut days = Vec::with_capacity(text.len());
            for value in text.iter() {
                days.push(value.map(parse_date).transpose()?);
            }
            Arc::new(Date32Array::from(days))
        }
        DataType::Interval(_) => {
            let mut intervals = Vec::with_capacity(text.len());
            for value in text.iter() {
                intervals.push(
                    value
                        .map(|value| {
                            crate::sql::intervals::parse_interval(value)
                                .map_err(|_| invalid("interval", value))
                        })
                        .transpose()?,
                );
            }
            Arc::new(IntervalMonthDayNanoArray::from(intervals))
        }
        _ => {
            let mut micros = Vec::with_capacity(text.len());
            for value in text.iter() {
                micros.push(value.map(parse_timestamp).transpose()?);
            }
            let timezone = match target {
                DataType::Timestamp(_, timezone) => timezone.clone(),
                _ => None,
            };
            let array = TimestampMicrosecondArray::from(micros).with_timezone_opt(timezone);
            cast(&array, target)?
        }
    })
}

fn time_to_text(values: &ArrayRef) -> DataFusionResult<StringArray> {
    Ok(match values.data_type() {
        DataType::Timestamp(_, timezone) => {
            let with_timezone = timezone.is_some();
            let micros = cast(values, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            micros
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|value| {
                    value.map(|micros| {
                        crate::server::encode::postgres_timestamp(micros, with_timezone)
                    })
                })
                .collect()
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => values
            .as_primitive::<IntervalMonthDayNanoType>()
            .iter()
            .map(|value| {
                value.map(|interval| {
                    crate::server::encode::postgres_interval(
                        interval.months,
                        interval.days,
                        interval.nanoseconds / 1000,
                    )
                })
            })
            .collect(),
        other => {
            return Err(DataFusionError::Internal(format!(
                "postgres_time_cast cannot print {other}"
            )));
        }
    })
}

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

const ZONED_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M%#z",
    "%Y-%m-%dT%H:%M%#z",
];

fn invalid(kind: &str, text: &str) -> DataFusionError {
    DataFusionError::External(Box::new(ExecutionError::InvalidDatetimeFormat(format!(
        "invalid input syntax for type {kind}: \"{text}\""
    ))))
}

/// Microseconds since the epoch. Text without an offset is read in UTC, the session time zone.
fn parse_timestamp(text: &str) -> DataFusionResult<i64> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_suffix(" UTC")
        .or_else(|| trimmed.strip_suffix('Z'))
        .unwrap_or(trimmed);
    for format in NAIVE_FORMATS {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Ok(parsed.and_utc().timestamp_micros());
        }
    }
    for format in ZONED_FORMATS {
        if let Ok(parsed) = DateTime::parse_from_str(trimmed, format) {
            return Ok(parsed.timestamp_micros());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros())
            .unwrap_or(0));
    }
    Err(invalid("timestamp", text))
}

fn parse_date(text: &str) -> DataFusionResult<i32> {
    let trimmed = text.trim();
    let date = match NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        Ok(date) => date,
        Err(_) => {
            let micros = parse_timestamp(text).map_err(|_| invalid("date", text))?;
            DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| invalid("date", text))?
                .date_naive()
        }
    };
    Ok((date - NaiveDate::default()).num_days() as i32)
}
