//! Rows land in the partition their time belongs to, including far in the past.

use arrow::array::{
    ArrayRef, FixedSizeBinaryArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use std::sync::Arc;

use scrydb::{Options, Signal, TimeRange, partition};

use crate::common::*;

/// Minimal spans (only the required columns) at the given times.
fn spans_at(times: &[i64]) -> RecordBatch {
    let n = times.len();
    let ts = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
    };
    let ids16: Vec<[u8; 16]> = (0..n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            id
        })
        .collect();
    let ids8: Vec<[u8; 8]> = (0..n).map(|i| (i as u64 + 1).to_le_bytes()).collect();
    RecordBatch::try_from_iter(vec![
        ("time", ts(times.to_vec())),
        ("end_time", ts(times.iter().map(|t| t + 5).collect())),
        (
            "trace_id",
            Arc::new(FixedSizeBinaryArray::try_from_iter(ids16.iter()).expect("ids")) as ArrayRef,
        ),
        (
            "span_id",
            Arc::new(FixedSizeBinaryArray::try_from_iter(ids8.iter()).expect("ids")) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec!["op"; n])) as ArrayRef,
        ),
    ])
    .expect("batch")
}

#[test]
fn rows_one_nanosecond_around_an_hour_boundary_and_years_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boundary = BASE + 5 * HOUR;
    let year_2019 = 1_546_300_800_000_000_000; // 2019-01-01T00:00:00Z
    let before_epoch = -HOUR / 2; // 1969-12-31T23:30:00Z
    let times = [
        boundary - 1,
        boundary,
        boundary + 1,
        year_2019,
        before_epoch,
    ];
    let db = open(dir.path());
    db.append(Signal::Spans, &spans_at(&times)).expect("append");
    db.flush().expect("flush");
    db.close().expect("close");

    let db = open(dir.path());
    let snap = db.snapshot();
    let segs = snap.segments(Signal::Spans, None);
    let mut by_partition: Vec<(i64, u64, i64, i64)> = segs
        .iter()
        .map(|s| (s.partition_start, s.rows, s.min_time, s.max_time))
        .collect();
    by_partition.sort();
    assert_eq!(
        by_partition,
        vec![
            (-HOUR, 1, before_epoch, before_epoch),
            (year_2019, 1, year_2019, year_2019),
            (boundary - HOUR, 1, boundary - 1, boundary - 1),
            (boundary, 2, boundary, boundary + 1),
        ]
    );
    for s in &segs {
        assert!(
            s.path
                .contains(&partition::partition_dir_name(s.partition_start))
        );
        assert_eq!(s.partition_end - s.partition_start, HOUR);
    }
    assert!(
        segs.iter()
            .any(|s| s.path.starts_with("spans/19691231T230000Z/"))
    );
    assert!(
        segs.iter()
            .any(|s| s.path.starts_with("spans/20190101T000000Z/"))
    );

    // A time range selects exactly the rows inside it.
    let got = snap
        .scan(Signal::Spans, Some(TimeRange::new(boundary, boundary + 1)))
        .expect("scan");
    assert_eq!(count(&got), 1);
    let got = snap
        .scan(
            Signal::Spans,
            Some(TimeRange::new(boundary - 1, boundary + 2)),
        )
        .expect("scan");
    assert_eq!(count(&got), 3);
    assert_eq!(
        count(&snap.scan(Signal::Spans, None).expect("scan")),
        times.len()
    );
    db.close().expect("close");
}

#[test]
fn partition_width_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let minute = 60_000_000_000;
    let db = scrydb::Db::open(
        dir.path(),
        Options::default().partition_duration(std::time::Duration::from_secs(60)),
    )
    .expect("open");
    db.append(
        Signal::Spans,
        &spans_at(&[BASE, BASE + minute - 1, BASE + minute]),
    )
    .expect("append");
    db.flush().expect("flush");
    let mut segs: Vec<(i64, u64)> = db
        .snapshot()
        .segments(Signal::Spans, None)
        .iter()
        .map(|s| (s.partition_start, s.rows))
        .collect();
    segs.sort();
    assert_eq!(segs, vec![(BASE, 2), (BASE + minute, 1)]);
    db.close().expect("close");
    let err = scrydb::Db::open(
        dir.path(),
        Options::default().partition_duration(std::time::Duration::ZERO),
    )
    .expect_err("zero width is refused");
    assert!(err.to_string().contains("partition_duration"), "{err}");
}

#[test]
fn sparse_old_data_does_not_explode_into_a_segment_per_hour() {
    // 2,000 spans, one per hour over 2,000 hours (about 83 days of old data).
    let dir = tempfile::tempdir().expect("tempdir");
    let start = BASE - 3_000 * HOUR + 17;
    let times: Vec<i64> = (0..2_000).map(|i| start + i * HOUR + i * 1_000).collect();
    let db = open(dir.path());
    db.append(Signal::Spans, &spans_at(&times)).expect("append");
    db.flush().expect("flush");
    db.close().expect("close");

    let db = open(dir.path());
    let snap = db.snapshot();
    let segs = snap.segments(Signal::Spans, None);
    let bytes: u64 = segs.iter().map(|s| s.size).sum();
    // 83 days: widened to one segment per week.
    assert!(
        (12..=14).contains(&segs.len()),
        "{} segments ({bytes} bytes) for 2,000 sparse spans",
        segs.len()
    );
    assert!(bytes < 1 << 20, "{bytes} bytes for 2,000 minimal spans");
    for s in &segs {
        assert!(s.partition_start <= s.min_time && s.max_time < s.partition_end);
        assert!(
            s.path
                .contains(&partition::partition_dir_name(s.partition_start))
        );
    }
    // Every row is found by a time range around it, and only it.
    for (i, t) in times.iter().enumerate() {
        let got = snap
            .scan(Signal::Spans, Some(TimeRange::new(*t, *t + 1)))
            .expect("scan");
        assert_eq!(count(&got), 1, "row {i} at {t}");
    }
    // And by SQL over a range spanning a widened partition's edge.
    let (lo, hi) = (times[100], times[1_300]);
    let n = db
        .sql_blocking(&format!(
            "SELECT count(*) FROM spans WHERE time >= to_timestamp_nanos({lo}) \
             AND time < to_timestamp_nanos({hi})"
        ))
        .expect("sql");
    assert_eq!(single_i64(&n), 1_200);
    db.close().expect("close");
}
