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
    let ids16: Vec<[u8; 16]> = (0..n).map(|i| [(i + 1) as u8; 16]).collect();
    let ids8: Vec<[u8; 8]> = (0..n).map(|i| [(i + 1) as u8; 8]).collect();
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
