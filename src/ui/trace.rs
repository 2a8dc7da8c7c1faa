//! `/trace/<id>`: the waterfall, with the critical path, span detail, the trace's logs in
//! place and its exemplars.

use std::collections::HashMap;

use maud::{Markup, PreEscaped, html};
use scrydb_engine::arrow::array::{Array, AsArray, RecordBatch, StructArray};
use scrydb_engine::critical_path::CriticalPath;
use scrydb_engine::{FOLD_RUN, Folds, SpanNode, SpanTree, Trace, TraceLog};

use super::cells;
use super::page::{self, colour, dur, time};
use super::params::Params;
use super::{MAX_WATERFALL_ROWS, UiError, UiState};
use crate::sql::ids::hex;

/// Rows of a waterfall above which a minimap is drawn.
const MINIMAP_ROWS: usize = 40;
/// Logs drawn under one span, and in the list of logs of no span.
const MAX_LOGS_SHOWN: usize = 50;

pub(super) fn page(state: &UiState, p: &Params) -> Result<Markup, UiError> {
    let id_hex = p.get("id").unwrap_or("");
    let id =
        scrydb_engine::parse_trace_id(id_hex).map_err(|e| UiError::BadRequest(e.to_string()))?;
    let trace = state.db.trace(id)?;
    if trace.is_empty() {
        return Err(UiError::NotFound(format!(
            "trace {} is not in the store (it may have aged out, or not arrived yet)",
            hex(&id)
        )));
    }
    let tree = trace.tree()?;
    let logs = trace.log_lines()?;
    let path = tree.critical_path();
    let by_id = tree.index_by_id();
    let mut logs_of: HashMap<usize, Vec<&TraceLog>> = HashMap::new();
    let mut loose = Vec::new();
    for l in &logs {
        match l.span_id.as_ref().and_then(|s| by_id.get(s)) {
            Some(&i) => logs_of.entry(i).or_default().push(l),
            None => loose.push(l),
        }
    }
    let selected = match p.get("span") {
        Some(s) => {
            let bytes = parse_span_id(s)?;
            Some(tree.find(&bytes).ok_or_else(|| {
                UiError::NotFound(format!("span {s} is not in trace {}", hex(&id)))
            })?)
        }
        None => None,
    }
    .unwrap_or_else(|| default_selection(&tree));
    let folds = if p.flag("all") {
        Folds::none(&tree)
    } else {
        tree.folds(FOLD_RUN, &|i| {
            i == selected
                || logs_of
                    .get(&i)
                    .is_some_and(|ls| ls.iter().any(|l| l.is_error()))
        })
    };
    let cp = p.flag("cp");
    let root = path.root.map(|r| &tree.nodes[r]).or(tree.nodes.first());
    let errors = tree.nodes.iter().filter(|n| n.is_error()).count();
    let services = tree.services();
    let view = View {
        here: format!("/trace/{}", hex(&id)),
        tree: &tree,
        path: &path,
        p,
        logs_of: &logs_of,
        selected,
    };
    Ok(html! {
        div.trace-head {
            h1 {
                @if let Some(r) = root { (page::service(&r.service)) " " (r.name) }
            }
            p.facts {
                "trace " code #trace-id { (hex(&id)) }
                " · " (time(tree.start)) " UTC · " strong { (dur(tree.duration_ns())) }
                " · " (tree.nodes.len()) " spans · " (services.len()) " services · "
                span.errors[errors > 0] { (errors) " error" @if errors != 1 { "s" } }
                " · " (logs.len()) " logs · " (trace.rows(scrydb_engine::Signal::Metrics)) " exemplar points"
            }
            p.legend {
                @for s in &services { (page::service(s)) " " }
            }
            p.controls {
                a #cp-toggle.button.on[cp] href=(view.link("cp", if cp { None } else { Some("1") }))
                    role="switch" aria-checked=(cp) {
                    "Critical path: " span.state { @if cp { "on" } @else { "off" } }
                }
                " "
                @if p.flag("all") {
                    a.button href=(view.link("all", None)) { "Fold repeated spans" }
                } @else if !folds.after.is_empty() {
                    a.button href=(view.link("all", Some("1"))) { "Show all " (tree.nodes.len()) " spans" }
                }
            }
        }
        div #waterfall.waterfall.cp-on[cp] data-rows=(folds.shown()) {
            (critical_summary(&tree, &path))
            @if folds.shown() > MINIMAP_ROWS { (minimap(&tree, &folds, &path)) }
            div.wf-head { span.wf-name { "Span" } span.wf-track.ticks { (ticks(tree.duration_ns())) } span.wf-dur { "Duration" } }
            (rows(&view, &folds))
        }
        @if !loose.is_empty() {
            h2 { "Logs of no span in this trace" }
            (log_lines(&loose, tree.start))
        }
        (detail(&view, &trace, selected, &logs_of))
        (exemplars(&trace))
    })
}

struct View<'a> {
    /// `/trace/<id>`: links carry their path, so that one with no parameters left is not
    /// empty (an empty link reloads the page as it is).
    here: String,
    tree: &'a SpanTree,
    path: &'a CriticalPath,
    p: &'a Params,
    logs_of: &'a HashMap<usize, Vec<&'a TraceLog>>,
    selected: usize,
}

impl View<'_> {
    /// This trace's page with `name` set to `value` (or removed).
    fn link(&self, name: &str, value: Option<&str>) -> String {
        format!("{}{}", self.here, self.p.with(name, value))
    }
}

/// A span id in hex (16 digits).
fn parse_span_id(s: &str) -> Result<[u8; 8], UiError> {
    let bad = || UiError::BadRequest(format!("span: {s:?} is not a span id (16 hex digits)"));
    if s.len() != 16 {
        return Err(bad());
    }
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The span shown in detail when none is asked for: the deepest error with no error below
/// it (where an error started), else the first root.
fn default_selection(tree: &SpanTree) -> usize {
    let mut best: Option<usize> = None;
    for (i, n) in tree.nodes.iter().enumerate() {
        if n.is_error()
            && !n.children.iter().any(|&c| tree.nodes[c].is_error())
            && best.is_none_or(|b| tree.nodes[b].depth < n.depth)
        {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

/// `[from, to)` as left/width percentages of the trace.
fn place(tree: &SpanTree, from: i64, to: i64) -> (f64, f64) {
    let total = tree.duration_ns().max(1) as f64;
    let left = ((from.saturating_sub(tree.start)) as f64 / total * 100.0).clamp(0.0, 100.0);
    let width = ((to.saturating_sub(from)).max(0) as f64 / total * 100.0).clamp(0.0, 100.0 - left);
    (left, width)
}

fn ticks(total: i64) -> Markup {
    html! {
        @for k in 0..=4 {
            span.tick style=(format!("left:{}%", k * 25)) { (dur(total / 4 * k)) }
        }
    }
}

fn rows(v: &View, folds: &Folds) -> Markup {
    let mut stretches: HashMap<usize, Vec<(i64, i64)>> = HashMap::new();
    for s in &v.path.segments {
        stretches.entry(s.node).or_default().push((s.start, s.end));
    }
    let mut drawn = 0usize;
    let shown = folds.shown();
    html! {
        @for (i, n) in v.tree.nodes.iter().enumerate() {
            @if !folds.hidden[i] && drawn < MAX_WATERFALL_ROWS {
                ({ drawn += 1; row(v, i, n, stretches.get(&i).map(Vec::as_slice).unwrap_or(&[])) })
                @if let Some(hidden) = folds.after.get(&i) { (fold_line(v, n, hidden)) }
            }
        }
        @if shown > MAX_WATERFALL_ROWS {
            div.wf-fold { "⋯ " (shown - MAX_WATERFALL_ROWS) " more rows not drawn (a page draws at most "
                (MAX_WATERFALL_ROWS) "); query them with SQL: "
                code { "SELECT * FROM trace_spans('" (v.p.get("id").unwrap_or("")) "')" } }
        }
    }
}

fn row(v: &View, i: usize, n: &SpanNode, stretches: &[(i64, i64)]) -> Markup {
    let (left, width) = place(v.tree, n.start, n.end.max(n.start));
    let on_path = v.path.contains(i);
    let span_hex = hex(&n.span_id);
    let link = format!("{}#detail", v.link("span", Some(&span_hex)));
    let all_logs = v.logs_of.get(&i).map(Vec::as_slice).unwrap_or(&[]);
    let logs = &all_logs[..all_logs.len().min(MAX_LOGS_SHOWN)];
    html! {
        div.wf-row.err[n.is_error()].cp[on_path].sel[i == v.selected] id=(format!("s-{span_hex}"))
            data-span=(span_hex) data-cp=(if on_path { "1" } else { "0" }) {
            a.wf-name href=(link) style=(format!("padding-left:{}px", 6 + 14 * n.depth.min(40))) {
                span.swatch style=(format!("background:{}", colour(&n.service))) {}
                span.svcname { (n.service) } " " span.opname { (n.name) }
                @if n.is_error() { " " span.status.error { "!" } }
                @if n.orphan { " " span.tag title="its parent span is not in the trace" { "orphan" } }
                @if n.cycle_broken { " " span.tag title="its parent links loop; cut here" { "loop cut" } }
            }
            div.wf-track {
                div.wf-bar style=(format!("left:{left:.3}%;width:max({width:.3}%,2px);background:{}", colour(&n.service))) {}
                @for (a, b) in stretches {
                    @let (l, w) = place(v.tree, *a, *b);
                    div.wf-cpseg style=(format!("left:{l:.3}%;width:max({w:.3}%,1px)")) {}
                }
            }
            span.wf-dur { (dur(n.duration_ns))
                @if on_path { span.wf-cpdur title="time on the critical path" { " ◆ " (dur(v.path.contribution[i])) } }
            }
        }
        @if all_logs.len() > logs.len() {
            div.wf-log style=(format!("padding-left:{}px", 26 + 14 * n.depth.min(40))) {
                "⋯ " (all_logs.len() - logs.len()) " more logs of this span (SQL: logs WHERE span_id = '" (span_hex) "')"
            }
        }
        @for l in logs {
            div.wf-log.err[l.is_error()] style=(format!("padding-left:{}px", 26 + 14 * n.depth.min(40))) {
                span.off { "+" (dur(l.time.saturating_sub(v.tree.start))) } " "
                span.sev { (l.severity) } " " (l.body)
            }
        }
    }
}

fn fold_line(v: &View, n: &SpanNode, hidden: &[usize]) -> Markup {
    let sum = hidden
        .iter()
        .fold(0i64, |a, &h| a.saturating_add(v.tree.nodes[h].duration_ns));
    let longest = hidden
        .iter()
        .map(|&h| v.tree.nodes[h].duration_ns)
        .max()
        .unwrap_or(0);
    let on_path = hidden
        .iter()
        .fold(0i64, |a, &h| a.saturating_add(v.path.contribution[h]));
    let logs: usize = hidden
        .iter()
        .map(|h| v.logs_of.get(h).map_or(0, Vec::len))
        .sum();
    html! {
        div.wf-fold style=(format!("padding-left:{}px", 26 + 14 * n.depth.min(40))) {
            "⋯ " (hidden.len()) " more " (n.service) " " (n.name) " spans: " (dur(sum)) " in all, longest " (dur(longest))
            @if on_path > 0 { ", " (dur(on_path)) " on the critical path" }
            @if logs > 0 { ", " (logs) " logs" }
            " · " a href=(v.link("all", Some("1"))) { "show all" }
        }
    }
}

/// One line per row on a small canvas, for traces taller than a screen; a click scrolls
/// the waterfall there (with the script).
fn minimap(tree: &SpanTree, folds: &Folds, path: &CriticalPath) -> Markup {
    const W: f64 = 960.0;
    let shown: Vec<usize> = (0..tree.nodes.len())
        .filter(|&i| !folds.hidden[i])
        .take(MAX_WATERFALL_ROWS)
        .collect();
    let h = 60.0_f64.max((shown.len() as f64).min(120.0));
    let step = h / shown.len().max(1) as f64;
    let mut svg = String::new();
    for (k, &i) in shown.iter().enumerate() {
        let n = &tree.nodes[i];
        let (l, w) = place(tree, n.start, n.end.max(n.start));
        let fill = if n.is_error() {
            "#d62728"
        } else {
            colour(&n.service)
        };
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.2}\" width=\"{:.1}\" height=\"{:.2}\" fill=\"{fill}\"{}/>",
            l / 100.0 * W,
            k as f64 * step,
            (w / 100.0 * W).max(1.0),
            step.max(0.6),
            if path.contains(i) {
                " class=\"cp\""
            } else {
                ""
            }
        ));
    }
    html! {
        div.minimap title="the whole trace: click to scroll there" {
            (page::svg_open(W as u32, h as u32, "minimap-svg", "minimap of the whole trace"))
            (PreEscaped(svg))
            (PreEscaped("</svg>"))
        }
    }
}

fn critical_summary(tree: &SpanTree, path: &CriticalPath) -> Markup {
    let shares = path.by_service(tree);
    html! {
        div #cp-summary.cp-summary {
            strong { "Critical path: " } (path.spans.len()) " spans, " (dur(path.total_ns())) " · "
            @for (svc, ns) in &shares {
                (page::service(svc)) " " (format!("{:.0}%", path.share(*ns) * 100.0)) " "
            }
        }
    }
}

fn log_lines(all: &[&TraceLog], start: i64) -> Markup {
    let logs = &all[..all.len().min(MAX_LOGS_SHOWN * 4)];
    html! {
        @if all.len() > logs.len() { p.note { "The first " (logs.len()) " of " (all.len()) " logs." } }
        table.results.logs {
            thead { tr { th { "Offset" } th { "Severity" } th { "Service" } th { "Body" } } }
            tbody {
                @for l in logs {
                    tr.err[l.is_error()] {
                        td.num { "+" (dur(l.time.saturating_sub(start))) }
                        td { (l.severity) }
                        td { (page::service(&l.service)) }
                        td.body { (l.body) }
                    }
                }
            }
        }
    }
}

fn kv_table(pairs: &[(String, Option<String>)]) -> Markup {
    html! {
        @if pairs.is_empty() { p.empty { "none" } } @else {
            table.kv { @for (k, v) in pairs { tr { th { (k) } td { (v.as_deref().unwrap_or("null")) } } } }
        }
    }
}

/// The list at `row` of the list column `name` of `b`, as its struct array.
fn struct_list(b: &RecordBatch, name: &str, row: usize) -> Option<StructArray> {
    let c = b.column_by_name(name)?.as_list_opt::<i32>()?;
    if c.is_null(row) {
        return None;
    }
    c.value(row).as_struct_opt().cloned()
}

fn detail(v: &View, trace: &Trace, i: usize, logs_of: &HashMap<usize, Vec<&TraceLog>>) -> Markup {
    let n = &v.tree.nodes[i];
    let b = &trace.spans[n.batch];
    let r = n.row;
    let events = struct_list(b, "events", r);
    let links = struct_list(b, "links", r);
    let logs: Vec<&TraceLog> = logs_of.get(&i).cloned().unwrap_or_default();
    html! {
        section #detail.detail {
            h2 { "Span " (page::service(&n.service)) " " (n.name) }
            table.kv {
                tr { th { "span id" } td { code #detail-span-id { (hex(&n.span_id)) } } }
                tr { th { "parent" } td {
                    @match (n.parent, n.parent_span_id) {
                        (Some(pi), _) => a href=(v.link("span", Some(&hex(&v.tree.nodes[pi].span_id)))) { code { (hex(&v.tree.nodes[pi].span_id)) } },
                        (None, Some(ps)) => { code { (hex(&ps)) } " (not in the trace)" },
                        (None, None) => "none: a root span",
                    }
                } }
                tr { th { "kind" } td { (n.kind) } }
                tr { th { "status" } td.err[n.is_error()] { (n.status_code) @if let Some(m) = &n.status_message { ": " (m) } } }
                tr { th { "start" } td { (time(n.start)) " UTC (+" (dur(n.offset_ns)) ")" } }
                tr { th { "duration" } td { (dur(n.duration_ns)) " (self " (dur(n.self_ns)) ")"
                    @if v.path.contains(i) { " · " (dur(v.path.contribution[i])) " on the critical path" } } }
                tr { th { "scope" } td { (cells::text(b, "scope_name", r)) " " (cells::text(b, "scope_version", r)) } }
            }
            h3 { "Attributes" }
            (kv_table(&cells::attrs(b, "attributes", r)))
            h3 { "Events" }
            @match &events {
                Some(e) if e.len() > 0 => {
                    table.results {
                        thead { tr { th { "Offset" } th { "Name" } th { "Attributes" } } }
                        tbody {
                            @for k in 0..e.len() {
                                tr {
                                    td.num { @if let Some(t) = e.column_by_name("time").and_then(|c| cells::int_of(c.as_ref(), k)) { "+" (dur(t.saturating_sub(v.tree.start))) } }
                                    td { (e.column_by_name("name").and_then(|c| cells::text_of(c.as_ref(), k)).unwrap_or_default()) }
                                    td { (kv_table(&e.column_by_name("attributes").map(|c| cells::attrs_of(c.as_ref(), k)).unwrap_or_default())) }
                                }
                            }
                        }
                    }
                }
                _ => p.empty { "none" },
            }
            h3 { "Links" }
            @match &links {
                Some(l) if l.len() > 0 => {
                    ul {
                        @for k in 0..l.len() {
                            @let t = l.column_by_name("trace_id").and_then(|c| cells::text_of(c.as_ref(), k)).unwrap_or_default();
                            @let s = l.column_by_name("span_id").and_then(|c| cells::text_of(c.as_ref(), k)).unwrap_or_default();
                            li { a href=(format!("/trace/{t}?span={s}")) { code { (t) } " / " code { (s) } } }
                        }
                    }
                }
                _ => p.empty { "none" },
            }
            h3 { "Logs of this span" }
            @if logs.is_empty() { p.empty { "none" } } @else { (log_lines(&logs, v.tree.start)) }
            h3 { "Resource" }
            (kv_table(&cells::attrs(b, "resource_attributes", r)))
        }
    }
}

/// Metric points whose exemplars name this trace, each opening its metric's chart.
fn exemplars(trace: &Trace) -> Markup {
    let mut points = Vec::new();
    for b in &trace.metrics {
        for r in 0..b.num_rows() {
            points.push((
                cells::text(b, "service_name", r),
                cells::text(b, "name", r),
                cells::int(b, "time", r).unwrap_or(0),
            ));
        }
    }
    points.sort();
    points.dedup();
    html! {
        @if !points.is_empty() {
            section.exemplars {
                h2 { "Exemplars: metrics recorded in this trace" }
                ul {
                    @for (svc, name, t) in points.iter().take(200) {
                        li {
                            a href=(format!("/metrics{}", super::params::query_string(&[
                                ("name", name), ("service", svc),
                                ("end", &page::rfc3339(t.saturating_add(300_000_000_000))), ("range", "15m")]))) {
                                (page::service(svc)) " " (name)
                            }
                            " at " (time(*t)) " UTC"
                        }
                    }
                }
            }
        }
    }
}
