//! Readers holding snapshots keep reading correct results while writers ingest and flush.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use scrydb::Signal;

use crate::common::*;

#[test]
fn snapshots_stay_stable_while_writers_ingest_and_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(open(dir.path()));
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..60u64 {
                    let b = synth(
                        Signal::Spans,
                        w * 1000 + i,
                        100,
                        BASE + i as i64 * 1_000_000,
                    );
                    db.append(Signal::Spans, &b).expect("append");
                    if i % 20 == 19 {
                        db.flush().expect("flush");
                    }
                }
            })
        })
        .collect();
    let reader = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            let mut checks = 0;
            let mut last = 0;
            while !done.load(Ordering::SeqCst) || checks < 5 {
                let snap = db.snapshot();
                let first = rows(&snap.scan(Signal::Spans, None).expect("scan"));
                assert_eq!(first.len() % 100, 0, "only whole batches are visible");
                assert!(first.len() >= last, "a later snapshot never sees less");
                last = first.len();
                // Time passes, writers write and flush, segments and memtables change...
                std::thread::sleep(std::time::Duration::from_millis(5));
                let again = rows(&snap.scan(Signal::Spans, None).expect("scan"));
                assert_eq!(first, again, "a snapshot reads the same rows every time");
                checks += 1;
            }
            checks
        })
    };
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    let checks = reader.join().expect("reader");
    assert!(checks >= 5);
    assert_eq!(count(&scan(&db, Signal::Spans)), 2 * 60 * 100);
    let segments = db.snapshot().segments(Signal::Spans, None).len();
    assert!(
        segments >= 2,
        "flushes happened during the reads ({segments} segments)"
    );
    Arc::into_inner(db)
        .expect("sole owner")
        .close()
        .expect("close");
}

#[test]
fn backpressure_bounds_the_memtables() {
    // A tiny memtable and one frozen slot: appends must wait for the flush, never fail,
    // and everything ends up in segments.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = scrydb::Db::open(
        dir.path(),
        small_opts()
            .memtable_size(64 << 10)
            .max_frozen_memtables(1)
            .flush_threads(1),
    )
    .expect("open");
    let mut all = Vec::new();
    for i in 0..40u64 {
        let b = synth(Signal::Logs, i, 200, BASE + i as i64 * 1_000_000);
        db.append(Signal::Logs, &b).expect("append");
        all.push(b);
    }
    let snap = db.snapshot();
    assert!(
        snap.stats(Signal::Logs).segments > 1,
        "flushes ran while appending"
    );
    assert_eq!(
        rows(&snap.scan(Signal::Logs, None).expect("scan")),
        rows(&all)
    );
    db.close().expect("close");
}
