//! SUBSCRIBE: a table's, source's or materialized view's rows as of now, then each change as the
//! coordinator publishes it, as rows `(tributary_epoch, tributary_diff, columns...)`. The server
//! streams them (as rows or COPY data) until the client cancels or goes away; a cursor hands
//! them out through FETCH.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::RowConverter;

use crate::catalog::{Relation, RelationKind};
use crate::coordinator::Subscription;
use crate::dataflow::ChangeBatch;
use crate::dataflow::change_batch::row_converter_for;
use crate::error::{CatalogError, PlanError, Result};
use crate::session::{QueryResult, Session};
use crate::sql::streaming::{Subscribe, SubscribeOutput};

/// The columns every subscription row starts with: the epoch that made the change (all changes
/// of one epoch share it, and epochs only grow), and how many copies of the row it added (> 0)
/// or removed (< 0).
pub const EPOCH_COLUMN: &str = "tributary_epoch";
pub const DIFF_COLUMN: &str = "tributary_diff";

pub(super) async fn execute(
    session: &Session,
    subscribe: &Subscribe,
    output: &SubscribeOutput,
) -> Result<QueryResult> {
    match output {
        SubscribeOutput::Rows | SubscribeOutput::Copy => {
            let rows = start(session, subscribe).await?;
            Ok(QueryResult::Subscription {
                rows,
                copy: *output == SubscribeOutput::Copy,
            })
        }
        SubscribeOutput::Cursor(name) => {
            super::cursor::declare_subscription(session, name, subscribe).await
        }
    }
}

/// Starts a subscription to the relation `subscribe` names.
pub(super) async fn start(session: &Session, subscribe: &Subscribe) -> Result<SubscriptionRows> {
    let relation = subscribable(session, &subscribe.relation)?;
    let subscription = session.coordinator.subscribe(relation.id).await?;
    SubscriptionRows::new(subscription, subscribe.snapshot)
}

/// The columns SUBSCRIBE streams, for the extended protocol's Describe.
pub(super) fn describe(session: &Session, subscribe: &Subscribe) -> Result<SchemaRef> {
    Ok(output_schema(
        &subscribable(session, &subscribe.relation)?.schema,
    ))
}

/// The relation `name`, if SUBSCRIBE can read it: a table, source or materialized view.
fn subscribable(session: &Session, name: &str) -> Result<Arc<Relation>> {
    let snapshot = session.pinned.get();
    let relation = snapshot
        .catalog
        .get(name)
        .ok_or_else(|| PlanError::UndefinedTable(name.to_string()))?;
    match relation.kind {
        RelationKind::Table | RelationKind::Source | RelationKind::MaterializedView => {
            Ok(Arc::clone(relation))
        }
        RelationKind::View => Err(PlanError::Unsupported(format!(
            "SUBSCRIBE to the plain view \"{}\": create it as a MATERIALIZED VIEW to subscribe",
            relation.name
        ))
        .into()),
        RelationKind::Sink | RelationKind::Connection => Err(CatalogError::WrongObjectType {
            name: relation.name.clone(),
            expected: "table, source or materialized view",
        }
        .into()),
    }
}

/// The output schema for a relation's schema: the two change columns, then its columns, all
/// nullable (rows carry no constraints here).
fn output_schema(relation: &SchemaRef) -> SchemaRef {
    let mut fields = vec![
        Field::new(EPOCH_COLUMN, DataType::Int64, false),
        Field::new(DIFF_COLUMN, DataType::Int64, false),
    ];
    fields.extend(
        relation
            .fields()
            .iter()
            .map(|field| Field::new(field.name(), field.data_type().clone(), true)),
    );
    Arc::new(Schema::new(fields))
}

/// A subscription as rows: each epoch's changes consolidated (a row inserted and deleted in one
/// epoch does not appear; n copies of a row are one row with diff n), ordered by row.
pub struct SubscriptionRows {
    subscription: Subscription,
    schema: SchemaRef,
    converter: RowConverter,
    /// `WITH (SNAPSHOT = false)`: the first message, the relation's rows, is skipped.
    skip_snapshot: bool,
}

impl std::fmt::Debug for SubscriptionRows {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.subscription.fmt(formatter)
    }
}

impl SubscriptionRows {
    fn new(subscription: Subscription, snapshot: bool) -> Result<Self> {
        let schema = output_schema(&subscription.schema);
        let converter = row_converter_for(&subscription.schema)?;
        Ok(Self {
            subscription,
            schema,
            converter,
            skip_snapshot: !snapshot,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The next epoch's changes; waits until an epoch changes the relation. An error once the
    /// subscription has ended (the relation was dropped, the client fell too far behind, the
    /// server is stopping).
    pub async fn next_batch(&mut self) -> Result<RecordBatch> {
        loop {
            let batch = self.subscription.next().await?;
            if std::mem::take(&mut self.skip_snapshot) {
                continue;
            }
            let Some(first) = batch.changes.first() else {
                continue;
            };
            let changes = ChangeBatch::concat(&first.schema(), &batch.changes)?;
            let (changes, _) = changes.consolidate(&self.converter)?;
            if changes.is_empty() {
                continue;
            }
            let rows = changes.len();
            let mut columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![batch.epoch as i64; rows])),
                Arc::new(changes.weights),
            ];
            columns.extend(changes.rows.columns().iter().cloned());
            return Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        }
    }
}
