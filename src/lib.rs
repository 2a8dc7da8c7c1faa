//! # ScryDB
//!
//! An embedded columnar database for OpenTelemetry data: spans, logs and metrics in one
//! local directory that a Rust program opens with one call.
//!
//! ```
//! use scrydb::{Db, Options, Signal};
//! use scrydb::synth::{Rng, spans};
//!
//! # fn main() -> scrydb::Result<()> {
//! let dir = tempfile::tempdir().expect("temporary directory");
//! let db = Db::open(dir.path(), Options::default())?;
//!
//! // Append Arrow batches; each is validated, logged and visible when the call returns.
//! let batch = spans(&mut Rng::new(42), 1_000, 1_764_000_000_000_000_000);
//! db.append(Signal::Spans, &batch)?;
//!
//! // Read through a snapshot: segments plus not-yet-flushed rows.
//! let snapshot = db.snapshot();
//! let rows: usize = snapshot.scan(Signal::Spans, None)?.iter().map(|b| b.num_rows()).sum();
//! assert_eq!(rows, 1_000);
//!
//! // A clean close writes everything into Parquet segments.
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! The storage engine is [`scrydb_engine`] (re-exported here); the SQL layer is
//! [`scrydb_sql`].

pub use scrydb_engine::*;
pub use scrydb_sql as sql;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
