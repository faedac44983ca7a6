//! Tributary: a streaming SQL database server. Kafka topics come in as sources, materialized
//! views over them are maintained incrementally, clients query them over the Postgres protocol,
//! and sinks write their changes back to Kafka.
//!
//! The architecture, in pipeline order:
//!
//! 1. [`connectors`] read Kafka: each source is a thread that decodes what arrived (arrow-json,
//!    arrow-csv) into one Arrow batch per tick, applies its envelope (append, upsert, Debezium)
//!    and hands the changes to the coordinator. Malformed messages are recorded, not fatal.
//! 2. [`server`] accepts Postgres connections (pgwire; SCRAM-SHA-256 and TLS when configured),
//!    checks each message's layout before pgwire decodes it (a malformed one closes the
//!    connection with 08P01) and hands each query to its [`session`]; cancel requests stop the
//!    statement running.
//! 3. [`session`] runs a statement: [`sql`] parses it in the Postgres dialect (plus Tributary's
//!    own CREATE SOURCE / SINK / CONNECTION and FLUSH, WATERMARK FOR and EMIT ON WINDOW CLOSE,
//!    and TUMBLE / HOP windows expanded into plain SQL) and bounds how deeply it nests
//!    ([`sql::depth`]: no later recursive stage can overflow a stack), [`statements`]
//!    dispatches on its kind, and [`planner`] plans it with
//!    DataFusion against the snapshot the statement pinned.
//! 4. Source changes, table writes (INSERT, UPDATE, DELETE) and catalog changes go to the
//!    [`coordinator`], the single owner of all state. It applies them to [`storage`] in epochs,
//!    each as a change batch (a Z-set over Arrow rows, [`dataflow::ChangeBatch`]).
//! 5. Each materialized view is a [`dataflow`]. [`planner::lower`] turns DataFusion's optimized
//!    logical plan into a [`dataflow::DataflowPlan`], a value: filter, project, aggregate, join,
//!    union, top-N and window-function operators with stable ids, and edges saying how rows move between workers
//!    (forward, hash by key, already partitioned by that key, gather; [`planner::colocate`]
//!    keeps rows where an earlier hash put them; [`planner::two_phase`] splits an aggregate
//!    over few groups into a partial one per worker and a final one per group). EXPLAIN prints it, the catalog, log and
//!    checkpoints store it, and [`dataflow::render`] builds the live operators from it, which turn input changes
//!    into output changes, doing work proportional to the change (a relation read twice, as in
//!    a self-join, feeds both ports). A view that emits
//!    on window close reads each watermarked relation through a filter that keeps late changes
//!    out, and its windowed aggregate emits a window once the watermark passes its end.
//!    Every worker runs a whole shard of every dataflow ([`dataflow::workers`]): its own copy
//!    of each operator and its share of the rows; an epoch runs in stages that start where rows
//!    are hashed to the worker owning their key ([`dataflow::exchange`]) or gathered, and the
//!    workers run a large epoch's stages side by side on a pool of one thread per core.
//! 6. At the epoch's barrier the view's changes land in its arrangement ([`storage`]), each sink
//!    and subscription (SUBSCRIBE) is sent its relation's changes, and the coordinator
//!    publishes one snapshot of every relation at that epoch ([`catalog`] included). A
//!    statement that caused the epoch returns only then, so its session (and every other) reads
//!    its effect: read-your-writes, one consistent epoch across all views.
//! 7. With a data directory ([`storage`]), every table write and catalog change is appended to
//!    a write-ahead log and synced before the statement returns, and the coordinator
//!    checkpoints the catalog, rows, operator states and source offsets of one epoch every
//!    second, each operator's state filed under its operator id and worker. On start,
//!    [`recovery`] loads the newest complete checkpoint, renders each view's stored plan (state
//!    saved with another number of workers goes to each key's new owner), replays the log after it
//!    and restarts the sources from their stored offsets.
//! 8. SELECTs run on DataFusion over the pinned snapshot; results go back through [`server`] in
//!    text or binary format. Catalog queries from psql, JDBC and SQLAlchemy read
//!    [`pg_catalog`], built from the same snapshot. COPY moves rows in bulk in [`copy`]'s
//!    formats: `FROM STDIN` into a table as one write, `TO STDOUT` from a table or query. Errors from every stage are typed ([`error`]) and carry the SQLSTATE
//!    Postgres would send.

pub mod catalog;
pub mod connectors;
pub mod coordinator;
pub mod copy;
pub mod dataflow;
pub mod error;
pub mod pg_catalog;
pub mod planner;
pub mod recovery;
pub mod server;
pub mod session;
pub mod sql;
pub mod statements;
pub mod storage;

pub use server::{Config, Credentials, TlsFiles, run, serve};
