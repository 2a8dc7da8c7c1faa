//! Fail-stop: after a failed write, fsync or rename the database refuses writes, and a
//! reopen recovers every acknowledged batch.

use std::sync::Arc;

use scrydb::io::StdFs;
use scrydb::io::fault::{FaultOp, FaultyFs};
use scrydb::{Db, Error, Signal};

use crate::common::*;

fn faulty(dir: &std::path::Path) -> (Db, FaultyFs) {
    let fs = FaultyFs::new(Arc::new(StdFs));
    let db = Db::open(dir, small_opts().file_system(Arc::new(fs.clone()))).expect("open");
    (db, fs)
}

fn check_fail_stop(op: FaultOp, during_flush: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, fs) = faulty(dir.path());
    let acked: Vec<_> = (0..3)
        .map(|i| synth(Signal::Spans, i, 50, BASE + i as i64))
        .collect();
    for b in &acked {
        db.append(Signal::Spans, b).expect("append");
    }
    fs.fail_from(op, 1);
    let failed = if during_flush {
        db.flush().expect_err("flush fails")
    } else {
        db.append(Signal::Spans, &synth(Signal::Spans, 99, 50, BASE))
            .expect_err("append fails")
    };
    assert!(
        matches!(failed, Error::Poisoned { .. } | Error::Io { .. }),
        "{op:?}: {failed}"
    );
    // From now on writes are refused with a clear error, even once the disk recovers.
    fs.heal();
    let err = db
        .append(Signal::Spans, &synth(Signal::Spans, 100, 5, BASE))
        .expect_err("refused after failure");
    assert!(matches!(err, Error::Poisoned { .. }), "{op:?}: {err}");
    assert!(err.to_string().contains("refuses writes"), "{err}");
    // Reads still work and show what was acknowledged.
    assert_eq!(count(&scan(&db, Signal::Spans)), 150);
    let closed = db.close();
    assert!(matches!(closed, Err(Error::Poisoned { .. })), "{closed:?}");

    // Reopening recovers every acknowledged batch from the log.
    let db = open(dir.path());
    let got = rows(&scan(&db, Signal::Spans));
    let want = rows(&acked);
    if during_flush {
        assert_eq!(got, want, "{op:?}");
    } else {
        // The failed append's outcome is unknown: it may or may not be in the log, but the
        // acknowledged ones are, exactly once.
        assert!(
            got.len() == 150 || got.len() == 200,
            "{op:?}: {}",
            got.len()
        );
        for r in &want {
            assert_eq!(got.iter().filter(|g| *g == r).count(), 1);
        }
    }
    db.close().expect("close");
}

#[test]
fn failed_wal_write_poisons() {
    check_fail_stop(FaultOp::Write, false);
}

#[test]
fn failed_wal_fsync_poisons() {
    check_fail_stop(FaultOp::Sync, false);
}

#[test]
fn failed_segment_write_poisons() {
    check_fail_stop(FaultOp::Write, true);
}

#[test]
fn failed_fsync_during_flush_poisons() {
    check_fail_stop(FaultOp::Sync, true);
}

#[test]
fn failed_rename_during_flush_poisons() {
    check_fail_stop(FaultOp::Rename, true);
}

#[test]
fn failed_create_during_flush_poisons() {
    check_fail_stop(FaultOp::Create, true);
}

/// The Nth operation fails, for every N up to the number a whole session needs: whatever
/// fails, reopening shows every acknowledged batch exactly once.
#[test]
fn any_failing_operation_loses_no_acknowledged_batch() {
    for op in [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Rename,
        FaultOp::Create,
    ] {
        for n in 1..=12 {
            let dir = tempfile::tempdir().expect("tempdir");
            let (db, fs) = faulty(dir.path());
            fs.fail_from(op, n);
            let mut acked = Vec::new();
            for i in 0..8u64 {
                let b = synth(Signal::Spans, i, 300, BASE + i as i64 * 1_000);
                if db.append(Signal::Spans, &b).is_ok() {
                    acked.push(b);
                }
                if i % 3 == 2 {
                    let _ = db.flush();
                }
            }
            let _ = db.close();
            let db = open(dir.path());
            let got = rows(&scan(&db, Signal::Spans));
            for r in rows(&acked) {
                assert_eq!(
                    got.iter().filter(|g| **g == r).count(),
                    1,
                    "{op:?} #{n}: an acknowledged row is missing or duplicated"
                );
            }
            db.close().expect("close");
        }
    }
}

/// A store with flushed segments (and indexes) of every signal; returns a trace id of it.
fn flushed_store(dir: &std::path::Path) -> [u8; 16] {
    let db = open(dir);
    for (i, s) in Signal::ALL.into_iter().enumerate() {
        db.append(s, &synth(s, 40 + i as u64, 400, BASE))
            .expect("append");
    }
    let spans = synth(Signal::Spans, 40, 400, BASE);
    let id = first_trace_id(&spans);
    db.close().expect("close");
    id
}

/// Reads fail from the Nth on, for every N a cold lookup, scan, verify and SQL query need:
/// each fails with an error naming the file it could not read, or succeeds; none panics.
/// Index files are read through the `FileSystem` too, so their reads fail like the rest.
#[test]
fn failed_reads_name_the_file_and_do_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = flushed_store(dir.path());
    let want_spans = {
        let db = open(dir.path());
        let n = db.trace(id).expect("trace").rows(Signal::Spans);
        db.close().expect("close");
        n
    };
    assert!(want_spans > 0);
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let query = format!("SELECT count(*) AS n FROM spans WHERE trace_id = '{hex}'");

    // Opening an index is a read of the file system, counted and failed like any other.
    let (db, fs) = faulty(dir.path());
    let snap = db.snapshot();
    let seg = snap.segments(Signal::Spans, None).remove(0);
    let before = fs.count(FaultOp::Read);
    assert!(
        snap.index_rows(&seg, &[id]).is_some(),
        "the index is usable"
    );
    assert!(
        fs.count(FaultOp::Read) > before,
        "the index was not read through the FileSystem"
    );
    drop(snap);
    db.close().expect("close");

    let mut failures = 0;
    for n in 1..=30 {
        let (db, fs) = faulty(dir.path());
        fs.fail_from(FaultOp::Read, n);
        let check = |what: &str, r: Result<(), String>| {
            if let Err(e) = r {
                assert!(
                    e.contains(&*dir.path().to_string_lossy()),
                    "read #{n}, {what}: the error does not name the file: {e}"
                );
            }
        };
        check("trace", db.trace(id).map(|_| ()).map_err(|e| e.to_string()));
        for s in Signal::ALL {
            check(
                "scan",
                db.snapshot()
                    .scan(s, None)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            );
        }
        match db.verify() {
            Ok(report) => {
                for d in &report.damaged {
                    check("verify", Err(d.error.to_string()));
                }
            }
            Err(e) => check("verify", Err(e.to_string())),
        }
        check(
            "sql",
            db.sql_blocking(&query)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
        if fs.count(FaultOp::Read) >= n {
            failures += 1;
        }
        // Once the disk heals, everything reads again (an index that failed to open is
        // scanned around, so the answer is the same).
        fs.heal();
        assert_eq!(
            db.trace(id).expect("trace after heal").rows(Signal::Spans),
            want_spans,
            "read #{n}"
        );
        let report = db.verify().expect("verify after heal");
        assert!(report.is_ok(), "read #{n}: {:?}", report.damaged);
        db.close().expect("close");
    }
    assert!(failures > 20, "only {failures} runs injected a failure");
}

/// Recovering a damaged log (`WalRecovery::TruncateAtCorruption`, `scry recover`) moves the
/// bytes after the damage into a quarantine file before it cuts the log: whichever file
/// operation fails during that, no byte of the log is lost, and a later recovery finishes
/// the job.
#[test]
fn a_failing_operation_during_quarantine_loses_no_log_byte() {
    use scrydb::WalRecovery;
    let template = tempfile::tempdir().expect("tempdir");
    let batches: Vec<_> = (0..4u64)
        .map(|i| synth(Signal::Spans, i, 20, BASE + i as i64 * 1_000))
        .collect();
    {
        // Appends are acknowledged, then the flush at close cannot create a segment: the
        // log keeps every frame, as after a crash.
        let fs = FaultyFs::new(Arc::new(StdFs));
        let opts = small_opts()
            .memtable_size(64 << 20)
            .file_system(Arc::new(fs.clone()));
        let db = Db::open(template.path(), opts).expect("open");
        for b in &batches {
            db.append(Signal::Spans, b).expect("append");
        }
        fs.fail_from(FaultOp::Create, 1);
        assert!(db.close().is_err());
    }
    let wal_dir = template.path().join("wal");
    let logs: Vec<_> = std::fs::read_dir(&wal_dir)
        .expect("wal")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(logs.len(), 1, "one log file: {logs:?}");
    let log_path = logs[0].clone();
    let mut original = std::fs::read(&log_path).expect("read");
    // Damage the third frame's payload.
    let mut off = 32;
    for _ in 0..2 {
        off += 16 + u32::from_le_bytes(original[off..off + 4].try_into().expect("4")) as usize;
    }
    original[off + 16 + 30] ^= 0x10;
    std::fs::write(&log_path, &original).expect("write");

    for op in [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Rename,
        FaultOp::Create,
    ] {
        for n in 1..=4 {
            let dir = tempfile::tempdir().expect("tempdir");
            for e in files_under(template.path()) {
                let to = dir
                    .path()
                    .join(e.strip_prefix(template.path()).expect("under"));
                std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&e, &to).expect("copy");
            }
            let fs = FaultyFs::new(Arc::new(StdFs));
            fs.fail_from(op, n);
            let opts = small_opts().wal_recovery(WalRecovery::TruncateAtCorruption);
            if let Ok(db) = Db::open(dir.path(), opts.clone().file_system(Arc::new(fs))) {
                drop(db);
            }
            let db = Db::open(dir.path(), opts).expect("a healthy recovery opens");
            assert_eq!(
                rows(&scan(&db, Signal::Spans)),
                rows(&batches[..2]),
                "{op:?} #{n}"
            );
            db.close().expect("close");
            // The frames before the damage are rows; every byte from it on is in a
            // quarantine file.
            let whole = std::fs::read_dir(dir.path().join("wal"))
                .expect("wal")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.to_string_lossy().contains(".quarantine-"))
                .any(|q| std::fs::read(q).expect("read") == original[off..]);
            assert!(whole, "{op:?} #{n}: log bytes lost");
        }
    }
}

/// A full disk (ENOSPC) at any write, fsync, rename or file creation during ingest, flush
/// and compaction: the error says to free space and reopen, nothing acknowledged is lost,
/// the store opens, and once space is back it takes writes again.
#[test]
fn a_full_disk_anywhere_loses_nothing_and_the_store_writes_again_once_space_is_freed() {
    for op in [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::Rename,
        FaultOp::Create,
    ] {
        for n in [1, 2, 3, 5, 8, 13] {
            let dir = tempfile::tempdir().expect("tempdir");
            let fs = FaultyFs::new(Arc::new(StdFs));
            fs.disk_full(true);
            let opts = small_opts()
                .compaction(false)
                .file_system(Arc::new(fs.clone()));
            let db = Db::open(dir.path(), opts.clone()).expect("open");
            fs.fail_from(op, n);
            let mut acked = Vec::new();
            let mut failure = None;
            for i in 0..30u64 {
                let b = synth(Signal::Spans, i, 30, BASE + (i as i64 % 2) * HOUR);
                let step = db.append(Signal::Spans, &b).map(|()| acked.push(b));
                let step = step.and_then(|()| {
                    if i % 6 == 5 {
                        db.flush()?;
                    }
                    if i % 12 == 11 {
                        db.compact()?;
                    }
                    Ok(())
                });
                if let Err(e) = step {
                    failure = Some(e);
                    break;
                }
            }
            let failure = failure.unwrap_or_else(|| panic!("{op:?} #{n}: nothing failed"));
            let msg = failure.to_string();
            assert!(
                msg.contains("free disk space") && msg.contains("reopen"),
                "{op:?} #{n}: {msg}"
            );
            // Space is freed; the store is reopened (what the message says).
            fs.heal();
            drop(db);
            let db = Db::open(dir.path(), opts).unwrap_or_else(|e| {
                panic!("{op:?} #{n}: the store does not open after the disk was full: {e}")
            });
            let stored = rows(&scan(&db, Signal::Spans));
            let want = rows(&acked);
            // Every acknowledged row is there once; the batch whose append failed may be
            // there too (its frame may have reached the log before the failure).
            let mut extra = stored.clone();
            for r in &want {
                let pos = extra
                    .iter()
                    .position(|x| x == r)
                    .unwrap_or_else(|| panic!("{op:?} #{n}: an acknowledged row is missing"));
                extra.remove(pos);
            }
            assert!(
                extra.len() <= 30,
                "{op:?} #{n}: {} unexpected rows",
                extra.len()
            );
            let more = synth(Signal::Spans, 999, 10, BASE);
            db.append(Signal::Spans, &more)
                .unwrap_or_else(|e| panic!("{op:?} #{n}: no writes after space came back: {e}"));
            db.flush().expect("flush");
            db.close().expect("close");
        }
    }
}
