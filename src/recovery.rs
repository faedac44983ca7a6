//! Recovery: before the server accepts clients, rebuild everything from the data directory.
//!
//! The newest complete checkpoint's relations are created again by planning their statements
//! (in id order, which is dependency order) in a session that tells CREATE what it resolved the
//! first time (a source's offsets, a materialized view's dataflow plan, which is rendered as
//! stored); the checkpoint then fills them (rows, operator states, source offsets). The log
//! after the checkpoint is applied in order: CREATEs planned again, drops and table writes
//! applied as epochs. Last, the sources start from their offsets and re-read what Kafka holds
//! beyond them. Views then equal the recomputation over everything acknowledged and ingested.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::coordinator::Coordinator;
use crate::dataflow::Epoch;
use crate::error::{Result, StorageError, lock};
use crate::session::Session;
use crate::storage::checkpoint;
use crate::storage::wal::{self, LogRecord, RelationRecord};

/// What recovery found and did.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    /// The checkpoint loaded, if there was one.
    pub checkpoint_epoch: Option<Epoch>,
    pub relations: usize,
    /// Log records applied after the checkpoint.
    pub replayed: usize,
    pub duration: Duration,
    /// The process's peak resident memory by the end of recovery, in KiB (Linux only).
    pub peak_memory_kib: Option<u64>,
}

pub async fn recover(
    coordinator: &Coordinator,
    checkpoints: &Path,
    logs: &Path,
) -> Result<RecoveryReport> {
    let started = Instant::now();
    let checkpoint = checkpoint::load_newest(checkpoints)?;
    let checkpoint_epoch = checkpoint.as_ref().map(|checkpoint| checkpoint.epoch);
    let records = wal::read_after(logs, checkpoint_epoch.unwrap_or(0))?;
    let last_logged_epoch = records
        .iter()
        .map(|record| record.epoch)
        .chain(checkpoint_epoch)
        .max()
        .unwrap_or(0);
    let session = Session::new(coordinator.clone())?;
    let mut relations = 0;
    if let Some(checkpoint) = &checkpoint {
        for relation in &checkpoint.relations {
            recreate(&session, relation).await?;
            relations += 1;
        }
    }
    coordinator.restore(checkpoint.map(Box::new)).await?;
    let replayed = records.len();
    for record in records {
        match record.record {
            LogRecord::Create(relation) => {
                recreate(&session, &relation).await?;
                relations += 1;
            }
            LogRecord::Drop(_) | LogRecord::Write { .. } | LogRecord::Redefine(_) => {
                coordinator.replay(record).await?
            }
        }
    }
    coordinator.finish_recovery(last_logged_epoch).await?;
    Ok(RecoveryReport {
        checkpoint_epoch,
        relations,
        replayed,
        duration: started.elapsed(),
        peak_memory_kib: peak_memory_kib(),
    })
}

/// `VmHWM` from /proc/self/status: the most memory the process has held so far.
fn peak_memory_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Plans a relation's statement again, under its old id.
async fn recreate(session: &Session, relation: &RelationRecord) -> Result<()> {
    *lock(&session.recovering) = Some(relation.clone());
    let result = session.execute(&relation.sql).await;
    *lock(&session.recovering) = None;
    result.map(|_| ()).map_err(|error| {
        StorageError::Corrupted {
            path: format!("relation {}", relation.id),
            reason: format!("cannot create it again from `{}`: {error}", relation.sql),
        }
        .into()
    })
}
