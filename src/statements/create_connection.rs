//! CREATE CONNECTION name TO KAFKA (BROKER '...', PROPERTIES (...)): Kafka settings that sources
//! and sinks name instead of repeating them.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;

use crate::catalog::{RelationId, RelationKind};
use crate::connectors::{ConnectorDefinition, KafkaEndpoint, kafka};
use crate::coordinator::NewRelation;
use crate::error::{CatalogError, ConnectorError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::streaming::{CreateConnection, KafkaOptions};
use crate::storage::secrets::SecretValue;

pub(super) async fn execute(session: &Session, create: &CreateConnection) -> Result<QueryResult> {
    if create.kafka.topic.is_some() || create.kafka.start.is_some() {
        return Err(ConnectorError::InvalidOption(
            "a connection names a broker; TOPIC and START OFFSET belong to sources and sinks"
                .into(),
        )
        .into());
    }
    let (endpoint, _) = endpoint(session, &create.kafka)?;
    let checked = endpoint.clone();
    // Recovery recreates what was checked when it was first created; the broker may be away.
    if session.recovering().is_none() {
        kafka::blocking(move || kafka::check_broker(&checked)).await?;
    }
    let relation = NewRelation {
        sql: create.sql.clone(),
        recovered_id: None,
        name: create.name.clone(),
        kind: RelationKind::Connection,
        schema: Arc::new(Schema::empty()),
        definition: None,
        depends_on: Vec::new(),
        dataflow: None,
        connector: Some(ConnectorDefinition::Connection(endpoint)),
        watermark: None,
        unique_keys: Vec::new(),
    };
    super::create_relation(session, relation, create.if_not_exists).await?;
    Ok(QueryResult::Command(CommandTag::new("CREATE CONNECTION")))
}

/// The broker and properties of a source's or sink's options: given inline, or taken from the
/// named connection (whose id the caller records as a dependency).
pub(super) fn endpoint(
    session: &Session,
    options: &KafkaOptions,
) -> Result<(KafkaEndpoint, Option<RelationId>)> {
    let secrets = secrets(session, options)?;
    let Some(connection) = &options.connection else {
        let broker = options.broker.clone().ok_or_else(|| {
            ConnectorError::InvalidOption("KAFKA needs BROKER '<host:port>' or CONNECTION".into())
        })?;
        return Ok((
            KafkaEndpoint {
                broker,
                properties: options.properties.clone(),
                secrets,
            },
            None,
        ));
    };
    if options.broker.is_some() {
        return Err(ConnectorError::InvalidOption(
            "give either BROKER or CONNECTION, not both".into(),
        )
        .into());
    }
    let snapshot = session.pinned.get();
    let relation =
        snapshot
            .catalog
            .get(connection)
            .ok_or_else(|| CatalogError::UndefinedObject {
                kind: "connection",
                name: connection.clone(),
            })?;
    let Some(ConnectorDefinition::Connection(endpoint)) = &relation.connector else {
        return Err(CatalogError::WrongObjectType {
            name: connection.clone(),
            expected: "connection",
        }
        .into());
    };
    let mut endpoint = endpoint.clone();
    // The statement's own PROPERTIES add to (and override) the connection's.
    endpoint
        .properties
        .extend(options.properties.iter().cloned());
    endpoint.secrets.extend(secrets);
    Ok((endpoint, Some(relation.id)))
}

/// The values of the statement's secret properties. One given inline is stored first, so the
/// statement, logged as `SECRET '<id>'` once it succeeds, finds it again in recovery.
fn secrets(session: &Session, options: &KafkaOptions) -> Result<Vec<(String, SecretValue)>> {
    let store = session.coordinator.secrets();
    let mut values = Vec::with_capacity(options.secrets.len());
    for secret in &options.secrets {
        let value = match &secret.value {
            Some(value) => {
                store.store(&secret.id, value)?;
                value.clone()
            }
            None => store
                .get(&secret.id)
                .ok_or_else(|| CatalogError::UndefinedSecret(secret.id.clone()))?,
        };
        values.push((secret.key.clone(), value));
    }
    Ok(values)
}
