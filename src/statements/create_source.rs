//! CREATE SOURCE name (columns) FROM KAFKA (...) FORMAT ... [INCLUDE ...]: a relation whose rows
//! come from a Kafka topic. Checked against the broker before it exists.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::create_connection::endpoint;
use super::create_table::fields;
use crate::catalog::RelationKind;
use crate::connectors::decode::include_type;
use crate::connectors::envelope::payload_schema;
use crate::connectors::{ConnectorDefinition, SourceDefinition, kafka};
use crate::coordinator::NewRelation;
use crate::error::{ConnectorError, PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::streaming::{CreateSource, Envelope, Format, StartOffset};

pub(super) async fn execute(session: &Session, create: &CreateSource) -> Result<QueryResult> {
    if create.envelope == Envelope::Debezium && !matches!(create.format, Format::Json) {
        return Err(
            PlanError::Unsupported("ENVELOPE DEBEZIUM takes FORMAT JSON values".into()).into(),
        );
    }
    let payload_fields = payload_fields(create)?;
    let mut all_fields = payload_fields.clone();
    for include in &create.include {
        let name = include.column_name();
        if all_fields.iter().any(|field| field.name() == &name) {
            return Err(PlanError::DuplicateColumn(name).into());
        }
        all_fields.push(Field::new(
            name,
            include_type(include.kind, &create.format),
            true,
        ));
    }
    let watermark = create
        .watermark
        .as_ref()
        .map(|clause| super::create_table::resolve_watermark(clause, &all_fields))
        .transpose()?;
    let topic = create
        .kafka
        .topic
        .clone()
        .ok_or_else(|| ConnectorError::InvalidOption("a source needs TOPIC '<name>'".into()))?;
    let (endpoint, connection) = endpoint(session, &create.kafka)?;
    let start = create.kafka.start.clone().unwrap_or(StartOffset::Earliest);
    let (checked_endpoint, checked_topic) = (endpoint.clone(), topic.clone());
    // Recovery uses the offsets resolved when the source was first created: 'latest' then is not
    // 'latest' now, and the broker may be away.
    let start_offsets = match session.recovering() {
        Some(record) => record
            .start_offsets
            .iter()
            .map(|&(partition, offset)| (partition, rdkafka::Offset::from_raw(offset)))
            .collect(),
        None => {
            let errors_topic = create.errors_topic.clone();
            kafka::blocking(move || {
                let partitions = kafka::topic_partitions(&checked_endpoint, &checked_topic)?;
                if let Some(errors_topic) = &errors_topic {
                    kafka::ensure_dead_letter_topic(
                        &checked_endpoint,
                        errors_topic,
                        &checked_topic,
                        partitions.len(),
                    )?;
                }
                kafka::start_offsets(&checked_endpoint, &checked_topic, &partitions, &start)
            })
            .await?
        }
    };
    let definition = SourceDefinition {
        endpoint,
        topic,
        start_offsets,
        format: create.format.clone(),
        envelope: create.envelope,
        payload_schema: payload_schema(create.envelope, &Schema::new(payload_fields)),
        include: create.include.clone(),
        errors_topic: create.errors_topic.clone(),
    };
    let relation = NewRelation {
        sql: create.sql.clone(),
        recovered_id: None,
        name: create.name.clone(),
        kind: RelationKind::Source,
        schema: Arc::new(Schema::new(all_fields)),
        definition: None,
        depends_on: connection.into_iter().collect(),
        dataflow: None,
        connector: Some(ConnectorDefinition::Source(Arc::new(definition))),
        watermark,
        unique_keys: Vec::new(),
    };
    super::create_relation(session, relation, create.if_not_exists).await?;
    Ok(QueryResult::Command(CommandTag::new("CREATE SOURCE")))
}

/// The columns a payload decodes into. TEXT and BYTES payloads are one column (`text` or
/// `data` unless named).
fn payload_fields(create: &CreateSource) -> Result<Vec<Field>> {
    // A source's rows are what its topic holds: no defaults, keys or sequences of its own.
    for column in &create.columns {
        let refused = column.options.iter().find(|option| {
            !matches!(
                option.option,
                datafusion::sql::sqlparser::ast::ColumnOption::NotNull
                    | datafusion::sql::sqlparser::ast::ColumnOption::Null
            )
        });
        if let Some(option) = refused {
            return Err(PlanError::Unsupported(format!(
                "column option {} is not supported on a source",
                option.option
            ))
            .into());
        }
        if crate::sql::types::is_serial(&column.data_type) {
            return Err(PlanError::Unsupported(
                "serial columns are not supported on a source".into(),
            )
            .into());
        }
    }
    let declared = fields(&create.columns)?;
    let (default_name, data_type) = match create.format {
        Format::Json | Format::Csv { .. } => {
            if declared.is_empty() {
                return Err(PlanError::Syntax(
                    "a JSON or CSV source needs its columns: CREATE SOURCE name (column type, ...)"
                        .into(),
                )
                .into());
            }
            return Ok(declared);
        }
        Format::Text => ("text", DataType::Utf8),
        Format::Bytes => ("data", DataType::Binary),
    };
    match declared.as_slice() {
        [] => Ok(vec![Field::new(default_name, data_type, true)]),
        [field] if field.data_type() == &data_type => Ok(declared),
        _ => Err(PlanError::DatatypeMismatch(format!(
            "a {} source has one column of type {}",
            if data_type == DataType::Utf8 {
                "TEXT"
            } else {
                "BYTES"
            },
            if data_type == DataType::Utf8 {
                "text"
            } else {
                "bytea"
            },
        ))
        .into()),
    }
}
