//! `scry demo`: a distributed system misbehaves; the telemetry in an embedded store leads
//! from the symptom to the cause. Every step prints the SQL it ran.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use scrydb::diagnose::{
    AnomalyKind, DiagnoseOptions, Diagnosis, Evidence, Step, diagnose_blocking,
};
use scrydb::otlp::Request;
use scrydb::otlp::ingest::{IngestOptions, Ingester};
use scrydb::sql::ids::hex;
use scrydb::{Db, Options};
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
            say!("\x1b[1m{t}\x1b[0m");
        } else {
            say!("{t}");
        }
    }
    /// Prints the SQL the diagnosis ran for `step`.
    fn queries(&self, d: &Diagnosis, step: Step) {
        for sql in d.queries_of(step) {
            self.sql(sql);
        }
    }
    fn sql(&self, sql: &str) {
        for line in sql.lines() {
            if self.color {
                say!("\x1b[2m  {line}\x1b[0m");
            } else {
                say!("  {line}");
            }
        }
    }
}

fn clock(ns: i64) -> impl std::fmt::Display {
    chrono::DateTime::from_timestamp_nanos(ns).format("%H:%M:%S")
}

fn bar(value: f64, max: f64, width: usize) -> String {
    let n = if max > 0.0 {
        ((value / max) * width as f64).round() as usize
    } else {
        0
    };
    "█".repeat(n.min(width)) + &" ".repeat(width - n.min(width))
}

/// How the demo ended.
pub struct Outcome {
    /// The diagnosis named the injected fault's service and operation.
    pub matched: bool,
    /// The affected trace the demo drew.
    pub example_trace: Option<[u8; 16]>,
}

/// Runs the demo in `dir`.
pub fn run(dir: &Path, args: &DemoArgs) -> Result<Outcome, Box<dyn std::error::Error>> {
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
    let truth = workload
        .fault()
        .cloned()
        .ok_or("the workload has no fault")?;

    say!(
        "ScryDB demo: a shop of 12 services runs for {} s at {} requests/s; something goes wrong.",
        args.seconds,
        args.rate
    );
    say!("store: {}", dir.display());
    let db = Db::open(dir, Options::default())?;
    let t = Instant::now();
    let mut ingester = Ingester::new(&db, IngestOptions::default());
    for chunk in workload {
        ingester.ingest_request(&Request::Traces(chunk.traces))?;
        ingester.ingest_request(&Request::Logs(chunk.logs))?;
        ingester.ingest_request(&Request::Metrics(chunk.metrics))?;
    }
    let stored = ingester.finish().stored;
    db.flush()?;
    say!(
        "ingested {} spans, {} logs, {} metric points through OTLP in {:.2} s",
        stored.spans,
        stored.logs,
        stored.metrics,
        t.elapsed().as_secs_f64()
    );
    let session = db.session()?;
    let d = diagnose_blocking(session, None, &DiagnoseOptions::default())?;

    // 1. The symptom.
    ui.heading(
        1,
        "The symptom: error rate and p99 latency of incoming requests, per 10 s",
    );
    ui.queries(&d, Step::Symptom);
    let max_err = d.buckets.iter().map(|b| b.error_rate).fold(0.0, f64::max);
    let max_p99 = d.buckets.iter().map(|b| b.p99_ms).fold(0.0, f64::max);
    say!("  {:<8} {:<22} {:<22}", "time", "error rate", "p99 latency");
    for b in &d.buckets {
        let line = format!(
            "  {} {} {:>5.1}%  {} {:>6.0} ms",
            clock(b.start),
            bar(b.error_rate, max_err, 14),
            b.error_rate * 100.0,
            bar(b.p99_ms, max_p99, 14),
            b.p99_ms
        );
        if b.anomalous && ui.color {
            say!("\x1b[31m{line}  ◀\x1b[0m");
        } else {
            say!("{line}{}", if b.anomalous { "  ◀" } else { "" });
        }
    }
    let verdict = |found: &str| {
        say!(
            "\nverdict: {found} — injected fault: {} on {}/{}",
            truth.kind,
            truth.service,
            truth.operation
        );
    };
    let Some(a) = &d.anomaly else {
        say!("no anomaly found");
        db.close()?;
        verdict("none");
        return Ok(Outcome {
            matched: false,
            example_trace: d.example_trace,
        });
    };
    say!(
        "  anomaly: {} from {} to {} (baseline: {:.1}% errors, p99 {:.0} ms)",
        a.kind,
        clock(a.start),
        clock(a.end),
        a.baseline_error_rate * 100.0,
        a.baseline_p99_ms
    );

    // 2. Which services.
    ui.heading(
        2,
        "Which services: errors and latency per service in the window",
    );
    ui.queries(&d, Step::Services);
    for s in &d.services {
        say!(
            "  {:<16} {:>6} spans {:>5} errors  p99 {:>6.0} ms",
            s.service,
            s.spans,
            s.errors,
            s.p99_ms
        );
    }

    // 3. The root cause.
    ui.heading(3, "The root cause");
    if a.kind == AnomalyKind::Errors {
        say!("  the deepest erroring spans: errors whose children did not fail");
    } else {
        say!("  self time (a span's duration minus its children's), in the window vs outside it");
    }
    ui.queries(&d, Step::RootCause);
    match d.root_cause.as_ref().map(|r| &r.evidence) {
        Some(Evidence::DeepestErrors(groups)) => {
            for g in groups {
                say!(
                    "  {:>5} × {:<12} {:<24} {:<7} {}",
                    g.count,
                    g.service,
                    g.operation,
                    g.kind,
                    g.peer_service
                        .as_ref()
                        .map(|p| format!("→ {p}"))
                        .unwrap_or_default()
                );
            }
        }
        Some(Evidence::SelfTime(changes)) => {
            for c in changes {
                say!(
                    "  {:<12} {:<24} {:>8.1} ms during, {:>6.1} ms outside",
                    c.service,
                    c.operation,
                    c.during_ms.unwrap_or(f64::NAN),
                    c.outside_ms.unwrap_or(f64::NAN)
                );
            }
        }
        _ => {}
    }
    let Some(cause) = &d.root_cause else {
        say!("  no span in the window explains it");
        db.close()?;
        verdict("none");
        return Ok(Outcome {
            matched: false,
            example_trace: d.example_trace,
        });
    };
    say!("  → {}/{}", cause.service, cause.operation);
    if !d.differences.is_empty() {
        say!(
            "  what sets its {}spans in the window apart from its others (compare):",
            if a.kind == AnomalyKind::Errors {
                "failing "
            } else {
                ""
            }
        );
        for x in &d.differences {
            say!(
                "    {:<28} {:<24} {:>5.1}% of them, {:>5.1}% of the others",
                x.dimension,
                x.value,
                x.selection_share * 100.0,
                x.baseline_share * 100.0
            );
        }
    }

    // 4. One such trace.
    ui.heading(4, "One affected trace, as a waterfall");
    ui.queries(&d, Step::ExampleTrace);
    match d.example_trace {
        Some(id) => {
            say!("  scry --db {} trace {}", dir.display(), hex(&id));
            if !d.critical_path.is_empty() {
                say!("  its critical path (where the request's time went):");
                for p in &d.critical_path {
                    say!(
                        "    {:>5.1}%  {:>8.1} ms  {}/{}",
                        p.share * 100.0,
                        p.critical_ns as f64 / 1e6,
                        p.service,
                        p.operation
                    );
                }
            }
            crate::trace::print_trace(
                &db,
                id,
                ui.color,
                crate::trace::View {
                    critical_path: true,
                    all: false,
                },
            )?;
        }
        None => say!("  (no affected trace found)"),
    }

    // 5. The logs of the affected traces.
    ui.heading(5, "What the logs of those traces say");
    ui.queries(&d, Step::Logs);
    for l in &d.logs {
        say!(
            "  {} {:<12} {:<5} {}",
            chrono::DateTime::from_timestamp_nanos(l.time).format("%H:%M:%S%.3f"),
            l.service,
            l.severity,
            l.body
        );
    }
    if d.logs.is_empty() {
        say!("  (no warnings or errors logged)");
    }

    // 6. What is new in the logs.
    ui.heading(
        6,
        "What changed in the logs: templates new, surging or gone in the window, against the window before",
    );
    ui.queries(&d, Step::LogPatterns);
    for p in &d.log_patterns {
        say!(
            "  {:<8} {:>5} (before {:>4})  {:<12} {}",
            p.status,
            p.count,
            p.baseline_count,
            p.service,
            p.template
        );
    }
    if d.log_patterns.is_empty() {
        say!("  (no log template is new, surging or gone)");
    }

    // 7. The exemplar.
    ui.heading(
        7,
        "From the latency histogram to a trace: the slowest exemplar in the window",
    );
    ui.queries(&d, Step::Exemplar);
    if let Some(e) = &d.exemplar {
        say!(
            "  {} of {}: {:.0} ms, exemplar → span {} of trace {}",
            e.metric,
            e.service,
            e.value,
            e.span_name,
            hex(&e.trace_id)
        );
    }

    db.close()?;
    let ok = cause.service == truth.service && cause.operation == truth.operation;
    verdict(&format!("{}/{}", cause.service, cause.operation));
    Ok(Outcome {
        matched: ok,
        example_trace: d.example_trace,
    })
}
