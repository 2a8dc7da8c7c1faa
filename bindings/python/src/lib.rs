//! `scrydb._native`: the Python module over the `scrydb` facade crate.
//!
//! Everything here converts: Python arguments into the library's typed calls, results into
//! pyarrow objects (through the Arrow C data interface, without copying column buffers) and
//! Python values, and library errors into the exception hierarchy of [`errors`]. The GIL is
//! released while the library works (queries, appends, lookups, flushes). The Python package
//! (`bindings/python/python/scrydb`) adds the pure-Python parts: `open`, the pytest fixture.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi_stream::ArrowArrayStreamReader;
use arrow_pyarrow::{FromPyArrow, IntoPyArrow, Table};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

mod errors;
mod html;
mod trace;

pub(crate) use errors::{engine_err, sql_err};

/// The handle behind a Python `Db`: `None` once closed. Calls take a clone of the `Arc`
/// and drop the lock before they work, so a long query never blocks another thread's call.
type Handle = Mutex<Option<Arc<scrydb::Db>>>;

/// An open ScryDB database (`scrydb.open(path)`): a context manager that closes it on
/// exit. Safe to share between threads: every call releases the GIL while it works.
#[pyclass(module = "scrydb", frozen, name = "Db")]
struct Db {
    handle: Handle,
    path: String,
    read_only: bool,
}

impl Db {
    fn db(&self) -> PyResult<Arc<scrydb::Db>> {
        self.handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| errors::Closed::new_err(format!("database {} is closed", self.path)))
    }
}

fn signal_of(name: &str) -> PyResult<scrydb::Signal> {
    scrydb::Signal::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            errors::invalid(format!(
                "no signal {name:?}: use 'spans', 'logs' or 'metrics'"
            ))
        })
}

/// A duration given as seconds (int or float) or a `datetime.timedelta`.
fn duration(what: &str, v: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if let Ok(secs) = v.extract::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| {
            errors::invalid(format!("{what}: {secs} seconds is not a duration: {e}"))
        });
    }
    v.extract::<Duration>().map_err(|_| {
        errors::invalid(format!(
            "{what} must be seconds (int or float) or a datetime.timedelta"
        ))
    })
}

fn opt_duration(what: &str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Duration>> {
    v.filter(|v| !v.is_none())
        .map(|v| duration(what, v))
        .transpose()
}

/// Open (creating if needed) the ScryDB database in directory ``path``.
///
/// One process writes a directory at a time (another gets :class:`Locked`); any number
/// may open it ``read_only=True`` beside the writer and see what it acknowledged.
///
/// Args:
///     path: the database directory (``str`` or ``os.PathLike``).
///     read_only: change nothing; refuse writes. A directory without a store raises
///         :class:`NotAStore`.
///     durability: what an acknowledged write survives: ``"sync"`` (power loss; the
///         default), ``"periodic"`` (fsync every second), ``"nosync"`` (a crash of this
///         process only).
///     partition: width of a time partition, seconds or ``timedelta`` (default 1 hour).
///     memtable_size: bytes of rows held in memory before they are written to a segment
///         (default 64 MiB).
///     retention: drop time partitions older than this (seconds or ``timedelta``).
///     max_bytes: disk budget for segments and indexes; oldest partitions go first.
///     keep_interesting: keep traces with errors, slow spans, WARN+ logs or exemplars
///         this much longer than ``retention`` (or instead of dropping for ``max_bytes``).
///     compaction: merge small segments in the background (default ``True``).
///     remote: keep the manifest, segments and indexes in S3-compatible object storage
///         at this URL (``"s3://bucket/prefix"``); ``path`` then holds the log, the lock
///         and a cache. With ``read_only=True`` a list of URLs opens those stores as one.
///         The connection comes from ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
///         ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION`` (docs/scale-out.md).
///     writers_under: (``read_only=True``) every writer's store directly under this
///         prefix, as one store.
///     cache_bytes: most bytes of the local cache of remote files (default 1 GiB).
///     take_over: take the prefix's writer lease from a writer that is gone for good.
///
/// Returns:
///     A :class:`Db`, usable as a context manager (``with scrydb.open(p) as db:``).
#[pyfunction]
#[pyo3(signature = (
    path, *, read_only=false, durability="sync", partition=None, memtable_size=None,
    retention=None, max_bytes=None, keep_interesting=None, compaction=true, remote=None,
    writers_under=None, cache_bytes=None, take_over=false
))]
#[allow(clippy::too_many_arguments)]
fn open(
    py: Python<'_>,
    path: std::path::PathBuf,
    read_only: bool,
    durability: &str,
    partition: Option<&Bound<'_, PyAny>>,
    memtable_size: Option<usize>,
    retention: Option<&Bound<'_, PyAny>>,
    max_bytes: Option<u64>,
    keep_interesting: Option<&Bound<'_, PyAny>>,
    compaction: bool,
    remote: Option<&Bound<'_, PyAny>>,
    writers_under: Option<String>,
    cache_bytes: Option<u64>,
    take_over: bool,
) -> PyResult<Db> {
    let remote: Vec<String> = match remote {
        None => Vec::new(),
        Some(r) if r.is_none() => Vec::new(),
        Some(r) => match r.extract::<String>() {
            Ok(one) => vec![one],
            Err(_) => r.extract::<Vec<String>>().map_err(|_| {
                errors::invalid("remote must be an s3:// URL or a list of them".to_string())
            })?,
        },
    };
    let mut remote_opts = scrydb::remote::RemoteOptions::default();
    if let Some(b) = cache_bytes {
        remote_opts.cache_bytes = b;
    }
    remote_opts.take_over = take_over;
    let s3 = scrydb::remote::S3Options::from_env();
    let stores = remote
        .iter()
        .map(|u| scrydb::remote::RemoteStore::s3(u, &s3))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| engine_err(&e))?;
    let parent = writers_under
        .as_deref()
        .map(|u| scrydb::remote::RemoteStore::s3(u, &s3))
        .transpose()
        .map_err(|e| engine_err(&e))?;
    if !read_only && (stores.len() > 1 || parent.is_some()) {
        return Err(errors::invalid(
            "a writer writes one store: give one remote URL (several, or writers_under, \
             need read_only=True)"
                .to_string(),
        ));
    }
    let durability = match durability {
        "sync" => scrydb::Durability::Sync,
        "periodic" => scrydb::Durability::Periodic(Duration::from_secs(1)),
        "nosync" => scrydb::Durability::NoSync,
        other => {
            return Err(errors::invalid(format!(
                "durability {other:?}: use 'sync', 'periodic' or 'nosync'"
            )));
        }
    };
    let mut opts = scrydb::Options::default()
        .durability(durability)
        .retention(opt_duration("retention", retention)?)
        .keep_interesting(opt_duration("keep_interesting", keep_interesting)?)
        .max_bytes(max_bytes)
        .compaction(compaction);
    if let Some(p) = opt_duration("partition", partition)? {
        opts = opts.partition_duration(p);
    }
    if let Some(m) = memtable_size {
        opts = opts.memtable_size(m);
    }
    let shown = path.display().to_string();
    let db = py
        .detach(|| match (read_only, stores.as_slice(), parent) {
            (true, [], None) => scrydb::Db::open_read_only(&path, opts),
            (false, [], None) => scrydb::Db::open(&path, opts),
            (true, [one], None) => {
                scrydb::Db::open_remote_read_only(&path, one.clone(), remote_opts, opts)
            }
            (false, [one], _) => scrydb::Db::open_remote(&path, one.clone(), remote_opts, opts),
            (_, many, parent) => {
                let mut view = scrydb::remote::View::new();
                for s in many {
                    view = view.remote(s.clone());
                }
                if let Some(p) = parent {
                    view = view.writers_under(p);
                }
                scrydb::Db::open_view(&path, &view, remote_opts, opts)
            }
        })
        .map_err(|e| engine_err(&e))?;
    Ok(Db {
        handle: Mutex::new(Some(Arc::new(db))),
        path: shown,
        read_only,
    })
}

/// Batches as a `pyarrow.Table` (column buffers are shared, not copied).
fn table(
    py: Python<'_>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> PyResult<Bound<'_, PyAny>> {
    let t = Table::try_new(batches, schema).map_err(|e| errors::Error::new_err(e.to_string()))?;
    t.into_pyarrow(py)
}

/// `ids="hex"`: trace and span id columns as hex strings; `"bytes"`: as they are stored.
fn hex_ids(ids: &str) -> PyResult<bool> {
    match ids {
        "bytes" => Ok(false),
        "hex" => Ok(true),
        other => Err(errors::invalid(format!(
            "ids={other:?}: use 'bytes' or 'hex'"
        ))),
    }
}

/// Streams the batches of a running query to pyarrow, one at a time, computing each when
/// it is asked for (with the GIL released).
struct QueryReader {
    schema: SchemaRef,
    stream: scrydb::sql::datafusion::physical_plan::SendableRecordBatchStream,
    hex: bool,
}

impl Iterator for QueryReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        use futures::StreamExt;
        // pyarrow calls this through the C stream interface, where a panic would abort the
        // process: it becomes an error of the stream instead.
        let stream = &mut self.stream;
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            // With the GIL held (or from a thread of pyarrow's own without it): other
            // Python threads run while the batch is computed either way.
            let mut compute = || scrydb::sql::block_on(stream.next());
            match Python::try_attach(|py| py.detach(&mut compute)) {
                Some(next) => next,
                // The interpreter is shutting down: compute without it.
                None => compute(),
            }
        }));
        let next = match next {
            Ok(next) => next?,
            Err(_) => {
                return Some(Err(ArrowError::ExternalError(
                    "the query panicked while computing a batch".into(),
                )));
            }
        };
        Some(
            next.map(|b| {
                if self.hex {
                    scrydb::sql::ids_as_hex(&b)
                } else {
                    b
                }
            })
            .map_err(|e| ArrowError::ExternalError(Box::new(e))),
        )
    }
}

impl RecordBatchReader for QueryReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A statement's result as a `pyarrow.Table`, with trace and span ids as hex strings when
/// `hex` (the schema too, so an empty result has the columns' string types).
fn result_table<'py>(
    py: Python<'py>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    hex: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if hex {
        let empty = scrydb::sql::ids_as_hex(&RecordBatch::new_empty(schema));
        let batches = batches.iter().map(scrydb::sql::ids_as_hex).collect();
        return table(py, empty.schema(), batches);
    }
    table(py, schema, batches)
}

#[pymethods]
impl Db {
    /// Runs one SQL statement and returns its result as a `pyarrow.Table`. Trace and span
    /// ids are binary (`ids="bytes"`) or hex strings (`ids="hex"`).
    #[pyo3(signature = (query, *, ids="bytes"))]
    fn sql<'py>(&self, py: Python<'py>, query: &str, ids: &str) -> PyResult<Bound<'py, PyAny>> {
        let hex = hex_ids(ids)?;
        let db = self.db()?;
        let (schema, batches) = py
            .detach(|| {
                let session = db.session()?;
                session.sql_with_schema_blocking(query)
            })
            .map_err(|e| sql_err(&e))?;
        result_table(py, schema, batches, hex)
    }

    /// Searches logs (or spans, `spans=True`) in the search syntax — free terms and
    /// "phrases" matched by token, `service:checkout`, `severity>=WARN`, `status:error`,
    /// `duration>500ms`, `@http.route:/cart`, `-term`, `OR`, parentheses (docs/search.md)
    /// — between `start` (inclusive) and `end` (exclusive), ns since the epoch. Returns the
    /// newest `limit` matches, every column, as a `pyarrow.Table`. A query that does not
    /// parse raises `QueryError` naming the column where it went wrong.
    #[pyo3(signature = (query, *, spans=false, start=None, end=None, limit=100, ids="bytes"))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        spans: bool,
        start: Option<i64>,
        end: Option<i64>,
        limit: usize,
        ids: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        use scrydb::sql::search::{SearchRequest, Target};
        let hex = hex_ids(ids)?;
        let db = self.db()?;
        let target = if spans { Target::Spans } else { Target::Logs };
        let mut request = SearchRequest::new(query, target);
        request.from_ns = start;
        request.to_ns = end;
        request.limit = limit.max(1);
        let (schema, batches) = py
            .detach(|| db.session()?.search_blocking(&request))
            .map_err(|e| sql_err(&e))?;
        result_table(py, schema, batches, hex)
    }

    /// The values of spans' services, operations, kinds, statuses and attributes
    /// over-represented in the spans matching `selection` (a SQL predicate over `spans`)
    /// against those matching `baseline` (default: every other span), best first, at most
    /// `limit` — the rows of SQL's `compare` (docs/trace-analysis.md): `dimension`,
    /// `value`, `selection_count`, `baseline_count`, `selection_share`, `baseline_share`,
    /// `score`, as a `pyarrow.Table`. A predicate that does not plan raises `QueryError`.
    #[pyo3(signature = (selection, baseline=None, *, limit=20))]
    fn compare<'py>(
        &self,
        py: Python<'py>,
        selection: &str,
        baseline: Option<&str>,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        use scrydb::sql::compare;
        let db = self.db()?;
        let rows = py
            .detach(|| {
                let session = db.session()?;
                scrydb::sql::block_on(compare::compare(session, selection, baseline, limit))
            })
            .map_err(|e| sql_err(&e))?;
        let batch = compare::compare_batch(&rows);
        table(py, batch.schema(), vec![batch])
    }

    /// The log templates (log lines grouped, variables as `<*>`) of `[start, end)` (ns since
    /// the epoch) with their lines there and in the baseline window (default: the window's
    /// length just before it), new and surging ones first — the rows of SQL's
    /// `log_patterns` (docs/search.md), as a `pyarrow.Table`.
    #[pyo3(signature = (start, end, *, baseline_start=None, baseline_end=None))]
    fn log_patterns<'py>(
        &self,
        py: Python<'py>,
        start: i64,
        end: i64,
        baseline_start: Option<i64>,
        baseline_end: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        use pyo3::exceptions::PyValueError;
        if start >= end {
            return Err(PyValueError::new_err(
                "log_patterns: start must be before end",
            ));
        }
        let baseline = match (baseline_start, baseline_end) {
            (None, None) => None,
            (Some(s), Some(e)) if s < e => Some(scrydb::TimeRange::new(s, e)),
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "log_patterns: baseline_start must be before baseline_end",
                ));
            }
            _ => {
                return Err(PyValueError::new_err(
                    "log_patterns: give both baseline_start and baseline_end, or neither",
                ));
            }
        };
        let db = self.db()?;
        let patterns = py
            .detach(|| {
                db.snapshot()
                    .log_patterns(scrydb::TimeRange::new(start, end), baseline)
            })
            .map_err(|e| engine_err(&e))?;
        let batch = scrydb::search::log_patterns::patterns_batch(&patterns);
        table(py, batch.schema(), vec![batch])
    }

    /// Runs one SQL statement and returns a `pyarrow.RecordBatchReader` that computes its
    /// result batch by batch as it is read (for results larger than memory). The reader
    /// reads the snapshot the statement started on; it does not keep the database open
    /// (read it before `close`: files compaction or retention removed since may be gone).
    #[pyo3(signature = (query, *, ids="bytes"))]
    fn sql_reader<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        ids: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let hex = hex_ids(ids)?;
        let db = self.db()?;
        let stream = py
            .detach(|| {
                let session = db.session()?;
                scrydb::sql::block_on(session.sql_stream(query))
            })
            .map_err(|e| sql_err(&e))?;
        let schema = stream.schema();
        let schema = if hex {
            scrydb::sql::ids_as_hex(&RecordBatch::new_empty(schema)).schema()
        } else {
            schema
        };
        let reader: Box<dyn RecordBatchReader + Send> = Box::new(QueryReader {
            schema,
            stream,
            hex,
        });
        reader.into_pyarrow(py)
    }

    /// One trace by id (32 hex digits, or 16 bytes): its spans, logs and the metric points
    /// whose exemplars name it, found through the trace index.
    fn trace(&self, py: Python<'_>, trace_id: &Bound<'_, PyAny>) -> PyResult<trace::Trace> {
        let id = trace::parse_id(trace_id)?;
        let db = self.db()?;
        let t = py.detach(|| db.trace(id)).map_err(|e| engine_err(&e))?;
        Ok(trace::Trace::new(id, t))
    }

    /// Appends Arrow data to `signal` ('spans', 'logs' or 'metrics'): a `pyarrow.Table`,
    /// `RecordBatch`, `RecordBatchReader` or anything with `__arrow_c_stream__` /
    /// `__arrow_c_array__`. Every row is appended as one atomic batch (all or nothing)
    /// after validation; returns the number of rows. Columns missing from the data are
    /// filled as the table's schema says (`scrydb` docs: docs/python.md).
    fn ingest(&self, py: Python<'_>, signal: &str, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let signal = signal_of(signal)?;
        // The data is read (maybe running Python code) before the handle is taken, so a
        // `close` from that code does not wait for this call.
        let batch = if data.hasattr("__arrow_c_stream__")? {
            let reader = ArrowArrayStreamReader::from_pyarrow_bound(data)?;
            let schema = reader.schema();
            let batches: Vec<RecordBatch> = reader
                .collect::<Result<_, _>>()
                .map_err(|e| errors::invalid(format!("reading the data: {e}")))?;
            arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| errors::invalid(e.to_string()))?
        } else {
            RecordBatch::from_pyarrow_bound(data)?
        };
        let rows = batch.num_rows();
        let db = self.db()?;
        py.detach(|| db.append(signal, &batch))
            .map_err(|e| engine_err(&e))?;
        Ok(rows)
    }

    /// Stores OTLP data: `bytes` (protobuf, JSON or JSON lines, gzip or not — the content
    /// says which) or a path (`str` or `os.PathLike`) to a file of it. Invalid records are
    /// left out and reported (OTLP partial success); returns an `IngestResult`.
    #[pyo3(signature = (data, *, signal=None))]
    fn ingest_otlp(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        signal: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        let hint = signal.map(signal_of).transpose()?;
        let db = self.db()?;
        let opts = scrydb::otlp::ingest::IngestOptions::default().signal(hint);
        let report = if let Ok(bytes) = data.cast::<PyBytes>() {
            let bytes = bytes.as_bytes().to_vec();
            py.detach(|| {
                scrydb::otlp::ingest::Ingester::new(&db, opts).ingest_bytes(&bytes, None, "bytes")
            })
        } else {
            let path: std::path::PathBuf = data.extract().map_err(|_| {
                errors::invalid(
                    "ingest_otlp takes bytes (the payload) or a path (str or os.PathLike)",
                )
            })?;
            py.detach(|| scrydb::otlp::ingest::Ingester::new(&db, opts).ingest_file(&path, None))
        }
        .map_err(|e| engine_err(&e))?;
        ingest_result(py, &report)
    }

    /// Looks for what went wrong: the anomaly window of the entry services' error rate and
    /// p99 latency, the services and operation at fault, an example trace, the warnings
    /// and errors of the affected traces, the slowest exemplar. `start` and `end` (ns since
    /// the epoch) limit the time range. Returns a dict (`summary` says it in one line).
    #[pyo3(signature = (*, start=None, end=None))]
    fn diagnose(
        &self,
        py: Python<'_>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> PyResult<Py<PyAny>> {
        let db = self.db()?;
        let range = match (start, end) {
            (None, None) => None,
            (s, e) => Some(scrydb::TimeRange::new(
                s.unwrap_or(i64::MIN),
                e.unwrap_or(i64::MAX),
            )),
        };
        let session = py.detach(|| db.session()).map_err(|e| sql_err(&e))?;
        let d = py
            .detach(|| {
                scrydb::diagnose::diagnose_blocking(
                    session,
                    range,
                    &scrydb::diagnose::DiagnoseOptions::default(),
                )
            })
            .map_err(|e| errors::diagnose_err(&e))?;
        trace::diagnosis(py, &d)
    }

    /// Writes every row acknowledged so far into segments.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let db = self.db()?;
        py.detach(|| db.flush()).map_err(|e| engine_err(&e))
    }

    /// Merges small segments now; returns what it did as a dict.
    fn compact(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let db = self.db()?;
        let s = py.detach(|| db.compact()).map_err(|e| engine_err(&e))?;
        let d = PyDict::new(py);
        d.set_item("merges", s.merges)?;
        d.set_item("segments_in", s.segments_in)?;
        d.set_item("rows", s.rows)?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("bytes_out", s.bytes_out)?;
        Ok(d.into_any().unbind())
    }

    /// Drops time partitions that ended more than `older_than` ago (seconds or timedelta),
    /// then the oldest until the store fits `max_bytes`; returns what went as a dict.
    #[pyo3(signature = (*, older_than=None, max_bytes=None))]
    fn retain(
        &self,
        py: Python<'_>,
        older_than: Option<&Bound<'_, PyAny>>,
        max_bytes: Option<u64>,
    ) -> PyResult<Py<PyAny>> {
        let older_than = opt_duration("older_than", older_than)?;
        let db = self.db()?;
        let s = py
            .detach(|| db.retain(older_than, max_bytes))
            .map_err(|e| engine_err(&e))?;
        let d = PyDict::new(py);
        d.set_item("segments", s.segments)?;
        d.set_item("rows", s.rows)?;
        d.set_item("bytes", s.bytes)?;
        Ok(d.into_any().unbind())
    }

    /// Per signal and time partition: segments, rows, bytes, compression, index and bloom
    /// sizes, time range, and what retention kept — `SELECT * FROM scry_stats()`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.sql(py, "SELECT * FROM scry_stats()", "bytes")
    }

    /// Closes the database: flushes everything, stops its threads, releases the directory.
    /// Waits for calls other threads are making on it. Closing twice does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut db) = taken else {
            return Ok(());
        };
        // Other threads' calls hold clones until they return.
        let db = py.detach(|| {
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => break db,
                    Err(shared) => {
                        db = shared;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
        });
        py.detach(|| db.close()).map_err(|e| engine_err(&e))
    }

    /// Whether the database is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// The database directory.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Whether it was opened read-only.
    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() {
            "closed"
        } else if self.read_only {
            "read-only"
        } else {
            "open"
        };
        format!("<scrydb.Db {:?} {state}>", self.path)
    }
}

/// An `IngestReport` as a dict: counts per signal and the problems with their positions.
fn ingest_result(py: Python<'_>, r: &scrydb::otlp::ingest::IngestReport) -> PyResult<Py<PyAny>> {
    use scrydb::otlp::ingest::Problem;
    let counts = |c: &scrydb::otlp::ingest::SignalCounts| -> PyResult<Bound<'_, PyDict>> {
        let d = PyDict::new(py);
        for s in scrydb::Signal::ALL {
            d.set_item(s.name(), c.get(s))?;
        }
        Ok(d)
    };
    let d = PyDict::new(py);
    d.set_item("accepted", r.stored.total())?;
    d.set_item("rejected", r.rejected.total())?;
    d.set_item("undecodable", r.undecodable)?;
    d.set_item("requests", r.requests)?;
    d.set_item("stored", counts(&r.stored)?)?;
    d.set_item("rejected_by_signal", counts(&r.rejected)?)?;
    let problems = PyList::empty(py);
    for p in &r.problems {
        let e = PyDict::new(py);
        match p {
            Problem::Undecodable { at, message } => {
                e.set_item("kind", "undecodable")?;
                e.set_item("at", at.to_string())?;
                e.set_item("message", message)?;
            }
            Problem::Rejected {
                at,
                signal,
                count,
                errors,
            } => {
                e.set_item("kind", "rejected")?;
                e.set_item("at", at.to_string())?;
                e.set_item("signal", signal.name())?;
                e.set_item("count", count)?;
                let list = PyList::empty(py);
                for err in errors {
                    let x = PyDict::new(py);
                    x.set_item("location", &err.location)?;
                    x.set_item("reason", &err.reason)?;
                    list.append(x)?;
                }
                e.set_item("errors", list)?;
                e.set_item("message", p.to_string())?;
            }
            other => {
                e.set_item("kind", "other")?;
                e.set_item("message", other.to_string())?;
            }
        }
        problems.append(e)?;
    }
    d.set_item("problems", problems)?;
    Ok(d.into_any().unbind())
}

/// The version of the library this module was built from.
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Tunes the C allocator of this process for ScryDB's reads and returns whether it applied.
///
/// Opt-in and process-wide: with glibc on Linux it raises malloc's trim threshold to 64 MiB,
/// so the zstd contexts every Parquet read creates and frees are not given back to the
/// kernel and faulted in again on each read (a warm trace lookup ~2x faster on a 10M-span
/// store); up to that much freed memory stays mapped per malloc arena. Elsewhere it does
/// nothing and returns ``False``. See docs/python.md.
#[pyfunction]
fn tune_allocator() -> bool {
    scrydb::tune_allocator()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_function(wrap_pyfunction!(tune_allocator, m)?)?;
    m.add_class::<Db>()?;
    m.add_class::<trace::Trace>()?;
    m.add("__version__", version())?;
    errors::register(m)?;
    Ok(())
}
