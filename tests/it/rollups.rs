//! Span rollups (`span_metrics`): what they count equals what the spans say, group by
//! group, flushed or not; they survive compaction and thinning unchanged, go with their
//! partition, and a missing or damaged rollup file is rebuilt from the rows.

use std::collections::HashMap;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use scrydb::{Db, Options, Signal};

use crate::common::{BASE, HOUR, count, files_under, rows, scan, small_opts, synth};

const GROUPS_OF_SPANS: &str = "SELECT service_name, name, kind, status_code, \
     parent_span_id IS NULL AS is_root, date_bin(interval '10 seconds', time) AS t, \
     count(*) AS n, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS e, \
     sum(duration_ns) AS s, min(duration_ns) AS lo, max(duration_ns) AS hi \
     FROM spans GROUP BY 1, 2, 3, 4, 5, 6";
const GROUPS_OF_ROLLUPS: &str = "SELECT service_name, name, kind, status_code, is_root, \
     time AS t, sum(count) AS n, sum(errors) AS e, sum(duration_sum_ns) AS s, \
     min(duration_min_ns) AS lo, max(duration_max_ns) AS hi \
     FROM span_metrics GROUP BY 1, 2, 3, 4, 5, 6";
const TOTALS: &str = "SELECT sum(count) AS n, sum(errors) AS e, sum(duration_sum_ns) AS s, \
     exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.99) AS p99 \
     FROM span_metrics";

fn sql(db: &Db, q: &str) -> Vec<RecordBatch> {
    db.sql_blocking(q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// Spans of four batches half an hour apart: three flushed into segments, one unflushed.
fn filled(opts: Options) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts).expect("open");
    for k in 0..4u64 {
        let b = synth(Signal::Spans, 10 + k, 3_000, BASE + k as i64 * HOUR / 2);
        db.append(Signal::Spans, &b).expect("append");
        if k < 3 {
            db.flush().expect("flush");
        }
    }
    (dir, db)
}

fn rollup_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rollup"))
        .collect()
}

#[test]
fn span_metrics_add_up_to_the_spans_in_every_group() {
    let (dir, db) = filled(small_opts().compaction(false));
    assert!(
        !rollup_files(dir.path()).is_empty(),
        "flushes write rollups"
    );
    let want = rows(&sql(&db, GROUPS_OF_SPANS));
    assert!(want.len() > 50, "many groups: {}", want.len());
    assert_eq!(rows(&sql(&db, GROUPS_OF_ROLLUPS)), want);

    // Quantiles per service, against the exact nearest-rank ones.
    let mut durations: HashMap<String, Vec<i64>> = HashMap::new();
    for b in scan(&db, Signal::Spans) {
        let svc = arrow::compute::cast(
            b.column_by_name("service_name").expect("service"),
            &arrow::datatypes::DataType::Utf8,
        )
        .expect("cast");
        let svc = svc.as_string::<i32>();
        let d = b
            .column_by_name("duration_ns")
            .expect("duration")
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            durations
                .entry(svc.value(i).to_string())
                .or_default()
                .push(d.value(i));
        }
    }
    let got = sql(
        &db,
        "SELECT CAST(service_name AS VARCHAR), \
         exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.5), \
         exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.9), \
         exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.99) \
         FROM span_metrics GROUP BY 1",
    );
    let err = scrydb::rollup::relative_error(scrydb::rollup::SCALE);
    let mut checked = 0;
    for b in &got {
        let names =
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
        let names = names.as_string::<i32>();
        for i in 0..b.num_rows() {
            let mut v = durations[names.value(i)].clone();
            v.sort_unstable();
            for (col, q) in [(1, 0.5), (2, 0.9), (3, 0.99)] {
                // The quantile as approx_percentile_cont defines it, exactly.
                let pos = q * (v.len() - 1) as f64;
                let lo = pos.floor() as usize;
                let hi = (lo + 1).min(v.len() - 1);
                let exact = v[lo] as f64 + (v[hi] - v[lo]) as f64 * (pos - lo as f64);
                let est = b.column(col).as_primitive::<Float64Type>().value(i);
                assert!(
                    (est - exact).abs() <= exact * err + 1.0,
                    "{} q{q}: {est} vs exact {exact}",
                    names.value(i)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 9, "quantiles of several services checked");

    // A time filter keeps the intervals it touches, as on the spans.
    let window = format!(
        "time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({})",
        BASE + HOUR / 2,
        BASE + HOUR
    );
    let filtered = |q: &str| {
        let q = q.replace(" GROUP BY", &format!(" WHERE {window} GROUP BY"));
        rows(&sql(&db, &q))
    };
    let want = filtered(GROUPS_OF_SPANS);
    assert!(!want.is_empty());
    assert_eq!(filtered(GROUPS_OF_ROLLUPS), want);

    // The same after a reopen (the unflushed batch is replayed, then flushed).
    drop(db);
    let db = Db::open(dir.path(), small_opts().compaction(false)).expect("reopen");
    assert_eq!(
        rows(&sql(&db, GROUPS_OF_ROLLUPS)),
        rows(&sql(&db, GROUPS_OF_SPANS))
    );
}

#[test]
fn rollups_survive_compaction_and_thinning_and_go_with_their_partition() {
    const DAY: Duration = Duration::from_secs(86_400);
    let opts = small_opts()
        .compaction(false)
        .retention(Some(DAY))
        .keep_interesting(Some(DAY * 365 * 50));
    let (dir, db) = filled(opts.clone());
    db.flush().expect("flush");
    let totals = rows(&sql(&db, TOTALS));
    let groups = rows(&sql(&db, GROUPS_OF_ROLLUPS));
    assert_eq!(groups, rows(&sql(&db, GROUPS_OF_SPANS)));

    let c = db.compact().expect("compact");
    assert!(c.merges > 0, "{c:?}");
    assert_eq!(
        rows(&sql(&db, GROUPS_OF_ROLLUPS)),
        groups,
        "after compaction"
    );
    let spans_before = count(&scan(&db, Signal::Spans));

    // Thinning drops the uninteresting spans; the rollups still count them all.
    db.retain(Some(DAY), None).expect("thin");
    let spans_after = count(&scan(&db, Signal::Spans));
    assert!(
        spans_after < spans_before / 2,
        "thinned {spans_before} -> {spans_after}"
    );
    assert_eq!(rows(&sql(&db, GROUPS_OF_ROLLUPS)), groups, "after thinning");
    assert_eq!(rows(&sql(&db, TOTALS)), totals);
    // A late span in the thinned partition: compaction merges it with the thinned segment
    // and adds it to the rollups that were carried.
    let late = synth(Signal::Spans, 99, 10, BASE + HOUR / 4);
    db.append(Signal::Spans, &late).expect("late");
    db.flush().expect("flush");
    db.compact().expect("compact");
    let n = |b: &[RecordBatch]| b[0].column(0).as_primitive::<Int64Type>().value(0);
    let total_after = sql(&db, TOTALS);
    assert_eq!(
        n(&total_after),
        3_000 * 4 + 10,
        "every span ever ingested is counted"
    );
    // A second late segment merged with that output: the counts carried stay.
    let late = synth(Signal::Spans, 98, 7, BASE + HOUR / 4);
    db.append(Signal::Spans, &late).expect("late");
    db.flush().expect("flush");
    db.compact().expect("compact");
    assert_eq!(n(&sql(&db, TOTALS)), 3_000 * 4 + 17);
    // A reindex keeps valid rollups (it cannot recount spans the rows no longer hold).
    assert!(
        db.rebuild_indexes(true).expect("reindex") > 0,
        "indexes rebuilt"
    );
    assert_eq!(n(&sql(&db, TOTALS)), 3_000 * 4 + 17);
    drop(db);

    // Reopened, the same; a retention without keep_interesting drops the partitions, and
    // their rollups with them.
    let db = Db::open(dir.path(), opts).expect("reopen");
    assert_eq!(n(&sql(&db, TOTALS)), 3_000 * 4 + 17);
    drop(db);
    let db = Db::open(dir.path(), small_opts().compaction(false)).expect("reopen");
    db.retain(Some(DAY), None).expect("drop");
    assert_eq!(count(&sql(&db, "SELECT * FROM span_metrics")), 0);
    drop(db);
    assert!(rollup_files(dir.path()).is_empty());
}

#[test]
fn a_missing_or_damaged_rollup_is_computed_from_the_rows_and_rebuilt_by_reindex() {
    let (dir, db) = filled(small_opts().compaction(false));
    db.flush().expect("flush");
    let want = rows(&sql(&db, GROUPS_OF_SPANS));
    drop(db);
    let files = rollup_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    std::fs::remove_file(&files[0]).expect("remove");
    let mut bytes = std::fs::read(&files[1]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&files[1], bytes).expect("damage");

    let db = Db::open(dir.path(), small_opts().compaction(false)).expect("reopen");
    assert_eq!(rows(&sql(&db, GROUPS_OF_ROLLUPS)), want, "from the rows");
    let rebuilt = db.rebuild_indexes(false).expect("reindex");
    assert_eq!(rebuilt, 2, "the two rollups, no index");
    for f in &files[..2] {
        let bytes = std::fs::read(f).expect("rebuilt");
        scrydb::rollup::decode(f, &bytes).expect("valid");
    }
    drop(db);
    let db = Db::open(dir.path(), small_opts().compaction(false)).expect("reopen");
    assert_eq!(rows(&sql(&db, GROUPS_OF_ROLLUPS)), want, "from the files");
}
