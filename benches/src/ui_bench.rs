//! The web UI benchmark (`scry-bench --ui STORE`): every route of `scrydb::ui` over an
//! existing store (such as the harness's 10M spans, opened read-only), each page fetched
//! over loopback HTTP `runs` times after one warm-up; p50 and p99 of the whole request
//! (query, render, transfer) per route. `docs/benchmarks.md` says what each number means.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use scrydb::sql::ids::hex;
use scrydb::ui::{UiServeOptions, UiServer};
use scrydb::{Db, Options, Signal};

/// One GET over a new connection: status and body length.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, usize), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {head:?}"))?;
    Ok((status, raw.len()))
}

/// The routes timed: each screen, with the parameters a person would use first.
fn routes(db: &Db) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let newest = db.snapshot().newest_time(Signal::Spans)?.unwrap_or(0);
    let one = |sql: &str| -> Result<Option<String>, Box<dyn std::error::Error>> {
        let b = db.sql_blocking(sql)?;
        Ok(b.iter().find(|b| b.num_rows() > 0).map(|b| {
            let c = b.column(0);
            scrydb::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                .map(|f| f.value(0).to_string())
                .unwrap_or_default()
        }))
    };
    let mut r = vec![
        ("traces: last hour, newest 100".into(), "/traces".into()),
        ("traces: errors".into(), "/traces?status=error".into()),
    ];
    if let Some(svc) = one("SELECT CAST(service_name AS VARCHAR) FROM span_metrics LIMIT 1")? {
        r.push((
            "traces: a service, ≥ 10ms".into(),
            format!("/traces?service={}&min=10ms", scrydb::ui::encode(&svc)),
        ));
    }
    let trace = db.sql_blocking(&format!(
        "SELECT trace_id FROM spans WHERE time >= to_timestamp_nanos({}) AND parent_span_id IS NULL LIMIT 1",
        newest - 60_000_000_000
    ))?;
    if let Some(b) = trace.iter().find(|b| b.num_rows() > 0) {
        use scrydb::arrow::array::AsArray;
        let id = hex(b.column(0).as_fixed_size_binary().value(0));
        r.push(("trace: waterfall".into(), format!("/trace/{id}")));
        r.push(("trace: critical path".into(), format!("/trace/{id}?cp=1")));
    }
    r.push(("logs: last hour, patterns".into(), "/logs".into()));
    r.push(("logs: errors".into(), "/logs?severity=error".into()));
    r.push(("metrics: list".into(), "/metrics".into()));
    if let Some(name) = one("SELECT name FROM metrics ORDER BY time DESC LIMIT 1")? {
        r.push((
            "metrics: a chart".into(),
            format!("/metrics?name={}", scrydb::ui::encode(&name)),
        ));
    }
    r.push(("services: map and RED".into(), "/services".into()));
    r.push((
        "sql: spans per service (rollups)".into(),
        "/sql?q=SELECT+service_name%2C+sum(count)+FROM+span_metrics+GROUP+BY+1".into(),
    ));
    Ok(r)
}

/// Runs the benchmark over `store` — the default routes, or `only` (paths with their
/// query strings) when given — and writes the results to `json`.
pub fn run(
    store: &Path,
    runs: usize,
    only: &[String],
    json: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let db = Arc::new(Db::open_read_only(store, Options::default())?);
    let routes = if only.is_empty() {
        routes(&db)?
    } else {
        only.iter().map(|p| (p.clone(), p.clone())).collect()
    };
    let mut opts = UiServeOptions::default();
    opts.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let ui = UiServer::start(db.clone(), opts)?;
    let addr = ui.addr();
    println!(
        "{:<34} {:>9} {:>9} {:>10}  route",
        "page", "p50 ms", "p99 ms", "bytes"
    );
    let mut out = Vec::new();
    for (name, path) in &routes {
        let (status, _) = get(addr, path)?;
        if status != 200 {
            return Err(format!("GET {path}: status {status}").into());
        }
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let (status, n) = get(addr, path)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                return Err(format!("GET {path}: status {status}").into());
            }
            bytes = n;
        }
        let p50 = crate::harness::percentile(&mut times.clone(), 0.5);
        let p99 = crate::harness::percentile(&mut times, 0.99);
        println!("{name:<34} {p50:>9.1} {p99:>9.1} {bytes:>10}  {path}");
        out.push(serde_json::json!({
            "page": name, "route": path, "p50_ms": p50, "p99_ms": p99, "bytes": bytes, "runs": runs,
        }));
    }
    ui.shutdown()?;
    std::fs::write(json, serde_json::to_vec_pretty(&out)?)?;
    Ok(())
}
