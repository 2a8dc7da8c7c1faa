//! Queries cannot take the process down: a memory limit with spilling, results that
//! stream, and the `scry sql` command's exit codes, pipes and wide cells.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use futures::StreamExt;
use scrydb::sql::{Error, Session, SessionOptions};
use scrydb::{Db, Signal};

use crate::common::*;

fn store_with_spans(dir: &std::path::Path, n: usize) -> Db {
    let db = Db::open(dir, small_opts()).expect("open");
    db.append(Signal::Spans, &synth(Signal::Spans, 1, n, BASE))
        .expect("append");
    db.flush().expect("flush");
    db
}

#[test]
fn a_query_over_the_memory_limit_fails_and_the_session_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_with_spans(dir.path(), 1_500);
    let session = Session::with_options(
        db.reader(),
        SessionOptions {
            memory_limit: 16 << 20,
            ..SessionOptions::default()
        },
    )
    .expect("session");
    // 2.25M rows of output: collecting them cannot fit in 16 MiB.
    let err = session
        .sql_blocking("SELECT a.span_id, b.name FROM spans a CROSS JOIN spans b")
        .expect_err("over the limit");
    assert!(matches!(err, Error::ResourcesExhausted(_)), "{err}");
    assert!(err.to_string().contains("memory limit"), "{err}");

    // A hash aggregation with a build side larger than the limit fails cleanly too (or
    // spills); either way the session keeps answering.
    let r = session.sql_blocking(
        "SELECT a.span_id, count(*) FROM spans a CROSS JOIN spans b GROUP BY a.span_id, b.span_id",
    );
    if let Err(e) = &r {
        assert!(matches!(e, Error::ResourcesExhausted(_)), "{e}");
    }

    // Streaming the same cross join is fine: rows go out as they are made.
    let rt = scrydb::sql::runtime();
    let mut stream = rt
        .block_on(session.sql_stream("SELECT a.span_id, b.name FROM spans a CROSS JOIN spans b"))
        .expect("stream");
    let mut rows = 0;
    while rows < 100_000 {
        match rt.block_on(stream.next()) {
            Some(b) => rows += b.expect("batch").num_rows(),
            None => break,
        }
    }
    assert!(rows >= 100_000);
    drop(stream);

    // A sort larger than the limit spills to disk and completes.
    let mut sorted = rt
        .block_on(session.sql_stream(
            "SELECT a.name, b.span_id FROM spans a CROSS JOIN (SELECT span_id FROM spans LIMIT 200) b \
             ORDER BY b.span_id, a.name",
        ))
        .expect("stream");
    let mut n = 0;
    while let Some(b) = rt.block_on(sorted.next()) {
        n += b.expect("sort spills instead of failing").num_rows();
    }
    assert_eq!(n, 1_500 * 200);
    drop(sorted);

    let ok = session
        .sql_blocking("SELECT count(*) FROM spans")
        .expect("still answers");
    assert_eq!(count(&ok), 1);
    drop(session);
    db.close().expect("close");
}

fn scry(db: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scry runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("scry ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scry_sql_runs_every_statement_and_reports_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_spans(dir.path(), 100).close().expect("close");

    // Several statements on one line, a failing one, a meta command, and a last statement
    // without ';'.
    let input = "SELECT 1 AS one; SELECT count(*) AS n FROM spans;\nSELECT nosuch FROM spans;\n\\d\nSELECT 'last' AS l";
    let (code, out, err) = scry(dir.path(), &["sql"], input);
    assert_eq!(code, 1, "a failed statement fails the run: {err}");
    for want in ["one", "100", "spans", "metrics", "last"] {
        assert!(out.contains(want), "{want} missing from {out}");
    }
    assert!(err.contains("nosuch"), "{err}");

    let (code, out, _) = scry(dir.path(), &["sql", "SELECT 1 AS a; SELECT 2 AS b"], "");
    assert_eq!(code, 0);
    assert!(out.contains(" a") && out.contains(" b"), "{out}");

    let (code, _, err) = scry(dir.path(), &["sql"], "\\q\nSELECT nosuch;");
    assert_eq!(code, 0, "\\q stops before the bad statement: {err}");

    // A cell wider than any format width, in every output format.
    for format in ["table", "csv", "json"] {
        let (code, out, err) = scry(
            dir.path(),
            &[
                "sql",
                "--format",
                format,
                "SELECT repeat('w', 120000) AS wide",
            ],
            "",
        );
        assert_eq!(code, 0, "{format}: {err}");
        assert!(out.contains(&"w".repeat(120_000)), "{format}");
    }
    // A 120k-character string literal.
    let literal = format!("SELECT length('{}') AS n", "q".repeat(120_000));
    let (code, out, err) = scry(dir.path(), &["sql", &literal], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("120000"), "{out}");
}

#[test]
fn scry_sql_stops_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    store_with_spans(dir.path(), 3_000).close().expect("close");
    for format in ["table", "csv", "json"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scry"))
            .arg("--db")
            .arg(dir.path())
            .args([
                "sql",
                "--format",
                format,
                "SELECT * FROM spans a, spans b LIMIT 200000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scry runs");
        // Read a little, then close the pipe (like `| head -1`).
        let mut first = [0u8; 64];
        let mut stdout = child.stdout.take().expect("stdout");
        stdout.read_exact(&mut first).expect("some output");
        drop(stdout);
        let out = child.wait_with_output().expect("scry ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{format}: {err}");
        assert_eq!(out.status.code(), Some(0), "{format}: {err}");
    }
}

#[test]
fn deeply_nested_expressions_get_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_with_spans(dir.path(), 10);
    let sum = format!("SELECT {} AS n", vec!["1"; 20_000].join("+"));
    let ors = (0..5_000)
        .map(|i| format!("name = 'op{i}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let deep_or = format!("SELECT count(*) FROM spans WHERE {ors}");
    let explained = format!("EXPLAIN {deep_or}");
    for q in [&sum, &deep_or, &explained] {
        let err = db.sql_blocking(q).expect_err("too deep");
        assert!(err.to_string().contains("nest more than 1000"), "{err}");
    }
    let nested = format!("SELECT {}1{} AS n", "(".repeat(5_000), ")".repeat(5_000));
    let err = db.sql_blocking(&nested).expect_err("parser depth limit");
    assert!(
        err.to_string().to_lowercase().contains("recursion"),
        "{err}"
    );
    // Moderate depth still works, and the database keeps answering.
    let q = format!("SELECT {} AS n", vec!["1"; 200].join("+"));
    assert_eq!(count(&db.sql_blocking(&q).expect("200 deep")), 1);
    let ins = (0..5_000)
        .map(|i| format!("'op{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let q = format!("SELECT count(*) FROM spans WHERE name IN ({ins})");
    assert_eq!(
        count(&db.sql_blocking(&q).expect("a long IN list is flat")),
        1
    );
    db.close().expect("close");
}

#[test]
fn commands_keep_working_when_their_output_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    store_with_spans(&store, 3_000).close().expect("close");
    let otlp = dir.path().join("gen.jsonl");
    let otlp_arg = otlp.display().to_string();
    let runs: [&[&str]; 3] = [
        &["info"],
        &["gen", "--spans", "2000", "--out", &otlp_arg],
        &["ingest", &otlp_arg],
    ];
    for args in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scry"))
            .arg("--db")
            .arg(&store)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scry runs");
        // Close the pipe before scry writes anything (like `| head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("scry ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    // The ingest went on and stored everything with nobody reading its report.
    let db = Db::open(&store, small_opts()).expect("open");
    let n = single_i64(
        &db.sql_blocking("SELECT count(*) FROM spans")
            .expect("count"),
    );
    assert!(n >= 3_000 + 2_000, "{n}");
    db.close().expect("close");
}
