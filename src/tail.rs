//! Following a store as it grows: the records a writer (`scry serve`, another program)
//! acknowledges from now on, optionally filtered by a SQL predicate — what `scry tail`
//! prints, the way `kubectl logs -f` follows a pod.
//!
//! A [`Tail`] opens the store read-only (beside the writer, changing nothing) and on each
//! [`Tail::poll`] reads the log frames the writer appended since the previous poll: each
//! acknowledged record is returned once, in log order. A tail that polls less often than
//! the writer flushes can miss records whose log file the writer already removed; [`Tail::poll`]
//! says so ([`Polled::skipped`]) — they are in the store, only not in the tail.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tail = scrydb::tail::Tail::open("./scry-data", scrydb::Signal::Logs, Some("severity_number >= 17"))?;
//! loop {
//!     let polled = tail.poll()?;
//!     for batch in &polled.batches {
//!         println!("{} new error logs", batch.num_rows());
//!     }
//!     std::thread::sleep(std::time::Duration::from_millis(200));
//! }
//! # }
//! ```

use std::path::Path;
use std::sync::Arc;

use scrydb_engine::arrow::array::RecordBatch;
use scrydb_sql::datafusion::datasource::MemTable;

use crate::{Db, Options, Signal, sql};

/// The name the new rows have in a tail's filter query.
const TABLE: &str = "scry_tail_rows";

/// A follower of one table of a store; see the module docs.
pub struct Tail {
    db: Db,
    signal: Signal,
    query: Option<String>,
}

/// What one [`Tail::poll`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Polled {
    /// New records of the tail's table that pass its filter, in log order.
    pub batches: Vec<RecordBatch>,
    /// The writer flushed and removed log files before this tail read all of them: some
    /// records were stored but are not in `batches`.
    pub skipped: bool,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("dir", &self.db.path())
            .field("signal", &self.signal)
            .field("query", &self.query)
            .finish()
    }
}

impl Tail {
    /// Starts following `signal`'s table of the store in `dir` from now on (records
    /// acknowledged before are not returned). `filter` is a SQL boolean expression over the
    /// table's columns (`severity_number >= 17 AND service_name = 'cart'`; ids may be
    /// written as hex strings); it is checked now, so a typo fails here with DataFusion's
    /// message, not at the first record.
    pub fn open(
        dir: impl AsRef<Path>,
        signal: Signal,
        filter: Option<&str>,
    ) -> Result<Tail, sql::Error> {
        let db = Db::open_read_only(dir, Options::default().follow_writer(false))?;
        let query = filter
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| format!("SELECT * FROM {TABLE} WHERE {f}"));
        let tail = Tail { db, signal, query };
        // Check the filter against an empty table.
        tail.filter(Vec::new())?;
        Ok(tail)
    }

    /// The store being followed.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The records acknowledged since the previous poll (since [`Tail::open`] at first).
    pub fn poll(&mut self) -> Result<Polled, sql::Error> {
        let refreshed = self.db.refresh()?;
        let batches: Vec<RecordBatch> = refreshed
            .new_batches
            .into_iter()
            .filter(|(s, _)| *s == self.signal)
            .map(|(_, b)| b)
            .collect();
        Ok(Polled {
            batches: self.filter(batches)?,
            skipped: refreshed.skipped_log,
        })
    }

    fn filter(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, sql::Error> {
        let Some(query) = &self.query else {
            return Ok(batches);
        };
        if batches.is_empty() && self.db.session()?.context().table_exist(TABLE)? {
            return Ok(batches);
        }
        let session = self.db.session()?;
        let schema = scrydb_engine::schema::schema(self.signal);
        let table = MemTable::try_new(schema, vec![batches])?;
        let ctx = session.context();
        ctx.deregister_table(TABLE)?;
        ctx.register_table(TABLE, Arc::new(table))?;
        let out = session.sql_blocking(query)?;
        Ok(out.into_iter().filter(|b| b.num_rows() > 0).collect())
    }
}
