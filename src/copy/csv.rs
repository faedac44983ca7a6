//! COPY's CSV format: fields split by the delimiter (a comma), quoted when they hold it, a
//! quote or a line break (a quoted field may span lines); an unquoted empty field is NULL.

use super::{Options, TextRows, bad_format};
use crate::error::{Error, ExecutionError};

/// One field as read: its bytes, and whether any of it was quoted (a quoted NULL string is
/// text, not NULL).
struct Field {
    value: Vec<u8>,
    quoted: bool,
}

/// Reads every row up to the end of the data or a line `\.`.
pub(super) fn decode(
    data: &[u8],
    options: &Options,
    columns: &[String],
) -> Result<TextRows, Error> {
    let mut rows = TextRows::new(columns.len());
    let mut position = 0;
    let mut line = 1;
    let mut first = true;
    while position < data.len() {
        let rest = &data[position..];
        if rest == b"\\." || rest.starts_with(b"\\.\n") || rest.starts_with(b"\\.\r\n") {
            break;
        }
        let row_line = line;
        let fields = read_row(data, &mut position, &mut line, options)?;
        if std::mem::take(&mut first) && options.header {
            continue;
        }
        if fields.len() > columns.len() {
            return Err(bad_format(
                "extra data after last expected column",
                row_line,
            ));
        }
        if let Some(missing) = columns.get(fields.len()) {
            return Err(bad_format(
                format_args!("missing data for column \"{missing}\""),
                row_line,
            ));
        }
        for ((values, field), name) in rows.columns.iter_mut().zip(fields).zip(columns) {
            let is_null_text = field.value == options.null.as_bytes();
            let null = is_null_text
                && if field.quoted {
                    options.force_null.contains(name)
                } else {
                    !options.force_not_null.contains(name)
                };
            values.push(if null {
                None
            } else {
                Some(String::from_utf8(field.value).map_err(|_| {
                    Error::from(ExecutionError::CharacterNotInRepertoire(format!(
                        "invalid byte sequence for encoding \"UTF8\" (line {row_line})"
                    )))
                })?)
            });
        }
        rows.lines.push(row_line);
    }
    Ok(rows)
}

/// Reads one row from `position` through its line break; `line` counts the line breaks passed,
/// those inside quoted fields too.
fn read_row(
    data: &[u8],
    position: &mut usize,
    line: &mut usize,
    options: &Options,
) -> Result<Vec<Field>, Error> {
    let start_line = *line;
    let mut fields = Vec::new();
    let mut field = Field {
        value: Vec::new(),
        quoted: false,
    };
    let mut in_quotes = false;
    while *position < data.len() {
        let byte = data[*position];
        *position += 1;
        if in_quotes {
            let next = data.get(*position).copied();
            // The escape character before a quote (or before itself) makes that character
            // data; with the default escape, the quote, that is a doubled quote.
            let escapes_next = byte == options.escape
                && next.is_some_and(|next| next == options.quote || next == options.escape);
            if escapes_next {
                field.value.extend(next);
                *position += 1;
            } else if byte == options.quote {
                in_quotes = false;
            } else {
                if byte == b'\n' {
                    *line += 1;
                }
                field.value.push(byte);
            }
            continue;
        }
        match byte {
            b'\n' | b'\r' => {
                if byte == b'\r' && data.get(*position) == Some(&b'\n') {
                    *position += 1;
                }
                *line += 1;
                fields.push(field);
                return Ok(fields);
            }
            byte if byte == options.delimiter => {
                fields.push(std::mem::replace(
                    &mut field,
                    Field {
                        value: Vec::new(),
                        quoted: false,
                    },
                ));
            }
            byte if byte == options.quote => {
                in_quotes = true;
                field.quoted = true;
            }
            other => field.value.push(other),
        }
    }
    if in_quotes {
        return Err(bad_format("unterminated CSV quoted field", start_line));
    }
    fields.push(field);
    Ok(fields)
}

/// One field of output: NULL as the NULL string; a value quoted when `force`d, when it holds
/// the delimiter, a quote, the escape or a line break, or when it reads as the NULL string or
/// the end marker.
pub(super) fn write_field(
    line: &mut Vec<u8>,
    field: Option<&[u8]>,
    options: &Options,
    force: bool,
) {
    let Some(value) = field else {
        line.extend_from_slice(options.null.as_bytes());
        return;
    };
    let needs_quotes = force
        || value == options.null.as_bytes()
        || value == b"\\."
        || value.iter().any(|&byte| {
            byte == options.delimiter
                || byte == options.quote
                || byte == options.escape
                || byte == b'\n'
                || byte == b'\r'
        });
    if !needs_quotes {
        line.extend_from_slice(value);
        return;
    }
    line.push(options.quote);
    for &byte in value {
        if byte == options.quote || byte == options.escape {
            line.push(options.escape);
        }
        line.push(byte);
    }
    line.push(options.quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::Format;

    fn csv() -> Options {
        Options {
            format: Format::Csv,
            delimiter: b',',
            null: String::new(),
            ..crate::copy::text_options()
        }
    }

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn quotes_nulls_and_line_breaks_in_fields() {
        let data = b"1,\"a,\"\"b\"\"\",\n2,\"two\nlines\",\"\"\r\n3,,x\n";
        let rows = decode(data, &csv(), &columns(&["k", "v", "w"])).unwrap();
        assert_eq!(
            rows.columns[1],
            vec![Some("a,\"b\"".into()), Some("two\nlines".into()), None]
        );
        assert_eq!(
            rows.columns[2],
            vec![None, Some(String::new()), Some("x".into())]
        );
        assert_eq!(rows.lines, vec![1, 2, 4]);
    }

    #[test]
    fn a_header_is_skipped_and_an_open_quote_is_an_error() {
        let options = Options {
            header: true,
            ..csv()
        };
        let rows = decode(b"k,v\n1,2\n", &options, &columns(&["k", "v"])).unwrap();
        assert_eq!(rows.columns[0], vec![Some("1".into())]);
        let error = decode(b"1,\"open\n", &csv(), &columns(&["k", "v"])).unwrap_err();
        assert_eq!(error.to_string(), "unterminated CSV quoted field (line 1)");
    }

    #[test]
    fn output_quotes_what_input_reads_back() {
        let mut line = Vec::new();
        for (position, value) in [Some(&b"a,\"b\""[..]), Some(b""), None].iter().enumerate() {
            if position > 0 {
                line.push(b',');
            }
            write_field(&mut line, *value, &csv(), false);
        }
        assert_eq!(line, b"\"a,\"\"b\"\"\",\"\",");
        let rows = decode(&line, &csv(), &columns(&["a", "b", "c"])).unwrap();
        assert_eq!(
            rows.columns
                .iter()
                .map(|column| column[0].clone())
                .collect::<Vec<_>>(),
            vec![Some("a,\"b\"".into()), Some(String::new()), None]
        );
    }
}
