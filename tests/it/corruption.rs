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

fn first_trace_id(spans: &arrow::array::RecordBatch) -> [u8; 16] {
    spans
        .column_by_name("trace_id")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
        })
        .expect("trace ids")
        .value(0)
        .try_into()
        .expect("16 bytes")
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

/// A flipped byte anywhere in a segment — data pages, page index or footer — makes SQL
/// scans, trace lookups and `Snapshot::scan` fail with `Error::Corrupted` naming the
/// segment, in a fresh process state (nothing cached), while the other signal answers.
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

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
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
