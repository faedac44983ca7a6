//! Join: equality joins of two inputs (inner, outer, semi, anti and mark), with extra ON
//! conditions evaluated on the matching pairs.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array,
    new_null_array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;
// Faster than std's SipHash on the short byte keys these maps hold; still seeded per map.
use hashbrown::HashMap;

use super::change_batch::{changes_in_schema, encode_rows, row_converter_for};
use super::{ChangeBatch, Epoch, Operator, Owned};
use crate::error::{DataflowError, ExecutionError};
use crate::storage::codec::{DecodeError, Decoder, Encoder};

/// Which rows a join emits. Left is port 0, right is port 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    LeftSemi,
    RightSemi,
    LeftAnti,
    RightAnti,
    /// Every left row once, with a boolean: does it have a match (EXISTS inside OR).
    LeftMark,
    RightMark,
}

/// What a row of one side emits by itself, depending on whether it has partners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alone {
    Nothing,
    /// Outer joins pad it with NULLs for the other side's columns; anti joins emit it as is.
    WhenUnmatched,
    WhenMatched,
    Marked,
}

impl JoinKind {
    fn emits_pairs(self) -> bool {
        matches!(
            self,
            JoinKind::Inner | JoinKind::Left | JoinKind::Right | JoinKind::Full
        )
    }

    fn pads(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Right | JoinKind::Full)
    }

    fn alone(self, side: usize) -> Alone {
        use JoinKind::*;
        match (self, side) {
            (Left | Full | LeftAnti, 0) | (Right | Full | RightAnti, 1) => Alone::WhenUnmatched,
            (LeftSemi, 0) | (RightSemi, 1) => Alone::WhenMatched,
            (LeftMark, 0) | (RightMark, 1) => Alone::Marked,
            _ => Alone::Nothing,
        }
    }
}

/// Everything the planner decides about a join.
#[derive(Clone)]
pub struct JoinDefinition {
    pub kind: JoinKind,
    /// The equality keys, evaluated on the left and on the right input; pairwise equal.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The type both sides' keys are compared in.
    pub key_types: Vec<DataType>,
    /// The rest of the ON condition, over the left columns followed by the right columns.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Set operations compare NULLs as equal (IS NOT DISTINCT FROM); ON conditions never do.
    pub nulls_equal: bool,
    /// NOT IN: a left anti join where a NULL among the right keys removes every row, and a left
    /// row with a NULL key only passes when the right side is empty.
    pub null_aware: bool,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    pub output_schema: SchemaRef,
}

/// Incremental rule: a join is bilinear, `Δ(A ⋈ B) = ΔA ⋈ B + A' ⋈ ΔB` where `A'` already
/// includes ΔA: each batch is joined with the other side's current state, then added to its own
/// side's state, so batches may arrive from either side in any order. Both sides are indexed by
/// key (`arrow-row` bytes → rows with their multiplicity), so a change costs O(partners in its
/// key). Rows whose key holds a NULL never match (unless the join compares NULLs as equal).
///
/// Outer, semi, anti and mark joins also need to know whether a row has partners: with no extra
/// ON condition that is whether the other side's key group is non-empty (a per-key weight);
/// with one, each row counts its partners that pass it. A row whose count turns from zero to
/// non-zero (or back) retracts what it emitted alone (its NULL-padded row, itself for anti,
/// its mark) and emits the other. NOT IN additionally switches between its three regimes
/// (right side empty, holding a NULL key, neither) by comparing the wanted output with what it
/// emitted, which it keeps; that costs O(left rows) only when the regime changes.
pub struct Join {
    definition: JoinDefinition,
    key_converter: RowConverter,
    sides: [SideState; 2],
    null_aware: Option<NullAwareState>,
    /// The schema an extra ON condition is evaluated on: the left columns, then the right.
    pair_schema: SchemaRef,
}

/// One input's rows, indexed by join key.
struct SideState {
    converter: RowConverter,
    schema: SchemaRef,
    groups: HashMap<Box<[u8]>, KeyGroup>,
    /// Rows whose key holds a NULL: they never match, so only NOT IN needs them kept.
    null_key_rows: HashMap<Box<[u8]>, i64>,
    /// The weight of every row on this side: whether it is empty, for NOT IN.
    total_weight: i64,
}

#[derive(Default)]
struct KeyGroup {
    /// The sum of the rows' multiplicities.
    weight: i64,
    rows: HashMap<Box<[u8]>, RowEntry>,
}

#[derive(Clone, Copy)]
struct RowEntry {
    weight: i64,
    /// With an extra ON condition: the weight of the other side's rows that pass it with this
    /// one. Unused without (the other side's key group weight says the same).
    matches: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotInRegime {
    RightEmpty,
    RightHasNull,
    Normal,
}

struct NullAwareState {
    /// The left rows the join has emitted, with their multiplicities.
    emitted: HashMap<Box<[u8]>, i64>,
    /// The regime when the current epoch's first batch arrived.
    regime_before: Option<NotInRegime>,
    /// Output of the current epoch under the normal regime, held until the barrier.
    pending: Vec<ChangeBatch>,
}

/// A row of one side whose own output changes, as row bytes with its weight and match state.
struct Flip {
    row: Box<[u8]>,
    weight: i64,
    matched_before: bool,
    matched_after: bool,
}

impl Join {
    pub fn new(definition: JoinDefinition) -> Result<Self, DataflowError> {
        if definition.null_aware
            && (definition.kind != JoinKind::LeftAnti || definition.filter.is_some())
        {
            return Err(ExecutionError::Internal(
                "a NULL-aware join must be a left anti join without extra conditions".into(),
            )
            .into());
        }
        let key_converter = RowConverter::new(
            definition
                .key_types
                .iter()
                .map(|data_type| SortField::new(data_type.clone()))
                .collect(),
        )?;
        let side = |schema: &SchemaRef| -> Result<SideState, DataflowError> {
            Ok(SideState {
                converter: row_converter_for(schema)?,
                schema: Arc::clone(schema),
                groups: HashMap::new(),
                null_key_rows: HashMap::new(),
                total_weight: 0,
            })
        };
        let sides = [
            side(&definition.left_schema)?,
            side(&definition.right_schema)?,
        ];
        let null_aware = definition.null_aware.then(|| NullAwareState {
            emitted: HashMap::new(),
            regime_before: None,
            pending: Vec::new(),
        });
        let pair_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            definition
                .left_schema
                .fields()
                .iter()
                .chain(definition.right_schema.fields().iter())
                .cloned()
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            definition,
            key_converter,
            sides,
            null_aware,
            pair_schema,
        })
    }

    fn keys(&self, side: usize, rows: &RecordBatch) -> Result<(Rows, Vec<bool>), DataflowError> {
        let expressions = if side == 0 {
            &self.definition.left_keys
        } else {
            &self.definition.right_keys
        };
        let columns = evaluate_keys(expressions, &self.definition.key_types, rows)?;
        let null_key = (0..rows.num_rows())
            .map(|row| {
                !self.definition.nulls_equal && columns.iter().any(|column| column.is_null(row))
            })
            .collect();
        Ok((self.key_converter.convert_columns(&columns)?, null_key))
    }

    fn regime(&self) -> NotInRegime {
        let right = &self.sides[1];
        if right.total_weight == 0 {
            NotInRegime::RightEmpty
        } else if right.null_key_rows.values().any(|&weight| weight != 0) {
            NotInRegime::RightHasNull
        } else {
            NotInRegime::Normal
        }
    }

    /// Whether a row of `side` in key group `key` with entry `entry` has partners now.
    fn matched(&self, side: usize, key: &[u8], matches: i64) -> bool {
        if self.definition.filter.is_some() {
            matches != 0
        } else {
            self.sides[1 - side]
                .groups
                .get(key)
                .is_some_and(|group| group.weight != 0)
        }
    }

    /// The output rows a side's rows emit alone, from their columns and match states.
    fn alone_output(
        &self,
        side: usize,
        columns: Vec<ArrayRef>,
        matched: &[bool],
        weights: &[i64],
    ) -> Result<Option<ChangeBatch>, DataflowError> {
        let alone = self.definition.kind.alone(side);
        let keep: Vec<u32> = (0..matched.len() as u32)
            .filter(|&row| weights[row as usize] != 0)
            .filter(|&row| match alone {
                Alone::Nothing => false,
                Alone::WhenUnmatched => !matched[row as usize],
                Alone::WhenMatched => matched[row as usize],
                Alone::Marked => true,
            })
            .collect();
        if keep.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(keep.clone());
        let mut kept: Vec<ArrayRef> = columns
            .iter()
            .map(|column| take(column, &indices, None))
            .collect::<Result<_, _>>()?;
        if self.definition.kind.pads() {
            let other = &self.sides[1 - side].schema;
            let nulls = other
                .fields()
                .iter()
                .map(|field| new_null_array(field.data_type(), keep.len()));
            if side == 0 {
                kept.extend(nulls);
            } else {
                kept.splice(0..0, nulls);
            }
        }
        if alone == Alone::Marked {
            let marks: BooleanArray = keep
                .iter()
                .map(|&row| Some(matched[row as usize]))
                .collect();
            kept.push(Arc::new(marks));
        }
        let weights: Int64Array = keep.iter().map(|&row| weights[row as usize]).collect();
        Ok(Some(self.output_batch(kept, weights)?))
    }

    fn output_batch(
        &self,
        columns: Vec<ArrayRef>,
        weights: Int64Array,
    ) -> Result<ChangeBatch, DataflowError> {
        Ok(changes_in_schema(
            &self.definition.output_schema,
            columns,
            weights,
        )?)
    }

    /// The output of rows of `side` stored as bytes, whose match state flipped.
    fn flip_output(
        &self,
        side: usize,
        flips: &[Flip],
    ) -> Result<Option<ChangeBatch>, DataflowError> {
        if flips.is_empty() || self.definition.kind.alone(side) == Alone::Nothing {
            return Ok(None);
        }
        let converter = &self.sides[side].converter;
        let parser = converter.parser();
        // Each flipped row retracts its old lone output and emits its new one.
        let rows = flips
            .iter()
            .flat_map(|flip| [parser.parse(&flip.row), parser.parse(&flip.row)]);
        let columns = converter.convert_rows(rows)?;
        let matched: Vec<bool> = flips
            .iter()
            .flat_map(|flip| [flip.matched_before, flip.matched_after])
            .collect();
        let weights: Vec<i64> = flips
            .iter()
            .flat_map(|flip| [-flip.weight, flip.weight])
            .collect();
        self.alone_output(side, columns, &matched, &weights)
    }

    /// The rows NOT IN should show under `regime`, from the current state.
    fn not_in_rows(&self, regime: NotInRegime) -> HashMap<Box<[u8]>, i64> {
        let left = &self.sides[0];
        let mut rows = HashMap::new();
        match regime {
            NotInRegime::RightHasNull => {}
            NotInRegime::RightEmpty => {
                for group in left.groups.values() {
                    for (row, entry) in &group.rows {
                        rows.insert(row.clone(), entry.weight);
                    }
                }
                for (row, &weight) in &left.null_key_rows {
                    rows.insert(row.clone(), weight);
                }
            }
            NotInRegime::Normal => {
                for (key, group) in &left.groups {
                    if self.matched(0, key, 0) {
                        continue;
                    }
                    for (row, entry) in &group.rows {
                        rows.insert(row.clone(), entry.weight);
                    }
                }
            }
        }
        rows.retain(|_, weight| *weight != 0);
        rows
    }

    /// Closes a NOT IN epoch: the held normal-regime changes, or, when the regime changed, the
    /// difference between the wanted rows and the emitted ones.
    fn close_not_in_epoch(&mut self) -> Result<Vec<ChangeBatch>, DataflowError> {
        let Some(state) = self.null_aware.as_mut() else {
            return Ok(Vec::new());
        };
        let Some(before) = state.regime_before.take() else {
            return Ok(Vec::new());
        };
        let pending = std::mem::take(&mut state.pending);
        let after = self.regime();
        if before == NotInRegime::Normal && after == NotInRegime::Normal {
            let converter = &self.sides[0].converter;
            let Some(state) = self.null_aware.as_mut() else {
                return Ok(Vec::new());
            };
            for batch in &pending {
                let encoded = encode_rows(converter, &batch.rows)?;
                for (row, &weight) in encoded.iter().zip(batch.weights.values()) {
                    let count = state.emitted.entry(row.as_ref().into()).or_insert(0);
                    *count += weight;
                    if *count == 0 {
                        state.emitted.remove(row.as_ref());
                    }
                }
            }
            return Ok(pending);
        }
        let wanted = self.not_in_rows(after);
        let Some(state) = self.null_aware.as_mut() else {
            return Ok(Vec::new());
        };
        let mut difference: Vec<(Box<[u8]>, i64)> = Vec::new();
        for (row, &weight) in &wanted {
            let had = state.emitted.get(row).copied().unwrap_or(0);
            if had != weight {
                difference.push((row.clone(), weight - had));
            }
        }
        for (row, &weight) in &state.emitted {
            if !wanted.contains_key(row) {
                difference.push((row.clone(), -weight));
            }
        }
        state.emitted = wanted;
        if difference.is_empty() {
            return Ok(Vec::new());
        }
        let converter = &self.sides[0].converter;
        let parser = converter.parser();
        let columns =
            converter.convert_rows(difference.iter().map(|(row, _)| parser.parse(row)))?;
        let weights: Int64Array = difference.iter().map(|(_, weight)| *weight).collect();
        Ok(vec![self.output_batch(columns, weights)?])
    }
}

impl Operator for Join {
    fn process(
        &mut self,
        port: usize,
        input: ChangeBatch,
    ) -> Result<Vec<ChangeBatch>, DataflowError> {
        let this = port.min(1);
        let other = 1 - this;
        if let Some(state) = self.null_aware.as_ref()
            && state.regime_before.is_none()
        {
            let regime = self.regime();
            if let Some(state) = self.null_aware.as_mut() {
                state.regime_before = Some(regime);
            }
        }
        let row_count = input.len();
        let weights = input.weights.values();
        let (keys, null_key) = self.keys(this, &input.rows)?;
        let encoded = encode_rows(&self.sides[this].converter, &input.rows)?;
        let has_filter = self.definition.filter.is_some();
        let tracks_other = self.definition.kind.alone(other) != Alone::Nothing;
        let tracks_this = self.definition.kind.alone(this) != Alone::Nothing;
        let mut output = Vec::new();

        // Pairs of a changed row and its partners on the other side, as they stand.
        let mut pair_rows: Vec<u32> = Vec::new();
        let mut pair_partners: Vec<&[u8]> = Vec::new();
        let mut pair_weights: Vec<i64> = Vec::new();
        let needs_pairs = self.definition.kind.emits_pairs() || has_filter;
        if needs_pairs {
            for (row, _) in null_key.iter().enumerate().filter(|(_, null)| !**null) {
                if let Some(group) = self.sides[other].groups.get(keys.row(row).as_ref()) {
                    for (partner, entry) in &group.rows {
                        pair_rows.push(row as u32);
                        pair_partners.push(partner);
                        pair_weights.push(entry.weight);
                    }
                }
            }
        }
        let mut passing = vec![true; pair_rows.len()];
        let mut matches = vec![0i64; row_count];
        let mut partner_changes: HashMap<Box<[u8]>, (usize, i64)> = HashMap::new();
        if !pair_rows.is_empty() {
            let own: Vec<ArrayRef> = input
                .rows
                .columns()
                .iter()
                .map(|column| take(column, &UInt32Array::from(pair_rows.clone()), None))
                .collect::<Result<_, _>>()?;
            let converter = &self.sides[other].converter;
            let parser = converter.parser();
            let partners =
                converter.convert_rows(pair_partners.iter().map(|row| parser.parse(row)))?;
            let columns: Vec<ArrayRef> = if this == 0 {
                own.into_iter().chain(partners).collect()
            } else {
                partners.into_iter().chain(own).collect()
            };
            if let Some(filter) = &self.definition.filter {
                let options = RecordBatchOptions::new().with_row_count(Some(pair_rows.len()));
                let pair_schema = Arc::clone(&self.pair_schema);
                let pairs =
                    RecordBatch::try_new_with_options(pair_schema, columns.clone(), &options)?;
                let mask = filter.evaluate(&pairs)?.into_array(pair_rows.len())?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        ExecutionError::Internal(format!("join condition {filter} is not boolean"))
                    })?;
                for (pair, pass) in passing.iter_mut().enumerate() {
                    *pass = mask.is_valid(pair) && mask.value(pair);
                }
                for pair in 0..pair_rows.len() {
                    if passing[pair] {
                        let row = pair_rows[pair] as usize;
                        matches[row] += pair_weights[pair];
                        if tracks_other {
                            let change = partner_changes
                                .entry(pair_partners[pair].into())
                                .or_insert((row, 0));
                            change.1 += weights[row];
                        }
                    }
                }
            }
            if self.definition.kind.emits_pairs() {
                let kept: Vec<u32> = (0..pair_rows.len() as u32)
                    .filter(|&pair| passing[pair as usize])
                    .collect();
                if !kept.is_empty() {
                    let indices = UInt32Array::from(kept.clone());
                    let columns = columns
                        .iter()
                        .map(|column| take(column, &indices, None))
                        .collect::<Result<Vec<_>, _>>()?;
                    let pair_weights: Int64Array = kept
                        .iter()
                        .map(|&pair| {
                            weights[pair_rows[pair as usize] as usize] * pair_weights[pair as usize]
                        })
                        .collect();
                    output.push(self.output_batch(columns, pair_weights)?);
                }
            }
        }

        // Rows of the other side whose partner count crosses zero.
        let mut flips = Vec::new();
        if tracks_other {
            if has_filter {
                for (partner, (row, change)) in &partner_changes {
                    if *change == 0 {
                        continue;
                    }
                    let key = keys.row(*row);
                    let Some(entry) = self.sides[other]
                        .groups
                        .get_mut(key.as_ref())
                        .and_then(|group| group.rows.get_mut(partner))
                    else {
                        continue;
                    };
                    let before = entry.matches;
                    entry.matches += change;
                    if (before != 0) != (entry.matches != 0) {
                        flips.push(Flip {
                            row: partner.clone(),
                            weight: entry.weight,
                            matched_before: before != 0,
                            matched_after: entry.matches != 0,
                        });
                    }
                }
            } else {
                let mut key_changes: HashMap<&[u8], i64> = HashMap::new();
                for row in 0..row_count {
                    if !null_key[row] {
                        *key_changes.entry(keys.row(row).data()).or_insert(0) += weights[row];
                    }
                }
                for (key, change) in key_changes {
                    let before = self.sides[this]
                        .groups
                        .get(key)
                        .map_or(0, |group| group.weight);
                    let after = before + change;
                    if (before != 0) == (after != 0) {
                        continue;
                    }
                    if let Some(group) = self.sides[other].groups.get(key) {
                        for (partner, entry) in &group.rows {
                            flips.push(Flip {
                                row: partner.clone(),
                                weight: entry.weight,
                                matched_before: before != 0,
                                matched_after: after != 0,
                            });
                        }
                    }
                }
            }
        }
        output.extend(self.flip_output(other, &flips)?);

        // The changed rows' own output, by whether they have partners.
        if tracks_this {
            let matched: Vec<bool> = (0..row_count)
                .map(|row| {
                    !null_key[row] && self.matched(this, keys.row(row).as_ref(), matches[row])
                })
                .collect();
            let columns = input.rows.columns().to_vec();
            let mut row_weights = weights.to_vec();
            if self.null_aware.is_some() {
                // NOT IN never shows a NULL key under the normal regime; the other regimes
                // are settled at the barrier.
                for (row, weight) in row_weights.iter_mut().enumerate() {
                    if null_key[row] {
                        *weight = 0;
                    }
                }
            }
            if let Some(batch) = self.alone_output(this, columns, &matched, &row_weights)? {
                output.push(batch);
            }
        }

        // Finally the changed rows join their own side's state.
        let keep_null_keys = self.null_aware.is_some();
        let side = &mut self.sides[this];
        for row in 0..row_count {
            let weight = weights[row];
            side.total_weight += weight;
            let bytes = encoded.row(row);
            if null_key[row] {
                if keep_null_keys {
                    let count = side.null_key_rows.entry(bytes.data().into()).or_insert(0);
                    *count += weight;
                    if *count == 0 {
                        side.null_key_rows.remove(bytes.data());
                    }
                }
                continue;
            }
            let key = keys.row(row);
            let group = side.groups.entry(key.data().into()).or_default();
            group.weight += weight;
            let entry = group.rows.entry(bytes.data().into()).or_insert(RowEntry {
                weight: 0,
                matches: matches[row],
            });
            entry.weight += weight;
            if entry.weight == 0 {
                group.rows.remove(bytes.data());
            }
            if group.rows.is_empty() {
                side.groups.remove(key.data());
            }
        }

        if let Some(state) = self.null_aware.as_mut() {
            state
                .pending
                .extend(output.into_iter().filter(|batch| !batch.is_empty()));
            return Ok(Vec::new());
        }
        Ok(output
            .into_iter()
            .filter(|batch| !batch.is_empty())
            .collect())
    }

    fn barrier(&mut self, _epoch: Epoch) -> Result<Vec<ChangeBatch>, DataflowError> {
        self.close_not_in_epoch()
    }

    /// Both sides' indexes (every row with its multiplicity and partner count) and, for NOT
    /// IN, what it has emitted.
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, DataflowError> {
        let mut encoder = Encoder::default();
        for side in &self.sides {
            encoder.i64(side.total_weight).u64(side.groups.len() as u64);
            for (key, group) in &side.groups {
                encoder
                    .bytes(key)
                    .i64(group.weight)
                    .u64(group.rows.len() as u64);
                for (row, entry) in &group.rows {
                    encoder.bytes(row).i64(entry.weight).i64(entry.matches);
                }
            }
            encode_counts(&mut encoder, &side.null_key_rows);
        }
        if let Some(state) = &self.null_aware {
            encode_counts(&mut encoder, &state.emitted);
        }
        Ok(Some(encoder.finish()))
    }

    /// Key groups go to the worker owning their key. Rows with a NULL key are kept only by
    /// NOT IN, which runs on one worker: they are taken whole.
    fn restore(&mut self, state: &[u8], owned: Owned<'_>) -> Result<(), DataflowError> {
        let corrupted = |error: DecodeError| {
            DataflowError::from(ExecutionError::Internal(format!(
                "cannot restore a join: {error}"
            )))
        };
        let mut decoder = Decoder::new(state);
        for side in &mut self.sides {
            // Recounted from what is kept: the saved total counts the groups left to others.
            decoder.i64().map_err(corrupted)?;
            let groups = decoder.count().map_err(corrupted)?;
            for _ in 0..groups {
                let key: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                let mut group = KeyGroup {
                    weight: decoder.i64().map_err(corrupted)?,
                    rows: HashMap::new(),
                };
                let rows = decoder.count().map_err(corrupted)?;
                for _ in 0..rows {
                    let row: Box<[u8]> = decoder.bytes().map_err(corrupted)?.into();
                    let weight = decoder.i64().map_err(corrupted)?;
                    let matches = decoder.i64().map_err(corrupted)?;
                    group.rows.insert(row, RowEntry { weight, matches });
                }
                if owned(&key)? {
                    side.total_weight += group.weight;
                    side.groups.insert(key, group);
                }
            }
            for (row, weight) in decode_counts(&mut decoder).map_err(corrupted)? {
                side.total_weight += weight;
                *side.null_key_rows.entry(row).or_insert(0) += weight;
            }
        }
        if let Some(state) = self.null_aware.as_mut() {
            for (row, weight) in decode_counts(&mut decoder).map_err(corrupted)? {
                *state.emitted.entry(row).or_insert(0) += weight;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self
            .definition
            .left_keys
            .iter()
            .zip(&self.definition.right_keys)
            .map(|(left, right)| format!("{left} = {right}"))
            .collect();
        let mut description = format!("Join {:?}: {}", self.definition.kind, keys.join(" AND "));
        if let Some(filter) = &self.definition.filter {
            description.push_str(&format!(" filter {filter}"));
        }
        if self.definition.null_aware {
            description.push_str(" (NOT IN)");
        }
        description
    }
}

fn encode_counts(encoder: &mut Encoder, counts: &HashMap<Box<[u8]>, i64>) {
    encoder.u64(counts.len() as u64);
    for (row, weight) in counts {
        encoder.bytes(row).i64(*weight);
    }
}

fn decode_counts(decoder: &mut Decoder) -> Result<HashMap<Box<[u8]>, i64>, DecodeError> {
    let count = decoder.count()?;
    let mut counts = HashMap::with_capacity(count);
    for _ in 0..count {
        let row: Box<[u8]> = decoder.bytes()?.into();
        counts.insert(row, decoder.i64()?);
    }
    Ok(counts)
}

/// Key `expressions` evaluated on `rows`, each cast to its entry of `types` (the type both sides
/// of a join compare it in), so that equal keys encode to equal bytes.
pub(crate) fn evaluate_keys(
    expressions: &[Arc<dyn PhysicalExpr>],
    types: &[DataType],
    rows: &RecordBatch,
) -> Result<Vec<ArrayRef>, DataflowError> {
    expressions
        .iter()
        .zip(types)
        .map(|(expression, data_type)| {
            let column = expression.evaluate(rows)?.into_array(rows.num_rows())?;
            Ok(if column.data_type() == data_type {
                column
            } else {
                cast(&column, data_type)?
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::testing::{changes, column, expected, integers, summed};

    /// `left (k, a) <kind> JOIN right (k, b) ON left.k = right.k`.
    fn join(kind: JoinKind) -> (Join, SchemaRef, SchemaRef) {
        let left = integers(&["k", "a"]);
        let right = integers(&["k", "b"]);
        // Semi and anti joins emit left rows as they are; the others pairs.
        let output = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => Arc::clone(&left),
            _ => integers(&["k", "a", "k2", "b"]),
        };
        let join = Join::new(JoinDefinition {
            kind,
            left_keys: vec![column("k", 0)],
            right_keys: vec![column("k", 0)],
            key_types: vec![DataType::Int64],
            filter: None,
            nulls_equal: false,
            null_aware: false,
            left_schema: Arc::clone(&left),
            right_schema: Arc::clone(&right),
            output_schema: output,
        })
        .expect("join");
        (join, left, right)
    }

    /// Feeds one epoch: `left` on port 0, `right` on port 1, then the barrier.
    fn epoch(
        join: &mut Join,
        left: Option<ChangeBatch>,
        right: Option<ChangeBatch>,
    ) -> Vec<ChangeBatch> {
        let mut output = Vec::new();
        for (port, batch) in [(0, left), (1, right)] {
            if let Some(batch) = batch {
                output.extend(join.process(port, batch).expect("process"));
            }
        }
        output.extend(join.barrier(1).expect("barrier"));
        output
    }

    #[test]
    fn inner_join_pairs_each_change_with_the_other_side() {
        let (mut join, left, right) = join(JoinKind::Inner);
        let out = epoch(
            &mut join,
            Some(changes(
                &left,
                &[(&[Some(1), Some(10)], 1), (&[Some(2), Some(20)], 1)],
            )),
            Some(changes(
                &right,
                &[(&[Some(1), Some(100)], 1), (&[None, Some(0)], 1)],
            )),
        );
        // Both sides' changes in one epoch meet once; a NULL key matches nothing.
        assert_eq!(
            summed(&out),
            expected(&[(&[Some(1), Some(10), Some(1), Some(100)], 1)])
        );
        // A second copy of a right row doubles its pairs; deleting the left row retracts them.
        let out = epoch(
            &mut join,
            Some(changes(&left, &[(&[Some(1), Some(10)], -1)])),
            Some(changes(
                &right,
                &[(&[Some(1), Some(100)], 1), (&[Some(2), Some(200)], 1)],
            )),
        );
        assert_eq!(
            summed(&out),
            expected(&[
                (&[Some(1), Some(10), Some(1), Some(100)], -1),
                (&[Some(2), Some(20), Some(2), Some(200)], 1),
            ])
        );
    }

    #[test]
    fn left_join_switches_between_padded_and_matched_and_survives_a_restore() {
        let (mut join, left, right) = join(JoinKind::Left);
        let out = epoch(
            &mut join,
            Some(changes(&left, &[(&[Some(3), Some(30)], 1)])),
            None,
        );
        assert_eq!(
            summed(&out),
            expected(&[(&[Some(3), Some(30), None, None], 1)])
        );
        // The state moves to a fresh join through a checkpoint.
        let state = join
            .checkpoint()
            .expect("checkpoint")
            .expect("a join keeps state");
        let (mut restored, _, _) = self::join(JoinKind::Left);
        restored.restore(&state, &|_| Ok(true)).expect("restore");
        let out = epoch(
            &mut restored,
            None,
            Some(changes(&right, &[(&[Some(3), Some(300)], 1)])),
        );
        assert_eq!(
            summed(&out),
            expected(&[
                (&[Some(3), Some(30), None, None], -1),
                (&[Some(3), Some(30), Some(3), Some(300)], 1),
            ])
        );
        // The partner leaves: the row is padded again.
        let out = epoch(
            &mut restored,
            None,
            Some(changes(&right, &[(&[Some(3), Some(300)], -1)])),
        );
        assert_eq!(
            summed(&out),
            expected(&[
                (&[Some(3), Some(30), Some(3), Some(300)], -1),
                (&[Some(3), Some(30), None, None], 1),
            ])
        );
    }

    #[test]
    fn anti_join_emits_left_rows_without_partners() {
        let (mut join, left, right) = join(JoinKind::LeftAnti);
        let left_rows = changes(
            &left,
            &[(&[Some(1), Some(10)], 1), (&[Some(2), Some(20)], 1)],
        );
        let out = epoch(
            &mut join,
            Some(left_rows),
            Some(changes(&right, &[(&[Some(2), Some(0)], 1)])),
        );
        assert_eq!(summed(&out), expected(&[(&[Some(1), Some(10)], 1)]));
        let out = epoch(
            &mut join,
            None,
            Some(changes(&right, &[(&[Some(1), Some(0)], 1)])),
        );
        assert_eq!(summed(&out), expected(&[(&[Some(1), Some(10)], -1)]));
    }
}
