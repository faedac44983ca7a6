//! Tributary: a streaming SQL database server. Clients speak the Postgres protocol; materialized
//! views are maintained incrementally, their results always as fresh as the last write.
//!
//! The architecture, in pipeline order:
//!
//! 1. [`server`] accepts Postgres connections (pgwire) and hands each query to its [`session`].
//! 2. [`session`] runs a statement: [`sql`] parses it in the Postgres dialect, [`statements`]
//!    dispatches on its kind, and [`planner`] plans it with DataFusion against the snapshot the
//!    statement pinned.
//! 3. Writes (INSERT, UPDATE, DELETE) and catalog changes go to the [`coordinator`], the single
//!    owner of all state. It applies them to [`storage`] in epochs, turning each table change
//!    into a change batch (a Z-set over Arrow rows, [`dataflow::ChangeBatch`]).
//! 4. Each materialized view is a [`dataflow`] lowered from DataFusion's optimized logical plan
//!    ([`planner::lower`]): filter, project and aggregate operators that turn input changes into
//!    output changes, doing work proportional to the change.
//! 5. At the epoch's barrier the view's changes land in its arrangement ([`storage`]), and the
//!    coordinator publishes one snapshot of every relation at that epoch ([`catalog`] included).
//!    The statement that caused the epoch returns only then, so its session (and every other)
//!    reads its effect: read-your-writes, one consistent epoch across all views.
//! 6. SELECTs run on DataFusion over the pinned snapshot; results go back through [`server`] in
//!    text or binary format. Errors from every stage are typed ([`error`]) and carry the SQLSTATE
//!    Postgres would send.

pub mod catalog;
pub mod connectors;
pub mod coordinator;
pub mod dataflow;
pub mod error;
pub mod planner;
pub mod server;
pub mod session;
pub mod sql;
pub mod statements;
pub mod storage;

pub use server::run;
