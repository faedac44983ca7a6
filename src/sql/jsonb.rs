//! jsonb values: JSON text parsed into Postgres's canonical jsonb form (object keys sorted and
//! unique, numbers as `numeric` prints them, one space after `:` and `,`), which is what a jsonb
//! column holds, and the reads and edits the jsonb operators and functions make on it.

use std::cmp::Ordering;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, LargeStringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;

/// The Arrow type of jsonb (and json) values: their canonical text, in a string type of its own
/// so a value stays jsonb through expressions, views and checkpoints and is described to clients
/// as jsonb. Postgres's `json` keeps its input text as given; Tributary stores both as jsonb, as
/// CockroachDB does.
pub const JSONB: DataType = DataType::LargeUtf8;

/// Postgres refuses deeper nesting with "stack depth limit exceeded"; a fixed bound keeps a
/// hostile document from exhausting the stack of the thread that parses it.
const MAX_DEPTH: usize = 1000;

/// Below this much stack left, recursion continues on a new segment of `STACK_GROWTH` bytes.
const STACK_RED_ZONE: usize = 64 * 1024;
const STACK_GROWTH: usize = 1024 * 1024;

/// Postgres's numeric holds at most this many digits before the point.
const MAX_NUMBER_DIGITS: usize = 131_072;

/// Each value of a text (or jsonb) column as canonical jsonb text; NULLs stay NULL.
pub fn canonical_array(values: &dyn Array) -> Result<ArrayRef, CanonicalError> {
    let text = cast(values, &DataType::LargeUtf8)?;
    let text = text.as_string::<i64>();
    let mut builder = LargeStringBuilder::with_capacity(text.len(), text.value_data().len());
    for value in text.iter() {
        match value {
            Some(value) => builder.append_value(Jsonb::canonical(value)?),
            None => builder.append_null(),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// Why a column could not be made jsonb.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    #[error(transparent)]
    Jsonb(#[from] JsonbError),
    /// The column was not text.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// A jsonb value.
#[derive(Debug, Clone, PartialEq)]
pub enum Jsonb {
    Null,
    Bool(bool),
    /// A number as Postgres's numeric prints it (`1e2` is `100`, `1.50` stays `1.50`).
    Number(String),
    String(String),
    Array(Vec<Jsonb>),
    /// Keys in jsonb order (shorter first, then bytewise), each once: the last of duplicates
    /// wins, as in Postgres.
    Object(Vec<(String, Jsonb)>),
}

/// Why text is not a jsonb value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonbError {
    /// 22P02, as Postgres reports malformed JSON.
    #[error("invalid input syntax for type json: {0}")]
    Syntax(String),
    /// 22P05: `\u0000` cannot be stored in text.
    #[error("unsupported Unicode escape sequence: \\u0000 cannot be converted to text")]
    NullCharacter,
    /// 22003: a number beyond numeric's range.
    #[error("value overflows numeric format")]
    NumberOutOfRange,
    /// 54001: nested deeper than the parser allows.
    #[error("stack depth limit exceeded: jsonb nests at most {MAX_DEPTH} levels deep")]
    TooDeep,
}

impl Jsonb {
    /// Parses JSON text (RFC 8259, as Postgres's parser accepts it).
    pub fn parse(text: &str) -> Result<Jsonb, JsonbError> {
        let mut parser = Parser {
            text: text.as_bytes(),
            position: 0,
        };
        parser.skip_whitespace();
        let value = parser.value(0)?;
        parser.skip_whitespace();
        if parser.position < parser.text.len() {
            return Err(parser.unexpected());
        }
        Ok(value)
    }

    /// The canonical text of `text` as jsonb: what a jsonb column stores.
    pub fn canonical(text: &str) -> Result<String, JsonbError> {
        Ok(Self::parse(text)?.to_string())
    }

    /// What `jsonb_typeof` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Jsonb::Null => "null",
            Jsonb::Bool(_) => "boolean",
            Jsonb::Number(_) => "number",
            Jsonb::String(_) => "string",
            Jsonb::Array(_) => "array",
            Jsonb::Object(_) => "object",
        }
    }

    /// `->` with a text key: the field of an object.
    pub fn field(&self, key: &str) -> Option<&Jsonb> {
        match self {
            Jsonb::Object(fields) => fields
                .binary_search_by(|(name, _)| key_order(name, key))
                .ok()
                .map(|index| &fields[index].1),
            _ => None,
        }
    }

    /// `->` with an integer: the element of an array, counted from the end when negative.
    pub fn element(&self, index: i64) -> Option<&Jsonb> {
        match self {
            Jsonb::Array(elements) => {
                let length = elements.len() as i64;
                let index = if index < 0 { length + index } else { index };
                usize::try_from(index)
                    .ok()
                    .and_then(|index| elements.get(index))
            }
            _ => None,
        }
    }

    /// `#>`: the value at a path of keys and (for arrays) element numbers.
    pub fn at_path<'a>(&'a self, path: &[Option<&str>]) -> Option<&'a Jsonb> {
        let mut current = self;
        for step in path {
            let step = (*step)?;
            current = match current {
                Jsonb::Object(_) => current.field(step)?,
                Jsonb::Array(_) => current.element(step.trim().parse().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// `->>`: a string without its quotes, JSON null as SQL NULL, anything else as jsonb text.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Jsonb::Null => None,
            Jsonb::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    /// `@>`: whether `self` contains `other`, by Postgres's rules: an object contains the
    /// fields it has with contained values; an array contains an array whose every element it
    /// contains; a top-level array contains a scalar it holds.
    pub fn contains(&self, other: &Jsonb) -> bool {
        match (self, other) {
            (Jsonb::Array(_), scalar) if scalar.is_scalar() => {
                self.contains_nested(&Jsonb::Array(vec![scalar.clone()]))
            }
            _ => self.contains_nested(other),
        }
    }

    fn contains_nested(&self, other: &Jsonb) -> bool {
        match (self, other) {
            (Jsonb::Object(_), Jsonb::Object(wanted)) => wanted.iter().all(|(key, value)| {
                self.field(key)
                    .is_some_and(|held| held.contains_nested(value))
            }),
            (Jsonb::Array(held), Jsonb::Array(wanted)) => wanted
                .iter()
                .all(|value| held.iter().any(|element| element.contains_nested(value))),
            (Jsonb::Number(held), Jsonb::Number(wanted)) => {
                compare_numbers(held, wanted) == Ordering::Equal
            }
            (held, wanted) if held.is_scalar() && wanted.is_scalar() => held == wanted,
            _ => false,
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Jsonb::Array(_) | Jsonb::Object(_))
    }

    /// `?`: whether a string is a key of the object or a string element of the array.
    pub fn has_key(&self, key: &str) -> bool {
        match self {
            Jsonb::Object(_) => self.field(key).is_some(),
            Jsonb::Array(elements) => elements
                .iter()
                .any(|element| matches!(element, Jsonb::String(text) if text == key)),
            Jsonb::String(text) => text == key,
            _ => false,
        }
    }

    /// `||`: two objects merge (the right one's fields win); anything else concatenates as
    /// arrays, a non-array counting as an array of itself.
    pub fn concat(self, other: Jsonb) -> Jsonb {
        match (self, other) {
            (Jsonb::Object(mut fields), Jsonb::Object(more)) => {
                for (key, value) in more {
                    insert_field(&mut fields, key, value);
                }
                Jsonb::Object(fields)
            }
            (left, right) => {
                let mut elements = left.into_elements();
                elements.extend(right.into_elements());
                Jsonb::Array(elements)
            }
        }
    }

    fn into_elements(self) -> Vec<Jsonb> {
        match self {
            Jsonb::Array(elements) => elements,
            other => vec![other],
        }
    }

    /// `- text`: without the object's field, or the array's string elements, of that name.
    pub fn without_key(self, key: &str) -> Result<Jsonb, &'static str> {
        match self {
            Jsonb::Object(mut fields) => {
                fields.retain(|(name, _)| name != key);
                Ok(Jsonb::Object(fields))
            }
            Jsonb::Array(mut elements) => {
                elements.retain(|element| !matches!(element, Jsonb::String(text) if text == key));
                Ok(Jsonb::Array(elements))
            }
            _ => Err("cannot delete from scalar"),
        }
    }

    /// `- integer`: without the array's element at that place (from the end when negative).
    pub fn without_element(self, index: i64) -> Result<Jsonb, &'static str> {
        match self {
            Jsonb::Array(mut elements) => {
                let length = elements.len() as i64;
                let index = if index < 0 { length + index } else { index };
                if (0..length).contains(&index) {
                    elements.remove(index as usize);
                }
                Ok(Jsonb::Array(elements))
            }
            Jsonb::Object(_) => Err("cannot delete from object using integer index"),
            _ => Err("cannot delete from scalar"),
        }
    }

    /// A JSON string holding `text`.
    pub fn string(text: &str) -> Jsonb {
        Jsonb::String(text.to_string())
    }

    /// An object of `fields` in any order; the last of equal keys wins.
    pub fn object(pairs: impl IntoIterator<Item = (String, Jsonb)>) -> Jsonb {
        let mut fields = Vec::new();
        for (key, value) in pairs {
            insert_field(&mut fields, key, value);
        }
        Jsonb::Object(fields)
    }

    /// A number from its text in SQL (`12`, `-0.50`, `1e3`), or `None` when it is not one JSON
    /// can hold (NaN, Infinity).
    pub fn number(text: &str) -> Option<Jsonb> {
        let mut parser = Parser {
            text: text.as_bytes(),
            position: 0,
        };
        match parser.number() {
            Ok(value) if parser.position == text.len() => Some(value),
            _ => None,
        }
    }

    /// Postgres's `jsonb_pretty`: four spaces per level, one field or element per line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, level: usize) {
        let indent = |out: &mut String, level: usize| {
            for _ in 0..level {
                out.push_str("    ");
            }
        };
        match self {
            Jsonb::Array(elements) if !elements.is_empty() => {
                out.push_str("[\n");
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        out.push_str(",\n");
                    }
                    indent(out, level + 1);
                    element.write_pretty(out, level + 1);
                }
                out.push('\n');
                indent(out, level);
                out.push(']');
            }
            Jsonb::Object(fields) if !fields.is_empty() => {
                out.push_str("{\n");
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push_str(",\n");
                    }
                    indent(out, level + 1);
                    write_string(out, key);
                    out.push_str(": ");
                    value.write_pretty(out, level + 1);
                }
                out.push('\n');
                indent(out, level);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    fn write(&self, out: &mut String) {
        stacker::maybe_grow(STACK_RED_ZONE, STACK_GROWTH, || self.write_nested(out))
    }

    fn write_nested(&self, out: &mut String) {
        match self {
            Jsonb::Null => out.push_str("null"),
            Jsonb::Bool(true) => out.push_str("true"),
            Jsonb::Bool(false) => out.push_str("false"),
            Jsonb::Number(number) => out.push_str(number),
            Jsonb::String(text) => write_string(out, text),
            Jsonb::Array(elements) => {
                out.push('[');
                for (index, element) in elements.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    element.write(out);
                }
                out.push(']');
            }
            Jsonb::Object(fields) => {
                out.push('{');
                for (index, (key, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push_str(", ");
                    }
                    write_string(out, key);
                    out.push_str(": ");
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl std::fmt::Display for Jsonb {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        formatter.write_str(&out)
    }
}

/// jsonb's key order: shorter keys first, equal lengths bytewise.
fn key_order(left: &str, right: &str) -> Ordering {
    left.len()
        .cmp(&right.len())
        .then_with(|| left.as_bytes().cmp(right.as_bytes()))
}

fn insert_field(fields: &mut Vec<(String, Jsonb)>, key: String, value: Jsonb) {
    match fields.binary_search_by(|(name, _)| key_order(name, &key)) {
        Ok(index) => fields[index].1 = value,
        Err(index) => fields.insert(index, (key, value)),
    }
}

/// Compares two canonical numbers by value (`1.0` equals `1`).
fn compare_numbers(left: &str, right: &str) -> Ordering {
    let (left_negative, left) = split_sign(left);
    let (right_negative, right) = split_sign(right);
    let magnitude = || {
        let (left_integer, left_fraction) = left.split_once('.').unwrap_or((left, ""));
        let (right_integer, right_fraction) = right.split_once('.').unwrap_or((right, ""));
        left_integer
            .len()
            .cmp(&right_integer.len())
            .then_with(|| left_integer.cmp(right_integer))
            .then_with(|| {
                left_fraction
                    .trim_end_matches('0')
                    .cmp(right_fraction.trim_end_matches('0'))
            })
    };
    match (left_negative, right_negative) {
        (false, false) => magnitude(),
        (true, true) => magnitude().reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

fn split_sign(number: &str) -> (bool, &str) {
    match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    }
}

/// A JSON string literal as Postgres writes it: `"` and `\` escaped, control characters as
/// their short escapes or `\u00xx`, everything else as it is.
pub fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", control as u32));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    text: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.position) {
            self.position += 1;
        }
    }

    /// The error for the token at the current place, worded as Postgres words it.
    fn unexpected(&self) -> JsonbError {
        if self.position >= self.text.len() {
            return JsonbError::Syntax("The input string ended unexpectedly.".into());
        }
        let rest = &self.text[self.position..];
        let length = rest
            .iter()
            .position(|byte| {
                matches!(
                    byte,
                    b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'[' | b']' | b'{' | b'}'
                )
            })
            .unwrap_or(rest.len())
            .max(1);
        let token = String::from_utf8_lossy(&rest[..length.min(rest.len())]);
        JsonbError::Syntax(format!("Token \"{token}\" is invalid."))
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonbError> {
        if self.text.get(self.position) == Some(&byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Jsonb, JsonbError> {
        if depth > MAX_DEPTH {
            return Err(JsonbError::TooDeep);
        }
        // Threads with small stacks (a test's, a pool's) parse deep documents too.
        stacker::maybe_grow(STACK_RED_ZONE, STACK_GROWTH, || self.nested_value(depth))
    }

    fn nested_value(&mut self, depth: usize) -> Result<Jsonb, JsonbError> {
        match self.text.get(self.position) {
            Some(b'{') => {
                self.position += 1;
                let mut fields = Vec::new();
                self.skip_whitespace();
                if self.text.get(self.position) == Some(&b'}') {
                    self.position += 1;
                    return Ok(Jsonb::Object(fields));
                }
                loop {
                    self.skip_whitespace();
                    if self.text.get(self.position) != Some(&b'"') {
                        return Err(self.unexpected());
                    }
                    let key = self.string()?;
                    self.skip_whitespace();
                    self.expect(b':')?;
                    self.skip_whitespace();
                    let value = self.value(depth + 1)?;
                    insert_field(&mut fields, key, value);
                    self.skip_whitespace();
                    match self.text.get(self.position) {
                        Some(b',') => self.position += 1,
                        Some(b'}') => {
                            self.position += 1;
                            return Ok(Jsonb::Object(fields));
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            }
            Some(b'[') => {
                self.position += 1;
                let mut elements = Vec::new();
                self.skip_whitespace();
                if self.text.get(self.position) == Some(&b']') {
                    self.position += 1;
                    return Ok(Jsonb::Array(elements));
                }
                loop {
                    self.skip_whitespace();
                    elements.push(self.value(depth + 1)?);
                    self.skip_whitespace();
                    match self.text.get(self.position) {
                        Some(b',') => self.position += 1,
                        Some(b']') => {
                            self.position += 1;
                            return Ok(Jsonb::Array(elements));
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            }
            Some(b'"') => Ok(Jsonb::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, value) in [
                    (&b"true"[..], Jsonb::Bool(true)),
                    (b"false", Jsonb::Bool(false)),
                    (b"null", Jsonb::Null),
                ] {
                    let end = self.position + word.len();
                    if self.text.get(self.position..end) == Some(word)
                        && !self
                            .text
                            .get(end)
                            .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
                    {
                        self.position = end;
                        return Ok(value);
                    }
                }
                Err(self.unexpected())
            }
            None => Err(self.unexpected()),
        }
    }

    fn string(&mut self) -> Result<String, JsonbError> {
        self.expect(b'"')?;
        let mut bytes = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.position) else {
                return Err(JsonbError::Syntax(
                    "The input string ended unexpectedly.".into(),
                ));
            };
            self.position += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(&escape) = self.text.get(self.position) else {
                        return Err(JsonbError::Syntax(
                            "The input string ended unexpectedly.".into(),
                        ));
                    };
                    self.position += 1;
                    match escape {
                        b'"' | b'\\' | b'/' => bytes.push(escape),
                        b'b' => bytes.push(8),
                        b'f' => bytes.push(12),
                        b'n' => bytes.push(b'\n'),
                        b'r' => bytes.push(b'\r'),
                        b't' => bytes.push(b'\t'),
                        b'u' => {
                            let character = self.unicode_escape()?;
                            let mut buffer = [0; 4];
                            bytes.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
                        }
                        other => {
                            return Err(JsonbError::Syntax(format!(
                                "Escape sequence \"\\{}\" is invalid.",
                                char::from(other)
                            )));
                        }
                    }
                }
                control if control < 0x20 => {
                    return Err(JsonbError::Syntax(
                        "Character with value 0x".to_string()
                            + &format!("{control:02x} must be escaped."),
                    ));
                }
                other => bytes.push(other),
            }
        }
        // The input was a &str and escapes add whole characters: the bytes are UTF-8.
        String::from_utf8(bytes).map_err(|_| JsonbError::Syntax("invalid UTF-8 in string".into()))
    }

    fn hex4(&mut self) -> Result<u32, JsonbError> {
        let digits = self
            .text
            .get(self.position..self.position + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .ok_or_else(|| {
                JsonbError::Syntax("\"\\u\" must be followed by four hexadecimal digits.".into())
            })?;
        self.position += 4;
        u32::from_str_radix(digits, 16).map_err(|_| JsonbError::Syntax("invalid \\u escape".into()))
    }

    fn unicode_escape(&mut self) -> Result<char, JsonbError> {
        let first = self.hex4()?;
        if first == 0 {
            return Err(JsonbError::NullCharacter);
        }
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.text.get(self.position..self.position + 2) != Some(b"\\u") {
                return Err(JsonbError::Syntax(
                    "Unicode high surrogate must not follow a high surrogate.".into(),
                ));
            }
            self.position += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(JsonbError::Syntax(
                    "Unicode low surrogate must follow a high surrogate.".into(),
                ));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else if (0xDC00..0xE000).contains(&first) {
            return Err(JsonbError::Syntax(
                "Unicode low surrogate must follow a high surrogate.".into(),
            ));
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| JsonbError::Syntax("invalid \\u escape".into()))
    }

    /// A JSON number, printed as numeric prints the same value: the exponent folded into the
    /// digits, as many decimals as the input had after moving the point.
    fn number(&mut self) -> Result<Jsonb, JsonbError> {
        let start = self.position;
        let negative = self.text.get(self.position) == Some(&b'-');
        if negative {
            self.position += 1;
        }
        let integer = self.digits();
        if integer.is_empty() || (integer.len() > 1 && integer.starts_with('0')) {
            self.position = start;
            return Err(self.unexpected());
        }
        let mut fraction = String::new();
        if self.text.get(self.position) == Some(&b'.') {
            self.position += 1;
            fraction = self.digits();
            if fraction.is_empty() {
                self.position = start;
                return Err(self.unexpected());
            }
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.text.get(self.position) {
            self.position += 1;
            let exponent_negative = match self.text.get(self.position) {
                Some(b'-') => {
                    self.position += 1;
                    true
                }
                Some(b'+') => {
                    self.position += 1;
                    false
                }
                _ => false,
            };
            let digits = self.digits();
            if digits.is_empty() {
                self.position = start;
                return Err(self.unexpected());
            }
            let magnitude: i64 = digits
                .parse()
                .ok()
                .filter(|magnitude| *magnitude <= MAX_NUMBER_DIGITS as i64)
                .ok_or(JsonbError::NumberOutOfRange)?;
            exponent = if exponent_negative {
                -magnitude
            } else {
                magnitude
            };
        }
        if let Some(byte) = self.text.get(self.position)
            && (byte.is_ascii_alphanumeric() || *byte == b'.' || *byte == b'_')
        {
            self.position = start;
            return Err(self.unexpected());
        }
        let scale = (fraction.len() as i64 - exponent).max(0) as usize;
        let digits = integer + &fraction;
        // Where the point falls in `digits`.
        let point = digits.len() as i64 - fraction.len() as i64 + exponent;
        let (whole, decimals) = if point <= 0 {
            (String::from("0"), "0".repeat((-point) as usize) + &digits)
        } else if point as usize >= digits.len() {
            (
                digits.clone() + &"0".repeat(point as usize - digits.len()),
                String::new(),
            )
        } else {
            let (whole, decimals) = digits.split_at(point as usize);
            (whole.to_string(), decimals.to_string())
        };
        let whole = whole.trim_start_matches('0');
        let whole = if whole.is_empty() { "0" } else { whole };
        if whole.len() > MAX_NUMBER_DIGITS {
            return Err(JsonbError::NumberOutOfRange);
        }
        let decimals = &decimals[..scale.min(decimals.len())];
        let is_zero = whole == "0" && decimals.bytes().all(|byte| byte == b'0');
        let mut number = String::new();
        if negative && !is_zero {
            number.push('-');
        }
        number.push_str(whole);
        if !decimals.is_empty() {
            number.push('.');
            number.push_str(decimals);
        }
        Ok(Jsonb::Number(number))
    }

    fn digits(&mut self) -> String {
        let start = self.position;
        while self.text.get(self.position).is_some_and(u8::is_ascii_digit) {
            self.position += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.position]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        match Jsonb::canonical(text) {
            Ok(canonical) => canonical,
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn canonical_text_is_what_postgres_prints() {
        assert_eq!(
            canonical(r#" {"b":1,"a" : [1,2,{"aa":null,"c":true}], "b": "x"} "#),
            r#"{"a": [1, 2, {"c": true, "aa": null}], "b": "x"}"#
        );
        assert_eq!(canonical("1e2"), "100");
        assert_eq!(canonical("1.50e1"), "15.0");
        assert_eq!(canonical("1e-2"), "0.01");
        assert_eq!(canonical("-0.0"), "0.0");
        assert_eq!(canonical("-12.5E-3"), "-0.0125");
        assert_eq!(canonical("0.00"), "0.00");
        assert_eq!(canonical(r#""a\u00e9\n\u0001\/""#), "\"aé\\n\\u0001/\"");
        assert_eq!(canonical(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(canonical("[]"), "[]");
        assert_eq!(canonical("{}"), "{}");
    }

    #[test]
    fn malformed_text_is_refused_as_postgres_refuses_it() {
        assert_eq!(
            canonical("{\"a\":1,}"),
            "error: invalid input syntax for type json: Token \"}\" is invalid."
        );
        assert_eq!(
            canonical("01"),
            "error: invalid input syntax for type json: Token \"01\" is invalid."
        );
        assert!(canonical("[1").contains("ended unexpectedly"));
        assert!(canonical("nul").contains("Token \"nul\" is invalid"));
        assert!(canonical("\"\\u0000\"").contains("\\u0000"));
        assert!(canonical(&"[".repeat(5000)).contains("stack depth"));
        assert!(canonical("1e999999999").contains("overflows"));
    }

    #[test]
    fn containment_follows_postgres() {
        let value = |text| Jsonb::parse(text).unwrap_or(Jsonb::Null);
        let document = value(r#"{"a": 1, "b": [1, 2, {"c": 3}], "d": {"e": "f"}}"#);
        assert!(document.contains(&value(r#"{"a": 1.0}"#)));
        assert!(document.contains(&value(r#"{"b": [2, {}]}"#)));
        assert!(document.contains(&value(r#"{"d": {}}"#)));
        assert!(!document.contains(&value(r#"{"d": "e"}"#)));
        assert!(value("[1, 2]").contains(&value("1")));
        assert!(!value("1").contains(&value("[1]")));
        assert!(!value("[[1]]").contains(&value("1")));
        assert!(value("[[1, 2]]").contains(&value("[[1]]")));
    }

    #[test]
    fn paths_and_edits() {
        let value = |text| Jsonb::parse(text).unwrap_or(Jsonb::Null);
        let document = value(r#"{"a": [10, 20, {"b": "x"}]}"#);
        assert_eq!(
            document.at_path(&[Some("a"), Some("-1"), Some("b")]),
            Some(&Jsonb::string("x"))
        );
        assert_eq!(document.at_path(&[Some("a"), Some("x")]), None);
        assert_eq!(
            value(r#"{"a": 1}"#)
                .concat(value(r#"{"b": 2, "a": 3}"#))
                .to_string(),
            r#"{"a": 3, "b": 2}"#
        );
        assert_eq!(value("[1]").concat(value("2")).to_string(), "[1, 2]");
        assert_eq!(
            value(r#"["a", "b", 1]"#)
                .without_key("a")
                .map(|v| v.to_string()),
            Ok(r#"["b", 1]"#.to_string())
        );
        assert_eq!(
            value("[1, 2, 3]")
                .without_element(-1)
                .map(|v| v.to_string()),
            Ok("[1, 2]".to_string())
        );
        assert!(value("3").without_key("a").is_err());
        assert_eq!(
            value(r#"{"a": [1, {}]}"#).pretty(),
            "{\n    \"a\": [\n        1,\n        {}\n    ]\n}"
        );
    }
}
