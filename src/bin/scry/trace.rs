//! `scry trace <hex>`: one trace as a waterfall in the terminal.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use scrydb::sql::ids::hex;
use scrydb::{Db, FOLD_RUN, Folds, SpanTree, Trace, TraceLog};

const BAR: usize = 40;

/// How a waterfall is drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    /// Mark the critical path: its stretches solid, the rest of each bar light, and each
    /// span's time on it.
    pub critical_path: bool,
    /// Draw every span (no folding of repeated siblings).
    pub all: bool,
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
pub fn print_trace(db: &Db, id: [u8; 16], color: bool, view: View) -> scrydb::Result<()> {
    draw(db, id, &Style { color }, view).map(|_| ())
}

/// Prints the waterfall of `trace_hex`; `Ok(false)` when the trace is not found.
pub fn run(db: &Db, trace_hex: &str, view: View) -> scrydb::Result<bool> {
    let id = scrydb::parse_trace_id(trace_hex)?;
    let style = Style {
        color: std::io::stdout().is_terminal(),
    };
    let found = draw(db, id, &style, view)?;
    if !found {
        eprintln!("trace {} not found", hex(&id));
    }
    Ok(found)
}

/// Looks trace `id` up and prints its waterfall; `Ok(false)` (nothing printed) when it is
/// not found.
fn draw(db: &Db, id: [u8; 16], style: &Style, view: View) -> scrydb::Result<bool> {
    let t0 = std::time::Instant::now();
    let trace = db.trace(id)?;
    let took = t0.elapsed();
    if trace.is_empty() {
        return Ok(false);
    }
    let tree = trace.tree()?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = print(&mut out, &id, &tree, &trace, style, view, took);
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
    trace: &Trace,
    style: &Style,
    view: View,
    took: std::time::Duration,
) -> std::io::Result<()> {
    let logs = &trace.log_lines().unwrap_or_default();
    let path = view.critical_path.then(|| tree.critical_path());
    let mut stretches: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
    for seg in path.iter().flat_map(|p| &p.segments) {
        stretches
            .entry(seg.node)
            .or_default()
            .push((seg.start, seg.end));
    }
    let start = tree.start;
    let total = tree.duration_ns().max(1);
    let by_id = tree.index_by_id();
    let mut logs_of: HashMap<usize, Vec<&TraceLog>> = HashMap::new();
    let mut loose_logs = Vec::new();
    for l in logs {
        match l.span_id.as_ref().and_then(|s| by_id.get(s)) {
            Some(&i) => logs_of.entry(i).or_default().push(l),
            None => loose_logs.push(l),
        }
    }
    let folds = if view.all {
        Folds::none(tree)
    } else {
        tree.folds(FOLD_RUN, &|i| {
            logs_of
                .get(&i)
                .is_some_and(|ls| ls.iter().any(|l| l.is_error()))
        })
    };
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
        if folds.hidden[i] {
            continue;
        }
        let from = (cells(s.offset_ns, total) as usize).min(BAR - 1);
        let len = (cells(s.duration_ns, total).ceil().max(1.0) as usize).min(BAR - from);
        let on_path = path.as_ref().is_some_and(|p| p.contains(i));
        // With the critical path shown, a span's cells on it are solid, the others light.
        let cell = |c: usize| -> char {
            if path.is_none() {
                return '█';
            }
            // Cell `c` covers offsets [c·total/BAR, (c+1)·total/BAR), compared exactly.
            let (bar, total) = (BAR as i128, i128::from(total));
            let solid = stretches.get(&i).into_iter().flatten().any(|&(a, b)| {
                let (a, b) = (
                    i128::from(a) - i128::from(start),
                    i128::from(b) - i128::from(start),
                );
                a * bar < (c as i128 + 1) * total && b * bar > c as i128 * total
            });
            if solid { '█' } else { '░' }
        };
        let bar: String = (0..BAR)
            .map(|c| {
                if c < from || c >= from + len {
                    ' '
                } else {
                    cell(c)
                }
            })
            .collect();
        let bar = if s.is_error() {
            style.paint("31", &bar)
        } else if on_path {
            style.paint("33", &bar)
        } else {
            style.paint("32", &bar)
        };
        let mut notes = String::new();
        if let Some(p) = path.as_ref().filter(|_| on_path) {
            notes.push_str(&style.paint(
                "1;33",
                &format!(" ◆ {} on the critical path", ms(p.contribution[i])),
            ));
        }
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
            if l.is_error() {
                writeln!(out, "{}", style.paint("31", &line))?;
            } else {
                writeln!(out, "{}", style.paint("2", &line))?;
            }
        }
        if let Some(hidden) = folds.after.get(&i) {
            let sum = hidden
                .iter()
                .fold(0i64, |a, &h| a.saturating_add(tree.nodes[h].duration_ns));
            let longest = hidden
                .iter()
                .map(|&h| tree.nodes[h].duration_ns)
                .max()
                .unwrap_or(0);
            let n_logs: usize = hidden
                .iter()
                .map(|h| logs_of.get(h).map_or(0, Vec::len))
                .sum();
            let on_path = path.as_ref().map(|p| {
                hidden
                    .iter()
                    .fold(0i64, |a, &h| a.saturating_add(p.contribution[h]))
            });
            writeln!(
                out,
                "{:>10} {:>10}  {:BAR$}  {indent}{}",
                "",
                "",
                "",
                style.paint(
                    "2",
                    &format!(
                        "⋯ {} more {} {} spans: {} in all, longest {}{}{} (--all shows them)",
                        hidden.len(),
                        s.service,
                        s.name,
                        ms(sum),
                        ms(longest),
                        match on_path {
                            Some(ns) if ns > 0 => format!(", {} on the critical path", ms(ns)),
                            _ => String::new(),
                        },
                        if n_logs > 0 {
                            format!(", {n_logs} logs")
                        } else {
                            String::new()
                        }
                    )
                )
            )?;
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
    if let Some(p) = &path {
        let shares: Vec<String> = p
            .by_service(tree)
            .iter()
            .map(|(svc, ns)| format!("{} {:.0}%", style.service(svc), p.share(*ns) * 100.0))
            .collect();
        writeln!(
            out,
            "critical path: {} spans, {}; by service: {}",
            p.spans.len(),
            ms(p.total_ns()),
            shares.join(", ")
        )?;
    }
    Ok(())
}
