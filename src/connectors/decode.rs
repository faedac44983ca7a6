//! Decoding Kafka messages into Arrow batches: JSON and CSV through arrow-json and arrow-csv's
//! batch decoders, TEXT and BYTES directly. A malformed message is refused on its own and the
//! rest of its batch is kept.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Fields, SchemaRef};
use datafusion::arrow::error::ArrowError;

use super::status::{KEPT_PAYLOAD_BYTES, SourceErrorRecord};
use crate::sql::streaming::{Format, Include, IncludeKind};

/// Messages polled since the last batch, their payloads copied into one buffer so the batch
/// decoders run over contiguous bytes.
#[derive(Debug, Default)]
pub struct PendingMessages {
    payloads: Vec<u8>,
    payload_ranges: Vec<Option<Range<usize>>>,
    keys: Vec<u8>,
    key_ranges: Vec<Option<Range<usize>>>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    /// Milliseconds since the Unix epoch, as Kafka stamps messages.
    timestamps: Vec<Option<i64>>,
    /// Only filled when the source includes headers: the headers as a JSON object.
    headers: Vec<Option<String>>,
}

/// One polled message, borrowed from the consumer until it is copied in.
pub struct Message<'a> {
    pub payload: Option<&'a [u8]>,
    pub key: Option<&'a [u8]>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub headers: Option<String>,
}

impl PendingMessages {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn payload_bytes(&self) -> usize {
        self.payloads.len()
    }

    pub fn push(&mut self, message: Message<'_>) {
        self.payload_ranges
            .push(append(&mut self.payloads, message.payload));
        self.key_ranges.push(append(&mut self.keys, message.key));
        self.partitions.push(message.partition);
        self.offsets.push(message.offset);
        self.timestamps.push(message.timestamp);
        self.headers.push(message.headers);
    }

    pub fn payload(&self, index: usize) -> Option<&[u8]> {
        self.payload_ranges[index]
            .clone()
            .map(|range| &self.payloads[range])
    }

    pub fn key(&self, index: usize) -> Option<&[u8]> {
        self.key_ranges[index]
            .clone()
            .map(|range| &self.keys[range])
    }

    /// Where each message came from, to find a refused one by its partition and offset.
    pub fn positions(&self) -> HashMap<(i32, i64), usize> {
        (0..self.len())
            .map(|index| ((self.partitions[index], self.offsets[index]), index))
            .collect()
    }

    pub fn partition_and_offset(&self, index: usize) -> (i32, i64) {
        (self.partitions[index], self.offsets[index])
    }

    pub fn refuse(&self, index: usize, reason: impl Into<String>) -> SourceErrorRecord {
        let payload = self.payload(index).unwrap_or_default();
        let kept = &payload[..payload.len().min(KEPT_PAYLOAD_BYTES)];
        SourceErrorRecord {
            partition: self.partitions[index],
            offset: self.offsets[index],
            reason: reason.into(),
            payload: String::from_utf8_lossy(kept).into_owned(),
        }
    }
}

fn append(buffer: &mut Vec<u8>, bytes: Option<&[u8]>) -> Option<Range<usize>> {
    let bytes = bytes?;
    let start = buffer.len();
    buffer.extend_from_slice(bytes);
    Some(start..buffer.len())
}

/// From this many messages on, a batch is decoded in slices side by side on the workers' pool;
/// a smaller one on the calling thread, where handing it over would cost more.
const PARALLEL_DECODE_MESSAGES: usize = 4096;

/// Decodes `messages` in consecutive slices, one per thread of the workers' pool when the batch
/// is large, on this thread otherwise; the slices in message order.
pub fn decode_in_slices(
    decoder: &SourceDecoder,
    messages: &PendingMessages,
) -> std::result::Result<Vec<Decoded>, ArrowError> {
    use rayon::iter::{IntoParallelIterator, ParallelIterator};
    let count = messages.len();
    if count < PARALLEL_DECODE_MESSAGES {
        return Ok(vec![decoder.decode(messages, 0..count)?]);
    }
    let slices = rayon::current_num_threads().max(1);
    (0..slices)
        .into_par_iter()
        .map(|slice| {
            decoder.decode(
                messages,
                count * slice / slices..count * (slice + 1) / slices,
            )
        })
        .collect()
}

/// Decodes pending messages' payloads into Arrow columns, and adds the INCLUDE columns.
#[derive(Debug)]
pub struct SourceDecoder {
    format: Format,
    payload_schema: SchemaRef,
    include: Vec<Include>,
    /// The relation's stored schema: the row columns, then the INCLUDE columns.
    schema: SchemaRef,
    /// Whether a message without a value is a deletion (UPSERT, DEBEZIUM) rather than an error.
    tombstones: bool,
    /// JSON only: the payload's integer fields (see [`integer_fields`]).
    integer_fields: HashMap<Vec<u8>, &'static str>,
    /// JSON only: the places of the payload's jsonb columns, which take a field's value as it
    /// came (an object, an array) and are read here rather than by arrow-json.
    jsonb_fields: Vec<usize>,
    /// What arrow-json decodes: the payload schema without the jsonb columns.
    decoded_schema: SchemaRef,
}

/// A batch's payloads decoded, and what became of each message.
pub struct Decoded {
    /// One row per kept message, in the payload schema.
    pub payload: RecordBatch,
    /// The messages (indexes into the batch) the payload rows came from, in order.
    pub kept: Vec<usize>,
    /// Messages without a value, where that means a deletion.
    pub tombstones: Vec<usize>,
    pub refused: Vec<SourceErrorRecord>,
}

impl SourceDecoder {
    pub fn new(
        format: Format,
        payload_schema: SchemaRef,
        include: Vec<Include>,
        schema: SchemaRef,
        tombstones: bool,
    ) -> Self {
        let mut integer_fields = HashMap::new();
        if matches!(format, Format::Json) {
            collect_integer_fields(payload_schema.fields(), &[], &mut integer_fields);
        }
        let jsonb_fields: Vec<usize> = match format {
            Format::Json => payload_schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, field)| *field.data_type() == crate::sql::jsonb::JSONB)
                .map(|(place, _)| place)
                .collect(),
            _ => Vec::new(),
        };
        let decoded_schema = if jsonb_fields.is_empty() {
            Arc::clone(&payload_schema)
        } else {
            Arc::new(datafusion::arrow::datatypes::Schema::new(
                payload_schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(place, _)| !jsonb_fields.contains(place))
                    .map(|(_, field)| Arc::clone(field))
                    .collect::<Fields>(),
            ))
        };
        Self {
            format,
            payload_schema,
            include,
            schema,
            tombstones,
            integer_fields,
            jsonb_fields,
            decoded_schema,
        }
    }

    /// Decodes the messages at `range` (indexes into `messages`, which the result refers to).
    pub fn decode(
        &self,
        messages: &PendingMessages,
        range: Range<usize>,
    ) -> Result<Decoded, ArrowError> {
        let mut refused = Vec::new();
        let mut tombstones = Vec::new();
        // Messages that can be refused without decoding: no payload, or (for CSV) the header.
        let mut candidates = Vec::with_capacity(range.len());
        for index in range {
            match messages.payload(index) {
                None if self.tombstones => tombstones.push(index),
                None => refused.push(messages.refuse(index, "message has no value")),
                Some(payload) if self.is_header(payload) => {}
                Some(payload)
                    if matches!(self.format, Format::Json | Format::Csv { .. })
                        && payload.iter().all(u8::is_ascii_whitespace) =>
                {
                    refused.push(messages.refuse(index, "message value is empty"))
                }
                Some(payload)
                    if !self.integer_fields.is_empty() && may_hold_a_fraction(payload) =>
                {
                    match fractional_integer(payload, &self.integer_fields) {
                        Some(reason) => refused.push(messages.refuse(index, reason)),
                        None => candidates.push(index),
                    }
                }
                Some(_) => candidates.push(index),
            }
        }
        let mut jsonb_values = HashMap::new();
        if !self.jsonb_fields.is_empty() {
            candidates.retain(|&index| {
                match self.jsonb_columns(messages.payload(index).unwrap_or_default()) {
                    Ok(values) => {
                        jsonb_values.insert(index, values);
                        true
                    }
                    Err(reason) => {
                        refused.push(messages.refuse(index, reason));
                        false
                    }
                }
            });
        }
        let (payload, kept) = match self.decode_all(messages, &candidates) {
            Ok(rows) => (rows, candidates),
            // Something in the batch is malformed: find it by decoding message by message.
            Err(_) => self.decode_one_by_one(messages, &candidates, &mut refused)?,
        };
        let payload = if self.jsonb_fields.is_empty() {
            payload
        } else {
            self.with_jsonb_columns(payload, &kept, &jsonb_values)?
        };
        Ok(Decoded {
            payload,
            kept,
            tombstones,
            refused,
        })
    }

    /// Rows of the relation: `columns` (one row per message in `indexes`) and the INCLUDE
    /// columns of those messages.
    pub fn with_includes(
        &self,
        mut columns: Vec<ArrayRef>,
        messages: &PendingMessages,
        indexes: &[usize],
    ) -> Result<RecordBatch, ArrowError> {
        for include in &self.include {
            columns.push(self.include_column(include.kind, messages, indexes));
        }
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }

    /// The values of the jsonb columns in one JSON message, as canonical jsonb text; a field
    /// that is missing or JSON null is NULL, as for columns of other types.
    fn jsonb_columns(&self, payload: &[u8]) -> Result<Vec<Option<String>>, String> {
        let text = std::str::from_utf8(payload)
            .map_err(|error| format!("message is not valid UTF-8: {error}"))?;
        let document = crate::sql::jsonb::Jsonb::parse(text).map_err(|error| error.to_string())?;
        Ok(self
            .jsonb_fields
            .iter()
            .map(|&place| {
                document
                    .field(self.payload_schema.field(place).name())
                    .filter(|value| **value != crate::sql::jsonb::Jsonb::Null)
                    .map(ToString::to_string)
            })
            .collect())
    }

    /// The payload rows with the jsonb columns put back in their places.
    fn with_jsonb_columns(
        &self,
        decoded: RecordBatch,
        kept: &[usize],
        jsonb_values: &HashMap<usize, Vec<Option<String>>>,
    ) -> Result<RecordBatch, ArrowError> {
        let mut decoded_columns = decoded.columns().iter();
        let mut columns = Vec::with_capacity(self.payload_schema.fields().len());
        for place in 0..self.payload_schema.fields().len() {
            match self.jsonb_fields.iter().position(|&jsonb| jsonb == place) {
                Some(which) => {
                    let values = kept.iter().map(|index| {
                        jsonb_values
                            .get(index)
                            .and_then(|values| values[which].as_deref())
                    });
                    columns.push(Arc::new(values.collect::<LargeStringArray>()) as ArrayRef);
                }
                None => match decoded_columns.next() {
                    Some(column) => columns.push(Arc::clone(column)),
                    None => {
                        return Err(ArrowError::SchemaError(
                            "decoded payload lacks a column".into(),
                        ));
                    }
                },
            }
        }
        RecordBatch::try_new(Arc::clone(&self.payload_schema), columns)
    }

    fn is_header(&self, payload: &[u8]) -> bool {
        let Format::Csv {
            header: true,
            delimiter,
        } = self.format
        else {
            return false;
        };
        let names = self
            .payload_schema
            .fields()
            .iter()
            .map(|field| field.name().as_str())
            .collect::<Vec<_>>()
            .join(&char::from(delimiter).to_string());
        String::from_utf8_lossy(payload)
            .trim()
            .eq_ignore_ascii_case(&names)
    }

    /// The fast path: every candidate through one decoder. Fails if any message is malformed or
    /// does not hold exactly one row.
    fn decode_all(
        &self,
        messages: &PendingMessages,
        indexes: &[usize],
    ) -> Result<RecordBatch, ArrowError> {
        match &self.format {
            Format::Json => {
                let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(&self.decoded_schema))
                    .with_batch_size(indexes.len().max(1))
                    .build_decoder()?;
                for &index in indexes {
                    let payload = messages.payload(index).unwrap_or_default();
                    let before = decoder.len();
                    let consumed = decoder.decode(payload)?;
                    if consumed != payload.len()
                        || decoder.has_partial_record()
                        || decoder.len() != before + 1
                    {
                        return Err(ArrowError::JsonError(
                            "a message must hold exactly one JSON object".into(),
                        ));
                    }
                }
                Ok(decoder
                    .flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.decoded_schema))))
            }
            Format::Csv { delimiter, .. } => {
                let mut decoder = arrow_csv::ReaderBuilder::new(Arc::clone(&self.payload_schema))
                    .with_header(false)
                    .with_delimiter(*delimiter)
                    .with_batch_size(indexes.len().max(1))
                    .build_decoder();
                for &index in indexes {
                    let payload = messages.payload(index).unwrap_or_default();
                    let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
                    let before = decoder.capacity();
                    let consumed = decoder.decode(payload)? + decoder.decode(b"\n")?;
                    if consumed != payload.len() + 1 || decoder.capacity() + 1 != before {
                        return Err(ArrowError::CsvError(
                            "a message must hold exactly one CSV record".into(),
                        ));
                    }
                }
                Ok(decoder
                    .flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.payload_schema))))
            }
            Format::Text => {
                let mut builder = StringBuilder::new();
                for &index in indexes {
                    let payload = messages.payload(index).unwrap_or_default();
                    let text = std::str::from_utf8(payload).map_err(|error| {
                        ArrowError::ParseError(format!("message is not valid UTF-8: {error}"))
                    })?;
                    builder.append_value(text);
                }
                self.single_column(Arc::new(builder.finish()))
            }
            Format::Bytes => {
                let mut builder = BinaryBuilder::new();
                for &index in indexes {
                    builder.append_value(messages.payload(index).unwrap_or_default());
                }
                self.single_column(Arc::new(builder.finish()))
            }
        }
    }

    fn single_column(&self, column: ArrayRef) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(Arc::clone(&self.payload_schema), vec![column])
    }

    /// The slow path, taken only for a batch with a malformed message: each message alone, so
    /// each failure is attributed to its message.
    fn decode_one_by_one(
        &self,
        messages: &PendingMessages,
        candidates: &[usize],
        refused: &mut Vec<SourceErrorRecord>,
    ) -> Result<(RecordBatch, Vec<usize>), ArrowError> {
        let mut batches = Vec::new();
        let mut kept = Vec::new();
        for &index in candidates {
            match self.decode_all(messages, &[index]) {
                Ok(batch) if batch.num_rows() == 1 => {
                    batches.push(batch);
                    kept.push(index);
                }
                Ok(_) => refused.push(messages.refuse(index, "message holds no row")),
                Err(error) => refused.push(messages.refuse(index, describe(&error))),
            }
        }
        let rows = concat_batches(&self.decoded_schema, &batches)?;
        Ok((rows, kept))
    }

    fn include_column(
        &self,
        kind: IncludeKind,
        messages: &PendingMessages,
        kept: &[usize],
    ) -> ArrayRef {
        match kind {
            IncludeKind::Partition => Arc::new(Int32Array::from_iter_values(
                kept.iter().map(|&index| messages.partitions[index]),
            )),
            IncludeKind::Offset => Arc::new(Int64Array::from_iter_values(
                kept.iter().map(|&index| messages.offsets[index]),
            )),
            IncludeKind::Timestamp => Arc::new(TimestampMicrosecondArray::from_iter(
                kept.iter()
                    .map(|&index| messages.timestamps[index].map(|ms| ms * 1000)),
            )),
            IncludeKind::Headers => {
                let mut builder = StringBuilder::new();
                for &index in kept {
                    builder.append_option(messages.headers[index].as_deref());
                }
                Arc::new(builder.finish())
            }
            IncludeKind::Key => {
                if key_type(&self.format) == DataType::Binary {
                    let mut builder = BinaryBuilder::new();
                    for &index in kept {
                        builder.append_option(messages.key(index));
                    }
                    Arc::new(builder.finish())
                } else {
                    let mut builder = StringBuilder::new();
                    for &index in kept {
                        builder.append_option(
                            messages.key(index).map(|key| String::from_utf8_lossy(key)),
                        );
                    }
                    Arc::new(builder.finish())
                }
            }
        }
    }
}

/// The type of an INCLUDE KEY column: bytes for a BYTES source, text otherwise.
pub fn key_type(format: &Format) -> DataType {
    match format {
        Format::Bytes => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// The type of each INCLUDE column.
pub fn include_type(kind: IncludeKind, format: &Format) -> DataType {
    match kind {
        IncludeKind::Key => key_type(format),
        IncludeKind::Partition => DataType::Int32,
        IncludeKind::Offset => DataType::Int64,
        IncludeKind::Timestamp => {
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
        }
        IncludeKind::Headers => DataType::Utf8,
    }
}

/// The integer fields among `fields` (and the fields of their structs), by path: the names
/// from the top joined by NUL bytes. The value is Postgres's name of the type.
fn collect_integer_fields(
    fields: &Fields,
    prefix: &[u8],
    found: &mut HashMap<Vec<u8>, &'static str>,
) {
    for field in fields {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(0);
        }
        path.extend_from_slice(field.name().as_bytes());
        let type_name = match field.data_type() {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
            DataType::Int32 | DataType::UInt16 => "integer",
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
            DataType::Struct(children) => {
                collect_integer_fields(children, &path, found);
                continue;
            }
            _ => continue,
        };
        found.insert(path, type_name);
    }
}

/// Whether a JSON message may hold a number with a fraction: it has a decimal point or a
/// negative exponent somewhere. Most messages of integer-only payloads have neither, and
/// memchr-speed tests for `.` and `-` keep them off the pairwise look and
/// [`fractional_integer`]'s byte-by-byte scan.
fn may_hold_a_fraction(payload: &[u8]) -> bool {
    payload.contains(&b'.')
        || (payload.contains(&b'-')
            && payload
                .windows(2)
                .any(|pair| matches!(pair, [b'e' | b'E', b'-'])))
}

/// Postgres's refusal of the first number with a fraction (`1.5`, `15e-1`) given for an
/// integer field, which arrow-json would truncate. Numbers that are whole however written
/// (`2.0`, `1e3`) are taken, as they lose nothing.
fn fractional_integer(payload: &[u8], integer_fields: &HashMap<Vec<u8>, &str>) -> Option<String> {
    /// An open object (with the key of the value being read) or array.
    struct Container<'a> {
        object: bool,
        key: &'a [u8],
        expecting_key: bool,
    }
    let mut open: Vec<Container> = Vec::new();
    let mut position = 0;
    while position < payload.len() {
        match payload[position] {
            b'"' => {
                let start = position + 1;
                let mut end = start;
                while end < payload.len() && payload[end] != b'"' {
                    end += if payload[end] == b'\\' { 2 } else { 1 };
                }
                if let Some(container) = open.last_mut()
                    && container.object
                    && container.expecting_key
                {
                    container.key = &payload[start..end.min(payload.len())];
                    container.expecting_key = false;
                }
                position = end + 1;
                continue;
            }
            opening @ (b'{' | b'[') => open.push(Container {
                object: opening == b'{',
                key: &[],
                expecting_key: opening == b'{',
            }),
            b'}' | b']' => {
                open.pop();
            }
            b',' => {
                if let Some(container) = open.last_mut() {
                    container.expecting_key = container.object;
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = position;
                while position < payload.len()
                    && matches!(
                        payload[position],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    position += 1;
                }
                let number = std::str::from_utf8(&payload[start..position]).unwrap_or_default();
                let fractional = number.contains(['.', 'e', 'E'])
                    && number
                        .parse::<f64>()
                        .is_ok_and(|value| value.fract() != 0.0);
                if fractional && open.iter().all(|container| container.object) {
                    let path = open
                        .iter()
                        .map(|container| container.key)
                        .collect::<Vec<_>>()
                        .join(&0u8);
                    if let Some(type_name) = integer_fields.get(&path) {
                        return Some(format!(
                            "invalid input syntax for type {type_name}: \"{number}\" (field \"{}\")",
                            String::from_utf8_lossy(&path).replace('\0', ".")
                        ));
                    }
                }
                continue;
            }
            _ => {}
        }
        position += 1;
    }
    None
}

/// Arrow's messages, shortened to what a user can act on; a JSON integer too large for its
/// column is worded as Postgres words 22003.
fn describe(error: &ArrowError) -> String {
    match error {
        ArrowError::JsonError(message) => {
            integer_out_of_range(message).unwrap_or_else(|| message.clone())
        }
        ArrowError::CsvError(message)
        | ArrowError::ParseError(message)
        | ArrowError::CastError(message)
        | ArrowError::InvalidArgumentError(message)
        | ArrowError::SchemaError(message) => message.clone(),
        other => other.to_string(),
    }
}

/// Postgres's words for arrow-json's `whilst decoding field 'n': failed to parse 3000000000 as
/// Int32` when the text is a whole number (so the only reason is its size).
fn integer_out_of_range(message: &str) -> Option<String> {
    let mut path = Vec::new();
    let mut rest = message;
    while let Some(inner) = rest.strip_prefix("whilst decoding field '") {
        let (field, after) = inner.split_once("': ")?;
        path.push(field);
        rest = after;
    }
    let (number, arrow_type) = rest.strip_prefix("failed to parse ")?.rsplit_once(" as ")?;
    let type_name = match arrow_type {
        "Int8" | "Int16" | "UInt8" => "smallint",
        "Int32" | "UInt16" => "integer",
        "Int64" | "UInt32" | "UInt64" => "bigint",
        _ => return None,
    };
    let digits = number.strip_prefix('-').unwrap_or(number);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "value \"{number}\" is out of range for type {type_name} (field \"{}\")",
        path.join(".")
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn fractions_for_integer_fields_are_found_wherever_they_are_written() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("price", DataType::Float64, true),
            Field::new(
                "after",
                DataType::Struct(vec![Field::new("id", DataType::Int64, true)].into()),
                true,
            ),
        ]);
        let mut fields = HashMap::new();
        collect_integer_fields(schema.fields(), &[], &mut fields);
        let check = |payload: &str| fractional_integer(payload.as_bytes(), &fields);
        assert_eq!(
            check(r#"{"price": 1.5, "n": 2.5}"#).as_deref(),
            Some(r#"invalid input syntax for type integer: "2.5" (field "n")"#)
        );
        assert_eq!(
            check(r#"{"after": {"id": 1.25}}"#).as_deref(),
            Some(r#"invalid input syntax for type bigint: "1.25" (field "after.id")"#)
        );
        for whole in [
            r#"{"n": 2.0, "price": 1.5}"#,
            r#"{"n": 1e3}"#,
            r#"{"note": "\"n\": 1.5", "n": 1}"#,
            r#"{"x": {"n": 1.5}, "n": 1}"#,
            r#"{"n": [1.5]}"#,
            r#"{"after": {"id": 7}, "id": 0.5}"#,
            r#"{"n": 1, "s": "unterminated \"#,
        ] {
            assert_eq!(check(whole), None, "{whole}");
        }
        assert_eq!(
            integer_out_of_range("whilst decoding field 'n': failed to parse 3000000000 as Int32")
                .as_deref(),
            Some(r#"value "3000000000" is out of range for type integer (field "n")"#)
        );
        assert_eq!(
            integer_out_of_range(
                "whilst decoding field 'after': whilst decoding field 'id': \
                 failed to parse -99999999999999999999 as Int64"
            )
            .as_deref(),
            Some(
                r#"value "-99999999999999999999" is out of range for type bigint (field "after.id")"#
            )
        );
        assert_eq!(
            integer_out_of_range("whilst decoding field 'n': failed to parse true as Int32"),
            None
        );
        assert!(!may_hold_a_fraction(br#"{"n": 1, "e": "true"}"#));
        assert!(may_hold_a_fraction(br#"{"n": 15e-1}"#));
    }
}
