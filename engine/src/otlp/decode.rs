//! Decoding OTLP payloads: protobuf and OTLP/JSON, one request or a file of many; and the
//! two non-OTLP trace formats read as OTLP (Zipkin v2 JSON and Jaeger JSON, told by their
//! content, see [`decode_json`]).

use std::path::Path;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

use super::Request;
use crate::{Error, Result, Signal, schema};

/// How a file or stream of OTLP requests is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OTLP/JSON: one request, or several JSON documents one after another. A document may
    /// also be Zipkin v2 JSON (an array of spans) or Jaeger JSON (`{"data": [traces]}`),
    /// told by its content and converted to an OTLP trace request (see [`decode_json`]).
    Json,
    /// JSON lines, as the Collector's file exporter writes: one request per line (or one
    /// Zipkin or Jaeger JSON document per line); a bad line does not stop the lines after
    /// it.
    JsonLines,
    /// Binary protobuf: one request, or a sequence of requests each prefixed with its length
    /// as a 4-byte big-endian integer (the Collector file exporter's `proto` format).
    Protobuf,
}

impl Format {
    /// The format a file name says: `.json`, `.jsonl`/`.ndjson`, `.pb`/`.binpb`/`.proto`.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            "pb" | "binpb" | "protobuf" => Some(Format::Protobuf),
            _ => None,
        }
    }

    /// The format the content looks like: JSON if it starts with `{` or `[` (after
    /// whitespace; several lines that each start with `{` are JSON lines), protobuf
    /// otherwise. (No OTLP protobuf message starts with `[`, a group start of field 11.)
    pub fn sniff(bytes: &[u8]) -> Format {
        let text = bytes.trim_ascii_start();
        if text.starts_with(b"[") {
            return Format::Json;
        }
        if !text.starts_with(b"{") {
            return Format::Protobuf;
        }
        let lines = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty());
        let mut count = 0;
        for line in lines {
            count += 1;
            let line = line.trim_ascii();
            if !(line.starts_with(b"{") && line.ends_with(b"}")) {
                return Format::Json;
            }
        }
        if count > 1 {
            Format::JsonLines
        } else {
            Format::Json
        }
    }
}

/// OTLP/JSON enum fields: field name, value names (the index is the number).
const ENUMS: &[(&str, &str, &[&str])] = &[
    ("kind", "SPAN_KIND_", schema::SPAN_KINDS),
    ("code", "STATUS_CODE_", schema::STATUS_CODES),
    ("severityNumber", "SEVERITY_NUMBER_", SEVERITY_NUMBERS),
    (
        "aggregationTemporality",
        "AGGREGATION_TEMPORALITY_",
        schema::TEMPORALITIES,
    ),
];

/// `SeverityNumber` names without `SEVERITY_NUMBER_`, by number.
const SEVERITY_NUMBERS: &[&str] = &[
    "UNSPECIFIED",
    "TRACE",
    "TRACE2",
    "TRACE3",
    "TRACE4",
    "DEBUG",
    "DEBUG2",
    "DEBUG3",
    "DEBUG4",
    "INFO",
    "INFO2",
    "INFO3",
    "INFO4",
    "WARN",
    "WARN2",
    "WARN3",
    "WARN4",
    "ERROR",
    "ERROR2",
    "ERROR3",
    "ERROR4",
    "FATAL",
    "FATAL2",
    "FATAL3",
    "FATAL4",
];

/// Replaces enum names (`"SPAN_KIND_SERVER"`, or `"SERVER"`) by their numbers, which is
/// what the generated serde mapping reads. Only object members that are OTLP enum fields
/// have these names; attribute keys are values of `"key"` members, never member names.
fn normalize_enums(v: &mut Value, path: &mut String) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                if let Value::String(name) = value
                    && let Some((field, prefix, names)) =
                        ENUMS.iter().find(|(field, _, _)| field == key)
                {
                    let short = name.strip_prefix(prefix).unwrap_or(name);
                    match names.iter().position(|n| *n == short) {
                        Some(n) => *value = Value::from(n),
                        None => {
                            return Err(format!(
                                "{path}: {name:?} is not a known {field} (want a number or \
                                 {prefix}{})",
                                names.join(&format!(" / {prefix}"))
                            ));
                        }
                    }
                } else {
                    normalize_enums(value, path)?;
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                normalize_enums(item, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidOtlp {
        reason: reason.into(),
    }
}

/// Decodes one OTLP/JSON request (`{"resourceSpans": ...}`, `{"resourceLogs": ...}` or
/// `{"resourceMetrics": ...}`), telling the signal from its top-level member.
///
/// Two other trace formats are told by their content and converted to an OTLP trace
/// request the way the OpenTelemetry Collector's receivers convert them (the mapping is in
/// `docs/schema.md`):
/// - Zipkin v2 JSON: a top-level array that is empty or has an object with `traceId` and
///   `id` (the body of a POST to Zipkin's `/api/v2/spans`);
/// - Jaeger JSON: an object with no OTLP member whose `data` is an array that is empty or
///   holds an object with `spans` (the Jaeger UI's "export JSON", the query API's answer).
///
/// A span of those that cannot be read is rejected at conversion with its position in the
/// input (`zipkin span [3].timestamp: ...`, `jaeger data[0].spans[5].references[0]: ...`)
/// and the others are kept.
///
/// Follows the OTLP/JSON encoding: lowerCamelCase member names, trace and span ids as hex
/// (either case), 64-bit integers as strings or numbers, enums as numbers or names, bytes
/// as base64, unknown members ignored. Errors name the member path
/// (`resourceSpans[0].scopeSpans[0].spans[2].traceId`) or the line and column.
///
/// A member of the wrong type inside one span, log record or metric data point (a number
/// where an id string belongs, a bare `NaN`/`Infinity` token, which JSON does not have)
/// does not fail the request: that record is rejected at conversion with its position and
/// the reason (OTLP partial success), and the others are kept. Such damage elsewhere (in a
/// resource, a scope, a metric's own members) fails the request.
pub fn decode_json(bytes: &[u8]) -> Result<Request> {
    let value: Value = parse_json(bytes).map_err(|e| invalid(e.to_string()))?;
    decode_json_value(value)
}

/// Decodes one OTLP/JSON request (or Zipkin or Jaeger JSON, see [`decode_json`]) already
/// parsed into a JSON value.
pub(super) fn decode_json_value(mut value: Value) -> Result<Request> {
    match &value {
        Value::Array(items) if super::zipkin::is_zipkin(items) => {
            if super::zipkin::is_v1(items) {
                return Err(invalid(format!(
                    "the input looks like Zipkin v1 JSON (binaryAnnotations, endpoints in \
                     annotations), which ScryDB does not read: send Zipkin v2 JSON (Zipkin's \
                     /api/v2/spans format). {ACCEPTED}"
                )));
            }
            return Ok(Request::Traces(super::zipkin::convert(items)));
        }
        Value::Object(map)
            if !OTLP_MEMBERS.iter().any(|k| map.contains_key(*k))
                && super::jaeger::is_jaeger(map) =>
        {
            let data = map.get("data").and_then(Value::as_array);
            return Ok(Request::Traces(super::jaeger::convert(
                data.map_or(&[], Vec::as_slice),
            )));
        }
        _ => {}
    }
    let Value::Object(map) = &value else {
        let what = match &value {
            Value::Array(_) => not_otlp(&serde_json::to_vec(&value).unwrap_or_default()),
            _ => None,
        };
        return Err(invalid(what.unwrap_or_else(|| {
            format!("a request must be a JSON object. {ACCEPTED}")
        })));
    };
    let found: Vec<Signal> = [
        ("resourceSpans", Signal::Spans),
        ("resourceLogs", Signal::Logs),
        ("resourceMetrics", Signal::Metrics),
    ]
    .into_iter()
    .filter(|(k, _)| map.contains_key(*k))
    .map(|(_, s)| s)
    .collect();
    let signal = match found[..] {
        [s] => s,
        [] if map.is_empty() => Signal::Spans,
        [] => return Err(invalid(not_otlp_object(map))),
        _ => {
            return Err(invalid(
                "a request holds exactly one of resourceSpans, resourceLogs, resourceMetrics",
            ));
        }
    };
    normalize_enums(&mut value, &mut String::new()).map_err(invalid)?;
    fn typed<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, String> {
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            describe(format!("{path}: {}", e.into_inner()))
        })
    }
    fn request(signal: Signal, value: &Value) -> Result<Request, String> {
        Ok(match signal {
            Signal::Spans => Request::Traces(typed(value)?),
            Signal::Logs => Request::Logs(typed(value)?),
            Signal::Metrics => Request::Metrics(typed(value)?),
        })
    }
    match request(signal, &value) {
        Ok(r) => Ok(r),
        // A value of the wrong type inside a record: that record is marked as rejected (it
        // keeps its place, so its position is reported right) and the others are kept.
        Err(whole) => {
            if isolate_bad_records(signal, &mut value) > 0
                && let Ok(r) = request(signal, &value)
            {
                return Ok(r);
            }
            Err(invalid(whole))
        }
    }
}

/// The top-level members of OTLP/JSON requests.
const OTLP_MEMBERS: [&str; 3] = ["resourceSpans", "resourceLogs", "resourceMetrics"];

/// The records of a request, as JSON member paths: (path to the arrays holding records,
/// whether each element is a record). Metrics are isolated per data point.
fn record_slots(signal: Signal, value: &mut Value) -> Vec<&mut Value> {
    fn each<'a>(v: &'a mut Value, key: &str) -> Vec<&'a mut Value> {
        match v.get_mut(key) {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            _ => Vec::new(),
        }
    }
    let (outer, middle, inner) = match signal {
        Signal::Spans => ("resourceSpans", "scopeSpans", "spans"),
        Signal::Logs => ("resourceLogs", "scopeLogs", "logRecords"),
        Signal::Metrics => ("resourceMetrics", "scopeMetrics", "metrics"),
    };
    let mut out = Vec::new();
    for r in each(value, outer) {
        for s in each(r, middle) {
            for rec in each(s, inner) {
                if signal != Signal::Metrics {
                    out.push(rec);
                    continue;
                }
                if let Value::Object(metric) = rec {
                    for (kind, data) in metric.iter_mut() {
                        if matches!(
                            kind.as_str(),
                            "gauge" | "sum" | "histogram" | "exponentialHistogram" | "summary"
                        ) {
                            for p in each(data, "dataPoints") {
                                out.push(p);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Replaces each record (span, log record, metric data point) that does not decode on its
/// own by a marker record holding only the reason (see [`super::DECODE_ERROR_KEY`]);
/// returns how many were replaced.
fn isolate_bad_records(signal: Signal, value: &mut Value) -> usize {
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
    };
    use opentelemetry_proto::tonic::trace::v1::Span;
    fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Option<String> {
        serde_path_to_error::deserialize::<_, T>(v).err().map(|e| {
            let path = e.path().to_string();
            describe(format!("{path}: {}", e.into_inner()))
        })
    }
    let mut replaced = 0;
    for rec in record_slots(signal, value) {
        let reason = match signal {
            Signal::Spans => check::<Span>(rec),
            Signal::Logs => check::<LogRecord>(rec),
            // Any of the point types it decodes as will do: the request's own decode
            // tells which one it must be.
            Signal::Metrics => [
                check::<NumberDataPoint>(rec),
                check::<HistogramDataPoint>(rec),
                check::<ExponentialHistogramDataPoint>(rec),
                check::<SummaryDataPoint>(rec),
            ]
            .into_iter()
            .collect::<Option<Vec<String>>>()
            .and_then(|v| v.into_iter().next()),
        };
        if let Some(reason) = reason {
            *rec = serde_json::json!({"attributes": [{
                "key": super::DECODE_ERROR_KEY,
                "value": {"stringValue": format!("does not decode: {reason}")}
            }]});
            replaced += 1;
        }
    }
    replaced
}

/// Placeholder for a bare `NaN`, `Infinity` or `-Infinity` token (which JSON does not have)
/// in the text handed to the JSON parser; see [`parse_json`].
const BARE_TOKEN: &str = "\u{0}bare non-finite number token";

/// A decode error message, with the placeholder of a bare token explained.
fn describe(reason: String) -> String {
    if reason.contains("bare non-finite number token") {
        let at = reason.split(": ").next().unwrap_or_default();
        format!(
            "{at}: a bare NaN or Infinity token, which JSON does not have (OTLP/JSON writes \
             non-finite numbers as the strings \"NaN\", \"Infinity\", \"-Infinity\")"
        )
    } else {
        reason
    }
}

/// Parses JSON text; text that fails only because of bare `NaN`/`Infinity`/`-Infinity`
/// tokens (which some encoders write for non-finite doubles) parses with each such token
/// replaced by a placeholder string, so that only the records holding one are rejected.
pub(super) fn parse_json(bytes: &[u8]) -> serde_json::Result<Value> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(e) => match replace_bare_tokens(bytes) {
            Some(fixed) => serde_json::from_slice(&fixed).map_err(|_| e),
            None => Err(e),
        },
    }
}

/// `bytes` with every bare `NaN`, `Infinity` and `-Infinity` outside strings replaced by
/// the placeholder string; `None` if there is none.
fn replace_bare_tokens(bytes: &[u8]) -> Option<Vec<u8>> {
    let placeholder = format!("\"{}\"", BARE_TOKEN.replace('\u{0}', "\\u0000"));
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            out.push(b);
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        let rest = &bytes[i..];
        if let Some(token) = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.extend_from_slice(placeholder.as_bytes());
            i += token.len();
            found = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    found.then_some(out)
}

/// Decodes one protobuf request. The three request messages share their outer shape, so
/// the signal is `hint` when given, else told from the content: the one message type that
/// decodes and whose records look right (spans with 16- and 8-byte ids, metrics with data,
/// log records).
pub fn decode_protobuf(bytes: &[u8], hint: Option<Signal>) -> Result<Request> {
    // Bytes no OTLP protobuf message starts with (wire type 7; a group) that other
    // formats do: say what they are rather than what fails to decode.
    if (bytes.first() == Some(&b'[') || bytes.starts_with(&[0x1f, 0x8b]))
        && let Some(what) = not_otlp(bytes)
    {
        return Err(invalid(what));
    }
    let err = |signal: Signal, e: prost::DecodeError| {
        invalid(
            not_otlp(bytes)
                .unwrap_or_else(|| format!("not a protobuf {signal} request: {e} ({ACCEPTED})")),
        )
    };
    match hint {
        Some(Signal::Spans) => {
            return ExportTraceServiceRequest::decode(bytes)
                .map(Request::Traces)
                .map_err(|e| err(Signal::Spans, e));
        }
        Some(Signal::Logs) => {
            return ExportLogsServiceRequest::decode(bytes)
                .map(Request::Logs)
                .map_err(|e| err(Signal::Logs, e));
        }
        Some(Signal::Metrics) => {
            return ExportMetricsServiceRequest::decode(bytes)
                .map(Request::Metrics)
                .map_err(|e| err(Signal::Metrics, e));
        }
        None => {}
    }
    let traces = ExportTraceServiceRequest::decode(bytes);
    let metrics = ExportMetricsServiceRequest::decode(bytes);
    let logs = ExportLogsServiceRequest::decode(bytes);
    let traces_err = traces.as_ref().err().cloned();
    let metrics_err = metrics.as_ref().err().cloned();
    let logs_err = logs.as_ref().err().cloned();
    let mut candidates: Vec<Request> = Vec::new();
    if let Ok(t) = &traces {
        let spans: Vec<_> = t
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        if !spans.is_empty()
            && spans
                .iter()
                .all(|s| s.trace_id.len() == 16 && s.span_id.len() == 8)
        {
            return Ok(Request::Traces(traces.expect("checked")));
        }
    }
    if let Ok(m) = &metrics {
        let all: Vec<_> = m
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .collect();
        if !all.is_empty() && all.iter().all(|m| m.data.is_some() && !m.name.is_empty()) {
            return Ok(Request::Metrics(metrics.expect("checked")));
        }
    }
    if let Ok(l) = logs {
        let req = Request::Logs(l);
        if req.records() > 0 {
            return Ok(req);
        }
        candidates.push(req);
    }
    if let Ok(t) = traces {
        candidates.push(Request::Traces(t));
    }
    if let Ok(m) = metrics {
        candidates.push(Request::Metrics(m));
    }
    // Decodes, but as nothing recognizable: an empty request stores nothing whatever its
    // signal; anything else is ambiguous.
    if let Some(empty) = candidates.iter().find(|c| c.records() == 0) {
        return Ok(empty.clone());
    }
    if let Some(what) = not_otlp(bytes) {
        return Err(invalid(what));
    }
    if candidates.is_empty() {
        // Nothing decodes: each reading's error names the message and field it failed in
        // (prost names every one on the way) and why; the deepest first.
        let mut errors: Vec<(Signal, String)> = [
            (Signal::Spans, traces_err),
            (Signal::Logs, logs_err),
            (Signal::Metrics, metrics_err),
        ]
        .into_iter()
        .filter_map(|(s, e)| {
            let e = e?.to_string();
            let e = e
                .strip_prefix("failed to decode Protobuf message: ")
                .unwrap_or(&e)
                .replace(
                    "buffer underflow",
                    "truncated: the input ends inside this field (buffer underflow)",
                );
            Some((s, e))
        })
        .collect();
        errors.sort_by_key(|(_, e)| std::cmp::Reverse(e.matches(": ").count()));
        let readings: Vec<String> = errors.iter().map(|(s, e)| format!("as {s}: {e}")).collect();
        return Err(invalid(format!(
            "not a protobuf OTLP request of any signal ({}). {ACCEPTED}",
            readings.join("; ")
        )));
    }
    Err(invalid(
        "not a protobuf OTLP request: it decodes as no ExportTraceServiceRequest, \
         ExportLogsServiceRequest or ExportMetricsServiceRequest with valid records",
    ))
}

/// What ScryDB reads, for messages about input it does not.
pub(super) const ACCEPTED: &str = "ScryDB reads OTLP: protobuf (one request, or requests each \
    prefixed with a 4-byte big-endian length), OTLP/JSON (one request object, or several \
    one after another) and JSON lines (one request per line); and, converted to OTLP, \
    Zipkin v2 JSON (an array of spans with traceId and id) and Jaeger JSON (an object whose \
    \"data\" array holds traces with \"spans\")";

/// What `bytes` look like when they are a known format that is not OTLP (or OTLP in a
/// wrapper ScryDB does not open), as a message saying so and what is accepted.
pub(super) fn not_otlp(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Some(format!(
            "the input is gzip-compressed: decompress it first (`gunzip`, `zcat file | scry \
             ingest -`). {ACCEPTED}"
        ));
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(format!(
            "the input is zstd-compressed: decompress it first (`zstd -d`). {ACCEPTED}"
        ));
    }
    let text = bytes.trim_ascii_start();
    let head = &text[..text.len().min(64 * 1024)];
    let has = |needle: &str| head.windows(needle.len()).any(|w| w == needle.as_bytes());
    if text.starts_with(b"[") {
        if has("\"resourceSpans\"") || has("\"resourceLogs\"") || has("\"resourceMetrics\"") {
            return Some(format!(
                "the input is a JSON array of OTLP requests: write one request per line \
                 instead (`jq -c '.[]' file > file.jsonl`). {ACCEPTED}"
            ));
        }
        if has("\"localEndpoint\"")
            || has("\"remoteEndpoint\"")
            || (has("\"traceId\"") && has("\"timestamp\""))
        {
            return Some(format!(
                "the input looks like Zipkin JSON, which is read as JSON (not as protobuf) \
                 when its spans have both traceId and id; no span in it has both. {ACCEPTED}"
            ));
        }
        return Some(format!(
            "the input is a JSON array: a request must be a JSON object. {ACCEPTED}"
        ));
    }
    None
}

/// A message for a JSON object that is not an OTLP request: what it looks like, if known.
fn not_otlp_object(map: &serde_json::Map<String, Value>) -> String {
    let jaeger_errors = map
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty());
    if map.contains_key("data")
        && let Some(errors) = jaeger_errors
    {
        let text = serde_json::to_string(errors).unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        format!("a Jaeger query API answer with no traces; its errors: {text}. {ACCEPTED}")
    } else if map
        .get("data")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|t| t.get("traceID").is_some()))
    {
        format!(
            "the input looks like Jaeger JSON, but no trace in \"data\" has \"spans\". \
             {ACCEPTED}"
        )
    } else {
        format!(
            "no resourceSpans, resourceLogs or resourceMetrics member: not an OTLP request. \
             {ACCEPTED}"
        )
    }
}

/// Splits the content of a file (or stdin) into requests. Each item is the 1-based
/// position of the request — the line for JSON formats, the message number for protobuf —
/// and the request or the error that stopped it. A bad JSON line or protobuf message does
/// not stop the ones after it; in [`Format::Json`] a document with a syntax error is
/// skipped, and one whose brackets do not match ends the stream.
///
/// This collects [`super::ingest::Requests`], which reads the same incrementally.
pub fn split_requests(
    bytes: &[u8],
    format: Format,
    hint: Option<Signal>,
) -> Vec<(usize, Result<Request>)> {
    super::ingest::Requests::new(bytes, format, hint, "<memory>")
        // Reading a byte slice cannot fail; an error would be the last item anyway.
        .map(|item| item.unwrap_or_else(|e| (0, Err(e))))
        .collect()
}

// Helpers shared by the Zipkin and Jaeger readers (`zipkin.rs`, `jaeger.rs`).

/// A span standing for one that could not be read: [`super::DECODE_ERROR_KEY`] marks it, so
/// the converter rejects it at its place (counted as rejected, with `reason`) and keeps the
/// others, as for an OTLP/JSON record of the wrong type.
pub(super) fn rejected_span(reason: String) -> opentelemetry_proto::tonic::trace::v1::Span {
    opentelemetry_proto::tonic::trace::v1::Span {
        attributes: vec![kv(super::DECODE_ERROR_KEY, any_str(reason))],
        ..Default::default()
    }
}

/// An id written as hex of at most `N * 2` digits (either case), left-padded with zeros:
/// how zipkin-go's `TraceIDFromHex`/`ID.UnmarshalJSON` and Jaeger's `TraceIDFromString`/
/// `SpanIDFromString` read them (a 64-bit Zipkin or Jaeger trace id becomes a 128-bit one
/// whose high half is zero).
pub(super) fn hex_id<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.is_empty() || text.len() > N * 2 {
        return Err(format!(
            "{text:?} is not an id of 1 to {} hex digits",
            N * 2
        ));
    }
    let mut out = [0u8; N];
    let digits = text.as_bytes();
    // Right-aligned: the last digit is the low nibble of the last byte.
    for (i, d) in digits.iter().rev().enumerate() {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(format!("{text:?} is not hex")),
        };
        out[N - 1 - i / 2] |= if i % 2 == 0 { v } else { v << 4 };
    }
    Ok(out)
}

/// A JSON member holding a count of microseconds (Zipkin and Jaeger times and durations),
/// in nanoseconds. Absent or `null` is `None`; a negative, fractional or too large number
/// (or any other type) is an error.
pub(super) fn micros(v: Option<&Value>) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let us = n.as_u64().ok_or_else(|| {
                format!("{n} is not a whole, non-negative number of microseconds")
            })?;
            us.checked_mul(1000)
                .map(Some)
                .ok_or_else(|| format!("{us} microseconds is too large"))
        }
        Some(other) => Err(format!(
            "expected a number of microseconds, found {}",
            json_type(other)
        )),
    }
}

/// An optional string member: absent or `null` is `None`.
pub(super) fn opt_str(v: Option<&Value>) -> Result<Option<&str>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("expected a string, found {}", json_type(other))),
    }
}

/// An optional array member: absent or `null` is empty.
pub(super) fn opt_array(v: Option<&Value>) -> Result<&[Value], String> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!("expected an array, found {}", json_type(other))),
    }
}

/// What a JSON value is, for messages.
pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn kv(
    key: &str,
    value: opentelemetry_proto::tonic::common::v1::any_value::Value,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: key.to_string(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub(super) fn any_str(
    s: impl Into<String>,
) -> opentelemetry_proto::tonic::common::v1::any_value::Value {
    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s.into())
}

/// Attributes with the semantics of the Collector's `pcommon.Map`: putting a key that is
/// there replaces its value in place; insertion order is kept otherwise.
#[derive(Default)]
pub(super) struct AttrMap {
    items: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    index: std::collections::HashMap<String, usize>,
}

impl AttrMap {
    pub(super) fn put(
        &mut self,
        key: &str,
        value: opentelemetry_proto::tonic::common::v1::any_value::Value,
    ) {
        match self.index.get(key) {
            Some(&i) => self.items[i] = kv(key, value),
            None => {
                self.index.insert(key.to_string(), self.items.len());
                self.items.push(kv(key, value));
            }
        }
    }

    pub(super) fn get(
        &self,
        key: &str,
    ) -> Option<&opentelemetry_proto::tonic::common::v1::any_value::Value> {
        let i = *self.index.get(key)?;
        self.items[i].value.as_ref()?.value.as_ref()
    }

    /// The string value of `key` as the Collector's `Value.Str()` gives it: the string, or
    /// empty for a value of another type.
    pub(super) fn get_str(&self, key: &str) -> Option<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        self.get(key).map(|v| match v {
            V::StringValue(s) => s.clone(),
            _ => String::new(),
        })
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub(super) fn remove(&mut self, key: &str) {
        if let Some(i) = self.index.remove(key) {
            self.items.remove(i);
            for v in self.index.values_mut() {
                if *v > i {
                    *v -= 1;
                }
            }
        }
    }

    pub(super) fn into_vec(self) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
        self.items
    }
}
