//! OTLP in: the specification's example payloads ingest and read back field for field, as
//! JSON and as protobuf; the JSON encoding's variants; bad input; `scry ingest`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use scrydb::otlp::{self, Format, Request};
use scrydb::{Db, Error, Signal};

use crate::common::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/otlp")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture exists")
}

/// Ingests requests into a fresh database and returns every row of `signal`, flushed to
/// Parquet and read back (so the values went through the WAL, a segment and its reader).
fn store(requests: &[Request], signal: Signal) -> Vec<BTreeMap<String, String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    for r in requests {
        let got = db.ingest_otlp(r).expect("ingest");
        assert_eq!(got.rejected, 0, "{:?}", got.errors);
    }
    db.flush().expect("flush");
    let batches = scan(&db, signal);
    db.close().expect("close");
    cells(&batches)
}

const RESOURCE: &[(&str, &str)] = &[
    ("service_name", "my.service"),
    ("resource_attributes", "{service.name: my.service}"),
    ("resource_dropped_attributes_count", "0"),
    ("resource_schema_url", "∅"),
    ("scope_name", "my.library"),
    ("scope_version", "1.0.0"),
    (
        "scope_attributes",
        "{my.scope.attribute: some scope attribute}",
    ),
    ("scope_dropped_attributes_count", "0"),
    ("scope_schema_url", "∅"),
];

fn check_trace(rows: &[BTreeMap<String, String>]) {
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_row(r, RESOURCE);
    assert_row(
        r,
        &[
            ("trace_id", "5b8efff798038103d269b633813fc60c"),
            ("span_id", "eee19b7ec3c1b174"),
            ("parent_span_id", "eee19b7ec3c1b173"),
            ("name", "I'm a server span"),
            ("time_ns", "1544712660000000000"),
            ("time", "2018-12-13T14:51:00Z"),
            ("end_time", "2018-12-13T14:51:01Z"),
            ("duration_ns", "1000000000"),
            ("kind", "SERVER"),
            ("status_code", "UNSET"),
            ("status_message", "∅"),
            ("trace_state", "∅"),
            ("flags", "0"),
            ("attributes", "{my.span.attr: some value}"),
            ("dropped_attributes_count", "0"),
            ("events", "[]"),
            ("dropped_events_count", "0"),
            ("links", "[]"),
            ("dropped_links_count", "0"),
        ],
    );
}

fn check_logs(rows: &[BTreeMap<String, String>]) {
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_row(r, RESOURCE);
    assert_row(
        r,
        &[
            ("time_ns", "1544712660300000000"),
            ("time", "2018-12-13T14:51:00.300Z"),
            ("observed_time", "2018-12-13T14:51:00.300Z"),
            ("severity_number", "10"),
            ("severity_text", "Information"),
            ("trace_id", "5b8efff798038103d269b633813fc60c"),
            ("span_id", "eee19b7ec3c1b174"),
            ("flags", "0"),
            ("body", "Example log record"),
            ("event_name", "∅"),
            (
                "attributes",
                "{string.attribute: some string, boolean.attribute: true, int.attribute: 10, \
                 double.attribute: 637.704, array.attribute: [\"many\",\"values\"], \
                 map.attribute: {\"some.map.key\":\"some value\"}}",
            ),
            ("dropped_attributes_count", "0"),
        ],
    );
}

fn check_events(rows: &[BTreeMap<String, String>]) {
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_row(r, RESOURCE);
    assert_row(
        r,
        &[
            ("time_ns", "1544712660300000000"),
            ("observed_time", "2018-12-13T14:51:00.300Z"),
            ("event_name", "browser.page_view"),
            ("severity_number", "9"),
            ("severity_text", "test severity text"),
            ("trace_id", "∅"),
            ("span_id", "∅"),
            (
                "body",
                r#"{"type":0,"url":"https://www.guidgenerator.com/online-guid-generator.aspx","referrer":"https://wwww.google.com","title":"Free Online GUID Generator"}"#,
            ),
            ("attributes", "{event.attribute: some event attribute}"),
        ],
    );
}

fn check_metrics(rows: &[BTreeMap<String, String>]) {
    assert_eq!(rows.len(), 4);
    let by_name: BTreeMap<&str, &BTreeMap<String, String>> =
        rows.iter().map(|r| (r["name"].as_str(), r)).collect();
    for r in rows {
        assert_row(r, RESOURCE);
        assert_row(
            r,
            &[
                ("time_ns", "1544712660300000000"),
                ("unit", "1"),
                ("flags", "0"),
                ("metadata", "{}"),
            ],
        );
    }
    let counter = by_name["my.counter"];
    assert_row(
        counter,
        &[
            ("description", "I am a Counter"),
            ("metric_type", "sum"),
            ("aggregation_temporality", "DELTA"),
            ("is_monotonic", "true"),
            ("start_time", "2018-12-13T14:51:00.300Z"),
            ("value", "5.0"),
            ("value_int", "∅"),
            ("attributes", "{my.counter.attr: some value}"),
            ("count", "∅"),
            ("bucket_counts", "∅"),
            ("quantile_values", "∅"),
            ("exemplars", "[]"),
        ],
    );
    let gauge = by_name["my.gauge"];
    assert_row(
        gauge,
        &[
            ("description", "I am a Gauge"),
            ("metric_type", "gauge"),
            ("aggregation_temporality", "∅"),
            ("is_monotonic", "∅"),
            ("start_time", "∅"),
            ("value", "10.0"),
            ("attributes", "{my.gauge.attr: some value}"),
        ],
    );
    let hist = by_name["my.histogram"];
    assert_row(
        hist,
        &[
            ("description", "I am a Histogram"),
            ("metric_type", "histogram"),
            ("aggregation_temporality", "DELTA"),
            ("is_monotonic", "∅"),
            ("value", "∅"),
            ("count", "2"),
            ("sum", "2.0"),
            ("min", "0.0"),
            ("max", "2.0"),
            ("bucket_counts", "[1, 1]"),
            ("explicit_bounds", "[1.0]"),
            ("scale", "∅"),
            ("attributes", "{my.histogram.attr: some value}"),
        ],
    );
    let exp = by_name["my.exponential.histogram"];
    assert_row(
        exp,
        &[
            ("description", "I am an Exponential Histogram"),
            ("metric_type", "exponential_histogram"),
            ("aggregation_temporality", "DELTA"),
            ("count", "3"),
            ("sum", "10.0"),
            ("min", "0.0"),
            ("max", "5.0"),
            ("scale", "0"),
            ("zero_count", "1"),
            ("zero_threshold", "0.0"),
            ("positive_offset", "1"),
            ("positive_bucket_counts", "[0, 2]"),
            ("negative_offset", "0"),
            ("negative_bucket_counts", "[]"),
            ("bucket_counts", "∅"),
            ("attributes", "{my.exponential.histogram.attr: some value}"),
        ],
    );
}

fn json_request(name: &str) -> Request {
    otlp::decode_json(&read_fixture(name)).expect("the spec's example decodes")
}

#[test]
fn spec_trace_example_reads_back_field_for_field() {
    let req = json_request("trace.json");
    assert_eq!(req.signal(), Signal::Spans);
    check_trace(&store(&[req], Signal::Spans));
}

#[test]
fn spec_logs_example_reads_back_field_for_field() {
    check_logs(&store(&[json_request("logs.json")], Signal::Logs));
}

#[test]
fn spec_events_example_reads_back_field_for_field() {
    check_events(&store(&[json_request("events.json")], Signal::Logs));
}

#[test]
fn spec_metrics_example_reads_back_field_for_field() {
    check_metrics(&store(&[json_request("metrics.json")], Signal::Metrics));
}

const EXAMPLES: [&str; 4] = ["trace", "logs", "events", "metrics"];

fn encode(req: &Request) -> Vec<u8> {
    match req {
        Request::Traces(r) => r.encode_to_vec(),
        Request::Logs(r) => r.encode_to_vec(),
        Request::Metrics(r) => r.encode_to_vec(),
    }
}

/// The protobuf fixtures are the JSON examples encoded by prost; they decode (with the
/// signal told from the content alone) to the same requests and read back the same.
#[test]
fn protobuf_fixtures() {
    for name in EXAMPLES {
        let req = json_request(&format!("{name}.json"));
        let path = fixture(&format!("{name}.binpb"));
        if std::env::var_os("SCRY_WRITE_FIXTURE").is_some() {
            std::fs::write(&path, encode(&req)).expect("write fixture");
        }
        let bytes = std::fs::read(&path).expect("fixture exists");
        assert_eq!(Format::sniff(&bytes), Format::Protobuf);
        let decoded = otlp::decode_protobuf(&bytes, None).expect("decodes");
        assert_eq!(decoded, req, "{name}");
        let signal = req.signal();
        let rows = store(&[decoded], signal);
        match name {
            "trace" => check_trace(&rows),
            "logs" => check_logs(&rows),
            "events" => check_events(&rows),
            _ => check_metrics(&rows),
        }
    }
}

#[test]
fn json_encoding_variants_decode_alike() {
    // Upper and lower case hex, 64-bit integers as strings and numbers, enums as numbers,
    // full names and short names.
    let variants = [
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"s","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","status":{"code":2}}]}]}]}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"s","kind":"SPAN_KIND_SERVER","startTimeUnixNano":1544712660000000000,"endTimeUnixNano":1544712661000000000,"status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","name":"s","kind":"SERVER","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"status":{"code":"ERROR"},"unknownField":{"x":1}}]}]}]}"#,
    ];
    let decoded: Vec<Request> = variants
        .iter()
        .map(|v| otlp::decode_json(v.as_bytes()).expect("decodes"))
        .collect();
    assert_eq!(decoded[0], decoded[1]);
    assert_eq!(decoded[0], decoded[2]);
    let rows = store(&decoded[..1], Signal::Spans);
    assert_row(
        &rows[0],
        &[
            ("kind", "SERVER"),
            ("status_code", "ERROR"),
            ("service_name", "unknown_service"),
            ("resource_attributes", "∅"),
            ("scope_name", "∅"),
        ],
    );

    let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","traceId":"00000000000000000000000000000000","spanId":"0000000000000000","severityNumber":"SEVERITY_NUMBER_WARN2","body":{"intValue":"-7"},"attributes":[{"key":"b","value":{"bytesValue":"3q2+7w=="}},{"key":"d","value":{"doubleValue":1}},{"key":"e","value":{}}]}]}]}]}"#;
    let rows = store(
        &[otlp::decode_json(logs.as_bytes()).expect("decodes")],
        Signal::Logs,
    );
    assert_row(
        &rows[0],
        &[
            ("severity_number", "14"),
            ("body", "-7"),
            ("attributes", "{b: 3q2+7w==, d: 1.0, e: ∅}"),
            ("observed_time", "∅"),
            // All-zero ids, which some SDKs send for "none", are stored as absent.
            ("trace_id", "∅"),
            ("span_id", "∅"),
        ],
    );
}

#[test]
fn every_metric_type_with_exemplars_and_summary() {
    let json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeMetrics":[{"metrics":[
      {"name":"lat","histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","dataPoints":[
        {"timeUnixNano":"2000","count":"3","bucketCounts":["1","2"],"explicitBounds":[0.5],
         "exemplars":[{"timeUnixNano":"1999","asDouble":0.7,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","filteredAttributes":[{"key":"k","value":{"stringValue":"v"}}]},
                      {"timeUnixNano":"1998","asInt":"3"}]}]}},
      {"name":"q","summary":{"dataPoints":[{"timeUnixNano":"3000","count":"4","sum":10.5,"quantileValues":[{"quantile":0.5,"value":2},{"quantile":0.99,"value":4}]}]}},
      {"name":"c","metadata":[{"key":"m","value":{"stringValue":"x"}}],"sum":{"aggregationTemporality":2,"isMonotonic":false,"dataPoints":[{"timeUnixNano":"4000","asInt":"-5","flags":1}]}}
    ]}]}]}"#;
    let rows = store(
        &[otlp::decode_json(json.as_bytes()).expect("decodes")],
        Signal::Metrics,
    );
    assert_eq!(rows.len(), 3);
    assert_row(
        &rows[0],
        &[
            ("name", "lat"),
            ("service_name", "api"),
            ("aggregation_temporality", "CUMULATIVE"),
            (
                "exemplars",
                "[{time: 1970-01-01T00:00:00.000001999Z, value: 0.7, value_int: ∅, trace_id: 5b8efff798038103d269b633813fc60c, span_id: eee19b7ec3c1b174, filtered_attributes: {k: v}}, {time: 1970-01-01T00:00:00.000001998Z, value: ∅, value_int: 3, trace_id: ∅, span_id: ∅, filtered_attributes: {}}]",
            ),
            ("sum", "∅"),
        ],
    );
    assert_row(
        &rows[1],
        &[
            ("name", "q"),
            ("metric_type", "summary"),
            ("count", "4"),
            ("sum", "10.5"),
            (
                "quantile_values",
                "[{quantile: 0.5, value: 2.0}, {quantile: 0.99, value: 4.0}]",
            ),
        ],
    );
    assert_row(
        &rows[2],
        &[
            ("name", "c"),
            ("metric_type", "sum"),
            ("is_monotonic", "false"),
            ("aggregation_temporality", "CUMULATIVE"),
            ("value_int", "-5"),
            ("value", "∅"),
            ("flags", "1"),
            ("metadata", "{m: x}"),
        ],
    );
}

#[test]
fn spans_with_events_and_links() {
    let json = r#"{"resourceSpans":[{"schemaUrl":"https://opentelemetry.io/schemas/1.26.0","resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}],"droppedAttributesCount":2},"scopeSpans":[{"schemaUrl":"s","scope":{"name":"lib","droppedAttributesCount":1},"spans":[{
      "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","traceState":"a=b","flags":257,
      "name":"op","kind":3,"startTimeUnixNano":"100","endTimeUnixNano":"90",
      "status":{"code":1,"message":"fine"},"droppedAttributesCount":3,"droppedEventsCount":4,"droppedLinksCount":5,
      "events":[{"timeUnixNano":"95","name":"exception","attributes":[{"key":"exception.type","value":{"stringValue":"E"}}],"droppedAttributesCount":6}],
      "links":[{"traceId":"00000000000000000000000000000001","spanId":"0000000000000002","traceState":"x=y","attributes":[{"key":"l","value":{"boolValue":false}}],"droppedAttributesCount":7,"flags":1}]
    }]}]}]}"#;
    let rows = store(
        &[otlp::decode_json(json.as_bytes()).expect("decodes")],
        Signal::Spans,
    );
    assert_row(
        &rows[0],
        &[
            ("service_name", "cart"),
            (
                "resource_schema_url",
                "https://opentelemetry.io/schemas/1.26.0",
            ),
            ("resource_dropped_attributes_count", "2"),
            ("scope_schema_url", "s"),
            ("scope_name", "lib"),
            ("scope_version", "∅"),
            ("scope_attributes", "{}"),
            ("scope_dropped_attributes_count", "1"),
            ("trace_state", "a=b"),
            ("flags", "257"),
            ("kind", "CLIENT"),
            ("status_code", "OK"),
            ("status_message", "fine"),
            ("duration_ns", "-10"),
            ("dropped_attributes_count", "3"),
            ("dropped_events_count", "4"),
            ("dropped_links_count", "5"),
            ("parent_span_id", "∅"),
            (
                "events",
                "[{time: 1970-01-01T00:00:00.000000095Z, name: exception, attributes: {exception.type: E}, dropped_attributes_count: 6}]",
            ),
            (
                "links",
                "[{trace_id: 00000000000000000000000000000001, span_id: 0000000000000002, trace_state: x=y, attributes: {l: false}, dropped_attributes_count: 7, flags: 1}]",
            ),
        ],
    );
}

#[test]
fn invalid_records_are_rejected_with_their_position_and_the_rest_stored() {
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
      {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok","startTimeUnixNano":"1","endTimeUnixNano":"2"},
      {"traceId":"5b8efff798038103d269b633813fc6","spanId":"eee19b7ec3c1b174","name":"short id","startTimeUnixNano":"1","endTimeUnixNano":"2"},
      {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"bad kind","kind":9,"startTimeUnixNano":"1","endTimeUnixNano":"2"},
      {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b174","name":"zero id","startTimeUnixNano":"1","endTimeUnixNano":"2"},
      {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"huge time","startTimeUnixNano":"18446744073709551615","endTimeUnixNano":"2"}
    ]}]}]}"#;
    let req = otlp::decode_json(json.as_bytes()).expect("decodes");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let got = db.ingest_otlp(&req).expect("partial success");
    assert_eq!((got.accepted, got.rejected), (1, 4));
    let msgs: Vec<String> = got.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        msgs,
        [
            "resource_spans[0].scope_spans[0].spans[1]: trace_id is 15 bytes, not 16",
            "resource_spans[0].scope_spans[0].spans[2]: kind 9 is not a known value (0..=5)",
            "resource_spans[0].scope_spans[0].spans[3]: trace_id is all zeroes, which OTLP defines as invalid",
            "resource_spans[0].scope_spans[0].spans[4]: start_time_unix_nano 18446744073709551615 is after the year 2262",
        ]
    );
    let rows = cells(&scan(&db, Signal::Spans));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "ok");
    db.close().expect("close");

    // Metrics: a histogram whose buckets do not match its bounds, a point without a value.
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
      {"name":"h","histogram":{"dataPoints":[{"timeUnixNano":"5","bucketCounts":["1"],"explicitBounds":[1,2]}]}},
      {"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"5"},{"timeUnixNano":"6","asDouble":1}]}}
    ]}]}]}"#;
    let c = otlp::decode_json(json.as_bytes())
        .expect("decodes")
        .convert();
    assert_eq!((c.batch.num_rows(), c.rejected), (1, 2));
    assert_eq!(
        c.errors[0].to_string(),
        "resource_metrics[0].scope_metrics[0].metrics[0] (\"h\").data_points[0]: bucket_counts has 1 entries for 2 explicit_bounds (want one more)"
    );
    assert!(c.error_message().starts_with("2 data points rejected: "));
}

#[test]
fn malformed_payloads_are_errors_that_say_where() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"resourceSpans\": [",
            "EOF while parsing a list at line 1 column 19",
        ),
        (
            br#"{"foo": 1}"#,
            "no resourceSpans, resourceLogs or resourceMetrics",
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SIDEWAYS"}]}]}]}"#,
            "resourceSpans[0].scopeSpans[0].spans[0].kind: \"SPAN_KIND_SIDEWAYS\" is not a known kind",
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[],"scope":{"name":5}}]}]}"#,
            "resourceSpans[0].scopeSpans[0].scope.name",
        ),
        (br#"[1, 2]"#, "a request must be a JSON object"),
    ];
    // A member of the wrong type inside a record rejects that record, at its position.
    for (input, location, member) in [
        (
            &br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#[..],
            "resource_spans[0].scope_spans[0].spans[0]",
            "traceId",
        ),
        (
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"soon"}]}]}]}"#,
            "resource_logs[0].scope_logs[0].log_records[0]",
            "timeUnixNano",
        ),
    ] {
        let c = otlp::decode_json(input).expect("decodes").convert();
        assert_eq!((c.batch.num_rows(), c.rejected), (0, 1));
        assert_eq!(c.errors[0].location, location);
        assert!(c.errors[0].reason.contains(member), "{}", c.errors[0]);
    }
    for (input, want) in cases {
        match otlp::decode_json(input) {
            Err(Error::InvalidOtlp { reason }) => {
                assert!(reason.contains(want), "{reason:?} should contain {want:?}")
            }
            other => panic!("expected InvalidOtlp for {input:?}, got {other:?}"),
        }
    }

    // Protobuf: garbage, and a string field that is not UTF-8.
    let err = otlp::decode_protobuf(&[0xff, 0xff, 0xff], None).expect_err("garbage");
    assert!(
        err.to_string().contains("not a protobuf OTLP request"),
        "{err}"
    );
    let mut bytes = encode(&json_request("trace.json"));
    let name = b"I'm a server span";
    let at = bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("span name in the encoding");
    bytes[at] = 0xC3; // starts a two-byte sequence that the next byte does not continue
    let err = otlp::decode_protobuf(&bytes, Some(Signal::Spans)).expect_err("not UTF-8");
    let msg = err.to_string();
    assert!(msg.contains("Span.name") && msg.contains("UTF-8"), "{msg}");
}

#[test]
fn files_of_many_requests_keep_going_past_a_bad_one() {
    let trace = String::from_utf8(read_fixture("trace.json")).expect("utf-8");
    let line =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&trace).expect("json"))
            .expect("compact");
    let logs = serde_json::to_string(
        &serde_json::from_slice::<serde_json::Value>(&read_fixture("logs.json")).expect("json"),
    )
    .expect("compact");
    let jsonl = format!("{line}\n\n{{\"resourceSpans\": 7}}\n{logs}\n");
    assert_eq!(Format::sniff(jsonl.as_bytes()), Format::JsonLines);
    let got = otlp::split_requests(jsonl.as_bytes(), Format::JsonLines, None);
    let lines: Vec<(usize, bool)> = got.iter().map(|(l, r)| (*l, r.is_ok())).collect();
    assert_eq!(lines, [(1, true), (3, false), (4, true)]);

    // Several JSON documents in one .json file; line numbers are where each starts.
    let json = format!("{trace}\n{trace}");
    let got = otlp::split_requests(json.as_bytes(), Format::Json, None);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].0, trace.lines().count() + 1);

    // A length-prefixed protobuf stream (the Collector file exporter's proto format).
    let mut stream = Vec::new();
    for name in ["trace.binpb", "metrics.binpb"] {
        let m = read_fixture(name);
        stream.extend_from_slice(&(m.len() as u32).to_be_bytes());
        stream.extend_from_slice(&m);
    }
    let got = otlp::split_requests(&stream, Format::Protobuf, None);
    let signals: Vec<Signal> = got
        .iter()
        .map(|(_, r)| r.as_ref().expect("decodes").signal())
        .collect();
    assert_eq!(signals, [Signal::Spans, Signal::Metrics]);
}

fn scry(db: &Path, args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scry"));
    cmd.arg("--db").arg(db).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("scry runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("scry finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scry_ingest_reads_every_format_and_reports_errors_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let files: Vec<String> = ["trace.json", "logs.json", "events.json", "metrics.binpb"]
        .iter()
        .map(|f| fixture(f).display().to_string())
        .collect();
    let args: Vec<&str> = std::iter::once("ingest")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (ok, out, err) = scry(&db, &args, None);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("spans             1 spans stored, 0 rejected"),
        "{out}"
    );
    assert!(
        out.contains("logs              2 log records stored"),
        "{out}"
    );
    assert!(
        out.contains("metrics           4 data points stored"),
        "{out}"
    );

    // stdin, protobuf, signal told from the content.
    let (ok, out, err) = scry(&db, &["ingest", "-"], Some(&read_fixture("trace.binpb")));
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("<stdin>: 1 spans") || out.contains("-: 1 spans"),
        "{out}"
    );

    // A JSON lines file with a bad line: the good lines are stored, the exit code says
    // error, and the message names the file and line.
    let trace = serde_json::to_string(
        &serde_json::from_slice::<serde_json::Value>(&read_fixture("trace.json")).expect("json"),
    )
    .expect("compact");
    let jsonl = dir.path().join("batch.jsonl");
    std::fs::write(&jsonl, format!("{trace}\nnot json\n{trace}\n")).expect("write");
    let (ok, out, err) = scry(&db, &["ingest", &jsonl.display().to_string()], None);
    assert!(!ok, "a bad line fails the run");
    assert!(out.contains("batch.jsonl: 2 spans"), "{out}");
    assert!(err.contains("batch.jsonl:2: invalid OTLP payload"), "{err}");

    let missing = dir.path().join("missing.json");
    let (ok, _, err) = scry(&db, &["ingest", &missing.display().to_string()], None);
    assert!(!ok);
    assert!(err.contains("missing.json"), "{err}");

    let reopened = Db::open(&db, small_opts()).expect("open");
    assert_eq!(count(&scan(&reopened, Signal::Spans)), 4);
    reopened.close().expect("close");
}

/// What an input that does not decode is, said without `--signal`: a protobuf error names
/// its cause and field (invalid UTF-8, truncation, nesting limit), and a gzip file, a JSON
/// array of requests, Zipkin JSON and Jaeger JSON are named as such, with what is accepted.
#[test]
fn undecodable_inputs_say_what_they_are_and_what_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = scrydb::Db::open(dir.path(), scrydb::Options::default()).expect("open");
    let mut ingester = scrydb::otlp::ingest::Ingester::new(&db, Default::default());
    let mut problem = |bytes: &[u8]| -> String {
        let r = ingester
            .ingest_bytes(bytes, None, "input")
            .expect("ingest runs");
        assert_eq!(r.undecodable, 1, "{:?}", r.problems);
        r.problems[0].to_string()
    };

    let trace = encode(&json_request("trace.json"));
    let mut bad_utf8 = trace.clone();
    let name = b"I'm a server span";
    let at = bad_utf8
        .windows(name.len())
        .position(|w| w == name)
        .expect("span name in the encoding");
    bad_utf8[at] = 0xC3;
    let msg = problem(&bad_utf8);
    assert!(msg.contains("Span.name") && msg.contains("UTF-8"), "{msg}");

    let msg = problem(&trace[..trace.len() - 3]);
    assert!(
        msg.contains("as spans: ") && msg.contains("truncated"),
        "{msg}"
    );

    // An attribute value nested deeper than the decoder's recursion limit.
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    let mut value = AnyValue {
        value: Some(any_value::Value::StringValue("deep".into())),
    };
    for _ in 0..120 {
        value = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let Request::Traces(mut req) = json_request("trace.json") else {
        panic!("a trace request")
    };
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "deep".into(),
            value: Some(value),
            ..Default::default()
        });
    let msg = problem(&req.encode_to_vec());
    assert!(msg.contains("recursion limit"), "{msg}");

    for (input, want) in [
        (&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0][..], "gzip"),
        (
            br#"[{"resourceSpans":[]},{"resourceSpans":[]}]"#,
            "JSON array of OTLP requests",
        ),
        (
            // Zipkin v2 and Jaeger JSON are read (tests/it/foreign.rs); near misses say what
            // they look like.
            br#"[{"traceId":"5b8efff798038103","name":"get","timestamp":1,"localEndpoint":{"serviceName":"a"}}]"#,
            "Zipkin",
        ),
        (
            br#"{"data":[{"traceID":"5b8efff798038103","processes":{}}]}"#,
            "Jaeger",
        ),
    ] {
        let msg = problem(input);
        assert!(msg.contains(want), "{want}: {msg}");
        assert!(msg.contains("ScryDB reads OTLP"), "{want}: {msg}");
    }
    drop(ingester);
    db.close().expect("close");
}
