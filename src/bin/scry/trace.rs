//! `scry trace <hex>`: one trace as a waterfall in the terminal.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};

use scrydb::arrow::array::{Array, AsArray, RecordBatch};
use scrydb::arrow::datatypes::{Int32Type, TimestampNanosecondType};
use scrydb::sql::ids::hex;
use scrydb::{Db, Trace};

const BAR: usize = 40;

struct Span {
    id: Vec<u8>,
    parent: Option<Vec<u8>>,
    service: String,
    name: String,
    start: i64,
    end: i64,
    error: bool,
    status: String,
}

struct Log {
    span: Option<Vec<u8>>,
    time: i64,
    severity: String,
    body: String,
}

fn dict_str(b: &RecordBatch, col: &str, row: usize) -> String {
    let c = b.column_by_name(col).expect("canonical column");
    if c.is_null(row) {
        return String::new();
    }
    match c.as_dictionary_opt::<Int32Type>() {
        Some(d) => {
            let k = d.keys().value(row) as usize;
            d.values().as_string::<i32>().value(k).to_string()
        }
        None => c.as_string::<i32>().value(row).to_string(),
    }
}

fn id(b: &RecordBatch, col: &str, row: usize) -> Option<Vec<u8>> {
    let c = b
        .column_by_name(col)
        .expect("canonical column")
        .as_fixed_size_binary();
    c.is_valid(row).then(|| c.value(row).to_vec())
}

fn ts(b: &RecordBatch, col: &str, row: usize) -> i64 {
    b.column_by_name(col)
        .expect("canonical column")
        .as_primitive::<TimestampNanosecondType>()
        .value(row)
}

fn spans(t: &Trace) -> Vec<Span> {
    let mut out = Vec::new();
    for b in &t.spans {
        for r in 0..b.num_rows() {
            let code = dict_str(b, "status_code", r);
            let msg = dict_str(b, "status_message", r);
            out.push(Span {
                id: id(b, "span_id", r).unwrap_or_default(),
                parent: id(b, "parent_span_id", r),
                service: dict_str(b, "service_name", r),
                name: dict_str(b, "name", r),
                start: ts(b, "time", r),
                end: ts(b, "end_time", r),
                error: code == "ERROR",
                status: if msg.is_empty() {
                    code
                } else {
                    format!("{code}: {msg}")
                },
            });
        }
    }
    out.sort_by_key(|s| (s.start, s.end));
    out
}

fn logs(t: &Trace) -> Vec<Log> {
    let mut out = Vec::new();
    for b in &t.logs {
        for r in 0..b.num_rows() {
            let sev = dict_str(b, "severity_text", r);
            let num = b.column_by_name("severity_number").expect("column");
            let severity = if !sev.is_empty() {
                sev
            } else if num.is_valid(r) {
                severity_name(num.as_primitive::<Int32Type>().value(r))
            } else {
                String::new()
            };
            out.push(Log {
                span: id(b, "span_id", r),
                time: ts(b, "time", r),
                severity,
                body: dict_str(b, "body", r),
            });
        }
    }
    out.sort_by_key(|l| l.time);
    out
}

fn severity_name(n: i32) -> String {
    match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
    .to_string()
}

fn ms(ns: i64) -> String {
    let ms = ns as f64 / 1e6;
    if ms.abs() >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{ms:.2}ms")
    }
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn service(&self, s: &str) -> String {
        const COLORS: [&str; 6] = ["36", "35", "34", "32", "33", "96"];
        let h = s
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        self.paint(COLORS[h % COLORS.len()], s)
    }
}

/// Prints the waterfall of trace `id` to stdout (colored when `color`).
pub fn print_trace(db: &Db, id: [u8; 16], color: bool) -> scrydb::Result<()> {
    let t0 = std::time::Instant::now();
    let trace = db.trace(id)?;
    let took = t0.elapsed();
    let style = Style { color };
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = print(
        &mut out,
        &id,
        &spans(&trace),
        &logs(&trace),
        &trace,
        &style,
        took,
    );
    Ok(())
}

/// Prints the waterfall of `trace_hex`; `Ok(false)` when the trace is not found.
pub fn run(db: &Db, trace_hex: &str) -> scrydb::Result<bool> {
    let id = scrydb::parse_trace_id(trace_hex)?;
    let t0 = std::time::Instant::now();
    let trace = db.trace(id)?;
    let took = t0.elapsed();
    if trace.is_empty() {
        eprintln!("trace {} not found", hex(&id));
        return Ok(false);
    }
    let style = Style {
        color: std::io::stdout().is_terminal(),
    };
    let spans = spans(&trace);
    let logs = logs(&trace);
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = print(&mut out, &id, &spans, &logs, &trace, &style, took);
    Ok(true)
}

fn print(
    out: &mut impl Write,
    id: &[u8; 16],
    spans: &[Span],
    logs: &[Log],
    trace: &Trace,
    style: &Style,
    took: std::time::Duration,
) -> std::io::Result<()> {
    let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = spans
        .iter()
        .map(|s| s.end)
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let total = end - start;
    let ids: HashSet<&[u8]> = spans.iter().map(|s| s.id.as_slice()).collect();
    let mut children: HashMap<&[u8], Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match &s.parent {
            Some(p) if ids.contains(p.as_slice()) && p != &s.id => {
                children.entry(p.as_slice()).or_default().push(i)
            }
            _ => roots.push(i),
        }
    }
    let mut logs_of: HashMap<&[u8], Vec<&Log>> = HashMap::new();
    let mut loose_logs = Vec::new();
    for l in logs {
        match &l.span {
            Some(s) if ids.contains(s.as_slice()) => {
                logs_of.entry(s.as_slice()).or_default().push(l)
            }
            _ => loose_logs.push(l),
        }
    }
    writeln!(
        out,
        "trace {}   {:>10} {:>10}  {:<w$}",
        hex(id),
        "offset",
        "duration",
        "timeline",
        w = BAR
    )?;
    // Depth-first, iteratively (traces can be deep), children in start order.
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    let mut seen = HashSet::new();
    while let Some((i, depth)) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        let s = &spans[i];
        let offset = s.start - start;
        let dur = s.end - s.start;
        let from = ((offset.max(0) as f64 / total as f64) * BAR as f64) as usize;
        let len = (((dur.max(0)) as f64 / total as f64) * BAR as f64)
            .ceil()
            .max(1.0) as usize;
        let from = from.min(BAR - 1);
        let len = len.min(BAR - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(len),
            " ".repeat(BAR - from - len)
        );
        let bar = if s.error {
            style.paint("31", &bar)
        } else {
            style.paint("32", &bar)
        };
        let orphan = match &s.parent {
            Some(p) if !ids.contains(p.as_slice()) => format!(" (parent {} missing)", hex(p)),
            _ => String::new(),
        };
        let status = if s.error {
            style.paint("1;31", &format!(" [{}]", s.status))
        } else {
            String::new()
        };
        writeln!(
            out,
            "{:>10} {:>10} |{bar}| {}{} {}{}{}",
            ms(offset),
            ms(dur),
            "  ".repeat(depth.min(30)),
            style.service(&s.service),
            s.name,
            status,
            orphan
        )?;
        for l in logs_of.get(s.id.as_slice()).into_iter().flatten() {
            let line = format!(
                "{:>10} {:>10}  {:BAR$}  {}  · {} {}",
                ms(l.time - start),
                "",
                "",
                "  ".repeat(depth.min(30)),
                l.severity,
                l.body
            );
            let sev = l.severity.to_ascii_uppercase();
            if sev.starts_with("ERROR") || sev.starts_with("FATAL") {
                writeln!(out, "{}", style.paint("31", &line))?;
            } else {
                writeln!(out, "{}", style.paint("2", &line))?;
            }
        }
        if let Some(kids) = children.get(s.id.as_slice()) {
            for &k in kids.iter().rev() {
                stack.push((k, depth + 1));
            }
        }
    }
    for l in &loose_logs {
        writeln!(
            out,
            "{:>10} {:>10}  {:BAR$}  · {} {} (log of no span in the trace)",
            ms(l.time - start),
            "",
            "",
            l.severity,
            l.body
        )?;
    }
    let mut services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let errors = spans.iter().filter(|s| s.error).count();
    let orphans = spans
        .iter()
        .filter(|s| {
            s.parent
                .as_ref()
                .is_some_and(|p| !ids.contains(p.as_slice()))
        })
        .count();
    writeln!(
        out,
        "{} spans, {} services ({}), total {}, {} error{}{}; {} logs, {} exemplar points; found in {:.2} ms",
        spans.len(),
        services.len(),
        services.join(", "),
        ms(total),
        errors,
        if errors == 1 { "" } else { "s" },
        if orphans > 0 {
            format!(", {orphans} with a missing parent")
        } else {
            String::new()
        },
        logs.len(),
        trace.rows(scrydb::Signal::Metrics),
        took.as_secs_f64() * 1e3
    )?;
    Ok(())
}
