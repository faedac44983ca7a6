//! The catalog: every named relation (table, view, materialized view), its schema, definition
//! and dependencies. Immutable per epoch; the coordinator publishes a new one on every change.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use crate::connectors::ConnectorDefinition;
use crate::error::CatalogError;

/// Field metadata key holding the declared length of a VARCHAR(n) column, checked on writes.
pub const MAX_LENGTH_KEY: &str = "tributary.max_length";

/// Field metadata key naming the sequence a `serial` column takes its default from.
pub const SEQUENCE_KEY: &str = "tributary.sequence";

/// Field metadata key holding a column's constant DEFAULT as text, cast to the column's type
/// where a write leaves the column out.
pub const DEFAULT_KEY: &str = "tributary.default";

/// Identifies a relation for its whole life; names can be dropped and reused, ids cannot.
/// Ids grow with creation order, and a view can only read relations that existed before it, so
/// ascending id order is a valid order to maintain views in.
pub type RelationId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
    MaterializedView,
    /// Rows from a Kafka topic; read like a table, written only by its connector.
    Source,
    /// Writes a relation's changes to a Kafka topic; has no rows of its own.
    Sink,
    /// Reusable Kafka settings; has no rows.
    Connection,
}

impl RelationKind {
    pub fn describe(self) -> &'static str {
        match self {
            RelationKind::Table => "table",
            RelationKind::View => "view",
            RelationKind::MaterializedView => "materialized view",
            RelationKind::Source => "source",
            RelationKind::Sink => "sink",
            RelationKind::Connection => "connection",
        }
    }

    /// Whether the kind has rows a query can read.
    pub fn is_queryable(self) -> bool {
        match self {
            RelationKind::Table
            | RelationKind::View
            | RelationKind::MaterializedView
            | RelationKind::Source => true,
            RelationKind::Sink | RelationKind::Connection => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Relation {
    pub id: RelationId,
    pub name: String,
    pub kind: RelationKind,
    pub schema: SchemaRef,
    /// The defining query of a view, as the user wrote it.
    pub definition: Option<String>,
    /// Relations this one reads (directly).
    pub depends_on: Vec<RelationId>,
    /// How a source, sink or connection reaches Kafka.
    pub connector: Option<ConnectorDefinition>,
    /// The statement that created it, as written: what checkpoints keep and recovery plans
    /// again.
    pub sql: String,
    /// A table's or source's event time, declared with `WATERMARK FOR`.
    pub watermark: Option<Watermark>,
    /// The plan of the dataflow maintaining a materialized view, as JSON (a
    /// `dataflow::DataflowPlan`): what EXPLAIN shows and recovery renders again.
    pub plan: Option<Arc<str>>,
    /// A table's PRIMARY KEY and UNIQUE constraints, the primary key first.
    pub unique_keys: Vec<UniqueKey>,
}

impl Relation {
    /// The table's primary key, if it has one.
    pub fn primary_key(&self) -> Option<&UniqueKey> {
        self.unique_keys.iter().find(|key| key.primary)
    }
}

/// A PRIMARY KEY or UNIQUE constraint: no two rows of the table agree on all of `columns`. As in
/// Postgres, a row with a NULL in one of them is exempt (a primary key's columns are NOT NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueKey {
    /// The constraint's name, which is also its index's: `t_pkey`, `t_a_key` unless named.
    pub name: String,
    /// Indexes of the key's columns in the table's schema, in the order declared.
    pub columns: Vec<usize>,
    pub primary: bool,
}

/// `WATERMARK FOR column AS column - delay`: the column holding a row's event time, and how far
/// behind the greatest event time seen the watermark trails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Index of the timestamp column in the relation's schema.
    pub column: usize,
    pub delay_nanoseconds: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_name: BTreeMap<String, Arc<Relation>>,
    next_id: RelationId,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&Arc<Relation>> {
        self.by_name.get(name)
    }

    pub fn by_id(&self, id: RelationId) -> Option<&Arc<Relation>> {
        self.by_name.values().find(|relation| relation.id == id)
    }

    pub fn relations(&self) -> impl Iterator<Item = &Arc<Relation>> {
        self.by_name.values()
    }

    /// The id the next [`Catalog::add`] will give.
    pub fn next_id(&self) -> RelationId {
        self.next_id + 1
    }

    /// The highest id given so far, dropped relations included.
    pub fn last_id(&self) -> RelationId {
        self.next_id
    }

    /// Makes the next [`Catalog::add`] give `id`: recovery recreates relations under the ids
    /// they had. Ids never go back.
    pub fn reserve_through(&mut self, id: RelationId) {
        self.next_id = self.next_id.max(id);
    }

    /// Adds a relation under the next id (whatever `relation.id` says).
    pub fn add(&mut self, relation: Relation) -> Result<Arc<Relation>, CatalogError> {
        if self.by_name.contains_key(&relation.name) {
            return Err(CatalogError::DuplicateObject(relation.name));
        }
        self.next_id += 1;
        let relation = Arc::new(Relation {
            id: self.next_id,
            ..relation
        });
        self.by_name
            .insert(relation.name.clone(), Arc::clone(&relation));
        Ok(relation)
    }

    /// Puts `relation` in the place of the relation with its id and name: CREATE OR REPLACE.
    pub fn replace(&mut self, relation: Relation) -> Result<Arc<Relation>, CatalogError> {
        match self.by_name.get(&relation.name) {
            Some(existing) if existing.id == relation.id => {}
            _ => return Err(CatalogError::ChangedMeanwhile(relation.name)),
        }
        let relation = Arc::new(relation);
        self.by_name
            .insert(relation.name.clone(), Arc::clone(&relation));
        Ok(relation)
    }

    /// Relations that read `id` directly.
    pub fn dependents(&self, id: RelationId) -> Vec<&Arc<Relation>> {
        self.by_name
            .values()
            .filter(|relation| relation.depends_on.contains(&id))
            .collect()
    }

    /// The relations a DROP of `name` removes: `name` itself and, with `cascade`, everything that
    /// depends on it transitively. Without `cascade`, dependents are an error.
    pub fn plan_drop(
        &self,
        name: &str,
        kind: RelationKind,
        cascade: bool,
    ) -> Result<Vec<Arc<Relation>>, CatalogError> {
        let relation = self
            .get(name)
            .ok_or_else(|| CatalogError::UndefinedObject {
                kind: kind.describe(),
                name: name.to_string(),
            })?;
        if relation.kind != kind {
            return Err(CatalogError::WrongObjectType {
                name: name.to_string(),
                expected: kind.describe(),
            });
        }
        let direct = self.dependents(relation.id);
        if !cascade && !direct.is_empty() {
            let dependents = direct
                .iter()
                .map(|dependent| format!("{} {}", dependent.kind.describe(), dependent.name))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(CatalogError::DependentObjects {
                kind: kind.describe(),
                name: name.to_string(),
                dependents,
            });
        }
        let mut doomed = vec![Arc::clone(relation)];
        let mut index = 0;
        while index < doomed.len() {
            for dependent in self.dependents(doomed[index].id) {
                if !doomed.iter().any(|known| known.id == dependent.id) {
                    doomed.push(Arc::clone(dependent));
                }
            }
            index += 1;
        }
        Ok(doomed)
    }

    /// Gives relation `id` a new name and statement (a rename, or a view reading what was
    /// renamed). The caller checked that the name is free.
    pub fn redefine(
        &mut self,
        id: RelationId,
        name: &str,
        sql: &str,
        definition: Option<&str>,
    ) -> Result<(), CatalogError> {
        let Some(relation) = self.by_id(id) else {
            return Err(CatalogError::UndefinedObject {
                kind: "relation",
                name: format!("with id {id}"),
            });
        };
        if relation.name != name && self.by_name.contains_key(name) {
            return Err(CatalogError::DuplicateObject(name.to_string()));
        }
        let relation = Relation {
            name: name.to_string(),
            sql: sql.to_string(),
            definition: definition.map(str::to_string),
            ..relation.as_ref().clone()
        };
        self.remove(id);
        self.by_name
            .insert(relation.name.clone(), Arc::new(relation));
        Ok(())
    }

    pub fn remove(&mut self, id: RelationId) {
        self.by_name.retain(|_, relation| relation.id != id);
    }
}

/// `schema` without NOT NULL: the shape of stored rows and of what DataFusion is told. NOT NULL
/// is Tributary's to enforce (with Postgres's error), not DataFusion's to trip over while it
/// plans an INSERT.
pub fn without_constraints(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| Field::new(field.name(), field.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}
