//! The snapshot readers see: every relation's rows, the catalog and the connectors' progress as
//! of one complete epoch, published by the coordinator.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use crate::catalog::{Catalog, RelationId};
use crate::connectors::backfill::SourceRange;
use crate::error::{Error, ExecutionError};
use crate::storage::checkpoint;
use crate::storage::{ArrangementSnapshot, Epoch, TableData};

/// What a reader sees of one relation in a snapshot.
#[derive(Debug, Clone)]
pub enum RelationData {
    Table(TableData),
    View(ArrangementSnapshot),
    /// An append-only source: its messages up to this epoch, read back from Kafka when scanned.
    Source(SourceRange),
    /// A materialized view whose maintenance hit an error (say, division by zero in its
    /// expressions); reads report the error instead of returning stale or partial rows.
    Failed(ExecutionError),
}

/// The state of every relation at the end of one complete epoch. Cheap to clone and to publish:
/// it holds `Arc`s to immutable chunks and runs, never copies of data.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub epoch: Epoch,
    /// Changes whenever a relation is created or dropped; plans made at one catalog version stay
    /// valid until the next (they read rows from whatever snapshot is pinned when they run).
    pub catalog_version: u64,
    pub catalog: Arc<Catalog>,
    pub data: HashMap<RelationId, RelationData>,
    /// The connectors running at this epoch, with their live progress.
    pub connectors: Arc<crate::connectors::status::ConnectorStatuses>,
    /// Recent checkpoints and how they went; `None` for a server without a data directory.
    pub checkpoints: Option<Arc<checkpoint::CheckpointReports>>,
    /// Per view that emits on window close and relation it reads with a watermark: the rows
    /// kept out for arriving late, and the watermark.
    pub late_rows: Vec<(RelationId, crate::dataflow::watermark::LateRows)>,
    /// The sequences behind serial columns: one instance shared by every snapshot, which
    /// `nextval` advances whatever epoch the caller reads.
    pub sequences: Arc<crate::storage::Sequences>,
}

impl Snapshot {
    /// The rows of a table, source or materialized view at this snapshot's epoch. Blocks while
    /// a source's rows are read back from Kafka: call it off the async runtime for sources.
    pub fn rows(&self, id: RelationId, name: &str) -> Result<Vec<RecordBatch>, Error> {
        match self.data.get(&id) {
            Some(RelationData::Table(table)) => Ok(table.to_batches()),
            Some(RelationData::View(view)) => Ok(view.to_batches()?),
            Some(RelationData::Source(range)) => Ok(range.read()?),
            Some(RelationData::Failed(error)) => Err(ExecutionError::ViewFailed {
                view: name.to_string(),
                reason: Box::new(error.clone()),
            }
            .into()),
            None => Err(ExecutionError::Internal(format!("relation {name} has no data")).into()),
        }
    }
}
