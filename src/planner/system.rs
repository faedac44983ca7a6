//! The `tributary` system schema: relations about the server itself (its catalog, and the
//! progress and errors of its connectors), built from the pinned snapshot when scanned.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DataFusionResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::context::PinnedSnapshot;
use crate::connectors::status::lock;
use crate::coordinator::Snapshot;

/// The system relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SystemRelation {
    /// Every catalog object: id, name, kind, definition.
    Relations,
    /// Per source and partition: offset reached, high watermark, lag, messages, bytes, errors.
    SourceProgress,
    /// The malformed messages each source refused (the newest 10,000 per source).
    SourceErrors,
    /// Per sink: the last epoch written, epochs queued behind it, messages delivered, errors.
    SinkProgress,
    /// The recent checkpoints: epoch, when, how long (and how much of it the coordinator
    /// paused), how big, and the error of a failed one.
    Checkpoints,
    /// Per view emitting on window close and watermarked relation it reads: the rows kept out
    /// for arriving behind the watermark, and the watermark.
    LateRows,
    /// Per column of a table's PRIMARY KEY or UNIQUE constraint: the table, the constraint, its
    /// kind and the column's place in it (what information_schema's constraint views read).
    KeyColumns,
}

const SYSTEM_RELATIONS: [(&str, SystemRelation); 7] = [
    ("relations", SystemRelation::Relations),
    ("source_progress", SystemRelation::SourceProgress),
    ("source_errors", SystemRelation::SourceErrors),
    ("sink_progress", SystemRelation::SinkProgress),
    ("checkpoints", SystemRelation::Checkpoints),
    ("late_rows", SystemRelation::LateRows),
    ("key_columns", SystemRelation::KeyColumns),
];

#[derive(Debug)]
pub struct SystemSchema {
    pinned: Arc<PinnedSnapshot>,
}

impl SystemSchema {
    pub fn new(pinned: Arc<PinnedSnapshot>) -> Self {
        Self { pinned }
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_RELATIONS
            .iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> DataFusionResult<Option<Arc<dyn TableProvider>>> {
        Ok(SYSTEM_RELATIONS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, relation)| {
                Arc::new(SystemRelationProvider {
                    relation: *relation,
                    pinned: Arc::clone(&self.pinned),
                }) as Arc<dyn TableProvider>
            }))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_RELATIONS.iter().any(|(known, _)| *known == name)
    }
}

/// A system relation; its rows are built when the scan runs, so cached plans read fresh values.
#[derive(Debug)]
struct SystemRelationProvider {
    relation: SystemRelation,
    pinned: Arc<PinnedSnapshot>,
}

#[async_trait]
impl TableProvider for SystemRelationProvider {
    fn schema(&self) -> SchemaRef {
        schema(self.relation)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let columns = columns(self.relation, &self.pinned.get());
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema,
            projection.cloned(),
        )?)
    }
}

fn schema(relation: SystemRelation) -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let bigint = |name: &str| Field::new(name, DataType::Int64, true);
    let fields = match relation {
        SystemRelation::Relations => {
            vec![bigint("id"), text("name"), text("kind"), text("definition")]
        }
        SystemRelation::SourceProgress => vec![
            text("source"),
            text("topic"),
            Field::new("partition", DataType::Int32, true),
            bigint("offset"),
            bigint("high_watermark"),
            bigint("lag"),
            bigint("messages"),
            bigint("bytes"),
            bigint("errors"),
            text("state"),
        ],
        SystemRelation::SourceErrors => vec![
            text("source"),
            text("topic"),
            Field::new("partition", DataType::Int32, true),
            bigint("offset"),
            text("reason"),
            text("payload"),
        ],
        SystemRelation::SinkProgress => vec![
            text("sink"),
            text("topic"),
            bigint("epoch"),
            bigint("queued_epochs"),
            bigint("messages"),
            bigint("errors"),
            text("state"),
        ],
        SystemRelation::Checkpoints => vec![
            bigint("epoch"),
            Field::new(
                "finished_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Field::new("duration_ms", DataType::Float64, true),
            Field::new("capture_ms", DataType::Float64, true),
            bigint("bytes"),
            text("error"),
        ],
        SystemRelation::KeyColumns => vec![
            text("table_name"),
            text("constraint_name"),
            text("constraint_type"),
            text("column_name"),
            Field::new("ordinal_position", DataType::Int32, true),
        ],
        SystemRelation::LateRows => vec![
            text("view"),
            text("relation"),
            bigint("late_rows"),
            Field::new(
                "watermark",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
        ],
    };
    Arc::new(Schema::new(fields))
}

fn columns(relation: SystemRelation, snapshot: &Snapshot) -> Vec<ArrayRef> {
    match relation {
        SystemRelation::KeyColumns => {
            let mut rows: Vec<(String, String, &str, String, i32)> = Vec::new();
            for relation in snapshot.catalog.relations() {
                for key in &relation.unique_keys {
                    let kind = if key.primary { "PRIMARY KEY" } else { "UNIQUE" };
                    for (position, &column) in key.columns.iter().enumerate() {
                        rows.push((
                            relation.name.clone(),
                            key.name.clone(),
                            kind,
                            relation.schema.field(column).name().clone(),
                            position as i32 + 1,
                        ));
                    }
                }
            }
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.3))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.4))),
            ]
        }
        SystemRelation::Relations => {
            let relations: Vec<_> = snapshot.catalog.relations().collect();
            vec![
                Arc::new(Int64Array::from_iter_values(
                    relations.iter().map(|r| r.id as i64),
                )),
                Arc::new(StringArray::from_iter_values(
                    relations.iter().map(|r| r.name.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    relations.iter().map(|r| r.kind.describe()),
                )),
                Arc::new(StringArray::from_iter(
                    relations.iter().map(|r| r.definition.clone()),
                )),
            ]
        }
        SystemRelation::SourceProgress => {
            let mut rows = Vec::new();
            for status in snapshot.connectors.sources.values() {
                let state = lock(&status.state).clone();
                for progress in lock(&status.partitions).iter() {
                    rows.push((status, progress.clone(), state.clone()));
                }
            }
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(s, _, _)| s.name.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(s, _, _)| s.topic.clone()),
                )),
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|(_, p, _)| p.partition),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|(_, p, _)| p.offset),
                )),
                Arc::new(Int64Array::from_iter(rows.iter().map(|(_, p, _)| {
                    (p.high_watermark >= 0).then_some(p.high_watermark)
                }))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|(_, p, _)| {
                    (p.high_watermark >= 0).then_some((p.high_watermark - p.offset).max(0))
                }))),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|(_, p, _)| p.messages as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|(_, p, _)| p.bytes as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|(_, p, _)| p.errors as i64),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, _, state)| state.clone()),
                )),
            ]
        }
        SystemRelation::SourceErrors => {
            let mut rows = Vec::new();
            for status in snapshot.connectors.sources.values() {
                for error in lock(&status.errors).iter() {
                    rows.push((status, error.clone()));
                }
            }
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(s, _)| s.name.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(s, _)| s.topic.clone()),
                )),
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|(_, e)| e.partition),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|(_, e)| e.offset),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, e)| e.reason.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, e)| e.payload.clone()),
                )),
            ]
        }
        SystemRelation::SinkProgress => {
            let sinks: Vec<_> = snapshot.connectors.sinks.values().collect();
            vec![
                Arc::new(StringArray::from_iter_values(
                    sinks.iter().map(|s| s.name.clone()),
                )),
                Arc::new(StringArray::from_iter_values(
                    sinks.iter().map(|s| s.topic.clone()),
                )),
                Arc::new(Int64Array::from_iter_values(
                    sinks.iter().map(|s| s.epoch.load(Ordering::Acquire) as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    sinks
                        .iter()
                        .map(|s| s.queued_epochs.load(Ordering::Relaxed) as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    sinks
                        .iter()
                        .map(|s| s.messages.load(Ordering::Relaxed) as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    sinks
                        .iter()
                        .map(|s| s.errors.load(Ordering::Relaxed) as i64),
                )),
                Arc::new(StringArray::from_iter_values(
                    sinks.iter().map(|s| lock(&s.state).clone()),
                )),
            ]
        }
        SystemRelation::LateRows => {
            let name = |id| {
                snapshot
                    .catalog
                    .by_id(id)
                    .map(|relation| relation.name.clone())
                    .unwrap_or_default()
            };
            let rows = &snapshot.late_rows;
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(view, _)| name(*view)),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, counts)| name(counts.relation)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|(_, counts)| counts.rows as i64),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter(rows.iter().map(
                    |(_, counts)| {
                        (counts.watermark != crate::dataflow::watermark::NO_WATERMARK)
                            .then(|| counts.watermark.div_euclid(1000))
                    },
                ))),
            ]
        }
        SystemRelation::Checkpoints => {
            let reports = snapshot
                .checkpoints
                .as_ref()
                .map(|reports| reports.recent())
                .unwrap_or_default();
            vec![
                Arc::new(Int64Array::from_iter_values(
                    reports.iter().map(|r| r.epoch as i64),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(reports.iter().map(|r| {
                        r.finished_at
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|since| since.as_micros() as i64)
                            .unwrap_or(0)
                    }))
                    .with_timezone("+00:00"),
                ),
                Arc::new(Float64Array::from_iter_values(
                    reports.iter().map(|r| r.duration.as_secs_f64() * 1000.0),
                )),
                Arc::new(Float64Array::from_iter_values(
                    reports.iter().map(|r| r.capture.as_secs_f64() * 1000.0),
                )),
                Arc::new(Int64Array::from_iter_values(
                    reports.iter().map(|r| r.bytes as i64),
                )),
                Arc::new(StringArray::from_iter(
                    reports.iter().map(|r| r.error.clone()),
                )),
            ]
        }
    }
}
