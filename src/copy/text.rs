//! COPY's text format: one line per row, fields split by the delimiter (a tab), NULL written
//! `\N`, and backslash escapes for what would break a line or a field.

use super::{Options, TextRows, bad_format};
use crate::error::{Error, ExecutionError};

/// Reads every line up to the end of the data or a line `\.`.
pub(super) fn decode(
    data: &[u8],
    options: &Options,
    columns: &[String],
) -> Result<TextRows, Error> {
    let mut rows = TextRows::new(columns.len());
    let mut lines = data.split(|byte| *byte == b'\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        // The data's last newline ends its last line; nothing follows it.
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if options.header && number == 1 {
            continue;
        }
        if line == b"\\." {
            break;
        }
        let fields = split(line, options.delimiter);
        if fields.len() > columns.len() {
            return Err(bad_format("extra data after last expected column", number));
        }
        if let Some(missing) = columns.get(fields.len()) {
            return Err(bad_format(
                format_args!("missing data for column \"{missing}\""),
                number,
            ));
        }
        for (values, field) in rows.columns.iter_mut().zip(fields) {
            values.push(if field == options.null.as_bytes() {
                None
            } else {
                Some(unescape(field, number)?)
            });
        }
        rows.lines.push(number);
    }
    Ok(rows)
}

/// The raw fields of a line: split at each delimiter that no backslash escapes.
fn split(line: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut position = 0;
    while position < line.len() {
        match line[position] {
            b'\\' => position += 2,
            byte if byte == delimiter => {
                fields.push(&line[start..position]);
                position += 1;
                start = position;
            }
            _ => position += 1,
        }
    }
    fields.push(&line[start.min(line.len())..]);
    fields
}

/// A field's value: `\n`, `\t` and the other C escapes, octal `\123` and hex `\x4F` decoded,
/// any other escaped character taken as itself.
fn unescape(field: &[u8], line: usize) -> Result<String, Error> {
    let mut value = Vec::with_capacity(field.len());
    let mut position = 0;
    while position < field.len() {
        let byte = field[position];
        position += 1;
        if byte != b'\\' {
            value.push(byte);
            continue;
        }
        let Some(&escaped) = field.get(position) else {
            // A backslash ending the line stands for itself.
            value.push(b'\\');
            break;
        };
        position += 1;
        value.push(match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut code = u32::from(escaped - b'0');
                for _ in 0..2 {
                    match field.get(position) {
                        Some(digit @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(digit - b'0');
                            position += 1;
                        }
                        _ => break,
                    }
                }
                (code & 0xff) as u8
            }
            b'x' if field.get(position).is_some_and(u8::is_ascii_hexdigit) => {
                let mut code = 0u8;
                for _ in 0..2 {
                    match field
                        .get(position)
                        .and_then(|digit| (*digit as char).to_digit(16))
                    {
                        Some(digit) => {
                            code = code * 16 + digit as u8;
                            position += 1;
                        }
                        None => break,
                    }
                }
                code
            }
            other => other,
        });
    }
    String::from_utf8(value).map_err(|_| {
        ExecutionError::CharacterNotInRepertoire(format!(
            "invalid byte sequence for encoding \"UTF8\" (line {line})"
        ))
        .into()
    })
}

/// One field of output: NULL as the NULL string, else the value with backslashes, the
/// delimiter and control characters escaped.
pub(super) fn write_field(line: &mut Vec<u8>, field: Option<&[u8]>, options: &Options) {
    let Some(value) = field else {
        line.extend_from_slice(options.null.as_bytes());
        return;
    };
    for &byte in value {
        match byte {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' if options.delimiter == b'\t' => line.extend_from_slice(b"\\t"),
            0x08 => line.extend_from_slice(b"\\b"),
            0x0b => line.extend_from_slice(b"\\v"),
            0x0c => line.extend_from_slice(b"\\f"),
            other if other == options.delimiter => {
                line.push(b'\\');
                line.push(other);
            }
            other => line.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn escapes_nulls_and_the_end_marker() {
        let options = super::super::text_options();
        let data = b"1\ta\\tb\\\\c\n\\N\t\\101\\x42\n\\.\nignored\n";
        let rows = decode(data, &options, &columns(&["k", "v"])).unwrap();
        assert_eq!(rows.columns[0], vec![Some("1".into()), None]);
        assert_eq!(
            rows.columns[1],
            vec![Some("a\tb\\c".into()), Some("AB".into())]
        );
        assert_eq!(rows.lines, vec![1, 2]);
    }

    #[test]
    fn wrong_field_counts_name_the_line() {
        let options = super::super::text_options();
        let error = decode(b"1\ta\n2\n", &options, &columns(&["k", "v"])).unwrap_err();
        assert_eq!(error.to_string(), "missing data for column \"v\" (line 2)");
        let error = decode(b"1\ta\tb\n", &options, &columns(&["k", "v"])).unwrap_err();
        assert_eq!(error.sqlstate(), "22P04");
    }

    #[test]
    fn output_escapes_what_input_reads_back() {
        let options = super::super::text_options();
        let mut line = Vec::new();
        write_field(&mut line, Some(b"a\tb\n\\"), &options);
        assert_eq!(line, b"a\\tb\\n\\\\");
        let rows = decode(&line, &options, &columns(&["v"])).unwrap();
        assert_eq!(rows.columns[0], vec![Some("a\tb\n\\".into())]);
    }
}
