//! `scry trace <hex>`: one trace as a waterfall in the terminal.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use scrydb::arrow::array::{Array, AsArray, RecordBatch};
use scrydb::arrow::datatypes::{Int32Type, TimestampNanosecondType};
use scrydb::sql::ids::hex;
use scrydb::{Db, SpanTree, Trace};

const BAR: usize = 40;

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
    let tree = trace.tree()?;
    let style = Style { color };
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = print(&mut out, &id, &tree, &logs(&trace), &trace, &style, took);
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
    let tree = trace.tree()?;
    let style = Style {
        color: std::io::stdout().is_terminal(),
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = print(&mut out, &id, &tree, &logs(&trace), &trace, &style, took);
    Ok(true)
}

/// `part` of `total` as a position on a bar of `BAR` cells.
fn cells(part: i64, total: i64) -> f64 {
    (part.max(0) as f64 / total.max(1) as f64) * BAR as f64
}

fn print(
    out: &mut impl Write,
    id: &[u8; 16],
    tree: &SpanTree,
    logs: &[Log],
    trace: &Trace,
    style: &Style,
    took: std::time::Duration,
) -> std::io::Result<()> {
    let start = tree.start;
    let total = tree.duration_ns().max(1);
    let by_id = tree.index_by_id();
    let mut logs_of: HashMap<usize, Vec<&Log>> = HashMap::new();
    let mut loose_logs = Vec::new();
    for l in logs {
        match l.span.as_deref().and_then(|s| by_id.get(s)) {
            Some(&i) => logs_of.entry(i).or_default().push(l),
            None => loose_logs.push(l),
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
    for (i, s) in tree.nodes.iter().enumerate() {
        let from = (cells(s.offset_ns, total) as usize).min(BAR - 1);
        let len = (cells(s.duration_ns, total).ceil().max(1.0) as usize).min(BAR - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(len),
            " ".repeat(BAR - from - len)
        );
        let bar = if s.is_error() {
            style.paint("31", &bar)
        } else {
            style.paint("32", &bar)
        };
        let mut notes = String::new();
        if let (true, Some(p)) = (s.orphan, s.parent_span_id) {
            notes.push_str(&format!(" (parent {} missing)", hex(&p)));
        }
        if s.cycle_broken {
            notes.push_str(" (parent chain loops; cut here)");
        }
        if s.ends_before_start {
            notes.push_str(" (ends before it starts)");
        }
        let status = if s.is_error() {
            let text = match &s.status_message {
                Some(m) => format!("{}: {m}", s.status_code),
                None => s.status_code.clone(),
            };
            style.paint("1;31", &format!(" [{text}]"))
        } else {
            String::new()
        };
        let indent = "  ".repeat(s.depth.min(30));
        writeln!(
            out,
            "{:>10} {:>10} |{bar}| {indent}{} {}{status}{notes}",
            ms(s.offset_ns),
            ms(s.duration_ns),
            style.service(&s.service),
            s.name,
        )?;
        for l in logs_of.get(&i).into_iter().flatten() {
            let line = format!(
                "{:>10} {:>10}  {:BAR$}  {indent}  · {} {}",
                ms(l.time.saturating_sub(start)),
                "",
                "",
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
    }
    for l in &loose_logs {
        writeln!(
            out,
            "{:>10} {:>10}  {:BAR$}  · {} {} (log of no span in the trace)",
            ms(l.time.saturating_sub(start)),
            "",
            "",
            l.severity,
            l.body
        )?;
    }
    let services = tree.services();
    let errors = tree.nodes.iter().filter(|s| s.is_error()).count();
    let orphans = tree.nodes.iter().filter(|s| s.orphan).count();
    let cycles = tree.nodes.iter().filter(|s| s.cycle_broken).count();
    writeln!(
        out,
        "{} spans, {} services ({}), total {}, {} error{}{}{}; {} logs, {} exemplar points; found in {:.2} ms",
        tree.nodes.len(),
        services.len(),
        services.join(", "),
        ms(tree.duration_ns()),
        errors,
        if errors == 1 { "" } else { "s" },
        if orphans > 0 {
            format!(", {orphans} with a missing parent")
        } else {
            String::new()
        },
        if cycles > 0 {
            format!(", {cycles} parent loop(s) cut")
        } else {
            String::new()
        },
        logs.len(),
        trace.rows(scrydb::Signal::Metrics),
        took.as_secs_f64() * 1e3
    )?;
    Ok(())
}
