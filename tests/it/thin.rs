//! Retention that keeps what debugging needs: an aged partition is thinned to its
//! interesting traces (an error, a span slower than its operation's p99, a WARN+ log, a
//! metric exemplar), whole and with their logs, and dropped only after the extra period.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, FixedSizeBinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use scrydb::{Db, Options, Signal, otlp};

use crate::common::{BASE, count, rows, scan, small_opts, synth, trace_ids};

fn set(b: &RecordBatch, name: &str, a: ArrayRef) -> RecordBatch {
    let i = b.schema().index_of(name).expect("column");
    let mut cols = b.columns().to_vec();
    cols[i] = arrow::compute::cast(&a, b.schema().field(i).data_type()).expect("cast");
    RecordBatch::try_new(b.schema(), cols).expect("batch")
}

/// `spans` with each span `i` lasting `duration[i]` ns (`end_time` and `duration_ns` set).
fn with_durations(spans: &RecordBatch, duration: Vec<i64>) -> RecordBatch {
    let start = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampNanosecondType>(
        spans.column_by_name("time").expect("time").as_ref(),
    )
    .clone();
    let end: Vec<i64> = (0..spans.num_rows())
        .map(|i| start.value(i) + duration[i])
        .collect();
    let spans = set(
        spans,
        "end_time",
        Arc::new(arrow::array::TimestampNanosecondArray::from(end).with_timezone("UTC")),
    );
    set(&spans, "duration_ns", Arc::new(Int64Array::from(duration)))
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn an_aged_partition_keeps_its_interesting_traces_whole_with_their_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = small_opts()
        .compaction(false)
        .retention(Some(DAY))
        .keep_interesting(Some(DAY * 365 * 50));
    let db = Db::open(dir.path(), opts.clone()).expect("open");
    // 300 spans of one operation, all OK and 1 ms long...
    let n = 300;
    let spans = synth(Signal::Spans, 1, n, BASE);
    let spans = set(
        &spans,
        "service_name",
        Arc::new(StringArray::from(vec!["svc"; n])),
    );
    let spans = set(&spans, "name", Arc::new(StringArray::from(vec!["op"; n])));
    let mut status = vec!["OK"; n];
    let mut duration = vec![1_000_000i64; n];
    let ids = trace_ids(&spans);
    // ...but for an error in trace A and a slow span in trace B.
    let (a, b) = (ids[10], ids[20]);
    status[10] = "ERROR";
    duration[20] = 5_000_000_000;
    let spans = set(&spans, "status_code", Arc::new(StringArray::from(status)));
    let spans = with_durations(&spans, duration);
    db.append(Signal::Spans, &spans).expect("append spans");
    let (c, d) = (ids[30], ids[40]);
    // Logs at INFO without a trace, one WARN in trace C, one INFO in trace A.
    let logs = synth(Signal::Logs, 2, 50, BASE);
    let mut sev = vec![9; 50];
    sev[0] = 13;
    let mut tids: Vec<Option<[u8; 16]>> = vec![None; 50];
    tids[0] = Some(c);
    tids[1] = Some(a);
    let logs = set(&logs, "severity_number", Arc::new(Int32Array::from(sev)));
    let logs = set(
        &logs,
        "trace_id",
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(tids.into_iter(), 16)
                .expect("ids"),
        ),
    );
    db.append(Signal::Logs, &logs).expect("append logs");
    // A metric point whose exemplar names trace D.
    let json = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"latency","gauge":{{"dataPoints":[
        {{"timeUnixNano":"{}","asDouble":1.5,"exemplars":[{{"timeUnixNano":"{}","asDouble":1.5,
        "traceId":"{}","spanId":"0102030405060708"}}]}}]}}}}]}}]}}]}}"#,
        BASE + 60_000_000_000,
        BASE + 60_000_000_000,
        hex(&d)
    );
    db.ingest_otlp(&otlp::decode_json(json.as_bytes()).expect("json"))
        .expect("ingest metrics");
    db.flush().expect("flush");
    let all_spans = scan(&db, Signal::Spans);

    let stats = db.retain(Some(DAY), None).expect("retain");
    assert_eq!(stats.segments, 0, "nothing dropped whole yet: {stats:?}");
    let keep = [a, b, c, d];
    let want: Vec<RecordBatch> = all_spans
        .iter()
        .map(|batch| {
            let ids = trace_ids(batch);
            let mask: arrow::array::BooleanArray =
                ids.iter().map(|i| Some(keep.contains(i))).collect();
            arrow::compute::filter_record_batch(batch, &mask).expect("filter")
        })
        .collect();
    assert!(count(&want) >= 4);
    assert_eq!(
        rows(&scan(&db, Signal::Spans)),
        rows(&want),
        "whole interesting traces"
    );
    // The thinned segment stores the kept traces' trees: structural functions read them.
    let related = crate::common::all_descendants(&db);
    assert_eq!(
        (related.stored_trees, related.computed_trees),
        (4, 0),
        "{related:?}"
    );
    let logs_left = scan(&db, Signal::Logs);
    assert_eq!(
        count(&logs_left),
        2,
        "the WARN log of C and the INFO log of A"
    );
    assert_eq!(count(&scan(&db, Signal::Metrics)), 1, "metrics stay");
    let parts = db.snapshot().partition_stats();
    let kept = parts
        .iter()
        .find(|p| p.signal == Signal::Spans)
        .and_then(|p| p.kept)
        .expect("the spans partition says what it kept");
    assert_eq!(
        (
            kept.traces,
            kept.errors,
            kept.slow,
            kept.warn_logs,
            kept.exemplars
        ),
        (4, 1, 1, 1, 1),
        "{kept:?}"
    );
    // The same through SQL.
    let sql = db
        .sql_blocking(
            "SELECT kept_traces, kept_errors, kept_slow, kept_warn_logs, kept_exemplars \
             FROM scry_stats() WHERE signal = 'spans'",
        )
        .expect("scry_stats");
    assert_eq!(
        crate::common::rows(&sql),
        vec![
            "kept_traces=4|kept_errors=1|kept_slow=1|kept_warn_logs=1|kept_exemplars=1".to_string()
        ],
        "scry_stats shows what was kept"
    );
    // Thinning again changes nothing; the manifest carries it across a reopen.
    db.retain(Some(DAY), None).expect("retain again");
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&want));
    db.close().expect("close");
    let db = Db::open(dir.path(), opts).expect("reopen");
    assert_eq!(rows(&scan(&db, Signal::Spans)), rows(&want));
    assert!(
        db.snapshot()
            .partition_stats()
            .iter()
            .any(|p| p.kept.is_some())
    );
    // Without the extra period the same partition goes whole.
    db.close().expect("close");
    let db = Db::open(dir.path(), small_opts().retention(Some(DAY))).expect("reopen");
    let stats = db.retain(Some(DAY), None).expect("retain");
    assert!(stats.segments >= 3, "{stats:?}");
    assert_eq!(count(&scan(&db, Signal::Spans)), 0);
    db.close().expect("close");
}

#[test]
fn keep_interesting_needs_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err =
        Db::open(dir.path(), Options::default().keep_interesting(Some(DAY))).expect_err("refused");
    assert!(err.to_string().contains("keep_interesting"), "{err}");
}

/// Bytes of segments and indexes of every partition, by signal and start.
fn sizes(db: &Db) -> Vec<(Signal, i64, u64, u64, bool)> {
    db.snapshot()
        .partition_stats()
        .iter()
        .map(|p| {
            (
                p.signal,
                p.partition_start,
                p.bytes + p.index_bytes,
                p.rows,
                p.kept.is_some(),
            )
        })
        .collect()
}

fn total(db: &Db) -> u64 {
    sizes(db).iter().map(|s| s.2).sum()
}

/// A store with a disk budget (set per call) that keeps interesting traces, holding spans
/// of three old hour partitions; with `all_errors`, every span is an ERROR (so thinning
/// keeps everything).
fn budget_store(dir: &std::path::Path, all_errors: bool) -> Db {
    let opts = small_opts()
        .compaction(false)
        .max_bytes(Some(1 << 40))
        .keep_interesting(Some(DAY));
    let db = Db::open(dir, opts).expect("open");
    for h in 0..3 {
        let n = 20_000;
        let mut b = synth(
            Signal::Spans,
            10 + h as u64,
            n,
            BASE + h * crate::common::HOUR,
        );
        if all_errors {
            b = set(
                &b,
                "status_code",
                Arc::new(StringArray::from(vec!["ERROR"; n])),
            );
        }
        db.append(Signal::Spans, &b).expect("append");
    }
    db.flush().expect("flush");
    db
}

#[test]
fn a_disk_budget_thins_partitions_before_it_drops_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = budget_store(dir.path(), false);
    let before = sizes(&db);
    let all = total(&db);
    assert!(
        all > 2 << 20,
        "enough data for a budget of at least 1 MiB: {all}"
    );
    // A budget 90 % of the store: thinning alone gets under it, nothing goes whole.
    let stats = db.retain(None, Some(all * 9 / 10)).expect("retain");
    assert_eq!(stats.segments, 0, "{stats:?}");
    let after = sizes(&db);
    assert!(total(&db) <= all * 9 / 10, "{after:?}");
    let starts = |v: &[(Signal, i64, u64, u64, bool)]| {
        let mut s: Vec<i64> = v.iter().map(|p| p.1).collect();
        s.dedup();
        s
    };
    assert_eq!(
        starts(&after),
        starts(&before),
        "every partition is still there"
    );
    // Oldest first: the oldest partition is thinned, fewer rows than before.
    assert!(
        after[0].4 && after[0].3 < before[0].3,
        "{before:?} -> {after:?}"
    );
    assert!(after[0].3 > 0, "interesting traces are kept");
    db.close().expect("close");
}

#[test]
fn a_disk_budget_drops_the_oldest_partitions_when_thinning_is_not_enough() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every trace has an error: thinning keeps everything.
    let db = budget_store(dir.path(), true);
    let before = sizes(&db);
    let all = total(&db);
    let budget = all * 6 / 10;
    let stats = db.retain(None, Some(budget)).expect("retain");
    assert!(stats.segments >= 1, "{stats:?}");
    let after = sizes(&db);
    assert!(total(&db) <= budget, "{after:?}");
    // The oldest went, the newest stayed, every survivor was thinned (kept whole).
    assert!(after.iter().all(|p| p.1 != before[0].1), "{after:?}");
    let newest = before.last().expect("partitions");
    let kept = after
        .iter()
        .find(|p| p.1 == newest.1)
        .expect("newest stays");
    assert_eq!(kept.3, newest.3, "thinning kept every trace");
    assert!(kept.4);
    db.close().expect("close");
}

#[test]
fn an_operation_threshold_replaces_its_percentile() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every span of "op" slower than 1 ms is slow; none is an error.
    let opts = small_opts()
        .compaction(false)
        .retention(Some(DAY))
        .keep_interesting(Some(DAY * 365 * 50))
        .slow_threshold("op", Duration::from_millis(1));
    let db = Db::open(dir.path(), opts).expect("open");
    let n = 80;
    let spans = synth(Signal::Spans, 3, n, BASE);
    let spans = set(&spans, "name", Arc::new(StringArray::from(vec!["op"; n])));
    let spans = set(
        &spans,
        "status_code",
        Arc::new(StringArray::from(vec!["OK"; n])),
    );
    // Ten spans of 2 ms (in their traces), the rest 0.5 ms.
    let duration: Vec<i64> = (0..n)
        .map(|i| if i % 8 == 0 { 2_000_000 } else { 500_000 })
        .collect();
    let spans = with_durations(&spans, duration);
    db.append(Signal::Spans, &spans).expect("append");
    db.flush().expect("flush");
    db.retain(Some(DAY), None).expect("retain");
    let kept = db
        .snapshot()
        .partition_stats()
        .iter()
        .find_map(|p| p.kept)
        .expect("thinned");
    // synth puts 8 spans in a trace: span 0 of each of the 10 traces is slow.
    assert_eq!((kept.traces, kept.slow), (10, 10), "{kept:?}");
    assert_eq!(count(&scan(&db, Signal::Spans)), n);
    db.close().expect("close");
}

#[test]
fn slow_percentile_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    for p in [0.0, 1.0, f64::NAN, 1.5] {
        let err = Db::open(dir.path(), Options::default().slow_percentile(p)).expect_err("refused");
        assert!(err.to_string().contains("slow_percentile"), "{err}");
    }
}
