//! # scrydb-sql
//!
//! The SQL layer of ScryDB: Apache DataFusion over the storage engine's snapshots. It depends
//! on `scrydb-engine`, never the reverse, and knows nothing of file formats beyond what a
//! snapshot hands it (segment paths with time ranges, in-memory batches).
//!
//! A [`Session`] registers the tables `spans`, `logs` and `metrics` ([`table::ScryTable`]),
//! the span rollups `span_metrics` ([`rollups::SpanMetricsTable`]) with the aggregate
//! `exp_histogram_quantile` ([`rollups::exp_histogram_quantile`]), the function
//! `duration_ms(ns)`, the table functions `trace_spans('<hex>')` and
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

pub mod alerts;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod compare;
pub mod export;
pub mod functions;
pub mod ids;
pub mod rollups;
pub mod search;
pub mod structure;
pub mod table;

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::Analyzer;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use scrydb_engine::{Reader, Signal};

/// The DataFusion version the SQL layer is built with.
pub use datafusion;
pub use ids::ids_as_hex;
pub use table::{ScryTable, StatementSnapshots};

/// Errors of the SQL layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The storage engine failed.
    Engine(scrydb_engine::Error),
    /// The query failed: a syntax or planning error, or an error while running it. The
    /// message is one line.
    Query(String),
    /// The query needed more memory than the session's limit
    /// ([`SessionOptions::memory_limit`]) even after spilling what DataFusion can spill,
    /// or its collected result alone exceeds the limit (stream it with
    /// [`Session::sql_stream`] instead). The session and the database stay usable.
    ResourcesExhausted(String),
    /// A search query ([`search`]) that does not parse or does not apply to its table.
    Search(search::SearchError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Engine(e) => write!(f, "{e}"),
            Error::Query(m) => f.write_str(m),
            Error::ResourcesExhausted(m) => write!(f, "query memory limit reached: {m}"),
            Error::Search(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Engine(e) => Some(e),
            Error::Search(e) => Some(e),
            Error::Query(_) | Error::ResourcesExhausted(_) => None,
        }
    }
}

impl From<search::SearchError> for Error {
    fn from(e: search::SearchError) -> Self {
        Error::Search(e)
    }
}

impl From<scrydb_engine::Error> for Error {
    fn from(e: scrydb_engine::Error) -> Self {
        Error::Engine(e)
    }
}

impl Error {
    /// The engine error behind this one, if the storage engine failed.
    pub fn engine(&self) -> Option<&scrydb_engine::Error> {
        match self {
            Error::Engine(e) => Some(e),
            Error::Query(_) | Error::ResourcesExhausted(_) | Error::Search(_) => None,
        }
    }
}

impl From<DataFusionError> for Error {
    /// An engine error inside DataFusion's wrappers (context, shared, external, Arrow and
    /// Parquet errors) stays an engine error of the same variant and fields; anything else
    /// is a one-line [`Error::Query`].
    fn from(e: DataFusionError) -> Self {
        if let Some(engine) = find_engine_error(&e) {
            return Error::Engine(engine.duplicate());
        }
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => Error::ResourcesExhausted(one_line(m)),
            root => Error::Query(binary_id_hint(one_line(&root.strip_backtrace()))),
        }
    }
}

/// The engine error a DataFusion error wraps, however deep. DataFusion shares one error
/// between partitions (`Shared`), so the error is found by reference and duplicated.
fn find_engine_error(e: &DataFusionError) -> Option<&scrydb_engine::Error> {
    use datafusion::arrow::error::ArrowError;
    use datafusion::parquet::errors::ParquetError;
    fn in_boxed<'a>(
        b: &'a (dyn std::error::Error + Send + Sync + 'static),
    ) -> Option<&'a scrydb_engine::Error> {
        if let Some(e) = b.downcast_ref::<Error>() {
            return e.engine();
        }
        if let Some(e) = b.downcast_ref::<scrydb_engine::Error>() {
            return Some(e);
        }
        if let Some(e) = b.downcast_ref::<DataFusionError>() {
            return find_engine_error(e);
        }
        if let Some(ParquetError::External(inner)) = b.downcast_ref::<ParquetError>() {
            return in_boxed(inner.as_ref());
        }
        if let Some(ArrowError::ExternalError(inner)) = b.downcast_ref::<ArrowError>() {
            return in_boxed(inner.as_ref());
        }
        None
    }
    match e {
        DataFusionError::External(b) => in_boxed(b.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            find_engine_error(inner)
        }
        DataFusionError::Shared(inner) => find_engine_error(inner),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::ExternalError(b) => in_boxed(b.as_ref()),
            _ => None,
        },
        DataFusionError::ParquetError(p) => match p.as_ref() {
            ParquetError::External(b) => in_boxed(b.as_ref()),
            _ => None,
        },
        DataFusionError::Collection(errors) => errors.iter().find_map(find_engine_error),
        _ => None,
    }
}

/// A planning error about a `FixedSizeBinary` argument (a trace or span id given to a text
/// function, `LIKE` or `||`; for some functions DataFusion reports an internal error and
/// asks for a bug report) led by what to write instead.
fn binary_id_hint(message: String) -> String {
    if !(message.contains("FixedSizeBinary(8)") || message.contains("FixedSizeBinary(16)")) {
        return message;
    }
    let message = match message.find(" This issue was likely caused by a bug") {
        Some(at) => {
            let rest = &message[at..];
            let end = rest
                .find("/issues.")
                .map_or(rest.len(), |i| i + "/issues.".len());
            format!("{}{}", &message[..at], &rest[end..])
        }
        None => message,
    };
    format!(
        "trace and span ids are binary (FixedSizeBinary(16) / FixedSizeBinary(8)), not text: \
         for their hex text, as results show it, write encode(span_id, 'hex') (and compare \
         ids with a hex string literal directly: span_id = '00f067aa0ba902b7'). {message}"
    )
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

/// How a [`Session`] reads the tables. The defaults are what users want; the switches exist
/// to compare (differential tests) and to measure what each optimization buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// `trace_id = ...` and `trace_id IN (...)` go through the per-segment trace indexes.
    /// Default: `true`.
    pub trace_index: bool,
    /// `matches(...)` on indexed text columns and `attributes['k'] = 'v'` on `spans` and
    /// `logs` read only the blocks the per-segment term indexes name
    /// ([`table::term_query`]). Default: `true`.
    pub term_index: bool,
    /// `time` predicates prune segments and memtable rows before files are opened.
    /// Default: `true`.
    pub time_pruning: bool,
    /// Bytes of memory the queries of this session may hold at once (hash tables, sort
    /// buffers, join build sides, and the batches [`Session::sql`] collects). Sorts,
    /// aggregations and sort-merge joins spill to temporary files beyond it; what cannot
    /// spill fails with [`Error::ResourcesExhausted`] instead of growing the process.
    /// Default: [`default_memory_limit`] (half the machine's memory).
    pub memory_limit: usize,
    /// How deeply expressions may nest (`1+1+…`, chains of `OR`, nested function calls)
    /// before a statement is refused with [`Error::Query`]. Planning time grows faster
    /// than linearly with depth. Default: 1000 (as DuckDB's `max_expression_depth`).
    pub max_expression_depth: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            trace_index: true,
            term_index: true,
            time_pruning: true,
            memory_limit: default_memory_limit(),
            max_expression_depth: 1000,
        }
    }
}

/// Refuses a statement whose expressions nest deeper than `limit`, before it is planned.
/// The walk stops at the limit, so it recurses at most `limit` levels itself.
fn check_depth(statement: &datafusion::sql::parser::Statement, limit: usize) -> Result<(), Error> {
    use datafusion::sql::parser::Statement;
    let too_deep = match statement {
        Statement::Statement(s) => too_deep(s.as_ref(), limit),
        Statement::Explain(e) => return check_depth(&e.statement, limit),
        _ => false,
    };
    if too_deep {
        return Err(depth_error(limit));
    }
    Ok(())
}

fn depth_error(limit: usize) -> Error {
    Error::Query(format!(
        "expressions nest more than {limit} levels deep (the session's \
         max_expression_depth); write long chains of OR as IN (...) or split the query"
    ))
}

/// Refuses a SQL expression nesting deeper than `limit` (as [`check_depth`] does for a
/// statement).
pub(crate) fn check_expr_depth(
    expr: &datafusion::sql::sqlparser::ast::Expr,
    limit: usize,
) -> Result<(), Error> {
    if too_deep(expr, limit) {
        return Err(depth_error(limit));
    }
    Ok(())
}

/// Whether expressions in `node` nest deeper than `limit`.
fn too_deep(node: &impl datafusion::sql::sqlparser::ast::Visit, limit: usize) -> bool {
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visitor};
    use std::ops::ControlFlow;
    struct Depth {
        now: usize,
        limit: usize,
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
            self.now += 1;
            if self.now > self.limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        fn post_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
    let mut depth = Depth { now: 0, limit };
    node.visit(&mut depth).is_break()
}

/// Checks that `query` is one read-only statement — a query (`SELECT`, `WITH`, `VALUES`,
/// set operations) or an `EXPLAIN` of one — before it reaches a [`Session`], for consoles
/// and agents that must not change the session (`SET`, `CREATE VIEW`, `CREATE EXTERNAL
/// TABLE`) or write files (`COPY`). A statement that does not parse is refused with the
/// parser's message; several statements are refused.
pub fn check_read_only(query: &str) -> Result<(), Error> {
    use datafusion::sql::parser::{DFParser, Statement};
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    let statements = DFParser::parse_sql(query)?;
    let [statement] = Vec::from(statements)
        .try_into()
        .map_err(|s: Vec<Statement>| {
            Error::Query(format!(
                "one statement at a time: this holds {} (separate them, run each alone)",
                s.len()
            ))
        })?;
    let inner = match &statement {
        Statement::Explain(e) => e.statement.as_ref(),
        s => s,
    };
    match inner {
        Statement::Statement(s) if matches!(s.as_ref(), Sql::Query(q) if selects_into(&q.body)) => {
            Err(Error::Query(
                "only queries are allowed here, not SELECT … INTO (it creates a table)".into(),
            ))
        }
        Statement::Statement(s) if matches!(s.as_ref(), Sql::Query(_)) => Ok(()),
        Statement::Statement(s) => Err(Error::Query(format!(
            "only queries are allowed here (SELECT, WITH, VALUES or EXPLAIN of one), not {}",
            s.to_string()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ))),
        _ => Err(Error::Query(
            "only queries are allowed here (SELECT, WITH, VALUES or EXPLAIN of one), not \
             COPY or CREATE EXTERNAL TABLE"
                .into(),
        )),
    }
}

/// Whether a query body (or one of its set operations' sides) is a `SELECT … INTO`.
fn selects_into(body: &datafusion::sql::sqlparser::ast::SetExpr) -> bool {
    use datafusion::sql::sqlparser::ast::SetExpr;
    match body {
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::Query(q) => selects_into(&q.body),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

/// Half the machine's physical memory (`MemTotal` of `/proc/meminfo`), or 4 GiB where that
/// cannot be read. At least 64 MiB.
pub fn default_memory_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kib| kib.saturating_mul(1024));
    match total {
        Some(bytes) => (bytes / 2).max(64 << 20),
        None => 4 << 30,
    }
}

/// A SQL session over one database: the three tables and ScryDB's functions registered in
/// a DataFusion `SessionContext`. A session is meant to be kept and reused (it is `Send +
/// Sync`; queries may run on it concurrently).
///
/// Each statement reads one snapshot, taken when its first table is planned and shared by
/// every table scan of the statement: it sees every row whose append returned before the
/// statement started, and all of its scans see the same rows. Statements run through
/// [`Session::context`] directly take a snapshot per table scan instead.
pub struct Session {
    ctx: SessionContext,
    memory_limit: usize,
    max_expression_depth: usize,
}

impl Session {
    /// A session over the database `reader` reads.
    pub fn new(reader: Reader) -> Result<Self, Error> {
        Self::with_options(reader, SessionOptions::default())
    }

    /// A session whose `trace_id` lookups use the per-segment trace indexes (`true`, as
    /// [`Session::new`]) or not (to compare, or to measure what the index buys).
    pub fn with_trace_index(reader: Reader, use_index: bool) -> Result<Self, Error> {
        Self::with_options(
            reader,
            SessionOptions {
                trace_index: use_index,
                ..SessionOptions::default()
            },
        )
    }

    /// A session reading the tables as `options` says.
    pub fn with_options(reader: Reader, options: SessionOptions) -> Result<Self, Error> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut rules = Analyzer::new().rules;
        rules.insert(0, Arc::new(ids::HexIds));
        // Spilling operators share the limit fairly; an error names the largest consumers.
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(options.memory_limit),
            std::num::NonZeroUsize::new(3).expect("3 is not zero"),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_analyzer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let mut tables = Vec::new();
        for signal in Signal::ALL {
            let table = Arc::new(
                ScryTable::new(reader.clone(), signal)
                    .with_trace_index(options.trace_index)
                    .with_term_index(options.term_index)
                    .with_time_pruning(options.time_pruning),
            );
            ctx.register_table(signal.name(), table.clone())
                .map_err(Error::from)?;
            tables.push(table);
        }
        ctx.register_table(
            "alerts",
            Arc::new(alerts::view(tables[1].clone()).map_err(Error::from)?),
        )
        .map_err(Error::from)?;
        ctx.register_table(
            "span_metrics",
            Arc::new(rollups::SpanMetricsTable::new(reader.clone())),
        )
        .map_err(Error::from)?;
        ctx.register_udf(functions::duration_ms());
        ctx.register_udf(functions::matches());
        ctx.register_udaf(rollups::exp_histogram_quantile());
        ctx.register_udtf(
            "trace_spans",
            Arc::new(functions::TraceSpans {
                spans: tables[0].clone(),
            }),
        );
        ctx.register_udtf(
            "scry_stats",
            Arc::new(functions::ScryStats {
                reader: reader.clone(),
            }),
        );
        ctx.register_udtf(
            "search",
            Arc::new(functions::SearchFunction {
                spans: tables[0].clone(),
                logs: tables[1].clone(),
            }),
        );
        ctx.register_udtf(
            "log_patterns",
            Arc::new(functions::LogPatternsFunction {
                reader: reader.clone(),
            }),
        );
        ctx.register_udtf(
            "compare",
            Arc::new(functions::CompareFunction {
                max_expression_depth: options.max_expression_depth,
            }),
        );
        for relation in structure::Relation::ALL {
            ctx.register_udtf(
                relation.name(),
                Arc::new(structure::RelationFunction {
                    relation,
                    max_expression_depth: options.max_expression_depth,
                }),
            );
        }
        for (name, stats) in [("critical_path", false), ("trace_stats", true)] {
            ctx.register_udtf(
                name,
                Arc::new(functions::TraceAnalysisFunction {
                    reader: reader.clone(),
                    stats,
                }),
            );
        }
        ctx.register_udtf(
            "service_graph",
            Arc::new(functions::ServiceGraph {
                spans: tables[0].clone(),
            }),
        );
        Ok(Session {
            ctx,
            memory_limit: options.memory_limit,
            max_expression_depth: options.max_expression_depth,
        })
    }

    /// The session's limit on expression nesting ([`SessionOptions::max_expression_depth`]),
    /// which predicates given as text (`compare`, the structural functions, export) are
    /// checked against too.
    pub fn max_expression_depth(&self) -> usize {
        self.max_expression_depth
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
        let df = self.dataframe(query).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await?;
        let (mut batches, mut bytes) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            bytes = bytes.saturating_add(batch.get_array_memory_size());
            if bytes > self.memory_limit {
                return Err(Error::ResourcesExhausted(format!(
                    "the result holds more than {} bytes (the session's memory limit); \
                     stream it (Session::sql_stream, `scry sql` streams) or narrow it",
                    self.memory_limit
                )));
            }
            batches.push(batch);
        }
        Ok((schema, batches))
    }

    /// Parses and plans one statement in a state of its own that carries the statement's
    /// snapshots; runs nothing.
    async fn plan(
        &self,
        query: &str,
    ) -> Result<(datafusion::execution::SessionState, LogicalPlan), Error> {
        let mut state = self.ctx.state();
        state
            .config_mut()
            .set_extension(Arc::new(StatementSnapshots::default()));
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(query, &dialect)?;
        check_depth(&statement, self.max_expression_depth)?;
        let plan = state.statement_to_plan(statement).await?;
        Ok((state, plan))
    }

    /// Plans one read-only statement ([`check_read_only`]) with a snapshot of its own; the
    /// `DataFrame` runs it. Unlike [`Session::dataframe`], nothing runs at planning: a plan
    /// that would change the session or write (`SELECT … INTO`, which DataFusion plans as
    /// `CREATE TABLE`, and any DDL, DML or statement) is refused before it runs. For
    /// consoles and agents.
    pub async fn read_only_dataframe(&self, query: &str) -> Result<DataFrame, Error> {
        check_read_only(query)?;
        let (state, plan) = self.plan(query).await?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| {
                Error::Query(format!(
                    "only queries are allowed here: {}",
                    one_line(&e.to_string())
                ))
            })?;
        Ok(DataFrame::new(state, plan))
    }

    /// Plans one SQL statement with a snapshot of its own (see [`Session`]); the
    /// `DataFrame` runs it. Statements that change the session (`SET`, `CREATE VIEW`, ...)
    /// apply to the session, not only to this statement.
    pub async fn dataframe(&self, query: &str) -> Result<DataFrame, Error> {
        let (state, plan) = self.plan(query).await?;
        Ok(match plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => {
                self.ctx.execute_logical_plan(plan).await?
            }
            plan => DataFrame::new(state, plan),
        })
    }

    /// Runs one SQL statement and streams its result, batch by batch, for results too large
    /// to hold in memory. The stream owns the statement's snapshot until it is dropped.
    pub async fn sql_stream(&self, query: &str) -> Result<SendableRecordBatchStream, Error> {
        Ok(self.dataframe(query).await?.execute_stream().await?)
    }

    /// [`Session::sql`] for callers without an async runtime: runs on a runtime ScryDB keeps
    /// for this. Must not be called from inside an async task (use `sql` there).
    pub fn sql_blocking(&self, query: &str) -> Result<Vec<RecordBatch>, Error> {
        block_on(self.sql(query))
    }

    /// Runs a search ([`search::SearchRequest::sql`]): the matching rows of its table,
    /// newest first, at most its limit, with their schema (known when nothing matches).
    /// A query that does not parse is [`Error::Search`], naming the column.
    pub async fn search(
        &self,
        request: &search::SearchRequest,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
        self.sql_with_schema(&request.sql()?).await
    }

    /// [`Session::search`] for callers without an async runtime.
    pub fn search_blocking(
        &self,
        request: &search::SearchRequest,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
        block_on(self.search(request))
    }

    /// [`Session::sql_with_schema`] for callers without an async runtime.
    pub fn sql_with_schema_blocking(
        &self,
        query: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
        block_on(self.sql_with_schema(query))
    }
}

/// Stack of the thread [`block_on`] plans and drives a query on: deeply nested expressions
/// (`1+1+…` twenty thousand times) recurse in places DataFusion cannot grow the stack.
/// Reserved, not committed: only the pages a query touches take memory.
pub const QUERY_STACK_BYTES: usize = 256 << 20;

/// Runs `future` to completion on ScryDB's SQL runtime, driven by a thread with a
/// [`QUERY_STACK_BYTES`] stack, for callers without an async runtime. Must not be called
/// from inside an async task.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let slot = std::sync::Mutex::new(Some(future));
    let take = || {
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("the future is taken once")
    };
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("scry-query".into())
            .stack_size(QUERY_STACK_BYTES)
            .spawn_scoped(scope, || runtime().block_on(take()));
        match spawned {
            Ok(handle) => match handle.join() {
                Ok(output) => output,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread to be had: drive it here, with this thread's stack.
            Err(_) => runtime().block_on(take()),
        }
    })
}

/// The runtime blocking queries run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("scry-sql")
            // Planning and evaluating deeply nested expressions recurses; DataFusion grows
            // the stack on the heap where it can (`recursive_protection`), and these
            // threads start with room to spare for what it cannot.
            .thread_stack_size(64 << 20)
            .enable_all()
            .build()
            .expect("the SQL runtime starts")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_statements() {
        for ok in [
            "SELECT 1",
            "with x as (select 1) select * from x",
            "VALUES (1)",
            "SELECT 1 UNION ALL SELECT 2",
            "EXPLAIN SELECT * FROM spans",
            "EXPLAIN ANALYZE SELECT 1",
        ] {
            check_read_only(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "SET datafusion.execution.batch_size = 1",
            "CREATE VIEW v AS SELECT 1",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "INSERT INTO spans VALUES (1)",
            "DROP TABLE spans",
            "SELECT 1; SELECT 2",
            "EXPLAIN CREATE VIEW v AS SELECT 1",
            "SELECT 1 INTO t",
            "SELECT 1 UNION ALL SELECT 2 INTO t",
            "SELEC 1",
            "",
        ] {
            let e = check_read_only(bad).expect_err(bad);
            assert!(!e.to_string().is_empty(), "{bad}");
        }
    }

    #[test]
    fn engine_errors_keep_their_message_in_datafusion() {
        let e: DataFusionError = Error::from(scrydb_engine::Error::Closed).into();
        assert!(e.to_string().contains("database is closed"), "{e}");
    }

    #[test]
    fn engine_errors_keep_their_kind_through_datafusion_wrappers() {
        use datafusion::parquet::errors::ParquetError;
        let poisoned = || scrydb_engine::Error::Poisoned {
            reason: "disk full".into(),
        };
        let wrapped = [
            DataFusionError::from(Error::Engine(poisoned())),
            DataFusionError::External(Box::new(poisoned())).context("reading spans"),
            DataFusionError::Shared(Arc::new(DataFusionError::from(Error::Engine(poisoned())))),
            DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(
                Error::Engine(poisoned()),
            )))),
            DataFusionError::ArrowError(
                Box::new(datafusion::arrow::error::ArrowError::ExternalError(
                    Box::new(DataFusionError::from(Error::Engine(poisoned()))),
                )),
                None,
            ),
        ];
        for e in wrapped {
            let shown = e.to_string();
            match Error::from(e) {
                Error::Engine(scrydb_engine::Error::Poisoned { reason }) => {
                    assert_eq!(reason, "disk full")
                }
                other => panic!("{shown} became {other:?}"),
            }
        }
        let plain = Error::from(DataFusionError::Plan("no such column".into()));
        assert!(matches!(plain, Error::Query(ref m) if m.contains("no such column")));
    }
}
