//! # ScryDB
//!
//! An embedded columnar database for OpenTelemetry data: spans, logs and metrics in one
//! local directory that a Rust program opens with one call.
//!
//! ```
//! use scrydb::{Db, Options, Signal};
//! use scrydb_workload::synth::{Rng, spans};
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
//! SQL over the three tables (`spans`, `logs`, `metrics`) runs on the same handle, through
//! one SQL session that the handle keeps and reuses:
//!
//! ```
//! use scrydb::{Db, Options, Signal};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default())?;
//! db.append(Signal::Spans, &scrydb_workload::synth::spans(&mut scrydb_workload::Rng::new(1), 100, 0))?;
//! let batches = db.sql_blocking(
//!     "SELECT service_name, count(*) AS spans FROM spans GROUP BY service_name",
//! )?;
//! assert!(batches.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
//! # Ok(()) }
//! ```
//!
//! The storage engine is [`scrydb_engine`] (re-exported here; [`Db`] dereferences to its
//! handle, so every engine call works on it); the SQL layer is [`scrydb_sql`].

#[cfg(feature = "serve")]
pub mod alert;
pub mod diagnose;
#[cfg(feature = "serve")]
pub mod mcp;
#[cfg(feature = "mimalloc")]
mod mimalloc_tuning;
#[cfg(feature = "serve")]
pub mod server;
pub mod tail;
#[cfg(feature = "serve")]
pub mod ui;

#[cfg(feature = "mimalloc")]
pub use mimalloc_tuning::{MIMALLOC_PURGE_DELAY_MS, tune_mimalloc};
pub use scrydb_engine::*;
pub use scrydb_sql as sql;

use std::path::Path;
use std::sync::OnceLock;

use scrydb_engine::arrow::array::RecordBatch;

/// An open ScryDB database with SQL: the storage engine's handle
/// ([`scrydb_engine::Db`], which this dereferences to: `append`, `snapshot`, `trace`,
/// `flush`, `ingest_otlp`, ...) plus a SQL session created on first use and reused by every
/// query after it.
///
/// `Db` is `Send + Sync`; share it (`Arc<Db>`) between threads. Every SQL statement reads
/// one snapshot of its own (see [`sql::Session`]), so reusing the session never makes a
/// query see stale rows.
pub struct Db {
    engine: scrydb_engine::Db,
    session: OnceLock<sql::Session>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.engine.fmt(f)
    }
}

impl std::ops::Deref for Db {
    type Target = scrydb_engine::Db;

    fn deref(&self) -> &scrydb_engine::Db {
        &self.engine
    }
}

impl From<scrydb_engine::Db> for Db {
    fn from(engine: scrydb_engine::Db) -> Self {
        Db {
            engine,
            session: OnceLock::new(),
        }
    }
}

impl Db {
    /// Opens (creating if needed) the database in `dir`; see [`scrydb_engine::Db::open`]
    /// for recovery, locking and errors.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        scrydb_engine::Db::open(dir, opts).map(Db::from)
    }

    /// Opens the database in `dir` for reading only, changing nothing in the directory
    /// (it works beside a writer); see [`scrydb_engine::Db::open_read_only`]. A directory
    /// that holds no store is [`Error::NotAStore`].
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        scrydb_engine::Db::open_read_only(dir, opts).map(Db::from)
    }

    /// Opens (creating if needed) the store whose log, lock and cache are in `dir` and
    /// whose segments, indexes and manifest are in object storage at `remote`; see
    /// [`scrydb_engine::Db::open_remote`] and [`remote`].
    pub fn open_remote(
        dir: impl AsRef<Path>,
        remote: remote::RemoteStore,
        remote_opts: remote::RemoteOptions,
        opts: Options,
    ) -> Result<Db> {
        scrydb_engine::Db::open_remote(dir, remote, remote_opts, opts).map(Db::from)
    }

    /// Opens the store at `remote` read-only, with its cache in `dir`; see
    /// [`scrydb_engine::Db::open_remote_read_only`].
    pub fn open_remote_read_only(
        dir: impl AsRef<Path>,
        remote: remote::RemoteStore,
        remote_opts: remote::RemoteOptions,
        opts: Options,
    ) -> Result<Db> {
        scrydb_engine::Db::open_remote_read_only(dir, remote, remote_opts, opts).map(Db::from)
    }

    /// Opens several stores (one per writer, or every writer under a parent prefix) as one
    /// read-only store, with their caches in `dir`; see [`scrydb_engine::Db::open_view`].
    pub fn open_view(
        dir: impl AsRef<Path>,
        view: &remote::View,
        remote_opts: remote::RemoteOptions,
        opts: Options,
    ) -> Result<Db> {
        scrydb_engine::Db::open_view(dir, view, remote_opts, opts).map(Db::from)
    }

    /// The storage engine's handle.
    pub fn engine(&self) -> &scrydb_engine::Db {
        &self.engine
    }

    /// The SQL session of this database, created on first use (registering the tables and
    /// functions costs a few milliseconds once) and then shared by every query.
    pub fn session(&self) -> std::result::Result<&sql::Session, sql::Error> {
        if let Some(s) = self.session.get() {
            return Ok(s);
        }
        let created = sql::Session::new(self.engine.reader())?;
        // Two threads may race to create it; one wins and both use the winner.
        let _ = self.session.set(created);
        Ok(self.session.get().expect("set above"))
    }

    /// Runs one SQL statement. Trace and span ids come back as binary; see
    /// [`sql::ids_as_hex`] for display.
    pub async fn sql(&self, query: &str) -> std::result::Result<Vec<RecordBatch>, sql::Error> {
        self.session()?.sql(query).await
    }

    /// [`Db::sql`] without an async runtime. Must not be called from an async task.
    pub fn sql_blocking(&self, query: &str) -> std::result::Result<Vec<RecordBatch>, sql::Error> {
        self.session()?.sql_blocking(query)
    }

    /// Flushes everything, stops the background threads and releases the directory; see
    /// [`scrydb_engine::Db::close`].
    pub fn close(self) -> Result<()> {
        self.engine.close()
    }
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
