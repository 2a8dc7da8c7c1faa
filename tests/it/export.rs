//! Files out (`scry export`): stored rows exported as OTLP re-ingest into identical rows, as
//! OTLP/JSON lines and as length-prefixed protobuf; export by trace id; bad predicates,
//! missing traces, rows OTLP cannot express; the CLI.

use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use scrydb::otlp::export::{self, ExportFormat, ExportOptions, Exported};
use scrydb::otlp::ingest::{IngestOptions, IngestReport, Ingester};
use scrydb::sql::export::{Selection, export_blocking};
use scrydb::{Db, Error, Signal};

use crate::common::*;

/// Traces of the `export-*.json` fixtures.
const T1: &str = "5b8efff798038103d269b633813fc60c";
const T2: &str = "0af7651916cd43dd8448eb211c80319c";
/// Only a log record and span links carry this one.
const T3: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/otlp")
        .join(name)
}

/// The fixtures that cover every column of every table (the `export-*` ones), plus the
/// specification's examples.
const FIXTURES: &[&str] = &[
    "export-spans.json",
    "export-logs.json",
    "export-metrics.json",
    "trace.json",
    "events.json",
    "logs.json",
    "metrics.json",
];

fn ingest_files(db: &Db, names: &[&str]) -> IngestReport {
    let mut ingester = Ingester::new(db, IngestOptions::default());
    for name in names {
        ingester
            .ingest_file(&fixture(name), None)
            .expect("fixture ingests");
    }
    let report = ingester.finish();
    assert!(report.is_clean(), "{:?}", report.problems);
    report
}

fn ingest_bytes(db: &Db, bytes: &[u8]) -> IngestReport {
    let mut ingester = Ingester::new(db, IngestOptions::default());
    ingester
        .ingest_bytes(bytes, None, "export")
        .expect("export ingests");
    let report = ingester.finish();
    assert!(report.is_clean(), "{:?}", report.problems);
    report
}

/// The store every test exports from: all fixtures, flushed to Parquet, then the
/// export-* fixtures once more in the memtable (so both read paths are exported).
fn source_store(dir: &Path) -> Db {
    let db = open(dir);
    let report = ingest_files(&db, FIXTURES);
    assert!(report.stored.spans >= 6 && report.stored.logs >= 12 && report.stored.metrics >= 12);
    db.flush().expect("flush");
    ingest_files(&db, &FIXTURES[..3]);
    db
}

fn export_all(db: &Db, format: ExportFormat, max_records: usize) -> (Vec<u8>, Exported) {
    let session = db.session().expect("session");
    let mut out = Vec::new();
    let mut total = Exported::default();
    for signal in Signal::ALL {
        let options = ExportOptions {
            format,
            max_records,
            ..ExportOptions::default()
        };
        let (bytes, exported) =
            export_blocking(session, &Selection::predicate(signal, "true"), out, options)
                .expect("export");
        out = bytes;
        total.records.add(signal, exported.records.get(signal));
        total.requests += exported.requests;
        total.bytes += exported.bytes;
    }
    (out, total)
}

/// Every row rendered column by column, rows sorted by their whole rendering: equal
/// multisets of rows give equal vectors.
fn sorted_columns(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<String>>) {
    let opts = FormatOptions::default().with_null("∅");
    let mut names = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for b in batches {
        names = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable"))
            .collect();
        for r in 0..b.num_rows() {
            rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows.sort();
    let columns = (0..names.len())
        .map(|c| rows.iter().map(|r| r[c].clone()).collect())
        .collect();
    (names, columns)
}

fn assert_same_rows(what: &str, want: &[RecordBatch], got: &[RecordBatch]) {
    assert_eq!(count(want), count(got), "{what}: rows");
    let (names, want_cols) = sorted_columns(want);
    let (_, got_cols) = sorted_columns(got);
    for ((name, w), g) in names.iter().zip(&want_cols).zip(&got_cols) {
        assert_eq!(w, g, "{what}: column `{name}` differs");
    }
    assert_eq!(rows(want), rows(got), "{what}: rows");
}

fn assert_same_store(a: &Db, b: &Db) {
    for signal in Signal::ALL {
        assert_same_rows(signal.name(), &scan(a, signal), &scan(b, signal));
    }
}

#[test]
fn every_row_of_every_table_round_trips_as_json_lines_and_protobuf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = source_store(&dir.path().join("source"));
    let total: usize = Signal::ALL.iter().map(|s| count(&scan(&source, *s))).sum();
    for (format, max_records) in [
        (ExportFormat::JsonLines, 1000),
        (ExportFormat::JsonLines, 3),
        (ExportFormat::Protobuf, 1000),
        (ExportFormat::Protobuf, 2),
    ] {
        let (bytes, exported) = export_all(&source, format, max_records);
        assert_eq!(exported.records.total() as usize, total, "{format:?}");
        assert_eq!(exported.bytes as usize, bytes.len());
        if max_records < 10 {
            assert!(exported.requests as usize >= total / max_records);
        }
        if format == ExportFormat::JsonLines {
            let lines: Vec<&str> = std::str::from_utf8(&bytes)
                .expect("utf-8")
                .lines()
                .collect();
            assert_eq!(lines.len() as u64, exported.requests);
            for line in &lines {
                let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
                assert!(v.is_object());
            }
        }
        let copy_dir = dir.path().join(format!("copy-{format:?}-{max_records}"));
        let copy = open(&copy_dir);
        let report = ingest_bytes(&copy, &bytes);
        assert_eq!(report.stored, exported.records);
        assert_same_store(&source, &copy);
        // And once more through Parquet.
        copy.flush().expect("flush");
        assert_same_store(&source, &copy);
        copy.close().expect("close");
    }
    source.close().expect("close");
}

#[test]
fn json_lines_follow_the_otlp_json_encoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    ingest_files(&db, &["export-spans.json", "export-metrics.json"]);
    let (bytes, _) = export_all(&db, ExportFormat::JsonLines, 1000);
    let text = String::from_utf8(bytes).expect("utf-8");
    for want in [
        // Ids as lowercase hex, 64-bit integers as strings, enums as numbers.
        format!(r#""traceId":"{T1}""#),
        r#""spanId":"eee19b7ec3c1b174""#.into(),
        r#""startTimeUnixNano":"1764028800000000000""#.into(),
        r#""kind":2"#.into(),
        r#""status":{"code":2,"message":"payment failed"}"#.into(),
        r#""aggregationTemporality":2"#.into(),
        r#""isMonotonic":true"#.into(),
        r#""asInt":"1200""#.into(),
        r#""bucketCounts":["1","4","5"]"#.into(),
        r#""resourceSpans""#.into(),
        r#""scopeSpans""#.into(),
        r#""schemaUrl":"https://opentelemetry.io/schemas/1.24.0""#.into(),
        // Attribute values are their stored strings; one without a value has none.
        r#"{"key":"host.cores","value":{"stringValue":"8"}}"#.into(),
        r#"{"key":"no.value"}"#.into(),
        r#"{"key":"empty.string","value":{"stringValue":""}}"#.into(),
    ] {
        assert!(text.contains(&want), "{want} not in {text}");
    }
    // The spans of one resource and scope are grouped: the first resource's first scope
    // holds both of its spans.
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    let resources = first["resourceSpans"].as_array().expect("resources");
    assert_eq!(resources.len(), 3, "three distinct resources");
    let checkout = resources
        .iter()
        .find(|r| r["schemaUrl"] == "https://opentelemetry.io/schemas/1.24.0")
        .expect("the checkout resource");
    let scopes = checkout["scopeSpans"].as_array().expect("scopes");
    assert_eq!(scopes.len(), 3);
    let named = scopes
        .iter()
        .find(|s| s["scope"]["name"] == "io.opentelemetry.http")
        .expect("named scope");
    assert_eq!(named["spans"].as_array().map(Vec::len), Some(2));
    db.close().expect("close");
}

#[test]
fn export_by_trace_id_is_that_traces_spans_and_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = open(&dir.path().join("source"));
    ingest_files(&source, FIXTURES);
    let session = source.session().expect("session");
    for (n, ids) in [vec![T1], vec![T1, T2], vec![T3]].into_iter().enumerate() {
        let parsed: Vec<[u8; 16]> = ids
            .iter()
            .map(|h| scrydb::parse_trace_id(h).expect("id"))
            .collect();
        let (bytes, exported) = export_blocking(
            session,
            &Selection::Traces(parsed),
            Vec::new(),
            ExportOptions::default(),
        )
        .expect("export");
        let list = ids
            .iter()
            .map(|h| format!("'{h}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let want_spans = source
            .sql_blocking(&format!("SELECT * FROM spans WHERE trace_id IN ({list})"))
            .expect("spans");
        let want_logs = source
            .sql_blocking(&format!("SELECT * FROM logs WHERE trace_id IN ({list})"))
            .expect("logs");
        assert_eq!(
            exported.records.spans as usize,
            count(&want_spans),
            "{ids:?}"
        );
        assert_eq!(exported.records.logs as usize, count(&want_logs), "{ids:?}");
        assert_eq!(
            exported.records.metrics, 0,
            "metric points are not exported by trace"
        );
        let copy = open(&dir.path().join(format!("copy-{n}")));
        ingest_bytes(&copy, &bytes);
        assert_same_rows("spans", &want_spans, &scan(&copy, Signal::Spans));
        assert_same_rows("logs", &want_logs, &scan(&copy, Signal::Logs));
        assert_eq!(count(&scan(&copy, Signal::Metrics)), 0);
        copy.close().expect("close");
    }
    // T1 has four spans and two log records in the export fixtures, one of each in the
    // specification's examples.
    let t1 = scrydb::parse_trace_id(T1).expect("id");
    let (_, exported) = export_blocking(
        session,
        &Selection::Traces(vec![t1]),
        Vec::new(),
        ExportOptions::default(),
    )
    .expect("export");
    assert_eq!((exported.records.spans, exported.records.logs), (5, 3));
    source.close().expect("close");
}

#[test]
fn a_missing_trace_exports_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    ingest_files(&db, FIXTURES);
    let (bytes, exported) = export_blocking(
        db.session().expect("session"),
        &Selection::Traces(vec![[0x11; 16]]),
        Vec::new(),
        ExportOptions::default(),
    )
    .expect("a trace that is not there is not an error");
    assert!(bytes.is_empty());
    assert_eq!((exported.records.total(), exported.requests), (0, 0));
    db.close().expect("close");
}

#[test]
fn bad_predicates_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    ingest_files(&db, FIXTURES);
    let session = db.session().expect("session");
    for (signal, bad, says) in [
        (Signal::Spans, "duration_ns >", "export --where over spans"),
        (
            Signal::Logs,
            "true; DROP TABLE logs",
            "export --where over logs",
        ),
        (
            Signal::Spans,
            "a = 1) OR (1 = 1",
            "export --where over spans",
        ),
        (Signal::Metrics, "no_such_column = 1", "no_such_column"),
    ] {
        let e = export_blocking(
            session,
            &Selection::predicate(signal, bad),
            Vec::new(),
            ExportOptions::default(),
        )
        .expect_err(bad);
        assert!(
            matches!(e, scrydb::sql::Error::Query(_)),
            "{bad}: {e:?} is a query error"
        );
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
    // Predicates over the other tables select from them.
    let (_, exported) = export_blocking(
        session,
        &Selection::predicate(Signal::Metrics, "metric_type = 'summary'"),
        Vec::new(),
        ExportOptions::default(),
    )
    .expect("export");
    assert_eq!(exported.records.metrics, 2, "the two summary points");
    db.close().expect("close");
}

#[test]
fn rows_otlp_cannot_express_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    ingest_files(&db, &["export-spans.json", "export-metrics.json"]);
    let spans = scan(&db, Signal::Spans).remove(0);
    let n = spans.num_rows();
    let mut times: Vec<i64> = vec![1; n];
    times[n - 1] = -5;
    let negative = with_column(
        &spans,
        "time",
        std::sync::Arc::new(
            arrow::array::TimestampNanosecondArray::from(times).with_timezone("UTC"),
        ) as ArrayRef,
    );
    // `duration_ns` is derived from the times when it is left out.
    let at = negative.schema().index_of("duration_ns").expect("column");
    let mut negative = negative;
    negative.remove_column(at);
    let e = export::requests(Signal::Spans, &negative, &ExportOptions::default())
        .expect_err("a time before 1970");
    match &e {
        Error::InvalidBatch {
            signal,
            column,
            row,
            ..
        } => assert_eq!(
            (*signal, column.as_str(), *row),
            (Signal::Spans, "time", Some(n - 1))
        ),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("before 1970"), "{e}");
    // Nothing of a failing batch is written.
    let mut writer = export::OtlpWriter::new(Vec::new(), ExportOptions::default());
    assert!(writer.write_batch(Signal::Spans, &negative).is_err());
    let (out, exported) = writer.finish().expect("finish");
    assert!(out.is_empty() && exported.requests == 0);

    // A number point with both value and value_int.
    let metrics = scan(&db, Signal::Metrics).remove(0);
    let both = with_column(
        &metrics,
        "value_int",
        std::sync::Arc::new(Int64Array::from(vec![Some(1); metrics.num_rows()])) as ArrayRef,
    );
    let e = export::requests(Signal::Metrics, &both, &ExportOptions::default())
        .expect_err("value and value_int");
    assert!(
        matches!(&e, Error::InvalidBatch { column, .. } if column == "value"),
        "{e}"
    );
    db.close().expect("close");
}

#[test]
fn scry_export_writes_files_scry_ingest_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let mut args = vec![
        "--db".to_string(),
        store.display().to_string(),
        "ingest".into(),
    ];
    args.extend(FIXTURES.iter().map(|f| fixture(f).display().to_string()));
    let (ok, _, err) = run_scry(&args);
    assert!(ok, "{err}");
    let db_arg = |p: &Path| vec!["--db".to_string(), p.display().to_string()];

    // One trace, to a file.
    let file = dir.path().join("t1.jsonl");
    let mut a = db_arg(&store);
    a.extend([
        "export".into(),
        T1.to_uppercase(),
        "-o".into(),
        file.display().to_string(),
    ]);
    let (ok, out, err) = run_scry(&a);
    assert!(ok, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("exported 5 spans, 3 log records, 0 data points"),
        "{err}"
    );
    let copy = dir.path().join("copy");
    let mut a = db_arg(&copy);
    a.extend(["ingest".into(), file.display().to_string()]);
    let (ok, _, err) = run_scry(&a);
    assert!(ok, "{err}");

    // Every metric, as protobuf on standard output.
    let mut a = db_arg(&store);
    a.extend(
        [
            "export", "--where", "true", "--signal", "metrics", "--format", "protobuf",
        ]
        .map(String::from),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .args(&a)
        .output()
        .expect("scry runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.first(), Some(&0), "length-prefixed");
    let pb = dir.path().join("metrics.pb");
    std::fs::write(&pb, &out.stdout).expect("write");
    let mut a = db_arg(&copy);
    a.extend(["ingest".into(), pb.display().to_string()]);
    let (ok, _, err) = run_scry(&a);
    assert!(ok, "{err}");

    let (source, copied) = (
        Db::open_read_only(&store, small_opts()).expect("open"),
        Db::open_read_only(&copy, small_opts()).expect("open"),
    );
    assert_same_rows(
        "metrics",
        &scan(&source, Signal::Metrics),
        &scan(&copied, Signal::Metrics),
    );
    let t1_spans = source
        .sql_blocking(&format!("SELECT * FROM spans WHERE trace_id = '{T1}'"))
        .expect("spans");
    assert_same_rows("spans", &t1_spans, &scan(&copied, Signal::Spans));

    // A bad predicate, a bad id, a missing trace: non-zero exit with a message.
    for (extra, says) in [
        (
            vec!["--where", "duration_ns >"],
            "export --where over spans",
        ),
        (vec!["not-an-id"], "not 32 hex digits"),
        (
            vec!["11111111111111111111111111111111"],
            "no span or log record of trace",
        ),
    ] {
        let mut a = db_arg(&store);
        a.push("export".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        let (ok, _, err) = run_scry(&a);
        assert!(!ok, "{extra:?} fails");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    // A bad predicate leaves an existing output file as it was.
    let before = std::fs::read(&file).expect("read");
    let mut a = db_arg(&store);
    a.extend(["export", "--where", "duration_ns >", "-o"].map(String::from));
    a.push(file.display().to_string());
    let (ok, _, _) = run_scry(&a);
    assert!(!ok);
    assert_eq!(std::fs::read(&file).expect("read"), before, "not truncated");
}
