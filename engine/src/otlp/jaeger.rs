//! Jaeger JSON (the Jaeger UI's "export JSON" and the query API's answer:
//! `{"data":[{"traceID":..,"spans":[..],"processes":{..}}]}`, the JSON model of Jaeger's
//! `model/json`) into an OTLP `ExportTraceServiceRequest`, mapped as the OpenTelemetry
//! Collector maps Jaeger spans: `pkg/translator/jaeger/jaegerproto_to_traces.go` of
//! opentelemetry-collector-contrib. The table of the mapping and where ScryDB departs from it
//! are in `docs/schema.md` ("Zipkin and Jaeger JSON").
//!
//! A span that cannot be read (an id that is not hex, a tag whose value does not fit its
//! type, a reference of an unknown type, a `processID` with no process) is rejected with its
//! position (`jaeger data[0].spans[5].references[0].spanID: ...`) and the others are kept.

use std::collections::HashMap;

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Map, Value};

use super::decode::{
    AttrMap, any_str, hex_id, json_type, micros, opt_array, opt_str, rejected_span,
};

/// A process with this service name gives a resource with no attributes
/// (`tracetranslator.ResourceNoServiceName`).
const NO_SERVICE: &str = "OTLPResourceNoServiceName";

/// Whether a top-level JSON object is Jaeger JSON: a `data` array that is empty or holds an
/// object with `spans`.
pub(super) fn is_jaeger(map: &Map<String, Value>) -> bool {
    // A query API answer carrying errors (`{"data":[],"errors":[...]}`) is not a trace
    // file: it is refused with its errors (`not_otlp_object`), not read as no spans.
    if map
        .get("errors")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty())
    {
        return false;
    }
    match map.get("data") {
        Some(Value::Array(traces)) => {
            traces.is_empty() || traces.iter().any(|t| t.get("spans").is_some())
        }
        _ => false,
    }
}

/// A position and a reason.
type Failure = (String, String);

/// The request under construction: resources in order of first appearance (the Collector
/// groups spans by a hash of their process), each with its scopes in order of first
/// appearance.
#[derive(Default)]
struct Out {
    resources: Vec<ResourceSpans>,
    by_resource: HashMap<Vec<u8>, usize>,
    by_scope: Vec<HashMap<(String, String), usize>>,
    bad: Vec<Span>,
}

impl Out {
    fn push(&mut self, resource: Resource, scope: (String, String), span: Span) {
        let key = resource.encode_to_vec();
        let r = *self.by_resource.entry(key).or_insert_with(|| {
            self.resources.push(ResourceSpans {
                resource: Some(resource),
                ..Default::default()
            });
            self.by_scope.push(HashMap::new());
            self.resources.len() - 1
        });
        let rs = &mut self.resources[r];
        let s = *self.by_scope[r].entry(scope.clone()).or_insert_with(|| {
            rs.scope_spans.push(ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.0,
                    version: scope.1,
                    ..Default::default()
                }),
                ..Default::default()
            });
            rs.scope_spans.len() - 1
        });
        rs.scope_spans[s].spans.push(span);
    }

    fn reject(&mut self, (at, reason): Failure) {
        self.bad
            .push(rejected_span(format!("jaeger {at}: {reason}")));
    }
}

/// Converts the traces of Jaeger JSON's `data` into one request. Spans that cannot be read
/// come last, in a resource of their own, as markers the converter rejects; so does a trace
/// that is not an object or whose `spans` is not an array (one marker for it).
pub(super) fn convert(data: &[Value]) -> ExportTraceServiceRequest {
    let mut out = Out::default();
    for (t, trace) in data.iter().enumerate() {
        let at = format!("data[{t}]");
        let Value::Object(trace) = trace else {
            out.reject((
                at,
                format!("expected a trace object, found {}", json_type(trace)),
            ));
            continue;
        };
        let spans = match opt_array(trace.get("spans")) {
            Ok(s) => s,
            Err(e) => {
                out.reject((format!("{at}.spans"), e));
                continue;
            }
        };
        let trace_id = match opt_str(trace.get("traceID")) {
            Ok(Some(id)) => hex_id::<16>(id).ok(),
            _ => None,
        };
        let processes = trace.get("processes");
        let mut resources: HashMap<&str, Result<Resource, Failure>> = HashMap::new();
        for (s, span) in spans.iter().enumerate() {
            let at = format!("{at}.spans[{s}]");
            match read_span(span, &at, trace_id, processes, &mut resources) {
                Ok((resource, scope, span)) => out.push(resource, scope, span),
                Err(failure) => out.reject(failure),
            }
        }
    }
    let mut resource_spans = out.resources;
    if !out.bad.is_empty() {
        resource_spans.push(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: out.bad,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest { resource_spans }
}

/// The resource of a span: its own `process`, or the trace's `processes[processID]`, or
/// none (an empty resource, as the Collector gives a span without a process).
fn span_resource<'a>(
    span: &'a Map<String, Value>,
    at: &str,
    processes: Option<&'a Value>,
    cache: &mut HashMap<&'a str, Result<Resource, Failure>>,
) -> Result<Resource, Failure> {
    if let Some(p) = span.get("process").filter(|p| !p.is_null()) {
        return process(p, &format!("{at}.process"));
    }
    let Some(id) = opt_str(span.get("processID")).map_err(|e| (format!("{at}.processID"), e))?
    else {
        return Ok(Resource::default());
    };
    let found = match processes {
        Some(Value::Object(p)) => p.get(id),
        _ => None,
    };
    let Some(p) = found else {
        return Err((
            format!("{at}.processID"),
            format!("{id:?} is not in the trace's processes"),
        ));
    };
    cache
        .entry(id)
        .or_insert_with(|| {
            // The position of a bad process is where it is defined.
            let trace_at = at.rsplit_once(".spans[").map_or(at, |(t, _)| t);
            process(p, &format!("{trace_at}.processes.{id}"))
        })
        .clone()
}

/// `jProcessToInternalResource`: `service.name`, the process tags, `hostname` as
/// `host.name` and `jaeger.version` as `opencensus.exporterversion`.
fn process(v: &Value, at: &str) -> Result<Resource, Failure> {
    let Value::Object(m) = v else {
        return Err((
            at.to_string(),
            format!("expected a process object, found {}", json_type(v)),
        ));
    };
    let service = opt_str(m.get("serviceName"))
        .map_err(|e| (format!("{at}.serviceName"), e))?
        .unwrap_or_default();
    let tags = m.get("tags").filter(|t| !t.is_null());
    let mut attrs = AttrMap::default();
    if service == NO_SERVICE || (service.is_empty() && tags.is_none()) {
        return Ok(Resource::default());
    }
    if !service.is_empty() {
        attrs.put("service.name", any_str(service));
    }
    read_tags(tags, &format!("{at}.tags"), &mut attrs)?;
    if attrs.contains("hostname") && !attrs.contains("host.name") {
        let host = attrs.get("hostname").cloned().expect("checked");
        attrs.put("host.name", host);
        attrs.remove("hostname");
    }
    if attrs.contains("jaeger.version") && !attrs.contains("opencensus.exporterversion") {
        let version = attrs.get_str("jaeger.version").unwrap_or_default();
        attrs.put(
            "opencensus.exporterversion",
            any_str(format!("Jaeger-{version}")),
        );
        attrs.remove("jaeger.version");
    }
    Ok(Resource {
        attributes: attrs.into_vec(),
        ..Default::default()
    })
}

/// Reads a list of Jaeger key-values (`tags`, a log's `fields`) into `attrs`.
fn read_tags(v: Option<&Value>, at: &str, attrs: &mut AttrMap) -> Result<(), Failure> {
    for (i, kv) in opt_array(v)
        .map_err(|e| (at.to_string(), e))?
        .iter()
        .enumerate()
    {
        let (key, value) = tag(kv).map_err(|(f, e)| (format!("{at}[{i}]{f}"), e))?;
        attrs.put(key, value);
    }
    Ok(())
}

/// One `{"key", "type", "value"}` as `jTagsToInternalAttributes` maps it: string, bool,
/// int64, float64 and binary (base64 in JSON, as Go writes `[]byte`) to the same OTLP type.
/// Without a type, or with one Jaeger does not define, the value is read by its JSON type
/// (the Collector writes `<Unknown Jaeger TagType ...>` for the latter).
fn tag(v: &Value) -> Result<(&str, Any), Failure> {
    let Value::Object(m) = v else {
        return Err((
            String::new(),
            format!("expected a key-value object, found {}", json_type(v)),
        ));
    };
    let key = opt_str(m.get("key"))
        .map_err(|e| (".key".to_string(), e))?
        .ok_or_else(|| (".key".to_string(), "missing".to_string()))?;
    let ty = opt_str(m.get("type")).map_err(|e| (".type".to_string(), e))?;
    let value = m.get("value").unwrap_or(&Value::Null);
    let bad = |want: &str| {
        (
            ".value".to_string(),
            format!(
                "expected {want} for type {:?}, found {}",
                ty.unwrap_or_default(),
                json_type(value)
            ),
        )
    };
    let any = match (ty.map(str::to_ascii_lowercase).as_deref(), value) {
        (Some("string"), Value::String(s)) => any_str(s.as_str()),
        (Some("string"), _) => return Err(bad("a string")),
        (Some("bool"), Value::Bool(b)) => Any::BoolValue(*b),
        (Some("bool"), _) => return Err(bad("a boolean")),
        (Some("int64"), Value::Number(n)) => {
            Any::IntValue(n.as_i64().ok_or_else(|| bad("a 64-bit integer"))?)
        }
        (Some("int64"), Value::String(s)) => {
            Any::IntValue(s.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        (Some("int64"), _) => return Err(bad("a 64-bit integer")),
        (Some("float64"), Value::Number(n)) => {
            Any::DoubleValue(n.as_f64().ok_or_else(|| bad("a number"))?)
        }
        (Some("float64"), Value::String(s)) => Any::DoubleValue(match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => s.parse().map_err(|_| bad("a number"))?,
        }),
        (Some("float64"), _) => return Err(bad("a number")),
        (Some("binary"), Value::String(s)) => Any::BytesValue(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad("base64"))?,
        ),
        (Some("binary"), _) => return Err(bad("a base64 string")),
        (_, Value::String(s)) => any_str(s.as_str()),
        (_, Value::Bool(b)) => Any::BoolValue(*b),
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => Any::IntValue(i),
            None => Any::DoubleValue(n.as_f64().ok_or_else(|| bad("a number"))?),
        },
        (_, _) => return Err(bad("a string, boolean or number")),
    };
    Ok((key, any))
}

/// A span reference.
struct Ref {
    child_of: bool,
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

/// Reads one span: its resource, scope (name, version) and OTLP span.
fn read_span<'a>(
    v: &'a Value,
    at: &str,
    trace_id: Option<[u8; 16]>,
    processes: Option<&'a Value>,
    cache: &mut HashMap<&'a str, Result<Resource, Failure>>,
) -> Result<(Resource, (String, String), Span), Failure> {
    let Value::Object(m) = v else {
        return Err((
            at.to_string(),
            format!("expected a span object, found {}", json_type(v)),
        ));
    };
    let field = |f: &str| format!("{at}.{f}");
    let trace_id = match opt_str(m.get("traceID")).map_err(|e| (field("traceID"), e))? {
        Some(id) => hex_id::<16>(id).map_err(|e| (field("traceID"), e))?,
        None => trace_id.ok_or_else(|| (field("traceID"), "missing".to_string()))?,
    };
    let span_id = match opt_str(m.get("spanID")).map_err(|e| (field("spanID"), e))? {
        Some(id) => hex_id::<8>(id).map_err(|e| (field("spanID"), e))?,
        None => return Err((field("spanID"), "missing".to_string())),
    };
    let name = opt_str(m.get("operationName"))
        .map_err(|e| (field("operationName"), e))?
        .unwrap_or_default()
        .to_string();
    let flags = match m.get("flags") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => {
            n.as_u64()
                .and_then(|f| u32::try_from(f).ok())
                .ok_or_else(|| {
                    (
                        field("flags"),
                        format!("{n} is not a 32-bit unsigned integer"),
                    )
                })?
        }
        Some(other) => {
            return Err((
                field("flags"),
                format!("expected a number, found {}", json_type(other)),
            ));
        }
    };
    let start = micros(m.get("startTime"))
        .map_err(|e| (field("startTime"), e))?
        .unwrap_or(0);
    let duration = micros(m.get("duration"))
        .map_err(|e| (field("duration"), e))?
        .unwrap_or(0);
    let end = start
        .checked_add(duration)
        .filter(|end| *end <= i64::MAX as u64)
        .ok_or_else(|| {
            (
                field("duration"),
                "the span ends after the year 2262".to_string(),
            )
        })?;

    let mut refs = Vec::new();
    for (i, r) in opt_array(m.get("references"))
        .map_err(|e| (field("references"), e))?
        .iter()
        .enumerate()
    {
        let at = field(&format!("references[{i}]"));
        let Value::Object(r) = r else {
            return Err((at, format!("expected an object, found {}", json_type(r))));
        };
        let child_of = match opt_str(r.get("refType")).map_err(|e| (format!("{at}.refType"), e))? {
            Some(t) if t.eq_ignore_ascii_case("CHILD_OF") => true,
            Some(t) if t.eq_ignore_ascii_case("FOLLOWS_FROM") => false,
            Some(t) => {
                return Err((
                    format!("{at}.refType"),
                    format!("{t:?} is not CHILD_OF or FOLLOWS_FROM"),
                ));
            }
            None => return Err((format!("{at}.refType"), "missing".to_string())),
        };
        let ref_trace = match opt_str(r.get("traceID")).map_err(|e| (format!("{at}.traceID"), e))? {
            Some(id) => hex_id::<16>(id).map_err(|e| (format!("{at}.traceID"), e))?,
            None => trace_id,
        };
        let ref_span = match opt_str(r.get("spanID")).map_err(|e| (format!("{at}.spanID"), e))? {
            Some(id) => hex_id::<8>(id).map_err(|e| (format!("{at}.spanID"), e))?,
            None => return Err((format!("{at}.spanID"), "missing".to_string())),
        };
        refs.push(Ref {
            child_of,
            trace_id: ref_trace,
            span_id: ref_span,
        });
    }
    // Jaeger's `Span.ParentSpanID`: the first CHILD_OF reference in the same trace, else
    // the first FOLLOWS_FROM one. The deprecated `parentSpanID` member counts when there
    // are no references.
    let mut parent = refs
        .iter()
        .find(|r| r.child_of && r.trace_id == trace_id)
        .or_else(|| refs.iter().find(|r| !r.child_of && r.trace_id == trace_id))
        .map(|r| r.span_id);
    if refs.is_empty()
        && let Some(p) = opt_str(m.get("parentSpanID")).map_err(|e| (field("parentSpanID"), e))?
        && !p.is_empty()
    {
        parent = Some(hex_id::<8>(p).map_err(|e| (field("parentSpanID"), e))?);
    }
    let parent = parent.filter(|p| *p != [0; 8]);
    // `jReferencesToSpanLinks`: every reference but the CHILD_OF one to the parent.
    let exclude = parent.unwrap_or([0; 8]);
    let links = refs
        .iter()
        .filter(|r| !(r.child_of && r.span_id == exclude))
        .map(|r| Link {
            trace_id: r.trace_id.to_vec(),
            span_id: r.span_id.to_vec(),
            attributes: vec![super::decode::kv(
                "opentracing.ref_type",
                any_str(if r.child_of {
                    "child_of"
                } else {
                    "follows_from"
                }),
            )],
            ..Default::default()
        })
        .collect();

    // `getScope`: the first `otel.scope.name` tag (and then `otel.scope.version`) names the
    // scope and is not an attribute.
    let tags = opt_array(m.get("tags")).map_err(|e| (field("tags"), e))?;
    let find = |key: &str| {
        tags.iter()
            .position(|t| t.get("key").and_then(Value::as_str) == Some(key))
    };
    let str_value = |i: usize| {
        tags[i]
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (scope, skip) = match find("otel.scope.name") {
        Some(n) => match find("otel.scope.version") {
            Some(v) => ((str_value(n), str_value(v)), [Some(n), Some(v)]),
            None => ((str_value(n), String::new()), [Some(n), None]),
        },
        None => (Default::default(), [None, None]),
    };
    let mut attrs = AttrMap::default();
    for (i, kv) in tags.iter().enumerate() {
        if skip.contains(&Some(i)) {
            continue;
        }
        let (key, value) = tag(kv).map_err(|(f, e)| (format!("{}[{i}]{f}", field("tags")), e))?;
        attrs.put(key, value);
    }
    let kind = match attrs.get_str("span.kind") {
        Some(k) => {
            attrs.remove("span.kind");
            match k.as_str() {
                "client" => SpanKind::Client,
                "server" => SpanKind::Server,
                "producer" => SpanKind::Producer,
                "consumer" => SpanKind::Consumer,
                "internal" => SpanKind::Internal,
                _ => SpanKind::Unspecified,
            }
        }
        None => SpanKind::Unspecified,
    };
    let status = status(&mut attrs, kind);
    let trace_state = attrs.get_str("w3c.tracestate").unwrap_or_default();
    attrs.remove("w3c.tracestate");

    let mut events = Vec::new();
    for (i, log) in opt_array(m.get("logs"))
        .map_err(|e| (field("logs"), e))?
        .iter()
        .enumerate()
    {
        let at = field(&format!("logs[{i}]"));
        let Value::Object(log) = log else {
            return Err((at, format!("expected an object, found {}", json_type(log))));
        };
        let time = micros(log.get("timestamp"))
            .map_err(|e| (format!("{at}.timestamp"), e))?
            .unwrap_or(0);
        let mut fields = AttrMap::default();
        read_tags(log.get("fields"), &format!("{at}.fields"), &mut fields)?;
        let name = fields.get_str("event").unwrap_or_default();
        fields.remove("event");
        events.push(Event {
            time_unix_nano: time,
            name,
            attributes: fields.into_vec(),
            ..Default::default()
        });
    }

    let resource = span_resource(m, at, processes, cache)?;
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        trace_state,
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        // The sampled bit: Jaeger's flag 0x1 is W3C's sampled trace flag.
        flags: flags & 1,
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attrs.into_vec(),
        events,
        links,
        status,
        ..Default::default()
    };
    Ok((resource, scope, span))
}

/// `setInternalSpanStatus`: an `error` tag that is the boolean `true` wins (message from
/// `otel.status_description` or `http.status_message`); else `otel.status_code` (`OK`,
/// `ERROR`, any case); else `http.status_code` (4xx is an error for clients, unset for
/// servers; outside 100..399 an error).
fn status(attrs: &mut AttrMap, kind: SpanKind) -> Option<Status> {
    let (mut code, mut message, mut exists) = (0, String::new(), false);
    if let Some(Any::BoolValue(true)) = attrs.get("error") {
        (code, exists) = (2, true);
        attrs.remove("error");
        if let Some(desc) = attrs.get_str("otel.status_description") {
            message = desc;
            attrs.remove("otel.status_description");
        } else if let Some(m) = attrs.get_str("http.status_message") {
            message = m;
        }
    }
    if attrs.contains("otel.status_code") {
        if !exists {
            exists = true;
            match attrs
                .get_str("otel.status_code")
                .unwrap_or_default()
                .to_ascii_uppercase()
                .as_str()
            {
                "OK" => code = 1,
                "ERROR" => code = 2,
                _ => {}
            }
            if let Some(desc) = attrs.get_str("otel.status_description") {
                message = desc;
                attrs.remove("otel.status_description");
            }
        }
        attrs.remove("otel.status_code");
    } else if !exists && let Some(v) = attrs.get("http.status_code") {
        let http = match v {
            Any::IntValue(i) => Some(*i),
            Any::StringValue(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        if let Some(http) = http {
            let c = match (http, kind) {
                (400..=499, SpanKind::Client) => 2,
                (400..=499, SpanKind::Server) => 0,
                (100..=398, _) => 0,
                _ => 2,
            };
            if c != 0 {
                (code, exists) = (c, true);
            }
            if let Some(m) = attrs.get_str("http.status_message") {
                message = m;
            }
        }
    }
    exists.then_some(Status { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_str(json: &str) -> ExportTraceServiceRequest {
        let v: Value = serde_json::from_str(json).expect("json");
        convert(v["data"].as_array().expect("data"))
    }

    #[test]
    fn detection() {
        let obj = |s: &str| -> Map<String, Value> { serde_json::from_str(s).expect("object") };
        assert!(is_jaeger(&obj(r#"{"data":[]}"#)));
        assert!(is_jaeger(&obj(r#"{"data":[{"traceID":"1","spans":[]}]}"#)));
        assert!(!is_jaeger(&obj(r#"{"data":[{"traceID":"1"}]}"#)));
        assert!(!is_jaeger(&obj(r#"{"data":{"spans":[]}}"#)));
        assert!(!is_jaeger(&obj(r#"{"resourceSpans":[]}"#)));
    }

    #[test]
    fn bad_spans_are_positioned_markers_and_the_others_are_kept() {
        let req = convert_str(
            r#"{"data":[{"traceID":"1","processes":{"p1":{"serviceName":"a"},
                "p2":{"serviceName":"b","tags":[{"key":"n","type":"int64","value":"x"}]}},
              "spans":[
                {"spanID":"2","operationName":"ok","processID":"p1","startTime":1,"duration":1},
                {"spanID":"3","processID":"p9"},
                {"spanID":"4","references":[{"refType":"SIBLING_OF","spanID":"2"}]},
                {"spanID":"5","tags":[{"key":"n","type":"bool","value":"yes"}]},
                {"spanID":"6","processID":"p2"},
                {"spanID":"7","logs":[{"timestamp":1.5}]}
              ]}, 7]}"#,
        );
        let c = super::super::Request::Traces(req).convert();
        assert_eq!((c.batch.num_rows(), c.rejected), (1, 6));
        let reasons: Vec<&str> = c.errors.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "jaeger data[0].spans[1].processID: \"p9\" is not in the trace's processes",
                "jaeger data[0].spans[2].references[0].refType: \"SIBLING_OF\" is not CHILD_OF or FOLLOWS_FROM",
                "jaeger data[0].spans[3].tags[0].value: expected a boolean for type \"bool\", found a string",
                "jaeger data[0].processes.p2.tags[0].value: expected a 64-bit integer for type \"int64\", found a string",
                "jaeger data[0].spans[5].logs[0].timestamp: 1.5 is not a whole, non-negative number of microseconds",
                "jaeger data[1]: expected a trace object, found a number",
            ]
        );
    }

    #[test]
    fn parent_links_status_and_scope_follow_the_collector() {
        let req = convert_str(
            r#"{"data":[{"traceID":"00000000000000000000000000000001","processes":{},
              "spans":[{"spanID":"2","flags":3,
                "references":[{"refType":"FOLLOWS_FROM","spanID":"9"},
                              {"refType":"CHILD_OF","traceID":"1","spanID":"3"},
                              {"refType":"CHILD_OF","traceID":"ff","spanID":"4"}],
                "tags":[{"key":"otel.scope.name","type":"string","value":"lib"},
                        {"key":"otel.scope.version","type":"string","value":"1.2"},
                        {"key":"span.kind","type":"string","value":"client"},
                        {"key":"http.status_code","type":"int64","value":404},
                        {"key":"w3c.tracestate","type":"string","value":"k=v"}]}]}]}"#,
        );
        let rs = &req.resource_spans[0];
        let scope = rs.scope_spans[0].scope.as_ref().expect("scope");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("lib", "1.2")
        );
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(span.parent_span_id, [0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(span.flags, 1);
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(span.trace_state, "k=v");
        // The FOLLOWS_FROM and the CHILD_OF in another trace are links.
        assert_eq!(span.links.len(), 2);
        assert_eq!(span.links[1].trace_id[15], 0xff);
        let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["http.status_code"]);
    }
}
