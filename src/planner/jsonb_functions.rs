//! Postgres's jsonb functions (`jsonb_typeof`, `jsonb_build_object`, `to_jsonb`, ...), the
//! functions its operators stand for (`->` is `jsonb_object_field`, `@>` is `jsonb_contains`),
//! and the list forms the set-returning ones are planned through (`jsonb_array_elements(j)` is
//! `unnest(jsonb_array_elements_list(j))`). Each reads its jsonb arguments from their canonical
//! text; text arguments where jsonb is expected are parsed as Postgres parses an untyped literal.
//! `json_*` names are aliases: json values are jsonb here (see [`crate::sql::jsonb`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int32Builder, LargeStringBuilder, ListArray,
    StringBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::error::ExecutionError;
use crate::sql::jsonb::{JSONB, Jsonb};

/// Every jsonb function, for the session to know them by name (views store their plans by
/// function name).
pub fn jsonb_functions() -> Vec<ScalarUDF> {
    Kind::ALL
        .iter()
        .map(|kind| ScalarUDF::new_from_impl(JsonbFunction::new(*kind)))
        .collect()
}

/// The function a jsonb operator or set-returning call is planned as.
pub fn function(kind: Kind) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(JsonbFunction::new(kind)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Text to jsonb: the cast `'...'::jsonb`.
    Input,
    ObjectField,
    ObjectFieldText,
    ArrayElement,
    ArrayElementText,
    ExtractPath,
    ExtractPathText,
    Contains,
    Contained,
    Exists,
    ExistsAny,
    ExistsAll,
    Concat,
    Delete,
    TypeOf,
    ArrayLength,
    Pretty,
    StripNulls,
    BuildObject,
    BuildArray,
    ToJsonb,
    /// The elements of an array as a list: what `jsonb_array_elements` expands.
    ArrayElementsList,
    ArrayElementsTextList,
    ObjectKeysList,
}

impl Kind {
    const ALL: [Kind; 24] = [
        Kind::Input,
        Kind::ObjectField,
        Kind::ObjectFieldText,
        Kind::ArrayElement,
        Kind::ArrayElementText,
        Kind::ExtractPath,
        Kind::ExtractPathText,
        Kind::Contains,
        Kind::Contained,
        Kind::Exists,
        Kind::ExistsAny,
        Kind::ExistsAll,
        Kind::Concat,
        Kind::Delete,
        Kind::TypeOf,
        Kind::ArrayLength,
        Kind::Pretty,
        Kind::StripNulls,
        Kind::BuildObject,
        Kind::BuildArray,
        Kind::ToJsonb,
        Kind::ArrayElementsList,
        Kind::ArrayElementsTextList,
        Kind::ObjectKeysList,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Input => "jsonb_in",
            Kind::ObjectField => "jsonb_object_field",
            Kind::ObjectFieldText => "jsonb_object_field_text",
            Kind::ArrayElement => "jsonb_array_element",
            Kind::ArrayElementText => "jsonb_array_element_text",
            Kind::ExtractPath => "jsonb_extract_path",
            Kind::ExtractPathText => "jsonb_extract_path_text",
            Kind::Contains => "jsonb_contains",
            Kind::Contained => "jsonb_contained",
            Kind::Exists => "jsonb_exists",
            Kind::ExistsAny => "jsonb_exists_any",
            Kind::ExistsAll => "jsonb_exists_all",
            Kind::Concat => "jsonb_concat",
            Kind::Delete => "jsonb_delete",
            Kind::TypeOf => "jsonb_typeof",
            Kind::ArrayLength => "jsonb_array_length",
            Kind::Pretty => "jsonb_pretty",
            Kind::StripNulls => "jsonb_strip_nulls",
            Kind::BuildObject => "jsonb_build_object",
            Kind::BuildArray => "jsonb_build_array",
            Kind::ToJsonb => "to_jsonb",
            Kind::ArrayElementsList => "jsonb_array_elements_list",
            Kind::ArrayElementsTextList => "jsonb_array_elements_text_list",
            Kind::ObjectKeysList => "jsonb_object_keys_list",
        }
    }

    /// The json spellings of the same function.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::Input => &["json_in"],
            Kind::ObjectField => &["json_object_field"],
            Kind::ObjectFieldText => &["json_object_field_text"],
            Kind::ArrayElement => &["json_array_element"],
            Kind::ArrayElementText => &["json_array_element_text"],
            Kind::ExtractPath => &["json_extract_path"],
            Kind::ExtractPathText => &["json_extract_path_text"],
            Kind::TypeOf => &["json_typeof"],
            Kind::ArrayLength => &["json_array_length"],
            Kind::StripNulls => &["json_strip_nulls"],
            Kind::BuildObject => &["json_build_object"],
            Kind::BuildArray => &["json_build_array"],
            Kind::ToJsonb => &["to_json"],
            _ => &[],
        }
    }

    /// The argument counts the function takes: at least `.0`, at most `.1`.
    fn arity(self) -> (usize, usize) {
        match self {
            Kind::Input
            | Kind::TypeOf
            | Kind::ArrayLength
            | Kind::Pretty
            | Kind::StripNulls
            | Kind::ToJsonb
            | Kind::ArrayElementsList
            | Kind::ArrayElementsTextList
            | Kind::ObjectKeysList => (1, 1),
            Kind::ExtractPath | Kind::ExtractPathText => (1, usize::MAX),
            Kind::BuildObject | Kind::BuildArray => (0, usize::MAX),
            _ => (2, 2),
        }
    }

    fn return_type(self) -> DataType {
        match self {
            Kind::ObjectFieldText
            | Kind::ArrayElementText
            | Kind::ExtractPathText
            | Kind::TypeOf
            | Kind::Pretty => DataType::Utf8,
            Kind::Contains | Kind::Contained | Kind::Exists | Kind::ExistsAny | Kind::ExistsAll => {
                DataType::Boolean
            }
            Kind::ArrayLength => DataType::Int32,
            Kind::ArrayElementsList => DataType::new_list(JSONB, true),
            Kind::ArrayElementsTextList | Kind::ObjectKeysList => {
                DataType::new_list(DataType::Utf8, true)
            }
            _ => JSONB,
        }
    }

    /// Whether a NULL argument makes the result NULL without calling the function (Postgres's
    /// STRICT); the builders and `to_jsonb` see their NULLs.
    fn is_strict(self) -> bool {
        !matches!(self, Kind::BuildObject | Kind::BuildArray)
    }
}

/// One jsonb function; `kind` says which.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonbFunction {
    kind: Kind,
    aliases: Vec<String>,
    signature: Signature,
}

impl JsonbFunction {
    fn new(kind: Kind) -> Self {
        let signature = match kind.arity() {
            (0, _) => Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Immutable,
            ),
            (minimum, maximum) if minimum == maximum => {
                Signature::any(minimum, Volatility::Immutable)
            }
            _ => Signature::variadic_any(Volatility::Immutable),
        };
        Self {
            kind,
            aliases: kind
                .aliases()
                .iter()
                .map(|alias| alias.to_string())
                .collect(),
            signature,
        }
    }
}

impl ScalarUDFImpl for JsonbFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arguments: &[DataType]) -> Result<DataType> {
        let (minimum, maximum) = self.kind.arity();
        if arguments.len() < minimum || arguments.len() > maximum {
            return Err(DataFusionError::Plan(format!(
                "function {}({}) does not exist",
                self.kind.name(),
                arguments
                    .iter()
                    .map(crate::server::arrow_type_name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if self.kind == Kind::BuildObject && arguments.len() % 2 == 1 {
            return Err(DataFusionError::External(Box::new(
                ExecutionError::InvalidParameterValue(
                    "argument list must have even number of elements".into(),
                ),
            )));
        }
        Ok(self.kind.return_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, scalar) = super::argument_arrays(&args)?;
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = arrays
            .into_iter()
            .map(|array| {
                if *array.data_type() == DataType::Null {
                    // The NULL literal's column has no null buffer: one that has, made once,
                    // lets each row ask `is_null` without rebuilding the logical nulls.
                    Ok(datafusion::arrow::array::new_null_array(
                        &DataType::Utf8,
                        rows,
                    ))
                } else if array.len() == rows {
                    Ok(array)
                } else {
                    // A constant argument beside columns.
                    datafusion::common::ScalarValue::try_from_array(&array, 0)?
                        .to_array_of_size(rows)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let result = evaluate(self.kind, &arrays, rows)?;
        super::scalar_or_array(result, scalar)
    }
}

fn failed(error: impl Into<ExecutionError>) -> DataFusionError {
    DataFusionError::External(Box::new(error.into()))
}

fn invalid_parameter(message: &str) -> DataFusionError {
    failed(ExecutionError::InvalidParameterValue(message.to_string()))
}

/// The results of `kind` over `rows` rows of `arguments`.
fn evaluate(kind: Kind, arguments: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    let null_at = |row: usize| kind.is_strict() && arguments.iter().any(|a| a.is_null(row));
    match kind.return_type() {
        DataType::Boolean => {
            let mut builder = BooleanBuilder::with_capacity(rows);
            for row in 0..rows {
                if null_at(row) {
                    builder.append_null();
                    continue;
                }
                let document = jsonb_at(&arguments[0], row)?;
                let answer = match kind {
                    Kind::Contains => document.contains(&jsonb_at(&arguments[1], row)?),
                    Kind::Contained => jsonb_at(&arguments[1], row)?.contains(&document),
                    Kind::Exists => document.has_key(&text_at(&arguments[1], row)?),
                    Kind::ExistsAny => keys_at(&arguments[1], row)?
                        .iter()
                        .flatten()
                        .any(|key| document.has_key(key)),
                    _ => keys_at(&arguments[1], row)?
                        .iter()
                        .flatten()
                        .all(|key| document.has_key(key)),
                };
                builder.append_value(answer);
            }
            Ok(Arc::new(builder.finish()))
        }
        DataType::Int32 => {
            let mut builder = Int32Builder::with_capacity(rows);
            for row in 0..rows {
                if null_at(row) {
                    builder.append_null();
                    continue;
                }
                match jsonb_at(&arguments[0], row)? {
                    Jsonb::Array(elements) => builder.append_value(elements.len() as i32),
                    Jsonb::Object(_) => {
                        return Err(invalid_parameter("cannot get array length of a non-array"));
                    }
                    _ => return Err(invalid_parameter("cannot get array length of a scalar")),
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        DataType::List(element) => {
            let mut lengths = Vec::with_capacity(rows);
            let mut values: Vec<Option<String>> = Vec::new();
            for row in 0..rows {
                if null_at(row) {
                    lengths.push(0);
                    continue;
                }
                let document = jsonb_at(&arguments[0], row)?;
                let before = values.len();
                match (kind, document) {
                    (Kind::ObjectKeysList, Jsonb::Object(fields)) => {
                        values.extend(fields.into_iter().map(|(key, _)| Some(key)));
                    }
                    (Kind::ObjectKeysList, other) => {
                        return Err(invalid_parameter(&format!(
                            "cannot call jsonb_object_keys on {}",
                            if matches!(other, Jsonb::Array(_)) {
                                "an array"
                            } else {
                                "a scalar"
                            }
                        )));
                    }
                    (Kind::ArrayElementsList, Jsonb::Array(elements)) => {
                        values.extend(elements.into_iter().map(|e| Some(e.to_string())));
                    }
                    (Kind::ArrayElementsTextList, Jsonb::Array(elements)) => {
                        values.extend(elements.into_iter().map(|e| e.as_text()));
                    }
                    (_, Jsonb::Object(_)) => {
                        return Err(invalid_parameter("cannot extract elements from an object"));
                    }
                    _ => return Err(invalid_parameter("cannot extract elements from a scalar")),
                }
                lengths.push(values.len() - before);
            }
            let values: ArrayRef = if *element.data_type() == JSONB {
                Arc::new(
                    values
                        .into_iter()
                        .collect::<datafusion::arrow::array::LargeStringArray>(),
                )
            } else {
                Arc::new(
                    values
                        .into_iter()
                        .collect::<datafusion::arrow::array::StringArray>(),
                )
            };
            let nulls = (0..rows).map(|row| !null_at(row)).collect::<Vec<_>>();
            Ok(Arc::new(ListArray::try_new(
                Arc::new(Field::new("item", element.data_type().clone(), true)),
                OffsetBuffer::from_lengths(lengths),
                values,
                Some(nulls.into()),
            )?))
        }
        DataType::Utf8 => {
            let mut builder = StringBuilder::with_capacity(rows, rows * 8);
            for row in 0..rows {
                let value = if null_at(row) {
                    None
                } else {
                    text_result(kind, arguments, row)?
                };
                builder.append_option(value);
            }
            Ok(Arc::new(builder.finish()))
        }
        _ => {
            let mut builder = LargeStringBuilder::with_capacity(rows, rows * 16);
            for row in 0..rows {
                let value = if null_at(row) {
                    None
                } else {
                    jsonb_result(kind, arguments, row)?
                };
                builder.append_option(value.map(|value| value.to_string()));
            }
            Ok(Arc::new(builder.finish()))
        }
    }
}

fn text_result(kind: Kind, arguments: &[ArrayRef], row: usize) -> Result<Option<String>> {
    let document = jsonb_at(&arguments[0], row)?;
    Ok(match kind {
        Kind::TypeOf => Some(document.type_name().to_string()),
        Kind::Pretty => Some(document.pretty()),
        Kind::ObjectFieldText => document
            .field(&text_at(&arguments[1], row)?)
            .and_then(Jsonb::as_text),
        Kind::ArrayElementText => document
            .element(integer_at(&arguments[1], row)?)
            .and_then(Jsonb::as_text),
        _ => {
            let path = path_at(&arguments[1..], row)?;
            let steps = path.iter().map(Option::as_deref).collect::<Vec<_>>();
            document.at_path(&steps).and_then(Jsonb::as_text)
        }
    })
}

fn jsonb_result(kind: Kind, arguments: &[ArrayRef], row: usize) -> Result<Option<Jsonb>> {
    Ok(match kind {
        Kind::BuildObject => {
            let mut pairs = Vec::with_capacity(arguments.len() / 2);
            for pair in arguments.chunks(2) {
                if pair[0].is_null(row) {
                    return Err(invalid_parameter("argument 1: key must not be null"));
                }
                let key = match to_jsonb(&pair[0], row)? {
                    Jsonb::String(key) => key,
                    other => other.to_string(),
                };
                pairs.push((key, to_jsonb(&pair[1], row)?));
            }
            Some(Jsonb::object(pairs))
        }
        Kind::BuildArray => Some(Jsonb::Array(
            arguments
                .iter()
                .map(|argument| to_jsonb(argument, row))
                .collect::<Result<_>>()?,
        )),
        Kind::ToJsonb => Some(to_jsonb(&arguments[0], row)?),
        Kind::Input => Some(jsonb_at(&arguments[0], row)?),
        _ => {
            let document = jsonb_at(&arguments[0], row)?;
            match kind {
                Kind::ObjectField => document.field(&text_at(&arguments[1], row)?).cloned(),
                Kind::ArrayElement => document.element(integer_at(&arguments[1], row)?).cloned(),
                Kind::Concat => Some(document.concat(jsonb_at(&arguments[1], row)?)),
                Kind::StripNulls => Some(strip_nulls(document)),
                Kind::Delete => Some(delete(document, &arguments[1], row)?),
                _ => {
                    let path = path_at(&arguments[1..], row)?;
                    let steps = path.iter().map(Option::as_deref).collect::<Vec<_>>();
                    document.at_path(&steps).cloned()
                }
            }
        }
    })
}

fn delete(document: Jsonb, argument: &ArrayRef, row: usize) -> Result<Jsonb> {
    let result = match argument.data_type() {
        data_type if data_type.is_integer() => document.without_element(integer_at(argument, row)?),
        DataType::List(_) => {
            let mut document = document;
            for key in keys_at(argument, row)?.iter().flatten() {
                document = document.without_key(key).map_err(invalid_parameter)?;
            }
            Ok(document)
        }
        _ => document.without_key(&text_at(argument, row)?),
    };
    result.map_err(invalid_parameter)
}

fn strip_nulls(document: Jsonb) -> Jsonb {
    match document {
        Jsonb::Object(fields) => Jsonb::Object(
            fields
                .into_iter()
                .filter(|(_, value)| *value != Jsonb::Null)
                .map(|(key, value)| (key, strip_nulls(value)))
                .collect(),
        ),
        Jsonb::Array(elements) => Jsonb::Array(elements.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// A jsonb argument: canonical text, or text Postgres would read as a jsonb literal.
fn jsonb_at(array: &ArrayRef, row: usize) -> Result<Jsonb> {
    let text = text_at(array, row)?;
    Jsonb::parse(&text).map_err(|error| failed(ExecutionError::Jsonb(error)))
}

fn text_at(array: &ArrayRef, row: usize) -> Result<String> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        _ => {
            let text = cast(&array.slice(row, 1), &DataType::Utf8)?;
            text.as_string::<i32>().value(0).to_string()
        }
    })
}

fn integer_at(array: &ArrayRef, row: usize) -> Result<i64> {
    if let Some(integers) = array.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>() {
        return Ok(integers.value(row));
    }
    let single = array.slice(row, 1);
    let integer = cast(&single, &DataType::Int64)?;
    Ok(integer
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0))
}

/// A text[] argument: a list, or an array literal (`'{a,b}'`).
fn keys_at(array: &ArrayRef, row: usize) -> Result<Vec<Option<String>>> {
    match array.data_type() {
        DataType::List(_) => {
            let elements = array.as_list::<i32>().value(row);
            let text = cast(&elements, &DataType::Utf8)?;
            Ok(text
                .as_string::<i32>()
                .iter()
                .map(|element| element.map(str::to_string))
                .collect())
        }
        _ => super::postgres_arrays::parse_array_text(&text_at(array, row)?).map_err(|error| {
            match error {
                crate::error::Error::Execution(execution) => failed(execution),
                other => DataFusionError::Plan(other.to_string()),
            }
        }),
    }
}

/// A path: one text[] argument (`#>`), or each argument one step (`jsonb_extract_path`).
fn path_at(arguments: &[ArrayRef], row: usize) -> Result<Vec<Option<String>>> {
    match arguments {
        [single]
            if !matches!(single.data_type(), DataType::Utf8 | DataType::Utf8View)
                || text_at(single, row)?.trim_start().starts_with('{') =>
        {
            keys_at(single, row)
        }
        steps => steps
            .iter()
            .map(|step| {
                Ok(if step.is_null(row) {
                    None
                } else {
                    Some(text_at(step, row)?)
                })
            })
            .collect(),
    }
}

/// A SQL value as jsonb, as `to_jsonb` makes it: numbers and booleans as themselves, jsonb as
/// it is, lists as arrays, times in ISO 8601, everything else as a string of its text.
fn to_jsonb(array: &ArrayRef, row: usize) -> Result<Jsonb> {
    if array.is_null(row) {
        return Ok(Jsonb::Null);
    }
    let data_type = array.data_type();
    Ok(match data_type {
        DataType::Boolean => Jsonb::Bool(array.as_boolean().value(row)),
        DataType::LargeUtf8 => jsonb_at(array, row)?,
        DataType::Float32 | DataType::Float64 => {
            let value = cast(&array.slice(row, 1), &DataType::Float64)?;
            let value = value
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0);
            let text = crate::server::encode::postgres_float(value);
            Jsonb::number(&text).unwrap_or(Jsonb::String(text))
        }
        data_type if data_type.is_numeric() => {
            let text = text_at(array, row)?;
            Jsonb::number(&text).unwrap_or(Jsonb::String(text))
        }
        DataType::List(_) => {
            let elements = array.as_list::<i32>().value(row);
            Jsonb::Array(
                (0..elements.len())
                    .map(|index| to_jsonb(&elements, index))
                    .collect::<Result<_>>()?,
            )
        }
        DataType::Timestamp(_, timezone) => {
            let micros = cast(
                &array.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?;
            let micros = micros
                .as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>()
                .value(0);
            let mut text = chrono::DateTime::from_timestamp_micros(micros)
                .map(|time| time.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string())
                .unwrap_or_default();
            let fraction = micros.rem_euclid(1_000_000);
            if fraction != 0 {
                text.push_str(format!(".{fraction:06}").trim_end_matches('0'));
            }
            if timezone.is_some() {
                text.push_str("+00:00");
            }
            Jsonb::String(text)
        }
        _ => Jsonb::String(text_at(array, row)?),
    })
}
