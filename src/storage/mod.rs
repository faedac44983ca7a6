//! Storage: change batches, table chunks, view arrangements, sequences, and what makes them
//! durable (the data directory, its write-ahead log and checkpoints).

pub mod arrangement;
pub mod change_batch;
pub mod checkpoint;
pub mod codec;
pub mod directory;
pub mod secrets;
pub mod sequences;
pub mod table;
pub mod wal;

pub use arrangement::{Arrangement, ArrangementSnapshot, RowOrder};
pub use change_batch::ChangeBatch;
pub use sequences::Sequences;
pub use table::TableData;

/// An epoch number. Epoch N is complete when every dataflow has seen its barrier; tables, the
/// log and checkpoints are as of one epoch.
pub type Epoch = u64;
