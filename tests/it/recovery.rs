//! Recovery at open: torn WAL tails, damaged WAL/manifest/segment files, orphans, the lock.

use std::path::{Path, PathBuf};

use scrydb::{Db, Error, Signal, WalRecovery};

use crate::common::*;

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// Appends `n` batches of 100 spans to a database and copies its directory while it is
/// open: the copy is what a crash would leave (acknowledged frames in one log file, no
/// segments). The kill -9 version of this is in `crash.rs`.
fn crashed_copy(n: usize) -> (tempfile::TempDir, Vec<arrow::array::RecordBatch>) {
    let live = tempfile::tempdir().expect("tempdir");
    let db = Db::open(live.path(), scrydb::Options::default()).expect("open");
    let batches: Vec<_> = (0..n)
        .map(|i| synth(Signal::Spans, i as u64, 100, BASE + i as i64 * 1_000_000))
        .collect();
    for b in &batches {
        db.append(Signal::Spans, b).expect("append");
    }
    // The state on disk now is what a crash (kill -9, power loss with Sync durability)
    // would leave: frames in the log, no segments.
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(live.path(), copy.path());
    drop(db);
    (copy, batches)
}

/// Byte offsets of the frames in a log file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut off = 32;
    let mut v = Vec::new();
    while off + 16 <= bytes.len() {
        v.push(off);
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4")) as usize;
        off += 16 + len;
    }
    v
}

#[test]
fn replays_the_log_after_a_crash() {
    let (dir, batches) = crashed_copy(5);
    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches));
    db.close().expect("close");
    let db = open(dir.path());
    assert_eq!(
        rows(&scan(&db, Signal::Spans)),
        rows(&batches),
        "exactly once after flush"
    );
    db.close().expect("close");
}

#[test]
fn torn_tail_is_dropped() {
    let (dir, batches) = crashed_copy(5);
    let wal = wal_files(dir.path());
    assert_eq!(wal.len(), 1);
    let bytes = std::fs::read(&wal[0]).expect("read");
    let offsets = frame_offsets(&bytes);
    assert_eq!(offsets.len(), 5);
    // Cut the last frame in the middle of its payload, as a crash during write would.
    let cut = offsets[4] + 100;
    std::fs::write(&wal[0], &bytes[..cut]).expect("truncate");
    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches[..4]));
    db.close().expect("close");
    // And with a zero-filled tail (what some file systems leave after power loss).
    let (dir, batches) = crashed_copy(3);
    let wal = wal_files(dir.path());
    let mut bytes = std::fs::read(&wal[0]).expect("read");
    let offsets = frame_offsets(&bytes);
    bytes.truncate(offsets[2]);
    bytes.extend(std::iter::repeat_n(0u8, 5000));
    std::fs::write(&wal[0], &bytes).expect("write");
    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches[..2]));
    db.close().expect("close");
}

#[test]
fn flipped_byte_inside_the_log_is_an_error_naming_the_file() {
    let (dir, batches) = crashed_copy(5);
    let wal = wal_files(dir.path());
    let mut bytes = std::fs::read(&wal[0]).expect("read");
    let offsets = frame_offsets(&bytes);
    let at = offsets[2] + 16 + 50; // inside frame 2's payload
    bytes[at] ^= 0x01;
    std::fs::write(&wal[0], &bytes).expect("write");

    let err = Db::open(dir.path(), small_opts()).expect_err("damage is refused");
    match &err {
        Error::Corrupted { path, offset, .. } => {
            assert_eq!(path, &wal[0]);
            assert_eq!(*offset, Some(offsets[2] as u64));
        }
        other => panic!("expected Corrupted, got {other}"),
    }
    // Refusing changed nothing: the file is intact for a second look.
    assert_eq!(std::fs::read(&wal[0]).expect("read"), bytes);

    assert!(err.to_string().contains("scry recover --db"), "{err}");

    // The user can choose to keep what precedes the damage; the rest is moved, not deleted.
    let db = Db::open(
        dir.path(),
        small_opts().wal_recovery(WalRecovery::TruncateAtCorruption),
    )
    .expect("opens keeping the intact prefix");
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches[..2]));
    let report = db.recovery_report().clone();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(
        std::fs::read(&report.quarantined[0]).expect("quarantine file"),
        bytes[offsets[2]..],
        "every byte from the damage on is kept"
    );
    assert!(
        report.quarantined[0]
            .to_string_lossy()
            .ends_with(".wal.quarantine-1")
    );
    db.close().expect("close");
    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches[..2]));
    db.close().expect("close");
}

#[test]
fn a_flipped_bit_in_the_last_complete_frame_is_not_a_torn_tail() {
    // The last frame is complete (its length fits in the file): it was written whole, so
    // it may have been acknowledged. A bit flip in it is corruption, not a torn write.
    let (dir, batches) = crashed_copy(5);
    let wal = wal_files(dir.path());
    let mut bytes = std::fs::read(&wal[0]).expect("read");
    let offsets = frame_offsets(&bytes);
    bytes[offsets[4] + 16 + 40] ^= 0x01;
    std::fs::write(&wal[0], &bytes).expect("write");

    let err = Db::open(dir.path(), small_opts()).expect_err("damage is refused");
    match &err {
        Error::Corrupted { path, offset, .. } => {
            assert_eq!(path, &wal[0]);
            assert_eq!(*offset, Some(offsets[4] as u64));
        }
        other => panic!("expected Corrupted, got {other}"),
    }
    assert!(err.to_string().contains("scry recover"), "{err}");
    assert_eq!(
        std::fs::read(&wal[0]).expect("read"),
        bytes,
        "nothing changed"
    );

    // `scry recover` keeps the first four batches and moves the fifth aside.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .arg("recover")
        .env("RUST_LOG", "error")
        .output()
        .expect("run scry recover");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("quarantine-1"), "{stdout}");
    let q = dir.path().join("wal").join(format!(
        "{}.quarantine-1",
        wal[0].file_name().expect("name").to_string_lossy()
    ));
    assert_eq!(
        std::fs::read(&q).expect("quarantine file"),
        bytes[offsets[4]..]
    );

    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches[..4]));
    assert_eq!(db.recovery_report().quarantine_files, vec![q.clone()]);
    db.close().expect("close");
    assert!(q.exists(), "quarantine files are never deleted");

    // `scry verify` says so too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .arg("verify")
        .output()
        .expect("run scry verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("quarantined: {}", q.display())),
        "{stdout}"
    );
}

#[test]
fn a_last_frame_whose_end_is_zero_filled_is_a_torn_tail() {
    // Power loss can leave a frame's length in place but its last pages unwritten (zeros):
    // the Arrow end-of-stream marker that ends every payload is missing, so the write never
    // completed and was never acknowledged.
    let (dir, batches) = crashed_copy(3);
    let wal = wal_files(dir.path());
    let mut bytes = std::fs::read(&wal[0]).expect("read");
    let n = bytes.len();
    for b in &mut bytes[n - 8..] {
        *b = 0;
    }
    std::fs::write(&wal[0], &bytes).expect("write");
    let db = open(dir.path());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches[..2]));
    assert!(db.recovery_report().torn_tail_bytes > 0);
    assert!(db.recovery_report().quarantined.is_empty());
    db.close().expect("close");
}

#[test]
fn flipped_byte_in_a_frame_header_is_detected() {
    let (dir, _) = crashed_copy(3);
    let wal = wal_files(dir.path());
    let mut bytes = std::fs::read(&wal[0]).expect("read");
    let offsets = frame_offsets(&bytes);
    bytes[offsets[1] + 1] ^= 0x80; // length field of frame 1
    std::fs::write(&wal[0], &bytes).expect("write");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("frame header checksum"), "{err}");
}

fn flushed_db(n: usize) -> (tempfile::TempDir, Vec<arrow::array::RecordBatch>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let batches: Vec<_> = (0..n)
        .map(|i| synth(Signal::Spans, i as u64, 200, BASE + i as i64 * 1_000_000))
        .collect();
    for b in &batches {
        db.append(Signal::Spans, b).expect("append");
    }
    db.close().expect("close");
    (dir, batches)
}

fn manifest_path(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("MANIFEST-"))
        })
        .expect("a manifest")
}

#[test]
fn flipped_byte_in_the_manifest_is_an_error_naming_it() {
    let (dir, _) = flushed_db(2);
    let m = manifest_path(dir.path());
    let mut bytes = std::fs::read(&m).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    std::fs::write(&m, &bytes).expect("write");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    match &err {
        Error::Corrupted { path, .. } => assert_eq!(path, &m),
        other => panic!("expected Corrupted, got {other}"),
    }
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(err.to_string().contains("from a backup"), "{err}");
    let ro = Db::open_read_only(dir.path(), small_opts()).expect_err("refused read-only too");
    assert!(matches!(ro, Error::Corrupted { .. }), "{ro}");
}

#[test]
fn flipped_byte_in_a_segment_is_detected_on_read_and_verify() {
    let (dir, _) = flushed_db(2);
    let db = open(dir.path());
    let snap = db.snapshot();
    let seg = snap.segments(Signal::Spans, None)[0].clone();
    let path = snap.segment_path(&seg);
    db.close().expect("close");
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");

    // Opening does not read segment contents (it checks sizes), so the store stays usable.
    let db = open(dir.path());
    let err = db
        .snapshot()
        .scan(Signal::Spans, None)
        .expect_err("damage detected");
    match &err {
        Error::Corrupted { path: p, .. } => assert_eq!(p, &path),
        other => panic!("expected Corrupted, got {other}"),
    }
    let report = db.verify().expect("verify");
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(report.damaged[0].path, path);
    // Writes still work.
    db.append(Signal::Logs, &synth(Signal::Logs, 1, 10, BASE))
        .expect("append");
    db.close().expect("close");
}

#[test]
fn truncated_or_missing_segment_is_an_error_naming_it() {
    let (dir, _) = flushed_db(1);
    let db = open(dir.path());
    let snap = db.snapshot();
    let path = snap.segment_path(&snap.segments(Signal::Spans, None)[0]);
    db.close().expect("close");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("truncate");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(
        matches!(&err, Error::Corrupted { path: p, .. } if p == &path),
        "{err}"
    );
    std::fs::remove_file(&path).expect("remove");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(err.to_string().contains("missing"), "{err}");
}

/// A store with flushed segments that crashed while open with more rows in its log: what
/// a crash during a flush leaves (the log the flush would have covered is still there).
fn crashed_after_flush() -> (tempfile::TempDir, Vec<arrow::array::RecordBatch>) {
    let (dir, mut batches) = flushed_db(2);
    let db = open(dir.path());
    let more = synth(Signal::Spans, 77, 100, BASE + 5_000_000);
    db.append(Signal::Spans, &more).expect("append");
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    drop(db);
    batches.push(more);
    (copy, batches)
}

fn first_partition(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("spans"))
        .expect("spans")
        .next()
        .expect("a partition")
        .expect("entry")
        .path()
}

#[test]
fn leftovers_of_a_crashed_flush_and_temp_files_are_removed() {
    let (dir, batches) = crashed_after_flush();
    let part = first_partition(dir.path());
    // Segments of a flush that crashed before publishing: ids at or above next_segment_id.
    let orphan = part.join("00000000000000009999.parquet");
    let orphan_index = part.join("00000000000000009999.tidx");
    let tmp = part.join("00000000000000009998.parquet.tmp");
    // A segment a manifest dropped (id below next_segment_id) whose deletion was cut short.
    let dropped = part.join("00000000000000000000.parquet");
    let orphan_dir = dir.path().join("logs").join("20200101T000000Z");
    std::fs::create_dir_all(&orphan_dir).expect("mkdir");
    let orphan2 = orphan_dir.join("00000000000000009997.parquet");
    let all = [&orphan, &orphan_index, &tmp, &dropped, &orphan2];
    for p in all {
        std::fs::write(p, b"half-written").expect("write");
    }
    std::fs::write(dir.path().join("MANIFEST-00000000000000000999.tmp"), b"x").expect("write");
    let db = open(dir.path());
    for p in all {
        assert!(!p.exists(), "{} should be removed", p.display());
    }
    assert_eq!(db.recovery_report().orphans_removed.len(), all.len());
    assert!(!orphan_dir.exists(), "emptied partition directory removed");
    assert!(
        !dir.path()
            .join("MANIFEST-00000000000000000999.tmp")
            .exists()
    );
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches));
    db.close().expect("close");
}

#[test]
fn files_scrydb_did_not_write_are_left_alone() {
    let (dir, batches) = crashed_after_flush();
    let part = first_partition(dir.path());
    let mine = [
        part.join("notes.txt"),
        part.join("00000000000000000001.parquet.bak"),
        part.join("backup.parquet"),
        dir.path().join("spans").join("README"),
    ];
    for p in &mine {
        std::fs::write(p, b"a user's file").expect("write");
    }
    let user_dir = dir.path().join("logs").join("my-exports");
    std::fs::create_dir_all(&user_dir).expect("mkdir");
    let db = open(dir.path());
    for p in &mine {
        assert_eq!(std::fs::read(p).expect("still there"), b"a user's file");
    }
    assert!(
        user_dir.exists(),
        "an empty directory not named like a partition stays"
    );
    let mut left = db.recovery_report().left_alone.clone();
    left.sort();
    let mut want = mine.to_vec();
    want.sort();
    assert_eq!(left, want);
    assert!(db.recovery_report().orphans_removed.is_empty());
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&batches));
    db.close().expect("close");
}

#[test]
fn segments_newer_than_a_restored_manifest_are_refused_not_deleted() {
    let (dir, _) = flushed_db(1);
    let old_manifest = manifest_path(dir.path());
    let old_bytes = std::fs::read(&old_manifest).expect("read");
    let db = open(dir.path());
    db.append(
        Signal::Spans,
        &synth(Signal::Spans, 9, 100, BASE + 7 * HOUR),
    )
    .expect("append");
    db.close().expect("close");
    let newer: Vec<PathBuf> = files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert_eq!(newer.len(), 2);
    // The manifest is restored from a backup taken before the second flush.
    std::fs::remove_file(manifest_path(dir.path())).expect("remove");
    std::fs::write(&old_manifest, &old_bytes).expect("restore");

    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("newer than manifest"), "{msg}");
    let newest = newer.iter().max_by_key(|p| p.file_name()).expect("two");
    assert!(msg.contains(&newest.display().to_string()), "{msg}");
    for p in &newer {
        assert!(p.exists(), "{} must not be deleted", p.display());
    }
}

#[test]
fn second_writer_gets_the_lock_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let err = Db::open(dir.path(), small_opts()).expect_err("second open refused");
    match &err {
        Error::Locked {
            dir: d,
            lock_file,
            holder,
        } => {
            assert_eq!(d, dir.path());
            assert_eq!(lock_file, &dir.path().join("LOCK"));
            let holder = holder.as_deref().expect("the holder wrote itself down");
            assert!(
                holder.starts_with(&format!("pid {}: ", std::process::id())),
                "{holder}"
            );
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(
        err.to_string().contains("locked by another writer"),
        "{err}"
    );
    db.close().expect("close");
    open(dir.path()).close().expect("reopens after close");
}

#[test]
fn future_format_versions_are_refused_clearly() {
    let (dir, _) = flushed_db(1);
    let m = manifest_path(dir.path());
    let mut bytes = std::fs::read(&m).expect("read");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let body = bytes.len() - 4;
    let crc = crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&m, &bytes).expect("write");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise; the engine uses crc32fast, which computes the same.
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_lost_manifest_is_refused_not_treated_as_a_new_database() {
    // Segments without a manifest.
    let (dir, _) = flushed_db(2);
    std::fs::remove_file(manifest_path(dir.path())).expect("remove manifest");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("no MANIFEST"), "{err}");
    assert!(err.to_string().contains(".parquet"), "{err}");
    // Nothing was deleted: the segments are still there.
    let parquet = files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .count();
    assert!(parquet > 0);

    // Log files without a manifest.
    let (dir, _) = crashed_copy(2);
    std::fs::remove_file(manifest_path(dir.path())).expect("remove manifest");
    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(err.to_string().contains(".wal"), "{err}");
}

#[test]
fn a_checksummed_frame_that_does_not_decode_is_corruption() {
    // A frame whose checksums are right but whose payload is not Arrow IPC (a bug or a
    // foreign writer, not a torn write): refused by default, cut under TruncateAtCorruption.
    let (dir, batches) = crashed_copy(3);
    let wal = wal_files(dir.path()).pop().expect("a log file");
    let mut bytes = std::fs::read(&wal).expect("read");
    let offs = frame_offsets(&bytes);
    let off = offs[1];
    let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4")) as usize;
    let payload = off + 16..off + 16 + len;
    for b in &mut bytes[payload.clone()] {
        *b = 0xAB;
    }
    let crc = crc32(&bytes[payload]);
    bytes[off + 8..off + 12].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32(&bytes[off..off + 12]);
    bytes[off + 12..off + 16].copy_from_slice(&hcrc.to_le_bytes());
    std::fs::write(&wal, &bytes).expect("write");

    let err = Db::open(dir.path(), small_opts()).expect_err("refused");
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("Arrow IPC"), "{err}");

    let db = Db::open(
        dir.path(),
        small_opts().wal_recovery(WalRecovery::TruncateAtCorruption),
    )
    .expect("opens, keeping what precedes the damage");
    assert_eq!(
        rows(&scan(&db, Signal::Spans)),
        rows(std::slice::from_ref(&batches[0]))
    );
    db.close().expect("close");
}

/// Every file under `dir` (relative path) with its bytes: equal trees give equal maps.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn go(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("under root").to_path_buf();
            if p.is_dir() {
                out.insert(rel.join(""), Vec::new());
                go(root, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

#[test]
fn a_read_only_open_changes_nothing_and_sees_the_log() {
    let (dir, batches) = crashed_after_flush();
    // Everything a writer's open would change: a leftover segment, temporary files, an
    // older manifest, a user's file, a torn tail on the log.
    let part = first_partition(dir.path());
    std::fs::write(part.join("00000000000000009999.parquet"), b"leftover").expect("write");
    std::fs::write(part.join("00000000000000009998.parquet.tmp"), b"tmp").expect("write");
    std::fs::write(part.join("notes.txt"), b"mine").expect("write");
    std::fs::write(dir.path().join("MANIFEST-00000000000000000999.tmp"), b"x").expect("write");
    std::fs::write(dir.path().join("MANIFEST-00000000000000000000"), b"old").expect("write");
    let wal = wal_files(dir.path()).pop().expect("a log file");
    let mut log = std::fs::read(&wal).expect("read");
    log.extend_from_slice(&[7u8; 10]); // a torn frame header
    std::fs::write(&wal, &log).expect("write");
    let before = tree(dir.path());

    let db = Db::open_read_only(dir.path(), small_opts()).expect("read-only open");
    assert!(db.is_read_only());
    assert_eq!(
        rows(&scan(&db, Signal::Spans)),
        rows(&batches),
        "log rows visible"
    );
    let n = single_i64(
        &db.sql_blocking("SELECT count(*) AS n FROM spans")
            .expect("sql"),
    );
    assert_eq!(n as usize, count(&batches));
    let report = db.verify().expect("verify");
    assert!(report.is_ok() && report.segments >= 1, "{report:?}");
    let err = db
        .append(Signal::Spans, &synth(Signal::Spans, 1, 10, BASE))
        .expect_err("writes refused");
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    assert!(matches!(db.flush(), Err(Error::ReadOnly { .. })));
    assert!(matches!(
        db.rebuild_indexes(true),
        Err(Error::ReadOnly { .. })
    ));
    assert!(db.recovery_report().read_only);
    db.close().expect("close");
    assert_eq!(tree(dir.path()), before, "not a byte or a name changed");
}

#[test]
fn a_read_only_open_works_beside_a_writer() {
    let (dir, batches) = flushed_db(1);
    let writer = open(dir.path());
    let more = synth(Signal::Spans, 5, 50, BASE + HOUR);
    writer.append(Signal::Spans, &more).expect("append");
    let reader = Db::open_read_only(dir.path(), small_opts()).expect("read-only beside a writer");
    let mut want = batches.clone();
    want.push(more.clone());
    assert_eq!(rows(&scan(&reader, Signal::Spans)), rows(&want));
    reader.close().expect("close reader");
    writer
        .append(Signal::Spans, &more)
        .expect("the writer is unaffected");
    writer.close().expect("close writer");

    // And the CLI's read commands, beside a writer.
    let writer = open(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args(["sql", "SELECT count(*) AS n FROM spans", "--format", "csv"])
        .output()
        .expect("run scry sql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&(count(&batches) + 2 * 50).to_string()),
        "{stdout}"
    );
    writer.close().expect("close writer");
}

#[test]
fn read_and_recover_commands_refuse_a_directory_that_is_not_a_store() {
    let parent = tempfile::tempdir().expect("tempdir");
    let missing = parent.path().join("nothing-here");
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    for dir in [&missing, &empty] {
        let err = Db::open_read_only(dir, small_opts()).expect_err("not a store");
        assert!(matches!(err, Error::NotAStore { .. }), "{err}");
        assert!(err.to_string().contains("no ScryDB store at"), "{err}");
        for args in [
            &["sql", "SELECT 1"][..],
            &["trace", "0123456789abcdef0123456789abcdef"][..],
            &["info"][..],
            &["verify"][..],
            &["recover"][..],
        ] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
                .arg("--db")
                .arg(dir)
                .args(args)
                .output()
                .expect("run scry");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} on {}", dir.display());
            assert!(
                stderr.contains(&format!("no ScryDB store at {}", dir.display())),
                "{args:?}: {stderr}"
            );
        }
    }
    assert!(!missing.exists(), "nothing was created");
    assert_eq!(std::fs::read_dir(&empty).expect("list").count(), 0);
}
