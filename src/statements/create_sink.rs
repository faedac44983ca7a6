//! CREATE SINK name FROM relation INTO KAFKA (...) [KEY (columns)] FORMAT JSON ENVELOPE UPSERT |
//! DEBEZIUM: writes the relation's contents, then its changes every epoch, to a topic.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;

use super::create_connection::endpoint;
use crate::catalog::RelationKind;
use crate::connectors::{ConnectorDefinition, SinkDefinition, kafka};
use crate::coordinator::NewRelation;
use crate::error::{ConnectorError, PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::streaming::{CreateSink, Envelope, Format};

pub(super) async fn execute(session: &Session, create: &CreateSink) -> Result<QueryResult> {
    if create.format != Format::Json {
        return Err(PlanError::Unsupported("sinks write FORMAT JSON only".into()).into());
    }
    match (create.envelope, create.key.is_empty()) {
        (Envelope::None, _) => {
            return Err(ConnectorError::InvalidOption(
                "a sink needs ENVELOPE UPSERT or ENVELOPE DEBEZIUM".into(),
            )
            .into());
        }
        (Envelope::Upsert, true) => {
            return Err(ConnectorError::InvalidOption(
                "ENVELOPE UPSERT needs KEY (columns) to say which row a message replaces".into(),
            )
            .into());
        }
        _ => {}
    }
    let snapshot = session.pinned.get();
    let from = snapshot
        .catalog
        .get(&create.from)
        .cloned()
        .ok_or_else(|| PlanError::UndefinedTable(create.from.clone()))?;
    match from.kind {
        RelationKind::Table | RelationKind::MaterializedView | RelationKind::Source => {}
        RelationKind::View => {
            return Err(PlanError::Unsupported(format!(
                "a sink needs maintained rows; \"{}\" is a view, make it a MATERIALIZED VIEW",
                from.name
            ))
            .into());
        }
        RelationKind::Sink | RelationKind::Connection => {
            return Err(PlanError::UndefinedTable(create.from.clone()).into());
        }
    }
    let key = create
        .key
        .iter()
        .map(|column| {
            from.schema
                .index_of(column)
                .map_err(|_| PlanError::UndefinedColumn(column.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let topic = create
        .kafka
        .topic
        .clone()
        .ok_or_else(|| ConnectorError::InvalidOption("a sink needs TOPIC '<name>'".into()))?;
    let (endpoint, connection) = endpoint(session, &create.kafka)?;
    let checked = endpoint.clone();
    // Recovery recreates what was checked when it was first created; the broker may be away.
    if session.recovering().is_none() {
        kafka::blocking(move || kafka::check_broker(&checked)).await?;
    }
    let definition = SinkDefinition {
        endpoint,
        topic,
        key,
        envelope: create.envelope,
        schema: Arc::clone(&from.schema),
    };
    // The relation comes first: the coordinator finds the sink's input there.
    let mut depends_on = vec![from.id];
    depends_on.extend(connection);
    let relation = NewRelation {
        sql: create.sql.clone(),
        recovered_id: None,
        name: create.name.clone(),
        kind: RelationKind::Sink,
        schema: Arc::new(Schema::empty()),
        definition: None,
        depends_on,
        dataflow: None,
        connector: Some(ConnectorDefinition::Sink(Arc::new(definition))),
        watermark: None,
        unique_keys: Vec::new(),
    };
    super::create_relation(session, relation, create.if_not_exists).await?;
    Ok(QueryResult::Command(CommandTag::new("CREATE SINK")))
}
