//! # scrydb-sql
//!
//! The SQL layer of ScryDB: Apache DataFusion over the storage engine's snapshots. It depends
//! on `scrydb-engine`, never the reverse, and knows nothing of file formats beyond what a
//! snapshot hands it (segment paths with time ranges, in-memory batches).
//!
//! This crate currently holds the one place where engine errors become DataFusion errors;
//! the `spans`, `logs` and `metrics` table providers are built on it.

//! # scrydb-sql
//!
//! The SQL layer of ScryDB: Apache DataFusion over the storage engine's snapshots. It depends
//! on `scrydb-engine`, never the reverse, and knows nothing of file formats beyond what a
//! snapshot hands it (segment paths with time ranges, in-memory batches).
//!
//! A [`Session`] registers the tables `spans`, `logs` and `metrics` ([`table::ScryTable`]),
//! the function `duration_ms(ns)`, the table functions `trace_spans('<hex>')` and
//! `service_graph(start, end)`, and a rewrite that lets trace and span ids be written as hex
//! strings ([`ids`]). Everything else is DataFusion SQL: `attributes['http.route']`,
//! `date_bin`, `approx_percentile_cont`, joins across the three tables.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = scrydb_engine::Db::open(dir.path(), scrydb_engine::Options::default())?;
//! let spans = scrydb_workload::synth::spans(&mut scrydb_workload::Rng::new(1), 100, 0);
//! db.append(scrydb_engine::Signal::Spans, &spans)?;
//! let session = scrydb_sql::Session::new(db.reader())?;
//! let rows = session.sql_blocking("SELECT count(*) AS n FROM spans")?;
//! assert_eq!(rows[0].num_rows(), 1);
//! # Ok(()) }
//! ```

pub mod functions;
pub mod ids;
pub mod table;

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::Analyzer;
use datafusion::prelude::{SessionConfig, SessionContext};
use scrydb_engine::{Reader, Signal};

pub use ids::ids_as_hex;
pub use table::ScryTable;

use datafusion::error::DataFusionError;

/// Errors of the SQL layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed.
    Engine(scrydb_engine::Error),
    /// The query failed: a syntax or planning error, or an error while running it. The
    /// message is one line.
    Query(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Engine(e) => write!(f, "{e}"),
            Error::Query(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine(e) => Some(e),
            Error::Query(_) => None,
        }
    }
}

impl From<scrydb_engine::Error> for Error {
    fn from(e: scrydb_engine::Error) -> Self {
        Error::Engine(e)
    }
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // An engine error inside DataFusion's wrappers stays an engine error.
        if let DataFusionError::External(inner) = e.find_root()
            && let Some(engine) = inner.downcast_ref::<Error>()
            && let Error::Engine(_) = engine
        {
            return Error::Query(one_line(&engine.to_string()));
        }
        Error::Query(one_line(&e.find_root().strip_backtrace()))
    }
}

/// DataFusion messages can span lines (and repeat their context); users get one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Engine errors reach DataFusion as external errors, so the user sees the engine's
/// message (which names the file or column) and callers can downcast to the engine error.
impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// A SQL session over one database: the three tables and ScryDB's functions registered in
/// a DataFusion `SessionContext`. Each query reads a fresh snapshot, so it sees every row
/// whose append returned before the query started.
pub struct Session {
    ctx: SessionContext,
}

impl Session {
    /// A session over the database `reader` reads.
    pub fn new(reader: Reader) -> Result<Self, Error> {
        Self::with_trace_index(reader, true)
    }

    /// A session whose `trace_id` lookups use the per-segment trace indexes (`true`, as
    /// [`Session::new`]) or not (to compare, or to measure what the index buys).
    pub fn with_trace_index(reader: Reader, use_index: bool) -> Result<Self, Error> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut rules = Analyzer::new().rules;
        rules.insert(0, Arc::new(ids::HexIds));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let mut tables = Vec::new();
        for signal in Signal::ALL {
            let table =
                Arc::new(ScryTable::new(reader.clone(), signal).with_trace_index(use_index));
            ctx.register_table(signal.name(), table.clone())
                .map_err(Error::from)?;
            tables.push(table);
        }
        ctx.register_udf(functions::duration_ms());
        ctx.register_udtf(
            "trace_spans",
            Arc::new(functions::TraceSpans {
                spans: tables[0].clone(),
            }),
        );
        ctx.register_udtf(
            "service_graph",
            Arc::new(functions::ServiceGraph {
                spans: tables[0].clone(),
            }),
        );
        Ok(Session { ctx })
    }

    /// The DataFusion context, to register more tables or functions or use the DataFrame
    /// API.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs one SQL statement and returns its result. Ids come back as binary
    /// (`FixedSizeBinary`); [`ids_as_hex`] turns them into hex strings for display.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>, Error> {
        Ok(self.sql_with_schema(query).await?.1)
    }

    /// Like [`Session::sql`], also returning the result's schema (known even when there are
    /// no rows).
    pub async fn sql_with_schema(
        &self,
        query: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
        let df = self.ctx.sql(query).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }

    /// [`Session::sql`] for callers without an async runtime: runs on a runtime ScryDB keeps
    /// for this. Must not be called from inside an async task (use `sql` there).
    pub fn sql_blocking(&self, query: &str) -> Result<Vec<RecordBatch>, Error> {
        runtime().block_on(self.sql(query))
    }

    /// [`Session::sql_with_schema`] for callers without an async runtime.
    pub fn sql_with_schema_blocking(
        &self,
        query: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
        runtime().block_on(self.sql_with_schema(query))
    }
}

/// The runtime blocking queries run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("scry-sql")
            .enable_all()
            .build()
            .expect("the SQL runtime starts")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_message_in_datafusion() {
        let e: DataFusionError = Error::from(scrydb_engine::Error::Closed).into();
        assert!(e.to_string().contains("database is closed"), "{e}");
    }
}
