//! SHOW SOURCES / SINKS / CONNECTIONS: name and topic (or broker), sorted by name.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::catalog::RelationKind;
use crate::connectors::ConnectorDefinition;
use crate::error::Result;
use crate::session::{QueryResult, Session};
use crate::sql::streaming::ConnectorKind;

pub(super) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kafka", DataType::Utf8, true),
    ]))
}

pub(super) fn execute(session: &Session, kind: ConnectorKind) -> Result<QueryResult> {
    let kind = match kind {
        ConnectorKind::Source => RelationKind::Source,
        ConnectorKind::Sink => RelationKind::Sink,
        ConnectorKind::Connection => RelationKind::Connection,
    };
    let snapshot = session.pinned.get();
    let mut names = Vec::new();
    let mut kafka = Vec::new();
    for relation in snapshot.catalog.relations().filter(|r| r.kind == kind) {
        names.push(relation.name.clone());
        kafka.push(
            relation
                .connector
                .as_ref()
                .map(|connector| match connector {
                    ConnectorDefinition::Connection(endpoint) => endpoint.broker.clone(),
                    ConnectorDefinition::Source(source) => {
                        format!("{} topic {}", source.endpoint.broker, source.topic)
                    }
                    ConnectorDefinition::Sink(sink) => {
                        format!("{} topic {}", sink.endpoint.broker, sink.topic)
                    }
                }),
        );
    }
    let schema = schema();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(kafka)),
        ],
    )?;
    Ok(QueryResult::Rows {
        schema,
        batches: vec![batch],
    })
}
