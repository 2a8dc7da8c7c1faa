//! `scrydb.Trace` (one trace's rows and its span tree) and the diagnosis as Python values.

use arrow::array::RecordBatch;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A trace id from 32 hex digits (`str`) or 16 bytes.
pub fn parse_id(v: &Bound<'_, PyAny>) -> PyResult<[u8; 16]> {
    if let Ok(b) = v.cast::<PyBytes>() {
        return <[u8; 16]>::try_from(b.as_bytes()).map_err(|_| {
            errors::invalid(format!(
                "a trace id is 16 bytes, got {}",
                b.as_bytes().len()
            ))
        });
    }
    let s: String = v
        .extract()
        .map_err(|_| errors::invalid("a trace id is a hex str or 16 bytes"))?;
    scrydb::parse_trace_id(&s).map_err(|e| crate::engine_err(&e))
}

/// One trace: `spans`, `logs` and `metrics` (the metric points whose exemplars name it) as
/// `pyarrow.Table`s, and its span tree (`tree()`). In a notebook it shows as a waterfall.
#[pyclass(module = "scrydb", frozen, name = "Trace")]
pub struct Trace {
    id: [u8; 16],
    inner: scrydb::Trace,
}

impl Trace {
    pub fn new(id: [u8; 16], inner: scrydb::Trace) -> Self {
        Trace { id, inner }
    }

    fn table<'py>(
        &self,
        py: Python<'py>,
        signal: scrydb::Signal,
        batches: &[RecordBatch],
    ) -> PyResult<Bound<'py, PyAny>> {
        let schema = batches
            .first()
            .map_or_else(|| scrydb::schema::schema(signal), |b| b.schema());
        crate::table(py, schema, batches.to_vec())
    }

    fn span_tree(&self) -> PyResult<scrydb::SpanTree> {
        self.inner.tree().map_err(|e| crate::engine_err(&e))
    }
}

/// The nodes of `tree` depth first, children by start time (the waterfall's order).
pub fn depth_first(tree: &scrydb::SpanTree) -> Vec<usize> {
    let mut out = Vec::with_capacity(tree.nodes.len());
    let mut stack: Vec<usize> = tree.roots.iter().rev().copied().collect();
    while let Some(i) = stack.pop() {
        out.push(i);
        stack.extend(tree.nodes[i].children.iter().rev().copied());
    }
    out
}

#[pymethods]
impl Trace {
    /// The trace id, as 32 hex digits.
    #[getter]
    fn trace_id(&self) -> String {
        hex(&self.id)
    }

    /// The trace's spans.
    #[getter]
    fn spans<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table(py, scrydb::Signal::Spans, &self.inner.spans)
    }

    /// The log records that carry the trace's id.
    #[getter]
    fn logs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table(py, scrydb::Signal::Logs, &self.inner.logs)
    }

    /// The metric points whose exemplars name the trace.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.table(py, scrydb::Signal::Metrics, &self.inner.metrics)
    }

    /// The span tree, depth first: one dict per span with `span_id`, `parent_span_id` (hex),
    /// `depth`, `service`, `name`, `kind`, `status_code`, `status_message`, `start`, `end`,
    /// `offset_ns` (from the trace's start), `duration_ns`, `self_ns` (not covered by
    /// children), `orphan` (its parent is missing).
    fn tree<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let tree = self.span_tree()?;
        let out = PyList::empty(py);
        for i in depth_first(&tree) {
            let n = &tree.nodes[i];
            let d = PyDict::new(py);
            d.set_item("span_id", hex(&n.span_id))?;
            d.set_item("parent_span_id", n.parent_span_id.map(|p| hex(&p)))?;
            d.set_item("depth", n.depth)?;
            d.set_item("service", &n.service)?;
            d.set_item("name", &n.name)?;
            d.set_item("kind", &n.kind)?;
            d.set_item("status_code", &n.status_code)?;
            d.set_item("status_message", &n.status_message)?;
            d.set_item("start", n.start)?;
            d.set_item("end", n.end)?;
            d.set_item("offset_ns", n.offset_ns)?;
            d.set_item("duration_ns", n.duration_ns)?;
            d.set_item("self_ns", n.self_ns)?;
            d.set_item("orphan", n.orphan)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// The critical path (docs/trace-analysis.md) as a `pyarrow.Table`, one row per span on
    /// it in path order: `step`, `span_id`, `parent_span_id`, `service_name`, `name`,
    /// `kind`, `status_code`, `depth`, `time`, `duration_ns`, `self_ns`, `critical_ns`
    /// (time on the path), `critical_share` — the rows of SQL's `critical_path(...)`.
    fn critical_path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tree = self.span_tree()?;
        let path = tree.critical_path();
        let batch = scrydb::critical_path::path_batch(&tree, &path);
        crate::table(py, batch.schema(), vec![batch])
    }

    /// Whether anything of the trace was found.
    fn __bool__(&self) -> bool {
        !self.inner.is_empty()
    }

    /// Spans in the trace.
    fn __len__(&self) -> usize {
        self.inner.rows(scrydb::Signal::Spans)
    }

    fn __repr__(&self) -> String {
        format!(
            "<scrydb.Trace {} spans={} logs={} metrics={}>",
            hex(&self.id),
            self.inner.rows(scrydb::Signal::Spans),
            self.inner.rows(scrydb::Signal::Logs),
            self.inner.rows(scrydb::Signal::Metrics)
        )
    }

    /// The waterfall, for notebooks.
    fn _repr_html_(&self) -> PyResult<String> {
        let tree = self.span_tree()?;
        Ok(crate::html::waterfall(
            &hex(&self.id),
            &tree,
            self.inner.rows(scrydb::Signal::Logs),
        ))
    }
}

/// A diagnosis as a dict of plain Python values (times in ns since the epoch, ids hex).
pub fn diagnosis(py: Python<'_>, d: &scrydb::diagnose::Diagnosis) -> PyResult<Py<PyAny>> {
    use scrydb::diagnose::Evidence;
    let out = PyDict::new(py);
    out.set_item("summary", d.summary())?;
    out.set_item("range", d.range.map(|r| (r.start, r.end)))?;
    let buckets = PyList::empty(py);
    for b in &d.buckets {
        let x = PyDict::new(py);
        x.set_item("start", b.start)?;
        x.set_item("requests", b.requests)?;
        x.set_item("error_rate", b.error_rate)?;
        x.set_item("p99_ms", b.p99_ms)?;
        x.set_item("anomalous", b.anomalous)?;
        buckets.append(x)?;
    }
    out.set_item("buckets", buckets)?;
    match &d.anomaly {
        Some(a) => {
            let x = PyDict::new(py);
            x.set_item("start", a.start)?;
            x.set_item("end", a.end)?;
            x.set_item("kind", a.kind.to_string())?;
            x.set_item("baseline_error_rate", a.baseline_error_rate)?;
            x.set_item("peak_error_rate", a.peak_error_rate)?;
            x.set_item("baseline_p99_ms", a.baseline_p99_ms)?;
            x.set_item("peak_p99_ms", a.peak_p99_ms)?;
            out.set_item("anomaly", x)?;
        }
        None => out.set_item("anomaly", py.None())?,
    }
    let services = PyList::empty(py);
    for s in &d.services {
        let x = PyDict::new(py);
        x.set_item("service", &s.service)?;
        x.set_item("spans", s.spans)?;
        x.set_item("errors", s.errors)?;
        x.set_item("p99_ms", s.p99_ms)?;
        services.append(x)?;
    }
    out.set_item("services", services)?;
    match &d.root_cause {
        Some(r) => {
            let x = PyDict::new(py);
            x.set_item("service", &r.service)?;
            x.set_item("operation", &r.operation)?;
            x.set_item("callee_inferred", r.callee_inferred)?;
            let evidence = PyList::empty(py);
            match &r.evidence {
                Evidence::DeepestErrors(groups) => {
                    for g in groups {
                        let e = PyDict::new(py);
                        e.set_item("service", &g.service)?;
                        e.set_item("operation", &g.operation)?;
                        e.set_item("kind", &g.kind)?;
                        e.set_item("peer_service", &g.peer_service)?;
                        e.set_item("rpc_method", &g.rpc_method)?;
                        e.set_item("count", g.count)?;
                        evidence.append(e)?;
                    }
                    x.set_item("evidence_kind", "deepest_errors")?;
                }
                Evidence::SelfTime(changes) => {
                    for c in changes {
                        let e = PyDict::new(py);
                        e.set_item("service", &c.service)?;
                        e.set_item("operation", &c.operation)?;
                        e.set_item("during_ms", c.during_ms)?;
                        e.set_item("outside_ms", c.outside_ms)?;
                        evidence.append(e)?;
                    }
                    x.set_item("evidence_kind", "self_time")?;
                }
                _ => x.set_item("evidence_kind", "other")?,
            }
            x.set_item("evidence", evidence)?;
            out.set_item("root_cause", x)?;
        }
        None => out.set_item("root_cause", py.None())?,
    }
    out.set_item("example_trace", d.example_trace.map(|t| hex(&t)))?;
    let path = PyList::empty(py);
    for p in &d.critical_path {
        let x = PyDict::new(py);
        x.set_item("service", &p.service)?;
        x.set_item("operation", &p.operation)?;
        x.set_item("critical_ns", p.critical_ns)?;
        x.set_item("share", p.share)?;
        path.append(x)?;
    }
    out.set_item("critical_path", path)?;
    let differences = PyList::empty(py);
    for c in &d.differences {
        let x = PyDict::new(py);
        x.set_item("dimension", &c.dimension)?;
        x.set_item("value", &c.value)?;
        x.set_item("selection_count", c.selection_count)?;
        x.set_item("baseline_count", c.baseline_count)?;
        x.set_item("selection_share", c.selection_share)?;
        x.set_item("baseline_share", c.baseline_share)?;
        x.set_item("score", c.score)?;
        differences.append(x)?;
    }
    out.set_item("differences", differences)?;
    let logs = PyList::empty(py);
    for l in &d.logs {
        let x = PyDict::new(py);
        x.set_item("time", l.time)?;
        x.set_item("service", &l.service)?;
        x.set_item("severity", &l.severity)?;
        x.set_item("body", &l.body)?;
        x.set_item("trace_id", l.trace_id.map(|t| hex(&t)))?;
        logs.append(x)?;
    }
    out.set_item("logs", logs)?;
    let patterns = PyList::empty(py);
    for p in &d.log_patterns {
        let x = PyDict::new(py);
        x.set_item("service", &p.service)?;
        x.set_item("template", &p.template)?;
        x.set_item("count", p.count)?;
        x.set_item("baseline_count", p.baseline_count)?;
        x.set_item("status", &p.status)?;
        patterns.append(x)?;
    }
    out.set_item("log_patterns", patterns)?;
    match &d.exemplar {
        Some(e) => {
            let x = PyDict::new(py);
            x.set_item("metric", &e.metric)?;
            x.set_item("service", &e.service)?;
            x.set_item("value", e.value)?;
            x.set_item("span_name", &e.span_name)?;
            x.set_item("trace_id", hex(&e.trace_id))?;
            x.set_item("span_id", e.span_id.map(|s| hex(&s)))?;
            out.set_item("exemplar", x)?;
        }
        None => out.set_item("exemplar", py.None())?,
    }
    let queries = PyList::empty(py);
    for q in &d.queries {
        let x = PyDict::new(py);
        x.set_item("step", format!("{:?}", q.step))?;
        x.set_item("sql", &q.sql)?;
        queries.append(x)?;
    }
    out.set_item("queries", queries)?;
    Ok(out.into_any().unbind())
}
