//! Power cuts: a store is written (appends, flushes, compactions) through
//! [`PowerCutFs`], which keeps what the disk would hold if power failed at any instant — only
//! fsynced bytes and synced directory entries. At a random moment the durable image is
//! copied out and opened: it must open, and hold every batch acknowledged before the cut,
//! each exactly once. `kill -9` cannot test this (the kernel still writes back what the
//! process wrote); this catches a missing `fsync` of a file or directory.
//!
//! CI runs a few cuts; `SCRY_POWERCUT_ITERATIONS=200` runs many.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use scrydb::io::StdFs;
use scrydb::io::powercut::PowerCutFs;
use scrydb::{Db, Options, Signal};
use scrydb_workload::Rng;

use crate::common::{BASE, HOUR, rows, scan, synth};

fn multiset(rows: Vec<String>) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r).or_default() += 1;
    }
    m
}

fn one_cut(seed: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("db");
    std::fs::create_dir_all(&root).expect("mkdir");
    let fs = PowerCutFs::new(Arc::new(StdFs), &root).expect("power-cut fs");
    let opts = Options::default()
        .memtable_size(128 << 10)
        .compaction(false)
        .file_system(Arc::new(fs.clone()));
    let db = Arc::new(Db::open(&root, opts).expect("open"));
    let batches: Vec<_> = (0..400u64)
        .map(|i| {
            let signal = if i % 3 == 0 {
                Signal::Logs
            } else {
                Signal::Spans
            };
            (
                signal,
                synth(signal, seed * 1000 + i, 40, BASE + (i as i64 % 3) * HOUR),
            )
        })
        .collect();
    let batches = Arc::new(batches);
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, batches, acked, stop) = (db.clone(), batches.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            for (i, (signal, b)) in batches.iter().enumerate() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                db.append(*signal, b).expect("append");
                acked.store(i + 1, Ordering::SeqCst);
                if i % 40 == 39 {
                    db.flush().expect("flush");
                }
                if i % 120 == 119 {
                    db.compact().expect("compact");
                }
            }
        })
    };
    let mut rng = Rng::new(seed);
    std::thread::sleep(Duration::from_millis(rng.below(400)));
    // Everything acknowledged before the image is taken must survive it.
    let must = acked.load(Ordering::SeqCst);
    let image = tmp.path().join("after-power-cut");
    fs.cut(&image).expect("cut");
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    drop(Arc::try_unwrap(db).ok().map(Db::close));

    let db = Db::open(&image, Options::default().compaction(false))
        .unwrap_or_else(|e| panic!("seed {seed}: the store does not open after a power cut: {e}"));
    let mut found = multiset(rows(&scan(&db, Signal::Spans)));
    for (k, v) in multiset(rows(&scan(&db, Signal::Logs))) {
        *found.entry(k).or_default() += v;
    }
    let all: Vec<_> = batches.iter().map(|(_, b)| b.clone()).collect();
    let possible = multiset(rows(&all));
    let required = multiset(rows(&all[..must]));
    for (row, n) in &required {
        assert!(
            found.get(row).copied().unwrap_or(0) >= *n,
            "seed {seed}: an acknowledged row is missing after the power cut ({must} batches acknowledged)"
        );
    }
    for (row, n) in &found {
        assert!(
            possible.get(row).copied().unwrap_or(0) >= *n,
            "seed {seed}: a row is stored more often than it was appended: {row}"
        );
    }
    db.close().expect("close");
}

#[test]
fn a_power_cut_at_any_moment_keeps_every_acknowledged_batch_exactly_once() {
    let n: u64 = std::env::var("SCRY_POWERCUT_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for seed in 1..=n {
        one_cut(seed);
    }
}
