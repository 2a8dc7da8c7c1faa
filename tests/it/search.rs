//! Search: `matches` and the search syntax over logs and spans, checked against the same
//! predicates evaluated in Rust over the generated rows (segments and memtable both), and
//! `scry search` on the command line.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;
use scrydb::otlp::{Request, decode_json};
use scrydb::search::Phrase;
use scrydb::sql::search::{SearchRequest, Target};
use scrydb::{Db, Signal};

use crate::common::{BASE, open};

/// One generated log record.
struct Log {
    time: i64,
    service: &'static str,
    severity: i32,
    body: String,
    trace: String,
    region: &'static str,
}

const SERVICES: [&str; 4] = ["checkout", "storage", "frontend", "check-in"];

fn logs(n: usize) -> Vec<Log> {
    (0..n)
        .map(|i| {
            let body = match i % 7 {
                0 => format!("dial tcp 10.0.0.{}:5432: connection refused", i % 5),
                1 => format!("write /var/data{}: disk full", i % 3),
                2 => format!("request req_{i:05} took {} ms", i % 900),
                3 => format!("Retrying after TIMEOUT (attempt {})", i % 4),
                4 => format!("user_{} logged in from 10.{}.0.0", i % 50, i % 3),
                5 => "Verbindung abgelehnt: Zeitüberschreitung".to_string(),
                _ => format!("full disk check passed ({}% used)", i % 100),
            };
            Log {
                time: BASE + i as i64 * 1_000_000,
                service: SERVICES[i % 4],
                severity: [9, 13, 17, 21][(i / 4) % 4],
                body,
                trace: format!("{:032x}", i as u128 + 1),
                region: ["eu-west", "eu-north", "us-east"][i % 3],
            }
        })
        .collect()
}

fn request(logs: &[Log]) -> Request {
    let records: Vec<String> = logs
        .iter()
        .map(|l| {
            serde_json::json!({
                "timeUnixNano": l.time.to_string(),
                "severityNumber": l.severity,
                "body": {"stringValue": l.body},
                "traceId": l.trace,
                "attributes": [{"key": "region", "value": {"stringValue": l.region}}],
            })
            .to_string()
        })
        .collect();
    let json = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{}"}}}}]}},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        logs[0].service,
        records.join(",")
    );
    decode_json(json.as_bytes()).expect("valid OTLP/JSON")
}

/// A store holding `all`: most of it flushed into segments, the rest in the memtable.
fn store(dir: &std::path::Path, all: &[Log]) -> Db {
    let db = open(dir);
    let (flushed, unflushed) = all.split_at(all.len() * 3 / 4);
    for part in [flushed, unflushed] {
        for s in SERVICES {
            let mine: Vec<&Log> = part.iter().filter(|l| l.service == s).collect();
            for chunk in mine.chunks(97) {
                let owned: Vec<Log> = chunk
                    .iter()
                    .map(|l| Log {
                        time: l.time,
                        service: l.service,
                        severity: l.severity,
                        body: l.body.clone(),
                        trace: l.trace.clone(),
                        region: l.region,
                    })
                    .collect();
                let got = db.ingest_otlp(&request(&owned)).expect("ingest");
                assert_eq!(got.rejected, 0);
            }
        }
        if part.as_ptr() == flushed.as_ptr() {
            db.flush().expect("flush");
        }
    }
    db
}

/// The trace ids (hex) of the rows a search returns, in order.
fn traces(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let ids = b
            .column_by_name("trace_id")
            .expect("trace_id")
            .as_fixed_size_binary();
        for i in 0..ids.len() {
            out.push(ids.value(i).iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    out
}

fn times(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("time")
                .expect("time")
                .as_primitive::<TimestampNanosecondType>()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn log_search_matches_the_same_predicates_evaluated_row_by_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = logs(3000);
    let db = store(dir.path(), &all);
    let session = db.session().expect("session");
    fn term(q: &str) -> Phrase {
        Phrase::new(q).expect("tokens")
    }
    type Check = Box<dyn Fn(&Log) -> bool>;
    let (refused, disk_full, timeout) = (term("refused"), term("disk full"), term("timeout"));
    let (ip, abgelehnt) = (term("10.0.0.3"), term("ABGELEHNT"));
    let cases: Vec<(&str, Check)> = vec![
        ("refused", Box::new(move |l| refused.matches(&l.body))),
        (
            "\"disk full\" service:storage",
            Box::new(move |l| disk_full.matches(&l.body) && l.service == "storage"),
        ),
        (
            "severity>=WARN -timeout",
            Box::new(move |l| l.severity >= 13 && !timeout.matches(&l.body)),
        ),
        ("10.0.0.3", Box::new(move |l| ip.matches(&l.body))),
        (
            "abgelehnt OR status:fatal",
            Box::new(move |l| abgelehnt.matches(&l.body) || l.severity >= 21),
        ),
        (
            "service:check* @region:eu*",
            Box::new(|l| l.service.starts_with("check") && l.region.starts_with("eu")),
        ),
        (
            "(full OR disk) -\"disk full\" level:error",
            Box::new(|l| {
                let (full, disk, both) = (term("full"), term("disk"), term("disk full"));
                (full.matches(&l.body) || disk.matches(&l.body))
                    && !both.matches(&l.body)
                    && (17..=20).contains(&l.severity)
            }),
        ),
        ("nosuchword", Box::new(|_| false)),
    ];
    for (query, check) in cases {
        let mut expected: Vec<&Log> = all.iter().filter(|l| check(l)).collect();
        expected.sort_by_key(|l| std::cmp::Reverse(l.time));
        for limit in [5, 100_000] {
            let mut r = SearchRequest::new(query, Target::Logs);
            r.limit = limit;
            let (schema, got) = session.search_blocking(&r).expect(query);
            assert!(schema.field_with_name("body").is_ok());
            let want: Vec<String> = expected
                .iter()
                .take(limit)
                .map(|l| l.trace.clone())
                .collect();
            assert_eq!(traces(&got), want, "{query}, limit {limit}");
            let t = times(&got);
            assert!(t.windows(2).all(|w| w[0] >= w[1]), "{query}: newest first");
        }
    }
    // A time range narrows it: the first second only.
    let mut r = SearchRequest::new("refused", Target::Logs);
    r.from_ns = Some(BASE);
    r.to_ns = Some(BASE + 1_000_000_000);
    r.limit = 10_000;
    let (_, got) = session.search_blocking(&r).expect("range");
    let want: HashSet<String> = all
        .iter()
        .filter(|l| l.time < BASE + 1_000_000_000 && l.body.contains("refused"))
        .map(|l| l.trace.clone())
        .collect();
    assert_eq!(traces(&got).into_iter().collect::<HashSet<_>>(), want);
    assert!(!want.is_empty());
    // A bad query says where.
    let err = session
        .search_blocking(&SearchRequest::new("refused AND (x", Target::Logs))
        .expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("search query, column 13: unclosed parenthesis"),
        "{err}"
    );
    // A field the table does not have.
    let err = session
        .search_blocking(&SearchRequest::new("duration>5ms", Target::Logs))
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("unknown field `duration` for logs"),
        "{err}"
    );
    db.close().expect("close");
}

#[test]
fn span_search_over_names_status_durations_and_attributes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let spans = crate::common::synth(Signal::Spans, 3, 4000, BASE);
    db.append(Signal::Spans, &spans).expect("append");
    db.flush().expect("flush");
    let session = db.session().expect("session");
    for (query, sql) in [
        (
            "status:error duration>=1ms",
            "status_code = 'ERROR' AND duration_ns >= 1000000",
        ),
        (
            "kind:server -status:ok -@no.such.key:x",
            "kind = 'SERVER' AND NOT status_code = 'OK'",
        ),
        (
            "@http.route:/api/c*",
            "(attributes['http.route'] LIKE '/api/c%' OR resource_attributes['http.route'] LIKE '/api/c%')",
        ),
    ] {
        let mut r = SearchRequest::new(query, Target::Spans);
        r.limit = 1_000_000;
        let (_, got) = session.search_blocking(&r).expect(query);
        let want = session
            .sql_blocking(&format!("SELECT count(*) FROM spans WHERE {sql}"))
            .expect("count");
        let want = want[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(crate::common::count(&got) as i64, want, "{query}");
        assert!(want > 0, "{query} matches some of the generated spans");
    }
    db.close().expect("close");
}

#[test]
fn scry_search_prints_matches_with_their_trace_ids_and_points_at_bad_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let all = logs(200);
    store(dir.path(), &all).close().expect("close");
    let run = |args: &[&str]| {
        let db = dir.path().to_string_lossy().into_owned();
        let mut all = vec!["search", "--db", db.as_str()];
        all.extend_from_slice(args);
        crate::common::run_scry(&all)
    };
    let (ok, out, err) = run(&["service:checkout refused", "--limit", "3", "--show-sql"]);
    assert!(ok, "{err}");
    let newest: Vec<&Log> = all
        .iter()
        .rev()
        .filter(|l| l.service == "checkout" && l.body.contains("refused"))
        .take(3)
        .collect();
    assert_eq!(newest.len(), 3);
    for l in &newest {
        assert!(out.contains(&l.trace), "{out}");
    }
    assert!(out.contains("matches(body, 'refused')"), "{out}");
    assert!(out.contains("(3 rows)"), "{out}");
    let (ok, _, err) = run(&["refused AND (x"]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "error: search query, column 13: unclosed parenthesis\n  refused AND (x\n  {}^",
            " ".repeat(12)
        )),
        "{err}"
    );
    let (ok, _, err) = run(&["x", "--since", "soon"]);
    assert!(!ok);
    assert!(err.contains("--since `soon` is not a duration"), "{err}");
}

/// Random text: words of several scripts, ids, numbers, tokens longer than the index keeps
/// (sharing their first 64 bytes), joined by assorted separators.
fn random_text(rng: &mut scrydb_workload::Rng) -> String {
    const WORDS: &[&str] = &[
        "alpha",
        "Beta",
        "GAMMA",
        "delta",
        "Straße",
        "İstanbul",
        "naïve",
        "日本語",
        "данные",
        "x_y_z",
        "0x1f",
        "404",
        "blk_42",
        "retry",
        "Retry",
        "full",
        "disk",
    ];
    let long = "k".repeat(70);
    let n = 1 + rng.below(8) as usize;
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(rng.pick(&[" ", ", ", "-", "/", ":", "=", " — ", "."]));
        }
        match rng.below(10) {
            0 => s.push_str(&format!("{}{}", long, rng.below(3))),
            1 => s.push_str(&format!("id{}", rng.below(5000))),
            _ => s.push_str(rng.pick(WORDS)),
        }
    }
    s
}

/// Sorted `time|body|trace_id` of every row a query returns.
fn result_rows(session: &scrydb::sql::Session, sql: &str) -> Vec<String> {
    crate::common::rows(
        &session
            .sql_blocking(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

/// The term index changes what is read, never what is returned: every query gives the
/// same rows with the index as without it, over realistic log lines (web, HDFS, SSH,
/// kernel, application), random multi-script text with over-long tokens, span names and
/// attributes; segments, a compacted segment and the memtable all take part.
#[test]
fn term_index_returns_exactly_what_a_scan_returns() {
    use scrydb::sql::{Session, SessionOptions};
    use scrydb_workload::Rng;
    use scrydb_workload::synth::realistic_logs;

    let dir = tempfile::tempdir().expect("tempdir");
    // No background compaction: what each segment's index selects is asserted.
    let db = Db::open(
        dir.path(),
        scrydb::Options::default()
            .memtable_size(64 << 20)
            .compaction(false),
    )
    .expect("open");
    let mut rng = Rng::new(11);
    let mut bodies: Vec<String> = Vec::new();
    for round in 0..4 {
        let base = BASE + round * 600_000_000_000;
        let (mut batch, _) = realistic_logs(&mut rng, 6000, base);
        if round == 1 {
            // Random text in place of the bodies of this round.
            let texts: Vec<String> = (0..batch.num_rows())
                .map(|_| random_text(&mut rng))
                .collect();
            let body = batch.schema().index_of("body").expect("body");
            let mut cols = batch.columns().to_vec();
            cols[body] = std::sync::Arc::new(arrow::array::StringArray::from(texts));
            batch = RecordBatch::try_new(batch.schema(), cols).expect("batch");
        }
        let body = batch
            .column_by_name("body")
            .expect("body")
            .as_string::<i32>();
        bodies.extend(body.iter().flatten().map(str::to_string));
        db.append(Signal::Logs, &batch).expect("append");
        db.append(
            Signal::Spans,
            &crate::common::synth(Signal::Spans, 50 + round as u64, 3000, base),
        )
        .expect("append spans");
        if round < 3 {
            db.flush().expect("flush");
        }
    }
    let indexed = Session::new(db.reader()).expect("session");
    let scanned = Session::with_options(
        db.reader(),
        SessionOptions {
            term_index: false,
            ..SessionOptions::default()
        },
    )
    .expect("session");

    // Terms and phrases drawn from the rows themselves (common and rare), plus some that
    // are absent, over-long, or only in the memtable.
    let mut queries: Vec<String> = Vec::new();
    for i in 0..40 {
        let b = &bodies[rng.below(bodies.len() as u64) as usize];
        let toks: Vec<&str> = scrydb::search::tokens(b).collect();
        if toks.is_empty() {
            continue;
        }
        let at = rng.below(toks.len() as u64) as usize;
        let n = if i % 3 == 0 {
            3.min(toks.len() - at)
        } else {
            1
        };
        queries.push(toks[at..at + n].join(" "));
    }
    queries.extend(
        [
            "nosuchtermanywhere",
            &format!("{}1", "K".repeat(70)),
            &"k".repeat(64),
            "connection refused",
            "no space left",
            "İSTANBUL",
            "日本語",
            "blk_42",
        ]
        .map(str::to_string),
    );
    let lit = |q: &str| format!("'{}'", q.replace('\'', "''"));
    let mut conditions: Vec<String> = queries
        .iter()
        .map(|q| format!("matches(body, {})", lit(q)))
        .collect();
    for w in queries.windows(2).step_by(3) {
        conditions.push(format!(
            "(matches(body, {}) OR matches(body, {}))",
            lit(&w[0]),
            lit(&w[1])
        ));
        conditions.push(format!(
            "matches(body, {}) AND NOT matches(body, {})",
            lit(&w[0]),
            lit(&w[1])
        ));
    }
    conditions.extend(
        [
            "attributes['thread.id'] = '7'",
            "attributes['thread.id'] IN ('1', '63', 'none')",
            "attributes['code.function'] = 'handle' AND matches(body, 'refused')",
            "resource_attributes['service.name'] = 'nosuch'",
            "(attributes['thread.id'] = '3' OR matches(body, 'declined'))",
            "matches(body, 'ssh2') AND severity_number >= 17",
        ]
        .map(str::to_string),
    );
    let mut narrowed = 0;
    for c in &conditions {
        for range in ["", " AND time >= to_timestamp_nanos(1764029400000000000)"] {
            let sql = format!("SELECT time, body, trace_id FROM logs WHERE {c}{range}");
            let got = result_rows(&indexed, &sql);
            assert_eq!(got, result_rows(&scanned, &sql), "{sql}");
        }
        let plan = result_rows(&indexed, &format!("EXPLAIN SELECT * FROM logs WHERE {c}"));
        let plan = plan.join("\n");
        if plan.contains("term_index: terms=") {
            narrowed += 1;
        }
    }
    assert!(
        narrowed > conditions.len() / 2,
        "{narrowed} of {}",
        conditions.len()
    );

    // Spans: names, status messages and attributes.
    for c in [
        "matches(name, 'GET')",
        "matches(status_message, 'timeout')",
        "attributes['http.route'] = '/api/cart'",
        "attributes['http.method'] = 'POST' OR matches(name, 'SELECT')",
        "resource_attributes['service.name'] = 'checkout'",
    ] {
        let sql = format!("SELECT span_id, name FROM spans WHERE {c}");
        assert_eq!(
            result_rows(&indexed, &sql),
            result_rows(&scanned, &sql),
            "{sql}"
        );
    }

    // A rare term reads a few blocks, and a term no segment holds reads none.
    let plan = result_rows(
        &indexed,
        "EXPLAIN SELECT * FROM logs WHERE matches(body, 'nosuchtermanywhere')",
    )
    .join("\n");
    assert!(
        plan.contains("term_index: terms=1 segments_pruned="),
        "{plan}"
    );
    assert!(plan.contains("rows_selected=0"), "{plan}");
    assert!(!plan.contains("segments_pruned=0"), "{plan}");
    let plan = result_rows(
        &indexed,
        "EXPLAIN SELECT * FROM logs WHERE matches(body, 'oom') OR matches(body, 'Killed process')",
    )
    .join("\n");
    let selected: u64 = plan
        .split("rows_selected=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{plan}"));
    // Kernel OOM lines are spread thinly over the two segments of generated logs (12,000
    // rows, 12 blocks): most blocks hold one, some none, and those are skipped.
    assert!(selected < 12_000, "{plan}");

    // After a compaction (one merged segment, its index built by the merge) and a rebuild
    // from the rows, the answers stay the same.
    db.flush().expect("flush");
    db.compact().expect("compact");
    let fresh = Session::new(db.reader()).expect("session");
    for c in conditions.iter().take(20) {
        let sql = format!("SELECT time, body, trace_id FROM logs WHERE {c}");
        assert_eq!(
            result_rows(&fresh, &sql),
            result_rows(&scanned, &sql),
            "{sql}"
        );
    }
    assert!(db.rebuild_indexes(true).expect("reindex") > 0);
    let rebuilt = Session::new(db.reader()).expect("session");
    for c in conditions.iter().take(20) {
        let sql = format!("SELECT time, body, trace_id FROM logs WHERE {c}");
        assert_eq!(
            result_rows(&rebuilt, &sql),
            result_rows(&scanned, &sql),
            "{sql}"
        );
    }
    assert!(db.verify().expect("verify").is_ok());
    db.close().expect("close");
}

/// A search newest first with a limit stops reading once it has its rows: the segments are
/// listed newest first and the top-k's dynamic filter on `time` then skips the older ones
/// (and their row groups) by their statistics, so far fewer rows are decoded than match —
/// with the term index and without it — and the answer is the newest matches.
#[test]
fn a_newest_first_search_decodes_a_fraction_of_its_matches() {
    use scrydb::sql::{Session, SessionOptions};
    use scrydb_workload::Rng;
    use scrydb_workload::synth::realistic_logs;

    let dir = tempfile::tempdir().expect("tempdir");
    // No background compaction: the eight segments stay eight.
    let db = Db::open(dir.path(), scrydb::Options::default().compaction(false)).expect("open");
    let mut rng = Rng::new(21);
    // Eight segments a minute apart in one partition, each 5,000 records.
    for i in 0..8 {
        let (b, _) = realistic_logs(&mut rng, 5_000, BASE + i * 60_000_000_000);
        db.append(Signal::Logs, &b).expect("append");
        db.flush().expect("flush");
    }
    let predicate = "matches(body, 'block')";
    for term_index in [true, false] {
        let session = Session::with_options(
            db.reader(),
            SessionOptions {
                term_index,
                ..SessionOptions::default()
            },
        )
        .expect("session");
        let all = result_rows(
            &session,
            &format!("SELECT time FROM logs WHERE {predicate} ORDER BY time DESC"),
        );
        let matches = all.len();
        assert!(matches > 10_000, "{matches}");
        let query = format!("SELECT time FROM logs WHERE {predicate} ORDER BY time DESC LIMIT 10");
        let newest = result_rows(&session, &query);
        let mut want = all.clone();
        want.sort_by(|a, b| b.cmp(a));
        want.truncate(10);
        want.sort();
        assert_eq!(newest, want);
        // What the scan decoded: the Parquet source's output rows in EXPLAIN ANALYZE.
        let plan = session
            .sql_blocking(&format!("EXPLAIN ANALYZE {query}"))
            .expect("explain analyze");
        let text = crate::common::rows(&plan).join("\n");
        // Metrics print humanized: `output_rows=3.33 K`.
        let decoded: f64 = text
            .lines()
            .filter(|l| l.contains("DataSourceExec"))
            .filter_map(|l| {
                let at = l.find("output_rows=")? + "output_rows=".len();
                let value: String = l[at..]
                    .chars()
                    .take_while(|c| *c != ',' && *c != ']')
                    .collect();
                let (number, scale) = match value.split_once(' ') {
                    Some((n, "K")) => (n, 1e3),
                    Some((n, "M")) => (n, 1e6),
                    _ => (value.as_str(), 1.0),
                };
                number.parse::<f64>().ok().map(|n| n * scale)
            })
            .sum();
        assert!(decoded >= 10.0, "{text}");
        assert!(
            decoded * 2.0 < matches as f64,
            "term index {term_index}: decoded {decoded} rows for {matches} matches\n{text}"
        );
    }
}

/// Spans whose attributes hold numbers in every shape a cast meets — integers, decimals,
/// exponents, signs, negative zero, padded, hexadecimal, `NaN`, `inf`, numbers past 2^53,
/// text — plus `seq` (rising with time, so blocks have narrow ranges) and `port`.
fn numeric_spans(rng: &mut scrydb_workload::Rng, n: usize, base: i64, seq0: u64) -> RecordBatch {
    const CODES: &[&str] = &[
        "200",
        "200",
        "201",
        "404",
        "500",
        "503",
        "5e2",
        "500.0",
        "-0",
        "0",
        " 500",
        "NaN",
        "inf",
        "+42",
        "0x1f",
        "1.9",
        "-17",
        "9007199254740993",
        "abc",
        "",
        "1",
        ".5",
    ];
    let batch = crate::common::synth(Signal::Spans, rng.next_u64(), n, base);
    let mut attrs = scrydb::schema::attributes_builder();
    for i in 0..n {
        if !rng.chance(0.1) {
            attrs.keys().append_value("code");
            attrs.values().append_value(rng.pick(CODES));
        }
        attrs.keys().append_value("seq");
        attrs.values().append_value((seq0 + i as u64).to_string());
        attrs.keys().append_value("port");
        attrs
            .values()
            .append_value((1024 + rng.below(64_000)).to_string());
        if rng.chance(0.3) {
            attrs.keys().append_value("lat");
            attrs.values().append_value(format!(
                "{:.4}",
                (rng.below(20_000) as f64 - 10_000.0) / 1e4
            ));
        }
        attrs.append(true).expect("map");
    }
    crate::common::with_column(&batch, "attributes", std::sync::Arc::new(attrs.finish()))
}

/// Numeric comparisons of attributes (`CAST`/`TRY_CAST` to integers or `DOUBLE`, with
/// `<`, `<=`, `>`, `>=`, `=`, `BETWEEN`, the search syntax's `@key>=n`) and event-name
/// searches (`matches(events, …)`, `event:`) read only the blocks the term index allows and
/// return exactly what a scan returns — over segments, a compacted segment and the
/// memtable. (Format 1 indexes, without either, are checked with the fixtures.)
#[test]
fn numeric_ranges_and_event_names_return_exactly_what_a_scan_returns() {
    use scrydb::sql::search::SearchQuery;
    use scrydb::sql::{Session, SessionOptions};

    let dir = tempfile::tempdir().expect("tempdir");
    // No background compaction: what each segment's index selects is asserted.
    let db = Db::open(
        dir.path(),
        scrydb::Options::default()
            .memtable_size(64 << 20)
            .compaction(false),
    )
    .expect("open");
    let mut rng = scrydb_workload::Rng::new(5);
    for round in 0..4u64 {
        let batch = numeric_spans(
            &mut rng,
            5000,
            BASE + round as i64 * 600_000_000_000,
            round * 5000,
        );
        db.append(Signal::Spans, &batch).expect("append");
        if round < 3 {
            db.flush().expect("flush");
        }
    }
    let indexed = Session::new(db.reader()).expect("session");
    let scanned = Session::with_options(
        db.reader(),
        SessionOptions {
            term_index: false,
            ..SessionOptions::default()
        },
    )
    .expect("session");
    let search = |q: &str| {
        SearchQuery::parse(q)
            .expect("parses")
            .to_sql(Target::Spans)
            .expect("compiles")
    };
    let mut conditions: Vec<String> = [
        "TRY_CAST(attributes['code'] AS DOUBLE) >= 500",
        "TRY_CAST(attributes['code'] AS DOUBLE) > 500",
        "TRY_CAST(attributes['code'] AS DOUBLE) = 500",
        "TRY_CAST(attributes['code'] AS DOUBLE) < 0",
        "TRY_CAST(attributes['code'] AS DOUBLE) <= -0.0",
        "TRY_CAST(attributes['code'] AS DOUBLE) > -0.0",
        "TRY_CAST(attributes['code'] AS DOUBLE) >= 0.0",
        "TRY_CAST(attributes['code'] AS DOUBLE) > 1e300",
        "TRY_CAST(attributes['code'] AS DOUBLE) < 'NaN'::double",
        "TRY_CAST(attributes['code'] AS DOUBLE) BETWEEN 400 AND 499",
        "TRY_CAST(attributes['code'] AS BIGINT) = 0",
        "TRY_CAST(attributes['code'] AS BIGINT) = 1",
        "TRY_CAST(attributes['code'] AS BIGINT) >= 9007199254740992",
        "TRY_CAST(attributes['code'] AS INT) > 42",
        "CAST(TRY_CAST(attributes['code'] AS BIGINT) AS DOUBLE) > 499.5",
        "499 < TRY_CAST(attributes['code'] AS DOUBLE)",
        "CAST(attributes['seq'] AS BIGINT) BETWEEN 7000 AND 7100",
        "CAST(attributes['seq'] AS BIGINT) < 50 OR CAST(attributes['seq'] AS BIGINT) > 19990",
        "CAST(attributes['port'] AS BIGINT) > 65000 AND matches(name, 'GET')",
        "TRY_CAST(attributes['lat'] AS DOUBLE) < -0.9999",
        "TRY_CAST(attributes['nosuch'] AS DOUBLE) > 0",
        "TRY_CAST(resource_attributes['code'] AS DOUBLE) > 0",
        "matches(events, 'exception')",
        "matches(events, 'cache miss')",
        "matches(events, 'MISS')",
        "matches(events, 'nosuchevent')",
        "NOT coalesce(matches(events, 'cache'), false)",
        "matches(events, 'exception') OR TRY_CAST(attributes['code'] AS DOUBLE) > 502",
    ]
    .map(str::to_string)
    .to_vec();
    conditions.extend(
        [
            "@code>=500",
            "@seq<100",
            "event:exception",
            "event:\"cache miss\" @port>60000",
        ]
        .map(search),
    );
    let check = |session: &Session, what: &str| {
        for c in &conditions {
            let sql = format!("SELECT span_id, name, attributes['code'] FROM spans WHERE {c}");
            assert_eq!(
                result_rows(session, &sql),
                result_rows(&scanned, &sql),
                "{what}: {sql}"
            );
        }
    };
    check(&indexed, "segments and memtable");
    // Every condition but the negation is one the index understands.
    for c in &conditions {
        let plan =
            result_rows(&indexed, &format!("EXPLAIN SELECT * FROM spans WHERE {c}")).join("\n");
        assert_eq!(
            plan.contains("term_index: terms="),
            !c.starts_with("NOT"),
            "{c}: {plan}"
        );
    }
    assert!(
        !result_rows(
            &scanned,
            "SELECT 1 FROM spans WHERE matches(events, 'exception')"
        )
        .is_empty()
    );

    // The index narrows: a narrow `seq` range reads one segment of the three (rows are
    // sorted by trace id within a minute, so its blocks all span the segment's range), an
    // absent key or event name none.
    let selected = |c: &str| -> u64 {
        let plan =
            result_rows(&indexed, &format!("EXPLAIN SELECT * FROM spans WHERE {c}")).join("\n");
        assert!(plan.contains("term_index: terms="), "{c}: {plan}");
        plan.split("rows_selected=")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{plan}"))
    };
    assert!(
        selected("CAST(attributes['seq'] AS BIGINT) BETWEEN 7000 AND 7100") <= 5000,
        "a narrow range reads one segment"
    );
    assert_eq!(selected("TRY_CAST(attributes['nosuch'] AS DOUBLE) > 0"), 0);
    assert_eq!(selected("matches(events, 'nosuchevent')"), 0);

    // Reindex rebuilds nothing here: every index is of the current format.
    assert_eq!(db.rebuild_indexes(false).expect("reindex"), 0);

    // A compaction builds one index over everything.
    db.flush().expect("flush");
    db.compact().expect("compact");
    check(&Session::new(db.reader()).expect("session"), "compacted");
    assert!(db.verify().expect("verify").is_ok());
    db.close().expect("close");
}
