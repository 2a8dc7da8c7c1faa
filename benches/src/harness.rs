//! The benchmark harness (`scry-bench`): one workload, measured on ScryDB and, side by side
//! in the same run, on DuckDB (Python `duckdb`, `benches/py/duckdb_bench.py`) and chDB
//! (embedded ClickHouse, Python `chdb`, `benches/py/chdb_bench.py`) over the same data. Prints a table and writes JSON; what each number means is in `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;
use scrydb::otlp::Request;
use scrydb::sql::Session;
use scrydb::{Db, Options, Signal};
use scrydb_workload::{FaultKind, Workload, WorkloadOptions};
use serde_json::{Value, json};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// Spans to ingest (with the logs and metrics of their traces).
    pub spans: usize,
    /// Seed of the workload and of the lookup sample.
    pub seed: u64,
    /// Where the JSON results go.
    pub json: PathBuf,
    /// Whether to run the DuckDB side.
    pub duckdb: bool,
    /// Whether to run the chDB side (`chdb` from PyPI in the harness's Python).
    pub chdb: bool,
    /// Trace lookups to time (present and absent each).
    pub lookups: usize,
    /// Ingest without background compaction, then measure `Db::compact` and the lookups
    /// and queries again after it (before vs after compaction).
    pub compaction: bool,
}

/// One question asked of every engine, in each one's dialect. `{w0}`/`{w1}` are a time
/// window.
struct Query {
    name: &'static str,
    scry: &'static str,
    duckdb: &'static str,
    /// Over the OpenTelemetry Collector ClickHouse exporter's tables (`chdb_bench.py`).
    chdb: &'static str,
}

/// The analytics queries.
const QUERIES: [Query; 5] = [
    Query {
        name: "red_per_service_minute",
        scry: "SELECT service_name, date_bin(interval '1 minute', time) AS minute, count(*) AS requests, \
         sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
         approx_percentile_cont(duration_ns, 0.99) AS p99_ns \
         FROM spans WHERE kind = 'SERVER' GROUP BY 1, 2",
        duckdb: "SELECT service_name, time_bucket(interval '1 minute', time) AS minute, count(*) AS requests, \
         sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
         approx_quantile(duration_ns, 0.99) AS p99_ns \
         FROM spans WHERE kind = 'SERVER' GROUP BY 1, 2",
        chdb: "SELECT ServiceName, toStartOfMinute(Timestamp) AS minute, count() AS requests, \
         countIf(StatusCode = 'Error') AS errors, quantile(0.99)(Duration) AS p99_ns \
         FROM otel_traces WHERE SpanKind = 'Server' GROUP BY 1, 2",
    },
    Query {
        name: "top_error_operations",
        scry: "SELECT service_name, name, count(*) AS errors FROM spans WHERE status_code = 'ERROR' \
         GROUP BY 1, 2 ORDER BY errors DESC LIMIT 10",
        duckdb: "SELECT service_name, name, count(*) AS errors FROM spans WHERE status_code = 'ERROR' \
         GROUP BY 1, 2 ORDER BY errors DESC LIMIT 10",
        chdb: "SELECT ServiceName, SpanName, count() AS errors FROM otel_traces \
         WHERE StatusCode = 'Error' GROUP BY 1, 2 ORDER BY errors DESC LIMIT 10",
    },
    Query {
        name: "logs_of_error_traces",
        scry: "SELECT l.service_name, count(*) AS logs FROM logs l \
         WHERE l.trace_id IN (SELECT trace_id FROM spans WHERE status_code = 'ERROR') GROUP BY 1",
        duckdb: "SELECT l.service_name, count(*) AS logs FROM logs l \
         WHERE l.trace_id IN (SELECT trace_id FROM spans WHERE status_code = 'ERROR') GROUP BY 1",
        chdb: "SELECT ServiceName, count() AS logs FROM otel_logs \
         WHERE TraceId IN (SELECT TraceId FROM otel_traces WHERE StatusCode = 'Error') GROUP BY 1",
    },
    Query {
        name: "metric_window_aggregate",
        scry: "SELECT service_name, sum(count) AS requests, sum(sum) / sum(count) AS avg_ms FROM metrics \
         WHERE name = 'rpc.server.duration' AND time >= '{w0}' AND time < '{w1}' GROUP BY 1",
        duckdb: "SELECT service_name, sum(count) AS requests, sum(sum) / sum(count) AS avg_ms FROM metrics \
         WHERE name = 'rpc.server.duration' AND time >= TIMESTAMPTZ '{w0}' AND time < TIMESTAMPTZ '{w1}' GROUP BY 1",
        chdb: "SELECT ServiceName, sum(Count) AS requests, sum(Sum) / sum(Count) AS avg_ms \
         FROM otel_metrics_histogram WHERE MetricName = 'rpc.server.duration' \
         AND TimeUnix >= parseDateTime64BestEffort('{w0}', 9) AND TimeUnix < parseDateTime64BestEffort('{w1}', 9) GROUP BY 1",
    },
    Query {
        name: "attribute_filter_count",
        scry: "SELECT count(*) AS n FROM spans WHERE attributes['http.route'] = '/checkout'",
        duckdb: "SELECT count(*) AS n FROM spans WHERE attributes['http.route'] = '/checkout'",
        chdb: "SELECT count() AS n FROM otel_traces WHERE SpanAttributes['http.route'] = '/checkout'",
    },
];

/// The same questions answered from the span rollups (`span_metrics`), where they can be.
const ROLLUP_QUERIES: [(&str, &str); 2] = [
    (
        "red_per_service_minute",
        "SELECT service_name, date_bin(interval '1 minute', time) AS minute, sum(count) AS requests, \
         sum(errors) AS errors, \
         exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.99) AS p99_ns \
         FROM span_metrics WHERE kind = 'SERVER' GROUP BY 1, 2",
    ),
    (
        "top_error_operations",
        "SELECT service_name, name, sum(errors) AS errors FROM span_metrics \
         GROUP BY 1, 2 ORDER BY errors DESC LIMIT 10",
    ),
];

/// The `p` quantile (0–1) of `v` by nearest rank (sorts `v`); NaN when empty.
pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The peak RSS since the last call (or the start), in MiB, and resets the peak to the
/// current RSS (Linux's `/proc/self/clear_refs`), so each phase of the run has its own.
fn phase_peak_rss_mib() -> f64 {
    let peak = peak_rss_mib();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    peak
}

/// Drops the OS page cache (needs root); whether it worked.
fn drop_page_cache() -> bool {
    sync_filesystems();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn sync_filesystems() {
    let _ = std::process::Command::new("sync").status();
}

/// `$SCRY_PYTHON`, else the virtual environment `tests/run.sh` creates (under the current
/// directory or the workspace), else a `python3` that imports duckdb.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SCRY_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for root in [Path::new("."), workspace.as_path()] {
        let venv = root.join("target/venv/bin/python");
        if venv.exists() {
            return Some(venv);
        }
    }
    let ok = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| PathBuf::from("python3"))
}

fn hex(id: &[u8]) -> String {
    scrydb::sql::ids::hex(id)
}

/// Bytes of the files named `*.<ext>` under `dir`, recursively.
pub(crate) fn files_size(dir: &Path, ext: &str) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            total += files_size(&p, ext);
        } else if p.extension().is_some_and(|x| x == ext) {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

fn time_sql(session: &Session, name: &str, sql: &str) -> Result<f64, String> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        session
            .sql_blocking(sql)
            .map_err(|e| format!("{name}: {e}"))?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(percentile(&mut times, 0.5))
}

fn time_queries(session: &Session, w: (&str, &str)) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for q in &QUERIES {
        let sql = q.scry.replace("{w0}", w.0).replace("{w1}", w.1);
        out.push((q.name.to_string(), time_sql(session, q.name, &sql)?));
    }
    Ok(out)
}

/// Runs `script` (in `benches/py`) with the harness's Python, `input` as JSON on stdin; its
/// JSON output, or `None` (said why) when it could not run.
pub(crate) fn run_python(
    script: &str,
    input: &Value,
) -> Result<Option<Value>, Box<dyn std::error::Error>> {
    let Some(py) = python() else {
        println!(
            "{script} skipped: no Python with duckdb (run tests/run.sh once, or set SCRY_PYTHON)"
        );
        return Ok(None);
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(script);
    let mut child = std::process::Command::new(&py)
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(Some(serde_json::from_slice::<Value>(&out.stdout)?))
    } else {
        println!("{script} failed; see its error above");
        Ok(None)
    }
}

/// Looks up `n` traces of the store in `dir` through `Db::trace`'s span lookup and through
/// SQL, and prints their latencies: a loop for `perf record`. The store is opened for
/// writing (a read-only open follows a possible writer before every snapshot, which a
/// lookup would then pay), with background compaction off; nothing is written.
pub fn lookups_only(dir: &Path, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open(dir, Options::default().compaction(false))?;
    let session = db.session()?;
    let mut ids: Vec<[u8; 16]> = Vec::new();
    for b in session.sql_blocking(&format!(
        "SELECT trace_id FROM spans WHERE parent_span_id IS NULL LIMIT {}",
        n.max(1) * 50
    ))? {
        let a = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
            .ok_or("trace_id is not FixedSizeBinary(16)")?;
        for i in 0..arrow::array::Array::len(a) {
            ids.push(a.value(i).try_into()?);
        }
    }
    if ids.is_empty() {
        return Err("the store has no root spans".into());
    }
    let mut rng = scrydb_workload::Rng::new(7);
    let sample: Vec<[u8; 16]> = (0..n)
        .map(|_| ids[rng.below(ids.len() as u64) as usize])
        .collect();
    for (label, sql) in [("engine", false), ("SQL", true)] {
        let mut v = Vec::with_capacity(n);
        for id in &sample {
            let t = Instant::now();
            if sql {
                session.sql_blocking(&format!(
                    "SELECT * FROM spans WHERE trace_id = '{}'",
                    hex(id)
                ))?;
            } else {
                db.snapshot().trace_rows(Signal::Spans, &[*id], true)?;
            }
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{label}: {n} lookups, p50 {:.3} ms, p99 {:.3} ms",
            percentile(&mut v, 0.5),
            percentile(&mut v, 0.99)
        );
    }
    Ok(())
}

type BoxError = Box<dyn std::error::Error>;

/// Writes the trace requests of `opts`'s workload, until `spans` spans, as a file of
/// length-prefixed OTLP protobuf messages (what `scry ingest` reads) in `dir`, one request
/// at a time (the harness holds no more than one); returns its path.
fn write_otlp_file(dir: &Path, opts: &WorkloadOptions, spans: usize) -> Result<PathBuf, BoxError> {
    let path = dir.join("traces.pb");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut n = 0usize;
    for chunk in Workload::new(opts.clone()) {
        if n >= spans {
            break;
        }
        let request = Request::Traces(chunk.traces);
        n += request.records();
        let Request::Traces(traces) = request else {
            unreachable!("built as traces")
        };
        let p = traces.encode_to_vec();
        std::io::Write::write_all(&mut out, &u32::try_from(p.len())?.to_be_bytes())?;
        std::io::Write::write_all(&mut out, &p)?;
    }
    std::io::Write::flush(&mut out)?;
    Ok(path)
}

/// The messages of a file [`write_otlp_file`] wrote.
fn read_otlp_file(path: &Path) -> Result<Vec<Vec<u8>>, BoxError> {
    let bytes = std::fs::read(path)?;
    let mut rest = bytes.as_slice();
    let mut messages = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        messages.push(tail.get(..len).ok_or("a truncated message")?.to_vec());
        rest = &tail[len..];
    }
    Ok(messages)
}

/// Ingests the OTLP file `file` into a new store at `db_dir` with the library's ingester
/// (`scry ingest`'s path); returns the spans stored and the seconds until they were
/// durable.
fn ingest_otlp_file(db_dir: &Path, file: &Path) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let db = Db::open(db_dir, Options::default())?;
    let t = Instant::now();
    let report =
        scrydb::otlp::ingest::Ingester::new(&db, Default::default()).ingest_file(file, None)?;
    let secs = t.elapsed().as_secs_f64();
    db.close()?;
    Ok((report.stored.spans, secs))
}

/// Ingests `spans` spans of the harness workload as OTLP protobuf into fresh stores under
/// `dir`: one request at a time with each stage timed apart (protobuf decode, conversion
/// to Arrow, durable append), then as a file through the library's ingester (`scry
/// ingest`'s path, stages overlapped). A loop for `perf record`.
pub fn otlp_only(dir: &Path, spans: usize, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    let opts = WorkloadOptions {
        seed,
        seconds: (spans / 2000).max(60) as u32,
        traces_per_second: 200,
        fault: Some(FaultKind::ErrorBurst),
        ..Default::default()
    };
    std::fs::create_dir_all(dir)?;
    let file = write_otlp_file(dir, &opts, spans)?;
    let payloads = read_otlp_file(&file)?;
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let db = Db::open(
        dir.join("per-request"),
        Options::default().compaction(false),
    )?;
    let (mut decode, mut convert, mut append) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut n = 0usize;
    let all = Instant::now();
    for p in &payloads {
        let t = Instant::now();
        let req = scrydb::otlp::decode_protobuf(p, Some(Signal::Spans))?;
        let t1 = Instant::now();
        let c = req.convert();
        let t2 = Instant::now();
        db.append(c.signal, &c.batch)?;
        let t3 = Instant::now();
        n += c.batch.num_rows();
        decode += t1 - t;
        convert += t2 - t1;
        append += t3 - t2;
    }
    let total = all.elapsed();
    db.close()?;
    println!(
        "{n} spans in {} requests, {:.0} spans and {:.0} protobuf bytes per request",
        payloads.len(),
        n as f64 / payloads.len() as f64,
        bytes as f64 / payloads.len() as f64
    );
    let per = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
    println!(
        "one request at a time: decode {:.0} ns, convert {:.0} ns, append {:.0} ns per span; {:.0} spans/s",
        per(decode),
        per(convert),
        per(append),
        n as f64 / total.as_secs_f64()
    );
    let (stored, secs) = ingest_otlp_file(&dir.join("file"), &file)?;
    println!(
        "file through the ingester: {stored} spans, {:.0} spans/s",
        stored as f64 / secs
    );
    Ok(())
}

/// Runs the harness with the store in `dir` (created if needed; left as it is at the end).
pub fn run(dir: &Path, args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let rate = 200;
    let opts = WorkloadOptions {
        seed: args.seed,
        seconds: (args.spans / (rate * 10)).max(60) as u32,
        traces_per_second: rate as u32,
        fault: Some(FaultKind::ErrorBurst),
        ..Default::default()
    };
    println!(
        "scry-bench: {} spans (with their logs and metrics), seed {}",
        args.spans, args.seed
    );
    println!("store: {}", dir.display());

    // 1. Ingest an OTLP protobuf file (read + decode + convert + durable append, as `scry
    // ingest` does), into a separate store, first: the process then holds one store at a
    // time, and each phase's peak RSS is its own.
    let otlp_dir = tempfile::tempdir()?;
    let otlp_file = write_otlp_file(otlp_dir.path(), &opts, args.spans.min(1_000_000))?;
    let (otlp_spans, otlp_secs) = ingest_otlp_file(&otlp_dir.path().join("db"), &otlp_file)?;
    drop(otlp_dir);
    let otlp_spans_per_s = otlp_spans as f64 / otlp_secs;
    println!(
        "ingest (OTLP protobuf file, read + decode + convert + durable append): {otlp_spans_per_s:.0} spans/s over {otlp_spans} spans"
    );

    let mut phase_rss = serde_json::Map::new();
    phase_rss.insert("otlp_ingest".into(), json!(phase_peak_rss_mib()));

    // 2. Ingest through the Arrow API (default durability), collecting trace ids to look up.
    let db = Db::open(dir, Options::default().compaction(!args.compaction))?;
    let mut append_time = [Duration::ZERO; 3];
    let mut rows = [0u64; 3];
    let mut present: Vec<[u8; 16]> = Vec::new();
    let mut chunks = 0usize;
    let mut first_time = i64::MAX;
    let mut last_time = i64::MIN;
    for chunk in Workload::new(opts.clone()) {
        if rows[0] as usize >= args.spans {
            break;
        }
        chunks += 1;
        for rs in &chunk.traces.resource_spans {
            for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                if s.parent_span_id.is_empty()
                    && present.len() < 1_000_000
                    && let Ok(id) = <[u8; 16]>::try_from(s.trace_id.as_slice())
                {
                    present.push(id);
                }
                first_time = first_time.min(s.start_time_unix_nano as i64);
                last_time = last_time.max(s.start_time_unix_nano as i64);
            }
        }
        for req in [
            Request::Traces(chunk.traces),
            Request::Logs(chunk.logs),
            Request::Metrics(chunk.metrics),
        ] {
            let c = req.convert();
            let i = c.signal.index();
            let t = Instant::now();
            db.append(c.signal, &c.batch)?;
            append_time[i] += t.elapsed();
            rows[i] += c.batch.num_rows() as u64;
        }
    }
    let t = Instant::now();
    db.flush()?;
    let flush_secs = t.elapsed().as_secs_f64();
    let ingest_rss = phase_peak_rss_mib();
    let arrow_spans_per_s = rows[0] as f64 / append_time[0].as_secs_f64();
    println!(
        "ingest (Arrow API, durable): {:.0} spans/s; logs {:.0}/s; metric points {:.0}/s; final flush {:.2} s; {chunks} chunks",
        arrow_spans_per_s,
        rows[1] as f64 / append_time[1].as_secs_f64(),
        rows[2] as f64 / append_time[2].as_secs_f64(),
        flush_secs
    );

    // The background compactor gets there on its own within a few passes; compacting now
    // keeps it from racing the measurements (with `--compaction`, the comparison does it).
    if !args.compaction {
        let t = Instant::now();
        let c = db.compact()?;
        println!(
            "compaction before measuring: {} merges, {} rows rewritten in {:.1} s",
            c.merges,
            c.rows,
            t.elapsed().as_secs_f64()
        );
    }

    phase_rss.insert("compaction".into(), json!(phase_peak_rss_mib()));
    // 3. Storage.
    let snap = db.snapshot();
    let mut bytes_per_row = serde_json::Map::new();
    for s in Signal::ALL {
        let st = snap.stats(s);
        let per = st.segment_bytes as f64 / st.segment_rows.max(1) as f64;
        bytes_per_row.insert(s.name().into(), json!(per));
        println!(
            "  {:<8} {:>10} rows in {:>4} segments, {:>6.1} bytes/row",
            s.name(),
            st.segment_rows,
            st.segments,
            per
        );
    }
    let index_bytes = files_size(dir, "tidx");
    let index_per_span = index_bytes as f64 / rows[0].max(1) as f64;
    println!("  trace index: {index_bytes} bytes in all, {index_per_span:.1} bytes per span");

    // 4. Trace lookups, no time hint.
    let mut rng = scrydb_workload::Rng::new(args.seed ^ 0xabcdef);
    let sample: Vec<[u8; 16]> = (0..args.lookups)
        .map(|_| present[rng.below(present.len() as u64) as usize])
        .collect();
    let absent: Vec<[u8; 16]> = (0..args.lookups).map(|_| rng.id::<16>()).collect();
    let lookup = |db: &Db, ids: &[[u8; 16]], full: bool| -> Result<Vec<f64>, scrydb::Error> {
        let mut v = Vec::with_capacity(ids.len());
        for id in ids {
            let t = Instant::now();
            let snap = db.snapshot();
            let n: usize = if full {
                let tr = snap.trace(*id, true)?;
                tr.rows(Signal::Spans)
            } else {
                snap.trace_rows(Signal::Spans, &[*id], true)?
                    .iter()
                    .map(|b| b.num_rows())
                    .sum()
            };
            v.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(n);
        }
        Ok(v)
    };
    // Warm the index cache (blooms and Parquet metadata), then measure.
    lookup(&db, &sample[..sample.len().min(50)], false)?;
    let mut warm = lookup(&db, &sample, false)?;
    let mut warm_absent = lookup(&db, &absent, false)?;
    let mut warm_full = lookup(&db, &sample, true)?;
    let found: usize = sample
        .iter()
        .take(20)
        .map(|id| {
            db.snapshot()
                .trace(*id, true)
                .map(|t| t.rows(Signal::Spans))
                .unwrap_or(0)
        })
        .sum();
    let (w_p50, w_p99) = (percentile(&mut warm, 0.5), percentile(&mut warm, 0.99));
    let (a_p50, a_p99) = (
        percentile(&mut warm_absent, 0.5),
        percentile(&mut warm_absent, 0.99),
    );
    let (f_p50, f_p99) = (
        percentile(&mut warm_full, 0.5),
        percentile(&mut warm_full, 0.99),
    );
    println!(
        "trace lookup, warm: present p50 {w_p50:.3} ms p99 {w_p99:.3} ms ({:.1} spans per trace); absent p50 {a_p50:.3} ms p99 {a_p99:.3} ms; spans+logs+exemplars p50 {f_p50:.3} ms p99 {f_p99:.3} ms",
        found as f64 / 20.0
    );

    phase_rss.insert("lookups".into(), json!(phase_peak_rss_mib()));
    // 5. Analytics queries.
    let mid = first_time + (last_time - first_time) / 3;
    let w0 = chrono::DateTime::from_timestamp_nanos(mid)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let w1 = chrono::DateTime::from_timestamp_nanos(mid + 60_000_000_000)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let scry_queries = time_queries(db.session()?, (&w0, &w1))?;
    let mut rollup_queries = Vec::new();
    for (name, sql) in ROLLUP_QUERIES {
        rollup_queries.push((name.to_string(), time_sql(db.session()?, name, sql)?));
    }
    // The same lookups through SQL (`WHERE trace_id = '<hex>'`, all columns).
    let mut sql_lookup: Vec<f64> = Vec::new();
    for id in sample.iter().take(200) {
        let q = format!("SELECT * FROM spans WHERE trace_id = '{}'", hex(id));
        let t = Instant::now();
        db.session()?.sql_blocking(&q)?;
        sql_lookup.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (sql_p50, sql_p99) = (
        percentile(&mut sql_lookup, 0.5),
        percentile(&mut sql_lookup, 0.99),
    );
    println!("trace lookup through SQL: p50 {sql_p50:.3} ms p99 {sql_p99:.3} ms");

    // 5b. Compaction, and the same lookups and queries after it.
    let compaction = if args.compaction {
        let totals = |db: &Db| {
            let parts = db.snapshot().partition_stats();
            (
                parts.iter().map(|p| p.segments).sum::<usize>(),
                parts.iter().map(|p| p.bloom_bytes).sum::<u64>(),
                parts.iter().map(|p| p.bytes).sum::<u64>(),
            )
        };
        let (segs0, bloom0, bytes0) = totals(&db);
        let t = Instant::now();
        let c = db.compact()?;
        let secs = t.elapsed().as_secs_f64();
        let (segs1, bloom1, bytes1) = totals(&db);
        lookup(&db, &sample[..sample.len().min(50)], false)?;
        let mut warm = lookup(&db, &sample, false)?;
        let mut absent_after = lookup(&db, &absent, false)?;
        let queries = time_queries(db.session()?, (&w0, &w1))?;
        let (p50, p99) = (percentile(&mut warm, 0.5), percentile(&mut warm, 0.99));
        let (ap50, ap99) = (
            percentile(&mut absent_after, 0.5),
            percentile(&mut absent_after, 0.99),
        );
        println!(
            "compaction: {segs0} -> {segs1} segments in {secs:.1} s ({} merges, {} rows rewritten, \
             {:.0} rows/s); Parquet {bytes0} -> {bytes1} bytes; bloom filters {bloom0} -> {bloom1} bytes",
            c.merges,
            c.rows,
            c.rows as f64 / secs
        );
        println!(
            "  trace lookup present p50 {w_p50:.3} -> {p50:.3} ms, p99 {w_p99:.3} -> {p99:.3} ms; \
             absent p50 {a_p50:.3} -> {ap50:.3} ms, p99 {a_p99:.3} -> {ap99:.3} ms"
        );
        for ((name, before), (_, after)) in scry_queries.iter().zip(&queries) {
            println!(
                "  {name:<32} {:>9.1} -> {:>9.1} ms",
                before * 1e3,
                after * 1e3
            );
        }
        Some(json!({
            "seconds": secs, "merges": c.merges, "rows": c.rows,
            "segments": [segs0, segs1], "bloom_bytes": [bloom0, bloom1],
            "parquet_bytes": [bytes0, bytes1],
            "lookup_present_ms": {"p50": [w_p50, p50], "p99": [w_p99, p99]},
            "lookup_absent_ms": {"p50": [a_p50, ap50], "p99": [a_p99, ap99]},
            "queries_s_after": queries.iter().map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
        }))
    } else {
        None
    };
    drop(snap);
    db.close()?;

    // Cold lookups: a fresh open (empty caches) after dropping the page cache.
    let cold = if drop_page_cache() {
        let db = Db::open(dir, Options::default())?;
        let mut v = lookup(&db, &sample[..sample.len().min(200)], false)?;
        db.close()?;
        Some((percentile(&mut v, 0.5), percentile(&mut v, 0.99)))
    } else {
        None
    };
    match cold {
        Some((p50, p99)) => println!(
            "trace lookup, cold (page cache dropped, fresh open): p50 {p50:.3} ms p99 {p99:.3} ms"
        ),
        None => println!("trace lookup, cold: not measured (dropping the page cache needs root)"),
    }
    phase_rss.insert("queries".into(), json!(phase_peak_rss_mib()));
    let rss = phase_rss
        .values()
        .filter_map(Value::as_f64)
        .fold(ingest_rss, f64::max);
    println!(
        "peak RSS by phase (MiB): ingest {ingest_rss:.0}, {}",
        phase_rss
            .iter()
            .map(|(k, v)| format!("{k} {:.0}", v.as_f64().unwrap_or(f64::NAN)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // 6. DuckDB and chDB on the same data.
    let peer_input = |dialect: fn(&Query) -> &'static str| -> Value {
        let queries: serde_json::Map<String, Value> = QUERIES
            .iter()
            .map(|q| {
                (
                    q.name.to_string(),
                    json!(dialect(q).replace("{w0}", &w0).replace("{w1}", &w1)),
                )
            })
            .collect();
        json!({
            "dir": std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            "queries": queries,
            "present": sample.iter().take(200).map(|i| hex(i)).collect::<Vec<_>>(),
            "absent": absent.iter().take(200).map(|i| hex(i)).collect::<Vec<_>>(),
            "runs": 3,
        })
    };
    let abs_dir = std::path::absolute(dir)?;
    let duck = if args.duckdb {
        let mut input = peer_input(|q| q.duckdb);
        input["db_file"] = json!(abs_dir.join("duckdb-bench.duckdb"));
        run_python("duckdb_bench.py", &input)?
    } else {
        None
    };
    let chdb = if args.chdb {
        let mut input = peer_input(|q| q.chdb);
        input["db_dir"] = json!(abs_dir.join("chdb-bench"));
        run_python("chdb_bench.py", &input)?
    } else {
        None
    };

    // 7. The table.
    println!();
    println!(
        "{:<34} {:>12} {:>14} {:>14} {:>12} {:>10}",
        "measure", "ScryDB", "DuckDB parquet", "DuckDB native", "chDB", "ratio*"
    );
    let dq = |mode: &str, name: &str| {
        duck.as_ref()
            .and_then(|d| d[mode]["queries"][name].as_f64())
    };
    let cq = |name: &str| chdb.as_ref().and_then(|c| c["queries"][name].as_f64());
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}ms", v * 1e3));
    let ratio = |ours: f64, peers: &[Option<f64>]| {
        let best = peers.iter().flatten().fold(f64::NAN, |a, &b| a.min(b));
        if best.is_finite() {
            format!("{:.2}x", ours / best)
        } else {
            "-".into()
        }
    };
    for (name, secs) in &scry_queries {
        let (p, n, c) = (dq("parquet", name), dq("native", name), cq(name));
        println!(
            "{:<34} {:>10.1}ms {:>14} {:>14} {:>12} {:>10}",
            name,
            secs * 1e3,
            ms(p),
            ms(n),
            ms(c),
            ratio(*secs, &[n, c])
        );
        if let Some((_, r)) = rollup_queries.iter().find(|(n, _)| n == name) {
            println!(
                "{:<34} {:>10.1}ms {:>14} {:>14} {:>12} {:>10}",
                "  (from span_metrics)",
                r * 1e3,
                "",
                "",
                "",
                ratio(*r, &[n, c])
            );
        }
    }
    let peer_lookup = |v: Option<&Value>, key: &str, p: f64| {
        v.and_then(|d| {
            let mut v: Vec<f64> = d[key]
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            Some(percentile(&mut v, p))
        })
    };
    let ms3 = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}ms"));
    for (label, ours, key, p) in [
        ("trace lookup present p50", w_p50, "lookup_present_ms", 0.5),
        ("trace lookup present p99", w_p99, "lookup_present_ms", 0.99),
        ("trace lookup absent p50", a_p50, "lookup_absent_ms", 0.5),
        ("trace lookup absent p99", a_p99, "lookup_absent_ms", 0.99),
        (
            "trace lookup via SQL p50",
            sql_p50,
            "lookup_present_ms",
            0.5,
        ),
        (
            "trace lookup via SQL p99",
            sql_p99,
            "lookup_present_ms",
            0.99,
        ),
    ] {
        let pq = peer_lookup(duck.as_ref().map(|d| &d["parquet"]), key, p);
        let nt = peer_lookup(duck.as_ref().map(|d| &d["native"]), key, p);
        let ch = peer_lookup(chdb.as_ref(), key, p);
        println!(
            "{:<34} {:>10.3}ms {:>14} {:>14} {:>12} {:>10}",
            label,
            ours,
            ms3(pq),
            ms3(nt),
            ms3(ch),
            ratio(ours, &[nt, ch])
        );
    }
    let all_rows = (rows[0] + rows[1] + rows[2]) as f64;
    let duck_bytes = duck
        .as_ref()
        .and_then(|d| d["native_file_bytes"].as_f64())
        .map(|b| b / all_rows);
    let chdb_bytes = chdb.as_ref().map(|c| {
        c["tables"].as_object().map_or(0.0, |t| {
            t.values().filter_map(|v| v["bytes"].as_f64()).sum::<f64>()
        }) / all_rows
    });
    let rollup_bytes = files_size(&dir.join("spans"), "rollup");
    let ours_bytes = (0..3).map(|i| snap_bytes(dir, Signal::ALL[i])).sum::<u64>() as f64 / all_rows;
    let b = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}B"));
    println!(
        "{:<34} {:>11.1}B {:>14} {:>14} {:>12} {:>10}",
        "bytes per row, all signals",
        ours_bytes,
        "(same files)",
        b(duck_bytes),
        b(chdb_bytes),
        ratio(ours_bytes, &[duck_bytes, chdb_bytes])
    );
    let spans_index_bytes = files_size(&dir.join("spans"), "tidx");
    let per_span = (snap_bytes(dir, Signal::Spans) + spans_index_bytes + rollup_bytes) as f64
        / rows[0].max(1) as f64;
    let duck_span = duck
        .as_ref()
        .and_then(|d| d["native_spans_file_bytes"].as_f64())
        .map(|v| v / rows[0].max(1) as f64);
    let chdb_span = chdb
        .as_ref()
        .and_then(|c| c["tables"]["otel_traces"]["bytes"].as_f64())
        .map(|v| v / rows[0].max(1) as f64);
    println!(
        "{:<34} {:>11.1}B {:>14} {:>14} {:>12} {:>10}",
        "bytes per span (+index, rollups)",
        per_span,
        "",
        b(duck_span),
        b(chdb_span),
        ratio(per_span, &[duck_span, chdb_span])
    );
    let duck_load = duck
        .as_ref()
        .and_then(|d| d["native_load_seconds"]["spans"].as_f64());
    println!(
        "{:<34} {:>12.0}/s {:>14} {:>14} {:>12}",
        "ingest spans (Arrow API, durable)",
        arrow_spans_per_s,
        "-",
        duck_load.map_or("-".into(), |s| format!("{:.0}/s", rows[0] as f64 / s)),
        "-",
    );
    println!(
        "{:<34} {:>12.0}/s",
        "ingest spans (OTLP protobuf)", otlp_spans_per_s
    );
    println!(
        "{:<34} {:>10.0}MiB (during ingest: {:.0} MiB)",
        "peak RSS", rss, ingest_rss
    );
    println!(
        "* ratio = ScryDB / the faster of DuckDB native and chDB; below 1 means ScryDB is faster."
    );
    println!("  DuckDB native and chDB load from the same Parquet files (not timed as ingest).");

    let report = json!({
        "spans": rows[0], "logs": rows[1], "metric_points": rows[2],
        "seed": args.seed,
        "ingest_arrow_spans_per_s": arrow_spans_per_s,
        "ingest_otlp_protobuf_spans_per_s": otlp_spans_per_s,
        "bytes_per_row": bytes_per_row,
        "trace_index_bytes_per_span": index_per_span,
        "rollup_bytes_per_span": rollup_bytes as f64 / rows[0].max(1) as f64,
        "bytes_per_span_with_index": per_span,
        "lookup_ms": {
            "present": {"p50": w_p50, "p99": w_p99},
            "absent": {"p50": a_p50, "p99": a_p99},
            "all_signals": {"p50": f_p50, "p99": f_p99},
            "sql": {"p50": sql_p50, "p99": sql_p99},
            "cold": cold.map(|(p50, p99)| json!({"p50": p50, "p99": p99})),
        },
        "queries_s": scry_queries.iter().map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "rollup_queries_s": rollup_queries.iter().map(|(n, s)| (n.clone(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "peak_rss_mib": rss,
        "peak_rss_ingest_mib": ingest_rss,
        "peak_rss_by_phase_mib": phase_rss,
        "duckdb": duck,
        "chdb": chdb,
        "compaction": compaction,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    println!("results written to {}", args.json.display());
    Ok(())
}

fn snap_bytes(dir: &Path, signal: Signal) -> u64 {
    files_size(&dir.join(signal.name()), "parquet")
}
