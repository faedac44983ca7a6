//! Envelopes: how a source's decoded messages become changes to its relation.
//!
//! - NONE: every message is a new row (+1).
//! - UPSERT: the message key identifies the row. A value replaces the key's row (−old, +new); a
//!   message without a value deletes it (−old). Within a batch only each key's last message
//!   counts, so a batch costs O(messages), whatever the relation's size.
//! - DEBEZIUM: the value is `{"before": ..., "after": ..., "op": ...}`. Keyed messages are
//!   upserts of `after` (a null `after`, or no value, deletes the key's row), as Debezium's keys
//!   are the row's primary key; messages without a key retract `before` and add `after`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{OwnedRow, RowConverter};

use super::decode::{Decoded, PendingMessages, SourceDecoder};
use super::status::SourceErrorRecord;
use crate::dataflow::ChangeBatch;
use crate::dataflow::change_batch::{encode_rows, row_converter_for};
use crate::sql::streaming::Envelope;

/// The schema a payload decodes into under `envelope`: the row's columns, or Debezium's
/// before/after/op around them.
pub fn payload_schema(envelope: Envelope, columns: &Schema) -> SchemaRef {
    match envelope {
        Envelope::None | Envelope::Upsert => Arc::new(columns.clone()),
        Envelope::Debezium => {
            // A row image may lack NOT NULL columns only when the whole image is null.
            let row = DataType::Struct(Fields::from(columns.fields().to_vec()));
            let change = vec![
                Field::new("before", row.clone(), true),
                Field::new("after", row, true),
                Field::new("op", DataType::Utf8, true),
            ];
            // Kafka Connect's JsonConverter with schemas on wraps the change as
            // {"schema": ..., "payload": {...}}; both forms decode, "schema" is ignored.
            let mut fields = change.clone();
            fields.push(Field::new(
                "payload",
                DataType::Struct(Fields::from(change)),
                true,
            ));
            Arc::new(Schema::new(fields))
        }
    }
}

/// What a source remembers to apply its envelope: for keyed envelopes, each key's current row.
pub struct EnvelopeState {
    envelope: Envelope,
    converter: RowConverter,
    schema: SchemaRef,
    rows_by_key: HashMap<Box<[u8]>, OwnedRow>,
    /// What the last batch did to `rows_by_key`: each key's new row (`arrow-row` bytes) or
    /// `None` for a delete. The coordinator keeps the same map from these, for checkpoints.
    key_updates: Vec<KeyUpdate>,
}

/// A key's new row in `arrow-row` encoding, or `None` when the key was deleted.
pub type KeyUpdate = (Box<[u8]>, Option<Box<[u8]>>);

/// Each key's row in `arrow-row` encoding: a keyed source's state.
pub type KeyedRows = HashMap<Box<[u8]>, Box<[u8]>>;

/// One message's effect on its key: the row that replaces the key's row, or none (a delete).
type KeyedEvent = (usize, Option<usize>);

impl EnvelopeState {
    /// `schema` is the relation's stored schema.
    pub fn new(envelope: Envelope, schema: SchemaRef) -> Result<Self, ArrowError> {
        Ok(Self {
            envelope,
            converter: row_converter_for(&schema)?,
            schema,
            rows_by_key: HashMap::new(),
            key_updates: Vec::new(),
        })
    }

    /// Starts from the keys a checkpoint kept (key, row in `arrow-row` encoding).
    pub fn restore(&mut self, rows: &KeyedRows) {
        let parser = self.converter.parser();
        for (key, row) in rows {
            self.rows_by_key
                .insert(key.clone(), parser.parse(row).owned());
        }
    }

    /// What the batches since the last call did to the keys.
    pub fn take_key_updates(&mut self) -> Vec<KeyUpdate> {
        std::mem::take(&mut self.key_updates)
    }

    /// The changes a decoded batch makes; messages refused here are added to `refused`.
    pub fn changes(
        &mut self,
        decoder: &SourceDecoder,
        messages: &PendingMessages,
        decoded: Decoded,
        refused: &mut Vec<SourceErrorRecord>,
    ) -> Result<Vec<ChangeBatch>, ArrowError> {
        if self.envelope == Envelope::Debezium {
            return self.debezium(decoder, messages, decoded, refused);
        }
        // NONE and UPSERT: the payload columns are the row's.
        let rows =
            decoder.with_includes(decoded.payload.columns().to_vec(), messages, &decoded.kept)?;
        if self.envelope == Envelope::None {
            return Ok(vec![ChangeBatch::insertions(rows)]);
        }
        let events = in_message_order(
            decoded
                .kept
                .iter()
                .enumerate()
                .map(|(row, &index)| (index, Some(row))),
            &decoded.tombstones,
        );
        self.upsert(messages, &rows, events, refused)
    }

    fn debezium(
        &mut self,
        decoder: &SourceDecoder,
        messages: &PendingMessages,
        decoded: Decoded,
        refused: &mut Vec<SourceErrorRecord>,
    ) -> Result<Vec<ChangeBatch>, ArrowError> {
        let (before, after) = unwrap_payload(&decoded.payload)?;
        let (before, after) = (before.as_struct(), after.as_struct());
        let after_rows =
            decoder.with_includes(after.columns().to_vec(), messages, &decoded.kept)?;
        let before_rows =
            decoder.with_includes(before.columns().to_vec(), messages, &decoded.kept)?;
        let mut keyed = Vec::new();
        let mut retract = Vec::new();
        let mut insert = Vec::new();
        for (row, &index) in decoded.kept.iter().enumerate() {
            let has_after = after.is_valid(row);
            if messages.key(index).is_some() {
                keyed.push((index, has_after.then_some(row)));
            } else {
                if before.is_valid(row) {
                    retract.push(row as u32);
                }
                if has_after {
                    insert.push(row as u32);
                }
            }
        }
        let events = in_message_order(keyed.into_iter(), &decoded.tombstones);
        let mut changes = self.upsert(messages, &after_rows, events, refused)?;
        if !retract.is_empty() {
            changes.push(ChangeBatch::deletions(take_record_batch(
                &before_rows,
                &UInt32Array::from(retract),
            )?));
        }
        if !insert.is_empty() {
            changes.push(ChangeBatch::insertions(take_record_batch(
                &after_rows,
                &UInt32Array::from(insert),
            )?));
        }
        Ok(changes)
    }

    /// Applies keyed events (message index, replacing row of `rows` or none) in order: only
    /// each key's last event counts.
    fn upsert(
        &mut self,
        messages: &PendingMessages,
        rows: &RecordBatch,
        events: Vec<KeyedEvent>,
        refused: &mut Vec<SourceErrorRecord>,
    ) -> Result<Vec<ChangeBatch>, ArrowError> {
        let mut last: HashMap<&[u8], Option<usize>> = HashMap::with_capacity(events.len());
        for (index, row) in events {
            match messages.key(index) {
                Some(key) => {
                    last.insert(key, row);
                }
                None => refused
                    .push(messages.refuse(index, "a message without a key cannot be an upsert")),
            }
        }
        let encoded = encode_rows(&self.converter, rows)?;
        let mut removed: Vec<OwnedRow> = Vec::new();
        let mut added: Vec<u32> = Vec::new();
        for (key, row) in last {
            let old = match row {
                Some(row) => {
                    added.push(row as u32);
                    let new = encoded.row(row);
                    self.key_updates
                        .push((Box::from(key), Some(Box::from(new.as_ref()))));
                    self.rows_by_key.insert(Box::from(key), new.owned())
                }
                None => {
                    let old = self.rows_by_key.remove(key);
                    if old.is_some() {
                        self.key_updates.push((Box::from(key), None));
                    }
                    old
                }
            };
            removed.extend(old);
        }
        let mut changes = Vec::with_capacity(2);
        if !removed.is_empty() {
            let columns = self
                .converter
                .convert_rows(removed.iter().map(|row| row.row()))?;
            changes.push(ChangeBatch::deletions(RecordBatch::try_new(
                Arc::clone(&self.schema),
                columns,
            )?));
        }
        if !added.is_empty() {
            added.sort_unstable();
            let indexes = UInt32Array::from(added);
            let columns = rows
                .columns()
                .iter()
                .map(|column| take(column, &indexes, None))
                .collect::<Result<Vec<ArrayRef>, _>>()?;
            changes.push(ChangeBatch::insertions(RecordBatch::try_new(
                Arc::clone(&self.schema),
                columns,
            )?));
        }
        Ok(changes)
    }
}

/// The before and after images of Debezium changes, from the top level or, where a message
/// wraps its change in `payload`, from there.
fn unwrap_payload(changes: &RecordBatch) -> Result<(ArrayRef, ArrayRef), ArrowError> {
    let payload = changes.column(3).as_struct();
    let (top_before, top_after) = (changes.column(0), changes.column(1));
    if payload.null_count() == payload.len() {
        return Ok((Arc::clone(top_before), Arc::clone(top_after)));
    }
    let wrapped =
        BooleanArray::from_iter((0..payload.len()).map(|row| Some(payload.is_valid(row))));
    Ok((
        zip(&wrapped, payload.column(0), top_before)?,
        zip(&wrapped, payload.column(1), top_after)?,
    ))
}

/// Merges decoded messages and tombstones (both ascending by message index) into one list of
/// keyed events in message order.
fn in_message_order(
    decoded: impl Iterator<Item = KeyedEvent>,
    tombstones: &[usize],
) -> Vec<KeyedEvent> {
    let mut events: Vec<KeyedEvent> = decoded
        .chain(tombstones.iter().map(|&index| (index, None)))
        .collect();
    events.sort_unstable_by_key(|(index, _)| *index);
    events
}

#[cfg(test)]
mod tests {
    //! The UPSERT envelope against recomputation: random keyed messages (values, tombstones,
    //! malformed values, messages without keys) in random batches; after every batch the
    //! changes applied so far must equal the last valid value of every key.

    use std::collections::BTreeMap;

    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int32Type;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::connectors::decode::Message;
    use crate::sql::streaming::{Format, Include, IncludeKind};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int32, false),
            Field::new("k", DataType::Utf8, true),
        ]))
    }

    /// (key, value) rows with their multiplicity, from applied changes.
    fn apply(state: &mut BTreeMap<(String, i32), i64>, changes: &[ChangeBatch]) {
        for change in changes {
            let values = change.rows.column(0).as_primitive::<Int32Type>();
            let keys = change.rows.column(1).as_string::<i32>();
            for row in 0..change.len() {
                let entry = state
                    .entry((keys.value(row).to_string(), values.value(row)))
                    .or_default();
                *entry += change.weights.value(row);
                if *entry == 0 {
                    state.remove(&(keys.value(row).to_string(), values.value(row)));
                }
            }
        }
    }

    #[test]
    fn upsert_equals_last_value_per_key() {
        let cases: u64 = std::env::var("TRIBUTARY_PROPERTY_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(300);
        for seed in 0..cases {
            let mut rng = StdRng::seed_from_u64(seed);
            let payload_schema =
                Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)]));
            let decoder = SourceDecoder::new(
                Format::Json,
                payload_schema,
                vec![Include {
                    kind: IncludeKind::Key,
                    alias: Some("k".into()),
                }],
                schema(),
                true,
            );
            let mut envelope = EnvelopeState::new(Envelope::Upsert, schema()).expect("state");
            let mut maintained = BTreeMap::new();
            let mut expected: BTreeMap<String, i32> = BTreeMap::new();
            let mut offset = 0;
            for _ in 0..rng.random_range(1..8) {
                let mut messages = PendingMessages::default();
                let mut payloads = Vec::new();
                let mut keys = Vec::new();
                for _ in 0..rng.random_range(0..40) {
                    let key = rng
                        .random_bool(0.95)
                        .then(|| format!("k{}", rng.random_range(0..6)));
                    let payload = match rng.random_range(0..10) {
                        0..=1 => None,
                        2 => Some("{\"v\": \"not a number\"}".to_string()),
                        _ => Some(format!("{{\"v\": {}}}", rng.random_range(-50..50))),
                    };
                    if let Some(key) = &key {
                        match &payload {
                            None => {
                                expected.remove(key);
                            }
                            Some(text) => {
                                if let Some(value) = text
                                    .strip_prefix("{\"v\": ")
                                    .and_then(|rest| rest.strip_suffix('}'))
                                    .and_then(|number| number.parse().ok())
                                {
                                    expected.insert(key.clone(), value);
                                }
                            }
                        }
                    }
                    payloads.push(payload);
                    keys.push(key);
                }
                for (payload, key) in payloads.iter().zip(&keys) {
                    messages.push(Message {
                        payload: payload.as_deref().map(str::as_bytes),
                        key: key.as_deref().map(str::as_bytes),
                        partition: 0,
                        offset,
                        timestamp: None,
                        headers: None,
                    });
                    offset += 1;
                }
                // A large batch is decoded in slices, which go through the envelope in order.
                let cut = rng.random_range(0..=messages.len());
                let mut changes = Vec::new();
                let mut refused = Vec::new();
                for range in [0..cut, cut..messages.len()] {
                    let mut decoded = decoder.decode(&messages, range).expect("decode");
                    refused.append(&mut decoded.refused);
                    changes.extend(
                        envelope
                            .changes(&decoder, &messages, decoded, &mut refused)
                            .expect("changes"),
                    );
                }
                apply(&mut maintained, &changes);
                let recomputed: BTreeMap<(String, i32), i64> = expected
                    .iter()
                    .map(|(key, value)| ((key.clone(), *value), 1))
                    .collect();
                assert_eq!(maintained, recomputed, "seed {seed}");
                let malformed = payloads
                    .iter()
                    .zip(&keys)
                    .filter(|(payload, key)| {
                        payload
                            .as_deref()
                            .is_some_and(|p| p.contains("not a number"))
                            || (key.is_none() && payload.is_some())
                            || (key.is_none() && payload.is_none())
                    })
                    .count();
                assert_eq!(refused.len(), malformed, "seed {seed}: refused {refused:?}");
            }
        }
    }
}
