//! # scrydb-engine
//!
//! The storage engine of ScryDB, an embedded columnar database for OpenTelemetry spans,
//! logs and metrics. It owns one directory and gives:
//!
//! - validated, atomic appends of Arrow batches per signal ([`Db::append`]), made durable in
//!   a write-ahead log before they are acknowledged ([`Durability`]) and group-committed
//!   across threads;
//! - a memtable that background threads flush into time-partitioned, sorted, zstd-compressed
//!   Parquet segments with statistics and page indexes, published through an atomically
//!   replaced, checksummed manifest;
//! - read snapshots ([`Snapshot`]) that list segments and unflushed batches by time range and
//!   never wait for writers;
//! - recovery at open (log replay, torn-tail truncation, quarantine of a damaged log,
//!   removal of provable leftovers only, reported in [`RecoveryReport`]), a read-only open
//!   that changes nothing ([`Db::open_read_only`]), a directory lock, and fail-stop after
//!   an I/O error.
//!
//! It is not a query engine: it knows nothing of SQL or DataFusion. The `scrydb-sql` crate
//! reads the segments and batches a [`Snapshot`] hands out. All file I/O goes through
//! [`io::FileSystem`].
//!
//! ```no_run
//! use scrydb_engine::{Db, Options, Signal};
//! # fn main() -> scrydb_engine::Result<()> {
//! let db = Db::open("./scry-data", Options::default())?;
//! let batch = scrydb_workload::synth::spans(&mut scrydb_workload::Rng::new(1), 1_000, 0);
//! db.append(Signal::Spans, &batch)?;
//! let rows: usize = db.snapshot().scan(Signal::Spans, None)?.iter().map(|b| b.num_rows()).sum();
//! assert_eq!(rows, 1_000);
//! db.close()?;
//! # Ok(()) }
//! ```

pub mod alloc;
pub mod compaction;
pub mod critical_path;
mod db;
mod error;
mod flush;
mod follow;
pub mod index;
pub mod io;
pub mod manifest;
mod memtable;
mod options;
pub mod otlp;
pub mod partition;
mod recovery;
pub mod remote;
mod retention;
pub mod rollup;
pub mod schema;
pub mod search;
pub mod segment;
mod signal;
mod snapshot;
mod span_tree;
mod state;
pub mod structure;
pub mod thin;
pub mod trace;
pub mod validate;
pub mod verify;
pub mod wal;
mod write;

pub use alloc::tune_allocator;
/// The Arrow version ScryDB's batches are built with.
pub use arrow;
pub use compaction::CompactionStats;
pub use db::{Db, LOCK_FILE, PendingAppend, Reader, WriteStats, lock_error};
pub use error::{Error, Result};
pub use follow::Refreshed;
pub use manifest::SegmentMeta;
pub use options::{Durability, Options, WalRecovery};
pub use recovery::RecoveryReport;
pub use retention::RetentionStats;
pub use signal::Signal;
pub use snapshot::{PartitionStats, SignalStats, Snapshot, TimeRange};
pub use span_tree::{FOLD_RUN, Folds, SpanNode, SpanTree, TraceLog, severity_name};
pub use trace::{Trace, parse_trace_id};
pub use verify::{VerifyReport, verify_dir};
pub use wal::WAL_DIR;
