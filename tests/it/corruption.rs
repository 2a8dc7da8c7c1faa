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
