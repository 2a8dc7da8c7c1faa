//! A database written by format version 1 is checked in (`tests/fixtures/v1`): segments of
//! every signal with their trace indexes (`.tidx`), a manifest, and a log with unflushed
//! frames. It must keep opening, with every row as it was and its indexes used, in every
//! later version.
//!
//! Regenerate (only when introducing a new format version, into a new folder) with
//! `SCRY_WRITE_FIXTURE=1 cargo test --test it fixture`. The v1 segments predate the trace
//! index; their `.tidx` files were added afterwards by `scrydb::index::build_for_segment`
//! (what `scry reindex` runs), leaving every other file of the fixture as it was.

use std::path::{Path, PathBuf};

use scrydb::{Db, Options, Signal};

use crate::common::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn expected_path(signal: Signal) -> PathBuf {
    fixture_dir().join(format!("expected-{}.txt", signal.name()))
}

#[test]
fn write_fixture() {
    if std::env::var("SCRY_WRITE_FIXTURE").is_err() {
        return;
    }
    let out = fixture_dir().join("db");
    let _ = std::fs::remove_dir_all(fixture_dir());
    std::fs::create_dir_all(&out).expect("mkdir");
    let live = tempfile::tempdir().expect("tempdir");
    let db = Db::open(live.path(), Options::default()).expect("open");
    let mut all: Vec<(Signal, Vec<arrow::array::RecordBatch>)> =
        Signal::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for (i, (s, batches)) in all.iter_mut().enumerate() {
        let b = synth(*s, 100 + i as u64, 20, BASE - 2 * HOUR);
        db.append(*s, &b).expect("append");
        batches.push(b);
    }
    db.flush().expect("flush");
    for (i, (s, batches)) in all.iter_mut().enumerate() {
        let b = synth(*s, 200 + i as u64, 5, BASE);
        db.append(*s, &b).expect("append");
        batches.push(b);
    }
    // Copy while open: the second round is only in the log.
    copy_dir(live.path(), &out);
    std::fs::remove_file(out.join("LOCK")).expect("no lock in the fixture");
    for (s, batches) in &all {
        std::fs::write(expected_path(*s), rows(batches).join("\n")).expect("write expected");
    }
    drop(db);
}

#[test]
fn version_1_fixture_opens_with_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_dir().join("db"), dir.path());
    let db = open(dir.path());
    let snap = db.snapshot();
    for s in Signal::ALL {
        assert!(snap.stats(s).segments >= 1, "{s} has segments");
        assert!(snap.stats(s).memtable_rows > 0, "{s} has log-only rows");
        let want = std::fs::read_to_string(expected_path(s)).expect("expected rows");
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(rows(&snap.scan(s, None).expect("scan")), want, "{s}");
    }
    let report = db.verify().expect("verify");
    assert!(report.is_ok(), "the fixture verifies: {:?}", report.damaged);

    // Every segment's index is there and usable, and lookups go through it.
    assert_eq!(
        db.rebuild_indexes(false).expect("reindex"),
        0,
        "no index to rebuild"
    );
    for s in Signal::ALL {
        for seg in snap.segments(s, None) {
            assert!(
                snap.index_cache()
                    .index(&scrydb::io::StdFs, snap.dir(), &seg)
                    .is_some(),
                "{} has a usable index",
                seg.path
            );
        }
    }
    let seg = snap.segments(Signal::Spans, None).remove(0);
    let id = first_trace_id(&snap.read_segment(&seg, None).expect("read")[0]);
    let positions = snap.index_rows(&seg, &[id]).expect("index answers");
    assert!(!positions.is_empty(), "the index finds the trace");
    let with_index = snap.trace_rows(Signal::Spans, &[id], true).expect("lookup");
    let without = snap.trace_rows(Signal::Spans, &[id], false).expect("scan");
    assert_eq!(rows(&with_index), rows(&without));
    assert_eq!(count(&with_index), positions.len() as usize);
    db.close().expect("close");
}

/// The fixture's segments predate minute-first sorting (same format version, rows ordered
/// by time first): compacting them with new segments still gives every row once, in the
/// current order, with working trace lookups.
#[test]
fn version_1_fixture_compacts_with_new_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_dir().join("db"), dir.path());
    let db = open(dir.path());
    // New rows in the fixture's partition (2025-11-24T22:00Z) become new segments beside
    // the fixture's.
    let partition = 1_764_021_600_000_000_000;
    for s in [Signal::Spans, Signal::Logs] {
        db.append(s, &synth(s, 5, 500, partition + 60_000_000_000))
            .expect("append");
    }
    db.flush().expect("flush");
    let before: Vec<Vec<String>> = Signal::ALL
        .iter()
        .map(|s| rows(&db.snapshot().scan(*s, None).expect("scan")))
        .collect();
    let stats = db.compact().expect("compact");
    assert!(stats.merges >= 1, "{stats:?}");
    let snap = db.snapshot();
    for (s, want) in Signal::ALL.iter().zip(&before) {
        assert_eq!(&rows(&snap.scan(*s, None).expect("scan")), want, "{s}");
    }
    for seg in snap.segments(Signal::Spans, None) {
        let batches = snap.read_segment(&seg, None).expect("read");
        for id in trace_ids(&batches[0]).into_iter().take(20) {
            let with_index = snap.trace_rows(Signal::Spans, &[id], true).expect("lookup");
            let without = snap.trace_rows(Signal::Spans, &[id], false).expect("scan");
            assert_eq!(rows(&with_index), rows(&without));
        }
    }
    assert!(db.verify().expect("verify").is_ok());
    drop(snap);
    db.close().expect("close");
}
