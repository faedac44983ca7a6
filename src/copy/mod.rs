//! COPY's data formats (text, CSV and binary): what a client sends with `COPY ... FROM STDIN`
//! read into columns, and the rows of `COPY ... TO STDOUT` written as the client reads them.

mod binary;
mod csv;
mod text;

use datafusion::sql::sqlparser::ast::{CopyLegacyCsvOption, CopyLegacyOption, CopyOption, Ident};
use pgwire::messages::data::DataRow;

use crate::error::{Error, ExecutionError, PlanError};

pub use binary::{
    BINARY_TRAILER, binary_header, binary_row, decode as decode_binary, value as binary_value,
};

/// How COPY's data is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Csv,
    Binary,
}

impl Format {
    /// The overall format code of CopyInResponse and CopyOutResponse: 0 text, 1 binary.
    pub fn wire_code(self) -> i8 {
        match self {
            Format::Text | Format::Csv => 0,
            Format::Binary => 1,
        }
    }
}

/// A COPY statement's options, with Postgres's defaults for its format filled in.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    pub delimiter: u8,
    /// The text that stands for NULL (`\N` in text, the empty unquoted string in CSV).
    pub null: String,
    /// The first line names the columns: skipped on input, written on output.
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
    /// CSV output quotes these columns' values whether or not they need it.
    pub force_quote: ColumnSet,
    /// CSV input reads an unquoted NULL string in these columns as that text, not NULL.
    pub force_not_null: ColumnSet,
    /// CSV input reads a quoted NULL string in these columns as NULL too.
    pub force_null: ColumnSet,
}

/// Columns an option names: some by name, or all (`FORCE_QUOTE *`).
#[derive(Debug, Clone, Default)]
pub enum ColumnSet {
    #[default]
    None,
    All,
    Named(Vec<String>),
}

impl ColumnSet {
    fn named(columns: &[Ident]) -> Self {
        let names: Vec<String> = columns.iter().map(crate::sql::identifier).collect();
        // sqlparser reads `*` as a column named "*".
        if names.iter().any(|name| name == "*") {
            ColumnSet::All
        } else {
            ColumnSet::Named(names)
        }
    }

    /// Whether the column `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            ColumnSet::None => false,
            ColumnSet::All => true,
            ColumnSet::Named(names) => names.iter().any(|named| named == name),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, ColumnSet::None)
    }
}

impl Options {
    /// The options of `COPY ... WITH (option, ...)` and of the older `WITH CSV HEADER` spelling.
    pub fn parse(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Self, Error> {
        let mut format = Format::Text;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = None;
        let mut escape = None;
        let mut force_quote = ColumnSet::None;
        let mut force_not_null = ColumnSet::None;
        let mut force_null = ColumnSet::None;
        for option in options {
            match option {
                CopyOption::Format(name) => {
                    format = match name.value.to_lowercase().as_str() {
                        "text" => Format::Text,
                        "csv" => Format::Csv,
                        "binary" => Format::Binary,
                        other => {
                            return Err(ExecutionError::InvalidParameterValue(format!(
                                "COPY format \"{other}\" not recognized"
                            ))
                            .into());
                        }
                    }
                }
                CopyOption::Delimiter(character) => delimiter = Some(*character),
                CopyOption::Null(text) => null = Some(text.clone()),
                CopyOption::Header(on) => header = *on,
                CopyOption::Quote(character) => quote = Some(*character),
                CopyOption::Escape(character) => escape = Some(*character),
                CopyOption::ForceQuote(columns) => force_quote = ColumnSet::named(columns),
                CopyOption::ForceNotNull(columns) => force_not_null = ColumnSet::named(columns),
                CopyOption::ForceNull(columns) => force_null = ColumnSet::named(columns),
                CopyOption::Encoding(encoding) => check_encoding(encoding)?,
                // Tributary writes a table's rows in one epoch whatever this says.
                CopyOption::Freeze(_) => {}
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Binary => format = Format::Binary,
                CopyLegacyOption::Delimiter(character) => delimiter = Some(*character),
                CopyLegacyOption::Null(text) => null = Some(text.clone()),
                CopyLegacyOption::Header => header = true,
                CopyLegacyOption::Csv(csv_options) => {
                    format = Format::Csv;
                    for csv_option in csv_options {
                        match csv_option {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(character) => quote = Some(*character),
                            CopyLegacyCsvOption::Escape(character) => escape = Some(*character),
                            CopyLegacyCsvOption::ForceQuote(columns) => {
                                force_quote = ColumnSet::named(columns)
                            }
                            CopyLegacyCsvOption::ForceNotNull(columns) => {
                                force_not_null = ColumnSet::named(columns)
                            }
                        }
                    }
                }
                other => {
                    return Err(PlanError::Syntax(format!(
                        "COPY option \"{other}\" not recognized"
                    ))
                    .into());
                }
            }
        }
        if format == Format::Binary && (delimiter.is_some() || null.is_some() || header) {
            return Err(PlanError::Syntax(
                "cannot specify DELIMITER, NULL or HEADER in BINARY mode".into(),
            )
            .into());
        }
        if format != Format::Csv
            && (quote.is_some()
                || escape.is_some()
                || !force_quote.is_empty()
                || !force_not_null.is_empty()
                || !force_null.is_empty())
        {
            return Err(PlanError::Unsupported(
                "COPY QUOTE, ESCAPE and FORCE options are available only in CSV mode".into(),
            )
            .into());
        }
        let delimiter = one_byte(
            "delimiter",
            delimiter.unwrap_or(if format == Format::Csv { ',' } else { '\t' }),
        )?;
        let quote = one_byte("quote", quote.unwrap_or('"'))?;
        let escape = match escape {
            Some(character) => one_byte("escape", character)?,
            None => quote,
        };
        let null = null.unwrap_or_else(|| {
            if format == Format::Csv {
                String::new()
            } else {
                "\\N".into()
            }
        });
        if format == Format::Csv && delimiter == quote {
            return Err(ExecutionError::InvalidParameterValue(
                "COPY delimiter and quote must be different".into(),
            )
            .into());
        }
        if matches!(delimiter, b'\r' | b'\n') || (format == Format::Text && delimiter == b'\\') {
            return Err(ExecutionError::InvalidParameterValue(
                "COPY delimiter cannot be newline, carriage return or backslash".into(),
            )
            .into());
        }
        if null.contains(['\r', '\n']) {
            return Err(ExecutionError::InvalidParameterValue(
                "COPY null representation cannot use newline or carriage return".into(),
            )
            .into());
        }
        Ok(Options {
            format,
            delimiter,
            null,
            header,
            quote,
            escape,
            force_quote,
            force_not_null,
            force_null,
        })
    }

    /// The header line of text and CSV output, naming the columns.
    pub fn header_line(&self, columns: &[String]) -> Vec<u8> {
        let mut line = Vec::new();
        for (position, name) in columns.iter().enumerate() {
            if position > 0 {
                line.push(self.delimiter);
            }
            match self.format {
                Format::Csv => csv::write_field(&mut line, Some(name.as_bytes()), self, false),
                Format::Text | Format::Binary => {
                    text::write_field(&mut line, Some(name.as_bytes()), self)
                }
            }
        }
        line.push(b'\n');
        line
    }

    /// Appends one text-format DataRow as a line of text or CSV output; `columns` names its
    /// fields (for FORCE_QUOTE).
    pub fn line(&self, line: &mut Vec<u8>, row: &DataRow, columns: &[String]) {
        line.reserve(row.data.len() + 1);
        for (position, field) in fields(row).enumerate() {
            if position > 0 {
                line.push(self.delimiter);
            }
            match self.format {
                Format::Csv => {
                    let forced = columns
                        .get(position)
                        .is_some_and(|name| self.force_quote.contains(name));
                    csv::write_field(line, field, self, forced)
                }
                Format::Text | Format::Binary => text::write_field(line, field, self),
            }
        }
        line.push(b'\n');
    }

    /// Reads text or CSV input into text values for `columns`.
    pub fn decode_text(&self, data: &[u8], columns: &[String]) -> Result<TextRows, Error> {
        match self.format {
            Format::Text => text::decode(data, self, columns),
            Format::Csv => csv::decode(data, self, columns),
            Format::Binary => {
                Err(ExecutionError::Internal("binary COPY data read as text".into()).into())
            }
        }
    }
}

/// The default text format, as `COPY (SUBSCRIBE ...) TO STDOUT` writes it.
pub fn text_options() -> Options {
    Options {
        format: Format::Text,
        delimiter: b'\t',
        null: "\\N".into(),
        header: false,
        quote: b'"',
        escape: b'"',
        force_quote: ColumnSet::None,
        force_not_null: ColumnSet::None,
        force_null: ColumnSet::None,
    }
}

/// Rows of text or CSV input, by column, before they are cast to the table's types.
#[derive(Debug, Default)]
pub struct TextRows {
    /// One vector per column, one value per row; `None` is NULL.
    pub columns: Vec<Vec<Option<String>>>,
    /// The line of the input each row starts on, counting from 1 (a header line included).
    pub lines: Vec<usize>,
}

impl TextRows {
    fn new(column_count: usize) -> Self {
        Self {
            columns: vec![Vec::new(); column_count],
            lines: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The fields of a DataRow: each `None` for NULL, else its bytes.
fn fields(row: &DataRow) -> impl Iterator<Item = Option<&[u8]>> {
    let data = &row.data[..];
    let mut position = 0;
    (0..row.field_count).map_while(move |_| {
        let length = i32::from_be_bytes(data.get(position..position + 4)?.try_into().ok()?);
        position += 4;
        if length < 0 {
            return Some(None);
        }
        let end = (position + length as usize).min(data.len());
        let field = &data[position..end];
        position = end;
        Some(Some(field))
    })
}

/// A bad line of COPY input: 22P04 with where it is, as Postgres's CONTEXT says it.
fn bad_format(message: impl std::fmt::Display, line: usize) -> Error {
    ExecutionError::BadCopyFileFormat(format!("{message} (line {line})")).into()
}

fn one_byte(option: &str, character: char) -> Result<u8, Error> {
    if character.is_ascii() {
        Ok(character as u8)
    } else {
        Err(ExecutionError::InvalidParameterValue(format!(
            "COPY {option} must be a single one-byte character"
        ))
        .into())
    }
}

fn check_encoding(encoding: &str) -> Result<(), Error> {
    let normalized = encoding.to_lowercase().replace(['-', '_'], "");
    if matches!(normalized.as_str(), "utf8" | "unicode" | "sqlascii") {
        Ok(())
    } else {
        Err(PlanError::Unsupported(format!(
            "COPY encoding \"{encoding}\" is not supported: data is UTF8"
        ))
        .into())
    }
}
