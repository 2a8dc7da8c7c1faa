//! Differential SQL test: the same questions asked of ScryDB and of DuckDB reading ScryDB's
//! own Parquet segment files must give the same answers.
//!
//! DuckDB comes from PyPI (`tests/requirements.txt`), installed by the README's test command
//! (`tests/run.sh`), which sets `SCRY_PYTHON`. Without it the test fails with a message
//! saying so; `SCRY_SKIP_DUCKDB=1` skips it on purpose.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use scrydb::sql::{Session, ids_as_hex};
use scrydb::{Signal, otlp};

use crate::common::*;

pub(crate) fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SCRY_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
    venv.exists().then_some(venv)
}

/// A floating-point value as both sides compare it: 9 significant digits (integers exact,
/// as text; NULL as `NULL`).
fn norm_number(x: f64) -> String {
    format!("{x:.8e}")
}

fn scry_rows(session: &Session, sql: &str) -> Vec<Vec<String>> {
    let batches: Vec<RecordBatch> = session
        .sql_blocking(sql)
        .unwrap_or_else(|e| panic!("ScryDB: {sql}: {e}"));
    let opts = FormatOptions::default();
    let mut rows = Vec::new();
    for b in batches.iter().map(ids_as_hex) {
        for r in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(r) {
                        return "NULL".to_string();
                    }
                    let numeric = c.data_type().is_numeric();
                    let text = ArrayFormatter::try_new(c.as_ref(), &opts)
                        .expect("formattable")
                        .value(r)
                        .to_string();
                    if numeric && matches!(c.data_type(), DataType::Float32 | DataType::Float64) {
                        norm_number(text.parse().expect("a number"))
                    } else {
                        text
                    }
                })
                .collect();
            rows.push(row);
        }
    }
    rows.sort();
    rows
}

fn duck_rows(dir: &Path, queries: &[&str]) -> Vec<Vec<Vec<String>>> {
    let python = python().expect("checked by the caller");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/duckdb_query.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let input = serde_json::json!({"dir": dir, "queries": queries});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python finishes");
    assert!(
        out.status.success(),
        "DuckDB failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|rows| {
            let mut rows: Vec<Vec<String>> = rows
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| {
                    row.as_array()
                        .expect("row")
                        .iter()
                        .map(|v| match v {
                            serde_json::Value::Null => "NULL".to_string(),
                            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
                                n.to_string()
                            }
                            serde_json::Value::Number(n) => {
                                norm_number(n.as_f64().expect("a number"))
                            }
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            rows.sort();
            rows
        })
        .collect()
}

/// (ScryDB SQL, DuckDB SQL): the same question in each dialect.
const QUERIES: &[(&str, &str)] = &[
    (
        "SELECT count(*), count(DISTINCT trace_id), CAST(min(time) AS BIGINT), CAST(max(end_time) AS BIGINT) FROM spans",
        "SELECT count(*), count(DISTINCT trace_id), epoch_ns(min(time)), epoch_ns(max(end_time)) FROM spans",
    ),
    (
        // RED per service per minute.
        "SELECT service_name, CAST(date_bin(interval '1 minute', time) AS BIGINT) / 1000000000 AS minute, \
         count(*) AS requests, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
         avg(duration_ns) AS avg_ns, max(duration_ns) FROM spans GROUP BY 1, 2",
        "SELECT service_name, epoch(time_bucket(interval '1 minute', time))::BIGINT AS minute, \
         count(*) AS requests, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
         avg(duration_ns) AS avg_ns, max(duration_ns) FROM spans GROUP BY 1, 2",
    ),
    (
        // Top error operations.
        "SELECT service_name, name, count(*) AS c FROM spans WHERE status_code = 'ERROR' \
         GROUP BY 1, 2 ORDER BY c DESC, 1, 2 LIMIT 10",
        "SELECT service_name, name, count(*) AS c FROM spans WHERE status_code = 'ERROR' \
         GROUP BY 1, 2 ORDER BY c DESC, 1, 2 LIMIT 10",
    ),
    (
        // Logs of error traces.
        "SELECT l.service_name, l.severity_number, count(*) FROM logs l \
         WHERE l.trace_id IN (SELECT trace_id FROM spans WHERE status_code = 'ERROR') GROUP BY 1, 2",
        "SELECT l.service_name, l.severity_number, count(*) FROM logs l \
         WHERE l.trace_id IN (SELECT trace_id FROM spans WHERE status_code = 'ERROR') GROUP BY 1, 2",
    ),
    (
        "SELECT span_id, parent_span_id, name, duration_ns FROM spans \
         WHERE trace_id = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1'",
        "SELECT lower(hex(span_id)), lower(hex(parent_span_id)), name, duration_ns FROM spans \
         WHERE trace_id = unhex('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1')",
    ),
    (
        "SELECT attributes['http.route'] AS route, count(*) FROM spans GROUP BY 1",
        "SELECT attributes['http.route'] AS route, count(*) FROM spans GROUP BY 1",
    ),
    (
        "SELECT name, metric_type, count(*), sum(value), sum(count), sum(sum) FROM metrics GROUP BY 1, 2",
        "SELECT name, metric_type, count(*), sum(value), sum(count), sum(sum) FROM metrics GROUP BY 1, 2",
    ),
    (
        // Exemplars joined to their spans.
        "SELECT s.service_name, count(*) FROM (SELECT unnest(exemplars) AS e FROM metrics) m \
         JOIN spans s ON s.trace_id = m.e['trace_id'] AND s.span_id = m.e['span_id'] GROUP BY 1",
        "SELECT s.service_name, count(*) FROM (SELECT unnest(exemplars) AS e FROM metrics) m \
         JOIN spans s ON s.trace_id = m.e.trace_id AND s.span_id = m.e.span_id GROUP BY 1",
    ),
    (
        // Logs by severity in a window.
        "SELECT severity_text, count(*) FROM logs \
         WHERE time >= '2025-11-25T10:00:00Z' AND time < '2025-11-25T11:00:00Z' GROUP BY 1",
        "SELECT severity_text, count(*) FROM logs \
         WHERE time >= TIMESTAMPTZ '2025-11-25T10:00:00Z' AND time < TIMESTAMPTZ '2025-11-25T11:00:00Z' GROUP BY 1",
    ),
];

#[test]
fn same_answers_as_duckdb_on_the_same_files() {
    if std::env::var_os("SCRY_SKIP_DUCKDB").is_some() {
        eprintln!("skipped: SCRY_SKIP_DUCKDB is set");
        return;
    }
    assert!(
        python().is_some(),
        "DuckDB is not installed: run the README's test command (tests/run.sh), which \
         installs it into target/venv, or set SCRY_PYTHON to a Python with duckdb"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    // Synthetic data across three partitions, and the SQL fixture (known traces).
    for (i, base) in [
        BASE + 10 * HOUR,
        BASE + 10 * HOUR + 1_800_000_000_000,
        BASE + 12 * HOUR,
    ]
    .into_iter()
    .enumerate()
    {
        db.append(Signal::Spans, &synth(Signal::Spans, i as u64, 4000, base))
            .expect("append");
        db.append(Signal::Logs, &synth(Signal::Logs, i as u64, 2000, base))
            .expect("append");
        db.append(
            Signal::Metrics,
            &synth(Signal::Metrics, i as u64, 500, base),
        )
        .expect("append");
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sql/dataset.jsonl");
    let bytes = std::fs::read(&fixture).expect("fixture");
    for (_, r) in otlp::split_requests(&bytes, otlp::Format::JsonLines, None) {
        db.ingest_otlp(&r.expect("decodes")).expect("ingest");
    }
    db.flush().expect("flush");
    let session = Session::new(db.reader()).expect("session");

    let duck = duck_rows(
        dir.path(),
        &QUERIES.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
    );
    for ((scry_sql, _), want) in QUERIES.iter().zip(duck) {
        let got = scry_rows(&session, scry_sql);
        assert!(!got.is_empty(), "{scry_sql}: no rows");
        assert_eq!(got, want, "ScryDB and DuckDB differ on: {scry_sql}");
    }
    drop(session);
    db.close().expect("close");
}
