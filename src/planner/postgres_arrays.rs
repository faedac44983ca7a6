//! Postgres arrays from the outside: the text form (`{1,NULL,"a b"}`) that `'...'::int[]` casts
//! and text parameters carry, and the binary form drivers bind array parameters in (asyncpg,
//! PgJDBC's setArray). Both become Arrow lists of the element type; one dimension only. Also
//! the one check of `x <> ALL(array)` DataFusion cannot evaluate on its own.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options};
use datafusion::arrow::datatypes::{DataType, FieldRef, IntervalUnit};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{Error, ExecutionError, PlanError};

/// The elements of an array literal, each `None` for NULL: `{1, 2}`, `{"a,b",NULL,c}`,
/// `{}`. Quoted elements keep their spaces and read backslash escapes.
pub fn parse_array_text(text: &str) -> Result<Vec<Option<String>>, Error> {
    let malformed = |why: &str| -> Error {
        ExecutionError::InvalidTextRepresentation(format!(
            "malformed array literal: \"{text}\" ({why})"
        ))
        .into()
    };
    let trimmed = text.trim();
    let Some(inner) = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
    else {
        return Err(malformed(
            "array value must start with \"{\" and end with \"}\"",
        ));
    };
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut elements = Vec::new();
    let mut characters = inner.chars().peekable();
    loop {
        while characters.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let mut quoted = false;
        match characters.peek() {
            Some('{') => {
                return Err(PlanError::Unsupported(
                    "arrays of more than one dimension are not supported".into(),
                )
                .into());
            }
            Some('"') => {
                quoted = true;
                characters.next();
                loop {
                    match characters.next() {
                        Some('"') => break,
                        Some('\\') => match characters.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(malformed("unexpected end of input")),
                        },
                        Some(other) => value.push(other),
                        None => return Err(malformed("unexpected end of input")),
                    }
                }
                while characters.next_if(|c| c.is_whitespace()).is_some() {}
            }
            _ => {
                while let Some(&next) = characters.peek() {
                    if next == ',' {
                        break;
                    }
                    characters.next();
                    match next {
                        '\\' => match characters.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err(malformed("unexpected end of input")),
                        },
                        '"' | '{' | '}' => return Err(malformed("unexpected character")),
                        other => value.push(other),
                    }
                }
                let end = value.trim_end().len();
                value.truncate(end);
                if value.is_empty() {
                    return Err(malformed("unexpected \",\" character"));
                }
            }
        }
        elements.push(if !quoted && value.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(value)
        });
        match characters.next() {
            Some(',') => continue,
            None => break,
            Some(_) => return Err(malformed("junk after closing quote")),
        }
    }
    Ok(elements)
}

/// Text array literals (`{1,2}`) cast to lists of `element`; a NULL text is a NULL list.
pub fn text_to_array(values: &ArrayRef, element: &FieldRef) -> DataFusionResult<ArrayRef> {
    let text = cast(values, &DataType::Utf8)?;
    let text = text.as_string::<i32>();
    let mut lengths = Vec::with_capacity(text.len());
    let mut flat: Vec<Option<String>> = Vec::new();
    for value in text.iter() {
        let elements = match value {
            Some(value) => parse_array_text(value).map_err(external)?,
            None => Vec::new(),
        };
        lengths.push(elements.len());
        flat.extend(elements);
    }
    let flat: ArrayRef = Arc::new(StringArray::from(flat));
    let elements = elements_from_text(&flat, element.data_type())?;
    Ok(Arc::new(ListArray::try_new(
        Arc::clone(element),
        OffsetBuffer::from_lengths(lengths),
        elements,
        text.nulls().cloned(),
    )?))
}

/// Elements as text cast to their type the way `'text'::type` is.
fn elements_from_text(flat: &ArrayRef, element: &DataType) -> DataFusionResult<ArrayRef> {
    match element {
        DataType::Timestamp(_, _)
        | DataType::Date32
        | DataType::Interval(IntervalUnit::MonthDayNano) => {
            super::postgres_casts::text_to_time(flat, element)
        }
        // Not Arrow's safe cast, which turns what does not parse into NULL.
        other => Ok(cast_with_options(
            flat,
            other,
            &CastOptions {
                safe: false,
                ..CastOptions::default()
            },
        )?),
    }
}

/// One array parameter as Postgres's binary array format carries it: dimensions, a null flag,
/// the element type, each dimension's length and lower bound, then each element as a length
/// and its binary value.
pub fn array_from_binary(raw: &[u8], element: &FieldRef) -> Result<ScalarValue, Error> {
    let invalid = || {
        Error::from(ExecutionError::InvalidBinaryRepresentation(
            "malformed array".into(),
        ))
    };
    let word = |position: usize| -> Result<i32, Error> {
        raw.get(position..position + 4)
            .and_then(|bytes| bytes.try_into().ok())
            .map(i32::from_be_bytes)
            .ok_or_else(invalid)
    };
    let dimensions = word(0)?;
    let mut values = Vec::new();
    match dimensions {
        0 => {}
        1 => {
            let length = usize::try_from(word(12)?).map_err(|_| invalid())?;
            let mut position = 20;
            for _ in 0..length {
                let size = word(position)?;
                position += 4;
                let field = if size < 0 {
                    None
                } else {
                    let end = position + size as usize;
                    let bytes = raw.get(position..end).ok_or_else(invalid)?;
                    position = end;
                    Some(bytes)
                };
                values.push(crate::copy::binary_value(field, element.data_type())?);
            }
        }
        _ => {
            return Err(PlanError::Unsupported(
                "arrays of more than one dimension are not supported".into(),
            )
            .into());
        }
    }
    let elements = if values.is_empty() {
        datafusion::arrow::array::new_empty_array(element.data_type())
    } else {
        ScalarValue::iter_to_array(values)?
    };
    let list = ListArray::try_new(
        Arc::clone(element),
        OffsetBuffer::from_lengths([elements.len()]),
        elements,
        None,
    )?;
    Ok(ScalarValue::List(Arc::new(list)))
}

/// One text array parameter as a list of `element`.
pub fn array_from_text(text: &str, element: &FieldRef) -> Result<ScalarValue, Error> {
    let values: ArrayRef = Arc::new(StringArray::from(vec![Some(text)]));
    let list = text_to_array(&values, element)?;
    Ok(ScalarValue::List(Arc::new(list.as_list::<i32>().clone())))
}

fn external(error: Error) -> DataFusionError {
    match error {
        Error::Execution(execution) => DataFusionError::External(Box::new(execution)),
        Error::Plan(PlanError::Unsupported(message)) => DataFusionError::NotImplemented(message),
        other => DataFusionError::Plan(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_split_into_elements() {
        assert_eq!(
            parse_array_text("{1, NULL ,3}").unwrap(),
            vec![Some("1".into()), None, Some("3".into())]
        );
        assert_eq!(
            parse_array_text(r#"{"a,b","NULL",c d,"q\"x"}"#).unwrap(),
            vec![
                Some("a,b".into()),
                Some("NULL".into()),
                Some("c d".into()),
                Some("q\"x".into())
            ]
        );
        assert_eq!(
            parse_array_text(" {} ").unwrap(),
            Vec::<Option<String>>::new()
        );
        assert_eq!(parse_array_text("1,2").unwrap_err().sqlstate(), "22P02");
        assert_eq!(parse_array_text("{1,,2}").unwrap_err().sqlstate(), "22P02");
        assert_eq!(
            parse_array_text("{{1},{2}}").unwrap_err().sqlstate(),
            "0A000"
        );
    }
}

/// `array_position(a, NULL) IS NOT NULL` ("does the array hold a NULL?"), which DataFusion
/// plans for `x <> ALL(a)` and cannot evaluate when `a` is a column of arrays (a bound
/// parameter after common subexpression elimination), becomes [`ArrayHasNull`]`(a)`.
#[derive(Debug)]
pub struct NullsInArrays;

impl AnalyzerRule for NullsInArrays {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DataFusionResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            node.map_expressions(|expression| {
                let saved = names.save(&expression);
                Ok(expression
                    .transform_up(|expression| Ok(null_position_check(expression)))?
                    .update_data(|expression| saved.restore(expression)))
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "nulls_in_arrays"
    }
}

fn null_position_check(expression: Expr) -> Transformed<Expr> {
    let Expr::IsNotNull(inner) = &expression else {
        return Transformed::no(expression);
    };
    let Expr::ScalarFunction(function) = inner.as_ref() else {
        return Transformed::no(expression);
    };
    let looks_for_null = function.name() == "array_position"
        && matches!(
            function.args.get(1),
            Some(Expr::Literal(ScalarValue::Null, _))
        );
    match function.args.first() {
        Some(array) if looks_for_null => {
            let has_null = ScalarUDF::new_from_impl(ArrayHasNull::new());
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(has_null),
                vec![array.clone()],
            )))
        }
        _ => Transformed::no(expression),
    }
}

/// Whether an array holds a NULL element; false for a NULL array.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayHasNull {
    signature: Signature,
}

impl ArrayHasNull {
    fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ArrayHasNull {
    fn name(&self) -> &str {
        "array_has_null"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let Some(argument) = args.args.first() else {
            return Err(DataFusionError::Internal(
                "array_has_null takes one argument".into(),
            ));
        };
        let arrays = argument.to_array(args.number_rows)?;
        let result: BooleanArray = match arrays.data_type() {
            DataType::List(_) => {
                let lists = arrays.as_list::<i32>();
                (0..lists.len())
                    .map(|row| Some(!lists.is_null(row) && lists.value(row).null_count() > 0))
                    .collect()
            }
            DataType::Null => BooleanArray::from(vec![false; arrays.len()]),
            other => {
                return Err(DataFusionError::Plan(format!(
                    "array_has_null needs an array, not {other}"
                )));
            }
        };
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}
