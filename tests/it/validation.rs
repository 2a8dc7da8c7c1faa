//! Bad batches are rejected whole with an error naming the column and row; accepted
//! coercions work.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampNanosecondArray,
};
use scrydb::{Error, Signal};

use crate::common::*;

fn ts(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

fn ids(n: usize, width: usize) -> ArrayRef {
    let v: Vec<Vec<u8>> = (0..n).map(|i| vec![(i + 1) as u8; width]).collect();
    Arc::new(FixedSizeBinaryArray::try_from_iter(v.into_iter()).expect("ids"))
}

/// Three valid spans with only the required columns, plus overrides.
fn spans(overrides: Vec<(&str, ArrayRef)>, drop: &[&str]) -> RecordBatch {
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("time", ts(vec![Some(BASE), Some(BASE + 1), Some(BASE + 2)])),
        (
            "end_time",
            ts(vec![Some(BASE + 10), Some(BASE + 11), Some(BASE + 12)]),
        ),
        ("trace_id", ids(3, 16)),
        ("span_id", ids(3, 8)),
        ("name", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
    ];
    cols.retain(|(n, _)| !drop.contains(n) && !overrides.iter().any(|(o, _)| o == n));
    cols.extend(overrides);
    RecordBatch::try_from_iter(cols).expect("batch")
}

fn expect_invalid(batch: RecordBatch, column: &str, row: Option<usize>, reason_part: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let err = db.append(Signal::Spans, &batch).expect_err("rejected");
    match &err {
        Error::InvalidBatch {
            signal,
            column: c,
            row: r,
            reason,
        } => {
            assert_eq!(*signal, Signal::Spans);
            assert_eq!(c, column, "{err}");
            assert_eq!(*r, row, "{err}");
            assert!(reason.contains(reason_part), "{err}");
        }
        other => panic!("expected InvalidBatch, got {other}"),
    }
    // Nothing of the batch is stored, now or after a reopen.
    assert_eq!(count(&scan(&db, Signal::Spans)), 0);
    // The database still works.
    db.append(Signal::Spans, &spans(vec![], &[]))
        .expect("valid batch");
    db.close().expect("close");
    let db = open(dir.path());
    assert_eq!(count(&scan(&db, Signal::Spans)), 3);
    db.close().expect("close");
}

#[test]
fn missing_required_column() {
    expect_invalid(
        spans(vec![], &["trace_id"]),
        "trace_id",
        None,
        "required column is missing",
    );
}

#[test]
fn wrong_type() {
    expect_invalid(
        spans(
            vec![("name", Arc::new(Int64Array::from(vec![1, 2, 3])))],
            &[],
        ),
        "name",
        None,
        "expected type Utf8, got Int64",
    );
}

#[test]
fn trace_id_of_wrong_width() {
    expect_invalid(
        spans(vec![("trace_id", ids(3, 15))], &[]),
        "trace_id",
        None,
        "must be 16 bytes",
    );
}

#[test]
fn binary_trace_id_with_a_short_value_names_the_row() {
    let v: Vec<&[u8]> = vec![&[1; 16], &[2; 16], &[3; 2]];
    expect_invalid(
        spans(vec![("trace_id", Arc::new(BinaryArray::from(v)))], &[]),
        "trace_id",
        Some(2),
        "2 bytes, expected 16",
    );
}

#[test]
fn null_timestamp_names_the_row() {
    expect_invalid(
        spans(vec![("time", ts(vec![Some(BASE), None, Some(BASE)]))], &[]),
        "time",
        Some(1),
        "null",
    );
}

#[test]
fn all_zero_span_id() {
    let v: Vec<Vec<u8>> = vec![vec![1; 8], vec![2; 8], vec![0; 8]];
    expect_invalid(
        spans(
            vec![(
                "span_id",
                Arc::new(FixedSizeBinaryArray::try_from_iter(v.into_iter()).expect("ids")),
            )],
            &[],
        ),
        "span_id",
        Some(2),
        "all-zero",
    );
}

#[test]
fn unknown_enum_value() {
    expect_invalid(
        spans(
            vec![(
                "kind",
                Arc::new(StringArray::from(vec!["SERVER", "SERVR", "CLIENT"])),
            )],
            &[],
        ),
        "kind",
        Some(1),
        "`SERVR` is not one of",
    );
}

#[test]
fn unknown_column() {
    expect_invalid(
        spans(
            vec![("colour", Arc::new(StringArray::from(vec!["r", "g", "b"])))],
            &[],
        ),
        "colour",
        None,
        "no such column",
    );
}

#[test]
fn inconsistent_duration() {
    expect_invalid(
        spans(
            vec![("duration_ns", Arc::new(Int64Array::from(vec![10, 10, 99])))],
            &[],
        ),
        "duration_ns",
        Some(2),
        "does not equal end_time - time",
    );
}

#[test]
fn integer_out_of_range_names_the_row() {
    expect_invalid(
        spans(
            vec![("flags", Arc::new(Int64Array::from(vec![1, -1, 0])))],
            &[],
        ),
        "flags",
        Some(1),
        "does not fit",
    );
}

#[test]
fn accepted_coercions_and_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let micros: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(vec![BASE / 1000, BASE / 1000 + 1, BASE / 1000 + 2])
            .with_timezone("+02:00"),
    );
    let bin: Vec<&[u8]> = vec![&[7; 16], &[8; 16], &[9; 16]];
    let batch = spans(
        vec![
            ("time", micros),
            ("trace_id", Arc::new(BinaryArray::from(bin))),
            (
                "service_name",
                Arc::new(StringArray::from(vec!["a", "b", "a"])),
            ),
            ("flags", Arc::new(Int64Array::from(vec![1, 0, 1]))),
        ],
        &[],
    );
    db.append(Signal::Spans, &batch)
        .expect("coercible batch is accepted");
    let got = scan(&db, Signal::Spans);
    let got = &got[0];
    use arrow::array::AsArray;
    let t = got
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    assert_eq!(t.value(1), BASE + 1000, "microseconds become nanoseconds");
    let d = got.column_by_name("duration_ns").expect("derived");
    let d = d.as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(
        d.value(0),
        BASE + 10 - BASE,
        "duration derived from end_time - time"
    );
    let kind = arrow::compute::cast(
        got.column_by_name("kind").expect("kind"),
        &arrow::datatypes::DataType::Utf8,
    )
    .expect("cast");
    assert_eq!(kind.as_string::<i32>().value(0), "UNSPECIFIED");
    let status = arrow::compute::cast(
        got.column_by_name("status_code").expect("status"),
        &arrow::datatypes::DataType::Utf8,
    )
    .expect("cast");
    assert_eq!(status.as_string::<i32>().value(0), "UNSET");
    assert!(got.column_by_name("events").expect("events").is_null(0));
    db.close().expect("close");
}

#[test]
fn empty_batch_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    db.append(Signal::Spans, &spans(vec![], &[]).slice(0, 0))
        .expect("empty batch");
    assert_eq!(count(&scan(&db, Signal::Spans)), 0);
    db.close().expect("close");
}
