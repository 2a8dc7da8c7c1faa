//! `scry demo`: a distributed system misbehaves; the telemetry in an embedded store leads
//! from the symptom to the cause. Every step prints the SQL it ran.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use scrydb::arrow::array::{Array, AsArray, RecordBatch};
use scrydb::arrow::datatypes::{Float64Type, Int64Type};
use scrydb::otlp::Request;
use scrydb::sql::Session;
use scrydb::{Db, Options, SqlExt};
use scrydb_workload::{FaultKind, Workload, WorkloadOptions};

/// What the demo was asked to do.
pub struct DemoArgs {
    pub seed: u64,
    pub fault: FaultKind,
    pub seconds: u32,
    pub rate: u32,
}

struct Ui {
    color: bool,
}

impl Ui {
    fn heading(&self, n: usize, text: &str) {
        let t = format!("\n── {n}. {text}");
        if self.color {
            println!("\x1b[1m{t}\x1b[0m");
        } else {
            println!("{t}");
        }
    }
    fn sql(&self, sql: &str) {
        for line in sql.lines() {
            if self.color {
                println!("\x1b[2m  {line}\x1b[0m");
            } else {
                println!("  {line}");
            }
        }
    }
}

fn query(session: &Session, ui: &Ui, sql: &str) -> Result<Vec<RecordBatch>, String> {
    ui.sql(sql);
    session.sql_blocking(sql).map_err(|e| e.to_string())
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let b = scrydb::sql::ids_as_hex(b);
        let c = b.column(col);
        let c = scrydb::arrow::compute::cast(c, &scrydb::arrow::datatypes::DataType::Utf8)
            .expect("castable to text");
        let c = c.as_string::<i32>();
        for r in 0..c.len() {
            out.push(if c.is_null(r) {
                String::new()
            } else {
                c.value(r).to_string()
            });
        }
    }
    out
}

fn floats(batches: &[RecordBatch], col: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for b in batches {
        let c = scrydb::arrow::compute::cast(
            b.column(col),
            &scrydb::arrow::datatypes::DataType::Float64,
        )
        .expect("castable to double");
        let c = c.as_primitive::<Float64Type>();
        for r in 0..c.len() {
            out.push(if c.is_null(r) { f64::NAN } else { c.value(r) });
        }
    }
    out
}

fn ints(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let c =
            scrydb::arrow::compute::cast(b.column(col), &scrydb::arrow::datatypes::DataType::Int64)
                .expect("castable to integer");
        let c = c.as_primitive::<Int64Type>();
        for r in 0..c.len() {
            out.push(if c.is_null(r) { 0 } else { c.value(r) });
        }
    }
    out
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn ts_lit(ns: i64) -> String {
    let dt = chrono::DateTime::from_timestamp_nanos(ns);
    format!("TIMESTAMP '{}'", dt.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

fn bar(value: f64, max: f64, width: usize) -> String {
    let n = if max > 0.0 {
        ((value / max) * width as f64).round() as usize
    } else {
        0
    };
    "█".repeat(n.min(width)) + &" ".repeat(width - n.min(width))
}

/// Runs the demo in `dir`; returns whether the diagnosis matched the injected fault.
pub fn run(dir: &Path, args: &DemoArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let ui = Ui {
        color: std::io::stdout().is_terminal(),
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let start_ns =
        (now / 60_000_000_000) * 60_000_000_000 - i64::from(args.seconds) * 1_000_000_000;
    let opts = WorkloadOptions {
        seed: args.seed,
        start_ns,
        seconds: args.seconds,
        traces_per_second: args.rate,
        fault: Some(args.fault),
    };
    let workload = Workload::new(opts);
    let truth = workload.fault().cloned().expect("a fault was asked for");

    println!(
        "ScryDB demo: a shop of 12 services runs for {} s at {} requests/s; something goes wrong.",
        args.seconds, args.rate
    );
    println!("store: {}", dir.display());
    let db = Db::open(dir, Options::default())?;
    let t = Instant::now();
    let (mut spans, mut logs, mut points) = (0u64, 0u64, 0u64);
    for chunk in workload {
        spans += db.ingest_otlp(&Request::Traces(chunk.traces))?.accepted;
        logs += db.ingest_otlp(&Request::Logs(chunk.logs))?.accepted;
        points += db.ingest_otlp(&Request::Metrics(chunk.metrics))?.accepted;
    }
    db.flush()?;
    println!(
        "ingested {spans} spans, {logs} logs, {points} metric points through OTLP in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let session = db.session()?;

    // 1. The symptom.
    ui.heading(
        1,
        "The symptom: error rate and p99 latency of incoming requests, per 10 s",
    );
    let sql = "SELECT date_bin(interval '10 seconds', time) AS bucket,\n       \
        count(*) AS requests,\n       \
        avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS error_rate,\n       \
        approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99_ms\n\
        FROM spans WHERE parent_span_id IS NULL AND kind = 'SERVER'\n\
        GROUP BY 1 ORDER BY 1";
    let r = query(&session, &ui, sql)?;
    let buckets = ints(&r, 0);
    let err = floats(&r, 2);
    let p99 = floats(&r, 3);
    let (base_err, base_p99) = (median(&err), median(&p99));
    let max_err = err.iter().copied().fold(0.0, f64::max);
    let max_p99 = p99.iter().copied().fold(0.0, f64::max);
    let bad: Vec<bool> = err
        .iter()
        .zip(&p99)
        .map(|(e, p)| (*e > base_err + 0.03 && *e > 2.0 * base_err) || *p > 1.8 * base_p99)
        .collect();
    println!("  {:<8} {:<22} {:<22}", "time", "error rate", "p99 latency");
    for (((b, e), p), x) in buckets.iter().zip(&err).zip(&p99).zip(&bad) {
        let time = chrono::DateTime::from_timestamp_nanos(*b).format("%H:%M:%S");
        let line = format!(
            "  {time} {} {:>5.1}%  {} {:>6.0} ms",
            bar(*e, max_err, 14),
            e * 100.0,
            bar(*p, max_p99, 14),
            p
        );
        if *x && ui.color {
            println!("\x1b[31m{line}  ◀\x1b[0m");
        } else {
            println!("{line}{}", if *x { "  ◀" } else { "" });
        }
    }
    let Some(first) = bad.iter().position(|x| *x) else {
        println!("no anomaly found");
        println!(
            "verdict: none — injected fault: {} on {}/{}",
            truth.kind, truth.service, truth.operation
        );
        return Ok(false);
    };
    let last = bad.iter().rposition(|x| *x).expect("one exists");
    let (w0, w1) = (buckets[first], buckets[last] + 10_000_000_000);
    let error_mode = err[first..=last]
        .iter()
        .any(|e| *e > base_err + 0.03 && *e > 2.0 * base_err);
    println!(
        "  anomaly: {} from {} to {} (baseline: {:.1}% errors, p99 {:.0} ms)",
        if error_mode { "errors" } else { "latency" },
        chrono::DateTime::from_timestamp_nanos(w0).format("%H:%M:%S"),
        chrono::DateTime::from_timestamp_nanos(w1).format("%H:%M:%S"),
        base_err * 100.0,
        base_p99
    );
    let window = format!("time >= {} AND time < {}", ts_lit(w0), ts_lit(w1));

    // 2. Which services.
    ui.heading(
        2,
        "Which services: errors and latency per service in the window",
    );
    let sql = format!(
        "SELECT service_name, count(*) AS spans,\n       \
         sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors,\n       \
         approx_percentile_cont(duration_ns, 0.99) / 1e6 AS p99_ms\n\
         FROM spans WHERE kind = 'SERVER' AND {window}\n\
         GROUP BY 1 ORDER BY errors DESC, p99_ms DESC LIMIT 6"
    );
    let r = query(&session, &ui, &sql)?;
    let (svc, n, e, p) = (strings(&r, 0), ints(&r, 1), ints(&r, 2), floats(&r, 3));
    for i in 0..svc.len() {
        println!(
            "  {:<16} {:>6} spans {:>5} errors  p99 {:>6.0} ms",
            svc[i], n[i], e[i], p[i]
        );
    }

    // 3. The root cause.
    ui.heading(3, "The root cause");
    let (service, operation, example_filter) = if error_mode {
        println!("  the deepest erroring spans: errors whose children did not fail");
        let sql = format!(
            "SELECT s.service_name, s.name, s.kind,\n       \
             s.attributes['peer.service'] AS peer, s.attributes['rpc.method'] AS method,\n       \
             count(*) AS n\n\
             FROM spans s\n\
             WHERE s.status_code = 'ERROR' AND s.{}\n  \
             AND NOT EXISTS (SELECT 1 FROM spans c WHERE c.trace_id = s.trace_id\n                  \
             AND c.parent_span_id = s.span_id AND c.status_code = 'ERROR')\n\
             GROUP BY 1, 2, 3, 4, 5 ORDER BY n DESC LIMIT 5",
            window.replace(" AND time", " AND s.time")
        );
        let r = query(&session, &ui, &sql)?;
        let (svc, name, kind, peer, method, n) = (
            strings(&r, 0),
            strings(&r, 1),
            strings(&r, 2),
            strings(&r, 3),
            strings(&r, 4),
            ints(&r, 5),
        );
        for i in 0..svc.len() {
            println!(
                "  {:>5} × {:<12} {:<24} {:<7} {}",
                n[i],
                svc[i],
                name[i],
                kind[i],
                if peer[i].is_empty() {
                    String::new()
                } else {
                    format!("→ {}", peer[i])
                }
            );
        }
        if svc.is_empty() {
            return Err("no erroring span in the window".into());
        }
        // A client span that failed with no server span under it: the callee never
        // answered, so the fault is the callee's.
        let (service, operation) = if kind[0] == "CLIENT" && !peer[0].is_empty() {
            (peer[0].clone(), method[0].clone())
        } else {
            (svc[0].clone(), name[0].clone())
        };
        let filter = format!(
            "service_name = '{}' AND name = '{}' AND status_code = 'ERROR'",
            svc[0], name[0]
        );
        (service, operation, filter)
    } else {
        println!(
            "  self time (a span's duration minus its children's), in the window vs outside it"
        );
        let sql = format!(
            "WITH kids AS (SELECT trace_id, parent_span_id AS id, sum(duration_ns) AS d\n              \
             FROM spans WHERE parent_span_id IS NOT NULL GROUP BY 1, 2),\n     \
             own AS (SELECT s.service_name, s.name, s.time, s.duration_ns - coalesce(k.d, 0) AS self_ns\n             \
             FROM spans s LEFT JOIN kids k ON k.trace_id = s.trace_id AND k.id = s.span_id)\n\
             SELECT service_name, name,\n       \
             avg(CASE WHEN {window} THEN self_ns END) / 1e6 AS during_ms,\n       \
             avg(CASE WHEN NOT ({window}) THEN self_ns END) / 1e6 AS outside_ms\n\
             FROM own GROUP BY 1, 2\n\
             ORDER BY coalesce(during_ms, 0) - coalesce(outside_ms, 0) DESC LIMIT 5"
        );
        let r = query(&session, &ui, &sql)?;
        let (svc, name, during, outside) =
            (strings(&r, 0), strings(&r, 1), floats(&r, 2), floats(&r, 3));
        for i in 0..svc.len() {
            println!(
                "  {:<12} {:<24} {:>8.1} ms during, {:>6.1} ms outside",
                svc[i], name[i], during[i], outside[i]
            );
        }
        if svc.is_empty() {
            return Err("no span in the window".into());
        }
        let filter = format!("service_name = '{}' AND name = '{}'", svc[0], name[0]);
        (svc[0].clone(), name[0].clone(), filter)
    };
    println!("  → {service}/{operation}");

    // 4. One such trace.
    ui.heading(4, "One affected trace, as a waterfall");
    let sql = format!(
        "SELECT trace_id FROM spans WHERE {example_filter} AND {window}\n\
         ORDER BY duration_ns DESC LIMIT 1"
    );
    let r = query(&session, &ui, &sql)?;
    let trace_hex = strings(&r, 0)
        .into_iter()
        .next()
        .ok_or("no example trace")?;
    println!("  scry trace {trace_hex}");
    let id = scrydb::parse_trace_id(&trace_hex)?;
    crate::trace::print_trace(&db, id, ui.color)?;

    // 5. The logs of the affected traces.
    ui.heading(5, "What the logs of those traces say");
    let sql = format!(
        "SELECT l.time, l.service_name, l.severity_text, l.body\n\
         FROM logs l\n\
         WHERE l.severity_number >= 13 AND l.trace_id IN\n  \
         (SELECT trace_id FROM spans WHERE {example_filter} AND {window})\n\
         ORDER BY l.time LIMIT 6"
    );
    let r = query(&session, &ui, &sql)?;
    let (time, svc, sev, body) = (
        strings(&r, 0),
        strings(&r, 1),
        strings(&r, 2),
        strings(&r, 3),
    );
    for i in 0..time.len() {
        println!(
            "  {} {:<12} {:<5} {}",
            &time[i][11..23.min(time[i].len())],
            svc[i],
            sev[i],
            body[i]
        );
    }
    if time.is_empty() {
        println!("  (no warnings or errors logged)");
    }

    // 6. The exemplar.
    ui.heading(
        6,
        "From the latency histogram to a trace: the slowest exemplar in the window",
    );
    let sql = format!(
        "SELECT m.service_name, m.e['value'] AS ms, s.name, m.e['trace_id'] AS trace_id\n\
         FROM (SELECT service_name, unnest(exemplars) AS e FROM metrics\n      \
         WHERE name = 'rpc.server.duration' AND {window}) m\n\
         JOIN spans s ON s.trace_id = m.e['trace_id'] AND s.span_id = m.e['span_id']\n\
         ORDER BY ms DESC LIMIT 1"
    );
    let r = query(&session, &ui, &sql)?;
    let (svc, ms, name, tid) = (
        strings(&r, 0),
        floats(&r, 1),
        strings(&r, 2),
        strings(&r, 3),
    );
    if let (Some(s), Some(m), Some(n), Some(t)) =
        (svc.first(), ms.first(), name.first(), tid.first())
    {
        println!("  rpc.server.duration of {s}: {m:.0} ms, exemplar → span {n} of trace {t}");
    }

    drop(session);
    db.close()?;
    let ok = service == truth.service && operation == truth.operation;
    println!(
        "\nverdict: {service}/{operation} — injected fault: {} on {}/{}",
        truth.kind, truth.service, truth.operation
    );
    Ok(ok)
}
