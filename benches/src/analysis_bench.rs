//! The trace-analysis benchmark (`scry-bench --analysis`): `critical_path` and
//! `trace_stats` on a 1,000- and a 10,000-span trace (a ten-way tree of overlapping calls),
//! and — with `--analysis-store DIR`, an existing store such as the harness's 10M spans —
//! `compare` of the slowest 1% of the last hour's spans against the rest of that hour.
//! `docs/benchmarks.md` says what each number means.

use std::path::Path;
use std::time::Instant;

use scrydb::sql::Session;
use scrydb::{Db, Options, Signal};

/// A trace of `n` spans with id `trace` (32 hex digits): span `i > 0` is a child of span
/// `(i - 1) / 10`; the ten children of a span share its window, each a tenth of it shifted
/// along, lasting 30% of it (neighbours overlap), under a 1 s root.
fn trace_json(trace: &str, n: usize) -> String {
    const SERVICES: [&str; 6] = ["gateway", "checkout", "cart", "payment", "inventory", "db"];
    let base = scrydb_workload::BASE_NS;
    let mut window = vec![(0i64, 1_000_000_000i64); n];
    let mut spans = Vec::with_capacity(n);
    for i in 0..n {
        let parent = (i > 0).then(|| (i - 1) / 10);
        if let Some(p) = parent {
            let (ps, pe) = window[p];
            let len = pe - ps;
            let k = ((i - 1) % 10) as i64;
            let s = ps + len * k / 10;
            window[i] = (s, (s + len * 3 / 10).min(pe));
        }
        let (s, e) = window[i];
        let svc = SERVICES[i % SERVICES.len()];
        spans.push(format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{:016x}"{},"name":"op{}","startTimeUnixNano":"{}","endTimeUnixNano":"{}"}}]}}]}}"#,
            i + 1,
            parent.map_or(String::new(), |p| format!(r#","parentSpanId":"{:016x}""#, p + 1)),
            i % 7,
            base + s,
            base + e
        ));
    }
    format!(r#"{{"resourceSpans":[{}]}}"#, spans.join(","))
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// p50 and p99 of `runs` timings of `f`, in ms.
fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T, String>) -> Result<(f64, f64), String> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(ms_since(t));
    }
    Ok((
        crate::harness::percentile(&mut v.clone(), 0.5),
        crate::harness::percentile(&mut v, 0.99),
    ))
}

/// Runs the benchmark in `dir` (a fresh store for the traces) and, given `store`, the
/// `compare` part on it (opened read-only).
pub fn run(
    dir: &Path,
    store: Option<&Path>,
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open(dir.join("analysis"), Options::default())?;
    let traces = [
        (1_000, "000000000000000000000000000a1000"),
        (10_000, "000000000000000000000000000a1001"),
    ];
    for (n, id) in traces {
        let req = scrydb::otlp::decode_json(trace_json(id, n).as_bytes())?;
        db.ingest_otlp(&req)?;
    }
    db.flush()?;
    let session = Session::new(db.reader())?;
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "trace", "path p50", "path p99", "stats p50", "lookup p50", "walk p50"
    );
    for (n, id) in traces {
        let sql = |f: &str| format!("SELECT count(*) FROM {f}('{id}')");
        let path = time(runs, || {
            session
                .sql_blocking(&sql("critical_path"))
                .map_err(|e| e.to_string())
        })?;
        let stats = time(runs, || {
            session
                .sql_blocking(&sql("trace_stats"))
                .map_err(|e| e.to_string())
        })?;
        let tid = scrydb::parse_trace_id(id)?;
        let lookup = time(runs, || db.trace(tid).map_err(|e| e.to_string()))?;
        let tree = db.trace(tid)?.tree()?;
        let walk = time(runs, || Ok::<_, String>(tree.critical_path()))?;
        println!(
            "{:<28} {:>8.2}ms {:>8.2}ms {:>10.2}ms {:>10.2}ms {:>10.3}ms",
            format!(
                "{n} spans ({} on the path)",
                tree.critical_path().spans.len()
            ),
            path.0,
            path.1,
            stats.0,
            lookup.0,
            walk.0
        );
    }
    drop(session);
    db.close()?;

    let Some(store) = store else { return Ok(()) };
    let db = Db::open_read_only(store, Options::default())?;
    let snap = db.snapshot();
    let newest = snap
        .segments(Signal::Spans, None)
        .iter()
        .map(|s| s.max_time)
        .max()
        .ok_or("the store has no span segments")?;
    let from = newest - 3_600_000_000_000;
    let window =
        format!("time >= to_timestamp_nanos({from}) AND time <= to_timestamp_nanos({newest})");
    let session = Session::new(db.reader())?;
    let p99 = session.sql_blocking(&format!(
        "SELECT CAST(approx_percentile_cont(duration_ns, 0.99) AS BIGINT), count(*) FROM spans WHERE {window}"
    ))?;
    use arrow::array::AsArray;
    let b = &p99[0];
    let threshold = b
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let spans = b
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let selection = format!("{window} AND duration_ns > {threshold}");
    let baseline = format!("{window} AND duration_ns <= {threshold}");
    let mut top = Vec::new();
    let (p50, p99) = time(runs.min(5), || {
        top = scrydb::sql::block_on(scrydb::sql::compare::compare(
            &session,
            &selection,
            Some(&baseline),
            5,
        ))
        .map_err(|e| e.to_string())?;
        Ok(())
    })?;
    println!(
        "compare, slowest 1% of the last hour ({spans} spans, duration > {:.1} ms) vs the rest: p50 {p50:.0} ms, p99 {p99:.0} ms",
        threshold as f64 / 1e6
    );
    for d in &top {
        println!(
            "  {:.3}  {} = {} ({:.1}% vs {:.1}%)",
            d.score,
            d.dimension,
            d.value,
            d.selection_share * 100.0,
            d.baseline_share * 100.0
        );
    }

    // Structural: traces where a root SERVER span of the commonest root service has an
    // erroring descendant — over the whole store, then over its last minute.
    let root = session.sql_blocking(
        "SELECT service_name, count(*) AS n FROM spans WHERE parent_span_id IS NULL \
         GROUP BY service_name ORDER BY n DESC LIMIT 1",
    )?;
    let root = arrow::compute::cast(root[0].column(0), &arrow::datatypes::DataType::Utf8)?;
    let root = root.as_string::<i32>().value(0).to_string();
    let anchor = format!("service_name = '{root}' AND kind = 'SERVER' AND parent_span_id IS NULL");
    let minute = format!("time >= to_timestamp_nanos({})", newest - 60_000_000_000);
    for (what, anchor, target) in [
        (
            "whole store",
            anchor.clone(),
            "status_code = 'ERROR'".to_string(),
        ),
        (
            "last minute",
            format!("{anchor} AND {minute}"),
            format!("status_code = 'ERROR' AND {minute}"),
        ),
    ] {
        let mut related = scrydb::sql::structure::Related::default();
        let (p50, p99) = time(runs.min(5), || {
            related = scrydb::sql::block_on(scrydb::sql::structure::relate(
                &session,
                scrydb::sql::structure::Relation::Descendants,
                &anchor,
                &target,
            ))
            .map_err(|e| e.to_string())?;
            Ok(())
        })?;
        let traces: std::collections::HashSet<[u8; 16]> =
            related.pairs.iter().map(|p| p.trace_id).collect();
        println!(
            "descendants({anchor:?}, {target:?}), {what}: {} pairs in {} traces ({} trees stored, {} built), p50 {p50:.0} ms, p99 {p99:.0} ms",
            related.pairs.len(),
            traces.len(),
            related.stored_trees,
            related.computed_trees
        );
    }
    Ok(())
}
