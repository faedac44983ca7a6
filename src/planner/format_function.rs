//! Postgres's `format(template, arguments...)`: `%s` (text, NULL as nothing), `%I` (an SQL
//! identifier, quoted when it must be), `%L` (an SQL literal, NULL as `NULL`), `%%`, argument
//! positions (`%2$s`) and widths (`%-10s`), with Postgres's errors. DataFusion has no such
//! function (Metabase's field sync calls it).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::ExecutionError;

pub fn format_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, scalar) = super::argument_arrays(&args)?;
        let texts = arrays
            .iter()
            .map(|array| cast(array, &DataType::Utf8))
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        let texts: Vec<_> = texts.iter().map(|array| array.as_string::<i32>()).collect();
        let Some((template, arguments)) = texts.split_first() else {
            return Err(invalid("function format() needs a template".into()));
        };
        let mut out = StringBuilder::new();
        for row in 0..template.len() {
            if template.is_null(row) {
                out.append_null();
                continue;
            }
            let values: Vec<Option<&str>> = arguments
                .iter()
                .map(|argument| (!argument.is_null(row)).then(|| argument.value(row)))
                .collect();
            out.append_value(format(template.value(row), &values)?);
        }
        let result: ArrayRef = Arc::new(out.finish());
        super::scalar_or_array(result, scalar)
    }
}

fn invalid(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(ExecutionError::InvalidParameterValue(message)))
}

/// `template` with its specifiers replaced by `values` in turn (or at the positions they name).
fn format(template: &str, values: &[Option<&str>]) -> Result<String> {
    let characters: Vec<char> = template.chars().collect();
    let mut out = String::new();
    let mut next = 0usize;
    let mut position = 0;
    while position < characters.len() {
        let character = characters[position];
        position += 1;
        if character != '%' {
            out.push(character);
            continue;
        }
        let unterminated = || invalid("unterminated format() type specifier".into());
        if characters.get(position) == Some(&'%') {
            out.push('%');
            position += 1;
            continue;
        }
        // %[position$][-][width]type
        let start = position;
        while characters.get(position).is_some_and(char::is_ascii_digit) {
            position += 1;
        }
        let mut index = None;
        if characters.get(position) == Some(&'$') && position > start {
            let number: String = characters[start..position].iter().collect();
            let number: usize = number.parse().map_err(|_| unterminated())?;
            if number == 0 {
                return Err(invalid(
                    "format specifies argument 0, but arguments are numbered from 1".into(),
                ));
            }
            index = Some(number - 1);
            position += 1;
        } else {
            position = start;
        }
        let left_aligned = characters.get(position) == Some(&'-');
        if left_aligned {
            position += 1;
        }
        let width_start = position;
        while characters.get(position).is_some_and(char::is_ascii_digit) {
            position += 1;
        }
        let width: usize = if position > width_start {
            characters[width_start..position]
                .iter()
                .collect::<String>()
                .parse()
                .map_err(|_| unterminated())?
        } else {
            0
        };
        let Some(&kind) = characters.get(position) else {
            return Err(unterminated());
        };
        position += 1;
        let index = index.unwrap_or(next);
        next = index + 1;
        let Some(&value) = values.get(index) else {
            return Err(invalid("too few arguments for format()".into()));
        };
        let text = match kind {
            's' => value.unwrap_or_default().to_string(),
            'I' => match value {
                Some(value) => quote_identifier(value),
                None => {
                    return Err(DataFusionError::External(Box::new(
                        ExecutionError::NullValueNotAllowed(
                            "null values cannot be formatted as an SQL identifier".into(),
                        ),
                    )));
                }
            },
            'L' => match value {
                Some(value) => quote_literal(value),
                None => "NULL".into(),
            },
            other => {
                return Err(invalid(format!(
                    "unrecognized format() type specifier \"{other}\""
                )));
            }
        };
        let padding = width.saturating_sub(text.chars().count());
        if left_aligned {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', padding));
        } else {
            out.extend(std::iter::repeat_n(' ', padding));
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// An identifier as Postgres's quote_ident writes it: as it is when it is lower case letters,
/// digits and underscores not starting with a digit, otherwise in double quotes.
fn quote_identifier(identifier: &str) -> String {
    let plain = identifier
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && identifier
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        identifier.to_string()
    } else {
        format!("\"{}\"", identifier.replace('"', "\"\""))
    }
}

/// A literal as Postgres's quote_literal writes it: in single quotes, quotes doubled, and with
/// `E` before it when it holds a backslash (doubled too).
fn quote_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_postgres_does() {
        // What PostgreSQL 15 returns for the same calls.
        assert_eq!(
            format(
                "%s|%I|%L|%%|%2$s|%-5s|%5s|",
                &[
                    Some("a b"),
                    Some("Tab"),
                    Some("it's"),
                    Some("x"),
                    None,
                    None
                ]
            )
            .unwrap(),
            "a b|\"Tab\"|'it''s'|%|Tab|it's |    x|"
        );
        assert_eq!(format("%I", &[Some("abc")]).unwrap(), "abc");
        assert_eq!(format("%I", &[Some("a\"b")]).unwrap(), "\"a\"\"b\"");
        assert_eq!(format("%L", &[Some("a\\b")]).unwrap(), "E'a\\\\b'");
        assert_eq!(format("%L %s", &[None, None]).unwrap(), "NULL ");
        assert!(format("%s %s", &[Some("one")]).is_err());
        assert!(format("%x", &[Some("one")]).is_err());
        assert!(format("%I", &[None]).is_err());
    }
}
