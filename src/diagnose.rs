//! Diagnosis: from a symptom in the metrics of incoming requests to the service and
//! operation that cause it, with an affected trace, its logs and the exemplar that links
//! the latency histogram to a trace — the debugging loop of ScryDB's design, as one call.
//!
//! [`diagnose`] runs a fixed sequence of SQL queries over a [`Session`] and returns typed
//! findings ([`Diagnosis`]) together with every query it ran ([`Diagnosis::queries`]), so
//! a caller can show its work (`scry demo` prints them) or rerun them. It reads only: any
//! session works, over a writable or a read-only database.
//!
//! The steps:
//! 1. **Symptom**: error rate and p99 latency of entry spans (root `SERVER` spans) per
//!    bucket ([`DiagnoseOptions::bucket`]). Buckets whose error rate rises clearly above the
//!    median bucket, or whose p99 is well above the median p99, are anomalous; the anomaly
//!    window runs from the first anomalous bucket to the end of the last.
//! 2. **Services**: spans, errors and p99 of `SERVER` spans per service in the window.
//!
//!    Steps 1 and 2 read the span rollups (`span_metrics`, p99 from their exponential
//!    histograms, within 1.1%) when the bucket is a multiple of their 10 seconds and the
//!    range falls on their intervals, and the raw `spans` otherwise.
//! 3. **Root cause**: for an error anomaly, the deepest erroring spans (errors none of whose
//!    children failed), grouped; a failing `CLIENT` call with no server span under it
//!    blames its callee. For a latency anomaly, the operation whose self time (duration
//!    minus its children's) grew most in the window compared with outside it. Then
//!    `compare` says what sets that operation's spans in the window apart from its other
//!    spans (for errors: its failing spans in the window against its succeeding ones) —
//!    the attribute and resource values over-represented among them
//!    ([`Diagnosis::differences`]).
//! 4. **Example trace**: the slowest span of the root-cause group in the window, and its
//!    critical path by operation ([`Diagnosis::critical_path`]): where that request's time
//!    went.
//! 5. **Logs**: warnings and errors logged by the traces of that group in the window.
//! 6. **Exemplar**: the slowest exemplar of the latency histogram in the window, joined to
//!    its span.
//!
//! Nothing found is not an error: an empty store, or one with no anomaly, gives a
//! [`Diagnosis`] whose `anomaly` is `None` ([`Diagnosis::summary`] says which).
//!
//! Every value placed into SQL is quoted ([`sql_string_literal`]) or built from an integer
//! ([`sql_timestamp_literal`]), never pasted raw.

use std::fmt;
use std::time::Duration;

use scrydb_engine::TimeRange;
use scrydb_engine::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use scrydb_engine::arrow::compute::cast;
use scrydb_engine::arrow::datatypes::{DataType, Float64Type, Int64Type};
use scrydb_engine::rollup::INTERVAL_NS;
use scrydb_sql::Session;

/// `s` as a SQL string literal: in single quotes, with every single quote doubled. Safe
/// for any text (the SQL dialect does not treat backslashes as escapes).
///
/// ```
/// assert_eq!(scrydb::diagnose::sql_string_literal("o'brien"), "'o''brien'");
/// ```
pub fn sql_string_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL timestamp literal (UTC) for `ns` nanoseconds since the epoch, built from the
/// integer alone: `to_timestamp_nanos(<ns>)`, which the planner folds into a constant
/// (so it prunes partitions like any timestamp literal).
///
/// ```
/// assert_eq!(scrydb::diagnose::sql_timestamp_literal(5), "to_timestamp_nanos(5)");
/// ```
pub fn sql_timestamp_literal(ns: i64) -> String {
    if ns == i64::MIN {
        // `-9223372036854775808` would parse as the negation of a number that does not fit.
        format!("to_timestamp_nanos({} - 1)", i64::MIN + 1)
    } else {
        format!("to_timestamp_nanos({ns})")
    }
}

/// The p99 of `duration_ns` over `span_metrics` rows, in nanoseconds.
const P99_OF_ROLLUPS: &str =
    "exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.99)";

/// A SQL condition restricting `column` to `range` (`TRUE` for the whole time axis).
fn time_condition(column: &str, range: TimeRange) -> String {
    let mut parts = Vec::new();
    if range.start != i64::MIN {
        parts.push(format!(
            "{column} >= {}",
            sql_timestamp_literal(range.start)
        ));
    }
    if range.end != i64::MAX {
        parts.push(format!("{column} < {}", sql_timestamp_literal(range.end)));
    }
    if parts.is_empty() {
        "TRUE".to_string()
    } else {
        parts.join(" AND ")
    }
}

/// A SQL interval of `d` (whole seconds, milliseconds or nanoseconds).
fn sql_interval(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("interval '{} seconds'", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("interval '{} milliseconds'", ns / 1_000_000)
    } else {
        format!("interval '{ns} nanoseconds'")
    }
}

/// What a diagnosis looks for and how much it returns. Build with
/// [`DiagnoseOptions::default`] and the setters.
#[derive(Debug, Clone)]
pub struct DiagnoseOptions {
    bucket: Duration,
    error_rate_rise: f64,
    error_rate_factor: f64,
    latency_factor: f64,
    latency_metric: String,
    max_services: usize,
    max_candidates: usize,
    max_logs: usize,
    max_patterns: usize,
    min_log_severity: i32,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        DiagnoseOptions {
            bucket: Duration::from_secs(10),
            error_rate_rise: 0.03,
            error_rate_factor: 2.0,
            latency_factor: 1.8,
            latency_metric: "rpc.server.duration".into(),
            max_services: 6,
            max_candidates: 5,
            max_logs: 6,
            max_patterns: 5,
            min_log_severity: 13,
        }
    }
}

impl DiagnoseOptions {
    /// Width of the time buckets of the symptom series.
    ///
    /// Default: 10 s. At least 1 ms.
    pub fn bucket(mut self, d: Duration) -> Self {
        self.bucket = d.max(Duration::from_millis(1));
        self
    }

    /// A bucket's error rate is anomalous when it exceeds the median bucket's by more than
    /// `rise` (absolute, a fraction of requests) *and* is more than `factor` times it.
    ///
    /// Default: 0.03 and 2.0.
    pub fn error_rate_threshold(mut self, rise: f64, factor: f64) -> Self {
        self.error_rate_rise = rise;
        self.error_rate_factor = factor;
        self
    }

    /// A bucket's p99 latency is anomalous when it is more than `factor` times the median
    /// bucket's.
    ///
    /// Default: 1.8.
    pub fn latency_factor(mut self, factor: f64) -> Self {
        self.latency_factor = factor;
        self
    }

    /// The histogram metric whose exemplars lead to a trace.
    ///
    /// Default: `rpc.server.duration`.
    pub fn latency_metric(mut self, name: impl Into<String>) -> Self {
        self.latency_metric = name.into();
        self
    }

    /// How many services, root-cause candidates and log records are returned at most.
    ///
    /// Default: 6, 5 and 6.
    pub fn limits(mut self, services: usize, candidates: usize, logs: usize) -> Self {
        self.max_services = services;
        self.max_candidates = candidates;
        self.max_logs = logs;
        self
    }

    /// How many new, surging or gone log templates are returned at most.
    ///
    /// Default: 5.
    pub fn max_log_patterns(mut self, n: usize) -> Self {
        self.max_patterns = n;
        self
    }

    /// The lowest OTLP severity number of the logs returned.
    ///
    /// Default: 13 (WARN).
    pub fn min_log_severity(mut self, n: i32) -> Self {
        self.min_log_severity = n;
        self
    }
}

/// A step of the diagnosis; each query it runs belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Error rate and p99 latency of incoming requests over time.
    Symptom,
    /// Errors and latency per service in the anomaly window.
    Services,
    /// The operation that causes the anomaly.
    RootCause,
    /// One affected trace.
    ExampleTrace,
    /// The logs of the affected traces.
    Logs,
    /// Log templates new, surging or gone in the anomaly window.
    LogPatterns,
    /// From the latency histogram to a trace.
    Exemplar,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Symptom => "symptom",
            Step::Services => "services",
            Step::RootCause => "root cause",
            Step::ExampleTrace => "example trace",
            Step::Logs => "logs",
            Step::LogPatterns => "log patterns",
            Step::Exemplar => "exemplar",
        })
    }
}

/// Why a diagnosis could not be made. Finding nothing is not an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A query failed (an engine error, or a planning error).
    Query {
        /// The step.
        step: Step,
        /// The query.
        sql: String,
        /// What failed.
        source: scrydb_sql::Error,
    },
    /// A query returned a column that cannot be read as the step needs (a bug in the
    /// query, or a schema that differs from ScryDB's).
    Result {
        /// The step.
        step: Step,
        /// The column, by position.
        column: usize,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Query { step, source, .. } => {
                write!(f, "diagnosis step '{step}': query failed: {source}")
            }
            Error::Result {
                step,
                column,
                reason,
            } => write!(
                f,
                "diagnosis step '{step}': result column {column}: {reason}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Query { source, .. } => Some(source),
            Error::Result { .. } => None,
        }
    }
}

/// One bucket of the symptom series.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, ns since the epoch.
    pub start: i64,
    /// Entry spans (incoming requests) starting in it.
    pub requests: u64,
    /// Fraction of them with status `ERROR`.
    pub error_rate: f64,
    /// Their approximate 99th percentile duration, ms (NaN when unknown).
    pub p99_ms: f64,
    /// Whether the bucket is anomalous.
    pub anomalous: bool,
}

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// The error rate rose (latency may have too).
    Errors,
    /// Only the latency rose.
    Latency,
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnomalyKind::Errors => "errors",
            AnomalyKind::Latency => "latency",
        })
    }
}

/// When the symptom shows and how strongly.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyWindow {
    /// Start of the first anomalous bucket, ns since the epoch.
    pub start: i64,
    /// End (exclusive) of the last anomalous bucket.
    pub end: i64,
    /// Errors or latency.
    pub kind: AnomalyKind,
    /// Median error rate over all buckets.
    pub baseline_error_rate: f64,
    /// Highest error rate of a bucket in the window.
    pub peak_error_rate: f64,
    /// Median p99 over all buckets, ms.
    pub baseline_p99_ms: f64,
    /// Highest p99 of a bucket in the window, ms.
    pub peak_p99_ms: f64,
}

impl AnomalyWindow {
    /// The window as a time range.
    pub fn range(&self) -> TimeRange {
        TimeRange::new(self.start, self.end)
    }
}

/// A service's `SERVER` spans in the anomaly window.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFinding {
    /// The service.
    pub service: String,
    /// Its `SERVER` spans in the window.
    pub spans: u64,
    /// Those with status `ERROR`.
    pub errors: u64,
    /// Their approximate p99 duration, ms (NaN when unknown).
    pub p99_ms: f64,
}

/// Erroring spans none of whose children failed, grouped by where they are.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorGroup {
    /// Service of the spans.
    pub service: String,
    /// Span name.
    pub operation: String,
    /// Span kind.
    pub kind: String,
    /// `peer.service` of the spans (the callee of a `CLIENT` span), if set.
    pub peer_service: Option<String>,
    /// `rpc.method` of the spans, if set.
    pub rpc_method: Option<String>,
    /// How many spans.
    pub count: u64,
}

/// How an operation's self time changed in the anomaly window.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfTimeChange {
    /// Service of the spans.
    pub service: String,
    /// Span name.
    pub operation: String,
    /// Mean self time in the window, ms (`None`: no such span in it).
    pub during_ms: Option<f64>,
    /// Mean self time outside the window, ms (`None`: no such span outside it).
    pub outside_ms: Option<f64>,
}

/// What the root cause was found from: the candidates, most likely first.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Evidence {
    /// An error anomaly: the deepest erroring spans, by count.
    DeepestErrors(Vec<ErrorGroup>),
    /// A latency anomaly: self time in the window against outside it, by growth.
    SelfTime(Vec<SelfTimeChange>),
}

/// The operation found to cause the anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct RootCause {
    /// The service at fault.
    pub service: String,
    /// Its operation at fault (a span name, or the `rpc.method` of calls to it).
    pub operation: String,
    /// The deepest failures are `CLIENT` calls with no server span under them: the callee
    /// never answered, so the cause named is the callee (`peer.service`, `rpc.method`),
    /// not the caller that recorded the spans.
    pub callee_inferred: bool,
    /// The candidates it was chosen from.
    pub evidence: Evidence,
}

/// One operation's time on the example trace's critical path.
#[derive(Debug, Clone, PartialEq)]
pub struct PathShare {
    /// The service.
    pub service: String,
    /// The operation (span name).
    pub operation: String,
    /// Its spans' time on the path, ns.
    pub critical_ns: i64,
    /// That over the whole path (0 to 1).
    pub share: f64,
}

/// A warning or error logged by an affected trace.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When, ns since the epoch.
    pub time: i64,
    /// The service that logged it.
    pub service: String,
    /// Severity text (may be empty).
    pub severity: String,
    /// The body.
    pub body: String,
    /// The trace it belongs to.
    pub trace_id: Option<[u8; 16]>,
}

/// A log template new, surging or gone in the anomaly window (`log_patterns`,
/// [`scrydb_engine::Snapshot::log_patterns`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternFinding {
    /// The service that logged it.
    pub service: String,
    /// The template (`<*>` for variables).
    pub template: String,
    /// Lines in the anomaly window.
    pub count: u64,
    /// Lines in the window before it.
    pub baseline_count: u64,
    /// `new`, `surging` or `gone`.
    pub status: String,
}

/// The slowest exemplar of the latency histogram in the window, and its span.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarFinding {
    /// The metric.
    pub metric: String,
    /// The service that reported it.
    pub service: String,
    /// The exemplar's value (the metric's unit, ms for the default metric).
    pub value: f64,
    /// The name of the span it points at.
    pub span_name: String,
    /// Its trace.
    pub trace_id: [u8; 16],
    /// Its span.
    pub span_id: Option<[u8; 8]>,
}

/// A query the diagnosis ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The step it belongs to.
    pub step: Step,
    /// The SQL, as run (several lines).
    pub sql: String,
}

/// What a diagnosis found. Fields after `anomaly` are empty or `None` when nothing was
/// found at their step (or an earlier one).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnosis {
    /// The time range examined (`None`: all data).
    pub range: Option<TimeRange>,
    /// The symptom series, by time. Empty when there are no entry spans.
    pub buckets: Vec<Bucket>,
    /// The anomaly window; `None` when nothing stands out.
    pub anomaly: Option<AnomalyWindow>,
    /// Services in the window, most errors then highest p99 first.
    pub services: Vec<ServiceFinding>,
    /// The operation at fault.
    pub root_cause: Option<RootCause>,
    /// The trace of the slowest span of the root-cause group in the window.
    pub example_trace: Option<[u8; 16]>,
    /// The critical path of the example trace by operation, most time first: where that
    /// request's time went (`critical_path`).
    pub critical_path: Vec<PathShare>,
    /// What sets the root-cause operation's spans in the window apart from its other spans
    /// (`compare`): attribute and resource values over-represented among them, best first.
    /// The defining values (service, operation, status) are left out.
    pub differences: Vec<scrydb_sql::compare::Difference>,
    /// Warnings and errors of the affected traces, by time.
    pub logs: Vec<LogLine>,
    /// Log templates new, surging or gone in the anomaly window against the window of the
    /// same length before it: new ones first, then surging, then gone, each by lines.
    pub log_patterns: Vec<PatternFinding>,
    /// The slowest exemplar in the window.
    pub exemplar: Option<ExemplarFinding>,
    /// Findings that could not be made — a query of the critical path or `compare` that
    /// failed — each saying which and why. The rest of the diagnosis stands without them.
    pub notes: Vec<String>,
    /// Every query run, in order.
    pub queries: Vec<Query>,
}

impl Diagnosis {
    /// The SQL of the queries of `step`, in order.
    pub fn queries_of(&self, step: Step) -> impl Iterator<Item = &str> {
        self.queries
            .iter()
            .filter(move |q| q.step == step)
            .map(|q| q.sql.as_str())
    }

    /// One line saying what was found, for people and agents.
    pub fn summary(&self) -> String {
        let Some(a) = &self.anomaly else {
            return if self.buckets.is_empty() {
                "nothing found: no incoming requests (root SERVER spans) in the range".into()
            } else {
                format!(
                    "nothing found: no anomaly in {} buckets of incoming requests",
                    self.buckets.len()
                )
            };
        };
        let what = format!("{} anomaly from {} to {} (ns)", a.kind, a.start, a.end);
        match &self.root_cause {
            Some(r) => format!("{what}: root cause {}/{}", r.service, r.operation),
            None => format!("{what}: no root cause found"),
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Reads the columns of query results for one step.
struct Columns<'a> {
    step: Step,
    batches: &'a [RecordBatch],
}

impl Columns<'_> {
    fn bad(&self, column: usize, reason: impl Into<String>) -> Error {
        Error::Result {
            step: self.step,
            column,
            reason: reason.into(),
        }
    }

    fn column(&self, b: &RecordBatch, col: usize) -> Result<ArrayRef, Error> {
        if col >= b.num_columns() {
            return Err(self.bad(col, format!("missing: {} columns", b.num_columns())));
        }
        Ok(b.column(col).clone())
    }

    fn cast(&self, b: &RecordBatch, col: usize, to: &DataType) -> Result<ArrayRef, Error> {
        cast(&self.column(b, col)?, to).map_err(|e| self.bad(col, format!("not {to}: {e}")))
    }

    fn texts(&self, col: usize) -> Result<Vec<Option<String>>, Error> {
        let mut out = Vec::new();
        for b in self.batches {
            let c = self.cast(b, col, &DataType::Utf8)?;
            let c = c.as_string::<i32>();
            out.extend((0..c.len()).map(|r| c.is_valid(r).then(|| c.value(r).to_string())));
        }
        Ok(out)
    }

    fn floats(&self, col: usize) -> Result<Vec<Option<f64>>, Error> {
        let mut out = Vec::new();
        for b in self.batches {
            let c = self.cast(b, col, &DataType::Float64)?;
            let c = c.as_primitive::<Float64Type>();
            out.extend((0..c.len()).map(|r| c.is_valid(r).then(|| c.value(r))));
        }
        Ok(out)
    }

    fn ints(&self, col: usize) -> Result<Vec<Option<i64>>, Error> {
        let mut out = Vec::new();
        for b in self.batches {
            let c = self.cast(b, col, &DataType::Int64)?;
            let c = c.as_primitive::<Int64Type>();
            out.extend((0..c.len()).map(|r| c.is_valid(r).then(|| c.value(r))));
        }
        Ok(out)
    }

    fn ids<const N: usize>(&self, col: usize) -> Result<Vec<Option<[u8; N]>>, Error> {
        let mut out = Vec::new();
        for b in self.batches {
            let c = self.column(b, col)?;
            let c = c
                .as_fixed_size_binary_opt()
                .ok_or_else(|| self.bad(col, format!("not FixedSizeBinary({N})")))?;
            out.extend((0..c.len()).map(|r| {
                c.is_valid(r)
                    .then(|| <[u8; N]>::try_from(c.value(r)).ok())
                    .flatten()
            }));
        }
        Ok(out)
    }
}

fn count(v: Option<i64>) -> u64 {
    v.map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// One diagnosis in progress: the session and the queries run so far.
struct Run<'a> {
    session: &'a Session,
    queries: Vec<Query>,
}

impl Run<'_> {
    async fn query(&mut self, step: Step, sql: String) -> Result<Vec<RecordBatch>, Error> {
        self.queries.push(Query {
            step,
            sql: sql.clone(),
        });
        self.session
            .sql(&sql)
            .await
            .map_err(|source| Error::Query { step, sql, source })
    }
}

/// Diagnoses the telemetry of `session` in `range` (`None`: all of it); see the
/// [module](self) docs for the steps.
///
/// Returns `Ok` whatever was found (an empty store gives a diagnosis with no buckets and no
/// anomaly); errors are failed queries or unreadable results ([`Error`]).
pub async fn diagnose(
    session: &Session,
    range: Option<TimeRange>,
    opts: &DiagnoseOptions,
) -> Result<Diagnosis, Error> {
    let mut run = Run {
        session,
        queries: Vec::new(),
    };
    let mut d = Diagnosis {
        range,
        ..Default::default()
    };
    let result = steps(&mut run, &mut d, range, opts).await;
    d.queries = run.queries;
    result.map(|()| d)
}

/// [`diagnose`] for callers without an async runtime (on the SQL layer's runtime). Must
/// not be called from inside an async task.
pub fn diagnose_blocking(
    session: &Session,
    range: Option<TimeRange>,
    opts: &DiagnoseOptions,
) -> Result<Diagnosis, Error> {
    scrydb_sql::block_on(diagnose(session, range, opts))
}

/// What sets the root-cause operation's spans in the window apart from its other spans in
/// the range ([`Diagnosis::differences`]): `compare`, its defining values left out.
async fn differences(
    run: &mut Run<'_>,
    cause: &RootCause,
    kind: AnomalyKind,
    in_window: &str,
    time_filter: &str,
    opts: &DiagnoseOptions,
) -> Result<Vec<scrydb_sql::compare::Difference>, Error> {
    let step = Step::RootCause;
    let op = format!(
        "service_name = {} AND name = {}",
        sql_string_literal(&cause.service),
        sql_string_literal(&cause.operation)
    );
    let (selection, baseline) = match kind {
        AnomalyKind::Errors => (
            format!("{op} AND status_code = 'ERROR' AND {in_window}"),
            format!("{op} AND status_code <> 'ERROR'{time_filter}"),
        ),
        AnomalyKind::Latency => (
            format!("{op} AND {in_window}"),
            format!("{op} AND NOT ({in_window}){time_filter}"),
        ),
    };
    let sql = format!(
        "SELECT dimension, value, selection_count, baseline_count, selection_share,\n       \
         baseline_share, score\n\
         FROM compare({}, {}, {})\n\
         WHERE dimension NOT IN ('service_name', 'name', 'status_code') AND score >= 0.05\n\
         ORDER BY score DESC, dimension, value",
        sql_string_literal(&selection),
        sql_string_literal(&baseline),
        opts.max_candidates.saturating_add(3),
    );
    let r = run.query(step, sql).await?;
    let c = Columns { step, batches: &r };
    let (dim, value, sc, bc, ss, bs, score) = (
        c.texts(0)?,
        c.texts(1)?,
        c.ints(2)?,
        c.ints(3)?,
        c.floats(4)?,
        c.floats(5)?,
        c.floats(6)?,
    );
    Ok((0..dim.len())
        .take(opts.max_candidates)
        .map(|i| scrydb_sql::compare::Difference {
            dimension: dim[i].clone().unwrap_or_default(),
            value: value[i].clone().unwrap_or_default(),
            selection_count: count(sc[i]),
            baseline_count: count(bc[i]),
            selection_share: ss[i].unwrap_or(0.0),
            baseline_share: bs[i].unwrap_or(0.0),
            score: score[i].unwrap_or(0.0),
        })
        .collect())
}

/// Where the example trace's time went: its critical path by operation
/// ([`Diagnosis::critical_path`]).
async fn path_shares(
    run: &mut Run<'_>,
    id: [u8; 16],
    opts: &DiagnoseOptions,
) -> Result<Vec<PathShare>, Error> {
    let step = Step::ExampleTrace;
    let sql = format!(
        "SELECT service_name, name, sum(critical_ns) AS critical_ns,\n       \
         sum(critical_share) AS share\n\
         FROM critical_path('{}')\n\
         GROUP BY 1, 2 ORDER BY critical_ns DESC, 1, 2 LIMIT {}",
        scrydb_sql::ids::hex(&id),
        opts.max_candidates,
    );
    let r = run.query(step, sql).await?;
    let c = Columns { step, batches: &r };
    let (svc, name, ns, share) = (c.texts(0)?, c.texts(1)?, c.ints(2)?, c.floats(3)?);
    Ok((0..svc.len())
        .map(|i| PathShare {
            service: svc[i].clone().unwrap_or_default(),
            operation: name[i].clone().unwrap_or_default(),
            critical_ns: ns[i].unwrap_or(0),
            share: share[i].unwrap_or(0.0),
        })
        .collect())
}

async fn steps(
    run: &mut Run<'_>,
    d: &mut Diagnosis,
    range: Option<TimeRange>,
    opts: &DiagnoseOptions,
) -> Result<(), Error> {
    // 1. The symptom.
    let step = Step::Symptom;
    let bucket_ns = i64::try_from(opts.bucket.as_nanos()).unwrap_or(i64::MAX);
    // The span rollups (`span_metrics`) answer the symptom and service steps when the
    // buckets and the range fall on their 10-second intervals; the raw spans otherwise.
    let aligned = |t: i64| t == i64::MIN || t == i64::MAX || t % INTERVAL_NS == 0;
    let rollups = bucket_ns % INTERVAL_NS == 0
        && bucket_ns > 0
        && range.is_none_or(|r| aligned(r.start) && aligned(r.end));
    let time_filter = range
        .map(|r| format!(" AND {}", time_condition("time", r)))
        .unwrap_or_default();
    let sql = if rollups {
        format!(
            "SELECT date_bin({}, time) AS bucket,\n       \
             sum(count) AS requests,\n       \
             CAST(sum(errors) AS DOUBLE) / sum(count) AS error_rate,\n       \
             {P99_OF_ROLLUPS} / 1e6 AS p99_ms\n\
             FROM span_metrics WHERE is_root AND kind = 'SERVER'{time_filter}\n\
             GROUP BY 1 ORDER BY 1",
            sql_interval(opts.bucket),
        )
    } else {
        format!(
            "SELECT date_bin({}, time) AS bucket,\n       \
             count(*) AS requests,\n       \
             avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS error_rate,\n       \
             approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99_ms\n\
             FROM spans WHERE parent_span_id IS NULL AND kind = 'SERVER'{time_filter}\n\
             GROUP BY 1 ORDER BY 1",
            sql_interval(opts.bucket),
        )
    };
    let r = run.query(step, sql).await?;
    let c = Columns { step, batches: &r };
    let (starts, requests, errs, p99s) = (c.ints(0)?, c.ints(1)?, c.floats(2)?, c.floats(3)?);
    let err: Vec<f64> = errs.iter().map(|e| e.unwrap_or(0.0)).collect();
    let p99: Vec<f64> = p99s.iter().map(|p| p.unwrap_or(f64::NAN)).collect();
    let (base_err, base_p99) = (median(&err), median(&p99));
    let error_anomaly =
        |e: f64| e > base_err + opts.error_rate_rise && e > opts.error_rate_factor * base_err;
    d.buckets = (0..starts.len())
        .map(|i| Bucket {
            start: starts[i].unwrap_or(0),
            requests: count(requests[i]),
            error_rate: err[i],
            p99_ms: p99[i],
            anomalous: error_anomaly(err[i]) || p99[i] > opts.latency_factor * base_p99,
        })
        .collect();
    let Some(first) = d.buckets.iter().position(|b| b.anomalous) else {
        return Ok(());
    };
    let last = d.buckets.iter().rposition(|b| b.anomalous).unwrap_or(first);
    let window = &d.buckets[first..=last];
    let anomaly = AnomalyWindow {
        start: d.buckets[first].start,
        end: d.buckets[last].start.saturating_add(bucket_ns),
        kind: if window.iter().any(|b| error_anomaly(b.error_rate)) {
            AnomalyKind::Errors
        } else {
            AnomalyKind::Latency
        },
        baseline_error_rate: base_err,
        peak_error_rate: window.iter().map(|b| b.error_rate).fold(0.0, f64::max),
        baseline_p99_ms: base_p99,
        peak_p99_ms: window.iter().map(|b| b.p99_ms).fold(0.0, f64::max),
    };
    let window_range = anomaly.range();
    let in_window = time_condition("time", window_range);
    let kind = anomaly.kind;
    d.anomaly = Some(anomaly);

    // 2. Which services.
    let step = Step::Services;
    let sql = if rollups {
        format!(
            "SELECT service_name, sum(count) AS spans,\n       \
             sum(errors) AS errors,\n       \
             {P99_OF_ROLLUPS} / 1e6 AS p99_ms\n\
             FROM span_metrics WHERE kind = 'SERVER' AND {in_window}\n\
             GROUP BY 1 ORDER BY errors DESC, p99_ms DESC LIMIT {}",
            opts.max_services
        )
    } else {
        format!(
            "SELECT service_name, count(*) AS spans,\n       \
             sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors,\n       \
             approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99_ms\n\
             FROM spans WHERE kind = 'SERVER' AND {in_window}\n\
             GROUP BY 1 ORDER BY errors DESC, p99_ms DESC LIMIT {}",
            opts.max_services
        )
    };
    let r = run.query(step, sql).await?;
    let c = Columns { step, batches: &r };
    let (svc, n, e, p) = (c.texts(0)?, c.ints(1)?, c.ints(2)?, c.floats(3)?);
    d.services = (0..svc.len())
        .map(|i| ServiceFinding {
            service: svc[i].clone().unwrap_or_default(),
            spans: count(n[i]),
            errors: count(e[i]),
            p99_ms: p[i].unwrap_or(f64::NAN),
        })
        .collect();

    // 3. The root cause, and which spans show it.
    let step = Step::RootCause;
    let (root_cause, group_filter) = match kind {
        AnomalyKind::Errors => {
            let s_window = time_condition("s.time", window_range);
            let sql = format!(
                "SELECT s.service_name, s.name, s.kind,\n       \
                 s.attributes['peer.service'] AS peer, s.attributes['rpc.method'] AS method,\n       \
                 count(*) AS n\n\
                 FROM spans s\n\
                 WHERE s.status_code = 'ERROR' AND {s_window}\n  \
                 AND NOT EXISTS (SELECT 1 FROM spans c WHERE c.trace_id = s.trace_id\n                  \
                 AND c.parent_span_id = s.span_id AND c.status_code = 'ERROR')\n\
                 GROUP BY 1, 2, 3, 4, 5 ORDER BY n DESC LIMIT {}",
                opts.max_candidates
            );
            let r = run.query(step, sql).await?;
            let c = Columns { step, batches: &r };
            let (svc, name, kind, peer, method, n) = (
                c.texts(0)?,
                c.texts(1)?,
                c.texts(2)?,
                c.texts(3)?,
                c.texts(4)?,
                c.ints(5)?,
            );
            let groups: Vec<ErrorGroup> = (0..svc.len())
                .map(|i| ErrorGroup {
                    service: svc[i].clone().unwrap_or_default(),
                    operation: name[i].clone().unwrap_or_default(),
                    kind: kind[i].clone().unwrap_or_default(),
                    peer_service: peer[i].clone().filter(|p| !p.is_empty()),
                    rpc_method: method[i].clone().filter(|m| !m.is_empty()),
                    count: count(n[i]),
                })
                .collect();
            match groups.first() {
                None => (None, None),
                Some(top) => {
                    // A client call that failed with no server span under it: the callee
                    // never answered, so the fault is the callee's.
                    let callee = match (&top.peer_service, top.kind.as_str()) {
                        (Some(peer), "CLIENT") => {
                            Some((peer.clone(), top.rpc_method.clone().unwrap_or_default()))
                        }
                        _ => None,
                    };
                    let filter = format!(
                        "service_name = {} AND name = {} AND status_code = 'ERROR'",
                        sql_string_literal(&top.service),
                        sql_string_literal(&top.operation)
                    );
                    let (service, operation) = callee
                        .clone()
                        .unwrap_or_else(|| (top.service.clone(), top.operation.clone()));
                    let cause = RootCause {
                        service,
                        operation,
                        callee_inferred: callee.is_some(),
                        evidence: Evidence::DeepestErrors(groups),
                    };
                    (Some(cause), Some(filter))
                }
            }
        }
        AnomalyKind::Latency => {
            let sql = format!(
                "WITH kids AS (SELECT trace_id, parent_span_id AS id, sum(duration_ns) AS d\n              \
                 FROM spans WHERE parent_span_id IS NOT NULL GROUP BY 1, 2),\n     \
                 own AS (SELECT s.service_name, s.name, s.time, s.duration_ns - coalesce(k.d, 0) AS self_ns\n             \
                 FROM spans s LEFT JOIN kids k ON k.trace_id = s.trace_id AND k.id = s.span_id)\n\
                 SELECT service_name, name,\n       \
                 avg(CASE WHEN {in_window} THEN self_ns END) / 1e6 AS during_ms,\n       \
                 avg(CASE WHEN NOT ({in_window}) THEN self_ns END) / 1e6 AS outside_ms\n\
                 FROM own GROUP BY 1, 2\n\
                 ORDER BY coalesce(during_ms, 0) - coalesce(outside_ms, 0) DESC LIMIT {}",
                opts.max_candidates
            );
            let r = run.query(step, sql).await?;
            let c = Columns { step, batches: &r };
            let (svc, name, during, outside) =
                (c.texts(0)?, c.texts(1)?, c.floats(2)?, c.floats(3)?);
            let changes: Vec<SelfTimeChange> = (0..svc.len())
                .map(|i| SelfTimeChange {
                    service: svc[i].clone().unwrap_or_default(),
                    operation: name[i].clone().unwrap_or_default(),
                    during_ms: during[i],
                    outside_ms: outside[i],
                })
                .collect();
            match changes.first() {
                None => (None, None),
                Some(top) => {
                    let filter = format!(
                        "service_name = {} AND name = {}",
                        sql_string_literal(&top.service),
                        sql_string_literal(&top.operation)
                    );
                    let cause = RootCause {
                        service: top.service.clone(),
                        operation: top.operation.clone(),
                        callee_inferred: false,
                        evidence: Evidence::SelfTime(changes),
                    };
                    (Some(cause), Some(filter))
                }
            }
        }
    };
    d.root_cause = root_cause;

    if let Some(cause) = d.root_cause.clone()
        && !cause.callee_inferred
    {
        match differences(run, &cause, kind, &in_window, &time_filter, opts).await {
            Ok(found) => d.differences = found,
            Err(e) => d.notes.push(format!("no differences: {e}")),
        }
    }

    if let Some(group) = group_filter {
        // 4. One affected trace.
        let step = Step::ExampleTrace;
        let sql = format!(
            "SELECT trace_id FROM spans WHERE {group} AND {in_window}\n\
             ORDER BY duration_ns DESC LIMIT 1"
        );
        let r = run.query(step, sql).await?;
        d.example_trace = Columns { step, batches: &r }
            .ids::<16>(0)?
            .into_iter()
            .flatten()
            .next();
        if let Some(id) = d.example_trace {
            match path_shares(run, id, opts).await {
                Ok(found) => d.critical_path = found,
                Err(e) => d.notes.push(format!("no critical path: {e}")),
            }
        }

        // 5. The logs of the affected traces.
        let step = Step::Logs;
        let sql = format!(
            "SELECT l.time, l.service_name, l.severity_text, l.body, l.trace_id\n\
             FROM logs l\n\
             WHERE l.severity_number >= {} AND l.trace_id IN\n  \
             (SELECT trace_id FROM spans WHERE {group} AND {in_window})\n\
             ORDER BY l.time LIMIT {}",
            opts.min_log_severity, opts.max_logs
        );
        let r = run.query(step, sql).await?;
        let c = Columns { step, batches: &r };
        let (time, svc, sev, body, tid) = (
            c.ints(0)?,
            c.texts(1)?,
            c.texts(2)?,
            c.texts(3)?,
            c.ids::<16>(4)?,
        );
        d.logs = (0..time.len())
            .map(|i| LogLine {
                time: time[i].unwrap_or(0),
                service: svc[i].clone().unwrap_or_default(),
                severity: sev[i].clone().unwrap_or_default(),
                body: body[i].clone().unwrap_or_default(),
                trace_id: tid[i],
            })
            .collect();
    }

    // 6. What is new in the logs: templates new, surging or gone in the window against
    // the window of the same length before it.
    let step = Step::LogPatterns;
    let sql = format!(
        "SELECT service_name, template, \"count\", baseline_count, status\n\
         FROM log_patterns({}, {})\n\
         WHERE status IN ('new', 'surging', 'gone')\n\
         ORDER BY CASE status WHEN 'new' THEN 0 WHEN 'surging' THEN 1 ELSE 2 END,\n         \
         \"count\" + baseline_count DESC, service_name, template LIMIT {}",
        sql_timestamp_literal(window_range.start),
        sql_timestamp_literal(window_range.end),
        opts.max_patterns
    );
    let r = run.query(step, sql).await?;
    let c = Columns { step, batches: &r };
    let (svc, template, n, base, status) = (
        c.texts(0)?,
        c.texts(1)?,
        c.ints(2)?,
        c.ints(3)?,
        c.texts(4)?,
    );
    d.log_patterns = (0..svc.len())
        .map(|i| PatternFinding {
            service: svc[i].clone().unwrap_or_default(),
            template: template[i].clone().unwrap_or_default(),
            count: count(n[i]),
            baseline_count: count(base[i]),
            status: status[i].clone().unwrap_or_default(),
        })
        .collect();

    // 7. The exemplar.
    let step = Step::Exemplar;
    let sql = format!(
        "SELECT m.service_name, m.e['value'] AS value, s.name, m.e['trace_id'] AS trace_id,\n       \
         m.e['span_id'] AS span_id\n\
         FROM (SELECT service_name, unnest(exemplars) AS e FROM metrics\n      \
         WHERE name = {} AND {in_window}) m\n\
         JOIN spans s ON s.trace_id = m.e['trace_id'] AND s.span_id = m.e['span_id']\n\
         ORDER BY value DESC LIMIT 1",
        sql_string_literal(&opts.latency_metric)
    );
    let r = run.query(step, sql).await?;
    let c = Columns { step, batches: &r };
    let (svc, value, name, tid, sid) = (
        c.texts(0)?,
        c.floats(1)?,
        c.texts(2)?,
        c.ids::<16>(3)?,
        c.ids::<8>(4)?,
    );
    d.exemplar = (0..svc.len()).find_map(|i| {
        Some(ExemplarFinding {
            metric: opts.latency_metric.clone(),
            service: svc[i].clone().unwrap_or_default(),
            value: value[i]?,
            span_name: name[i].clone().unwrap_or_default(),
            trace_id: tid[i]?,
            span_id: sid[i],
        })
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_quote_and_build_from_integers() {
        assert_eq!(sql_string_literal("a"), "'a'");
        assert_eq!(sql_string_literal("o'brien''s"), "'o''brien''''s'");
        assert_eq!(sql_string_literal(r"back\slash"), r"'back\slash'");
        assert_eq!(sql_timestamp_literal(-7), "to_timestamp_nanos(-7)");
        assert_eq!(
            time_condition("t", TimeRange::new(1, 2)),
            "t >= to_timestamp_nanos(1) AND t < to_timestamp_nanos(2)"
        );
        assert_eq!(time_condition("t", TimeRange::all()), "TRUE");
        assert_eq!(
            sql_interval(Duration::from_secs(10)),
            "interval '10 seconds'"
        );
        assert_eq!(
            sql_interval(Duration::from_millis(1500)),
            "interval '1500 milliseconds'"
        );
    }
}
