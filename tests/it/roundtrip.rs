//! Every column of every signal survives memtable, flush to Parquet, and reopen unchanged.

use scrydb::{Db, Signal, TimeRange, schema};

use crate::common::*;

#[test]
fn every_column_of_every_signal_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs: Vec<(Signal, Vec<_>)> = Signal::ALL
        .iter()
        .map(|&s| {
            let batches = (0..3)
                .map(|i| synth(s, 10 + i, 500, BASE + i as i64 * HOUR / 2))
                .collect::<Vec<_>>();
            (s, batches)
        })
        .collect();

    // The synthetic data really fills every column (else this test proves little).
    for (s, batches) in &inputs {
        for (i, field) in schema::schema(*s).fields().iter().enumerate() {
            let non_null: usize = batches
                .iter()
                .map(|b| b.column(i).len() - b.column(i).null_count())
                .sum();
            assert!(
                non_null > 0,
                "{s}.{} is never set by the generator",
                field.name()
            );
        }
    }

    let db = open(dir.path());
    for (s, batches) in &inputs {
        for b in batches {
            db.append(*s, b).expect("append");
        }
    }
    let check = |db: &Db, stage: &str| {
        for (s, batches) in &inputs {
            let got = scan(db, *s);
            for b in &got {
                assert_eq!(b.schema(), schema::schema(*s), "{stage}: {s} schema");
            }
            assert_eq!(rows(&got), rows(batches), "{stage}: {s} rows differ");
        }
    };
    check(&db, "memtable");
    db.flush().expect("flush");
    let snap = db.snapshot();
    for s in Signal::ALL {
        assert_eq!(
            snap.stats(s).memtable_rows,
            0,
            "flush leaves nothing in memory"
        );
        assert!(snap.stats(s).segments >= 1);
    }
    check(&db, "segments");
    db.close().expect("close");

    let db = open(dir.path());
    check(&db, "reopened");
    let report = db.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.damaged);
    assert_eq!(report.indexes, report.segments);
    assert_eq!(
        report.segments,
        db.snapshot().segments(Signal::Spans, None).len()
            + db.snapshot().segments(Signal::Logs, None).len()
            + db.snapshot().segments(Signal::Metrics, None).len()
    );
    db.close().expect("close");
    // A clean close leaves an empty log.
    assert_eq!(
        std::fs::read_dir(dir.path().join("wal"))
            .expect("wal dir")
            .count(),
        0
    );
}

#[test]
fn segments_are_sorted_and_carry_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    // Two minutes of the same partition in one batch, the later minute first.
    let later = synth(Signal::Spans, 1, 1500, BASE + 60_000_000_000);
    let earlier = synth(Signal::Spans, 2, 1500, BASE);
    let both = arrow::compute::concat_batches(&later.schema(), [&later, &earlier]).expect("concat");
    db.append(Signal::Spans, &both).expect("append");
    db.append(Signal::Metrics, &synth(Signal::Metrics, 1, 300, BASE))
        .expect("append");
    db.flush().expect("flush");
    let snap = db.snapshot();
    let seg = &snap.segments(Signal::Spans, None)[0];
    let file = std::fs::File::open(snap.segment_path(seg)).expect("segment");
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(file).expect("parquet");
    use parquet::file::reader::FileReader;
    let md = reader.metadata();
    let kv = md
        .file_metadata()
        .key_value_metadata()
        .expect("kv metadata");
    assert!(
        kv.iter()
            .any(|k| k.key == "scrydb.signal" && k.value.as_deref() == Some("spans"))
    );
    let rg = md.row_group(0);
    // Spans are sorted by an expression first (the minute of time), which Parquet's
    // sorting columns cannot state; metrics declare theirs.
    assert!(rg.sorting_columns().is_none());
    let metric_seg = &snap.segments(Signal::Metrics, None)[0];
    let file = std::fs::File::open(snap.segment_path(metric_seg)).expect("segment");
    let metric_md = parquet::file::serialized_reader::SerializedFileReader::new(file)
        .expect("parquet")
        .metadata()
        .clone();
    assert_eq!(
        metric_md.row_group(0).sorting_columns().map(|c| c.len()),
        Some(3)
    );
    assert!(rg.column(0).statistics().is_some(), "time statistics");
    // (Parquet metadata records the codec, not its level.)
    assert!(matches!(
        rg.column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert!(
        md.column_index().is_some() && md.offset_index().is_some() || {
            // Page indexes are read only on request; check through an options-enabled reader.
            let file = std::fs::File::open(snap.segment_path(seg)).expect("segment");
            let opts = parquet::file::serialized_reader::ReadOptionsBuilder::new()
                .with_page_index()
                .build();
            let r = parquet::file::serialized_reader::SerializedFileReader::new_with_options(
                file, opts,
            )
            .expect("parquet");
            r.metadata().offset_index().is_some() && r.metadata().column_index().is_some()
        },
        "segments carry the page index"
    );
    // Sorted by (minute of time, trace_id, time): a trace's rows are contiguous.
    let batches = snap.read_segment(seg, None).expect("read");
    let mut last: Option<(i64, Vec<u8>, i64)> = None;
    let mut rows = 0;
    for b in &batches {
        use arrow::array::AsArray;
        let ids = b
            .column_by_name("trace_id")
            .expect("trace_id")
            .as_fixed_size_binary();
        let t = b
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        for r in 0..b.num_rows() {
            let key = (
                t.value(r).div_euclid(60_000_000_000),
                ids.value(r).to_vec(),
                t.value(r),
            );
            if let Some(prev) = &last {
                assert!(prev <= &key, "rows out of order: {prev:?} then {key:?}");
            }
            last = Some(key);
            rows += 1;
        }
    }
    assert_eq!(rows, 3000);
    assert_eq!(seg.rows, 3000);
    // Time range pruning at the snapshot level.
    assert_eq!(
        snap.segments(Signal::Spans, Some(TimeRange::new(BASE - HOUR, BASE)))
            .len(),
        0
    );
    assert_eq!(
        snap.segments(Signal::Spans, Some(TimeRange::new(BASE, BASE + 1_000_000)))
            .len(),
        1
    );
    db.close().expect("close");
}
