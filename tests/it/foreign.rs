//! Zipkin v2 JSON and Jaeger JSON read as OTLP (`engine/src/otlp/{zipkin,jaeger}.rs`):
//! detection by content, the OpenTelemetry Collector's mapping checked column by column on
//! the samples in `tests/fixtures/otlp/`, through `scry ingest` and through the library,
//! and a bad span rejected with its position while the others are stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use scrydb::otlp::ingest::Ingester;
use scrydb::otlp::{self, Format};
use scrydb::{Db, Signal};

use crate::common::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/otlp")
        .join(name)
}

/// The stored spans of a flushed, reopened store.
fn stored(db_dir: &Path) -> Vec<BTreeMap<String, String>> {
    let db = Db::open(db_dir, small_opts()).expect("open");
    db.flush().expect("flush");
    let rows = cells(&scan(&db, Signal::Spans));
    db.close().expect("close");
    rows
}

/// The fixture through the library: `decode_json` and `Db::ingest_otlp`.
fn through_library(name: &str, spans: u64) -> Vec<BTreeMap<String, String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fixture(name)).expect("fixture");
    let request = otlp::decode_json(&bytes).expect("decodes");
    assert_eq!(request.signal(), Signal::Spans);
    {
        let db = open(dir.path());
        let got = db.ingest_otlp(&request).expect("ingest");
        assert_eq!((got.accepted, got.rejected), (spans, 0), "{:?}", got.errors);
        db.close().expect("close");
    }
    stored(dir.path())
}

/// The fixture through `scry ingest <file>`.
fn through_cli(name: &str, spans: u64) -> Vec<BTreeMap<String, String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let file = fixture(name).display().to_string();
    let (ok, out, err) = run_scry(&["--db", &db.display().to_string(), "ingest", &file]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!("{spans} spans stored, 0 rejected")),
        "{out}"
    );
    stored(&db)
}

/// The columns every span of a sample shares.
fn assert_common(row: &BTreeMap<String, String>, trace_id: &str) {
    assert_row(
        row,
        &[
            ("trace_id", trace_id),
            ("dropped_attributes_count", "0"),
            ("dropped_events_count", "0"),
            ("dropped_links_count", "0"),
            ("resource_dropped_attributes_count", "0"),
            ("resource_schema_url", "∅"),
            ("scope_attributes", "{}"),
            ("scope_schema_url", "∅"),
        ],
    );
}

/// The mapping of `to_translator.go` (opentelemetry-collector-contrib,
/// pkg/translator/zipkin/zipkinv2), column by column.
fn check_zipkin(rows: &[BTreeMap<String, String>]) {
    assert_eq!(rows.len(), 7, "{rows:#?}");
    // A 64-bit trace id is the low half of a 128-bit one.
    let trace = "00000000000000005af7183fb1d4cf5f";
    for r in rows {
        assert_common(r, trace);
        // Zipkin has no flags; `debug` and `shared` are dropped, as by the Collector.
        assert_row(r, &[("flags", "0")]);
    }
    let frontend = [
        ("service_name", "frontend"),
        ("resource_attributes", "{service.name: frontend}"),
        ("scope_name", "∅"),
        ("scope_version", "∅"),
    ];
    // The resource tags of a service's first span (sorted by service, then library)
    // become its resource attributes, never span attributes.
    let backend = [
        ("service_name", "backend"),
        (
            "resource_attributes",
            "{service.name: backend, deployment.environment: staging, host.name: backend-7f9c}",
        ),
    ];
    let worker = [
        ("service_name", "worker"),
        (
            "resource_attributes",
            "{service.name: worker, host.name: worker-1}",
        ),
        ("scope_name", "∅"),
    ];

    // Timestamp and duration in microseconds; the local endpoint is net.host.*, the remote
    // one net.peer.* (an IPv6 address too).
    assert_row(&rows[0], &frontend);
    assert_row(
        &rows[0],
        &[
            ("name", "get /api/orders"),
            ("span_id", "5af7183fb1d4cf5f"),
            ("parent_span_id", "∅"),
            ("kind", "SERVER"),
            ("time", "2024-01-01T00:00:00Z"),
            ("end_time", "2024-01-01T00:00:00.250Z"),
            ("duration_ns", "250000000"),
            ("status_code", "UNSET"),
            ("status_message", "∅"),
            ("trace_state", "∅"),
            (
                "attributes",
                "{http.method: GET, http.path: /api/orders, http.status_code: 200, \
                 net.host.ip: 172.17.0.13, net.host.port: 8080, net.peer.ip: 2001:db8::c001, \
                 net.peer.port: 51234}",
            ),
            ("events", "[]"),
            ("links", "[]"),
        ],
    );
    // Annotations are events; the remote service name is peer.service.
    assert_row(&rows[1], &frontend);
    assert_row(
        &rows[1],
        &[
            ("name", "get"),
            ("span_id", "352bff9a74ca9ad2"),
            ("parent_span_id", "5af7183fb1d4cf5f"),
            ("kind", "CLIENT"),
            (
                "attributes",
                "{http.method: GET, http.path: /orders, net.host.ip: 172.17.0.13, \
                 peer.service: backend, net.peer.ip: 172.17.0.9, net.peer.port: 9000}",
            ),
            (
                "events",
                "[{time: 2024-01-01T00:00:00.011Z, name: ws, attributes: {}, \
                 dropped_attributes_count: 0}, {time: 2024-01-01T00:00:00.209Z, name: wr, \
                 attributes: {}, dropped_attributes_count: 0}]",
            ),
        ],
    );
    // The shared server half of the client span: same span id, its own row.
    assert_row(&rows[2], &backend);
    assert_row(
        &rows[2],
        &[
            ("name", "get /orders"),
            ("span_id", "352bff9a74ca9ad2"),
            ("parent_span_id", "5af7183fb1d4cf5f"),
            ("kind", "SERVER"),
            ("scope_name", "∅"),
            (
                "attributes",
                "{http.method: GET, http.path: /orders, net.host.ip: 172.17.0.9, \
                 net.host.port: 9000, net.peer.ip: 172.17.0.13}",
            ),
        ],
    );
    // otel.status_code / otel.status_description are the status, `error: "true"` is
    // removed; otel.library.* is the scope; an annotation `name|{json}|dropped` has
    // attributes.
    assert_row(&rows[3], &backend);
    assert_row(
        &rows[3],
        &[
            ("name", "select orders"),
            ("span_id", "a1b2c3d4e5f60718"),
            ("parent_span_id", "352bff9a74ca9ad2"),
            ("kind", "CLIENT"),
            ("scope_name", "io.opentelemetry.jdbc"),
            ("scope_version", "1.32.0"),
            ("status_code", "ERROR"),
            ("status_message", "Deadlock found when trying to get lock"),
            (
                "attributes",
                "{sql.query: SELECT * FROM orders WHERE user_id = ?, peer.service: mysql, \
                 net.peer.ip: 10.0.0.7, net.peer.port: 3306}",
            ),
            (
                "events",
                "[{time: 2024-01-01T00:00:00.169Z, name: retry, attributes: {attempt: 2, \
                 backoff_ms: 12.5}, dropped_attributes_count: 0}]",
            ),
        ],
    );
    // w3c.tracestate is the trace state.
    assert_row(&rows[4], &backend);
    assert_row(
        &rows[4],
        &[
            ("name", "send orders"),
            ("kind", "PRODUCER"),
            ("trace_state", "rojo=00f067aa0ba902b7"),
            (
                "attributes",
                "{messaging.destination: orders, peer.service: kafka}",
            ),
        ],
    );
    // Any `error` tag makes the status Error; one that is not "true" stays an attribute.
    assert_row(&rows[5], &worker);
    assert_row(
        &rows[5],
        &[
            ("name", "poll orders"),
            ("parent_span_id", "0b7e0e6a3c3d9f21"),
            ("kind", "CONSUMER"),
            ("status_code", "ERROR"),
            ("status_message", "∅"),
            (
                "attributes",
                "{error: consumer lag too high, messaging.destination: orders, \
                 peer.service: kafka}",
            ),
        ],
    );
    // No kind: the span.kind tag says internal (and is removed).
    assert_row(&rows[6], &worker);
    assert_row(
        &rows[6],
        &[
            ("name", "process order"),
            ("kind", "INTERNAL"),
            ("status_code", "UNSET"),
            ("attributes", "{order.id: A-1042}"),
        ],
    );
}

/// The mapping of `jaegerproto_to_traces.go` (opentelemetry-collector-contrib,
/// pkg/translator/jaeger), column by column.
fn check_jaeger(rows: &[BTreeMap<String, String>]) {
    assert_eq!(rows.len(), 6, "{rows:#?}");
    let trace = "6e0c63257de34c92bf9efcd03927272e";
    for r in rows {
        assert_common(r, trace);
    }
    // Process tags are resource attributes; hostname becomes host.name and jaeger.version
    // opencensus.exporterversion.
    let frontend = [
        ("service_name", "frontend"),
        (
            "resource_attributes",
            "{service.name: frontend, ip: 10.0.0.5, host.name: web-1, \
             opencensus.exporterversion: Jaeger-Go-2.30.0}",
        ),
        ("scope_name", "∅"),
    ];
    let driver = [
        ("service_name", "driver"),
        (
            "resource_attributes",
            "{service.name: driver, client-uuid: 6b4e4e1d4b2ff9c8}",
        ),
    ];

    // span.kind is the kind; the `event` field names a log's event; the sampled flag is
    // the W3C sampled flag; a 2xx http.status_code leaves the status unset.
    assert_row(&rows[0], &frontend);
    assert_row(
        &rows[0],
        &[
            ("name", "HTTP GET /dispatch"),
            ("span_id", "6e0c63257de34c92"),
            ("parent_span_id", "∅"),
            ("kind", "SERVER"),
            ("flags", "1"),
            ("time", "2024-01-01T00:00:00Z"),
            ("end_time", "2024-01-01T00:00:00.680Z"),
            ("duration_ns", "680000000"),
            ("status_code", "UNSET"),
            ("status_message", "∅"),
            (
                "attributes",
                "{http.method: GET, http.status_code: 200, sampler.type: const}",
            ),
            (
                "events",
                "[{time: 2024-01-01T00:00:00.000100Z, name: HTTP request received, \
                 attributes: {level: info}, dropped_attributes_count: 0}]",
            ),
            ("links", "[]"),
        ],
    );
    // A 4xx http.status_code is an error for a client, with http.status_message.
    assert_row(&rows[1], &frontend);
    assert_row(
        &rows[1],
        &[
            ("name", "HTTP GET: /customer"),
            ("parent_span_id", "6e0c63257de34c92"),
            ("kind", "CLIENT"),
            ("status_code", "ERROR"),
            ("status_message", "customer not found"),
            (
                "attributes",
                "{http.status_code: 404, http.status_message: customer not found}",
            ),
            ("links", "[]"),
        ],
    );
    // `error: true` (a boolean) is the status, with otel.status_description; the
    // otel.scope.* tags are the scope.
    assert_row(&rows[2], &driver);
    assert_row(
        &rows[2],
        &[
            ("name", "FindNearest"),
            ("span_id", "2a6b4c8d0e1f3a57"),
            ("kind", "SERVER"),
            ("scope_name", "driver-lib"),
            ("scope_version", "0.9.1"),
            ("status_code", "ERROR"),
            ("status_message", "no drivers nearby"),
            ("attributes", "{}"),
            (
                "events",
                "[{time: 2024-01-01T00:00:00.400Z, name: search done, attributes: {found: 0}, \
                 dropped_attributes_count: 0}]",
            ),
        ],
    );
    // otel.status_code OK; `error: false` stays an attribute; w3c.tracestate is the trace
    // state; a binary tag is bytes (shown as base64).
    assert_row(
        &rows[3],
        &[
            ("service_name", "redis"),
            ("resource_attributes", "{service.name: redis}"),
            ("name", "GetDriver"),
            ("parent_span_id", "2a6b4c8d0e1f3a57"),
            ("kind", "CLIENT"),
            ("status_code", "OK"),
            ("status_message", "∅"),
            ("trace_state", "rojo=00f067aa0ba902b7"),
            ("attributes", "{error: false, payload: aGVsbG8=}"),
        ],
    );
    // A FOLLOWS_FROM reference alone is the parent (Jaeger's ParentSpanID) and a link.
    assert_row(&rows[4], &driver);
    assert_row(
        &rows[4],
        &[
            ("name", "notify dispatcher"),
            ("parent_span_id", "2a6b4c8d0e1f3a57"),
            ("kind", "PRODUCER"),
            (
                "links",
                "[{trace_id: 6e0c63257de34c92bf9efcd03927272e, span_id: 2a6b4c8d0e1f3a57, \
                 trace_state: ∅, attributes: {opentracing.ref_type: follows_from}, \
                 dropped_attributes_count: 0, flags: 0}]",
            ),
        ],
    );
    // CHILD_OF is the parent, the FOLLOWS_FROM beside it a link.
    assert_row(&rows[5], &frontend);
    assert_row(
        &rows[5],
        &[
            ("name", "render"),
            ("parent_span_id", "6e0c63257de34c92"),
            ("kind", "INTERNAL"),
            ("flags", "0"),
            ("attributes", "{ratio: 0.25}"),
            (
                "links",
                "[{trace_id: 6e0c63257de34c92bf9efcd03927272e, span_id: 3b7c5d9e1f2a4b68, \
                 trace_state: ∅, attributes: {opentracing.ref_type: follows_from}, \
                 dropped_attributes_count: 0, flags: 0}]",
            ),
        ],
    );
}

#[test]
fn zipkin_sample_maps_as_the_collector_does() {
    let library = through_library("zipkin-v2.json", 7);
    check_zipkin(&library);
    let cli = through_cli("zipkin-v2.json", 7);
    assert_eq!(cli, library);
}

#[test]
fn jaeger_sample_maps_as_the_collector_does() {
    let library = through_library("jaeger-ui.json", 6);
    check_jaeger(&library);
    let cli = through_cli("jaeger-ui.json", 6);
    assert_eq!(cli, library);
}

/// Content, not the file name, tells the format: OTLP/JSON is still OTLP, an empty array
/// is an empty Zipkin batch, `{"data": []}` an empty Jaeger answer, and other arrays and
/// objects are errors that say what they look like.
#[test]
fn detection_by_content() {
    let trace = std::fs::read(fixture("trace.json")).expect("fixture");
    let otlp = otlp::decode_json(&trace).expect("OTLP");
    assert_eq!((otlp.signal(), otlp.records()), (Signal::Spans, 1));
    // An OTLP request with an extra `data` member stays OTLP.
    let mut v: serde_json::Value = serde_json::from_slice(&trace).expect("json");
    v["data"] = serde_json::json!([{"spans": []}]);
    let otlp = otlp::decode_json(v.to_string().as_bytes()).expect("OTLP");
    assert_eq!(otlp.records(), 1);
    let logs = otlp::decode_json(&std::fs::read(fixture("logs.json")).expect("f")).expect("logs");
    assert_eq!(logs.signal(), Signal::Logs);

    for empty in ["[]", " [ ] ", r#"{"data":[],"total":0,"errors":null}"#] {
        let r = otlp::decode_json(empty.as_bytes()).expect(empty);
        assert_eq!((r.signal(), r.records()), (Signal::Spans, 0), "{empty}");
    }

    for (garbage, want) in [
        ("[1, 2, 3]", "JSON array"),
        ("[[]]", "JSON array"),
        (r#"[{"resourceSpans":[]}]"#, "JSON array of OTLP requests"),
        (
            r#"[{"traceId":"1","name":"no id","localEndpoint":{}}]"#,
            "no span in it has both",
        ),
        (r#"{"data":{"spans":[]}}"#, "no resourceSpans"),
        (
            r#"{"data":[{"traceID":"1"}]}"#,
            "no trace in \"data\" has \"spans\"",
        ),
        (
            r#"{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}"#,
            "trace not found",
        ),
        (
            r#"{"data":[],"errors":[{"code":404,"msg":"trace not found"}]}"#,
            "trace not found",
        ),
        ("\"text\"", "must be a JSON object"),
        (
            r#"[{"traceId":"1","id":"2","annotations":[{"timestamp":1,"value":"sr","endpoint":{"serviceName":"a"}}]}]"#,
            "Zipkin v1 JSON",
        ),
        (
            r#"[{"traceId":"1","id":"2","binaryAnnotations":[{"key":"k","value":"v"}]}]"#,
            "Zipkin v1 JSON",
        ),
    ] {
        let err = otlp::decode_json(garbage.as_bytes())
            .expect_err(garbage)
            .to_string();
        assert!(err.contains(want), "{garbage}: {err}");
        assert!(err.contains("Zipkin v2 JSON"), "{garbage}: {err}");
    }

    // A file starting with `[` is JSON (it used to be read as protobuf).
    let zipkin = std::fs::read(fixture("zipkin-v2.json")).expect("fixture");
    assert_eq!(Format::sniff(&zipkin), Format::Json);
    assert_eq!(
        Format::sniff(b"  [{\"traceId\":\"1\",\"id\":\"2\"}]\n"),
        Format::Json
    );
    let jaeger = std::fs::read(fixture("jaeger-ui.json")).expect("fixture");
    assert_eq!(Format::sniff(&jaeger), Format::Json);

    // Zipkin and Jaeger documents one after another, and as JSON lines.
    let compact = |name: &str| {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(fixture(name)).expect("f"))
            .expect("json")
            .to_string()
    };
    let both = format!(
        "{}\n{}\n",
        compact("zipkin-v2.json"),
        compact("jaeger-ui.json")
    );
    for format in [Format::Json, Format::JsonLines] {
        let got = otlp::split_requests(both.as_bytes(), format, None);
        let records: Vec<(usize, usize)> = got
            .iter()
            .map(|(line, r)| (*line, r.as_ref().expect("decodes").records()))
            .collect();
        assert_eq!(records, [(1, 7), (2, 6)], "{format:?}");
    }
}

/// One bad span is rejected with its position in the input and counted; the others of the
/// same document are stored.
#[test]
fn a_bad_span_is_rejected_with_its_position_and_the_others_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut ingester = Ingester::new(&db, Default::default());

    let zipkin = r#"[
        {"traceId":"5af7183fb1d4cf5f","id":"1","name":"ok","timestamp":1704067200000000},
        {"traceId":"5af7183fb1d4cf5f","id":"2","name":"bad","timestamp":"yesterday"},
        {"traceId":"5af7183fb1d4cf5f","id":"3","name":"ok too","timestamp":1704067200000001}
    ]"#;
    let report = ingester
        .ingest_bytes(zipkin.as_bytes(), None, "spans.json")
        .expect("ingest");
    assert_eq!((report.stored.spans, report.rejected.spans), (2, 1));
    assert_eq!(report.undecodable, 0);
    let lines: Vec<String> = report.problems.iter().flat_map(|p| p.lines()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("spans.json:1: rejected ")
            && lines[0].ends_with(
                "zipkin span [1].timestamp: expected a number of microseconds, found a string"
            ),
        "{lines:?}"
    );

    let jaeger = r#"{"data":[{"traceID":"6e0c63257de34c92bf9efcd03927272e","processes":{"p1":{"serviceName":"a"}},"spans":[
        {"spanID":"1","operationName":"ok","processID":"p1","startTime":1704067200000000},
        {"spanID":"2","operationName":"ok","processID":"p1","startTime":1704067200000000},
        {"spanID":"3","processID":"p1","startTime":1704067200000000,"references":[{"refType":"CHILD_OF","spanID":"not hex"}]},
        {"spanID":"4","processID":"p1","startTime":1704067200000000,"duration":-5},
        {"spanID":"5","processID":"p1","startTime":1704067200000000,"tags":[{"key":"n","type":"int64","value":1e300}]},
        {"spanID":"6","processID":"p1","startTime":18446744073709551615}
    ]}]}"#;
    let report = ingester
        .ingest_bytes(jaeger.as_bytes(), None, "trace.json")
        .expect("ingest");
    assert_eq!((report.stored.spans, report.rejected.spans), (2, 4));
    let lines: Vec<String> = report.problems.iter().flat_map(|p| p.lines()).collect();
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": jaeger ").map_or(l.as_str(), |(_, r)| r))
        .collect();
    assert_eq!(
        reasons,
        [
            "data[0].spans[2].references[0].spanID: \"not hex\" is not hex",
            "data[0].spans[3].duration: -5 is not a whole, non-negative number of microseconds",
            "data[0].spans[4].tags[0].value: expected a 64-bit integer for type \"int64\", found a number",
            "data[0].spans[5].startTime: 18446744073709551615 microseconds is too large",
        ]
    );
    drop(ingester);
    assert_eq!(count(&scan(&db, Signal::Spans)), 4);
    db.close().expect("close");
}

/// Hostile input never panics: huge numbers, wrong types everywhere, deep nesting.
#[test]
fn hostile_input_is_rejected_not_a_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(otlp::decode_json(deep.as_bytes()).is_err());
    let deep_tag = format!(
        r#"[{{"traceId":"1","id":"2","tags":{{"a":{}1{}}}}}]"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let r = otlp::decode_json(deep_tag.as_bytes()).expect("one rejected span");
    assert_eq!(r.convert().rejected, 1);
    // A number JSON cannot hold fails the document, as any JSON syntax error does.
    assert!(otlp::decode_json(br#"[{"traceId":"1","id":"2","timestamp":1e999}]"#).is_err());
    let values = [
        "null",
        "true",
        "-1",
        "1.5",
        "18446744073709551616",
        "\"x\"",
        "[]",
        "{}",
    ];
    for v in values {
        for field in [
            "traceId",
            "id",
            "parentId",
            "name",
            "kind",
            "timestamp",
            "duration",
            "localEndpoint",
            "remoteEndpoint",
            "annotations",
            "tags",
            "shared",
        ] {
            let json = format!(r#"[{{"traceId":"1","id":"2","{field}":{v}}}]"#);
            let c = otlp::decode_json(json.as_bytes()).expect(&json).convert();
            assert_eq!(c.batch.num_rows() as u64 + c.rejected, 1, "{json}");
        }
        for field in [
            "traceID",
            "spanID",
            "operationName",
            "references",
            "flags",
            "startTime",
            "duration",
            "tags",
            "logs",
            "processID",
            "process",
        ] {
            let json = format!(
                r#"{{"data":[{{"traceID":"1","spans":[{{"spanID":"2","{field}":{v}}}]}}]}}"#
            );
            let c = otlp::decode_json(json.as_bytes()).expect(&json).convert();
            assert_eq!(c.batch.num_rows() as u64 + c.rejected, 1, "{json}");
        }
        let json = format!(
            r#"{{"data":[{{"traceID":"1","processes":{v},"spans":[{{"spanID":"2","processID":"p"}}]}}]}}"#
        );
        let c = otlp::decode_json(json.as_bytes()).expect(&json).convert();
        assert_eq!(c.rejected, 1, "{json}");
    }
}
