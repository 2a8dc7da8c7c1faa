//! SQL reads that cannot lose rows: a query owns its snapshot until its last batch, every
//! scan of one statement reads the same snapshot, time pruning never narrows what a
//! predicate matches, and engine errors keep their kind across the SQL boundary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use scrydb::io::fault::{FaultOp, FaultyFs};
use scrydb::io::{FileSystem, StdFs};
use scrydb::sql::{Session, SessionOptions};
use scrydb::{Db, Signal};

use crate::common::*;

#[test]
fn a_query_paused_mid_stream_survives_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_opts()).expect("open");
    // 24 one-hour partitions, one segment each: more files than scan partitions, so a
    // stream opens most of them only after its first batch.
    let per = 400;
    for h in 0..24 {
        db.append(
            Signal::Spans,
            &synth(Signal::Spans, h as u64, per, BASE + h * HOUR),
        )
        .expect("append");
    }
    db.flush().expect("flush");
    let total = 24 * per;
    assert_eq!(db.snapshot().segments(Signal::Spans, None).len(), 24);

    let session = db.session().expect("session");
    let rt = scrydb::sql::runtime();
    session
        .sql_blocking("SET datafusion.execution.batch_size = 50")
        .expect("set");
    let mut stream = rt
        .block_on(session.sql_stream("SELECT span_id FROM spans"))
        .expect("stream");
    let first = rt
        .block_on(stream.next())
        .expect("a first batch")
        .expect("no error");
    let mut seen = first.num_rows();

    // Every partition leaves the manifest; a snapshot taken now sees nothing.
    let dropped = db
        .drop_partitions_before(BASE + 25 * HOUR)
        .expect("retention");
    assert_eq!(dropped.segments, 24);
    assert_eq!(db.snapshot().segments(Signal::Spans, None).len(), 0);
    std::thread::sleep(Duration::from_millis(1200)); // purges run every 500 ms

    while let Some(batch) = rt.block_on(stream.next()) {
        seen += batch
            .expect("the stream's files are still readable")
            .num_rows();
    }
    assert_eq!(seen, total);
    drop(stream);

    // Once the stream is gone the files go.
    let mut waited = 0;
    while std::fs::read_dir(dir.path().join("spans"))
        .expect("spans dir")
        .next()
        .is_some()
    {
        assert!(waited < 100, "obsolete segment files were never deleted");
        std::thread::sleep(Duration::from_millis(100));
        waited += 1;
    }
    db.close().expect("close");
}

#[test]
fn every_scan_of_a_statement_reads_one_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), small_opts()).expect("open"));
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 500, BASE))
        .expect("append");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seed = 100;
            while !stop.load(Ordering::Relaxed) {
                let base = BASE + (seed as i64 % 5) * HOUR;
                db.append(Signal::Spans, &synth(Signal::Spans, seed, 200, base))
                    .expect("append");
                db.append(Signal::Logs, &synth(Signal::Logs, seed, 100, base))
                    .expect("append");
                seed += 1;
            }
        })
    };
    let queries = [
        // A self-join: each side must hold every row of the other.
        "SELECT count(*) FROM spans a FULL OUTER JOIN spans b \
         ON a.span_id = b.span_id AND a.trace_id = b.trace_id AND a.time = b.time \
         WHERE a.span_id IS NULL OR b.span_id IS NULL",
        // Two scalar subqueries.
        "SELECT (SELECT count(*) FROM spans) - (SELECT count(*) FROM spans WHERE true)",
        // A union of the same table.
        "SELECT (SELECT count(*) FROM (SELECT span_id FROM spans UNION ALL \
         SELECT span_id FROM spans)) - 2 * (SELECT count(*) FROM spans)",
        // Across signals: the logs side cannot be newer than the spans side.
        "SELECT (SELECT count(*) FROM logs) - (SELECT count(*) FROM logs l \
         WHERE l.time >= (SELECT min(time) FROM spans) OR l.time < (SELECT min(time) FROM spans))",
    ];
    for round in 0..15 {
        for q in queries {
            let got = single_i64(&db.sql_blocking(q).expect("query"));
            assert_eq!(got, 0, "round {round}: {q}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    Arc::into_inner(db)
        .expect("one handle")
        .close()
        .expect("close");
}

#[test]
fn time_pruning_never_changes_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_opts()).expect("open");
    for h in 0..3 {
        db.append(
            Signal::Spans,
            &synth(Signal::Spans, h as u64, 300, BASE + h * HOUR),
        )
        .expect("append");
    }
    db.flush().expect("flush");
    // Rows only in the memtable, in a partition of their own and in a flushed one.
    db.append(
        Signal::Spans,
        &synth(Signal::Spans, 7, 300, BASE + 3 * HOUR),
    )
    .expect("append");
    db.append(Signal::Spans, &synth(Signal::Spans, 8, 300, BASE + HOUR))
        .expect("append");

    let pruned = Session::new(db.reader()).expect("session");
    let full = Session::with_options(
        db.reader(),
        SessionOptions {
            time_pruning: false,
            ..SessionOptions::default()
        },
    )
    .expect("session");

    // Instants taken from the data, written as SQL literals by DataFusion itself.
    let instant = |q: &str| -> String {
        let b = pruned.sql_blocking(q).expect("instant");
        let b = scrydb::sql::ids_as_hex(&b[0]);
        arrow::util::display::array_value_to_string(b.column(0), 0).expect("printable")
    };
    let mem_t = instant(&format!(
        "SELECT arrow_cast(time, 'Utf8') FROM spans WHERE time >= to_timestamp_nanos({}) \
         ORDER BY time LIMIT 1 OFFSET 17",
        BASE + 3 * HOUR
    ));
    let seg_t = instant(&format!(
        "SELECT arrow_cast(time, 'Utf8') FROM spans WHERE time < to_timestamp_nanos({}) \
         ORDER BY time LIMIT 1 OFFSET 123",
        BASE + HOUR
    ));
    let predicates = [
        format!("time = TIMESTAMP '{mem_t}'"),
        format!("time = TIMESTAMP '{seg_t}'"),
        format!("CAST(time AS TIMESTAMP(0)) = CAST(TIMESTAMP '{mem_t}' AS TIMESTAMP(0))"),
        format!("CAST(time AS TIMESTAMP(0)) = CAST(TIMESTAMP '{seg_t}' AS TIMESTAMP(0))"),
        format!("CAST(time AS TIMESTAMP(3)) <= CAST(TIMESTAMP '{seg_t}' AS TIMESTAMP(3))"),
        format!("CAST(time AS TIMESTAMP(6)) > CAST(TIMESTAMP '{mem_t}' AS TIMESTAMP(6))"),
        format!("CAST(time AS DATE) = CAST(TIMESTAMP '{mem_t}' AS DATE)"),
        format!("date_trunc('minute', time) = date_trunc('minute', TIMESTAMP '{mem_t}')"),
        format!("date_trunc('hour', time) = date_trunc('hour', TIMESTAMP '{seg_t}')"),
        format!(
            "date_bin(INTERVAL '5 minutes', time) = \
             date_bin(INTERVAL '5 minutes', TIMESTAMP '{seg_t}')"
        ),
        format!("time BETWEEN TIMESTAMP '{seg_t}' AND TIMESTAMP '{mem_t}'"),
        format!("time NOT BETWEEN TIMESTAMP '{seg_t}' AND TIMESTAMP '{mem_t}'"),
        format!("time >= TIMESTAMP '{mem_t}' - INTERVAL '30 minutes'"),
        format!("time < TIMESTAMP '{seg_t}' + INTERVAL '90 minutes'"),
        format!("time > TIMESTAMP '{seg_t}' AND time <= TIMESTAMP '{mem_t}' - INTERVAL '1 second'"),
        format!("time < TIMESTAMP '{seg_t}' OR time > TIMESTAMP '{mem_t}'"),
        format!("NOT (time < TIMESTAMP '{mem_t}')"),
        format!(
            "arrow_cast(time, 'Timestamp(Nanosecond, Some(\"+05:30\"))') >= TIMESTAMP '{mem_t}'"
        ),
        format!("time >= arrow_cast(TIMESTAMP '{mem_t}', 'Timestamp(Second, Some(\"+02:00\"))')"),
        format!("arrow_cast(time, 'Timestamp(Millisecond, None)') = TIMESTAMP '{seg_t}'"),
        format!("CAST(time AS BIGINT) = CAST(TIMESTAMP '{mem_t}' AS BIGINT)"),
        format!("CAST(time AS VARCHAR) LIKE '{}%'", &seg_t[..16]),
        format!("extract(minute FROM time) = extract(minute FROM TIMESTAMP '{seg_t}')"),
        format!("time IN (TIMESTAMP '{seg_t}', TIMESTAMP '{mem_t}')"),
    ];
    let mut non_empty = 0;
    for p in &predicates {
        let q = format!("SELECT span_id, time FROM spans WHERE {p}");
        let a = rows(&pruned.sql_blocking(&q).expect("pruned query"));
        let b = rows(&full.sql_blocking(&q).expect("unpruned query"));
        assert_eq!(a, b, "pruning changed the answer of {p}");
        non_empty += usize::from(!a.is_empty());
    }
    assert!(
        non_empty >= predicates.len() - 2,
        "only {non_empty} of {} predicates matched rows",
        predicates.len()
    );
    // The narrowing cast matches a whole second, not one instant.
    let q = format!(
        "SELECT count(*) FROM spans WHERE \
         CAST(time AS TIMESTAMP(0)) = CAST(TIMESTAMP '{mem_t}' AS TIMESTAMP(0))"
    );
    let second = single_i64(&pruned.sql_blocking(&q).expect("count"));
    let q = format!("SELECT count(*) FROM spans WHERE time = TIMESTAMP '{mem_t}'");
    let exact = single_i64(&pruned.sql_blocking(&q).expect("count"));
    assert!(second >= exact && exact >= 1, "{second} {exact}");
    drop((pruned, full));
    db.close().expect("close");
}

#[test]
fn engine_errors_keep_their_kind_through_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faulty = FaultyFs::new(Arc::new(StdFs) as Arc<dyn FileSystem>);
    let db = Db::open(
        dir.path(),
        small_opts().file_system(Arc::new(faulty.clone())),
    )
    .expect("open");
    db.append(Signal::Spans, &synth(Signal::Spans, 1, 100, BASE))
        .expect("append");
    db.flush().expect("flush");
    faulty.fail_from(FaultOp::Read, 1);
    let err = db
        .sql_blocking("SELECT count(*) FROM spans WHERE name <> ''")
        .expect_err("a failing disk fails the query");
    match err.engine() {
        Some(scrydb::Error::Io { path, .. }) => {
            assert!(path.starts_with(dir.path()), "{}", path.display())
        }
        other => panic!("expected the engine's I/O error, got {other:?} ({err})"),
    }
    faulty.heal();
    let n = single_i64(
        &db.sql_blocking("SELECT count(*) FROM spans")
            .expect("healed"),
    );
    assert_eq!(n, 100);
    db.close().expect("close");
}
