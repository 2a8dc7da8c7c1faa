//! Damaged files: every byte a read serves is checked, a damaged file gives an error naming
//! it, and what the damage does not touch keeps answering.

use std::path::{Path, PathBuf};

use scrydb::{Db, Error, Signal};

use crate::common::*;

/// A closed store with one spans segment and one logs segment (plus their indexes).
fn two_signal_store(dir: &Path) -> [u8; 16] {
    let db = open(dir);
    let spans = synth(Signal::Spans, 1, 300, BASE);
    db.append(Signal::Spans, &spans).expect("append spans");
    db.append(Signal::Logs, &synth(Signal::Logs, 2, 300, BASE))
        .expect("append logs");
    db.close().expect("close");
    first_trace_id(&spans)
}

/// The path of the one segment of `signal`.
fn segment_path(dir: &Path, signal: Signal) -> PathBuf {
    let db = open(dir);
    let snap = db.snapshot();
    let segs = snap.segments(signal, None);
    assert_eq!(segs.len(), 1, "one {signal} segment");
    let p = snap.segment_path(&segs[0]);
    drop(snap);
    db.close().expect("close");
    p
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).expect("write");
}

fn sql_spans(db: &Db) -> Result<Vec<String>, scrydb::sql::Error> {
    db.sql_blocking("SELECT span_id, trace_id, name, time FROM spans")
        .map(|b| rows(&b))
}

/// A flipped byte anywhere in a small segment — data pages, page index or footer — makes SQL
/// scans, trace lookups and `Snapshot::scan` fail with `Error::Corrupted` naming the
/// segment, in a fresh process state (nothing cached), while the other signal answers. (A
/// segment this small is one checked block and its tail, so every read touches the
/// damage; larger ones: `block_checksums_fail_exactly_the_reads_that_touch_the_damage`.)
#[test]
fn a_flipped_byte_in_a_segment_fails_every_read_of_it_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = two_signal_store(dir.path());
    let seg = segment_path(dir.path(), Signal::Spans);
    let len = std::fs::metadata(&seg).expect("stat").len() as usize;
    let (want_logs, want_spans) = {
        let db = open(dir.path());
        let logs = db
            .sql_blocking("SELECT count(*) FROM logs")
            .map(|b| rows(&b))
            .expect("logs");
        let spans = sql_spans(&db).expect("spans");
        db.close().expect("close");
        (logs, spans)
    };

    let names_segment = |what: &str, at: usize, e: &Error| match e {
        Error::Corrupted { path, .. } => assert_eq!(path, &seg, "{what}, byte {at}"),
        other => panic!("{what}, byte {at}: expected Corrupted naming {seg:?}, got {other}"),
    };
    // Skip the 4-byte magics at both ends: damage there is refused by any Parquet reader.
    for k in 0..24 {
        let at = 4 + (len - 8) * k / 24;
        flip(&seg, at);
        let db = open(dir.path());
        match sql_spans(&db) {
            Err(scrydb::sql::Error::Engine(e)) => names_segment("sql", at, &e),
            Err(other) => panic!("sql, byte {at}: not an engine error: {other}"),
            Ok(got) => panic!(
                "sql, byte {at}: a damaged segment answered ({})",
                if got == want_spans {
                    "by luck, right"
                } else {
                    "wrongly"
                }
            ),
        }
        names_segment(
            "trace",
            at,
            &db.trace(id)
                .expect_err("trace lookup reads the damaged segment"),
        );
        names_segment(
            "scan",
            at,
            &db.snapshot()
                .scan(Signal::Spans, None)
                .expect_err("scan reads the damaged segment"),
        );
        // The other signal keeps answering.
        let logs = db
            .sql_blocking("SELECT count(*) FROM logs")
            .map(|b| rows(&b))
            .expect("logs still answer");
        assert_eq!(logs, want_logs);
        db.close().expect("close");
        flip(&seg, at);
    }
}

/// A segment is checked block by block (`docs/format.md`, section 4): a flipped byte in a
/// data block fails every read that touches that block with `Error::Corrupted` naming the
/// segment, reads of other blocks still answer — rightly — and `scry verify` reports it;
/// a flipped byte in the tail (last pages, page index, footer with the block table) fails
/// the segment's first use.
#[test]
fn block_checksums_fail_exactly_the_reads_that_touch_the_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let spans = synth(Signal::Spans, 7, 20_000, BASE);
    db.append(Signal::Spans, &spans).expect("append");
    db.close().expect("close");
    let seg = segment_path(dir.path(), Signal::Spans);
    let len = std::fs::metadata(&seg).expect("stat").len() as usize;
    assert!(len > 200_000, "a segment of many blocks ({len} bytes)");
    let mut ids = trace_ids(&spans);
    ids.sort();
    ids.dedup();
    let probe: Vec<[u8; 16]> = ids.iter().step_by(ids.len() / 40).copied().collect();
    let want: Vec<Vec<String>> = {
        let db = open(dir.path());
        let w = probe
            .iter()
            .map(|id| rows(&db.trace(*id).expect("lookup").spans))
            .collect();
        db.close().expect("close");
        w
    };

    // Damage in a data block.
    flip(&seg, len / 3);
    let db = open(dir.path());
    let mut answered = 0;
    for (id, want) in probe.iter().zip(&want) {
        match db.trace(*id) {
            Ok(t) => {
                assert_eq!(&rows(&t.spans), want, "a lookup answered wrongly");
                answered += 1;
            }
            Err(Error::Corrupted { path, .. }) => assert_eq!(path, seg),
            Err(other) => panic!("expected Corrupted naming {seg:?}, got {other}"),
        }
    }
    assert!(
        answered > 0,
        "lookups that do not touch the damaged block answer"
    );
    match sql_spans(&db) {
        Err(scrydb::sql::Error::Engine(Error::Corrupted { path, .. })) => assert_eq!(path, seg),
        other => panic!("a scan of the damaged block must fail naming it: {other:?}"),
    }
    let report = db.verify().expect("verify");
    assert!(
        report.damaged.iter().any(|d| d.path == seg),
        "verify reports the segment: {:?}",
        report.damaged
    );
    db.close().expect("close");
    flip(&seg, len / 3);

    // Damage in the tail: the segment's first use fails.
    flip(&seg, len - 12);
    let db = open(dir.path());
    match db.trace(probe[0]) {
        Err(Error::Corrupted { path, .. }) => assert_eq!(path, seg),
        other => panic!("expected Corrupted naming {seg:?}, got {other:?}"),
    }
    db.close().expect("close");
}

/// A store with every kind of file, as a crash would leave it: one segment (and index)
/// per signal, and a log file holding `frames` acknowledged frames not yet flushed.
fn store_with_every_file(frames: usize) -> tempfile::TempDir {
    let live = tempfile::tempdir().expect("tempdir");
    let db = open(live.path());
    for s in Signal::ALL {
        db.append(s, &synth(s, 1, 200, BASE)).expect("append");
    }
    db.flush().expect("flush");
    for i in 0..frames {
        db.append(
            Signal::Spans,
            &synth(Signal::Spans, 10 + i as u64, 50, BASE),
        )
        .expect("append");
    }
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(live.path(), copy.path());
    drop(db);
    copy
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(files_with(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn scry(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .args(args)
        .env_remove("SCRY_DB")
        .output()
        .expect("scry runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `Db::verify`, `verify_dir` and `scry verify` check segments, indexes and every log
/// frame, and list every damaged file rather than stopping at the first.
#[test]
fn verify_reports_every_damaged_file_of_every_kind() {
    let dir = store_with_every_file(3);
    let report = scrydb::verify_dir(&scrydb::io::StdFs, dir.path()).expect("verify");
    assert!(report.is_ok(), "{:?}", report.damaged);
    assert_eq!((report.segments, report.indexes), (3, 3));
    assert_eq!(report.wal_frames, 3);
    let (ok, out) = scry(&["--db", &dir.path().to_string_lossy(), "verify"]);
    assert!(ok, "{out}");

    // Damage one spans segment, the logs index and the first frame of the log.
    let spans_seg = files_with(&dir.path().join("spans"), "parquet").remove(0);
    let logs_idx = files_with(&dir.path().join("logs"), "tidx").remove(0);
    let wal = files_with(&dir.path().join("wal"), "wal").remove(0);
    let len = std::fs::metadata(&spans_seg).expect("stat").len() as usize;
    flip(&spans_seg, len / 2);
    flip(&logs_idx, 40);
    flip(&wal, 32 + 16 + 10);
    let damaged = [spans_seg.clone(), logs_idx.clone(), wal.clone()];

    let report = scrydb::verify_dir(&scrydb::io::StdFs, dir.path()).expect("verify");
    let found: Vec<&PathBuf> = report.damaged.iter().map(|d| &d.path).collect();
    assert_eq!(
        found,
        damaged.iter().collect::<Vec<_>>(),
        "{:?}",
        report.damaged
    );
    for d in &report.damaged {
        assert!(
            d.error.to_string().contains(&*d.path.to_string_lossy()),
            "{}",
            d.error
        );
    }
    let (ok, out) = scry(&["--db", &dir.path().to_string_lossy(), "verify"]);
    assert!(!ok, "scry verify exits non-zero on damage: {out}");
    for p in &damaged {
        assert!(
            out.contains(&*p.to_string_lossy()),
            "{p:?} not listed: {out}"
        );
    }

    // An open store (the log damage repaired first: open refuses it) reports the same.
    flip(&wal, 32 + 16 + 10);
    let db = open(dir.path());
    let report = db.verify().expect("verify");
    let found: Vec<&PathBuf> = report.damaged.iter().map(|d| &d.path).collect();
    assert_eq!(found, vec![&spans_seg, &logs_idx], "{:?}", report.damaged);
    db.close().expect("close");
}

/// What a store answers: every signal scanned by the engine and by SQL, a trace lookup
/// (through the indexes) and an SQL trace-id query. Errors as their messages.
fn answers(db: &Db, id: [u8; 16]) -> Vec<(String, Result<Vec<String>, String>)> {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = Vec::new();
    for s in Signal::ALL {
        out.push((
            format!("scan {s}"),
            db.snapshot()
                .scan(s, None)
                .map(|b| rows(&b))
                .map_err(|e| e.to_string()),
        ));
        out.push((
            format!("sql {s}"),
            db.sql_blocking(&format!("SELECT * FROM {s}"))
                .map(|b| rows(&b))
                .map_err(|e| e.to_string()),
        ));
    }
    out.push((
        "trace".into(),
        db.trace(id)
            .map(|t| [rows(&t.spans), rows(&t.logs), rows(&t.metrics)].concat())
            .map_err(|e| e.to_string()),
    ));
    out.push((
        "sql search".into(),
        db.sql_blocking("SELECT * FROM logs WHERE matches(body, 'handled')")
            .map(|b| rows(&b))
            .map_err(|e| e.to_string()),
    ));
    out.push((
        "log patterns".into(),
        db.sql_blocking(
            "SELECT service_name, template, count, baseline_count, status \
             FROM log_patterns(0, 4000000000000000000)",
        )
        .map(|b| rows(&b))
        .map_err(|e| e.to_string()),
    ));
    out.push((
        "sql trace".into(),
        db.sql_blocking(&format!("SELECT * FROM logs WHERE trace_id = '{hex}'"))
            .map(|b| rows(&b))
            .map_err(|e| e.to_string()),
    ));
    out
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Flip,
    Truncate,
    Delete,
    Empty,
}

fn damage(path: &Path, op: Op) {
    match op {
        Op::Flip => {
            let len = std::fs::metadata(path).expect("stat").len() as usize;
            flip(path, len / 2);
        }
        Op::Truncate => {
            let bytes = std::fs::read(path).expect("read");
            std::fs::write(path, &bytes[..bytes.len() / 2]).expect("write");
        }
        Op::Delete => std::fs::remove_file(path).expect("remove"),
        Op::Empty => std::fs::write(path, b"").expect("write"),
    }
}

/// Each file kind × each kind of damage gives its documented outcome (docs/format.md,
/// "Damage and what it does"), never a panic, and never a wrong answer without an error:
///
/// - a segment: open fails naming it, or (flip) reads of its signal fail naming it; the
///   other signals answer as before; verify lists it;
/// - a trace index: every answer is unchanged (lookups scan the segment); verify lists it;
/// - a term index: every answer is unchanged (searches scan the segment); verify lists it
///   unless it was deleted (as in a store from before term indexes);
/// - the manifest or a log file: open fails with an error naming the file, or succeeds
///   (a design that quarantines a damaged log); then the signals the file does not hold
///   answer as before.
#[test]
fn every_file_kind_under_every_damage_has_its_documented_outcome() {
    let template = store_with_every_file(3);
    let (id, want) = {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), copy.path());
        let db = open(copy.path());
        let logs = db.snapshot().scan(Signal::Logs, None).expect("logs");
        let id = logs
            .iter()
            .find_map(|b| {
                let c = b
                    .column_by_name("trace_id")?
                    .as_any()
                    .downcast_ref::<arrow::array::FixedSizeBinaryArray>()?
                    .clone();
                (0..arrow::array::Array::len(&c))
                    .find(|i| arrow::array::Array::is_valid(&c, *i))
                    .map(|i| <[u8; 16]>::try_from(c.value(i)).expect("16 bytes"))
            })
            .expect("a log with a trace id");
        let want = answers(&db, id);
        db.close().expect("close");
        for (q, a) in &want {
            assert!(a.is_ok(), "{q} on the intact store: {a:?}");
        }
        (id, want)
    };

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Kind {
        Segment,
        Index,
        TermIndex,
        LogPatterns,
        Manifest,
        Wal,
    }
    for kind in [
        Kind::Segment,
        Kind::Index,
        Kind::TermIndex,
        Kind::LogPatterns,
        Kind::Manifest,
        Kind::Wal,
    ] {
        for op in [Op::Flip, Op::Truncate, Op::Delete, Op::Empty] {
            let case = format!("{kind:?} {op:?}");
            let copy = tempfile::tempdir().expect("tempdir");
            copy_dir(template.path(), copy.path());
            let dir = copy.path();
            let target = match kind {
                Kind::Segment => files_with(&dir.join("spans"), "parquet").remove(0),
                Kind::Index => files_with(&dir.join("logs"), "tidx").remove(0),
                Kind::TermIndex => files_with(&dir.join("logs"), "sidx").remove(0),
                Kind::LogPatterns => files_with(&dir.join("logs"), "lpat").remove(0),
                Kind::Manifest => std::fs::read_dir(dir)
                    .expect("dir")
                    .map(|e| e.expect("entry").path())
                    .find(|p| p.to_string_lossy().contains("MANIFEST-"))
                    .expect("manifest"),
                Kind::Wal => files_with(&dir.join("wal"), "wal").remove(0),
            };
            damage(&target, op);
            // What names the damage: the file, or for a lost manifest the directory.
            let names = |msg: &str| {
                msg.contains(&*target.to_string_lossy())
                    || (kind == Kind::Manifest && msg.contains(&*dir.to_string_lossy()))
            };

            // verify lists the file (a deleted or shortened log file cannot be told from
            // one that never held more; a missing term index is a store from before them).
            let report = scrydb::verify_dir(&scrydb::io::StdFs, dir).expect("verify runs");
            let listed = report.damaged.iter().any(|d| names(&d.error.to_string()));
            let unlisted = (kind == Kind::Wal && !matches!(op, Op::Flip))
                || (matches!(kind, Kind::TermIndex | Kind::LogPatterns)
                    && matches!(op, Op::Delete));
            if !unlisted {
                assert!(
                    listed,
                    "{case}: verify does not list it: {:?}",
                    report.damaged
                );
            }

            let db = match Db::open(dir, small_opts()) {
                Err(e) => {
                    assert!(
                        !matches!(kind, Kind::Index | Kind::TermIndex | Kind::LogPatterns),
                        "{case}: a damaged index must not stop open: {e}"
                    );
                    assert!(
                        names(&e.to_string()),
                        "{case}: open error does not name the file: {e}"
                    );
                    continue;
                }
                Ok(db) => db,
            };
            let got = answers(&db, id);
            for ((q, want), (_, got)) in want.iter().zip(&got) {
                let damaged_signal = match kind {
                    Kind::Segment | Kind::Wal => q.contains("spans") || q == "trace",
                    Kind::Index | Kind::TermIndex | Kind::LogPatterns => false,
                    Kind::Manifest => true,
                };
                match got {
                    Ok(rows) if damaged_signal && kind != Kind::Segment => {
                        // A log or manifest damage that open accepted: no claim on the
                        // rows of the signal it held.
                        let _ = rows;
                    }
                    Ok(rows) => assert_same(&case, q, rows, want),
                    Err(e) if damaged_signal => {
                        assert!(names(e), "{case}: {q}: error does not name the file: {e}")
                    }
                    Err(e) => panic!("{case}: {q} fails though its files are intact: {e}"),
                }
            }
            if kind == Kind::Segment {
                assert!(
                    got.iter().any(|(q, a)| q == "scan spans" && a.is_err()),
                    "{case}: a damaged segment was read without an error"
                );
            }
            db.close().expect("close");
        }
    }
}

/// Random byte flips anywhere in a flushed store never give a wrong answer without an
/// error: each run's open fails, or each answer either fails or equals the intact store's.
/// Seeded (`SCRY_CORRUPTION_SEED` picks another seed), bounded to a few seconds.
#[test]
fn random_flips_never_give_a_wrong_answer_without_an_error() {
    let template = tempfile::tempdir().expect("tempdir");
    let id = two_signal_store(template.path());
    {
        let db = open(template.path());
        db.append(Signal::Metrics, &synth(Signal::Metrics, 3, 200, BASE))
            .expect("metrics");
        db.close().expect("close");
    }
    let want = {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), copy.path());
        let db = open(copy.path());
        let a = answers(&db, id);
        db.close().expect("close");
        a
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for ext in ["parquet", "tidx", "sidx", "lpat", "wal"] {
        files.extend(files_with(template.path(), ext));
    }
    files.extend(
        std::fs::read_dir(template.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.to_string_lossy().contains("MANIFEST-")),
    );
    let seed = std::env::var("SCRY_CORRUPTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261126u64);
    let mut rng = scrydb_workload::Rng::new(seed);
    let start = std::time::Instant::now();
    let (mut runs, mut refused, mut errors) = (0, 0, 0);
    while start.elapsed() < std::time::Duration::from_secs(4) || runs < 10 {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(template.path(), copy.path());
        let rel = files[rng.below(files.len() as u64) as usize]
            .strip_prefix(template.path())
            .expect("inside")
            .to_path_buf();
        let path = copy.path().join(&rel);
        let mut bytes = std::fs::read(&path).expect("read");
        if bytes.is_empty() {
            continue;
        }
        let at = rng.below(bytes.len() as u64) as usize;
        let mask = 1 + rng.below(255) as u8;
        bytes[at] ^= mask;
        std::fs::write(&path, &bytes).expect("write");
        let case = format!(
            "seed {seed}, run {runs}: {} byte {at} ^= {mask:#04x}",
            rel.display()
        );
        runs += 1;
        let db = match Db::open(copy.path(), small_opts()) {
            Ok(db) => db,
            Err(_) => {
                refused += 1;
                continue;
            }
        };
        for ((q, want), (_, got)) in want.iter().zip(answers(&db, id)) {
            match got {
                Ok(rows) => assert_same(&case, q, &rows, want),
                Err(_) => errors += 1,
            }
        }
        let _ = db.close();
    }
    eprintln!("{runs} runs: {refused} refused at open, {errors} queries failed, the rest right");
}

/// Fails unless `got` equals the intact store's answer, naming the first differing row
/// (whole answers are too long to print).
fn assert_same(case: &str, q: &str, got: &[String], want: &Result<Vec<String>, String>) {
    let want = want.as_ref().expect("the intact store answers");
    if got != want.as_slice() {
        let first = got.iter().zip(want).find(|(g, w)| g != w);
        panic!(
            "{case}: {q} answered wrongly without an error: {} rows instead of {}; first \
             differing row: {first:?}",
            got.len(),
            want.len()
        );
    }
}
