//! Log patterns: grouping accuracy of the miner against the ground-truth templates of
//! generated system logs, and `log_patterns` counting every line of its windows exactly —
//! from pattern files, from segments straddling a window's edge, from the memtable, after
//! reopening, compaction, a lost or damaged pattern file, and through SQL.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, StringArray, TimestampNanosecondArray};
use scrydb::search::log_patterns::{LogPattern, PatternChange, pattern_path};
use scrydb::search::patterns::{Merger, Miner, Tokens, WILDCARD, grouping_accuracy};
use scrydb::{Db, Options, Signal, TimeRange};
use scrydb_workload::Rng;
use scrydb_workload::synth::realistic_logs;

use crate::common::{BASE, HOUR};

const MINUTE: i64 = 60_000_000_000;

/// (service, body) of every row of a logs batch.
fn lines(batch: &RecordBatch) -> Vec<(String, String)> {
    let service = arrow::compute::cast(
        batch.column_by_name("service_name").expect("service"),
        &arrow::datatypes::DataType::Utf8,
    )
    .expect("cast");
    let service = service.as_string::<i32>();
    let body = batch
        .column_by_name("body")
        .expect("body")
        .as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| (service.value(i).to_string(), body.value(i).to_string()))
        .collect()
}

/// The miner groups generated web, HDFS, SSH, kernel and application lines as their
/// templates do — above Drain's published 0.86 average — mining them whole, and mining
/// them in pieces (one miner per segment) that a query merges.
#[test]
fn mined_groups_match_the_ground_truth_templates() {
    let mut rng = Rng::new(5);
    let (batch, truth) = realistic_logs(&mut rng, 40_000, BASE);
    let lines = lines(&batch);
    // The true group of a line: its template, per service (the miner keeps services apart).
    let truth: Vec<(&str, usize)> = lines
        .iter()
        .zip(&truth)
        .map(|((s, _), &t)| (s.as_str(), t))
        .collect();

    let mut whole = Miner::new();
    let ids: Vec<u32> = lines.iter().map(|(s, b)| whole.add(s, b)).collect();
    let ga = grouping_accuracy(&ids, &truth);
    assert!(ga >= 0.95, "grouping accuracy {ga} mining all lines");

    let mut merger = Merger::new();
    let mut merged = Vec::new();
    for piece in lines.chunks(5_000) {
        let mut m = Miner::new();
        let local: Vec<u32> = piece.iter().map(|(s, b)| m.add(s, b)).collect();
        let to_merged: Vec<u32> = (0..m.len() as u32)
            .map(|id| merger.add(m.service(id), &m.template(id)))
            .collect();
        merged.extend(local.iter().map(|&id| to_merged[id as usize]));
    }
    let ga = grouping_accuracy(&merged, &truth);
    assert!(
        ga >= 0.95,
        "grouping accuracy {ga} mining in pieces and merging"
    );
}

/// Whether `body` fits `template` position by position (`<*>` fits anything).
fn fits(template: &str, body: &str) -> bool {
    let mut t = Tokens::default();
    t.parse(body);
    let words: Vec<&str> = template.split(' ').filter(|w| !w.is_empty()).collect();
    words.len() == t.len()
        && words
            .iter()
            .zip(t.iter())
            .all(|(w, x)| *w == WILDCARD || *w == x)
}

/// `batch` with its times replaced.
fn with_times(batch: &RecordBatch, times: Vec<i64>) -> RecordBatch {
    let mut cols = batch.columns().to_vec();
    let at = batch.schema().index_of("time").expect("time");
    cols[at] = Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC"));
    RecordBatch::try_new(batch.schema(), cols).expect("batch")
}

/// `batch` with its bodies replaced.
fn with_bodies(batch: &RecordBatch, bodies: Vec<String>) -> RecordBatch {
    let mut cols = batch.columns().to_vec();
    let at = batch.schema().index_of("body").expect("body");
    cols[at] = Arc::new(StringArray::from(bodies));
    RecordBatch::try_new(batch.schema(), cols).expect("batch")
}

struct Row {
    time: i64,
    service: String,
    body: String,
}

/// Every pattern's count and baseline count equal the rows of its service in each window
/// that fit its template, and every row in a window is counted by exactly one pattern.
fn check_counts(patterns: &[LogPattern], rows: &[Row], window: TimeRange, baseline: TimeRange) {
    let mut counted: HashMap<usize, usize> = HashMap::new();
    for (k, p) in patterns.iter().enumerate() {
        let (mut n, mut b) = (0, 0);
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for (i, r) in rows.iter().enumerate() {
            if r.service != p.service || !fits(&p.template, &r.body) {
                continue;
            }
            if window.contains(r.time) {
                n += 1;
                first = first.min(r.time);
                last = last.max(r.time);
                *counted.entry(i).or_default() += 1;
            }
            if baseline.contains(r.time) {
                b += 1;
            }
        }
        assert_eq!((p.count, p.baseline_count), (n, b), "pattern {k}: {p:?}");
        if n > 0 {
            assert_eq!(
                (p.first_seen, p.last_seen),
                (Some(first), Some(last)),
                "{p:?}"
            );
        }
    }
    let in_window = rows.iter().filter(|r| window.contains(r.time)).count();
    assert_eq!(
        counted.len(),
        in_window,
        "every row of the window is counted"
    );
    assert!(counted.values().all(|&c| c == 1), "no row is counted twice");
}

#[test]
fn log_patterns_count_each_window_exactly_from_every_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || Options::default().memtable_size(64 << 20);
    let db = Db::open(dir.path(), opts()).expect("open");
    let mut rng = Rng::new(9);
    // The baseline is [BASE + 30m, BASE + 90m), the window the hour after: both straddle
    // the hourly partitions, so segments are read whole and by their rows' times.
    let baseline = TimeRange::new(BASE + 30 * MINUTE, BASE + 90 * MINUTE);
    let window = TimeRange::new(BASE + 90 * MINUTE, BASE + 150 * MINUTE);
    let mut rows: Vec<Row> = Vec::new();
    for round in 0..4u64 {
        let (batch, _) = realistic_logs(&mut rng, 6_000, BASE);
        // Times over [BASE, BASE + 3h): before, in and after both windows.
        let times: Vec<i64> = (0..batch.num_rows())
            .map(|_| BASE + rng.below(3 * HOUR as u64) as i64)
            .collect();
        let mut batch = with_times(&batch, times);
        if round >= 2 {
            // During the incident (the window only): a new kind of line, and a rare one
            // surging.
            let bodies: Vec<String> = lines(&batch)
                .iter()
                .enumerate()
                .map(|(i, (_, b))| {
                    let t = batch
                        .column(0)
                        .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                        .value(i);
                    match i % 10 {
                        0 | 5 if window.contains(t) => {
                            format!(
                                "disk quota exceeded on volume vol-{} for tenant {}",
                                i % 97,
                                i % 13
                            )
                        }
                        1 if window.contains(t) => {
                            format!(
                                "nvme nvme0: I/O {} QID {} timeout, aborting",
                                i % 1024,
                                1 + i % 8
                            )
                        }
                        _ => b.clone(),
                    }
                })
                .collect();
            batch = with_bodies(&batch, bodies);
        }
        for (i, (service, body)) in lines(&batch).into_iter().enumerate() {
            let time = batch
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                .value(i);
            rows.push(Row {
                time,
                service,
                body,
            });
        }
        db.append(Signal::Logs, &batch).expect("append");
        if round < 3 {
            db.flush().expect("flush");
        }
    }

    let first = db
        .snapshot()
        .log_patterns(window, Some(baseline))
        .expect("patterns");
    check_counts(&first, &rows, window, baseline);
    // New first, most lines first: the quota lines of every service lead (rare templates
    // that happen to be seen only in the window follow them).
    let new: Vec<&LogPattern> = first
        .iter()
        .filter(|p| p.status == PatternChange::New)
        .collect();
    assert!(
        first[..new.len()]
            .iter()
            .all(|p| p.status == PatternChange::New)
    );
    let quota = |p: &&LogPattern| p.template.starts_with("disk quota exceeded on volume <*>");
    let quotas = new.iter().copied().filter(quota).count();
    assert!(quotas >= 3, "{new:#?}");
    assert!(new[..quotas].iter().all(quota), "{new:#?}");
    assert!(new.windows(2).all(|w| w[0].count >= w[1].count));
    let nvme: Vec<&LogPattern> = first
        .iter()
        .filter(|p| p.template.starts_with("nvme"))
        .collect();
    // Surging where the baseline saw the rare line at all, new where it did not.
    assert!(
        nvme.iter().all(|p| match p.status {
            PatternChange::Surging => p.change.is_some_and(|c| c >= 2.0),
            PatternChange::New => p.baseline_count == 0,
            _ => false,
        }),
        "{nvme:#?}"
    );
    assert!(nvme.iter().any(|p| p.status == PatternChange::Surging));
    // The default baseline is the window's length just before it.
    let default = db.snapshot().log_patterns(window, None).expect("patterns");
    assert_eq!(default, first);

    // SQL gives the same rows.
    let session = scrydb::sql::Session::new(db.reader()).expect("session");
    let sql = format!(
        "SELECT service_name, template, count, baseline_count, status FROM log_patterns({}, {}, {}, {})",
        window.start, window.end, baseline.start, baseline.end
    );
    let got = session.sql_blocking(&sql).expect("sql");
    let got: usize = got.iter().map(|b| b.num_rows()).sum();
    assert_eq!(got, first.len());
    for bad in [
        format!(
            "SELECT * FROM log_patterns({}, {})",
            window.end, window.start
        ),
        format!("SELECT * FROM log_patterns({})", window.start),
        format!(
            "SELECT * FROM log_patterns({}, {}, {}, {})",
            window.start, window.end, baseline.end, baseline.start
        ),
    ] {
        let e = session.sql_blocking(&bad).expect_err("refused").to_string();
        assert!(e.contains("log_patterns"), "{e}");
    }

    // Every log row has a template in its segment's file, and the files survive a reopen.
    db.flush().expect("flush");
    let flushed = db
        .snapshot()
        .log_patterns(window, Some(baseline))
        .expect("patterns");
    check_counts(&flushed, &rows, window, baseline);
    db.close().expect("close");
    let db = Db::open(dir.path(), opts()).expect("reopen");
    let snap = db.snapshot();
    let segs = snap.segments(Signal::Logs, None);
    for seg in &segs {
        let p = scrydb::search::log_patterns::read(&scrydb::io::StdFs, dir.path(), seg)
            .expect("read")
            .expect("a pattern file");
        assert_eq!(p.rows.len() as u64, seg.rows);
    }
    assert_eq!(
        snap.log_patterns(window, Some(baseline)).expect("patterns"),
        flushed
    );

    // A lost file is mined from the rows; a damaged one is reported by verify, mined from
    // the rows, and rewritten by reindex.
    let lost = pattern_path(&dir.path().join(&segs[0].path));
    std::fs::remove_file(&lost).expect("remove");
    let damaged = pattern_path(&dir.path().join(&segs[1].path));
    let mut bytes = std::fs::read(&damaged).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&damaged, bytes).expect("write");
    db.close().expect("close");
    let report = scrydb::verify::verify_dir(&scrydb::io::StdFs, dir.path()).expect("verify");
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(
        report.damaged[0].kind,
        scrydb::verify::FileKind::LogPatterns
    );
    let db = Db::open(dir.path(), opts()).expect("reopen");
    let mined = db
        .snapshot()
        .log_patterns(window, Some(baseline))
        .expect("patterns");
    check_counts(&mined, &rows, window, baseline);
    assert_eq!(db.rebuild_indexes(false).expect("reindex"), 2);
    assert!(lost.exists());
    db.close().expect("close");
    let report = scrydb::verify::verify_dir(&scrydb::io::StdFs, dir.path()).expect("verify");
    assert!(report.is_ok(), "{:?}", report.damaged);

    // Compaction re-mines its output; the counts stay exact.
    let db = Db::open(dir.path(), opts()).expect("reopen");
    db.compact().expect("compact");
    let snap = db.snapshot();
    assert!(snap.segments(Signal::Logs, None).len() < segs.len());
    let compacted = snap.log_patterns(window, Some(baseline)).expect("patterns");
    check_counts(&compacted, &rows, window, baseline);
    db.close().expect("close");
}

/// Logs only in the window: there is nothing to compare with.
#[test]
fn an_empty_baseline_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let mut rng = Rng::new(3);
    let (batch, _) = realistic_logs(&mut rng, 500, BASE);
    db.append(Signal::Logs, &batch).expect("append");
    let w = TimeRange::new(BASE, BASE + HOUR);
    let p = db.snapshot().log_patterns(w, None).expect("patterns");
    assert!(!p.is_empty());
    assert!(
        p.iter()
            .all(|p| p.status == PatternChange::NoBaseline && p.change.is_none())
    );
    assert_eq!(p.iter().map(|p| p.count).sum::<u64>(), 500);
    // Nothing in a window with no logs.
    let none = db
        .snapshot()
        .log_patterns(TimeRange::new(BASE + 2 * HOUR, BASE + 3 * HOUR), None)
        .expect("patterns");
    assert!(none.is_empty());
}

/// `scry patterns` prints the templates of a window, new first, with examples on request;
/// without a time it takes the hour ending with the newest log; bad times are refused.
#[test]
fn scry_patterns_prints_new_templates_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    let mut rng = Rng::new(4);
    let (batch, _) = realistic_logs(&mut rng, 2_000, BASE);
    let times: Vec<i64> = (0..batch.num_rows() as i64)
        .map(|i| BASE + i * (2 * HOUR / 2_000))
        .collect();
    let batch = with_times(&batch, times.clone());
    // In the second hour only: a new failure.
    let bodies: Vec<String> = lines(&batch)
        .into_iter()
        .zip(&times)
        .enumerate()
        .map(|(i, ((_, b), &t))| {
            if t >= BASE + HOUR && i % 4 == 0 {
                format!("replica lag {}s exceeds limit on shard {}", i % 50, i % 8)
            } else {
                b
            }
        })
        .collect();
    db.append(Signal::Logs, &with_bodies(&batch, bodies))
        .expect("append");
    db.close().expect("close");
    let run = |args: &[&str]| {
        let db = dir.path().to_string_lossy().into_owned();
        let mut all = vec!["patterns", "--db", db.as_str()];
        all.extend_from_slice(args);
        crate::common::run_scry(&all)
    };
    let (from, to) = ((BASE + HOUR).to_string(), (BASE + 2 * HOUR).to_string());
    let (ok, out, err) = run(&["--from", &from, "--to", &to, "--examples"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().skip(2).collect();
    assert!(
        rows[0].starts_with("new")
            && rows[0].contains("replica lag <*> exceeds limit on shard <*>"),
        "{out}"
    );
    assert!(rows[1].contains("e.g. replica lag"), "{out}");
    // The default window is the last hour of data: the same.
    let (ok, default, err) = run(&["--examples"]);
    assert!(ok, "{err}");
    assert_eq!(default.lines().nth(2), out.lines().nth(2), "{default}");
    // One service, few rows.
    let (ok, out, _) = run(&[
        "--from",
        &from,
        "--to",
        &to,
        "--service",
        "payment",
        "--limit",
        "2",
    ]);
    assert!(ok);
    let rows: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r.contains(" payment ")), "{out}");
    // Bad times.
    let (ok, _, err) = run(&["--from", "yesterday"]);
    assert!(
        !ok && err.contains("--from `yesterday` is not a time"),
        "{err}"
    );
    let (ok, _, err) = run(&["--from", &to, "--to", &from]);
    assert!(!ok && err.contains("window is empty"), "{err}");
}
