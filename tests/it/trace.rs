//! The per-segment trace index: exact lookups across spans, logs and exemplars, identical
//! with and without the index, in SQL too; damaged indexes fall back and can be rebuilt.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use scrydb::sql::Session;
use scrydb::{Db, Signal, otlp};

use crate::common::*;

/// A store with several segments per signal (two partitions, several flushes) of several
/// row groups each, the SQL fixture's traces, and some unflushed rows.
fn store(dir: &Path) -> Db {
    let db = Db::open(dir, small_opts().row_group_size(1024)).expect("open");
    for i in 0..4u64 {
        let base = BASE + (i as i64 % 2) * 2 * HOUR + i as i64 * 1_000_000_000;
        db.append(Signal::Spans, &synth(Signal::Spans, i, 3000, base))
            .expect("append");
        db.append(Signal::Logs, &synth(Signal::Logs, i, 1500, base))
            .expect("append");
        db.append(Signal::Metrics, &synth(Signal::Metrics, i, 300, base))
            .expect("append");
        db.flush().expect("flush");
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sql/dataset.jsonl");
    let bytes = std::fs::read(fixture).expect("fixture");
    for (_, r) in otlp::split_requests(&bytes, otlp::Format::JsonLines, None) {
        db.ingest_otlp(&r.expect("decodes")).expect("ingest");
    }
    db.flush().expect("flush");
    db.append(
        Signal::Spans,
        &synth(Signal::Spans, 99, 500, BASE + 3 * HOUR),
    )
    .expect("append");
    db
}

/// Trace ids to look up: some of every signal (flushed and not), the fixture's, absent ones.
fn sample_ids(db: &Db) -> Vec<[u8; 16]> {
    let mut ids = Vec::new();
    let snap = db.snapshot();
    for signal in [Signal::Spans, Signal::Logs] {
        for b in snap.scan(signal, None).expect("scan").iter() {
            let col = b
                .column_by_name("trace_id")
                .expect("trace_id")
                .as_fixed_size_binary();
            for r in (0..b.num_rows()).step_by(211) {
                if col.is_valid(r) {
                    ids.push(col.value(r).try_into().expect("16 bytes"));
                }
            }
        }
    }
    for b in snap
        .scan(Signal::Metrics, None)
        .expect("scan")
        .iter()
        .take(2)
    {
        let ex = b
            .column_by_name("exemplars")
            .expect("exemplars")
            .as_list::<i32>();
        let tid = ex
            .values()
            .as_struct()
            .column(3)
            .as_fixed_size_binary()
            .clone();
        for i in (0..tid.len()).step_by(101) {
            if tid.is_valid(i) {
                ids.push(tid.value(i).try_into().expect("16 bytes"));
            }
        }
    }
    ids.push(scrydb::parse_trace_id("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1").expect("hex"));
    ids.push([0x42; 16]);
    ids.push([0xff; 16]);
    ids
}

fn all_rows(t: &scrydb::Trace) -> [Vec<String>; 3] {
    [rows(&t.spans), rows(&t.logs), rows(&t.metrics)]
}

#[test]
fn lookups_are_identical_with_and_without_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store(dir.path());
    let snap = db.snapshot();
    let ids = sample_ids(&db);
    assert!(ids.len() > 20);
    let mut found = [0usize; 3];
    for id in &ids {
        let with = snap.trace(*id, true).expect("indexed lookup");
        let without = snap.trace(*id, false).expect("scan lookup");
        assert_eq!(all_rows(&with), all_rows(&without), "trace {id:02x?}");
        for (f, s) in found.iter_mut().zip(Signal::ALL) {
            *f += with.rows(s);
        }
    }
    assert!(
        found.iter().all(|n| *n > 0),
        "every signal found: {found:?}"
    );
    let a = db
        .trace(scrydb::parse_trace_id("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1").expect("hex"))
        .expect("trace");
    assert_eq!(
        (
            a.rows(Signal::Spans),
            a.rows(Signal::Logs),
            a.rows(Signal::Metrics)
        ),
        (3, 1, 1)
    );
    assert!(db.trace([0x42; 16]).expect("absent").is_empty());
    // The same after compaction merged the segments into larger ones (more row groups).
    let before: Vec<_> = ids
        .iter()
        .map(|id| all_rows(&snap.trace(*id, true).expect("lookup")))
        .collect();
    drop(snap);
    db.compact().expect("compact");
    let snap = db.snapshot();
    for (id, want) in ids.iter().zip(&before) {
        let with = snap.trace(*id, true).expect("indexed lookup");
        assert_eq!(&all_rows(&with), want, "trace {id:02x?} after compaction");
    }
    drop(snap);
    db.close().expect("close");
}

fn sql_rows(session: &Session, sql: &str) -> Vec<String> {
    let batches: Vec<RecordBatch> = session
        .sql_blocking(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&batches)
}

#[test]
fn sql_lookups_go_through_the_index_with_identical_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store(dir.path());
    let with = Session::new(db.reader()).expect("session");
    let without = Session::with_trace_index(db.reader(), false).expect("session");
    let hex: Vec<String> = sample_ids(&db)
        .iter()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    for h in hex.iter().step_by(3) {
        for sql in [
            format!("SELECT * FROM spans WHERE trace_id = '{h}'"),
            format!("SELECT * FROM logs WHERE trace_id = '{}'", h.to_uppercase()),
            format!(
                "SELECT * FROM spans WHERE trace_id IN ('{h}', '{}')",
                hex[0]
            ),
        ] {
            assert_eq!(sql_rows(&with, &sql), sql_rows(&without, &sql), "{sql}");
        }
    }
    // EXPLAIN shows the index at work: most segments skipped without being opened.
    let plan = sql_rows(
        &with,
        "EXPLAIN SELECT * FROM spans WHERE trace_id = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1'",
    )
    .join("\n");
    let segments = db.snapshot().segments(Signal::Spans, None).len();
    assert!(segments >= 4, "{segments}");
    assert!(
        plan.contains(&format!("segments_pruned={}", segments - 1))
            && plan.contains("rows_selected=3"),
        "{plan}"
    );
    // So do lists of ids, which DataFusion keeps as `IN` or (up to 3 ids) turns into an
    // `OR` of equalities, and such an `OR` written out.
    let (a, absent) = ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "f".repeat(32));
    for filter in [
        format!("trace_id IN ('{a}', '{absent}')"),
        format!(
            "trace_id IN ('{a}', '{absent}', '{}', '{}', '{}')",
            "e".repeat(32),
            "d".repeat(32),
            "c".repeat(32)
        ),
        format!("trace_id = '{absent}' OR trace_id = '{a}'"),
    ] {
        let plan = sql_rows(
            &with,
            &format!("EXPLAIN SELECT * FROM spans WHERE {filter}"),
        )
        .join("\n");
        assert!(
            plan.contains(&format!("segments_pruned={}", segments - 1))
                && plan.contains("rows_selected=3"),
            "{filter}: {plan}"
        );
    }
    drop((with, without));
    db.close().expect("close");
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for signal in Signal::ALL {
        for part in std::fs::read_dir(dir.join(signal.name())).expect("signal dir") {
            // Retention may remove a partition's directory between the two listings.
            let Ok(files) = std::fs::read_dir(part.expect("part").path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|x| x == "tidx") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_damaged_index_falls_back_to_a_scan_and_can_be_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store(dir.path());
    let ids = sample_ids(&db);
    let expected: Vec<_> = ids
        .iter()
        .map(|id| all_rows(&db.snapshot().trace(*id, false).expect("scan")))
        .collect();
    db.close().expect("close");

    // Every live segment has an index, and open keeps them (they are not orphans).
    let files = index_files(dir.path());
    let db = open(dir.path());
    let segments: usize = Signal::ALL
        .iter()
        .map(|s| db.snapshot().segments(*s, None).len())
        .sum();
    assert_eq!(files.len(), segments);
    assert_eq!(index_files(dir.path()), files);
    db.close().expect("close");

    // Damage one index and delete another.
    let mut bytes = std::fs::read(&files[0]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&files[0], &bytes).expect("write");
    std::fs::remove_file(&files[1]).expect("remove");

    let db = open(dir.path());
    for (id, want) in ids.iter().zip(&expected) {
        assert_eq!(&all_rows(&db.trace(*id).expect("lookup")), want);
    }
    assert_eq!(db.rebuild_indexes(false).expect("rebuild"), 2);
    assert_eq!(db.rebuild_indexes(false).expect("nothing left"), 0);
    assert_eq!(index_files(dir.path()), files);
    for (id, want) in ids.iter().zip(&expected) {
        assert_eq!(&all_rows(&db.trace(*id).expect("lookup")), want);
    }
    db.close().expect("close");
}

#[test]
fn retention_removes_indexes_with_their_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 100, BASE))
        .expect("append");
    db.append(
        Signal::Spans,
        &synth(Signal::Spans, 2, 100, BASE + 3 * HOUR),
    )
    .expect("append");
    db.flush().expect("flush");
    assert_eq!(index_files(dir.path()).len(), 2);
    db.drop_partitions_before(BASE + HOUR).expect("drop");
    let start = std::time::Instant::now();
    while index_files(dir.path()).len() != 1 {
        assert!(
            start.elapsed().as_secs() < 20,
            "index of the dropped segment stays"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    db.close().expect("close");
}

/// The output of `scry trace <id>`, which must succeed.
fn scry_trace(db: &Path, id: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(db)
        .args(["trace", id])
        .output()
        .expect("scry runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn scry_trace_draws_the_waterfall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    // A root, a child, a child that starts before its parent (clock skew), and a span whose
    // parent is missing; an error; logs under spans.
    let t = "1234567890abcdef1234567890abcdef";
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"api"}}}}]}},"scopeSpans":[{{"spans":[
        {{"traceId":"{t}","spanId":"0000000000000001","name":"root","startTimeUnixNano":"1000000000","endTimeUnixNano":"1100000000"}},
        {{"traceId":"{t}","spanId":"0000000000000002","parentSpanId":"0000000000000001","name":"child","startTimeUnixNano":"1010000000","endTimeUnixNano":"1050000000","status":{{"code":2,"message":"boom"}}}},
        {{"traceId":"{t}","spanId":"0000000000000003","parentSpanId":"0000000000000001","name":"skewed","startTimeUnixNano":"990000000","endTimeUnixNano":"1020000000"}},
        {{"traceId":"{t}","spanId":"0000000000000004","parentSpanId":"00000000000000ff","name":"orphan","startTimeUnixNano":"1060000000","endTimeUnixNano":"1070000000"}}
        ]}}]}}]}}"#
    );
    db.ingest_otlp(&otlp::decode_json(json.as_bytes()).expect("decodes"))
        .expect("ingest");
    let logs = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1020000000","severityNumber":17,"body":{{"stringValue":"it broke"}},"traceId":"{t}","spanId":"0000000000000002"}}]}}]}}]}}"#
    );
    db.ingest_otlp(&otlp::decode_json(logs.as_bytes()).expect("decodes"))
        .expect("ingest");
    db.close().expect("close");

    let text = scry_trace(dir.path(), &t.to_uppercase());
    for want in [
        "root",
        "child [ERROR: boom]",
        "skewed",
        "orphan (parent 00000000000000ff missing)",
        "ERROR it broke",
        "4 spans, 1 services (api), total 110.00ms, 1 error, 1 with a missing parent; 1 logs",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // Children are indented under their parent.
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .expect("line")
            .to_string()
    };
    let indent = |l: String| l.split('|').nth(2).map(|s| s.len() - s.trim_start().len());
    assert!(indent(line("child")) > indent(line("root")));

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args(["trace", "ffffffffffffffffffffffffffffffff"])
        .output()
        .expect("scry runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn span_trees_of_broken_traces_keep_every_span_and_scry_trace_draws_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    // A parent loop (1 → 2 → 1) with a child under it, a span that is its own parent, a
    // span ending before it starts, and the widest possible timestamps.
    let t = "00000000000000000000000000c0ffee";
    let span = |id: &str, parent: &str, start: &str, end: &str| {
        format!(
            r#"{{"traceId":"{t}","spanId":"{id}","parentSpanId":"{parent}","name":"s{}","startTimeUnixNano":"{start}","endTimeUnixNano":"{end}"}}"#,
            &id[15..]
        )
    };
    let spans = [
        span("0000000000000001", "0000000000000002", "1000", "5000"),
        span("0000000000000002", "0000000000000001", "2000", "4000"),
        span("0000000000000003", "0000000000000002", "2500", "3000"),
        span(
            "0000000000000004",
            "0000000000000004",
            "0",
            "9223372036854775807",
        ),
        span("0000000000000005", "", "9223372036854775807", "1"),
    ];
    let json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"api"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let got = db
        .ingest_otlp(&otlp::decode_json(json.as_bytes()).expect("decodes"))
        .expect("ingest");
    assert_eq!(got.rejected, 0, "{:?}", got.errors);
    let id = scrydb::parse_trace_id(t).expect("hex");
    let tree = db.trace(id).expect("lookup").tree().expect("tree");
    let names: Vec<(&str, usize)> = tree
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.depth))
        .collect();
    assert_eq!(
        names,
        [("s4", 0), ("s1", 0), ("s2", 1), ("s3", 2), ("s5", 0)]
    );
    let flagged: Vec<&str> = tree
        .nodes
        .iter()
        .filter(|n| n.cycle_broken)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(flagged, ["s4", "s1"]);
    assert_eq!(tree.duration_ns(), i64::MAX);
    let s5 = &tree.nodes[4];
    assert!(s5.ends_before_start && s5.duration_ns == 0);
    // s1 (1000..5000) minus s2 (2000..4000).
    assert_eq!(tree.nodes[1].self_ns, 2000);
    db.close().expect("close");

    let text = scry_trace(dir.path(), t);
    for want in [
        "s1 (parent chain loops; cut here)",
        "s5 (ends before it starts)",
        "5 spans, 1 services (api)",
        "2 parent loop(s) cut",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

/// A trace of 10,004 spans: a gateway root (0–100 ms), an `auth` call (1–10 ms), a `cache`
/// call overlapping it (2–6 ms, in its shadow), and 10,000 sequential `db query` calls
/// (10 ms on, 9 µs apart, 8 µs each), one of them an error.
fn big_trace_json(t: &str) -> String {
    const MS: i64 = 1_000_000;
    let base = 1_764_028_800_000_000_000i64;
    let span = |id: u64, parent: Option<u64>, svc: &str, name: &str, s: i64, e: i64, err: bool| {
        format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{t}","spanId":"{id:016x}"{},"name":"{name}","startTimeUnixNano":"{}","endTimeUnixNano":"{}"{}}}]}}]}}"#,
            parent.map_or(String::new(), |p| format!(r#","parentSpanId":"{p:016x}""#)),
            base + s,
            base + e,
            if err { r#","status":{"code":2}"# } else { "" }
        )
    };
    let mut spans = vec![
        span(1, None, "gateway", "GET /checkout", 0, 100 * MS, false),
        span(2, Some(1), "auth", "verify", MS, 10 * MS, false),
        span(3, Some(1), "cache", "get", 2 * MS, 6 * MS, false),
    ];
    for i in 0..10_000i64 {
        let s = 10 * MS + i * 9_000;
        spans.push(span(
            100 + i as u64,
            Some(1),
            "db",
            "query",
            s,
            s + 8_000,
            i == 5_000,
        ));
    }
    format!(r#"{{"resourceSpans":[{}]}}"#, spans.join(","))
}

#[test]
fn critical_path_in_the_library_sql_and_scry_trace() {
    const MS: i64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let t = "00000000000000000000000000b16b16";
    let got = db
        .ingest_otlp(&otlp::decode_json(big_trace_json(t).as_bytes()).expect("decodes"))
        .expect("ingest");
    assert_eq!(got.rejected, 0);
    let id = scrydb::parse_trace_id(t).expect("hex");
    let tree = db.trace(id).expect("lookup").tree().expect("tree");
    let path = tree.critical_path();
    assert_eq!(path.total_ns(), 100 * MS);
    let on = |name: &str| {
        let i = tree
            .nodes
            .iter()
            .position(|n| n.name == name)
            .expect("span");
        path.contribution[i]
    };
    // The cache call ran in auth's shadow; auth and every query are on the path.
    assert_eq!(on("get"), 0);
    assert_eq!(on("verify"), 9 * MS);
    let queries: i64 = tree
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.name == "query")
        .map(|(i, _)| path.contribution[i])
        .sum();
    assert_eq!(queries, 10_000 * 8_000);
    assert_eq!(on("GET /checkout"), 100 * MS - 9 * MS - queries);

    // SQL: the same path and the per-service statistics, flushed or not.
    for flushed in [false, true] {
        if flushed {
            db.flush().expect("flush");
        }
        let rows = |sql: &str| values(&db.sql_blocking(sql).expect("sql"));
        assert_eq!(
            rows(&format!(
                "SELECT count(*), sum(critical_ns), round(sum(critical_share), 6), \
                 min(step), max(step) FROM critical_path('{t}')"
            )),
            ["10002|100000000|1.0|1|10002"]
        );
        assert_eq!(
            rows(&format!(
                "SELECT service_name, name, critical_ns FROM critical_path('{t}') WHERE step <= 2 \
                 ORDER BY step"
            )),
            [
                format!("gateway|GET /checkout|{}", 100 * MS - 9 * MS - queries),
                format!("auth|verify|{}", 9 * MS)
            ]
        );
        assert_eq!(
            rows(&format!(
                "SELECT service_name, spans, errors, critical_ns, trace_spans, trace_services, \
                 trace_errors, depth, duration_ns, orphans, root_service FROM trace_stats('{t}')"
            )),
            [
                format!("db|10000|1|{queries}|10003|4|1|2|100000000|0|gateway"),
                format!(
                    "gateway|1|0|{}|10003|4|1|2|100000000|0|gateway",
                    100 * MS - 9 * MS - queries
                ),
                format!("auth|1|0|{}|10003|4|1|2|100000000|0|gateway", 9 * MS),
                "cache|1|0|0|10003|4|1|2|100000000|0|gateway".to_string(),
            ]
        );
        assert!(rows("SELECT * FROM critical_path('ffffffffffffffffffffffffffffffff')").is_empty());
    }
    let err = db
        .sql_blocking("SELECT * FROM critical_path('nothex')")
        .expect_err("bad id");
    assert!(
        err.to_string().contains("not a 32-digit hex trace id"),
        "{err}"
    );
    db.close().expect("close");

    // The waterfall folds the 10,000 queries around the error, marks the path and says the
    // share per service; --all draws every span.
    let scry = |extra: &[&str]| {
        let mut args = vec!["--db", dir.path().to_str().expect("utf-8"), "trace", t];
        args.extend_from_slice(extra);
        let (ok, out, err) = crate::common::run_scry(&args);
        assert!(ok, "{err}");
        out
    };
    let text = scry(&["--critical-path"]);
    assert!(text.lines().count() < 30, "{text}");
    for want in [
        "⋯ 4997 more db query spans",
        "⋯ 4996 more db query spans",
        "on the critical path",
        "query [ERROR]",
        "critical path: 10002 spans",
        "by service: db 80%, gateway 11%, auth 9%",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(scry(&["--all"]).lines().count() > 10_003);
}
