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
//! SQL over the three tables comes with [`SqlExt`]:
//!
//! ```
//! use scrydb::{Db, Options, Signal, SqlExt};
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
//! The storage engine is [`scrydb_engine`] (re-exported here); the SQL layer is
//! [`scrydb_sql`].

pub use scrydb_engine::*;
pub use scrydb_sql as sql;

use scrydb_engine::arrow::array::RecordBatch;

/// SQL on a [`Db`]: the `spans`, `logs` and `metrics` tables and ScryDB's functions (see
/// [`scrydb_sql`]). Every query reads a fresh snapshot.
pub trait SqlExt {
    /// A SQL session over this database, to run many queries or use DataFusion directly.
    fn session(&self) -> std::result::Result<sql::Session, sql::Error>;

    /// Runs one SQL statement. Trace and span ids come back as binary; see
    /// [`sql::ids_as_hex`] for display.
    fn sql(
        &self,
        query: &str,
    ) -> impl std::future::Future<Output = std::result::Result<Vec<RecordBatch>, sql::Error>>;

    /// [`SqlExt::sql`] without an async runtime. Must not be called from an async task.
    fn sql_blocking(&self, query: &str) -> std::result::Result<Vec<RecordBatch>, sql::Error>;
}

impl SqlExt for Db {
    fn session(&self) -> std::result::Result<sql::Session, sql::Error> {
        sql::Session::new(self.reader())
    }

    async fn sql(&self, query: &str) -> std::result::Result<Vec<RecordBatch>, sql::Error> {
        self.session()?.sql(query).await
    }

    fn sql_blocking(&self, query: &str) -> std::result::Result<Vec<RecordBatch>, sql::Error> {
        self.session()?.sql_blocking(query)
    }
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
