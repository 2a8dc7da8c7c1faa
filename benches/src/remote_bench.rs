//! Object storage against local disk (`scry-bench --remote STORE --s3-url s3://bucket/prefix`):
//! the files of an existing store are uploaded as objects (once: skipped when the prefix
//! already holds its manifest), then the same trace lookups and RED query run on the local
//! store, on the objects with no cache (every read a GET: a cold reader on another host),
//! and with the default cache after one warm-up pass. The S3 endpoint comes from
//! `AWS_ENDPOINT_URL` and the other `AWS_*` variables; `docs/scale-out.md` gives the
//! conditions of the published numbers.

use std::path::Path;
use std::time::Instant;

use scrydb::remote::{RemoteOptions, RemoteStore, S3Options};
use scrydb::{Db, Options, Signal};

const RED: &str = "SELECT service_name, date_bin(interval '1 minute', time) AS minute, count(*) AS requests, \
     sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
     approx_percentile_cont(duration_ns, 0.99) AS p99_ns \
     FROM spans WHERE kind = 'SERVER' AND time >= to_timestamp_nanos({from}) GROUP BY 1, 2";

/// Uploads every file of the store at `dir` that object storage holds (manifest, signal
/// directories) under `store`'s prefix.
fn upload(dir: &Path, store: &RemoteStore) -> Result<(usize, u64), Box<dyn std::error::Error>> {
    use object_store::ObjectStoreExt;
    let os = store.object_store();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let rel = p.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
            let top = rel.split('/').next().unwrap_or_default().to_string();
            if p.is_dir() {
                if matches!(top.as_str(), "spans" | "logs" | "metrics") {
                    stack.push(p);
                }
            } else if (top.starts_with("MANIFEST-") || rel.contains('/')) && !rel.ends_with(".tmp")
            {
                files.push((p, rel));
            }
        }
    }
    let mut bytes = 0;
    let prefix = store.prefix().to_string();
    for (p, rel) in &files {
        let body = std::fs::read(p)?;
        bytes += body.len() as u64;
        let key = object_store::path::Path::from(format!("{prefix}/{rel}"));
        rt.block_on(os.put(&key, body.into()))?;
    }
    Ok((files.len(), bytes))
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    (
        crate::harness::percentile(&mut v, 0.5),
        crate::harness::percentile(&mut v, 0.99),
    )
}

/// Runs the comparison and writes the results to `json`.
pub fn run(
    dir: &Path,
    url: &str,
    runs: usize,
    json: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let s3 = S3Options::from_env();
    let store = RemoteStore::s3(url, &s3)?;
    let local = Db::open_read_only(dir, Options::default())?;
    let probe = tempfile::tempdir_in(".")?;
    let uploaded = match Db::open_remote_read_only(
        probe.path(),
        store.clone(),
        RemoteOptions::default(),
        Options::default(),
    ) {
        Ok(db) if db.snapshot().manifest_version() == local.snapshot().manifest_version() => None,
        _ => {
            let t = Instant::now();
            let (n, bytes) = upload(dir, &store)?;
            Some((n, bytes, t.elapsed().as_secs_f64()))
        }
    };
    if let Some((n, bytes, s)) = uploaded {
        println!(
            "uploaded {n} files, {:.1} MB in {s:.1} s to {url}",
            bytes as f64 / 1e6
        );
    }
    let newest = local
        .snapshot()
        .newest_time(Signal::Spans)?
        .ok_or("the store has no spans")?;
    let red = RED.replace("{from}", &(newest - 15 * 60 * 1_000_000_000).to_string());
    let mut ids: Vec<[u8; 16]> = Vec::new();
    for b in local.sql_blocking(&format!(
        "SELECT trace_id FROM spans WHERE parent_span_id IS NULL AND time >= to_timestamp_nanos({}) LIMIT {}",
        newest - 3_600_000_000_000,
        runs * 20
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
    let sample: Vec<[u8; 16]> = ids.iter().step_by(20).take(runs).copied().collect();
    if sample.is_empty() {
        return Err("the store has no root spans in its last hour".into());
    }

    let mut cold_opts = RemoteOptions::default();
    cold_opts.cache_bytes = 0;
    let cold_dir = tempfile::tempdir_in(".")?;
    let warm_dir = tempfile::tempdir_in(".")?;
    let t = Instant::now();
    let cold = Db::open_remote_read_only(
        cold_dir.path(),
        store.clone(),
        cold_opts,
        Options::default(),
    )?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let warm = Db::open_remote_read_only(
        warm_dir.path(),
        store.clone(),
        RemoteOptions::default(),
        Options::default(),
    )?;
    println!(
        "open of the remote store (HEAD of every segment): {open_ms:.0} ms, {} segments",
        cold.snapshot().segments(Signal::Spans, None).len()
            + cold.snapshot().segments(Signal::Logs, None).len()
            + cold.snapshot().segments(Signal::Metrics, None).len()
    );
    // The warm store's pass that fills its cache (the first open of each file is a GET).
    for id in &sample {
        warm.trace(*id)?;
    }
    warm.sql_blocking(&red)?;

    let mut results = Vec::new();
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "what", "p50 ms", "p99 ms", "rows"
    );
    for (label, db) in [
        ("local disk", &local),
        ("object storage, no cache", &cold),
        ("object storage, cache warm", &warm),
    ] {
        let mut times = Vec::new();
        let mut rows = 0;
        for id in &sample {
            let t = Instant::now();
            let tr = db.trace(*id)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            rows = tr.rows(Signal::Spans);
        }
        let (p50, p99) = percentiles(times);
        println!(
            "{:<34} {p50:>10.1} {p99:>10.1} {rows:>8}",
            format!("trace lookup, {label}")
        );
        results.push(serde_json::json!({"what": "trace_lookup", "where": label, "p50_ms": p50, "p99_ms": p99}));
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..runs.clamp(3, 10) {
            let t = Instant::now();
            n = db.sql_blocking(&red)?.iter().map(|b| b.num_rows()).sum();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (p50, p99) = percentiles(times);
        println!(
            "{:<34} {p50:>10.1} {p99:>10.1} {n:>8}",
            format!("RED 15 min, {label}")
        );
        results.push(
            serde_json::json!({"what": "red_15m", "where": label, "p50_ms": p50, "p99_ms": p99}),
        );
    }
    results.extend(cluster(&warm, &s3, &red, &sample, runs)?);
    std::fs::write(
        json,
        serde_json::to_string_pretty(&serde_json::json!({ "remote": url, "results": results }))?,
    )?;
    Ok(())
}

/// The same RED query and trace lookups (by hex id, in SQL) on a Ballista scheduler with
/// one executor, then with two (each executor: 2 task slots), in this process.
fn cluster(
    db: &Db,
    s3: &S3Options,
    red: &str,
    sample: &[[u8; 16]],
    runs: usize,
) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    use scrydb::sql::cluster;
    let mut out = Vec::new();
    for executors in [1, 2] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()?;
        let cache = tempfile::tempdir_in(".")?;
        let addr = rt.block_on(cluster::start_scheduler(
            "127.0.0.1:0".parse()?,
            s3.clone(),
            cache.path().to_path_buf(),
        ))?;
        for _ in 0..executors {
            rt.block_on(cluster::start_executor(addr, 2, s3.clone()))?;
        }
        let ctx = cluster::connect(db.session()?, &addr.to_string())?;
        let run = |q: &str| -> Result<(f64, usize), Box<dyn std::error::Error>> {
            let t = Instant::now();
            let n = rt.block_on(async {
                let b = ctx.sql(q).await?.collect().await?;
                Ok::<_, scrydb::sql::datafusion::error::DataFusionError>(
                    b.iter().map(|b| b.num_rows()).sum::<usize>(),
                )
            })?;
            Ok((t.elapsed().as_secs_f64() * 1e3, n))
        };
        run(red)?;
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..runs.clamp(3, 10) {
            let (ms, rows) = run(red)?;
            times.push(ms);
            n = rows;
        }
        let (p50, p99) = percentiles(times);
        let label = format!("Ballista, {executors} executor(s)");
        println!(
            "{:<34} {p50:>10.1} {p99:>10.1} {n:>8}",
            format!("RED 15 min, {label}")
        );
        out.push(
            serde_json::json!({"what": "red_15m", "where": label, "p50_ms": p50, "p99_ms": p99}),
        );
        let mut times = Vec::new();
        for id in sample {
            let (ms, rows) = run(&format!(
                "SELECT * FROM spans WHERE trace_id = '{}'",
                scrydb::sql::ids::hex(id)
            ))?;
            times.push(ms);
            n = rows;
        }
        let (p50, p99) = percentiles(times);
        println!(
            "{:<34} {p50:>10.1} {p99:>10.1} {n:>8}",
            format!("trace lookup, {label}")
        );
        out.push(serde_json::json!({"what": "trace_lookup_sql", "where": label, "p50_ms": p50, "p99_ms": p99}));
        drop(ctx);
        rt.shutdown_background();
    }
    Ok(out)
}
