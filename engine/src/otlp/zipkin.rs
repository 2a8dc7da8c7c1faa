//! Zipkin v2 JSON (the array of spans POSTed to `/api/v2/spans`) into an OTLP
//! `ExportTraceServiceRequest`, mapped as the OpenTelemetry Collector's zipkin receiver maps
//! it: `pkg/translator/zipkin/zipkinv2/to_translator.go` of opentelemetry-collector-contrib,
//! reading the JSON as `github.com/openzipkin/zipkin-go/model` does. The table of the mapping
//! and where ScryDB departs from it are in `docs/schema.md` ("Zipkin and Jaeger JSON").
//!
//! A span that cannot be read (an id that is not hex, a timestamp that is not a number, an
//! endpoint with a bad address) is rejected with its position (`zipkin span [3].timestamp:
//! ...`) and the others are kept, where the Collector fails the whole request.

use std::collections::BTreeMap;
use std::net::IpAddr;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;

use super::decode::{
    AttrMap, any_str, hex_id, json_type, micros, opt_array, opt_str, rejected_span,
};

/// The service name the Collector groups spans without a local service name under
/// (`tracetranslator.ResourceNoServiceName`); their resource gets no attributes.
const NO_SERVICE: &str = "OTLPResourceNoServiceName";

/// Tag naming the resource attribute that holds the local service name instead of
/// `service.name` (`zipkin.TagServiceNameSource`).
const SERVICE_NAME_SOURCE: &str = "otlp.service.name.source";

/// Set (to `true`) on a span that had no timestamp (`zipkin.StartTimeAbsent`).
const START_TIME_ABSENT: &str = "otel.zipkin.absentField.startTime";

/// Tags that become resource attributes (taken from the first span of each service) and
/// never span attributes: the resource semantic conventions of semconv v1.6.1
/// (`GetResourceSemanticConventionAttributeNames`), as the translator's `nonSpanAttributes`.
const RESOURCE_KEYS: &[&str] = &[
    "cloud.provider",
    "cloud.account.id",
    "cloud.region",
    "cloud.availability_zone",
    "cloud.platform",
    "aws.ecs.container.arn",
    "aws.ecs.cluster.arn",
    "aws.ecs.launchtype",
    "aws.ecs.task.arn",
    "aws.ecs.task.family",
    "aws.ecs.task.revision",
    "aws.eks.cluster.arn",
    "aws.log.group.names",
    "aws.log.group.arns",
    "aws.log.stream.names",
    "aws.log.stream.arns",
    "container.name",
    "container.id",
    "container.runtime",
    "container.image.name",
    "container.image.tag",
    "deployment.environment",
    "device.id",
    "device.model.identifier",
    "device.model.name",
    "faas.name",
    "faas.id",
    "faas.version",
    "faas.instance",
    "faas.max_memory",
    "host.id",
    "host.name",
    "host.type",
    "host.arch",
    "host.image.name",
    "host.image.id",
    "host.image.version",
    "k8s.cluster.name",
    "k8s.node.name",
    "k8s.node.uid",
    "k8s.namespace.name",
    "k8s.pod.uid",
    "k8s.pod.name",
    "k8s.container.name",
    "k8s.replicaset.uid",
    "k8s.replicaset.name",
    "k8s.deployment.uid",
    "k8s.deployment.name",
    "k8s.statefulset.uid",
    "k8s.statefulset.name",
    "k8s.daemonset.uid",
    "k8s.daemonset.name",
    "k8s.job.uid",
    "k8s.job.name",
    "k8s.cronjob.uid",
    "k8s.cronjob.name",
    "os.type",
    "os.description",
    "os.name",
    "os.version",
    "process.pid",
    "process.executable.name",
    "process.executable.path",
    "process.command",
    "process.command_line",
    "process.command_args",
    "process.owner",
    "process.runtime.name",
    "process.runtime.version",
    "process.runtime.description",
    "service.name",
    "service.namespace",
    "service.instance.id",
    "service.version",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
    "telemetry.auto.version",
    "webengine.name",
    "webengine.version",
    "webengine.description",
    // OpenCensus resource keys the translator adds to the list.
    "opencensus.starttime",
    "opencensus.exporterversion",
    "opencensus.resourcetype",
];

/// Tags naming the instrumentation scope: the current names first, then the deprecated
/// ones the Collector's translator reads.
const SCOPE_NAME: [&str; 2] = ["otel.scope.name", "otel.library.name"];
const SCOPE_VERSION: [&str; 2] = ["otel.scope.version", "otel.library.version"];

/// Whether a top-level JSON array is Zipkin v2 JSON: empty (a batch of no spans), or with
/// an element that is an object with both `traceId` and `id`.
pub(super) fn is_zipkin(items: &[Value]) -> bool {
    items.is_empty()
        || items
            .iter()
            .any(|v| v.get("traceId").is_some() && v.get("id").is_some())
}

/// Whether a Zipkin array is the older v1 JSON (`binaryAnnotations`, endpoints inside
/// annotations), which has `traceId` and `id` too but another model: it is refused rather
/// than read as v2 without its services.
pub(super) fn is_v1(items: &[Value]) -> bool {
    items.iter().any(|v| {
        v.get("binaryAnnotations").is_some()
            || v.get("annotations")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|a| a.get("endpoint").is_some()))
    })
}

/// One endpoint (`localEndpoint`, `remoteEndpoint`).
#[derive(Default)]
struct Endpoint {
    service: String,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: i64,
}

/// One Zipkin span as read from JSON.
struct ZSpan {
    trace_id: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: String,
    /// Nanoseconds; `None` when absent or 0.
    timestamp: Option<u64>,
    duration: u64,
    local: Option<Endpoint>,
    remote: Option<Endpoint>,
    annotations: Vec<(u64, String)>,
    tags: BTreeMap<String, String>,
}

impl ZSpan {
    fn service(&self) -> &str {
        match &self.local {
            Some(e) if !e.service.is_empty() => &e.service,
            _ => NO_SERVICE,
        }
    }

    fn scope_name(&self) -> &str {
        SCOPE_NAME
            .iter()
            .find_map(|k| self.tags.get(*k))
            .map_or("", String::as_str)
    }
}

/// Converts the spans of a Zipkin v2 JSON array into one request: one resource per local
/// service name and one scope per instrumentation library, in the order of the
/// Collector's sort (by service name, then library name; stable here). Spans that cannot
/// be read come last, in a resource of their own, as markers the converter rejects.
pub(super) fn convert(items: &[Value]) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match read_span(item) {
            Ok(s) => spans.push(s),
            Err((field, reason)) => bad.push(rejected_span(format!(
                "zipkin span [{i}]{}{field}: {reason}",
                if field.is_empty() { "" } else { "." }
            ))),
        }
    }
    spans.sort_by(|a, b| (a.service(), a.scope_name()).cmp(&(b.service(), b.scope_name())));

    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut prev: Option<(String, String)> = None;
    for mut z in spans {
        let service = z.service().to_string();
        let scope = z.scope_name().to_string();
        let new_resource = prev.as_ref().is_none_or(|(s, _)| *s != service);
        if new_resource {
            out.push(ResourceSpans {
                resource: Some(resource(&mut z.tags, &service)),
                ..Default::default()
            });
        }
        let new_scope = new_resource || prev.as_ref().is_some_and(|(_, l)| *l != scope);
        let rs = out.last_mut().expect("a resource was pushed");
        if new_scope {
            let mut s = InstrumentationScope::default();
            if !scope.is_empty() {
                s.name = scope.clone();
                if let Some(v) = SCOPE_VERSION.iter().find_map(|k| z.tags.get(*k)) {
                    s.version = v.clone();
                }
            }
            rs.scope_spans.push(ScopeSpans {
                scope: Some(s),
                ..Default::default()
            });
        }
        prev = Some((service, scope));
        let ss = rs.scope_spans.last_mut().expect("a scope was pushed");
        ss.spans.push(to_span(z));
    }
    if !bad.is_empty() {
        out.push(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: bad,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: out,
    }
}

/// `populateResourceFromZipkinSpan`: the local service name as `service.name` (or the key
/// the `otlp.service.name.source` tag names), then the resource tags of this span.
fn resource(tags: &mut BTreeMap<String, String>, service: &str) -> Resource {
    let mut attrs = AttrMap::default();
    if service != NO_SERVICE {
        let key = tags
            .remove(SERVICE_NAME_SOURCE)
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "service.name".to_string());
        attrs.put(&key, any_str(service));
        for key in RESOURCE_KEYS {
            if let Some(v) = tags.remove(*key) {
                attrs.put(key, any_str(v));
            }
        }
    }
    Resource {
        attributes: attrs.into_vec(),
        ..Default::default()
    }
}

/// `zSpanToInternal`.
fn to_span(z: ZSpan) -> Span {
    let ZSpan {
        trace_id,
        id,
        parent,
        name,
        kind,
        timestamp,
        duration,
        local,
        remote,
        annotations,
        mut tags,
    } = z;
    let trace_state = tags.remove("w3c.tracestate").unwrap_or_default();
    let kind = match kind.as_str() {
        "CLIENT" => SpanKind::Client,
        "SERVER" => SpanKind::Server,
        "PRODUCER" => SpanKind::Producer,
        "CONSUMER" => SpanKind::Consumer,
        _ => match tags.remove("span.kind").as_deref() {
            Some("internal") => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    };
    let status = status(&mut tags);
    let links = links(&mut tags);

    let mut attrs = AttrMap::default();
    for (k, v) in &tags {
        let resource_key = RESOURCE_KEYS.contains(&k.as_str())
            || SCOPE_NAME.contains(&k.as_str())
            || SCOPE_VERSION.contains(&k.as_str())
            || k == SERVICE_NAME_SOURCE;
        if !resource_key {
            attrs.put(k, any_str(v.as_str()));
        }
    }
    if let Some(e) = &local {
        for ip in [&e.ipv4, &e.ipv6].into_iter().flatten() {
            attrs.put("net.host.ip", any_str(ip.as_str()));
        }
        if e.port > 0 {
            attrs.put("net.host.port", Any::IntValue(e.port));
        }
    }
    if let Some(e) = &remote {
        if !e.service.is_empty() {
            attrs.put("peer.service", any_str(e.service.as_str()));
        }
        for ip in [&e.ipv4, &e.ipv6].into_iter().flatten() {
            attrs.put("net.peer.ip", any_str(ip.as_str()));
        }
        if e.port > 0 {
            attrs.put("net.peer.port", Any::IntValue(e.port));
        }
    }
    // `setTimestampsV2`: no timestamp starts the span at the Unix epoch, marked.
    let start = match timestamp {
        Some(t) => t,
        None => {
            attrs.put(START_TIME_ABSENT, Any::BoolValue(true));
            0
        }
    };
    let events = annotations
        .into_iter()
        .map(|(time, value)| event(time, &value))
        .collect();
    Span {
        trace_id: trace_id.to_vec(),
        span_id: id.to_vec(),
        trace_state,
        parent_span_id: parent
            .filter(|p| *p != id)
            .map(|p| p.to_vec())
            .unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: start,
        // Read as checked sums: a start and duration that do not add up were rejected.
        end_time_unix_nano: start.saturating_add(duration),
        attributes: attrs.into_vec(),
        events,
        links,
        status: Some(status),
        ..Default::default()
    }
}

/// `populateSpanStatus`: `otel.status_code` (with `otel.status_description`) and `error`.
fn status(tags: &mut BTreeMap<String, String>) -> Status {
    let mut status = Status::default();
    if let Some(code) = tags.remove("otel.status_code") {
        // The Collector's names, plus the OTel specification's `OK` / `ERROR`, which it
        // does not list (they read as Unset there).
        status.code = match code.as_str() {
            "STATUS_CODE_OK" | "Ok" | "OK" => 1,
            "STATUS_CODE_ERROR" | "Error" | "ERROR" => 2,
            _ => 0,
        };
        if let Some(message) = tags.remove("otel.status_description") {
            status.message = message;
        }
    }
    if let Some(error) = tags.get("error") {
        status.code = 2;
        if error == "true" {
            tags.remove("error");
        }
    }
    status
}

/// `zTagsToSpanLinks`: tags `otlp.link.0`, `otlp.link.1`, ... (up to 128, stopping at the
/// first missing), each `traceid|spanid|tracestate|{json attributes}|dropped`. A tag that
/// does not parse stays an attribute (the Collector fails the request).
fn links(tags: &mut BTreeMap<String, String>) -> Vec<Link> {
    let mut out = Vec::new();
    for i in 0..128 {
        let key = format!("otlp.link.{i}");
        let Some(value) = tags.get(&key) else { break };
        if let Some(link) = parse_link(value) {
            out.push(link);
            tags.remove(&key);
        }
    }
    out
}

fn parse_link(value: &str) -> Option<Link> {
    let parts: Vec<&str> = value.split('|').collect();
    let n = parts.len();
    if n < 5 {
        return None;
    }
    let unquote = |s: &str| {
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .to_string()
    };
    let trace_id = unquote(parts[0]);
    let span_id = unquote(parts[1]);
    if trace_id.len() != 32 || span_id.len() != 16 {
        return None;
    }
    let (attributes, dropped) = json_attrs(&parts[3..n - 1].join("|"), parts[n - 1])?;
    Some(Link {
        trace_id: hex_id::<16>(&trace_id).ok()?.to_vec(),
        span_id: hex_id::<8>(&span_id).ok()?.to_vec(),
        trace_state: parts[2].to_string(),
        attributes,
        dropped_attributes_count: dropped,
        ..Default::default()
    })
}

/// `populateSpanEvents`: an annotation `name` or `name|{json attributes}|dropped`. One
/// whose attributes do not parse keeps its whole value as the name (the Collector fails
/// the request).
fn event(time: u64, value: &str) -> Event {
    let parts: Vec<&str> = value.split('|').collect();
    let n = parts.len();
    let parsed = (n >= 3)
        .then(|| json_attrs(&parts[1..n - 1].join("|"), parts[n - 1]))
        .flatten();
    let (name, attributes, dropped) = match parsed {
        Some((attrs, dropped)) => (parts[0].to_string(), attrs, dropped),
        None if n >= 3 => (value.to_string(), Vec::new(), 0),
        None => (parts[0].to_string(), Vec::new(), 0),
    };
    Event {
        time_unix_nano: time,
        name,
        attributes,
        dropped_attributes_count: dropped,
    }
}

/// `jsonMapToAttributeMap` of a JSON object text, and a dropped count: strings, booleans,
/// and numbers (whole ones as integers); other values are left out, as there.
fn json_attrs(
    json: &str,
    dropped: &str,
) -> Option<(Vec<opentelemetry_proto::tonic::common::v1::KeyValue>, u32)> {
    let dropped: u32 = dropped.parse().ok()?;
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) else {
        return None;
    };
    let mut attrs = AttrMap::default();
    for (k, v) in &map {
        match v {
            Value::String(s) => attrs.put(k, any_str(s.as_str())),
            Value::Bool(b) => attrs.put(k, Any::BoolValue(*b)),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => attrs.put(k, Any::IntValue(i)),
                (None, Some(d)) if d.fract() == 0.0 => attrs.put(k, Any::IntValue(d as i64)),
                (None, Some(d)) => attrs.put(k, Any::DoubleValue(d)),
                (None, None) => {}
            },
            _ => {}
        }
    }
    Some((attrs.into_vec(), dropped))
}

/// An error of the member `field`.
fn at(field: &str) -> impl FnOnce(String) -> (String, String) {
    move |reason| (field.to_string(), reason)
}

/// Reads one span; an error names the member (empty for the span itself) and why.
fn read_span(v: &Value) -> Result<ZSpan, (String, String)> {
    let Value::Object(m) = v else {
        return Err((
            String::new(),
            format!("expected a span object, found {}", json_type(v)),
        ));
    };
    let trace_id = match opt_str(m.get("traceId")).map_err(at("traceId"))? {
        Some(s) => hex_id::<16>(s).map_err(at("traceId"))?,
        None => return Err(at("traceId")("missing".into())),
    };
    let id = match opt_str(m.get("id")).map_err(at("id"))? {
        Some(s) => hex_id::<8>(s).map_err(at("id"))?,
        None => return Err(at("id")("missing".into())),
    };
    let parent = match opt_str(m.get("parentId")).map_err(at("parentId"))? {
        Some("") | None => None,
        Some(s) => Some(hex_id::<8>(s).map_err(at("parentId"))?),
    };
    let name = opt_str(m.get("name"))
        .map_err(at("name"))?
        .unwrap_or_default()
        .to_string();
    let kind = opt_str(m.get("kind"))
        .map_err(at("kind"))?
        .unwrap_or_default()
        .to_string();
    let timestamp = micros(m.get("timestamp"))
        .map_err(at("timestamp"))?
        .filter(|t| *t != 0);
    let duration = micros(m.get("duration"))
        .map_err(at("duration"))?
        .unwrap_or(0);
    if timestamp
        .unwrap_or(0)
        .checked_add(duration)
        .is_none_or(|end| end > i64::MAX as u64)
    {
        return Err(at("duration")(
            "the span ends after the year 2262".to_string(),
        ));
    }
    let local =
        endpoint(m.get("localEndpoint")).map_err(|(f, r)| (format!("localEndpoint{f}"), r))?;
    let remote =
        endpoint(m.get("remoteEndpoint")).map_err(|(f, r)| (format!("remoteEndpoint{f}"), r))?;
    let mut annotations = Vec::new();
    for (i, a) in opt_array(m.get("annotations"))
        .map_err(at("annotations"))?
        .iter()
        .enumerate()
    {
        let field = format!("annotations[{i}]");
        let Value::Object(a) = a else {
            return Err((field, format!("expected an object, found {}", json_type(a))));
        };
        let time = micros(a.get("timestamp"))
            .map_err(|r| (format!("{field}.timestamp"), r))?
            .unwrap_or(0);
        let value = opt_str(a.get("value"))
            .map_err(|r| (format!("{field}.value"), r))?
            .unwrap_or_default();
        annotations.push((time, value.to_string()));
    }
    let mut tags = BTreeMap::new();
    match m.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            for (k, v) in t {
                // Zipkin tags are strings; numbers and booleans are read as their text.
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err((
                            format!("tags.{k}"),
                            format!("expected a string, found {}", json_type(other)),
                        ));
                    }
                };
                tags.insert(k.clone(), text);
            }
        }
        Some(other) => {
            return Err(at("tags")(format!(
                "expected an object, found {}",
                json_type(other)
            )));
        }
    }
    Ok(ZSpan {
        trace_id,
        id,
        parent,
        name,
        kind,
        timestamp,
        duration,
        local,
        remote,
        annotations,
        tags,
    })
}

/// Reads an endpoint; an error names the member below it (`.ipv4`).
fn endpoint(v: Option<&Value>) -> Result<Option<Endpoint>, (String, String)> {
    let m = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err((
                String::new(),
                format!("expected an object, found {}", json_type(other)),
            ));
        }
    };
    let at = |field: &str| {
        let field = format!(".{field}");
        move |reason: String| (field, reason)
    };
    let ip = |field: &str| -> Result<Option<String>, (String, String)> {
        match opt_str(m.get(field)).map_err(at(field))? {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse::<IpAddr>()
                .map(|ip| Some(ip.to_string()))
                .map_err(|_| at(field)(format!("{s:?} is not an IP address"))),
        }
    };
    let port = match m.get("port") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| at("port")(format!("{n} is not a port number")))?,
        Some(other) => {
            return Err(at("port")(format!(
                "expected a number, found {}",
                json_type(other)
            )));
        }
    };
    Ok(Some(Endpoint {
        service: opt_str(m.get("serviceName"))
            .map_err(at("serviceName"))?
            .unwrap_or_default()
            .to_string(),
        ipv4: ip("ipv4")?,
        ipv6: ip("ipv6")?,
        port,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_str(json: &str) -> ExportTraceServiceRequest {
        let v: Value = serde_json::from_str(json).expect("json");
        convert(v.as_array().expect("array"))
    }

    #[test]
    fn ids_are_left_padded_hex() {
        let id = hex_id::<16>("5b8efff798038103").expect("64-bit");
        assert_eq!(&id[..8], &[0; 8]);
        assert_eq!(id[8..], [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03]);
        assert_eq!(
            hex_id::<8>("abc").expect("short"),
            [0, 0, 0, 0, 0, 0, 0x0a, 0xbc]
        );
        assert!(hex_id::<8>("00000000000000001").is_err());
        assert!(hex_id::<8>("zz").is_err());
        assert!(hex_id::<8>("").is_err());
        assert!(hex_id::<8>("é").is_err());
    }

    #[test]
    fn one_bad_span_is_a_positioned_marker_and_the_others_are_kept() {
        let req = convert_str(
            r#"[
            {"traceId":"1","id":"2","name":"ok","timestamp":1,"duration":2},
            {"traceId":"1","id":"3","timestamp":"soon"},
            {"traceId":"1","id":"4","localEndpoint":{"ipv4":"300.1.1.1"}},
            {"traceId":"1","id":"5","timestamp":18446744073709551615},
            "nonsense",
            {"traceId":"1","id":"6","tags":{"a":{"deep":[1]}}},
            {"traceId":"1","id":"7","annotations":[{"timestamp":-1,"value":"x"}]}
        ]"#,
        );
        let converted = super::super::Request::Traces(req).convert();
        assert_eq!(converted.batch.num_rows(), 1);
        assert_eq!(converted.rejected, 6);
        let reasons: Vec<String> = converted.errors.iter().map(|e| e.reason.clone()).collect();
        for (want, got) in [
            "zipkin span [1].timestamp: expected a number of microseconds, found a string",
            "zipkin span [2].localEndpoint.ipv4: \"300.1.1.1\" is not an IP address",
            "zipkin span [3].timestamp: 18446744073709551615 microseconds is too large",
            "zipkin span [4]: expected a span object, found a string",
            "zipkin span [5].tags.a: expected a string, found an object",
            "zipkin span [6].annotations[0].timestamp: -1 is not a whole, non-negative number of microseconds",
        ]
        .iter()
        .zip(&reasons)
        {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn status_kind_links_and_events_follow_the_collector() {
        let req = convert_str(
            r#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331",
              "parentId":"b7ad6b7169203331","kind":"WHATEVER","timestamp":10,
              "tags":{"span.kind":"internal","otel.status_code":"STATUS_CODE_OK",
                      "otel.status_description":"fine","error":"boom",
                      "otlp.link.0":"0af7651916cd43dd8448eb211c80319c|00f067aa0ba902b7|k=v|{\"n\":2,\"x\":1.5}|3",
                      "otlp.link.1":"bad",
                      "w3c.tracestate":"a=b"},
              "annotations":[{"timestamp":11,"value":"retry|{\"attempt\":2}|1"},
                             {"timestamp":12,"value":"a|b|c"}]}]"#,
        );
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.kind, SpanKind::Internal as i32);
        assert!(
            span.parent_span_id.is_empty(),
            "a parent equal to the id is none"
        );
        let status = span.status.as_ref().expect("status");
        // `error` with any value makes the status Error; only "true" is removed.
        assert_eq!((status.code, status.message.as_str()), (2, "fine"));
        assert_eq!(span.trace_state, "a=b");
        assert_eq!(span.links.len(), 1);
        assert_eq!(span.links[0].trace_state, "k=v");
        assert_eq!(span.links[0].dropped_attributes_count, 3);
        assert_eq!(span.links[0].attributes.len(), 2);
        let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["error", "otlp.link.1"]);
        assert_eq!(span.events[0].name, "retry");
        assert_eq!(span.events[0].time_unix_nano, 11_000);
        assert_eq!(span.events[0].dropped_attributes_count, 1);
        assert_eq!(span.events[1].name, "a|b|c");
        assert_eq!(span.start_time_unix_nano, 10_000);
    }
}
