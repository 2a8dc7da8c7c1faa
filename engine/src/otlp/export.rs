//! OTLP out: rows of the `spans`, `logs` and `metrics` tables back into
//! `Export{Trace,Logs,Metrics}ServiceRequest`s, and the two file encodings `scry ingest`
//! reads ([`ExportFormat`]).
//!
//! This is the inverse of the conversion in this module's parent: every column goes back to
//! the OTLP field it came from (`docs/schema.md`), so that ingesting the exported requests
//! stores rows identical to the exported ones, column for column. Rows that share their
//! resource and instrumentation scope are grouped into one `ResourceSpans`/`ScopeSpans`
//! (`ResourceLogs`/`ScopeLogs`, `ResourceMetrics`/`ScopeMetrics`) of a request, and metric
//! data points that share their metric (name, description, unit, metadata, type,
//! temporality, monotonicity) into one `Metric`.
//!
//! What a caller may rely on:
//! - **Attribute values and log bodies are exported as OTLP string values**, holding their
//!   stored string form ([`super::value`]). The type an attribute had when it was received
//!   (int, bool, array, ...) is not stored, so it cannot be given back; the string re-ingests
//!   to the identical stored string. An attribute whose stored value is null is exported
//!   with no value (an empty `AnyValue`), which is stored as null again.
//! - **Nulls where OTLP has no "absent"** (a span's `flags`, a dropped count, a histogram's
//!   `count`) are exported as the field's default (0), so they come back as 0, not null.
//!   Rows that OTLP conversion produced never have these nulls; only batches appended
//!   through Arrow may.
//! - A row whose `service_name` is not what its resource attributes say (a batch appended
//!   through Arrow with `service_name` but no `service.name` resource attribute) gets
//!   `service.name` added to its exported resource, so the service survives; a row whose
//!   resource attributes name a *different* service cannot be expressed.
//! - **Rows that cannot be expressed in OTLP** are an [`Error::InvalidBatch`] naming the
//!   column and row, and nothing of that batch is written: a time before 1970 (OTLP times
//!   are unsigned), an unknown enum value, a number point with neither or both of `value`
//!   and `value_int`, a severity number outside 0..=24, exemplars on a summary point. Such
//!   rows cannot come from OTLP ingestion.
//! - In OTLP/JSON, non-finite doubles are written as the strings `"NaN"`, `"Infinity"`,
//!   `"-Infinity"` (the proto3 JSON mapping). The JSON reader ScryDB uses accepts these only
//!   in summary quantiles; elsewhere a point holding one is rejected on ingest. Protobuf
//!   keeps every double exactly.
//!
//! ```
//! use scrydb_engine::otlp::{self, export};
//! use scrydb_engine::Signal;
//! let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name",
//!     "value":{"stringValue":"web"}}]},"scopeSpans":[{"spans":[{
//!     "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
//!     "name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
//! let batch = otlp::decode_json(json)?.convert().batch;
//! let requests = export::requests(Signal::Spans, &batch, &export::ExportOptions::default())?;
//! let again = requests[0].convert().batch;
//! assert_eq!(again, batch);
//! let line = export::encode_json(&requests[0]);
//! assert!(line.contains(r#""traceId":"5b8efff798038103d269b633813fc60c""#));
//! # Ok::<(), scrydb_engine::Error>(())
//! ```

use std::collections::HashMap;
use std::io::Write;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type,
};
use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Map, Value, json};

use super::ingest::SignalCounts;
use super::{
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest, Request,
};
use crate::schema::{METRIC_TYPES, SPAN_KINDS, STATUS_CODES, TEMPORALITIES, UNKNOWN_SERVICE};
use crate::{Error, Result, Signal};

/// Default of [`ExportOptions::max_records`]: spans, log records or data points per request.
pub const DEFAULT_MAX_RECORDS: usize = 1000;

/// Default of [`ExportOptions::max_bytes`]: 4 MiB of records (protobuf-encoded) per
/// request, the request size OpenTelemetry receivers accept by default, and well below the
/// 16 MiB under which `scry ingest` recognizes a length-prefixed protobuf stream.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

/// Highest `SeverityNumber` (`SEVERITY_NUMBER_FATAL4`).
const MAX_SEVERITY: i32 = 24;

/// How exported requests are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// OTLP/JSON, one request per line (JSON lines, as the Collector's file exporter writes):
    /// lowerCamelCase member names, trace and span ids as lowercase hex, 64-bit integers as
    /// decimal strings, enums as numbers, members with their default value left out.
    #[default]
    JsonLines,
    /// Protobuf, each request prefixed with its length as a 4-byte big-endian integer (the
    /// Collector file exporter's `proto` format).
    Protobuf,
}

/// How records are cut into requests and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The encoding. Default: [`ExportFormat::JsonLines`].
    pub format: ExportFormat,
    /// Most records (spans, log records or data points) per request; at least 1.
    /// Default: [`DEFAULT_MAX_RECORDS`].
    pub max_records: usize,
    /// A request is closed once its records take this many bytes (protobuf-encoded, so the
    /// JSON line is larger); a single larger record still makes a request of its own.
    /// Default: [`DEFAULT_MAX_BYTES`].
    pub max_bytes: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            format: ExportFormat::default(),
            max_records: DEFAULT_MAX_RECORDS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What an [`OtlpWriter`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exported {
    /// Records written, per signal.
    pub records: SignalCounts,
    /// Requests written (JSON lines or protobuf messages).
    pub requests: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Converts batches of rows into OTLP requests and writes them to `W` as they fill up, so
/// memory is bounded by one request per signal, not by the rows exported.
///
/// Requests of different signals may follow one another in any order in the output (each
/// JSON line and each protobuf message is one request of one signal; `scry ingest` tells
/// them apart). A request is written as soon as it is full; up to one request per signal is
/// held back until [`OtlpWriter::finish`], so the output is complete only once `finish`
/// returned `Ok`.
pub struct OtlpWriter<W: Write> {
    out: W,
    options: ExportOptions,
    spans: Pending<Vec<Span>>,
    logs: Pending<Vec<LogRecord>>,
    metrics: Pending<MetricGroup>,
    exported: Exported,
}

impl<W: Write> OtlpWriter<W> {
    /// A writer of requests to `out`, encoded and cut as `options` say. A `max_records` of 0
    /// is taken as 1.
    pub fn new(out: W, options: ExportOptions) -> Self {
        OtlpWriter {
            out,
            options: ExportOptions {
                max_records: options.max_records.max(1),
                ..options
            },
            spans: Pending::default(),
            logs: Pending::default(),
            metrics: Pending::default(),
            exported: Exported::default(),
        }
    }

    /// Converts every row of `batch`, a batch of `signal`'s table (any batch
    /// [`crate::validate::normalize`] accepts, such as the result of `SELECT *`), and writes
    /// the requests that fill up. Every row is converted before anything is written, so a
    /// row that cannot be expressed ([`Error::InvalidBatch`]) leaves the output and the
    /// held-back requests as they were; an I/O error ([`Error::Io`]) leaves what was written
    /// before it.
    pub fn write_batch(&mut self, signal: Signal, batch: &RecordBatch) -> Result<()> {
        let rows = convert(signal, batch)?;
        match rows {
            Rows::Spans(rows) => {
                for (ctx, span) in rows {
                    let bytes = span.encoded_len();
                    self.spans.slot(ctx).push(span);
                    self.spans.added(bytes);
                    if self.spans.full(&self.options) {
                        let req = self.spans.take_traces();
                        self.emit(&req)?;
                    }
                }
            }
            Rows::Logs(rows) => {
                for (ctx, record) in rows {
                    let bytes = record.encoded_len();
                    self.logs.slot(ctx).push(record);
                    self.logs.added(bytes);
                    if self.logs.full(&self.options) {
                        let req = self.logs.take_logs();
                        self.emit(&req)?;
                    }
                }
            }
            Rows::Metrics(rows) => {
                for (ctx, point) in rows {
                    let bytes = point.point.encoded_len();
                    self.metrics.slot(ctx).push(point);
                    self.metrics.added(bytes);
                    if self.metrics.full(&self.options) {
                        let req = self.metrics.take_metrics();
                        self.emit(&req)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// What was written so far (requests still held back are not counted).
    pub fn exported(&self) -> &Exported {
        &self.exported
    }

    /// Writes the requests still held back, flushes the output and returns it with what
    /// was written.
    pub fn finish(mut self) -> Result<(W, Exported)> {
        if self.spans.records > 0 {
            let req = self.spans.take_traces();
            self.emit(&req)?;
        }
        if self.logs.records > 0 {
            let req = self.logs.take_logs();
            self.emit(&req)?;
        }
        if self.metrics.records > 0 {
            let req = self.metrics.take_metrics();
            self.emit(&req)?;
        }
        self.out.flush().map_err(write_error)?;
        Ok((self.out, self.exported))
    }

    fn emit(&mut self, request: &Request) -> Result<()> {
        let bytes = match self.options.format {
            ExportFormat::JsonLines => {
                let mut line = encode_json(request);
                line.push('\n');
                self.out.write_all(line.as_bytes()).map_err(write_error)?;
                line.len()
            }
            ExportFormat::Protobuf => write_protobuf(&mut self.out, request)?,
        };
        self.exported
            .records
            .add(request.signal(), request.records() as u64);
        self.exported.requests += 1;
        self.exported.bytes += bytes as u64;
        Ok(())
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::Io {
        op: "write exported OTLP to",
        path: "<output>".into(),
        source: e,
    }
}

/// The rows of `batch` (a batch of `signal`'s table) as requests of at most
/// `options.max_records` records and about `options.max_bytes` bytes each, rows sharing a
/// resource and scope grouped together. Each request converts back
/// ([`Request::convert`]) to rows identical to the exported ones (see the module docs for
/// the exceptions, which only batches appended through Arrow can hit).
pub fn requests(
    signal: Signal,
    batch: &RecordBatch,
    options: &ExportOptions,
) -> Result<Vec<Request>> {
    let options = ExportOptions {
        max_records: options.max_records.max(1),
        ..options.clone()
    };
    let mut out = Vec::new();
    match convert(signal, batch)? {
        Rows::Spans(rows) => {
            let mut p = Pending::<Vec<Span>>::default();
            for (ctx, span) in rows {
                let bytes = span.encoded_len();
                p.slot(ctx).push(span);
                p.added(bytes);
                if p.full(&options) {
                    out.push(p.take_traces());
                }
            }
            if p.records > 0 {
                out.push(p.take_traces());
            }
        }
        Rows::Logs(rows) => {
            let mut p = Pending::<Vec<LogRecord>>::default();
            for (ctx, record) in rows {
                let bytes = record.encoded_len();
                p.slot(ctx).push(record);
                p.added(bytes);
                if p.full(&options) {
                    out.push(p.take_logs());
                }
            }
            if p.records > 0 {
                out.push(p.take_logs());
            }
        }
        Rows::Metrics(rows) => {
            let mut p = Pending::<MetricGroup>::default();
            for (ctx, point) in rows {
                let bytes = point.point.encoded_len();
                p.slot(ctx).push(point);
                p.added(bytes);
                if p.full(&options) {
                    out.push(p.take_metrics());
                }
            }
            if p.records > 0 {
                out.push(p.take_metrics());
            }
        }
    }
    Ok(out)
}

/// Writes `request` as protobuf prefixed with its length (4 bytes, big-endian), the framing
/// `scry ingest` and the Collector's file exporter read; returns the bytes written. A
/// request of 4 GiB or more is [`Error::TooLarge`].
pub fn write_protobuf(out: &mut impl Write, request: &Request) -> Result<usize> {
    let body = match request {
        Request::Traces(r) => r.encode_to_vec(),
        Request::Logs(r) => r.encode_to_vec(),
        Request::Metrics(r) => r.encode_to_vec(),
    };
    let len = u32::try_from(body.len()).map_err(|_| Error::TooLarge {
        what: "an exported OTLP request",
        size: body.len() as u64,
        limit: u64::from(u32::MAX),
    })?;
    out.write_all(&len.to_be_bytes()).map_err(write_error)?;
    out.write_all(&body).map_err(write_error)?;
    Ok(body.len() + 4)
}

// ---------------------------------------------------------------------------------------
// Grouping by resource and scope.

/// The resource and scope of one row, with their schema URLs.
struct RowContext {
    resource: Option<Resource>,
    resource_url: String,
    scope: Option<InstrumentationScope>,
    scope_url: String,
}

/// The key of a resource or scope: its protobuf encoding (equal messages encode equally)
/// and its schema URL.
type GroupKey = (Option<Vec<u8>>, String);

struct ScopeGroup<R> {
    scope: Option<InstrumentationScope>,
    schema_url: String,
    records: R,
}

struct ResourceGroup<R> {
    resource: Option<Resource>,
    schema_url: String,
    scopes: Vec<ScopeGroup<R>>,
    index: HashMap<GroupKey, usize>,
}

/// The records of one request being gathered, grouped by resource, then scope.
struct Pending<R> {
    groups: Vec<ResourceGroup<R>>,
    index: HashMap<GroupKey, usize>,
    records: usize,
    bytes: usize,
}

impl<R> Default for Pending<R> {
    fn default() -> Self {
        Pending {
            groups: Vec::new(),
            index: HashMap::new(),
            records: 0,
            bytes: 0,
        }
    }
}

impl<R: Default> Pending<R> {
    /// The records of `ctx`'s resource and scope.
    fn slot(&mut self, ctx: RowContext) -> &mut R {
        let rkey = (
            ctx.resource.as_ref().map(|r| r.encode_to_vec()),
            ctx.resource_url,
        );
        let gi = match self.index.get(&rkey) {
            Some(&i) => i,
            None => {
                self.groups.push(ResourceGroup {
                    resource: ctx.resource,
                    schema_url: rkey.1.clone(),
                    scopes: Vec::new(),
                    index: HashMap::new(),
                });
                self.index.insert(rkey, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[gi];
        let skey = (ctx.scope.as_ref().map(|s| s.encode_to_vec()), ctx.scope_url);
        let si = match group.index.get(&skey) {
            Some(&i) => i,
            None => {
                group.scopes.push(ScopeGroup {
                    scope: ctx.scope,
                    schema_url: skey.1.clone(),
                    records: R::default(),
                });
                group.index.insert(skey, group.scopes.len() - 1);
                group.scopes.len() - 1
            }
        };
        &mut group.scopes[si].records
    }

    fn added(&mut self, bytes: usize) {
        self.records += 1;
        self.bytes += bytes;
    }

    fn full(&self, options: &ExportOptions) -> bool {
        self.records >= options.max_records || self.bytes >= options.max_bytes
    }

    fn take(&mut self) -> Vec<ResourceGroup<R>> {
        self.index.clear();
        self.records = 0;
        self.bytes = 0;
        std::mem::take(&mut self.groups)
    }
}

impl Pending<Vec<Span>> {
    fn take_traces(&mut self) -> Request {
        let resource_spans = self
            .take()
            .into_iter()
            .map(|g| ResourceSpans {
                resource: g.resource,
                schema_url: g.schema_url,
                scope_spans: g
                    .scopes
                    .into_iter()
                    .map(|s| ScopeSpans {
                        scope: s.scope,
                        schema_url: s.schema_url,
                        spans: s.records,
                    })
                    .collect(),
            })
            .collect();
        Request::Traces(ExportTraceServiceRequest { resource_spans })
    }
}

impl Pending<Vec<LogRecord>> {
    fn take_logs(&mut self) -> Request {
        let resource_logs = self
            .take()
            .into_iter()
            .map(|g| ResourceLogs {
                resource: g.resource,
                schema_url: g.schema_url,
                scope_logs: g
                    .scopes
                    .into_iter()
                    .map(|s| ScopeLogs {
                        scope: s.scope,
                        schema_url: s.schema_url,
                        log_records: s.records,
                    })
                    .collect(),
            })
            .collect();
        Request::Logs(ExportLogsServiceRequest { resource_logs })
    }
}

impl Pending<MetricGroup> {
    fn take_metrics(&mut self) -> Request {
        let resource_metrics = self
            .take()
            .into_iter()
            .map(|g| ResourceMetrics {
                resource: g.resource,
                schema_url: g.schema_url,
                scope_metrics: g
                    .scopes
                    .into_iter()
                    .map(|s| ScopeMetrics {
                        scope: s.scope,
                        schema_url: s.schema_url,
                        metrics: s.records.metrics,
                    })
                    .collect(),
            })
            .collect();
        Request::Metrics(ExportMetricsServiceRequest { resource_metrics })
    }
}

/// The metrics of one scope, points of the same metric gathered into one `Metric`.
#[derive(Default)]
struct MetricGroup {
    metrics: Vec<Metric>,
    /// The protobuf encoding of a metric without its points → its index.
    index: HashMap<Vec<u8>, usize>,
}

/// One data point with the metric it belongs to (whose `data` holds no points).
struct MetricPoint {
    metric: Metric,
    point: PointData,
}

enum PointData {
    Number(NumberDataPoint),
    Histogram(HistogramDataPoint),
    ExpHistogram(ExponentialHistogramDataPoint),
    Summary(SummaryDataPoint),
}

impl PointData {
    fn encoded_len(&self) -> usize {
        match self {
            PointData::Number(p) => p.encoded_len(),
            PointData::Histogram(p) => p.encoded_len(),
            PointData::ExpHistogram(p) => p.encoded_len(),
            PointData::Summary(p) => p.encoded_len(),
        }
    }
}

impl MetricGroup {
    fn push(&mut self, p: MetricPoint) {
        let key = p.metric.encode_to_vec();
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.metrics.push(p.metric);
                self.index.insert(key, self.metrics.len() - 1);
                self.metrics.len() - 1
            }
        };
        match (&mut self.metrics[i].data, p.point) {
            (Some(Data::Gauge(g)), PointData::Number(n)) => g.data_points.push(n),
            (Some(Data::Sum(s)), PointData::Number(n)) => s.data_points.push(n),
            (Some(Data::Histogram(h)), PointData::Histogram(p)) => h.data_points.push(p),
            (Some(Data::ExponentialHistogram(h)), PointData::ExpHistogram(p)) => {
                h.data_points.push(p)
            }
            (Some(Data::Summary(s)), PointData::Summary(p)) => s.data_points.push(p),
            // `metric_point` makes the shell from the same type it makes the point of.
            _ => unreachable!("a metric's point has the metric's type"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rows → OTLP records.

enum Rows {
    Spans(Vec<(RowContext, Span)>),
    Logs(Vec<(RowContext, LogRecord)>),
    Metrics(Vec<(RowContext, MetricPoint)>),
}

/// Every row of `batch` as an OTLP record with its resource and scope; the first row that
/// cannot be expressed fails the whole batch.
fn convert(signal: Signal, batch: &RecordBatch) -> Result<Rows> {
    let batch = crate::validate::normalize(signal, batch)?;
    let cols = Cols {
        signal,
        batch: &batch,
    };
    let n = batch.num_rows();
    Ok(match signal {
        Signal::Spans => Rows::Spans(
            (0..n)
                .map(|i| Ok((cols.context(i)?, cols.span(i)?)))
                .collect::<Result<_>>()?,
        ),
        Signal::Logs => Rows::Logs(
            (0..n)
                .map(|i| Ok((cols.context(i)?, cols.log(i)?)))
                .collect::<Result<_>>()?,
        ),
        Signal::Metrics => Rows::Metrics(
            (0..n)
                .map(|i| Ok((cols.context(i)?, cols.metric_point(i)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Typed access to the columns of a normalized batch (every column present, canonical
/// types, so the downcasts below hold).
struct Cols<'a> {
    signal: Signal,
    batch: &'a RecordBatch,
}

impl<'a> Cols<'a> {
    fn col(&self, name: &str) -> &'a ArrayRef {
        self.batch
            .column_by_name(name)
            .expect("a normalized batch has every column of its signal")
    }

    fn bad(&self, column: &str, row: usize, reason: impl Into<String>) -> Error {
        Error::invalid(self.signal, column, Some(row), reason)
    }

    fn ts(&self, name: &str, i: usize) -> Option<i64> {
        let a = self.col(name).as_primitive::<TimestampNanosecondType>();
        a.is_valid(i).then(|| a.value(i))
    }

    /// A timestamp as OTLP's unsigned nanoseconds; null is 0.
    fn time(&self, name: &str, i: usize) -> Result<u64> {
        unsigned_time(self.ts(name, i)).map_err(|reason| self.bad(name, i, reason))
    }

    fn u32(&self, name: &str, i: usize) -> Option<u32> {
        let a = self.col(name).as_primitive::<UInt32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn i32(&self, name: &str, i: usize) -> Option<i32> {
        let a = self.col(name).as_primitive::<Int32Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn i64(&self, name: &str, i: usize) -> Option<i64> {
        let a = self.col(name).as_primitive::<Int64Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn u64(&self, name: &str, i: usize) -> Option<u64> {
        let a = self.col(name).as_primitive::<UInt64Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn f64(&self, name: &str, i: usize) -> Option<f64> {
        let a = self.col(name).as_primitive::<Float64Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    fn bool(&self, name: &str, i: usize) -> Option<bool> {
        let a = self.col(name).as_boolean();
        a.is_valid(i).then(|| a.value(i))
    }

    fn str(&self, name: &str, i: usize) -> Option<&'a str> {
        string_at(self.col(name), i)
    }

    /// An id column's bytes; null is empty (OTLP's "no id").
    fn id(&self, name: &str, i: usize) -> Vec<u8> {
        id_at(self.col(name), i)
    }

    fn attrs(&self, name: &str, i: usize) -> Option<Vec<KeyValue>> {
        attrs_at(self.col(name), i)
    }

    fn u64_list(&self, name: &str, i: usize) -> Vec<u64> {
        let a = self.col(name).as_list::<i32>();
        if a.is_null(i) {
            return Vec::new();
        }
        let v = a.value(i);
        let v = v.as_primitive::<UInt64Type>();
        v.iter().map(|x| x.unwrap_or(0)).collect()
    }

    fn f64_list(&self, name: &str, i: usize) -> Vec<f64> {
        let a = self.col(name).as_list::<i32>();
        if a.is_null(i) {
            return Vec::new();
        }
        let v = a.value(i);
        let v = v.as_primitive::<Float64Type>();
        v.iter().map(|x| x.unwrap_or(0.0)).collect()
    }

    /// The items of a `List<Struct>` column at row `i` (none for a null list).
    fn items(&self, name: &str, i: usize) -> Option<StructArray> {
        let a = self.col(name).as_list::<i32>();
        if a.is_null(i) {
            return None;
        }
        Some(a.value(i).as_struct().clone())
    }

    /// The resource and scope of row `i`. The resource is present when its attributes or
    /// dropped count are (conversion writes both or neither); likewise the scope.
    fn context(&self, i: usize) -> Result<RowContext> {
        let res_attrs = self.attrs("resource_attributes", i);
        let res_dropped = self.u32("resource_dropped_attributes_count", i);
        let mut resource = (res_attrs.is_some() || res_dropped.is_some()).then(|| Resource {
            attributes: res_attrs.unwrap_or_default(),
            dropped_attributes_count: res_dropped.unwrap_or(0),
            ..Default::default()
        });
        let service = self.str("service_name", i).unwrap_or(UNKNOWN_SERVICE);
        if super::columns::service_name(resource.as_ref()) != service {
            let r = resource.get_or_insert_with(Resource::default);
            if r.attributes.iter().any(|kv| kv.key == "service.name") {
                return Err(self.bad(
                    "service_name",
                    i,
                    format!(
                        "`{service}` is not the service the row's resource attribute \
                         service.name names ({:?}), so OTLP cannot carry both",
                        super::columns::service_name(Some(r))
                    ),
                ));
            }
            r.attributes.push(string_kv("service.name", service));
            if super::columns::service_name(Some(r)) != service {
                return Err(self.bad(
                    "service_name",
                    i,
                    format!("`{service}` cannot be sent as an OTLP service.name"),
                ));
            }
        }
        let name = self.str("scope_name", i);
        let version = self.str("scope_version", i);
        let scope_attrs = self.attrs("scope_attributes", i);
        let scope_dropped = self.u32("scope_dropped_attributes_count", i);
        let has_scope =
            name.is_some() || version.is_some() || scope_attrs.is_some() || scope_dropped.is_some();
        let scope = has_scope.then(|| InstrumentationScope {
            name: name.unwrap_or_default().to_string(),
            version: version.unwrap_or_default().to_string(),
            attributes: scope_attrs.unwrap_or_default(),
            dropped_attributes_count: scope_dropped.unwrap_or(0),
        });
        Ok(RowContext {
            resource,
            resource_url: self
                .str("resource_schema_url", i)
                .unwrap_or_default()
                .into(),
            scope,
            scope_url: self.str("scope_schema_url", i).unwrap_or_default().into(),
        })
    }

    fn enum_index(&self, name: &str, i: usize, names: &[&str]) -> Result<i32> {
        let value = self.str(name, i).unwrap_or(names[0]);
        names
            .iter()
            .position(|n| *n == value)
            .map(|p| p as i32)
            .ok_or_else(|| {
                self.bad(
                    name,
                    i,
                    format!("`{value}` is not one of {}", names.join(", ")),
                )
            })
    }

    fn span(&self, i: usize) -> Result<Span> {
        let events = match self.items("events", i) {
            None => Vec::new(),
            Some(items) => (0..items.len())
                .map(|k| {
                    let time = items.column_by_name("time").and_then(|c| {
                        let c = c.as_primitive::<TimestampNanosecondType>();
                        c.is_valid(k).then(|| c.value(k))
                    });
                    Ok(Event {
                        time_unix_nano: unsigned_time(time)
                            .map_err(|r| self.bad("events", i, format!("time: {r}")))?,
                        name: field_str(&items, "name", k).unwrap_or_default().into(),
                        attributes: field_attrs(&items, "attributes", k).unwrap_or_default(),
                        dropped_attributes_count: field_u32(&items, "dropped_attributes_count", k)
                            .unwrap_or(0),
                    })
                })
                .collect::<Result<_>>()?,
        };
        let links = match self.items("links", i) {
            None => Vec::new(),
            Some(items) => (0..items.len())
                .map(|k| Link {
                    trace_id: field_id(&items, "trace_id", k),
                    span_id: field_id(&items, "span_id", k),
                    trace_state: field_str(&items, "trace_state", k)
                        .unwrap_or_default()
                        .into(),
                    attributes: field_attrs(&items, "attributes", k).unwrap_or_default(),
                    dropped_attributes_count: field_u32(&items, "dropped_attributes_count", k)
                        .unwrap_or(0),
                    flags: field_u32(&items, "flags", k).unwrap_or(0),
                })
                .collect(),
        };
        let code = self.enum_index("status_code", i, STATUS_CODES)?;
        let message = self.str("status_message", i).unwrap_or_default();
        Ok(Span {
            trace_id: self.id("trace_id", i),
            span_id: self.id("span_id", i),
            trace_state: self.str("trace_state", i).unwrap_or_default().into(),
            parent_span_id: self.id("parent_span_id", i),
            flags: self.u32("flags", i).unwrap_or(0),
            name: self.str("name", i).unwrap_or_default().into(),
            kind: self.enum_index("kind", i, SPAN_KINDS)?,
            start_time_unix_nano: self.time("time", i)?,
            end_time_unix_nano: self.time("end_time", i)?,
            attributes: self.attrs("attributes", i).unwrap_or_default(),
            dropped_attributes_count: self.u32("dropped_attributes_count", i).unwrap_or(0),
            events,
            dropped_events_count: self.u32("dropped_events_count", i).unwrap_or(0),
            links,
            dropped_links_count: self.u32("dropped_links_count", i).unwrap_or(0),
            status: (code != 0 || !message.is_empty()).then(|| Status {
                message: message.into(),
                code,
            }),
        })
    }

    fn log(&self, i: usize) -> Result<LogRecord> {
        let severity = self.i32("severity_number", i).unwrap_or(0);
        if !(0..=MAX_SEVERITY).contains(&severity) {
            return Err(self.bad(
                "severity_number",
                i,
                format!("{severity} is not an OTLP SeverityNumber (0..={MAX_SEVERITY})"),
            ));
        }
        Ok(LogRecord {
            time_unix_nano: self.time("time", i)?,
            observed_time_unix_nano: self.time("observed_time", i)?,
            severity_number: severity,
            severity_text: self.str("severity_text", i).unwrap_or_default().into(),
            body: self.str("body", i).map(string_value),
            attributes: self.attrs("attributes", i).unwrap_or_default(),
            dropped_attributes_count: self.u32("dropped_attributes_count", i).unwrap_or(0),
            flags: self.u32("flags", i).unwrap_or(0),
            trace_id: self.id("trace_id", i),
            span_id: self.id("span_id", i),
            event_name: self.str("event_name", i).unwrap_or_default().into(),
        })
    }

    fn exemplars(&self, i: usize) -> Result<Vec<Exemplar>> {
        let Some(items) = self.items("exemplars", i) else {
            return Ok(Vec::new());
        };
        (0..items.len())
            .map(|k| {
                let time = items.column_by_name("time").and_then(|c| {
                    let c = c.as_primitive::<TimestampNanosecondType>();
                    c.is_valid(k).then(|| c.value(k))
                });
                let double = items.column_by_name("value").and_then(|c| {
                    let c = c.as_primitive::<Float64Type>();
                    c.is_valid(k).then(|| c.value(k))
                });
                let int = items.column_by_name("value_int").and_then(|c| {
                    let c = c.as_primitive::<Int64Type>();
                    c.is_valid(k).then(|| c.value(k))
                });
                let value = match (double, int) {
                    (Some(d), None) => Some(exemplar::Value::AsDouble(d)),
                    (None, Some(n)) => Some(exemplar::Value::AsInt(n)),
                    (None, None) => None,
                    (Some(_), Some(_)) => {
                        return Err(self.bad(
                            "exemplars",
                            i,
                            format!("exemplar {k} has both value and value_int"),
                        ));
                    }
                };
                Ok(Exemplar {
                    filtered_attributes: field_attrs(&items, "filtered_attributes", k)
                        .unwrap_or_default(),
                    time_unix_nano: unsigned_time(time)
                        .map_err(|r| self.bad("exemplars", i, format!("exemplar {k} time: {r}")))?,
                    span_id: field_id(&items, "span_id", k),
                    trace_id: field_id(&items, "trace_id", k),
                    value,
                })
            })
            .collect()
    }

    fn metric_point(&self, i: usize) -> Result<MetricPoint> {
        let kind = self.enum_index("metric_type", i, METRIC_TYPES)?;
        let temporality = || self.enum_index("aggregation_temporality", i, TEMPORALITIES);
        let attributes = self.attrs("attributes", i).unwrap_or_default();
        let start_time_unix_nano = self.time("start_time", i)?;
        let time_unix_nano = self.time("time", i)?;
        let flags = self.u32("flags", i).unwrap_or(0);
        let exemplars = self.exemplars(i)?;
        let (data, point) = match kind {
            0 | 1 => {
                let value = match (self.f64("value", i), self.i64("value_int", i)) {
                    (Some(d), None) => number_data_point::Value::AsDouble(d),
                    (None, Some(n)) => number_data_point::Value::AsInt(n),
                    (None, None) => {
                        return Err(self.bad(
                            "value",
                            i,
                            "a gauge or sum point needs value or value_int; both are null",
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(self.bad(
                            "value",
                            i,
                            "a gauge or sum point has value or value_int, not both",
                        ));
                    }
                };
                let data = if kind == 0 {
                    Data::Gauge(Gauge::default())
                } else {
                    Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: temporality()?,
                        is_monotonic: self.bool("is_monotonic", i).unwrap_or(false),
                    })
                };
                let point = NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    exemplars,
                    flags,
                    value: Some(value),
                };
                (data, PointData::Number(point))
            }
            2 => (
                Data::Histogram(Histogram {
                    data_points: Vec::new(),
                    aggregation_temporality: temporality()?,
                }),
                PointData::Histogram(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    count: self.u64("count", i).unwrap_or(0),
                    sum: self.f64("sum", i),
                    bucket_counts: self.u64_list("bucket_counts", i),
                    explicit_bounds: self.f64_list("explicit_bounds", i),
                    exemplars,
                    flags,
                    min: self.f64("min", i),
                    max: self.f64("max", i),
                }),
            ),
            3 => (
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: Vec::new(),
                    aggregation_temporality: temporality()?,
                }),
                PointData::ExpHistogram(ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    count: self.u64("count", i).unwrap_or(0),
                    sum: self.f64("sum", i),
                    scale: self.i32("scale", i).unwrap_or(0),
                    zero_count: self.u64("zero_count", i).unwrap_or(0),
                    positive: Some(Buckets {
                        offset: self.i32("positive_offset", i).unwrap_or(0),
                        bucket_counts: self.u64_list("positive_bucket_counts", i),
                    }),
                    negative: Some(Buckets {
                        offset: self.i32("negative_offset", i).unwrap_or(0),
                        bucket_counts: self.u64_list("negative_bucket_counts", i),
                    }),
                    flags,
                    exemplars,
                    min: self.f64("min", i),
                    max: self.f64("max", i),
                    zero_threshold: self.f64("zero_threshold", i).unwrap_or(0.0),
                }),
            ),
            _ => {
                if !exemplars.is_empty() {
                    return Err(self.bad(
                        "exemplars",
                        i,
                        "a summary point has no exemplars in OTLP",
                    ));
                }
                let quantile_values = match self.items("quantile_values", i) {
                    None => Vec::new(),
                    Some(items) => (0..items.len())
                        .map(|k| ValueAtQuantile {
                            quantile: field_f64(&items, "quantile", k).unwrap_or(0.0),
                            value: field_f64(&items, "value", k).unwrap_or(0.0),
                        })
                        .collect(),
                };
                (
                    Data::Summary(Summary::default()),
                    PointData::Summary(SummaryDataPoint {
                        attributes,
                        start_time_unix_nano,
                        time_unix_nano,
                        count: self.u64("count", i).unwrap_or(0),
                        sum: self.f64("sum", i).unwrap_or(0.0),
                        quantile_values,
                        flags,
                    }),
                )
            }
        };
        Ok(MetricPoint {
            metric: Metric {
                name: self.str("name", i).unwrap_or_default().into(),
                description: self.str("description", i).unwrap_or_default().into(),
                unit: self.str("unit", i).unwrap_or_default().into(),
                metadata: self.attrs("metadata", i).unwrap_or_default(),
                data: Some(data),
            },
            point,
        })
    }
}

/// OTLP's unsigned nanoseconds for a stored timestamp; null is 0 (absent).
fn unsigned_time(t: Option<i64>) -> std::result::Result<u64, String> {
    match t {
        None => Ok(0),
        Some(t) => u64::try_from(t).map_err(|_| {
            format!("{t} ns is before 1970-01-01, which OTLP's unsigned times cannot hold")
        }),
    }
}

/// A `Utf8` or `Dictionary(Int32, Utf8)` value; `None` for null.
fn string_at(a: &ArrayRef, i: usize) -> Option<&str> {
    if a.is_null(i) {
        return None;
    }
    match a.data_type() {
        DataType::Dictionary(_, _) => {
            let d = a.as_dictionary::<Int32Type>();
            let values = d.values().as_string::<i32>();
            Some(values.value(d.keys().value(i) as usize))
        }
        _ => Some(a.as_string::<i32>().value(i)),
    }
}

fn id_at(a: &ArrayRef, i: usize) -> Vec<u8> {
    let a = a.as_fixed_size_binary();
    if a.is_null(i) {
        Vec::new()
    } else {
        a.value(i).to_vec()
    }
}

/// The attributes of a `Map<Utf8, Utf8>` value; `None` for a null map.
fn attrs_at(a: &ArrayRef, i: usize) -> Option<Vec<KeyValue>> {
    let m = a.as_map();
    if m.is_null(i) {
        return None;
    }
    let entries = m.value(i);
    let keys = entries.column(0).as_string::<i32>();
    let values = entries.column(1).as_string::<i32>();
    Some(
        (0..entries.len())
            .map(|k| KeyValue {
                key: keys.value(k).to_string(),
                value: values.is_valid(k).then(|| string_value(values.value(k))),
                ..Default::default()
            })
            .collect(),
    )
}

fn field_str<'s>(s: &'s StructArray, name: &str, k: usize) -> Option<&'s str> {
    s.column_by_name(name).and_then(|c| string_at(c, k))
}

fn field_u32(s: &StructArray, name: &str, k: usize) -> Option<u32> {
    let c = s.column_by_name(name)?.as_primitive::<UInt32Type>();
    c.is_valid(k).then(|| c.value(k))
}

fn field_f64(s: &StructArray, name: &str, k: usize) -> Option<f64> {
    let c = s.column_by_name(name)?.as_primitive::<Float64Type>();
    c.is_valid(k).then(|| c.value(k))
}

fn field_id(s: &StructArray, name: &str, k: usize) -> Vec<u8> {
    s.column_by_name(name)
        .map(|c| id_at(c, k))
        .unwrap_or_default()
}

fn field_attrs(s: &StructArray, name: &str, k: usize) -> Option<Vec<KeyValue>> {
    s.column_by_name(name).and_then(|c| attrs_at(c, k))
}

fn string_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(string_value(value)),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// OTLP/JSON.

/// `request` in OTLP/JSON on one line (no newline at the end): lowerCamelCase member
/// names, trace and span ids as lowercase hex, 64-bit integers (times, counts, `intValue`,
/// `asInt`) as decimal strings, enums as numbers, bytes as base64, non-finite doubles as
/// `"NaN"`/`"Infinity"`/`"-Infinity"`, and members holding their default value left out
/// (except where OTLP tells present from absent: a resource or scope with nothing in it is
/// `{}`, an empty string value is `{"stringValue":""}`). [`super::decode_json`] reads it
/// back into an equal request, but for non-finite doubles outside summary quantiles.
pub fn encode_json(request: &Request) -> String {
    let value = match request {
        Request::Traces(r) => json!({
            "resourceSpans": r.resource_spans.iter().map(|rs| {
                let mut m = resource_json(rs.resource.as_ref(), &rs.schema_url);
                m.insert("scopeSpans".into(), rs.scope_spans.iter().map(|ss| {
                    let mut s = scope_json(ss.scope.as_ref(), &ss.schema_url);
                    s.insert("spans".into(), ss.spans.iter().map(span_json).collect());
                    Value::Object(s)
                }).collect());
                Value::Object(m)
            }).collect::<Vec<_>>()
        }),
        Request::Logs(r) => json!({
            "resourceLogs": r.resource_logs.iter().map(|rl| {
                let mut m = resource_json(rl.resource.as_ref(), &rl.schema_url);
                m.insert("scopeLogs".into(), rl.scope_logs.iter().map(|sl| {
                    let mut s = scope_json(sl.scope.as_ref(), &sl.schema_url);
                    s.insert("logRecords".into(), sl.log_records.iter().map(log_json).collect());
                    Value::Object(s)
                }).collect());
                Value::Object(m)
            }).collect::<Vec<_>>()
        }),
        Request::Metrics(r) => json!({
            "resourceMetrics": r.resource_metrics.iter().map(|rm| {
                let mut m = resource_json(rm.resource.as_ref(), &rm.schema_url);
                m.insert("scopeMetrics".into(), rm.scope_metrics.iter().map(|sm| {
                    let mut s = scope_json(sm.scope.as_ref(), &sm.schema_url);
                    s.insert("metrics".into(), sm.metrics.iter().map(metric_json).collect());
                    Value::Object(s)
                }).collect());
                Value::Object(m)
            }).collect::<Vec<_>>()
        }),
    };
    value.to_string()
}

/// Members of one JSON object, each added only when it is not the default.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn str(mut self, k: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), v.into());
        }
        self
    }
    fn hex(mut self, k: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), hex(v).into());
        }
        self
    }
    fn u64(mut self, k: &str, v: u64) -> Self {
        if v != 0 {
            self.0.insert(k.into(), v.to_string().into());
        }
        self
    }
    fn u32(mut self, k: &str, v: u32) -> Self {
        if v != 0 {
            self.0.insert(k.into(), v.into());
        }
        self
    }
    fn i32(mut self, k: &str, v: i32) -> Self {
        if v != 0 {
            self.0.insert(k.into(), v.into());
        }
        self
    }
    fn f64(mut self, k: &str, v: f64) -> Self {
        if v != 0.0 || v.is_sign_negative() {
            self.0.insert(k.into(), double(v));
        }
        self
    }
    fn opt_f64(mut self, k: &str, v: Option<f64>) -> Self {
        if let Some(v) = v {
            self.0.insert(k.into(), double(v));
        }
        self
    }
    fn attrs(mut self, k: &str, v: &[KeyValue]) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), attrs_json(v));
        }
        self
    }
    fn list(mut self, k: &str, v: Vec<Value>) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), Value::Array(v));
        }
        self
    }
    fn val(mut self, k: &str, v: Value) -> Self {
        self.0.insert(k.into(), v);
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A double as the proto3 JSON mapping writes it: a number, or a string for non-finite.
fn double(v: f64) -> Value {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

fn any_json(v: &AnyValue) -> Value {
    use any_value::Value as V;
    let mut m = Map::new();
    match &v.value {
        None => {}
        Some(V::StringValue(s)) => {
            m.insert("stringValue".into(), s.as_str().into());
        }
        Some(V::BoolValue(b)) => {
            m.insert("boolValue".into(), (*b).into());
        }
        Some(V::IntValue(i)) => {
            m.insert("intValue".into(), i.to_string().into());
        }
        Some(V::DoubleValue(d)) => {
            m.insert("doubleValue".into(), double(*d));
        }
        Some(V::BytesValue(b)) => {
            let s = base64::engine::general_purpose::STANDARD.encode(b);
            m.insert("bytesValue".into(), s.into());
        }
        Some(V::ArrayValue(a)) => {
            let values: Vec<Value> = a.values.iter().map(any_json).collect();
            m.insert("arrayValue".into(), json!({ "values": values }));
        }
        Some(V::KvlistValue(kv)) => {
            m.insert(
                "kvlistValue".into(),
                json!({ "values": attrs_json(&kv.values) }),
            );
        }
        // Profiles only, meaningless in the other signals: written as an empty value.
        Some(V::StringValueStrindex(_)) => {}
    }
    Value::Object(m)
}

fn attrs_json(kvs: &[KeyValue]) -> Value {
    Value::Array(
        kvs.iter()
            .map(|kv| {
                let mut m = Map::new();
                m.insert("key".into(), kv.key.as_str().into());
                if let Some(v) = &kv.value {
                    m.insert("value".into(), any_json(v));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn resource_json(resource: Option<&Resource>, schema_url: &str) -> Map<String, Value> {
    let mut m = Obj::default().str("schemaUrl", schema_url);
    if let Some(r) = resource {
        let r = Obj::default()
            .attrs("attributes", &r.attributes)
            .u32("droppedAttributesCount", r.dropped_attributes_count)
            .done();
        m = m.val("resource", r);
    }
    m.0
}

fn scope_json(scope: Option<&InstrumentationScope>, schema_url: &str) -> Map<String, Value> {
    let mut m = Obj::default().str("schemaUrl", schema_url);
    if let Some(s) = scope {
        let s = Obj::default()
            .str("name", &s.name)
            .str("version", &s.version)
            .attrs("attributes", &s.attributes)
            .u32("droppedAttributesCount", s.dropped_attributes_count)
            .done();
        m = m.val("scope", s);
    }
    m.0
}

fn span_json(s: &Span) -> Value {
    let events = s
        .events
        .iter()
        .map(|e| {
            Obj::default()
                .u64("timeUnixNano", e.time_unix_nano)
                .str("name", &e.name)
                .attrs("attributes", &e.attributes)
                .u32("droppedAttributesCount", e.dropped_attributes_count)
                .done()
        })
        .collect();
    let links = s
        .links
        .iter()
        .map(|l| {
            Obj::default()
                .hex("traceId", &l.trace_id)
                .hex("spanId", &l.span_id)
                .str("traceState", &l.trace_state)
                .attrs("attributes", &l.attributes)
                .u32("droppedAttributesCount", l.dropped_attributes_count)
                .u32("flags", l.flags)
                .done()
        })
        .collect();
    let mut o = Obj::default()
        .hex("traceId", &s.trace_id)
        .hex("spanId", &s.span_id)
        .str("traceState", &s.trace_state)
        .hex("parentSpanId", &s.parent_span_id)
        .u32("flags", s.flags)
        .str("name", &s.name)
        .i32("kind", s.kind)
        .u64("startTimeUnixNano", s.start_time_unix_nano)
        .u64("endTimeUnixNano", s.end_time_unix_nano)
        .attrs("attributes", &s.attributes)
        .u32("droppedAttributesCount", s.dropped_attributes_count)
        .list("events", events)
        .u32("droppedEventsCount", s.dropped_events_count)
        .list("links", links)
        .u32("droppedLinksCount", s.dropped_links_count);
    if let Some(st) = &s.status {
        let st = Obj::default()
            .str("message", &st.message)
            .i32("code", st.code)
            .done();
        o = o.val("status", st);
    }
    o.done()
}

fn log_json(r: &LogRecord) -> Value {
    let mut o = Obj::default()
        .u64("timeUnixNano", r.time_unix_nano)
        .u64("observedTimeUnixNano", r.observed_time_unix_nano)
        .i32("severityNumber", r.severity_number)
        .str("severityText", &r.severity_text)
        .attrs("attributes", &r.attributes)
        .u32("droppedAttributesCount", r.dropped_attributes_count)
        .u32("flags", r.flags)
        .hex("traceId", &r.trace_id)
        .hex("spanId", &r.span_id)
        .str("eventName", &r.event_name);
    if let Some(body) = &r.body {
        o = o.val("body", any_json(body));
    }
    o.done()
}

fn exemplars_json(exemplars: &[Exemplar]) -> Vec<Value> {
    exemplars
        .iter()
        .map(|e| {
            let mut o = Obj::default()
                .attrs("filteredAttributes", &e.filtered_attributes)
                .u64("timeUnixNano", e.time_unix_nano)
                .hex("spanId", &e.span_id)
                .hex("traceId", &e.trace_id);
            match e.value {
                Some(exemplar::Value::AsDouble(d)) => o = o.val("asDouble", double(d)),
                Some(exemplar::Value::AsInt(n)) => o = o.val("asInt", n.to_string().into()),
                None => {}
            }
            o.done()
        })
        .collect()
}

fn u64s(v: &[u64]) -> Vec<Value> {
    v.iter().map(|n| n.to_string().into()).collect()
}

fn buckets_json(b: &Buckets) -> Value {
    Obj::default()
        .i32("offset", b.offset)
        .list("bucketCounts", u64s(&b.bucket_counts))
        .done()
}

fn metric_json(m: &Metric) -> Value {
    let point = |attributes: &[KeyValue], start: u64, time: u64, flags: u32| {
        Obj::default()
            .attrs("attributes", attributes)
            .u64("startTimeUnixNano", start)
            .u64("timeUnixNano", time)
            .u32("flags", flags)
    };
    let numbers = |points: &[NumberDataPoint]| -> Vec<Value> {
        points
            .iter()
            .map(|p| {
                let mut o = point(
                    &p.attributes,
                    p.start_time_unix_nano,
                    p.time_unix_nano,
                    p.flags,
                )
                .list("exemplars", exemplars_json(&p.exemplars));
                match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => o = o.val("asDouble", double(d)),
                    Some(number_data_point::Value::AsInt(n)) => {
                        o = o.val("asInt", n.to_string().into())
                    }
                    None => {}
                }
                o.done()
            })
            .collect()
    };
    let data = match &m.data {
        None => None,
        Some(Data::Gauge(g)) => Some((
            "gauge",
            Obj::default().list("dataPoints", numbers(&g.data_points)),
        )),
        Some(Data::Sum(s)) => {
            let mut o = Obj::default()
                .list("dataPoints", numbers(&s.data_points))
                .i32("aggregationTemporality", s.aggregation_temporality);
            if s.is_monotonic {
                o = o.val("isMonotonic", true.into());
            }
            Some(("sum", o))
        }
        Some(Data::Histogram(h)) => {
            let points = h
                .data_points
                .iter()
                .map(|p| {
                    point(
                        &p.attributes,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        p.flags,
                    )
                    .u64("count", p.count)
                    .opt_f64("sum", p.sum)
                    .list("bucketCounts", u64s(&p.bucket_counts))
                    .list(
                        "explicitBounds",
                        p.explicit_bounds.iter().map(|b| double(*b)).collect(),
                    )
                    .list("exemplars", exemplars_json(&p.exemplars))
                    .opt_f64("min", p.min)
                    .opt_f64("max", p.max)
                    .done()
                })
                .collect();
            Some((
                "histogram",
                Obj::default()
                    .list("dataPoints", points)
                    .i32("aggregationTemporality", h.aggregation_temporality),
            ))
        }
        Some(Data::ExponentialHistogram(h)) => {
            let points = h
                .data_points
                .iter()
                .map(|p| {
                    let mut o = point(
                        &p.attributes,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        p.flags,
                    )
                    .u64("count", p.count)
                    .opt_f64("sum", p.sum)
                    .i32("scale", p.scale)
                    .u64("zeroCount", p.zero_count)
                    .list("exemplars", exemplars_json(&p.exemplars))
                    .opt_f64("min", p.min)
                    .opt_f64("max", p.max)
                    .f64("zeroThreshold", p.zero_threshold);
                    if let Some(b) = &p.positive {
                        o = o.val("positive", buckets_json(b));
                    }
                    if let Some(b) = &p.negative {
                        o = o.val("negative", buckets_json(b));
                    }
                    o.done()
                })
                .collect();
            Some((
                "exponentialHistogram",
                Obj::default()
                    .list("dataPoints", points)
                    .i32("aggregationTemporality", h.aggregation_temporality),
            ))
        }
        Some(Data::Summary(s)) => {
            let points = s
                .data_points
                .iter()
                .map(|p| {
                    let quantiles = p
                        .quantile_values
                        .iter()
                        .map(|q| {
                            Obj::default()
                                .f64("quantile", q.quantile)
                                .f64("value", q.value)
                                .done()
                        })
                        .collect();
                    point(
                        &p.attributes,
                        p.start_time_unix_nano,
                        p.time_unix_nano,
                        p.flags,
                    )
                    .u64("count", p.count)
                    .f64("sum", p.sum)
                    .list("quantileValues", quantiles)
                    .done()
                })
                .collect();
            Some(("summary", Obj::default().list("dataPoints", points)))
        }
    };
    let mut o = Obj::default()
        .str("name", &m.name)
        .str("description", &m.description)
        .str("unit", &m.unit)
        .attrs("metadata", &m.metadata);
    if let Some((kind, body)) = data {
        o = o.val(kind, body.done());
    }
    o.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_follow_the_proto3_json_mapping() {
        assert_eq!(double(1.5), json!(1.5));
        assert_eq!(double(f64::NAN), json!("NaN"));
        assert_eq!(double(f64::INFINITY), json!("Infinity"));
        assert_eq!(double(f64::NEG_INFINITY), json!("-Infinity"));
    }

    #[test]
    fn doubles_read_back_bit_for_bit() {
        // Shortest round-trip text out, `float_roundtrip` parsing in: every finite double,
        // however its decimal form ends, comes back with the same bits.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![
            51.248_178_375_505_404,
            -0.0,
            5e-324,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            0.1 + 0.2,
        ];
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                values.push(v);
            }
            values.push((x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0);
        }
        for v in values {
            let text = double(v).to_string();
            let back: f64 = serde_json::from_str(&text).expect("a JSON number");
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} written as {text}");
        }
    }

    #[test]
    fn negative_times_cannot_be_expressed() {
        assert_eq!(unsigned_time(None), Ok(0));
        assert_eq!(unsigned_time(Some(5)), Ok(5));
        assert!(unsigned_time(Some(-1)).is_err());
    }

    #[test]
    fn any_values_in_json() {
        let v = AnyValue {
            value: Some(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::IntValue(-3)),
                        },
                        AnyValue { value: None },
                    ],
                },
            )),
        };
        assert_eq!(
            any_json(&v).to_string(),
            r#"{"arrayValue":{"values":[{"intValue":"-3"},{}]}}"#
        );
    }
}
