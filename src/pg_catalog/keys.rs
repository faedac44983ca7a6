//! Tables' PRIMARY KEY and UNIQUE constraints as Postgres's catalogs describe them: a
//! pg_constraint row and a pg_index row per constraint, a pg_class row (relkind 'i') per index,
//! and the functions clients expand their key columns with (`unnest(indkey)`,
//! `generate_subscripts(conkey, 1)`, `information_schema._pg_expandarray(indkey)`), which the
//! library holds as text.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringArray,
    StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DataFusionResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::catalog::{Relation, UniqueKey};
use crate::coordinator::Snapshot;
use crate::planner::context::PinnedSnapshot;

/// Index and constraint oids: above the library's (which numbers relations from 16384), and
/// derived from the table's relation id and the key's place, so they stay the same from one
/// query to the next.
const KEY_OID_BASE: i64 = 1_000_000;
const KEYS_PER_RELATION: i64 = 32;

/// The btree access method's oid in pg_am.
const BTREE: i64 = 403;

/// Every constraint of the public tables: (table's pg_class oid, table, key, key's place).
fn constraints<'a>(
    snapshot: &'a Snapshot,
    table_oids: &HashMap<String, i64>,
) -> Vec<(i64, &'a Relation, &'a UniqueKey, usize)> {
    let mut found = Vec::new();
    for relation in snapshot.catalog.relations() {
        let Some(&table_oid) = table_oids.get(&relation.name) else {
            continue;
        };
        for (place, key) in relation.unique_keys.iter().enumerate() {
            found.push((table_oid, relation.as_ref(), key, place));
        }
    }
    found
}

fn index_oid(relation: &Relation, place: usize) -> i64 {
    KEY_OID_BASE + relation.id as i64 * KEYS_PER_RELATION + place as i64
}

/// A constraint's oid: beside its index's, half the range further.
fn constraint_oid(relation: &Relation, place: usize) -> i64 {
    index_oid(relation, place) + KEYS_PER_RELATION / 2
}

/// The default btree operator class of a column's type (pg_opclass's oids as the library
/// exports them): what pg_index.indclass names for a plain key column, and what clients compare
/// with to tell a default ordering from a declared one. 0 for a type without one.
fn default_operator_class(relation: &Relation, column: usize) -> i64 {
    let field = relation.schema.field(column);
    if field
        .metadata()
        .contains_key(crate::catalog::MAX_LENGTH_KEY)
    {
        return 3126;
    }
    let Some(pg_type) = crate::server::types::arrow_to_pg_type(field.data_type()) else {
        return 0;
    };
    match pg_type.oid() {
        16 => 10003,
        17 => 10006,
        20 => 3124,
        21 => 1979,
        23 => 1978,
        25 | 1043 => 3126,
        700 => 10012,
        701 => 3123,
        1082 => 3122,
        1083 => 10038,
        1114 => 3128,
        1184 => 3127,
        1186 => 10022,
        1700 => 3125,
        _ => 0,
    }
}

/// attnums (from 1) of a key's columns.
fn attnums(key: &UniqueKey) -> Vec<i64> {
    key.columns
        .iter()
        .map(|&column| column as i64 + 1)
        .collect()
}

fn joined(numbers: &[i64], separator: &str) -> String {
    numbers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

/// pg_class rows of the constraints' indexes.
pub(super) fn class_rows(
    schema: &SchemaRef,
    snapshot: &Snapshot,
    table_oids: &HashMap<String, i64>,
    public_namespace: i64,
) -> DataFusionResult<RecordBatch> {
    let rows = constraints(snapshot, table_oids)
        .into_iter()
        .map(|(_, relation, key, place)| {
            HashMap::from([
                ("oid", ScalarValue::Int64(Some(index_oid(relation, place)))),
                ("relname", ScalarValue::from(key.name.as_str())),
                ("relnamespace", ScalarValue::Int64(Some(public_namespace))),
                ("relkind", ScalarValue::from("i")),
                ("relam", ScalarValue::Int64(Some(BTREE))),
                (
                    "relnatts",
                    ScalarValue::Int64(Some(key.columns.len() as i64)),
                ),
                ("relpersistence", ScalarValue::from("p")),
                ("relowner", ScalarValue::Int64(Some(10))),
                ("reltuples", ScalarValue::Float64(Some(-1.0))),
                ("relpages", ScalarValue::Int64(Some(0))),
                ("relhasindex", ScalarValue::Boolean(Some(false))),
                ("relispartition", ScalarValue::Boolean(Some(false))),
                ("relreplident", ScalarValue::from("n")),
            ])
        })
        .collect();
    batch_by_name(schema, rows)
}

/// pg_index rows, one per constraint (`_public_namespace`: an index row names none).
pub(super) fn index_rows(
    schema: &SchemaRef,
    snapshot: &Snapshot,
    table_oids: &HashMap<String, i64>,
    _public_namespace: i64,
) -> DataFusionResult<RecordBatch> {
    let rows = constraints(snapshot, table_oids)
        .into_iter()
        .map(|(table_oid, relation, key, place)| {
            let columns = attnums(key);
            let zeros = vec![0; columns.len()];
            let classes: Vec<i64> = key
                .columns
                .iter()
                .map(|&column| default_operator_class(relation, column))
                .collect();
            let count = ScalarValue::Int64(Some(columns.len() as i64));
            let yes = ScalarValue::Boolean(Some(true));
            let no = ScalarValue::Boolean(Some(false));
            HashMap::from([
                (
                    "indexrelid",
                    ScalarValue::Int64(Some(index_oid(relation, place))),
                ),
                ("indrelid", ScalarValue::Int64(Some(table_oid))),
                ("indnatts", count.clone()),
                ("indnkeyatts", count),
                ("indisunique", yes.clone()),
                ("indnullsnotdistinct", no.clone()),
                ("indisprimary", ScalarValue::Boolean(Some(key.primary))),
                ("indisexclusion", no.clone()),
                ("indimmediate", yes.clone()),
                ("indisclustered", no.clone()),
                ("indisvalid", yes.clone()),
                ("indcheckxmin", no.clone()),
                ("indisready", yes.clone()),
                ("indislive", yes),
                ("indisreplident", no),
                ("indkey", ScalarValue::from(joined(&columns, " "))),
                ("indcollation", ScalarValue::from(joined(&zeros, " "))),
                ("indclass", ScalarValue::from(joined(&classes, " "))),
                ("indoption", ScalarValue::from(joined(&zeros, " "))),
            ])
        })
        .collect();
    batch_by_name(schema, rows)
}

/// pg_constraint rows: contype 'p' or 'u', with the index that enforces it.
pub(super) fn constraint_rows(
    schema: &SchemaRef,
    snapshot: &Snapshot,
    table_oids: &HashMap<String, i64>,
    public_namespace: i64,
) -> DataFusionResult<RecordBatch> {
    let rows = constraints(snapshot, table_oids)
        .into_iter()
        .map(|(table_oid, relation, key, place)| {
            let no = ScalarValue::Boolean(Some(false));
            let zero = ScalarValue::Int64(Some(0));
            HashMap::from([
                (
                    "oid",
                    ScalarValue::Int64(Some(constraint_oid(relation, place))),
                ),
                ("conname", ScalarValue::from(key.name.as_str())),
                ("connamespace", ScalarValue::Int64(Some(public_namespace))),
                (
                    "contype",
                    ScalarValue::from(if key.primary { "p" } else { "u" }),
                ),
                ("condeferrable", no.clone()),
                ("condeferred", no.clone()),
                ("convalidated", ScalarValue::Boolean(Some(true))),
                ("conrelid", ScalarValue::Int64(Some(table_oid))),
                ("contypid", zero.clone()),
                (
                    "conindid",
                    ScalarValue::Int64(Some(index_oid(relation, place))),
                ),
                ("conparentid", zero.clone()),
                ("confrelid", zero),
                ("confupdtype", ScalarValue::from(" ")),
                ("confdeltype", ScalarValue::from(" ")),
                ("confmatchtype", ScalarValue::from(" ")),
                ("conislocal", ScalarValue::Boolean(Some(true))),
                ("coninhcount", ScalarValue::Int64(Some(0))),
                ("connoinherit", ScalarValue::Boolean(Some(true))),
                (
                    "conkey",
                    ScalarValue::from(format!("[{}]", joined(&attnums(key), ", "))),
                ),
            ])
        })
        .collect();
    batch_by_name(schema, rows)
}

/// A batch of `schema` from rows given by column name; a column a row does not name is NULL
/// (its type's zero where the library's column takes no NULL), and each value is cast to its
/// column's type.
pub(super) fn batch_by_name(
    schema: &SchemaRef,
    rows: Vec<HashMap<&str, ScalarValue>>,
) -> DataFusionResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> DataFusionResult<ArrayRef> {
            let values = rows
                .iter()
                .map(|row| match row.get(field.name().as_str()) {
                    Some(value) => value.cast_to(field.data_type()),
                    None if field.is_nullable() => ScalarValue::try_from(field.data_type()),
                    None => ScalarValue::new_default(field.data_type()),
                })
                .collect::<DataFusionResult<Vec<_>>>()?;
            if values.is_empty() {
                return Ok(datafusion::arrow::array::new_empty_array(field.data_type()));
            }
            ScalarValue::iter_to_array(values)
        })
        .collect::<DataFusionResult<Vec<_>>>()?;
    let options =
        datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// The numbers of a vector or array column as the library keeps it in text: `1 2`
/// (int2vector, oidvector), `[1, 2]` or `{1,2}` (arrays).
fn numbers(text: &str) -> Vec<i64> {
    text.split(|character: char| !(character.is_ascii_digit() || character == '-'))
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// How [`KeyVector`] turns a key column's text into a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Expansion {
    /// `pg_key_elements(column)`: the elements, as bigints (what `unnest` expands).
    Elements,
    /// `pg_key_subscripts(column)`: their positions from 1 (`generate_subscripts(column, 1)`).
    Subscripts,
    /// `pg_expandarray(column)`: a record (x: element, n: position) per element, as
    /// information_schema._pg_expandarray returns them.
    Records,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyVector {
    name: &'static str,
    expansion: Expansion,
    signature: Signature,
}

fn record_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("n", DataType::Int32, true),
    ])
}

impl ScalarUDFImpl for KeyVector {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        let element = match self.expansion {
            Expansion::Elements => DataType::Int64,
            Expansion::Subscripts => DataType::Int32,
            Expansion::Records => DataType::Struct(record_fields()),
        };
        Ok(DataType::List(Arc::new(Field::new_list_field(
            element, true,
        ))))
    }

    fn invoke_with_args(&self, arguments: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&arguments.args[..1])?;
        let text = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Internal(format!("{} takes text", self.name)))?;
        let lists: ArrayRef = match self.expansion {
            Expansion::Elements | Expansion::Subscripts => {
                let mut elements = ListBuilder::new(Int64Builder::new());
                for value in text.iter() {
                    match value {
                        Some(value) => {
                            let numbers = numbers(value);
                            if self.expansion == Expansion::Elements {
                                elements.values().append_slice(&numbers);
                            } else {
                                let positions: Vec<i64> = (1..=numbers.len() as i64).collect();
                                elements.values().append_slice(&positions);
                            }
                            elements.append(true);
                        }
                        None => elements.append(false),
                    }
                }
                let lists = elements.finish();
                if self.expansion == Expansion::Subscripts {
                    datafusion::arrow::compute::cast(&lists, &self.return_type(&[])?)?
                } else {
                    Arc::new(lists)
                }
            }
            Expansion::Records => {
                let fields = record_fields();
                let mut records = ListBuilder::new(StructBuilder::new(
                    fields.clone(),
                    vec![Box::new(Int64Builder::new()), Box::new(Int32Builder::new())],
                ))
                .with_field(Arc::new(Field::new_list_field(
                    DataType::Struct(fields),
                    true,
                )));
                for value in text.iter() {
                    match value {
                        Some(value) => {
                            for (position, number) in numbers(value).into_iter().enumerate() {
                                let record = records.values();
                                record
                                    .field_builder::<Int64Builder>(0)
                                    .ok_or_else(|| DataFusionError::Internal("x".into()))?
                                    .append_value(number);
                                record
                                    .field_builder::<Int32Builder>(1)
                                    .ok_or_else(|| DataFusionError::Internal("n".into()))?
                                    .append_value(position as i32 + 1);
                                record.append(true);
                            }
                            records.append(true);
                        }
                        None => records.append(false),
                    }
                }
                Arc::new(records.finish())
            }
        };
        if lists.len() == 1
            && arguments
                .args
                .iter()
                .all(|argument| matches!(argument, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &lists, 0,
            )?));
        }
        Ok(ColumnarValue::Array(lists))
    }
}

/// `pg_key_elements`, `pg_key_subscripts` and `pg_expandarray`, which the catalog rewrite puts
/// under `unnest` in place of Postgres's set-returning calls on key columns; and
/// `pg_get_indexdef` and `pg_get_constraintdef` for the constraints' oids.
pub(super) fn functions(pinned: &Arc<PinnedSnapshot>) -> Vec<ScalarUDF> {
    let definitions = [Definition::Index, Definition::Constraint]
        .into_iter()
        .map(|definition| {
            ScalarUDF::new_from_impl(Definitions {
                definition,
                pinned: Arc::clone(pinned),
                signature: Signature::variadic_any(Volatility::Stable),
            })
        });
    [
        ("pg_key_elements", Expansion::Elements),
        ("pg_key_subscripts", Expansion::Subscripts),
        ("pg_expandarray", Expansion::Records),
    ]
    .into_iter()
    .map(|(name, expansion)| {
        ScalarUDF::new_from_impl(KeyVector {
            name,
            expansion,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    })
    .chain(definitions)
    .collect()
}

/// The table and key an index or constraint oid of [`index_oid`] or [`constraint_oid`] names,
/// and whether it is the constraint's.
fn key_of_oid(snapshot: &Snapshot, oid: i64) -> Option<(&Relation, &UniqueKey, bool)> {
    let offset = oid.checked_sub(KEY_OID_BASE)?;
    if offset < 0 {
        return None;
    }
    let relation = snapshot
        .catalog
        .by_id(u64::try_from(offset / KEYS_PER_RELATION).ok()?)?;
    let place = offset % KEYS_PER_RELATION;
    let (place, constraint) = if place >= KEYS_PER_RELATION / 2 {
        (place - KEYS_PER_RELATION / 2, true)
    } else {
        (place, false)
    };
    let key = relation.unique_keys.get(usize::try_from(place).ok()?)?;
    Some((relation.as_ref(), key, constraint))
}

/// A name as Postgres prints it in a definition: quoted unless it is a plain lower-case word.
fn quoted_if_needed(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && name.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
        });
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Definition {
    /// `pg_get_indexdef(index [, column, pretty])`: the CREATE INDEX statement, or the name of
    /// its `column`-th column (from 1; 0 for the statement).
    Index,
    /// `pg_get_constraintdef(constraint [, pretty])`: `PRIMARY KEY (a, b)`, `UNIQUE (c)`.
    Constraint,
}

/// [`Definition`]s of the constraints' indexes and constraints, read from the pinned snapshot;
/// other oids (the system catalogs') have none: NULL for an index, empty for a constraint, as
/// the library answers.
#[derive(Debug)]
struct Definitions {
    definition: Definition,
    pinned: Arc<PinnedSnapshot>,
    signature: Signature,
}

impl PartialEq for Definitions {
    fn eq(&self, other: &Self) -> bool {
        self.definition == other.definition
    }
}

impl Eq for Definitions {}

impl std::hash::Hash for Definitions {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.definition.hash(state);
    }
}

impl ScalarUDFImpl for Definitions {
    fn name(&self) -> &str {
        match self.definition {
            Definition::Index => "pg_get_indexdef",
            Definition::Constraint => "pg_get_constraintdef",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arguments: &[DataType]) -> DataFusionResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, arguments: ScalarFunctionArgs) -> DataFusionResult<ColumnarValue> {
        let rows = arguments.number_rows;
        let integers = |position: usize| -> DataFusionResult<Option<ArrayRef>> {
            arguments
                .args
                .get(position)
                .map(|argument| {
                    datafusion::arrow::compute::cast(&argument.to_array(rows)?, &DataType::Int64)
                        .map_err(DataFusionError::from)
                })
                .transpose()
        };
        let oids = integers(0)?
            .ok_or_else(|| DataFusionError::Plan(format!("{} takes an oid", self.name())))?;
        let oids = oids
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| DataFusionError::Internal("oids as bigints".into()))?;
        let columns = integers(1)?;
        let columns = columns.as_ref().and_then(|columns| {
            columns
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
        });
        let snapshot = self.pinned.get();
        let definitions: StringArray = (0..oids.len())
            .map(|row| {
                let found = oids
                    .is_valid(row)
                    .then(|| key_of_oid(&snapshot, oids.value(row)))
                    .flatten();
                match (self.definition, found) {
                    (Definition::Index, Some((relation, key, false))) => {
                        let column = columns
                            .filter(|columns| columns.is_valid(row))
                            .map_or(0, |columns| columns.value(row));
                        let names: Vec<String> = key
                            .columns
                            .iter()
                            .map(|&column| quoted_if_needed(relation.schema.field(column).name()))
                            .collect();
                        if column > 0 {
                            usize::try_from(column - 1)
                                .ok()
                                .and_then(|column| names.get(column).cloned())
                        } else {
                            Some(format!(
                                "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
                                quoted_if_needed(&key.name),
                                quoted_if_needed(&relation.name),
                                names.join(", ")
                            ))
                        }
                    }
                    (Definition::Constraint, Some((relation, key, true))) => {
                        let names: Vec<String> = key
                            .columns
                            .iter()
                            .map(|&column| quoted_if_needed(relation.schema.field(column).name()))
                            .collect();
                        let kind = if key.primary { "PRIMARY KEY" } else { "UNIQUE" };
                        Some(format!("{kind} ({})", names.join(", ")))
                    }
                    (Definition::Index, _) => None,
                    (Definition::Constraint, _) => Some(String::new()),
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(definitions)))
    }
}

#[cfg(test)]
mod tests {
    use super::numbers;

    #[test]
    fn vectors_and_arrays_in_text_give_their_numbers() {
        assert_eq!(numbers("1 2"), vec![1, 2]);
        assert_eq!(numbers("[3, 20, 1]"), vec![3, 20, 1]);
        assert_eq!(numbers("{1,2}"), vec![1, 2]);
        assert_eq!(numbers(""), Vec::<i64>::new());
    }
}
