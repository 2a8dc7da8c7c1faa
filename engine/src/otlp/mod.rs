//! OTLP in: `Export{Trace,Logs,Metrics}ServiceRequest`s, from protobuf or OTLP/JSON, into the
//! Arrow batches of the `spans`, `logs` and `metrics` tables.
//!
//! Conversion is column-wise: every record is checked, then its fields are appended straight
//! into the column builders of one batch per request. A record that fails a check (an id of
//! the wrong width, an unknown enum value, a timestamp that does not fit; in OTLP/JSON, a
//! member of the wrong type or a bare `NaN` inside a span, log record or data point) is left out and
//! counted as rejected, with a message naming its position
//! (`resource_spans[0].scope_spans[1].spans[7]`); the valid records of the request are kept.
//! This is OTLP's partial success. A payload that does not decode at all is an
//! [`Error::InvalidOtlp`](crate::Error::InvalidOtlp) and nothing of it is kept.
//!
//! How each OTLP field maps to a column is in `docs/schema.md`; the string form of
//! `AnyValue`s (attributes, log bodies) is in [`value`].
//!
//! ```
//! use scrydb_engine::otlp::{self, Request};
//! let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
//!     "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
//!     "name":"GET /","kind":"SPAN_KIND_SERVER",
//!     "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000}]}]}]}"#;
//! let request = otlp::decode_json(json)?;
//! let converted = request.convert();
//! assert_eq!((converted.batch.num_rows(), converted.rejected), (1, 0));
//! # Ok::<(), scrydb_engine::Error>(())
//! ```

pub mod columns;
mod decode;
pub mod export;
pub mod ingest;
mod jaeger;
mod logs;
mod metrics;
mod traces;
pub mod value;
mod zipkin;

use std::fmt;

use arrow::array::RecordBatch;
pub use decode::{Format, decode_json, decode_protobuf, split_requests};
pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::Signal;

/// One OTLP export request of any signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `ExportTraceServiceRequest`.
    Traces(ExportTraceServiceRequest),
    /// `ExportLogsServiceRequest`.
    Logs(ExportLogsServiceRequest),
    /// `ExportMetricsServiceRequest`.
    Metrics(ExportMetricsServiceRequest),
}

impl Request {
    /// The table the request's records go to.
    pub fn signal(&self) -> Signal {
        match self {
            Request::Traces(_) => Signal::Spans,
            Request::Logs(_) => Signal::Logs,
            Request::Metrics(_) => Signal::Metrics,
        }
    }

    /// Records in the request: spans, log records or metric data points.
    pub fn records(&self) -> usize {
        match self {
            Request::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
            Request::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
            Request::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(metrics::point_count)
                .sum(),
        }
    }

    /// Converts the request into one batch of its signal's canonical schema, leaving out
    /// (and counting) invalid records.
    pub fn convert(&self) -> Converted {
        match self {
            Request::Traces(r) => traces::convert(r),
            Request::Logs(r) => logs::convert(r),
            Request::Metrics(r) => metrics::convert(r),
        }
    }
}

/// An invalid record of a request, left out of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Where the record is in the request, as a field path with indexes:
    /// `resource_spans[0].scope_spans[1].spans[7]`.
    pub location: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

/// The most [`RecordError`]s kept per request; further ones are only counted.
pub const MAX_ERRORS: usize = 100;

/// The result of converting one request.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The table.
    pub signal: Signal,
    /// The valid records, in request order, in the signal's canonical schema (possibly with
    /// no rows).
    pub batch: RecordBatch,
    /// Records left out (spans, log records or data points).
    pub rejected: u64,
    /// Why, for the first [`MAX_ERRORS`] rejected records.
    pub errors: Vec<RecordError>,
}

impl Converted {
    /// A one-line message for OTLP's `PartialSuccess.error_message`: the first errors and how
    /// many there were. Empty when nothing was rejected.
    pub fn error_message(&self) -> String {
        if self.rejected == 0 {
            return String::new();
        }
        let shown: Vec<String> = self.errors.iter().take(3).map(|e| e.to_string()).collect();
        let more = self.rejected.saturating_sub(shown.len() as u64);
        let mut msg = format!(
            "{} {} rejected: {}",
            self.rejected,
            self.signal.record_noun(),
            shown.join("; ")
        );
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        msg
    }
}

/// Collects rejections while a converter runs.
#[derive(Default)]
struct Rejections {
    count: u64,
    errors: Vec<RecordError>,
}

impl Rejections {
    fn reject(&mut self, location: impl FnOnce() -> String, reason: String) {
        self.count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(RecordError {
                location: location(),
                reason,
            });
        }
    }
}

/// The attribute key that marks a record OTLP/JSON decoding could not read (a value of the
/// wrong type, a bare `NaN`): [`decode::decode_json`] puts a record holding only this
/// attribute, whose value is the reason, in the bad record's place, so the converters
/// reject it at its own position while the other records of the request are kept. The key
/// starts with a NUL byte, which no real attribute key has.
pub(crate) const DECODE_ERROR_KEY: &str = "\u{0}scrydb.decode_error";

/// `Err(reason)` if `attributes` is the marker of a record that did not decode.
fn decode_error(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Result<(), String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match attributes {
        [kv] if kv.key == DECODE_ERROR_KEY => {
            Err(match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(reason)) => reason.clone(),
                _ => "the record does not decode".into(),
            })
        }
        _ => Ok(()),
    }
}

/// Whether an optional id is present: not empty and not all zeroes (some SDKs send zeroes
/// for "no parent" or "no trace"; both forms are stored as null).
fn id_present(id: &[u8]) -> bool {
    id.iter().any(|b| *b != 0)
}

/// Checks an id field: `width` bytes, not all zero; `optional` ids may also be empty or
/// all zero (absent).
fn check_id(field: &str, id: &[u8], width: usize, optional: bool) -> Result<(), String> {
    if optional && !id_present(id) {
        return Ok(());
    }
    if id.len() != width {
        return Err(format!(
            "{field} is {} bytes, not {width}{}",
            id.len(),
            if optional { " (or empty)" } else { "" }
        ));
    }
    if id.iter().all(|b| *b == 0) {
        return Err(format!(
            "{field} is all zeroes, which OTLP defines as invalid"
        ));
    }
    Ok(())
}

/// Checks an enum value against its range.
fn check_enum(field: &str, value: i32, names: &[&str]) -> Result<(), String> {
    if (0..names.len() as i32).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field} {value} is not a known value (0..={})",
            names.len() - 1
        ))
    }
}

/// A `fixed64` nanosecond timestamp as `i64`.
fn check_time(field: &str, t: u64) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{field} {t} is after the year 2262"))
}

/// What [`crate::Db::ingest_otlp`] stored: OTLP's partial success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The table written.
    pub signal: Signal,
    /// Records stored.
    pub accepted: u64,
    /// Records left out as invalid.
    pub rejected: u64,
    /// Why, for the first [`MAX_ERRORS`] rejected records.
    pub errors: Vec<RecordError>,
}

impl crate::Db {
    /// Converts an OTLP request and appends its valid records as one atomic batch. Invalid
    /// records are left out and reported in the result (OTLP partial success); an error is
    /// returned only when the append itself fails, and then nothing of the request is
    /// stored.
    pub fn ingest_otlp(&self, request: &Request) -> crate::Result<Ingested> {
        let converted = request.convert();
        self.append(converted.signal, &converted.batch)?;
        Ok(Ingested {
            signal: converted.signal,
            accepted: converted.batch.num_rows() as u64,
            rejected: converted.rejected,
            errors: converted.errors,
        })
    }
}
