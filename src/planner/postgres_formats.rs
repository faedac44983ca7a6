//! Postgres's formatting functions: `to_char(timestamp or number, template)`,
//! `to_timestamp(text, template)`, `to_date(text, template)` and `to_number(text, template)`
//! with Postgres's templates ([`super::datetime_template`], [`super::number_template`]).
//! DataFusion's functions of these names take chrono's strftime codes, so a Postgres template
//! came back as the result text itself (`to_char(t, 'YYYY')` was `'YYYY'`) or failed. The
//! one-argument forms stay DataFusion's.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Decimal128Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Field, FieldRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use rust_decimal::Decimal;

use super::datetime_template::{Moment, ReadError, Template};
use super::number_template::NumberTemplate;

/// The session's time zone: `to_timestamp` gives a `timestamptz` in it.
const SESSION_TIME_ZONE: &str = "+00:00";

/// `to_char`, `to_timestamp` and `to_date` taking Postgres templates; `to_timestamp` and
/// `to_date` with one argument run the functions given (DataFusion's, as the session configured
/// them).
pub fn formatting_functions(
    to_timestamp: Arc<ScalarUDF>,
    to_date: Arc<ScalarUDF>,
) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(Formatting::new(Kind::Text, None)),
        ScalarUDF::new_from_impl(Formatting::new(Kind::Timestamp, Some(to_timestamp))),
        ScalarUDF::new_from_impl(Formatting::new(Kind::Date, Some(to_date))),
        ScalarUDF::new_from_impl(Formatting::new(Kind::Number, None)),
    ]
}

/// What the function makes: to_char text, to_timestamp a timestamp, to_date a date, to_number
/// a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Text,
    Timestamp,
    Date,
    Number,
}

#[derive(Debug)]
struct Formatting {
    kind: Kind,
    /// What a call without a template runs.
    one_argument: Option<Arc<ScalarUDF>>,
    signature: Signature,
}

impl Formatting {
    fn new(kind: Kind, one_argument: Option<Arc<ScalarUDF>>) -> Self {
        Self {
            kind,
            one_argument,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn name_of(kind: Kind) -> &'static str {
        match kind {
            Kind::Text => "to_char",
            Kind::Timestamp => "to_timestamp",
            Kind::Date => "to_date",
            Kind::Number => "to_number",
        }
    }

    fn delegate(&self, count: usize) -> Result<&ScalarUDF> {
        match (&self.one_argument, count) {
            (Some(function), 1) => Ok(function),
            _ => Err(DataFusionError::Plan(format!(
                "function {}() takes {} and a template",
                Self::name_of(self.kind),
                match self.kind {
                    Kind::Text => "a timestamp, date or number",
                    Kind::Timestamp | Kind::Date | Kind::Number => "text",
                }
            ))),
        }
    }
}

impl PartialEq for Formatting {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Formatting {}

impl std::hash::Hash for Formatting {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl ScalarUDFImpl for Formatting {
    fn name(&self) -> &str {
        Self::name_of(self.kind)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.len() != 2 {
            return self.delegate(arg_types.len())?.return_type(arg_types);
        }
        Ok(match self.kind {
            Kind::Text => DataType::Utf8,
            Kind::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(SESSION_TIME_ZONE.into()))
            }
            Kind::Date => DataType::Date32,
            Kind::Number => DataType::Decimal128(38, 10),
        })
    }

    /// to_number's scale is its template's digits after the point, when the template is a
    /// constant (Postgres's numeric keeps each value's own scale; Arrow's, one per column).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let mut data_type = self.return_type(&types)?;
        if self.kind == Kind::Number
            && let Some(Some(template)) = args.scalar_arguments.get(1)
            && let Some(Some(pattern)) = template.try_as_str()
            && let Ok(template) = NumberTemplate::parse(pattern)
        {
            data_type = DataType::Decimal128(38, template.scale().min(30) as i8);
        }
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() != 2 {
            return self.delegate(args.args.len())?.invoke_with_args(args);
        }
        let (arrays, scalar) = super::argument_arrays(&args)?;
        let templates = cast(&arrays[1], &DataType::Utf8)?;
        let templates = templates.as_string::<i32>();
        let result = match self.kind {
            Kind::Text => to_char(&arrays[0], templates)?,
            Kind::Timestamp | Kind::Date => {
                let texts = cast(&arrays[0], &DataType::Utf8)?;
                read(self.kind, texts.as_string::<i32>(), templates)?
            }
            Kind::Number => {
                let texts = cast(&arrays[0], &DataType::Utf8)?;
                to_number(
                    texts.as_string::<i32>(),
                    templates,
                    args.return_field.data_type(),
                )?
            }
        };
        super::scalar_or_array(result, scalar)
    }
}

/// The last template parsed, reused while the rows repeat it (a constant template: every row).
struct LastTemplate<T> {
    last: Option<(String, T)>,
}

impl<T> LastTemplate<T> {
    fn new() -> Self {
        Self { last: None }
    }

    fn get(&mut self, pattern: &str, parse: impl FnOnce(&str) -> Result<T>) -> Result<&T> {
        if self.last.as_ref().is_none_or(|(text, _)| text != pattern) {
            self.last = Some((pattern.to_string(), parse(pattern)?));
        }
        self.last
            .as_ref()
            .map(|(_, template)| template)
            .ok_or_else(|| DataFusionError::Internal("a template was just parsed".into()))
    }
}

/// A number template, or the error for one using what is not written yet.
fn number_template(pattern: &str) -> Result<NumberTemplate> {
    NumberTemplate::parse(pattern).map_err(DataFusionError::NotImplemented)
}

fn to_char(
    values: &ArrayRef,
    templates: &datafusion::arrow::array::StringArray,
) -> Result<ArrayRef> {
    let zone = match values.data_type() {
        DataType::Timestamp(_, zone) => zone.clone(),
        DataType::Date32 | DataType::Date64 | DataType::Null => None,
        number if number.is_numeric() => return number_to_char(values, templates),
        other => {
            return Err(DataFusionError::NotImplemented(format!(
                "to_char of {other} with a template is not supported yet (timestamps, dates and numbers are)"
            )));
        }
    };
    let zone = zone
        .map(|name| Tz::from_str(&name))
        .transpose()
        .map_err(|error| DataFusionError::Execution(error.to_string()))?;
    let micros = cast(
        values,
        &DataType::Timestamp(TimeUnit::Microsecond, zone.map(|_| "+00:00".into())),
    )?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let mut parsed = LastTemplate::new();
    let mut out = StringBuilder::new();
    for row in 0..micros.len() {
        if micros.is_null(row) || templates.is_null(row) {
            out.append_null();
            continue;
        }
        let Some(utc) = DateTime::from_timestamp_micros(micros.value(row)) else {
            return Err(DataFusionError::Execution(
                "timestamp out of range".to_string(),
            ));
        };
        let moment = match &zone {
            Some(zone) => {
                let local = zone.from_utc_datetime(&utc.naive_utc());
                Moment {
                    local: local.naive_local(),
                    offset_seconds: Some(local.offset().fix().local_minus_utc()),
                }
            }
            None => Moment {
                local: utc.naive_utc(),
                offset_seconds: None,
            },
        };
        let template = parsed.get(templates.value(row), |pattern| Ok(Template::parse(pattern)))?;
        out.append_value(template.format(&moment));
    }
    Ok(Arc::new(out.finish()))
}

fn read(
    kind: Kind,
    texts: &datafusion::arrow::array::StringArray,
    templates: &datafusion::arrow::array::StringArray,
) -> Result<ArrayRef> {
    let mut parsed = LastTemplate::new();
    let mut timestamps = TimestampMicrosecondBuilder::new().with_timezone(SESSION_TIME_ZONE);
    let mut dates = Date32Builder::new();
    for row in 0..texts.len() {
        if texts.is_null(row) || templates.is_null(row) {
            timestamps.append_null();
            dates.append_null();
            continue;
        }
        let (local, offset) = parsed
            .get(templates.value(row), |pattern| Ok(Template::parse(pattern)))?
            .read(texts.value(row))
            .map_err(|error| match error {
                // Worded as Postgres words them; `error::classify_execution_message` gives
                // them their SQLSTATEs.
                ReadError::Format(message) | ReadError::OutOfRange(message) => {
                    DataFusionError::Execution(message)
                }
            })?;
        match kind {
            Kind::Number | Kind::Text => {
                return Err(DataFusionError::Internal(
                    "a number or text read as a timestamp".into(),
                ));
            }
            Kind::Date => {
                let days = local.date().signed_duration_since(
                    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default(),
                );
                let days = i32::try_from(days.num_days()).map_err(|_| {
                    DataFusionError::Execution(format!(
                        "date out of range: \"{}\"",
                        texts.value(row)
                    ))
                })?;
                dates.append_value(days);
            }
            Kind::Timestamp => {
                let utc = local - chrono::Duration::seconds(i64::from(offset.unwrap_or(0)));
                timestamps.append_value(utc.and_utc().timestamp_micros());
            }
        }
    }
    Ok(match kind {
        Kind::Date => Arc::new(dates.finish()),
        _ => Arc::new(timestamps.finish()),
    })
}

/// Numbers written in number templates. Integers and floats are written from their value as a
/// NUMERIC with 10 digits after the point, NUMERIC values as they are.
fn number_to_char(
    values: &ArrayRef,
    templates: &datafusion::arrow::array::StringArray,
) -> Result<ArrayRef> {
    let decimal_type = match values.data_type() {
        DataType::Decimal128(precision, scale) if (0..=28).contains(scale) => {
            DataType::Decimal128(*precision, *scale)
        }
        _ => DataType::Decimal128(38, 10),
    };
    let float = matches!(
        values.data_type(),
        DataType::Float16 | DataType::Float32 | DataType::Float64
    );
    let decimals = cast(values, &decimal_type)?;
    let scale = match decimal_type {
        DataType::Decimal128(_, scale) => scale as u32,
        _ => 10,
    };
    let decimals = decimals.as_primitive::<Decimal128Type>();
    let mut parsed = LastTemplate::new();
    let mut out = StringBuilder::new();
    for row in 0..decimals.len() {
        if decimals.is_null(row) || templates.is_null(row) {
            out.append_null();
            continue;
        }
        let template = parsed.get(templates.value(row), number_template)?;
        let value =
            Decimal::try_from_i128_with_scale(decimals.value(row), scale).map_err(|error| {
                DataFusionError::Execution(format!("numeric field overflow: {error}"))
            })?;
        out.append_value(template.format(value, float));
    }
    Ok(Arc::new(out.finish()))
}

/// Text read as numbers in number templates, into `output` (the DECIMAL the call was typed).
fn to_number(
    texts: &datafusion::arrow::array::StringArray,
    templates: &datafusion::arrow::array::StringArray,
    output: &DataType,
) -> Result<ArrayRef> {
    let DataType::Decimal128(precision, scale) = *output else {
        return Err(DataFusionError::Internal(format!(
            "to_number typed {output}"
        )));
    };
    let mut parsed = LastTemplate::new();
    let mut out = Decimal128Builder::new();
    for row in 0..texts.len() {
        if texts.is_null(row) || templates.is_null(row) {
            out.append_null();
            continue;
        }
        let template = parsed.get(templates.value(row), number_template)?;
        let text = texts.value(row);
        let Some(mut value) = template.read(text) else {
            return Err(DataFusionError::Execution(format!(
                "invalid input syntax for type numeric: \"{text}\""
            )));
        };
        value.rescale(scale.max(0) as u32);
        out.append_value(value.mantissa());
    }
    Ok(Arc::new(
        out.finish().with_precision_and_scale(precision, scale)?,
    ))
}
