//! A read-only handle follows the writer: newly acknowledged rows and newer manifests show
//! up in its next snapshot, it never changes the directory, and under a concurrent writer
//! its counts never go back and never miss an acknowledged batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use scrydb::{Db, Options, Signal};

use crate::common::{BASE, HOUR, count, open, scan, small_opts, synth};

fn reader(dir: &std::path::Path) -> Db {
    Db::open_read_only(dir, small_opts()).expect("open read-only")
}

/// Every file under `dir` with its length and modification time.
fn listing(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().expect("mtime")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_reader_sees_new_rows_and_new_manifests_without_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 100, BASE))
        .expect("append");
    let r = reader(dir.path());
    assert_eq!(r.recovery_report().wal_batches, 1);
    assert_eq!(count(&scan(&r, Signal::Spans)), 100);

    db.append(Signal::Spans, &synth(Signal::Spans, 2, 50, BASE + HOUR))
        .expect("append");
    assert_eq!(count(&scan(&r, Signal::Spans)), 150, "log tail picked up");

    db.flush().expect("flush");
    let snap = r.snapshot();
    assert!(snap.manifest_version() > 0);
    assert_eq!(count(&snap.scan(Signal::Spans, None).expect("scan")), 150);
    assert_eq!(
        snap.segments(Signal::Spans, None).len(),
        2,
        "segments, no log rows"
    );

    db.append(Signal::Logs, &synth(Signal::Logs, 3, 30, BASE))
        .expect("append");
    db.flush().expect("flush");
    db.append(Signal::Logs, &synth(Signal::Logs, 4, 20, BASE))
        .expect("append");
    assert_eq!(count(&scan(&r, Signal::Logs)), 50);
    assert_eq!(count(&scan(&r, Signal::Spans)), 150, "no duplicates");

    // Retention in the writer: the reader's next snapshot no longer lists the segments.
    db.drop_partitions_before(BASE + 2 * HOUR)
        .expect("retention");
    assert_eq!(count(&scan(&r, Signal::Spans)), 0);
    assert_eq!(count(&scan(&r, Signal::Logs)), 20, "unflushed rows stay");
    db.close().expect("close");
    assert_eq!(
        count(&scan(&r, Signal::Logs)),
        20,
        "after the close flushed them"
    );
}

#[test]
fn a_reader_that_does_not_follow_changes_only_on_refresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 10, BASE))
        .expect("append");
    let r = Db::open_read_only(dir.path(), small_opts().follow_writer(false)).expect("open");
    db.append(Signal::Spans, &synth(Signal::Spans, 2, 7, BASE))
        .expect("append");
    db.append(Signal::Logs, &synth(Signal::Logs, 3, 5, BASE))
        .expect("append");
    assert_eq!(count(&scan(&r, Signal::Spans)), 10);
    let refreshed = r.refresh().expect("refresh");
    let new: Vec<(Signal, usize)> = refreshed
        .new_batches
        .iter()
        .map(|(s, b)| (*s, b.num_rows()))
        .collect();
    assert_eq!(new, vec![(Signal::Spans, 7), (Signal::Logs, 5)]);
    assert!(!refreshed.new_manifest);
    assert_eq!(count(&scan(&r, Signal::Spans)), 17);
    assert!(r.refresh().expect("refresh").new_batches.is_empty());
    assert!(matches!(
        db.refresh(),
        Err(scrydb::Error::InvalidOptions { .. })
    ));
    db.close().expect("close");
}

#[test]
fn following_never_changes_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 100, BASE))
        .expect("append");
    db.flush().expect("flush");
    db.append(Signal::Spans, &synth(Signal::Spans, 2, 100, BASE))
        .expect("append");
    // The writer stays open and idle: every change below would be the reader's.
    let before = listing(dir.path());
    let r = reader(dir.path());
    for _ in 0..3 {
        assert_eq!(count(&scan(&r, Signal::Spans)), 200);
        r.refresh().expect("refresh");
    }
    drop(r);
    assert_eq!(listing(dir.path()), before);
    db.close().expect("close");
}

#[test]
fn under_a_concurrent_writer_counts_never_miss_an_acknowledged_batch() {
    const BATCH: usize = 64;
    let dir = tempfile::tempdir().expect("tempdir");
    // Small memtables: the writer flushes (and removes log files) often.
    let db =
        Arc::new(Db::open(dir.path(), Options::default().memtable_size(256 << 10)).expect("open"));
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, acked) = (db.clone(), acked.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut i = 0;
            while Instant::now() < deadline {
                let b = synth(Signal::Spans, i, BATCH, BASE + (i as i64 % 4) * HOUR);
                db.append(Signal::Spans, &b).expect("append");
                acked.fetch_add(BATCH, Ordering::SeqCst);
                i += 1;
                if i % 50 == 0 {
                    db.flush().expect("flush");
                }
            }
        })
    };
    let r = reader(dir.path());
    let mut last = 0;
    let mut rounds = 0;
    while !writer.is_finished() {
        let low = acked.load(Ordering::SeqCst);
        let n = count(&scan(&r, Signal::Spans));
        let high = acked.load(Ordering::SeqCst);
        assert!(
            n >= low,
            "round {rounds}: saw {n} rows, {low} were acknowledged before"
        );
        assert!(
            n <= high + BATCH,
            "round {rounds}: saw {n} rows, only {high} acknowledged"
        );
        assert!(n >= last, "round {rounds}: went back from {last} to {n}");
        assert_eq!(
            n % BATCH,
            0,
            "round {rounds}: a batch is seen whole or not at all"
        );
        last = n;
        rounds += 1;
    }
    writer.join().expect("writer");
    assert!(rounds > 5, "only {rounds} rounds");
    let total = acked.load(Ordering::SeqCst);
    assert_eq!(count(&scan(&r, Signal::Spans)), total);
    let Ok(db) = Arc::try_unwrap(db) else {
        panic!("the writer thread still holds the database");
    };
    db.close().expect("close");
    assert_eq!(count(&scan(&r, Signal::Spans)), total);
}
