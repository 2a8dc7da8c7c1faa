//! The library's OTLP ingester (`scrydb::otlp::ingest`): streams read incrementally with
//! every problem placed at its `source:line`, exact reports, progress, and rows counted as
//! stored only once they are.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use scrydb::otlp::Format;
use scrydb::otlp::ingest::{IngestOptions, IngestReport, Ingester, Problem};
use scrydb::{Db, Error, Signal};

use crate::common::*;

fn compact(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/otlp")
        .join(name);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    serde_json::to_string(&v).expect("compact")
}

/// A span request with one valid span and one whose trace id is too short.
const HALF_BAD: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok","startTimeUnixNano":"1","endTimeUnixNano":"2"},{"traceId":"5b8e","spanId":"eee19b7ec3c1b174","name":"bad","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;

fn rows(db: &Db, signal: Signal) -> u64 {
    count(&scan(db, signal)) as u64
}

#[test]
fn jsonl_streams_past_a_bad_line_with_exact_counts_and_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let (trace, logs, metrics) = (
        compact("trace.json"),
        compact("logs.json"),
        compact("metrics.json"),
    );
    // Line 3 does not decode, line 5 holds a rejected span, line 6 is blank.
    let jsonl =
        format!("{trace}\n{logs}\n{{\"resourceSpans\": 7}}\n{metrics}\n{HALF_BAD}\n\n{trace}\n");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let problems = Arc::new(Mutex::new(Vec::new()));
    let found = problems.clone();
    let db_ref = &db;
    let mut ingester = Ingester::new(&db, IngestOptions::default().batch_rows(2))
        .on_progress(move |p| {
            // What is counted as stored is there for every reader already.
            let visible: u64 = Signal::ALL.iter().map(|s| rows(db_ref, *s)).sum();
            assert!(
                visible >= p.stored,
                "{} stored, {visible} visible",
                p.stored
            );
            seen.lock()
                .expect("lock")
                .push((p.requests, p.bytes_read, p.stored, p.accepted));
        })
        .on_problem(move |p| found.lock().expect("lock").push(p.to_string()));
    let report = ingester
        .ingest_reader(jsonl.as_bytes(), Some(Format::JsonLines), "batch.jsonl")
        .expect("ingest");
    assert_eq!(report.requests, 6);
    assert_eq!(report.undecodable, 1);
    assert_eq!(
        (
            report.stored.spans,
            report.stored.logs,
            report.stored.metrics
        ),
        (3, 1, 4)
    );
    assert_eq!(report.rejected.spans, 1);
    assert_eq!(report.rejected.total(), 1);
    assert_eq!(report.bytes, jsonl.len() as u64);
    assert!(!report.is_clean());
    let at: Vec<String> = report
        .problems
        .iter()
        .map(|p| match p {
            Problem::Undecodable { at, .. } | Problem::Rejected { at, .. } => at.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(at, ["batch.jsonl:3", "batch.jsonl:5"]);
    assert!(
        report.problems[0]
            .to_string()
            .starts_with("batch.jsonl:3: invalid OTLP payload"),
        "{}",
        report.problems[0]
    );
    match &report.problems[1] {
        Problem::Rejected {
            signal,
            count,
            errors,
            ..
        } => {
            assert_eq!((*signal, *count), (Signal::Spans, 1));
            assert_eq!(
                errors[0].to_string(),
                "resource_spans[0].scope_spans[0].spans[1]: trace_id is 2 bytes, not 16"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        report.problems[1].lines(),
        [
            "batch.jsonl:5: rejected resource_spans[0].scope_spans[0].spans[1]: trace_id is 2 bytes, not 16"
        ]
    );
    assert_eq!(
        *problems.lock().expect("lock"),
        at.iter()
            .zip(&report.problems)
            .map(|(_, p)| p.to_string())
            .collect::<Vec<_>>()
    );
    // Progress after every request and at the end, growing; rows stored along the way
    // (batches of 2 rows), not only at the end.
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 7);
    assert!(
        calls
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2)
    );
    assert!(calls[..5].iter().any(|c| c.2 > 0), "{calls:?}");
    assert_eq!(
        calls.last().map(|c| (c.0, c.1, c.2, c.3)),
        Some((6, jsonl.len() as u64, 8, 8))
    );
    let total = ingester.finish();
    assert_eq!(total, report);
    assert_eq!(
        (
            rows(&db, Signal::Spans),
            rows(&db, Signal::Logs),
            rows(&db, Signal::Metrics)
        ),
        (3, 1, 4)
    );
    db.close().expect("close");
}

#[test]
fn multi_document_json_and_totals_over_several_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let pretty = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/otlp")
                .join(name),
        )
        .expect("fixture")
    };
    // Three pretty-printed documents, the middle one with a syntax error.
    let (trace, logs) = (pretty("trace.json"), pretty("logs.json"));
    let broken = "{\n  \"resourceSpans\": [}\n";
    let json = format!("{trace}\n{logs}{trace}");
    let mut ingester = Ingester::new(&db, IngestOptions::default());
    let first = ingester
        .ingest_bytes(json.as_bytes(), None, "ok.json")
        .expect("ingest");
    assert_eq!(
        (first.requests, first.stored.spans, first.stored.logs),
        (3, 2, 1)
    );
    assert!(first.is_clean());

    // A document whose brackets do not match ends the stream: the one before it is stored,
    // the error names the line where it is.
    let file = dir.path().join("broken.json");
    let content = format!("{logs}{broken}{trace}");
    std::fs::write(&file, &content).expect("write");
    let second = ingester.ingest_file(&file, None).expect("ingest");
    assert_eq!(
        (second.requests, second.undecodable, second.stored.logs),
        (2, 1, 1)
    );
    let at = content.find("[}").expect("the error") + 1;
    let line = 1 + content[..at].matches('\n').count();
    let msg = second.problems[0].to_string();
    assert!(
        msg.starts_with(&format!("{}:{line}: invalid OTLP payload", file.display())),
        "{msg}"
    );

    let total = ingester.report().clone();
    assert_eq!(total.requests, 5);
    assert_eq!((total.stored.spans, total.stored.logs), (2, 2));
    assert_eq!(total.undecodable, 1);
    assert_eq!(total.bytes, first.bytes + second.bytes);
    assert_eq!(total.problems.len(), 1);
    drop(ingester);
    db.close().expect("close");
}

/// Yields `data`, then fails.
struct FailingReader {
    data: std::io::Cursor<Vec<u8>>,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.data.read(buf)? {
            0 => Err(std::io::Error::other("connection reset")),
            n => Ok(n),
        }
    }
}

#[test]
fn a_stream_that_fails_keeps_what_was_read_and_says_which_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let trace = compact("trace.json");
    let mut ingester = Ingester::new(&db, IngestOptions::default());
    let reader = FailingReader {
        data: std::io::Cursor::new(format!("{trace}\n{trace}\n").into_bytes()),
    };
    let err = ingester
        .ingest_reader(reader, None, "<stdin>")
        .expect_err("the stream fails");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("<stdin>") && err.to_string().contains("connection reset"),
        "{err}"
    );
    assert_eq!(ingester.report().stored.spans, 2);
    assert_eq!(rows(&db, Signal::Spans), 2);
    drop(ingester);
    db.close().expect("close");
}

#[test]
fn single_requests_protobuf_streams_and_problem_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut ingester = Ingester::new(&db, IngestOptions::default().max_problems(2));
    let req = scrydb::otlp::decode_json(HALF_BAD.as_bytes()).expect("decodes");
    for _ in 0..3 {
        let got = ingester.ingest_request(&req).expect("stored");
        assert_eq!((got.accepted, got.rejected), (1, 1));
    }
    let r: &IngestReport = ingester.report();
    assert_eq!((r.requests, r.stored.spans, r.rejected.spans), (3, 3, 3));
    assert_eq!(r.problems.len(), 2, "only the first problems are kept");
    assert_eq!(
        r.problems[1]
            .to_string()
            .split(':')
            .take(2)
            .collect::<Vec<_>>(),
        ["request", "2"]
    );

    // A length-prefixed protobuf stream through a reader.
    let mut stream = Vec::new();
    for name in ["trace.binpb", "metrics.binpb"] {
        let m = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/otlp")
                .join(name),
        )
        .expect("fixture");
        stream.extend_from_slice(&(m.len() as u32).to_be_bytes());
        stream.extend_from_slice(&m);
    }
    let got = ingester
        .ingest_reader(&stream[..], None, "proto")
        .expect("ingest");
    assert_eq!(
        (got.requests, got.stored.spans, got.stored.metrics),
        (2, 1, 4)
    );
    assert_eq!(rows(&db, Signal::Spans), 4);
    drop(ingester);
    db.close().expect("close");
}

/// One span per line of `spans`, each `{...}` being the span's members after the ids.
fn spans_request(spans: &[&str]) -> String {
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

const GOOD_SPAN: &str = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok","startTimeUnixNano":"1","endTimeUnixNano":"2"}"#;

/// A value of the wrong type inside one record (a number where an id string belongs, a
/// bare `NaN`, an id of the wrong length) rejects that record with its position; the
/// other records of the request are stored and the summary counts the rejected ones.
#[test]
fn json_type_errors_reject_the_record_not_the_request() {
    let json = spans_request(&[
        GOOD_SPAN,
        r#"{"traceId":12345,"spanId":"eee19b7ec3c1b174","name":"number id","startTimeUnixNano":"1","endTimeUnixNano":"2"}"#,
        r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"nan","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"x","value":{"doubleValue":NaN}}]}"#,
        r#"{"traceId":"5b8e","spanId":"eee19b7ec3c1b174","name":"short id","startTimeUnixNano":"1","endTimeUnixNano":"2"}"#,
        GOOD_SPAN,
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut ingester = Ingester::new(&db, IngestOptions::default());
    let r = ingester
        .ingest_bytes(json.as_bytes(), None, "req.json")
        .expect("ingest");
    assert_eq!((r.requests, r.undecodable), (1, 0), "{:?}", r.problems);
    assert_eq!(
        (r.stored.spans, r.rejected.spans),
        (2, 3),
        "{:?}",
        r.problems
    );
    let lines: Vec<String> = r.problems.iter().flat_map(|p| p.lines()).collect();
    let text = lines.join("\n");
    for (k, what) in [(1, "traceId"), (2, "NaN"), (3, "trace_id")] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("spans[{k}]")) && l.contains(what)),
            "span {k} ({what}) not reported with its position:\n{text}"
        );
    }
    drop(ingester);
    assert_eq!(rows(&db, Signal::Spans), 2);
    db.close().expect("close");

    // The CLI's summary counts them, and exits non-zero.
    let file = dir.path().join("req.json");
    std::fs::write(&file, &json).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .args(["--db", &dir.path().join("cli").to_string_lossy(), "ingest"])
        .arg(&file)
        .env_remove("SCRY_DB")
        .output()
        .expect("scry runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("3 rejected"), "{text}");
}

/// A length-prefixed protobuf file whose last message is cut short loses only that
/// message, with no `--signal` needed, and says so.
#[test]
fn a_truncated_last_protobuf_message_loses_only_that_message() {
    let m = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp/trace.binpb"),
    )
    .expect("fixture");
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend_from_slice(&(m.len() as u32).to_be_bytes());
        stream.extend_from_slice(&m);
    }
    stream.truncate(stream.len() - m.len() / 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let mut ingester = Ingester::new(&db, IngestOptions::default());
    let r = ingester
        .ingest_bytes(&stream, None, "cut.binpb")
        .expect("ingest");
    assert_eq!((r.requests, r.undecodable), (3, 1), "{:?}", r.problems);
    assert_eq!(r.stored.spans, 2 * (r.stored.spans / 2));
    assert!(r.stored.spans > 0);
    let text = r.problems[0].to_string();
    assert!(
        text.contains("message 3") && text.contains("truncated"),
        "{text}"
    );
    drop(ingester);
    db.close().expect("close");
}

#[test]
fn a_raised_stop_flag_ends_the_read_at_a_request_boundary_with_exact_counts() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let trace = compact("trace.json");
    let input: String = (0..20).map(|_| format!("{trace}\n")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let raise = stop.clone();
    let mut ingester = Ingester::new(&db, IngestOptions::default().batch_rows(1))
        .stop_when(stop.clone())
        .on_progress(move |p| {
            // Stop after the fifth request, as a Ctrl-C would.
            if p.requests == 5 {
                raise.store(true, Ordering::SeqCst);
            }
        });
    let report = ingester
        .ingest_reader(input.as_bytes(), Some(Format::JsonLines), "ctrl-c")
        .expect("ingest");
    assert!(report.stopped);
    assert_eq!(report.requests, 5);
    assert_eq!(report.stored.spans, rows(&db, Signal::Spans));
    assert!(report.stored.spans > 0);
    // A stopped ingester reads nothing more.
    let again = ingester
        .ingest_reader(input.as_bytes(), Some(Format::JsonLines), "later")
        .expect("ingest");
    assert!(again.stopped && again.requests == 0);
    assert!(ingester.finish().stopped);
    db.close().expect("close");
}

#[test]
fn scry_ingest_interrupted_reports_exactly_what_it_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let file = dir.path().join("big.jsonl");
    let trace = compact("trace.json");
    let line = format!("{trace}\n");
    std::fs::write(&file, line.repeat(40_000)).expect("write input");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(&store)
        .arg("ingest")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("scry runs");
    // Wait until something is stored (read-only opens work beside the writer), then
    // interrupt as Ctrl-C does.
    let started = std::time::Instant::now();
    loop {
        let stored = Db::open_read_only(&store, small_opts())
            .ok()
            .map(|db| rows(&db, Signal::Spans))
            .unwrap_or(0);
        if stored > 0 || started.elapsed() > std::time::Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = child.wait_with_output().expect("scry ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The summary line `spans <n> spans stored, ...` is what is in the store.
    let reported: u64 = stdout
        .lines()
        .find(|l| l.starts_with("spans "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stdout}{stderr}"));
    let db = Db::open_read_only(&store, small_opts()).expect("open");
    assert_eq!(rows(&db, Signal::Spans), reported, "{stdout}{stderr}");
    if stdout.contains("interrupted") {
        assert!(!out.status.success());
        assert!(reported < 40_000 * 2, "{stdout}");
    }
}
