//! The coordinator: the one owner of all mutable state. It applies catalog changes and table
//! writes in epochs, runs every dataflow to the epoch's barrier, and publishes the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::{mpsc, oneshot, watch};

use crate::catalog::{Catalog, Relation, RelationId, RelationKind, Watermark};
use crate::connectors::backfill::SourceRange;
use crate::connectors::envelope::KeyedRows;
use crate::connectors::sink::{ExactlyOnce, SinkBatch, SinkHandle};
use crate::connectors::source::{Ingest, IngestBatch, SourceHandle};
use crate::connectors::status::{ConnectorStatuses, SourceControl};
use crate::connectors::{ConnectorDefinition, SinkStatus, SourceStatus};
use crate::dataflow::{ChangeBatch, Dataflow, Epoch};
use crate::error::{
    CatalogError, ConnectorError, Error, ExecutionError, PlanError, Result, StorageError,
};
use crate::storage::checkpoint::Checkpoint;
pub use crate::storage::checkpoint::{CheckpointReport, CheckpointReports};
use crate::storage::secrets::SecretStore;
use crate::storage::wal::{LogRecord, LoggedRecord, Redefinition, RelationRecord};
use crate::storage::{Arrangement, TableData};
pub use durability::Durability;
use durability::Recovery;
pub use snapshot::{RelationData, Snapshot};
use subscribe::Subscriber;
pub use subscribe::Subscription;

mod durability;
pub mod snapshot;
pub mod subscribe;

/// How long FLUSH waits for the sources to catch up before it gives up.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The shortest time between two runs of temporal filters whose rows are due to enter or leave
/// (a view's rows due close together move in one epoch): at most the lag of such a view behind
/// the clock.
const CLOCK_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// A relation to add to the catalog. Materialized views bring the dataflow that maintains them.
pub struct NewRelation {
    pub name: String,
    pub kind: RelationKind,
    pub schema: SchemaRef,
    pub definition: Option<String>,
    pub depends_on: Vec<RelationId>,
    pub dataflow: Option<Dataflow>,
    /// For sources, sinks and connections: how they reach Kafka.
    pub connector: Option<ConnectorDefinition>,
    /// The statement as written, kept for recovery.
    pub sql: String,
    /// Set when recovery recreates the relation: the id it had.
    pub recovered_id: Option<RelationId>,
    /// A table's or source's event time.
    pub watermark: Option<Watermark>,
    /// A table's PRIMARY KEY and UNIQUE constraints.
    pub unique_keys: Vec<crate::catalog::UniqueKey>,
}

/// A change to one table, computed by the coordinator against the table's current rows so that
/// concurrent UPDATEs and DELETEs never see the same row twice.
pub enum TableChange {
    Insert(Vec<RecordBatch>),
    Delete {
        predicate: Option<Arc<dyn PhysicalExpr>>,
    },
    Update {
        predicate: Option<Arc<dyn PhysicalExpr>>,
        assignments: Vec<Arc<dyn PhysicalExpr>>,
    },
}

/// What a table write did: how many rows it inserted, deleted or updated (the command tag's
/// count), and the changes themselves (an update is each old row's deletion and its new
/// version's insertion), which RETURNING reads.
#[derive(Debug)]
pub struct Written {
    pub rows: u64,
    pub changes: Vec<ChangeBatch>,
}

/// A request to the coordinator. Each carries the sending half of a oneshot channel; the session
/// that sent the command awaits the receiving half and gets exactly one answer, sent once the
/// command's epoch is published (or an error, if the command fails or panics).
enum Command {
    Create {
        relation: Box<NewRelation>,
        if_not_exists: bool,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// CREATE OR REPLACE MATERIALIZED VIEW of an existing view.
    Replace {
        relation: Box<NewRelation>,
        reply: oneshot::Sender<Result<()>>,
    },
    Drop {
        kind: RelationKind,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    /// A rename: new names and statements, computed against catalog version `seen`.
    Redefine {
        renamed: RelationId,
        redefinitions: Vec<Redefinition>,
        seen: u64,
        reply: oneshot::Sender<Result<()>>,
    },
    Write {
        table: RelationId,
        change: TableChange,
        reply: oneshot::Sender<Result<Written>>,
    },
    /// What a source decoded; applied in the next epoch. Sources do not wait for an answer.
    Ingest {
        source: RelationId,
        batch: IngestBatch,
    },
    /// Answered once everything sent before it is published.
    Sync { reply: oneshot::Sender<Result<()>> },
    /// Starts a subscription to a relation's changes, from its rows as of the current epoch.
    Subscribe {
        relation: RelationId,
        reply: oneshot::Sender<Result<Subscription>>,
    },
    /// Recovery: load a checkpoint (none for a directory without one) into the relations
    /// recovery has recreated, and start the sinks it holds.
    Restore {
        checkpoint: Option<Box<Checkpoint>>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Recovery: apply a logged write or drop again.
    Replay {
        record: LoggedRecord,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Recovery is over: start the sources and the log (past `last_logged_epoch`), take a
    /// checkpoint.
    FinishRecovery {
        last_logged_epoch: Epoch,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Command {
    /// Writes, ingestion and syncs share an epoch with whatever else of their kind is waiting
    /// (group commit).
    fn joins_epoch(&self) -> bool {
        match self {
            Command::Write { .. } | Command::Ingest { .. } | Command::Sync { .. } => true,
            Command::Create { .. }
            | Command::Replace { .. }
            | Command::Drop { .. }
            | Command::Redefine { .. }
            | Command::Subscribe { .. }
            | Command::Restore { .. }
            | Command::Replay { .. }
            | Command::FinishRecovery { .. } => false,
        }
    }
}

/// A source's way into the coordinator.
struct SourceIngest {
    /// To the coordinator, which holds the receiving end; sends wait while it is full, which is
    /// how a source is slowed to the pace the dataflows keep.
    commands: mpsc::Sender<Command>,
    source: RelationId,
}

impl Ingest for SourceIngest {
    fn send(&self, batch: IngestBatch) -> bool {
        self.commands
            .blocking_send(Command::Ingest {
                source: self.source,
                batch,
            })
            .is_ok()
    }

    fn sync(&self, reply: oneshot::Sender<Result<()>>) {
        if let Err(mpsc::error::SendError(Command::Sync { reply })) =
            self.commands.blocking_send(Command::Sync { reply })
        {
            let _ = reply.send(Err(ExecutionError::Shutdown.into()));
        }
    }
}

/// DataFusion's runtime for queries: a pool of `max_query_memory` bytes shared by all, which
/// names the largest consumers when a query is refused, and no disk to spill to.
fn query_runtime(max_query_memory: usize) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
    let pool = TrackConsumersPool::new(
        GreedyMemoryPool::new(max_query_memory),
        std::num::NonZeroUsize::MIN.saturating_add(2),
    );
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
}

/// The sessions' handle on the coordinator. Cloned into every session.
#[derive(Clone)]
pub struct Coordinator {
    /// To the coordinator thread, which holds the receiving end; bounded so that a flood of
    /// writes waits for the coordinator instead of queueing without limit.
    commands: mpsc::Sender<Command>,
    /// The newest complete snapshot; the coordinator holds the sender and replaces the value once
    /// per epoch, before it answers any write of that epoch (read-your-writes).
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// How many shards the views' dataflows run as (see [`crate::dataflow::workers`]); fixed
    /// for the coordinator's life.
    workers: usize,
    /// Connection secrets, which sessions store and resolve without the coordinator thread.
    secrets: Arc<SecretStore>,
    /// What every session's queries run in: one memory pool of `max_query_memory` bytes that
    /// all running queries draw from, and no spilling to disk (past the pool a query fails).
    query_runtime: Arc<RuntimeEnv>,
}

impl Coordinator {
    /// Starts the coordinator on its own thread. It stops when `shutdown` turns true or every
    /// handle is dropped; `stopped` turns true once it has (after its last checkpoint).
    /// With `durability`, it starts in recovery: connectors wait, nothing is logged, until
    /// [`Coordinator::finish_recovery`].
    pub fn start(
        shutdown: watch::Receiver<bool>,
        durability: Option<Durability>,
        workers: usize,
        max_query_memory: usize,
    ) -> std::io::Result<(Self, watch::Receiver<bool>)> {
        let query_runtime = query_runtime(max_query_memory).map_err(std::io::Error::other)?;
        let secrets = Arc::new(match &durability {
            Some(durability) => {
                SecretStore::open(durability.directory().root()).map_err(std::io::Error::other)?
            }
            None => SecretStore::in_memory(),
        });
        let (commands, receiver) = mpsc::channel(1024);
        let (publisher, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let (stopped_sender, stopped) = watch::channel(false);
        let recovery = if durability.is_some() {
            Recovery::RecreatingCatalog
        } else {
            Recovery::Off
        };
        let engine = Engine {
            durability,
            recovery,
            source_offsets: HashMap::new(),
            keyed_rows: HashMap::new(),
            sink_outputs: HashMap::new(),
            catalog: Arc::new(Catalog::default()),
            tables: HashMap::new(),
            sequences: Arc::default(),
            keyed_sources: HashMap::new(),
            views: BTreeMap::new(),
            sources: HashMap::new(),
            sinks: BTreeMap::new(),
            subscribers: Vec::new(),
            connectors: Arc::new(ConnectorStatuses::default()),
            commands: commands.downgrade(),
            epoch: 0,
            catalog_version: 0,
            publisher,
        };
        // Views' expressions are lowered here and evaluated on the worker pool (rayon's global
        // pool): both need the stack statements may nest to (`sql::depth`). The pool is built
        // once per process; a later server in the same process finds it built.
        let _ = rayon::ThreadPoolBuilder::new()
            .stack_size(crate::sql::depth::THREAD_STACK_SIZE)
            .thread_name(|index| format!("worker-{index}"))
            .build_global();
        std::thread::Builder::new()
            .name("coordinator".into())
            .stack_size(crate::sql::depth::THREAD_STACK_SIZE)
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start the coordinator runtime");
                        return;
                    }
                };
                runtime.block_on(engine.run(receiver, shutdown));
                let _ = stopped_sender.send(true);
            })?;
        Ok((
            Self {
                commands,
                snapshots,
                workers: workers.max(1),
                secrets,
                query_runtime,
            },
            stopped,
        ))
    }

    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    pub fn query_runtime(&self) -> Arc<RuntimeEnv> {
        Arc::clone(&self.query_runtime)
    }

    /// How many copies of each keyed operator a new view's dataflow runs.
    pub fn workers(&self) -> usize {
        self.workers
    }

    pub(crate) async fn restore(&self, checkpoint: Option<Box<Checkpoint>>) -> Result<()> {
        self.call(|reply| Command::Restore { checkpoint, reply })
            .await
    }

    pub(crate) async fn replay(&self, record: LoggedRecord) -> Result<()> {
        self.call(|reply| Command::Replay { record, reply }).await
    }

    pub(crate) async fn finish_recovery(&self, last_logged_epoch: Epoch) -> Result<()> {
        self.call(|reply| Command::FinishRecovery {
            last_logged_epoch,
            reply,
        })
        .await
    }

    /// The newest complete epoch's snapshot: one consistent state across all relations.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshots.borrow())
    }

    /// Adds a relation; returns false if it existed and `if_not_exists` was given.
    pub async fn create(&self, relation: NewRelation, if_not_exists: bool) -> Result<bool> {
        self.call(|reply| Command::Create {
            relation: Box::new(relation),
            if_not_exists,
            reply,
        })
        .await
    }

    /// Gives the materialized view `relation.name` names a new definition; its readers keep
    /// running and receive the difference (see [`Coordinator::replace`]).
    pub async fn replace(&self, relation: NewRelation) -> Result<()> {
        self.call(|reply| Command::Replace {
            relation: Box::new(relation),
            reply,
        })
        .await
    }

    pub async fn drop_relations(
        &self,
        kind: RelationKind,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    ) -> Result<()> {
        self.call(|reply| Command::Drop {
            kind,
            names,
            if_exists,
            cascade,
            reply,
        })
        .await
    }

    /// Renames relation `renamed`: `redefinitions` are its new name and statement and the
    /// rewritten statements of the views reading it, made from catalog version `seen`.
    pub async fn redefine(
        &self,
        renamed: RelationId,
        redefinitions: Vec<Redefinition>,
        seen: u64,
    ) -> Result<()> {
        self.call(|reply| Command::Redefine {
            renamed,
            redefinitions,
            seen,
            reply,
        })
        .await
    }

    /// Applies a change to a table; returns the rows it touched once every view reflects it.
    pub async fn write(&self, table: RelationId, change: TableChange) -> Result<Written> {
        self.call(|reply| Command::Write {
            table,
            change,
            reply,
        })
        .await
    }

    /// Subscribes to a table's, source's or materialized view's changes: its rows now, then
    /// each epoch's changes as they are published.
    pub async fn subscribe(&self, relation: RelationId) -> Result<Subscription> {
        self.call(|reply| Command::Subscribe { relation, reply })
            .await
    }

    /// Returns once every source has ingested what its topic held when FLUSH began, and every
    /// view reflects it.
    pub async fn flush(&self) -> Result<()> {
        let snapshot = self.snapshot();
        let mut waiting = Vec::new();
        for status in snapshot.connectors.sources.values() {
            let (reply, answer) = oneshot::channel();
            if status.send(SourceControl::Flush(reply)) {
                waiting.push((status.name.clone(), answer));
            }
        }
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        for (source, answer) in waiting {
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(result)) => result?,
                // The source stopped (dropped meanwhile): nothing left to wait for.
                Ok(Err(_)) => {}
                Err(_) => {
                    return Err(ConnectorError::FlushTimeout {
                        seconds: FLUSH_TIMEOUT.as_secs(),
                        waiting: format!("source {source} has not caught up"),
                    }
                    .into());
                }
            }
        }
        // Table writes sent before FLUSH are published too.
        self.call(|reply| Command::Sync { reply }).await
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| ExecutionError::Shutdown)?;
        // The command arrived but its reply was dropped unanswered: handling it panicked.
        answer.await.map_err(|_| {
            ExecutionError::Internal("the statement failed inside the coordinator".into())
        })?
    }
}

struct MaintainedView {
    name: String,
    /// Runs the view and keeps its contents, a part on each worker.
    dataflow: Dataflow,
    /// The schema the contents are kept in.
    schema: SchemaRef,
    failed: Option<ExecutionError>,
}

impl MaintainedView {
    /// The view's rows as of the last epoch.
    fn contents(&self) -> crate::storage::ArrangementSnapshot {
        self.dataflow.contents(&self.schema)
    }
}

struct Engine {
    /// The data directory, its log and checkpoint writer; `None` for an in-memory server.
    durability: Option<Durability>,
    recovery: Recovery,
    /// Per source, the next offset to read in each partition as of the current epoch (raw
    /// librdkafka offsets: -2 is the beginning). What checkpoints store.
    source_offsets: HashMap<RelationId, HashMap<i32, i64>>,
    /// Per UPSERT or DEBEZIUM source, each key's row (`arrow-row` bytes) as of the current
    /// epoch: the state its envelope restarts from. A copy of what the source thread keeps,
    /// updated from the batches it sends, so checkpoints see it at an epoch boundary.
    keyed_rows: HashMap<RelationId, KeyedRows>,
    /// Per exactly-once sink, the output of epochs Kafka has not committed yet, oldest first.
    /// Checkpoints keep it: after a crash the sink rewrites what Kafka lost.
    sink_outputs: HashMap<RelationId, Vec<SinkBatch>>,
    /// Shared with published snapshots; copied on write, so only catalog changes copy it.
    catalog: Arc<Catalog>,
    /// Rows of tables (append-only sources keep none: see `source_range`).
    tables: HashMap<RelationId, TableData>,
    /// The sequences of tables' serial columns; every published snapshot holds this one
    /// instance, through which sessions' `nextval` calls count.
    sequences: Arc<crate::storage::Sequences>,
    /// Rows of sources whose envelope updates and deletes (UPSERT, DEBEZIUM).
    keyed_sources: HashMap<RelationId, Arrangement>,
    /// Ordered by id, which is a topological order (a view only reads older relations).
    views: BTreeMap<RelationId, MaintainedView>,
    /// Running sources; dropping a handle stops its thread.
    sources: HashMap<RelationId, SourceHandle>,
    /// Running sinks, by the sink's id; each is sent its relation's changes every epoch.
    sinks: BTreeMap<RelationId, SinkHandle>,
    /// Clients' subscriptions (SUBSCRIBE); each is sent its relation's changes every epoch.
    subscribers: Vec<Subscriber>,
    /// What snapshots show of the running connectors; replaced when one starts or stops.
    connectors: Arc<ConnectorStatuses>,
    /// For sources to send their rows back; weak, so the engine alone never keeps its own
    /// channel open.
    commands: mpsc::WeakSender<Command>,
    epoch: Epoch,
    catalog_version: u64,
    publisher: watch::Sender<Arc<Snapshot>>,
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut pending: Option<Command> = None;
        let interval = self
            .durability
            .as_ref()
            .map(|durability| durability.interval)
            .unwrap_or(std::time::Duration::from_secs(3600));
        let mut checkpoint_ticker = tokio::time::interval(interval);
        checkpoint_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Temporal filters' rows enter and leave with the clock, not with input: the loop wakes
        // when the next of them is due (no more often than every CLOCK_TICK), and not at all
        // while none is.
        let mut clock_checked = tokio::time::Instant::now();
        // When exactly-once sinks' waiting output gets a checkpoint before the interval's.
        let mut early_checkpoint: Option<tokio::time::Instant> = None;
        loop {
            let clock_due = self.next_clock_check(clock_checked);
            let command = match pending.take() {
                Some(command) => command,
                None => tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => command,
                        None => break,
                    },
                    _ = checkpoint_ticker.tick() => {
                        self.checkpoint(false);
                        continue;
                    }
                    _ = tokio::time::sleep_until(early_checkpoint.unwrap_or(clock_due)),
                        if early_checkpoint.is_some() => {
                        self.checkpoint(false);
                        // Again only if the writer was still busy with the last one.
                        early_checkpoint = self
                            .early_checkpoint_due()
                            .map(tokio::time::Instant::from_std);
                        continue;
                    }
                    _ = tokio::time::sleep_until(clock_due) => {
                        clock_checked = tokio::time::Instant::now();
                        self.advance_clock();
                        continue;
                    }
                    _ = shutdown.changed() => break,
                },
            };
            let mut batch = vec![command];
            if batch[0].joins_epoch() {
                // Group commit: every write already waiting joins this epoch.
                while let Ok(next) = commands.try_recv() {
                    if next.joins_epoch() {
                        batch.push(next);
                    } else {
                        pending = Some(next);
                        break;
                    }
                }
            }
            // A bug that panics while handling one command must not stop the server: the
            // command's callers get an error (their reply channels drop) and the loop goes on.
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(batch)));
            if handled.is_err() {
                tracing::error!("the coordinator recovered from a panic; the statement failed");
            }
            early_checkpoint = self
                .early_checkpoint_due()
                .map(tokio::time::Instant::from_std);
        }
        // A clean shutdown leaves a checkpoint of the last epoch, so the next start replays
        // nothing.
        self.checkpoint(true);
        tracing::info!("coordinator stopped");
    }

    fn handle(&mut self, batch: Vec<Command>) {
        let mut writes = Vec::new();
        let mut ingested = Vec::new();
        let mut syncs = Vec::new();
        for command in batch {
            match command {
                Command::Create {
                    relation,
                    if_not_exists,
                    reply,
                } => {
                    let _ = reply.send(self.create(*relation, if_not_exists));
                }
                Command::Replace { relation, reply } => {
                    let _ = reply.send(self.replace(*relation));
                }
                Command::Drop {
                    kind,
                    names,
                    if_exists,
                    cascade,
                    reply,
                } => {
                    let _ = reply.send(self.drop_relations(kind, &names, if_exists, cascade));
                }
                Command::Redefine {
                    renamed,
                    redefinitions,
                    seen,
                    reply,
                } => {
                    let _ = reply.send(self.redefine(renamed, redefinitions, seen));
                }
                Command::Write {
                    table,
                    change,
                    reply,
                } => writes.push((table, change, reply)),
                Command::Ingest { source, batch } => ingested.push((source, batch)),
                Command::Sync { reply } => syncs.push(reply),
                Command::Subscribe { relation, reply } => {
                    let _ = reply.send(self.subscribe(relation));
                }
                Command::Restore { checkpoint, reply } => {
                    let _ = reply.send(self.restore(checkpoint.map(|checkpoint| *checkpoint)));
                }
                Command::Replay { record, reply } => {
                    let _ = reply.send(self.replay(record));
                }
                Command::FinishRecovery {
                    last_logged_epoch,
                    reply,
                } => {
                    let _ = reply.send(self.finish_recovery(last_logged_epoch));
                }
            }
        }
        if !writes.is_empty() || !ingested.is_empty() {
            self.write_epoch(writes, ingested);
        }
        for reply in syncs {
            let _ = reply.send(Ok(()));
        }
    }

    /// When the loop next runs [`Coordinator::advance_clock`]: when the earliest view's
    /// clock-driven rows are due, but not sooner than CLOCK_TICK after the last run (`checked`);
    /// an hour away while no view has any.
    fn next_clock_check(&self, checked: tokio::time::Instant) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let earliest = self
            .views
            .values()
            .filter(|view| view.failed.is_none())
            .filter_map(|view| view.dataflow.wakeup())
            .min();
        let Some(due) = earliest else {
            return now + std::time::Duration::from_secs(3600);
        };
        let wait = due.saturating_sub(crate::dataflow::temporal_filter::clock_nanoseconds());
        let due = now + std::time::Duration::from_nanos(u64::try_from(wait).unwrap_or(0));
        due.max(checked + CLOCK_TICK)
    }

    /// Runs an epoch without input when a view's clock-driven rows are due to enter or leave.
    fn advance_clock(&mut self) {
        if self.recovery != Recovery::Off {
            return;
        }
        let now = crate::dataflow::temporal_filter::clock_nanoseconds();
        let due = self.views.values().any(|view| {
            view.failed.is_none() && view.dataflow.wakeup().is_some_and(|due| due <= now)
        });
        if due {
            let epoch = self.next_epoch();
            self.propagate(HashMap::new(), epoch);
            self.publish();
        }
    }

    fn next_epoch(&mut self) -> Epoch {
        self.epoch += 1;
        self.epoch
    }

    fn write_epoch(
        &mut self,
        writes: Vec<(RelationId, TableChange, oneshot::Sender<Result<Written>>)>,
        ingested: Vec<(RelationId, IngestBatch)>,
    ) {
        let epoch = self.next_epoch();
        let mut deltas: HashMap<RelationId, Vec<ChangeBatch>> = HashMap::new();
        for (source, batch) in ingested {
            let IngestBatch {
                changes,
                offsets,
                key_updates,
            } = batch;
            // A source dropped while its last changes were on the way has no offsets any more.
            let Some(positions) = self.source_offsets.get_mut(&source) else {
                continue;
            };
            positions.extend(offsets);
            if let Some(rows) = self.keyed_rows.get_mut(&source) {
                for (key, row) in key_updates {
                    match row {
                        Some(row) => rows.insert(key, row),
                        None => rows.remove(&key),
                    };
                }
            }
            // Keyed sources (UPSERT, DEBEZIUM) keep each key's row, in an arrangement, which
            // takes deletions. Append-only ones keep nothing: the topic is their log, read back
            // when a new view or an ad hoc query needs their rows (`source_range`).
            if let Some(arrangement) = self.keyed_sources.get_mut(&source)
                && let Err(error) = arrangement.apply(&changes)
            {
                tracing::error!(source, %error, "cannot store a source's changes");
                continue;
            }
            deltas.entry(source).or_default().extend(changes);
        }
        let mut replies = Vec::with_capacity(writes.len());
        // The tables as they were, to undo the writes if they cannot be logged.
        let mut before: HashMap<RelationId, TableData> = HashMap::new();
        let mut logged = Vec::new();
        for (table, change, reply) in writes {
            if let Some(data) = self.tables.get(&table) {
                before.entry(table).or_insert_with(|| data.clone());
            }
            let outcome = self
                .apply_table_change(table, change)
                .map(|(count, delta)| {
                    let written = Written {
                        rows: count,
                        changes: delta.clone(),
                    };
                    if !delta.is_empty() {
                        logged.push(LoggedRecord {
                            epoch,
                            record: LogRecord::Write {
                                table,
                                changes: delta.clone(),
                            },
                        });
                    }
                    deltas.entry(table).or_default().extend(delta);
                    written
                });
            replies.push((reply, outcome));
        }
        // Acknowledged writes must survive a crash: logged (and synced) before anyone sees them.
        if let Err(error) = self.log(&logged) {
            tracing::error!(%error, "cannot log table writes; they are undone");
            for (table, data) in before {
                deltas.remove(&table);
                self.tables.insert(table, data);
            }
            for (_, outcome) in &mut replies {
                if outcome.is_ok() {
                    *outcome = Err(StorageError::NotDurable(error.to_string()).into());
                }
            }
        }
        self.propagate(deltas, epoch);
        self.publish();
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
    }

    /// Applies one table change to a copy of the table (cheap: chunks are shared) and keeps it
    /// only if the whole statement succeeded, so a failing statement changes nothing.
    fn apply_table_change(
        &mut self,
        id: RelationId,
        change: TableChange,
    ) -> Result<(u64, Vec<ChangeBatch>)> {
        let relation = self
            .catalog
            .by_id(id)
            .cloned()
            .ok_or_else(|| PlanError::UndefinedTable(format!("(relation {id} was dropped)")))?;
        let mut table = self
            .tables
            .get(&id)
            .cloned()
            .ok_or_else(|| PlanError::UndefinedTable(relation.name.clone()))?;
        let (count, delta) = match change {
            TableChange::Insert(batches) => {
                let batches = batches
                    .into_iter()
                    .map(|batch| conform(batch.columns().to_vec(), &relation, table.schema()))
                    .collect::<Result<Vec<_>>>()?;
                let count = batches.iter().map(|b| b.num_rows() as u64).sum();
                let delta = batches
                    .iter()
                    .cloned()
                    .map(ChangeBatch::insertions)
                    .collect();
                table.append(batches)?;
                (count, delta)
            }
            TableChange::Delete { predicate } => {
                let removed = table.remove_where(|chunk| evaluate_predicate(&predicate, chunk))?;
                let count = removed.iter().map(|b| b.num_rows() as u64).sum();
                (
                    count,
                    removed.into_iter().map(ChangeBatch::deletions).collect(),
                )
            }
            TableChange::Update {
                predicate,
                assignments,
            } => {
                let removed = table.remove_where(|chunk| evaluate_predicate(&predicate, chunk))?;
                let mut delta = Vec::new();
                let mut updated = Vec::new();
                for old in removed {
                    let columns = assignments
                        .iter()
                        .map(|assignment| assignment.evaluate(&old)?.into_array(old.num_rows()))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    let new = conform(columns, &relation, table.schema())?;
                    delta.push(ChangeBatch::deletions(old));
                    delta.push(ChangeBatch::insertions(new.clone()));
                    updated.push(new);
                }
                let count = updated.iter().map(|b| b.num_rows() as u64).sum();
                table.append(updated)?;
                (count, delta)
            }
        };
        self.tables.insert(id, table);
        Ok((count, delta))
    }

    /// Runs every materialized view, oldest first, over the epoch's changes of its input.
    fn propagate(&mut self, mut deltas: HashMap<RelationId, Vec<ChangeBatch>>, epoch: Epoch) {
        let now = crate::dataflow::temporal_filter::clock_nanoseconds();
        for (&id, view) in self.views.iter_mut() {
            if view.failed.is_some() {
                continue;
            }
            // A view runs when an input changed, or when its clock-driven rows are due.
            if !view
                .dataflow
                .inputs()
                .iter()
                .any(|input| deltas.contains_key(input))
                && view.dataflow.wakeup().is_none_or(|due| due > now)
            {
                continue;
            }
            match view.dataflow.step(&deltas, epoch) {
                Ok(output) => {
                    deltas.insert(id, output);
                }
                Err(error) => {
                    tracing::warn!(view = %view.name, %error, "materialized view failed");
                    let crate::error::DataflowError::Evaluation(error) = error;
                    view.failed = Some(error);
                }
            }
        }
        let outputs: Vec<(RelationId, SinkBatch)> = self
            .sinks
            .iter()
            .filter_map(|(&id, sink)| {
                let changes = deltas.get(&sink.from)?.clone();
                Some((id, SinkBatch { epoch, changes }))
            })
            .collect();
        for (id, batch) in outputs {
            self.send_to_sink(id, batch);
        }
        self.subscribers
            .retain(|subscriber| subscriber.deliver(&deltas, epoch));
    }

    fn subscribe(&mut self, id: RelationId) -> Result<Subscription> {
        let relation = self
            .catalog
            .by_id(id)
            .ok_or_else(|| PlanError::UndefinedTable(format!("(relation {id})")))?;
        let (name, schema) = (relation.name.clone(), Arc::clone(&relation.schema));
        let contents = self.current_rows(id)?;
        let (subscriber, subscription) = Subscriber::start(id, name, schema, self.epoch, contents);
        self.subscribers.push(subscriber);
        Ok(subscription)
    }

    /// Sends a sink one epoch's changes. An exactly-once sink's are also kept until Kafka has
    /// committed them, so that checkpoints hold what a crash could lose.
    fn send_to_sink(&mut self, id: RelationId, batch: SinkBatch) {
        let Some(sink) = self.sinks.get(&id) else {
            return;
        };
        if self.durability.is_some() {
            self.sink_outputs.entry(id).or_default().push(batch.clone());
        }
        sink.send(batch);
    }

    fn publish(&mut self) {
        let mut data = HashMap::with_capacity(self.tables.len() + self.views.len());
        for (&id, table) in &self.tables {
            data.insert(id, RelationData::Table(table.snapshot()));
        }
        for (&id, source) in &self.keyed_sources {
            data.insert(id, RelationData::View(source.snapshot()));
        }
        for &id in self.source_offsets.keys() {
            if let Some(range) = self.source_range(id) {
                data.insert(id, RelationData::Source(range));
            }
        }
        let mut late_rows = Vec::new();
        for (&id, view) in &self.views {
            late_rows.extend(
                view.dataflow
                    .late_rows()
                    .into_iter()
                    .map(|counts| (id, counts)),
            );
            let state = match &view.failed {
                Some(error) => RelationData::Failed(error.clone()),
                None => RelationData::View(view.contents()),
            };
            data.insert(id, state);
        }
        let snapshot = Snapshot {
            epoch: self.epoch,
            catalog_version: self.catalog_version,
            catalog: Arc::clone(&self.catalog),
            data,
            connectors: Arc::clone(&self.connectors),
            checkpoints: self
                .durability
                .as_ref()
                .map(|durability| Arc::clone(&durability.reports)),
            late_rows,
            sequences: Arc::clone(&self.sequences),
        };
        self.publisher.send_replace(Arc::new(snapshot));
    }

    fn create(&mut self, relation: NewRelation, if_not_exists: bool) -> Result<bool> {
        if self.catalog.get(&relation.name).is_some() {
            if if_not_exists {
                return Ok(false);
            }
            return Err(CatalogError::DuplicateObject(relation.name).into());
        }
        for dependency in &relation.depends_on {
            if self.catalog.by_id(*dependency).is_none() {
                return Err(PlanError::UndefinedTable(format!(
                    "(relation {dependency} was dropped)"
                ))
                .into());
            }
        }
        if let Some(id) = relation.recovered_id {
            Arc::make_mut(&mut self.catalog).reserve_through(id.saturating_sub(1));
        }
        let epoch = self.next_epoch();
        let NewRelation {
            name,
            kind,
            schema,
            definition,
            depends_on,
            dataflow,
            connector,
            sql,
            recovered_id: _,
            watermark,
            unique_keys,
        } = relation;
        let maintained = match (kind, dataflow) {
            (RelationKind::MaterializedView, Some(mut dataflow)) => {
                // Backfill: the input's current rows enter the new dataflow as one big insertion;
                // from then on it sees only changes.
                let mut inputs = HashMap::new();
                for &input in dataflow.inputs() {
                    inputs.insert(input, self.current_rows(input)?);
                }
                dataflow.keep_contents(&schema)?;
                dataflow.step(&inputs, epoch).map_err(Error::from)?;
                tracing::info!(view = %name, dataflow = ?dataflow.describe(), "maintaining materialized view");
                Some(MaintainedView {
                    name: name.clone(),
                    dataflow,
                    schema: Arc::clone(&schema),
                    failed: None,
                })
            }
            (RelationKind::MaterializedView, None) => {
                return Err(ExecutionError::Internal(
                    "materialized view without a dataflow".into(),
                )
                .into());
            }
            _ => None,
        };
        let id = self.catalog.next_id();
        let stored_schema = crate::catalog::without_constraints(&schema);
        // Connectors start before the relation is logged, and the relation is logged before it
        // exists: a CREATE that fails leaves nothing running and nothing to recover. (A source's
        // first changes queue behind this command, so its relation exists when they arrive.)
        let mut source = None;
        let mut sink = None;
        let start_offsets = match &connector {
            Some(ConnectorDefinition::Source(definition)) => definition.raw_start_offsets(),
            _ => Vec::new(),
        };
        let connectors_wait = self.recovery != Recovery::Off;
        match &connector {
            Some(ConnectorDefinition::Source(definition)) if !connectors_wait => {
                source = Some(self.start_source(
                    id,
                    &name,
                    definition,
                    &stored_schema,
                    &start_offsets,
                    None,
                )?);
            }
            Some(ConnectorDefinition::Sink(definition))
                if self.recovery != Recovery::RecreatingCatalog =>
            {
                let from = *depends_on
                    .first()
                    .ok_or_else(|| ExecutionError::Internal("a sink without a relation".into()))?;
                // The sink's first epoch is the relation's whole contents.
                let contents = self.current_rows(from)?;
                let handle = self.start_sink(id, &name, from, definition, Vec::new())?;
                sink = Some((
                    handle,
                    SinkBatch {
                        epoch,
                        changes: contents,
                    },
                ));
            }
            _ => {}
        }
        let plan = match &maintained {
            Some(view) => Some(view.dataflow.plan().to_json().map_err(Error::from)?),
            None => None,
        };
        self.log(&[LoggedRecord {
            epoch,
            record: LogRecord::Create(RelationRecord {
                id,
                sql: sql.clone(),
                start_offsets: start_offsets.clone(),
                plan: plan.clone(),
            }),
        }])?;
        let added = Arc::make_mut(&mut self.catalog).add(Relation {
            id,
            name,
            kind,
            schema: Arc::clone(&schema),
            definition,
            depends_on,
            connector,
            sql,
            watermark,
            plan: plan.map(Arc::from),
            unique_keys: unique_keys.clone(),
        })?;
        debug_assert_eq!(added.id, id);
        if let Some((handle, status)) = source {
            self.register_source(id, handle, status);
        }
        if let Some((handle, contents)) = sink {
            self.register_sink(id, handle);
            self.send_to_sink(id, contents);
        }
        match kind {
            RelationKind::Table => {
                for sequence in sequences_of(&schema) {
                    self.sequences.create(&sequence);
                }
                self.tables.insert(
                    id,
                    TableData::with_unique_keys(stored_schema, &unique_keys)?,
                );
            }
            RelationKind::MaterializedView => {
                if let Some(view) = maintained {
                    self.views.insert(id, view);
                }
            }
            RelationKind::Source => {
                self.source_offsets
                    .insert(id, start_offsets.into_iter().collect());
                let keyed = matches!(
                    &added.connector,
                    Some(ConnectorDefinition::Source(definition))
                        if definition.envelope != crate::sql::streaming::Envelope::None
                );
                if keyed {
                    // Only checkpoints read the copy of the key state.
                    if self.durability.is_some() {
                        self.keyed_rows.insert(id, KeyedRows::new());
                    }
                    self.keyed_sources
                        .insert(id, Arrangement::new(stored_schema)?);
                }
            }
            RelationKind::View | RelationKind::Sink | RelationKind::Connection => {}
        }
        self.publish();
        Ok(true)
    }

    /// CREATE OR REPLACE MATERIALIZED VIEW: the new dataflow is built over its inputs' current
    /// rows, takes the old one's place under the same id, and the view's readers (views on it,
    /// sinks, subscribers) receive the difference between the old rows and the new as one
    /// epoch's changes: they keep running, and a sink writes only what changed. With readers the
    /// columns must stay as they were. Logged as a CREATE of its statement, which recovery plans
    /// again (as a replacement when the view exists by then, as a creation when a checkpoint
    /// recreates it); so that a checkpoint can recreate relations in id order, the new query
    /// may read only relations older than the view, which also rules out cycles.
    fn replace(&mut self, relation: NewRelation) -> Result<()> {
        let Some(existing) = self.catalog.get(&relation.name).cloned() else {
            return Err(PlanError::UndefinedTable(relation.name).into());
        };
        if existing.kind != RelationKind::MaterializedView {
            return Err(CatalogError::WrongObjectType {
                name: relation.name,
                expected: "materialized view",
            }
            .into());
        }
        let id = existing.id;
        if let Some(newer) = relation.depends_on.iter().find(|input| **input >= id) {
            let newer = self
                .catalog
                .by_id(*newer)
                .map_or_else(|| format!("relation {newer}"), |input| input.name.clone());
            return Err(PlanError::Unsupported(format!(
                "CREATE OR REPLACE MATERIALIZED VIEW {} reading {newer}, which is newer than the view (or the view itself), is not supported yet",
                relation.name
            ))
            .into());
        }
        let same_columns = existing.schema.fields().len() == relation.schema.fields().len()
            && existing
                .schema
                .fields()
                .iter()
                .zip(relation.schema.fields())
                .all(|(old, new)| old.name() == new.name() && old.data_type() == new.data_type());
        let mut readers: Vec<String> = self
            .catalog
            .dependents(id)
            .iter()
            .map(|reader| reader.name.clone())
            .collect();
        if self
            .subscribers
            .iter()
            .any(|subscriber| subscriber.reads(id))
        {
            readers.push("a SUBSCRIBE".to_string());
        }
        if !same_columns && !readers.is_empty() {
            return Err(PlanError::InvalidTableDefinition(format!(
                "cannot change the columns of materialized view {} while {} read it",
                relation.name,
                readers.join(", ")
            ))
            .into());
        }
        let Some(mut dataflow) = relation.dataflow else {
            return Err(
                ExecutionError::Internal("materialized view without a dataflow".into()).into(),
            );
        };
        let epoch = self.next_epoch();
        let mut inputs = HashMap::new();
        for &input in dataflow.inputs() {
            inputs.insert(input, self.current_rows(input)?);
        }
        dataflow.keep_contents(&relation.schema)?;
        dataflow.step(&inputs, epoch).map_err(Error::from)?;
        let plan = dataflow.plan().to_json().map_err(Error::from)?;
        // What the readers saw: the old rows, even if the old dataflow had failed since.
        let before = match self.views.get(&id) {
            Some(view) => view.contents().to_batches()?,
            None => Vec::new(),
        };
        self.log(&[LoggedRecord {
            epoch,
            record: LogRecord::Create(RelationRecord {
                id,
                sql: relation.sql.clone(),
                start_offsets: Vec::new(),
                plan: Some(plan.clone()),
            }),
        }])?;
        tracing::info!(view = %relation.name, dataflow = ?dataflow.describe(), "replaced materialized view");
        self.catalog_version += 1;
        Arc::make_mut(&mut self.catalog).replace(Relation {
            id,
            name: relation.name.clone(),
            kind: RelationKind::MaterializedView,
            schema: Arc::clone(&relation.schema),
            definition: relation.definition,
            depends_on: relation.depends_on,
            connector: None,
            sql: relation.sql,
            watermark: None,
            plan: Some(Arc::from(plan)),
            unique_keys: Vec::new(),
        })?;
        let view = MaintainedView {
            name: relation.name,
            dataflow,
            schema: Arc::clone(&relation.schema),
            failed: None,
        };
        let after = view.contents().to_batches()?;
        self.views.insert(id, view);
        if same_columns {
            let mut changes: Vec<ChangeBatch> =
                before.into_iter().map(ChangeBatch::deletions).collect();
            changes.extend(after.into_iter().map(ChangeBatch::insertions));
            let difference = consolidated(&relation.schema, changes)?;
            self.propagate(HashMap::from([(id, difference)]), epoch);
        }
        self.publish();
        Ok(())
    }

    /// Starts a source's thread reading from `offsets` (raw, per partition); the caller
    /// registers the handle.
    fn start_source(
        &self,
        id: RelationId,
        name: &str,
        definition: &Arc<crate::connectors::SourceDefinition>,
        schema: &SchemaRef,
        offsets: &[(i32, i64)],
        keyed_rows: Option<&KeyedRows>,
    ) -> Result<(SourceHandle, Arc<SourceStatus>)> {
        let status = Arc::new(SourceStatus::new(
            name.to_string(),
            definition.topic.clone(),
            &offsets
                .iter()
                .map(|&(partition, offset)| (partition, offset.max(0)))
                .collect::<Vec<_>>(),
        ));
        let commands = self.commands.upgrade().ok_or(ExecutionError::Shutdown)?;
        let offsets: Vec<(i32, rdkafka::Offset)> = offsets
            .iter()
            .map(|&(partition, offset)| (partition, rdkafka::Offset::from_raw(offset)))
            .collect();
        let handle = crate::connectors::source::start(
            Arc::clone(definition),
            &offsets,
            keyed_rows,
            Arc::clone(schema),
            Arc::clone(&status),
            Box::new(SourceIngest {
                commands,
                source: id,
            }),
        )?;
        Ok((handle, status))
    }

    fn register_source(&mut self, id: RelationId, handle: SourceHandle, status: Arc<SourceStatus>) {
        Arc::make_mut(&mut self.connectors)
            .sources
            .insert(id, status);
        self.sources.insert(id, handle);
    }

    fn register_sink(&mut self, id: RelationId, handle: SinkHandle) {
        Arc::make_mut(&mut self.connectors)
            .sinks
            .insert(id, Arc::clone(&handle.status));
        self.sinks.insert(id, handle);
    }

    /// Starts a sink's thread; the caller registers it and sends it its first changes. With
    /// a data directory the sink is exactly-once, and first rewrites what `recovered` holds
    /// beyond what Kafka committed.
    fn start_sink(
        &self,
        id: RelationId,
        name: &str,
        from: RelationId,
        definition: &Arc<crate::connectors::SinkDefinition>,
        recovered: Vec<SinkBatch>,
    ) -> Result<SinkHandle> {
        let status = Arc::new(SinkStatus::new(name.to_string(), definition.topic.clone()));
        let exactly_once = self.durability.as_ref().map(|durability| ExactlyOnce {
            transactional_id: format!("tributary-{}-sink-{id}", durability.directory().instance()),
            checkpoints: Arc::clone(&durability.reports),
            recovered,
        });
        Ok(crate::connectors::sink::start(
            from,
            Arc::clone(definition),
            status,
            exactly_once,
        )?)
    }

    /// An append-only source's messages as of the current epoch: from its start offsets to
    /// what it has ingested. `None` for any other relation.
    fn source_range(&self, id: RelationId) -> Option<SourceRange> {
        let relation = self.catalog.by_id(id)?;
        let Some(ConnectorDefinition::Source(definition)) = &relation.connector else {
            return None;
        };
        if definition.envelope != crate::sql::streaming::Envelope::None {
            return None;
        }
        let ingested = self.source_offsets.get(&id)?;
        let partitions = definition
            .raw_start_offsets()
            .into_iter()
            .map(|(partition, start)| {
                let end = ingested.get(&partition).copied().unwrap_or(start);
                (partition, start, end)
            })
            .collect();
        Some(SourceRange {
            name: relation.name.clone(),
            definition: Arc::clone(definition),
            schema: crate::catalog::without_constraints(&relation.schema),
            partitions,
        })
    }

    /// Every row of a relation as of the current epoch, as insertions: what a new view, sink or
    /// subscription over it starts from.
    fn current_rows(&self, id: RelationId) -> Result<Vec<ChangeBatch>> {
        if let Some(table) = self.tables.get(&id) {
            return Ok(table
                .to_batches()
                .into_iter()
                .map(ChangeBatch::insertions)
                .collect());
        }
        if let Some(source) = self.keyed_sources.get(&id) {
            let batches = source.snapshot().to_batches()?;
            return Ok(batches.into_iter().map(ChangeBatch::insertions).collect());
        }
        if let Some(range) = self.source_range(id) {
            // While the catalog is recreated the checkpoint still has to fill the views: what
            // they had read of the source is in their restored state, not to be read again.
            if self.recovery == Recovery::RecreatingCatalog {
                return Ok(Vec::new());
            }
            let started = std::time::Instant::now();
            let batches = range.read()?;
            tracing::info!(
                source = %range.name,
                rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "read the source back from Kafka"
            );
            return Ok(batches.into_iter().map(ChangeBatch::insertions).collect());
        }
        if let Some(view) = self.views.get(&id) {
            if let Some(error) = &view.failed {
                return Err(ExecutionError::ViewFailed {
                    view: view.name.clone(),
                    reason: Box::new(error.clone()),
                }
                .into());
            }
            let batches = view.contents().to_batches()?;
            return Ok(batches.into_iter().map(ChangeBatch::insertions).collect());
        }
        Err(PlanError::UndefinedTable(format!("(relation {id})")).into())
    }

    fn drop_relations(
        &mut self,
        kind: RelationKind,
        names: &[String],
        if_exists: bool,
        cascade: bool,
    ) -> Result<()> {
        // Check every name before dropping any, so a failing DROP changes nothing.
        let mut doomed = Vec::new();
        for name in names {
            if self.catalog.get(name).is_none() && if_exists {
                continue;
            }
            doomed.extend(self.catalog.plan_drop(name, kind, cascade)?);
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let epoch = self.next_epoch();
        let ids: Vec<RelationId> = doomed.iter().map(|relation| relation.id).collect();
        self.log(&[LoggedRecord {
            epoch,
            record: LogRecord::Drop(ids.clone()),
        }])?;
        self.remove_relations(&ids);
        Ok(())
    }

    fn redefine(
        &mut self,
        renamed: RelationId,
        redefinitions: Vec<Redefinition>,
        seen: u64,
    ) -> Result<()> {
        // A DROP or rename since the statement looked (the version moved), or a view created
        // meanwhile that reads the renamed relation, would be missed by what it computed.
        let covered = |id: RelationId| {
            redefinitions
                .iter()
                .any(|redefinition| redefinition.id == id)
        };
        if seen != self.catalog_version
            || !covered(renamed)
            || self
                .catalog
                .dependents(renamed)
                .iter()
                .any(|dependent| !covered(dependent.id))
        {
            return Err(CatalogError::ChangedMeanwhile("the catalog".into()).into());
        }
        for redefinition in &redefinitions {
            if let Some(existing) = self.catalog.get(&redefinition.name)
                && existing.id != redefinition.id
            {
                return Err(CatalogError::DuplicateObject(redefinition.name.clone()).into());
            }
        }
        let epoch = self.next_epoch();
        self.log(&[LoggedRecord {
            epoch,
            record: LogRecord::Redefine(redefinitions.clone()),
        }])?;
        self.apply_redefinitions(&redefinitions)
    }

    /// Gives relations (checked and logged) their new names and statements.
    fn apply_redefinitions(&mut self, redefinitions: &[Redefinition]) -> Result<()> {
        self.catalog_version += 1;
        let catalog = Arc::make_mut(&mut self.catalog);
        for redefinition in redefinitions {
            catalog.redefine(
                redefinition.id,
                &redefinition.name,
                &redefinition.sql,
                redefinition.definition.as_deref(),
            )?;
            if let Some(view) = self.views.get_mut(&redefinition.id) {
                view.name.clone_from(&redefinition.name);
            }
        }
        self.publish();
        Ok(())
    }

    /// Removes relations (already checked and logged) and stops their connectors.
    fn remove_relations(&mut self, ids: &[RelationId]) {
        self.catalog_version += 1;
        for &id in ids {
            if let Some(relation) = self.catalog.by_id(id) {
                for sequence in sequences_of(&relation.schema) {
                    self.sequences.remove(&sequence);
                }
            }
            Arc::make_mut(&mut self.catalog).remove(id);
            self.tables.remove(&id);
            self.keyed_sources.remove(&id);
            self.views.remove(&id);
            self.source_offsets.remove(&id);
            self.keyed_rows.remove(&id);
            self.sink_outputs.remove(&id);
            self.subscribers.retain(|subscriber| {
                if subscriber.reads(id) {
                    subscriber.end(ExecutionError::SubscribedRelationDropped(
                        subscriber.relation_name().to_string(),
                    ));
                }
                !subscriber.reads(id)
            });
            // Dropping the handles stops the connectors' threads.
            if self.sources.remove(&id).is_some() || self.sinks.remove(&id).is_some() {
                let connectors = Arc::make_mut(&mut self.connectors);
                connectors.sources.remove(&id);
                connectors.sinks.remove(&id);
            }
        }
        self.publish();
    }
}

/// `changes` (rows of `schema`) with each row's weights summed, and rows whose weights cancel
/// left out: a replaced view's readers get only what changed.
fn consolidated(schema: &SchemaRef, changes: Vec<ChangeBatch>) -> Result<Vec<ChangeBatch>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let schema = crate::catalog::without_constraints(schema);
    let changes: Vec<ChangeBatch> = changes
        .into_iter()
        .map(|batch| {
            Ok(ChangeBatch::new(
                crate::storage::change_batch::with_schema(&batch.rows, &schema)?,
                batch.weights,
            ))
        })
        .collect::<Result<_>>()?;
    let all = ChangeBatch::concat(&schema, &changes)?;
    let converter = crate::storage::change_batch::row_converter_for(&schema)?;
    let (consolidated, _) = all.consolidate(&converter)?;
    Ok(if consolidated.is_empty() {
        Vec::new()
    } else {
        vec![consolidated]
    })
}

/// The sequences a table's serial columns take their values from.
fn sequences_of(schema: &SchemaRef) -> impl Iterator<Item = String> + '_ {
    schema
        .fields()
        .iter()
        .filter_map(|field| field.metadata().get(crate::catalog::SEQUENCE_KEY).cloned())
}

fn evaluate_predicate(
    predicate: &Option<Arc<dyn PhysicalExpr>>,
    chunk: &RecordBatch,
) -> Result<BooleanArray> {
    match predicate {
        None => Ok(BooleanArray::from(vec![true; chunk.num_rows()])),
        Some(predicate) => {
            let mask = predicate.evaluate(chunk)?.into_array(chunk.num_rows())?;
            mask.as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| {
                    PlanError::DatatypeMismatch("argument of WHERE must be type boolean".into())
                        .into()
                })
        }
    }
}

/// Builds a stored batch (schema `stored`) from columns of the table's types, enforcing the
/// relation's NOT NULL and VARCHAR(n) constraints and keeping jsonb columns canonical (however
/// the value arrived: INSERT, UPDATE, COPY).
fn conform(
    mut columns: Vec<ArrayRef>,
    relation: &Relation,
    stored: &SchemaRef,
) -> Result<RecordBatch> {
    for (column, field) in columns.iter_mut().zip(relation.schema.fields()) {
        if *field.data_type() == crate::sql::jsonb::JSONB {
            *column = match crate::sql::jsonb::canonical_array(column.as_ref()) {
                Ok(canonical) => canonical,
                Err(crate::sql::jsonb::CanonicalError::Jsonb(error)) => {
                    return Err(ExecutionError::Jsonb(error).into());
                }
                Err(crate::sql::jsonb::CanonicalError::Arrow(error)) => return Err(error.into()),
            };
        }
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(ExecutionError::NotNullViolation {
                column: field.name().clone(),
                relation: relation.name.clone(),
            }
            .into());
        }
        let max_length = field
            .metadata()
            .get(crate::catalog::MAX_LENGTH_KEY)
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(max_length) = max_length
            && let Some(strings) = column.as_string_opt::<i32>()
            && strings
                .iter()
                .flatten()
                .any(|value| value.chars().count() > max_length)
        {
            return Err(ExecutionError::StringTooLong(max_length).into());
        }
    }
    Ok(RecordBatch::try_new(Arc::clone(stored), columns)?)
}
