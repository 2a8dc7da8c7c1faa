//! Retention drops whole partitions; a file is deleted only when no snapshot can read it.

use std::time::{Duration, Instant};

use scrydb::{Db, Options, Signal};

use crate::common::*;

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dropped_segments_stay_readable_by_older_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let old = synth(Signal::Spans, 1, 100, BASE);
    let new = synth(Signal::Spans, 2, 100, BASE + 3 * HOUR);
    db.append(Signal::Spans, &old).expect("append");
    db.append(Signal::Spans, &new).expect("append");
    db.flush().expect("flush");
    let before = db.snapshot();
    let old_seg = before
        .segments(Signal::Spans, None)
        .into_iter()
        .find(|s| s.partition_start == BASE)
        .expect("old partition");
    let old_path = before.segment_path(&old_seg);
    drop(old_seg);

    // A cutoff inside the old partition keeps it (only whole partitions go).
    let stats = db.drop_partitions_before(BASE + HOUR / 2).expect("drop");
    assert_eq!(stats.segments, 0);
    let stats = db.drop_partitions_before(BASE + HOUR).expect("drop");
    assert_eq!((stats.segments, stats.rows), (1, 100));

    // New snapshots no longer see it; the older one still reads it, file and all.
    assert_eq!(
        rows(&scan(&db, Signal::Spans)),
        rows(std::slice::from_ref(&new))
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(old_path.exists(), "a snapshot still reads the file");
    assert_eq!(
        rows(
            &before
                .scan(Signal::Spans, None)
                .expect("old snapshot reads")
        ),
        rows(&[old, new.clone()])
    );
    drop(before);
    // The file goes first, then its emptied partition directory.
    let partition_dir = old_path.parent().expect("partition dir").to_path_buf();
    wait_until("obsolete file and empty partition deleted", || {
        !old_path.exists() && !partition_dir.exists()
    });
    db.close().expect("close");
    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&[new]));
    db.close().expect("close");
}

#[test]
fn retention_option_drops_old_partitions_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as i64;
    let db = Db::open(
        dir.path(),
        Options::default().retention(Some(Duration::from_secs(2 * 3600))),
    )
    .expect("open");
    let ancient = synth(Signal::Logs, 1, 50, now - 30 * 24 * HOUR);
    let recent = synth(Signal::Logs, 2, 50, now - HOUR / 2);
    db.append(Signal::Logs, &ancient).expect("append");
    db.append(Signal::Logs, &recent).expect("append");
    db.close().expect("close");
    // The pass at open removes the month-old partition.
    let db = Db::open(
        dir.path(),
        Options::default().retention(Some(Duration::from_secs(2 * 3600))),
    )
    .expect("open");
    wait_until("old partition dropped", || {
        db.snapshot().stats(Signal::Logs).segments == 1
    });
    assert_eq!(rows(&scan(&db, Signal::Logs)), rows(&[recent]));
    db.close().expect("close");
    let err = Db::open(
        dir.path(),
        Options::default().retention(Some(Duration::from_secs(60))),
    )
    .expect_err("retention below the partition width is refused");
    assert!(err.to_string().contains("retention"), "{err}");
}
