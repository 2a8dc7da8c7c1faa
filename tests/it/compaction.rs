//! Compaction and retention by disk budget: the same answers before, during and after a
//! merge; fewer segments and less bloom memory after; disk freed once the last snapshot of
//! the old segments is gone; per-partition statistics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scrydb::{Db, Options, Signal};

use crate::common::{
    BASE, HOUR, count, files_under, first_trace_id, rows, scan, small_opts, synth,
};

fn opts() -> Options {
    // No background pass: the tests decide when compaction runs.
    small_opts().compaction(false)
}

/// Answers that must not change when segments are merged.
fn answers(db: &Db) -> Vec<Vec<String>> {
    let q = |sql: &str| rows(&db.sql_blocking(sql).expect(sql));
    vec![
        rows(&scan(db, Signal::Spans)),
        rows(&scan(db, Signal::Logs)),
        q("SELECT service_name, count(*), sum(duration_ns) FROM spans GROUP BY 1"),
        q("SELECT date_bin(INTERVAL '1 hour', time) AS h, count(*) FROM logs GROUP BY 1"),
    ]
}

fn segments(db: &Db, signal: Signal) -> usize {
    db.snapshot().segments(signal, None).len()
}

#[test]
fn merged_segments_answer_the_same_with_less_bloom_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts()).expect("open");
    let mut first = Vec::new();
    for i in 0..12u64 {
        let spans = synth(Signal::Spans, i, 300, BASE + (i as i64 % 2) * HOUR);
        first.push(first_trace_id(&spans));
        db.append(Signal::Spans, &spans).expect("append");
        db.append(Signal::Logs, &synth(Signal::Logs, 100 + i, 100, BASE))
            .expect("append");
        db.flush().expect("flush");
    }
    let before = answers(&db);
    let traces: Vec<_> = first
        .iter()
        .map(|t| rows(&db.trace(*t).expect("trace").spans))
        .collect();
    assert_eq!(segments(&db, Signal::Spans), 12);
    let bloom_before: u64 = db
        .snapshot()
        .partition_stats()
        .iter()
        .map(|p| p.bloom_bytes)
        .sum();

    let stats = db.compact().expect("compact");
    assert_eq!(stats.merges, 3, "{stats:?}");
    assert_eq!(stats.segments_in, 24, "{stats:?}");
    assert_eq!(stats.rows, 12 * 300 + 12 * 100);
    assert_eq!(segments(&db, Signal::Spans), 2, "one per partition");
    assert_eq!(segments(&db, Signal::Logs), 1);
    assert_eq!(answers(&db), before);
    for (t, want) in first.iter().zip(&traces) {
        assert_eq!(&rows(&db.trace(*t).expect("trace").spans), want);
    }
    let parts = db.snapshot().partition_stats();
    let bloom_after: u64 = parts.iter().map(|p| p.bloom_bytes).sum();
    assert!(
        bloom_after < bloom_before,
        "{bloom_after} >= {bloom_before}"
    );
    let spans: Vec<_> = parts.iter().filter(|p| p.signal == Signal::Spans).collect();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans.iter().map(|p| p.rows).sum::<u64>(), 3600);
    for p in &parts {
        assert_eq!(p.segments, 1);
        assert!(p.index_bytes > 0 && p.bloom_bytes > 0, "{p:?}");
        assert!(p.uncompressed_bytes > p.bytes, "compressed: {p:?}");
        assert!(
            p.min_time >= p.partition_start && p.max_time < p.partition_end,
            "{p:?}"
        );
    }
    // A second pass has nothing to do; the store reopens the same.
    assert_eq!(db.compact().expect("compact").merges, 0);
    db.close().expect("close");
    let db = Db::open(dir.path(), opts()).expect("reopen");
    assert!(db.recovery_report().is_clean(), "{}", db.recovery_report());
    assert_eq!(answers(&db), before);
    db.close().expect("close");
    // Only the live segments' files are left.
    let parquet = files_under(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .count();
    assert_eq!(parquet, 3);
}

#[test]
fn compaction_under_concurrent_ingest_and_queries_loses_and_duplicates_nothing() {
    const BATCH: usize = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), opts()).expect("open"));
    let acked = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let writer = {
        let (db, acked) = (db.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let b = synth(Signal::Spans, 1000 + i, BATCH, BASE + (i as i64 % 3) * HOUR);
                db.append(Signal::Spans, &b).expect("append");
                acked.fetch_add(BATCH, Ordering::SeqCst);
                all.push(b);
                i += 1;
                if i.is_multiple_of(5) {
                    db.flush().expect("flush");
                }
            }
            all
        })
    };
    let reader = {
        let (db, acked) = (db.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            while Instant::now() < deadline {
                let low = acked.load(Ordering::SeqCst);
                let n = crate::common::single_i64(
                    &db.sql_blocking("SELECT count(*) FROM spans")
                        .expect("count"),
                ) as usize;
                assert!(
                    n >= low && n >= last,
                    "saw {n}, acknowledged {low}, before {last}"
                );
                assert_eq!(n % BATCH, 0, "a batch seen in part or twice: {n}");
                last = n;
            }
        })
    };
    let mut merges = 0;
    while Instant::now() < deadline {
        merges += db.compact().expect("compact").merges;
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = writer.join().expect("writer");
    reader.join().expect("reader");
    assert!(merges > 0, "no merge happened");
    db.flush().expect("flush");
    db.compact().expect("compact");
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&all));
    assert!(
        segments(&db, Signal::Spans) <= 3,
        "{}",
        segments(&db, Signal::Spans)
    );
    let Ok(db) = Arc::try_unwrap(db) else {
        panic!("threads still hold the database")
    };
    db.close().expect("close");
}

#[test]
fn background_compaction_merges_closed_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts()).expect("open");
    for i in 0..3u64 {
        db.append(Signal::Logs, &synth(Signal::Logs, i, 100, BASE))
            .expect("append");
        db.flush().expect("flush");
    }
    let before = rows(&scan(&db, Signal::Logs));
    db.close().expect("close");
    // Partitions of 2025 are long closed: the background pass merges them by itself.
    let db = Db::open(
        dir.path(),
        small_opts().compaction_interval(Duration::from_millis(50)),
    )
    .expect("reopen");
    let deadline = Instant::now() + Duration::from_secs(20);
    while segments(&db, Signal::Logs) > 1 {
        assert!(Instant::now() < deadline, "no background merge");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rows(&scan(&db, Signal::Logs)), before);
    db.close().expect("close");
}

#[test]
fn a_disk_budget_drops_the_oldest_partitions_and_frees_disk_when_snapshots_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts()).expect("open");
    for h in 0..4i64 {
        db.append(
            Signal::Spans,
            &synth(Signal::Spans, h as u64, 2000, BASE + h * HOUR),
        )
        .expect("append");
        db.append(
            Signal::Logs,
            &synth(Signal::Logs, 10 + h as u64, 1000, BASE + h * HOUR),
        )
        .expect("append");
    }
    db.flush().expect("flush");
    let parts = db.snapshot().partition_stats();
    let per_hour: Vec<u64> = (0..4)
        .map(|h| {
            parts
                .iter()
                .filter(|p| p.partition_start == BASE + h * HOUR)
                .map(|p| {
                    p.bytes + p.index_bytes + p.term_index_bytes + p.pattern_bytes + p.rollup_bytes
                })
                .sum()
        })
        .collect();
    let total: u64 = per_hour.iter().sum();
    // A budget that holds the newest two hours but not three.
    let budget = per_hour[2] + per_hour[3] + per_hour[1] / 2;
    assert!(budget < total);
    let old_snapshot = db.snapshot();
    let old_files: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| {
            p.to_string_lossy().contains("20251125T00")
                || p.to_string_lossy().contains("20251125T01")
        })
        .collect();
    assert!(!old_files.is_empty());
    let stats = db.retain(None, Some(budget)).expect("retain");
    let kept: Vec<i64> = db
        .snapshot()
        .partition_stats()
        .iter()
        .map(|p| (p.partition_start - BASE) / HOUR)
        .collect();
    assert_eq!(stats.segments, 4, "{stats:?}");
    assert_eq!(kept, vec![2, 3, 2, 3], "spans and logs of hours 2 and 3");
    assert_eq!(count(&scan(&db, Signal::Spans)), 4000);
    // The old snapshot still reads the dropped segments, so their files stay.
    assert_eq!(
        count(&old_snapshot.scan(Signal::Spans, None).expect("scan")),
        8000
    );
    assert!(old_files.iter().all(|p| p.exists()));
    drop(old_snapshot);
    let deadline = Instant::now() + Duration::from_secs(10);
    while old_files.iter().any(|p| p.exists()) {
        assert!(Instant::now() < deadline, "files not freed: {old_files:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Retention by age: everything of 2025 is older than a day.
    let stats = db
        .retain(Some(Duration::from_secs(86_400)), None)
        .expect("retain by age");
    assert!(stats.segments > 0);
    assert_eq!(count(&scan(&db, Signal::Spans)), 0);
    db.close().expect("close");
}
