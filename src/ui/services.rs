//! `/services`: the service map of the window (`service_graph`) and a RED table per
//! service and operation (from the span rollups, `span_metrics`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use maud::{Markup, PreEscaped, html};
use scrydb_engine::Signal;

use super::cells;
use super::page::{self, colour, dur};
use super::params::{Params, Window, query_string};
use super::{UiError, UiState};

/// Operations listed in the RED table.
const MAX_OPERATIONS: usize = 300;
/// Edges drawn.
const MAX_EDGES: usize = 200;
/// How much of the window the map reads by default (the `map` parameter): its end.
const MAP_DEFAULT_NS: i64 = 60_000_000_000;
/// The longest map (`map`): a day.
const MAP_MAX_NS: i64 = 86_400_000_000_000;
/// How long before the map's window a parent span may have started.
const PARENT_BEFORE_NS: i64 = 600_000_000_000;
/// How long after the map's window a parent span may have started (clock skew).
const SKEW_NS: i64 = 60_000_000_000;

/// One row of the RED table.
struct Op {
    service: String,
    name: String,
    kind: String,
    calls: i64,
    errors: i64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

struct Edge {
    caller: String,
    callee: String,
    calls: i64,
    errors: i64,
    p99_ms: f64,
}

pub(super) fn page(state: &UiState, p: &Params) -> Result<Markup, UiError> {
    let db = &state.db;
    let newest = db.snapshot().newest_time(Signal::Spans)?;
    let w = Window::of(p, newest)?;
    // The map reads the calls of the last `map` (default 1 minute) of the window: a join
    // of every span of an hour of a busy store with its parent takes seconds, and the map
    // of the last minutes is what a person looks at. A call's parent must have started
    // at most `PARENT_BEFORE` before the map's window (or up to `SKEW` after it); the SQL
    // function `service_graph` has no such bound and reads every span.
    let map_len = match p.get("map") {
        Some(m) => crate::sql::search::parse_duration_ns(m)
            .map_err(|e| UiError::BadRequest(format!("map: {e}")))?
            .clamp(1, MAP_MAX_NS),
        None => MAP_DEFAULT_NS,
    };
    let map_end = w.end.unwrap_or(w.anchor);
    let map_start = match w.start {
        Some(s) => s.max(map_end.saturating_sub(map_len)),
        None => map_end.saturating_sub(map_len),
    };
    let graph_sql = format!(
        "SELECT CAST(p.service_name AS VARCHAR) AS caller, CAST(c.service_name AS VARCHAR) AS callee, \
         count(*) AS calls, sum(CASE WHEN c.status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
         approx_percentile_cont(c.duration_ns, 0.99) / 1e6 AS p99_ms \
         FROM (SELECT trace_id, parent_span_id, service_name, status_code, duration_ns FROM spans \
               WHERE time >= to_timestamp_nanos({map_start}) AND time < to_timestamp_nanos({map_end}) \
               AND parent_span_id IS NOT NULL) c \
         JOIN (SELECT trace_id, span_id, service_name FROM spans \
               WHERE time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({})) p \
         ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
         WHERE p.service_name <> c.service_name GROUP BY 1, 2 ORDER BY calls DESC LIMIT {MAX_EDGES}",
        map_start.saturating_sub(PARENT_BEFORE_NS),
        map_end.saturating_add(SKEW_NS),
    );
    let mut edges = Vec::new();
    for b in &super::query(state, &graph_sql)? {
        for r in 0..b.num_rows() {
            edges.push(Edge {
                caller: cells::text(b, "caller", r),
                callee: cells::text(b, "callee", r),
                calls: cells::int(b, "calls", r).unwrap_or(0),
                errors: cells::int(b, "errors", r).unwrap_or(0),
                p99_ms: cells::float(b, "p99_ms", r).unwrap_or(0.0),
            });
        }
    }
    let red_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service, name, CAST(kind AS VARCHAR) AS kind, \
         sum(count) AS calls, sum(errors) AS errors, \
         exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.5) / 1e6 AS p50_ms, \
         exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, 0.99) / 1e6 AS p99_ms, \
         min(time) AS first, max(time) AS last \
         FROM span_metrics WHERE {} GROUP BY 1, 2, 3 ORDER BY calls DESC, service, name LIMIT {MAX_OPERATIONS}",
        w.sql()
    );
    // Every service of the window is a node, whatever the table's limit keeps.
    let services_sql = format!(
        "SELECT DISTINCT CAST(service_name AS VARCHAR) AS service FROM span_metrics WHERE {} \
         ORDER BY 1 LIMIT {MAX_EDGES}",
        w.sql()
    );
    let mut services = Vec::new();
    for b in &super::query(state, &services_sql)? {
        for r in 0..b.num_rows() {
            services.push(cells::text(b, "service", r));
        }
    }
    let mut red = Vec::new();
    for b in &super::query(state, &red_sql)? {
        for r in 0..b.num_rows() {
            red.push(Op {
                service: cells::text(b, "service", r),
                name: cells::text(b, "name", r),
                kind: cells::text(b, "kind", r),
                calls: cells::int(b, "calls", r).unwrap_or(0),
                errors: cells::int(b, "errors", r).unwrap_or(0),
                p50_ms: cells::float(b, "p50_ms", r),
                p99_ms: cells::float(b, "p99_ms", r),
            });
        }
    }
    // Rates need a window length (none for `all`).
    let seconds = w.len.map_or(0.0, |len| len as f64 / 1e9);
    Ok(html! {
        h1 { "Services" }
        (page::window_bar("/services", p, &w))
        h2 { "Service map" }
        p.note #map-window { "Calls from " (page::time(map_start)) " to " (page::time(map_end)) " UTC: the last "
            (page::dur(map_end - map_start)) " of the window ("
            a href=(format!("/services{}", p.with("map", Some("15m")))) { "map the last 15m" } ", "
            a href=(format!("/services{}", p.with("map", Some("1h")))) { "1h" } ": slower on a busy store)." }
        (map(&edges, &services, &red, &window_params(p)))
        p.note { "An edge is a span whose parent span is in another service (and started at most 10 minutes before the map's window, or up to a minute after it): calls, errors (the callee span failed) and p99 of the callee spans. Every service of the window is a node; a node opens its spans. The SQL function service_graph(start, end) gives the same rows with no bound on the parent." }
        h2 { "Requests, errors and duration by operation" }
        table.results #red {
            thead { tr { th { "Service" } th { "Operation" } th { "Kind" } th.num { "Calls" }
                @if seconds > 0.0 { th.num { "per s" } }
                th.num { "Errors" } th.num { "Error %" } th.num { "p50" } th.num { "p99" } } }
            tbody {
                @for o in &red {
                    tr.err[o.errors > 0] {
                        td { (page::service(&o.service)) }
                        td { a href=(format!("/traces{}", query_string(&[[("service", o.service.as_str()), ("operation", o.name.as_str())].as_slice(), &window_params(p)].concat()))) { (o.name) } }
                        td { (o.kind) }
                        td.num { (o.calls) }
                        @if seconds > 0.0 { td.num { (format!("{:.2}", o.calls as f64 / seconds)) } }
                        td.num { (o.errors) }
                        td.num { (format!("{:.2}", if o.calls > 0 { o.errors as f64 * 100.0 / o.calls as f64 } else { 0.0 })) }
                        td.num { (o.p50_ms.map(|v| dur((v * 1e6) as i64)).unwrap_or_default()) }
                        td.num { (o.p99_ms.map(|v| dur((v * 1e6) as i64)).unwrap_or_default()) }
                    }
                }
            }
        }
        @if red.len() >= MAX_OPERATIONS { p.note { "Showing " (MAX_OPERATIONS) " operations." } }
        (page::shown_sql(&format!("{graph_sql};\n\n{red_sql}")))
    })
}

/// The graph drawn in layers: services nobody calls on the left, each callee one layer
/// right of its first caller (breadth first; cycles stay where first reached).
/// The window's parameters, for links to other pages over the same window.
fn window_params(p: &Params) -> Vec<(&'static str, &str)> {
    ["range", "end"]
        .into_iter()
        .filter_map(|k| p.get(k).map(|v| (k, v)))
        .collect()
}

fn map(edges: &[Edge], services: &[String], red: &[Op], window: &[(&str, &str)]) -> Markup {
    let mut nodes: BTreeSet<&str> = BTreeSet::new();
    for e in edges {
        nodes.insert(&e.caller);
        nodes.insert(&e.callee);
    }
    for s in services {
        nodes.insert(s);
    }
    if nodes.is_empty() {
        return html! { p.empty { "No spans in this window." } };
    }
    let mut callers: BTreeMap<&str, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for e in edges {
        *callers.entry(&e.callee).or_default() += 1;
    }
    let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
    let mut queue: VecDeque<&str> = VecDeque::new();
    for (n, c) in &callers {
        if *c == 0 {
            layer.insert(n, 0);
            queue.push_back(n);
        }
    }
    loop {
        while let Some(n) = queue.pop_front() {
            let l = layer[n];
            for e in edges.iter().filter(|e| e.caller == n) {
                if !layer.contains_key(e.callee.as_str()) {
                    layer.insert(&e.callee, l + 1);
                    queue.push_back(&e.callee);
                }
            }
        }
        // A cycle with no entry: start it at layer 0.
        match nodes.iter().find(|n| !layer.contains_key(*n)) {
            Some(n) => {
                layer.insert(n, 0);
                queue.push_back(n);
            }
            None => break,
        }
    }
    let layers = layer.values().max().copied().unwrap_or(0) + 1;
    let mut columns: Vec<Vec<&str>> = vec![Vec::new(); layers];
    for (n, l) in &layer {
        columns[*l].push(n);
    }
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(1);
    let (node_w, node_h, gap_x, gap_y) = (140.0, 34.0, 200.0, 30.0);
    let width = 20.0 + layers as f64 * (node_w + gap_x);
    let height = 20.0 + tallest as f64 * (node_h + gap_y);
    let mut pos: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (l, col) in columns.iter().enumerate() {
        let top = (height - col.len() as f64 * (node_h + gap_y)) / 2.0;
        for (k, n) in col.iter().enumerate() {
            pos.insert(
                n,
                (
                    10.0 + l as f64 * (node_w + gap_x),
                    top + k as f64 * (node_h + gap_y) + gap_y / 2.0,
                ),
            );
        }
    }
    let max_calls = edges.iter().map(|e| e.calls).max().unwrap_or(1).max(1) as f64;
    let mut svg = String::new();
    svg.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"9\" \
         markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#888\"/></marker></defs>",
    );
    for e in edges {
        let (Some(&(x1, y1)), Some(&(x2, y2))) =
            (pos.get(e.caller.as_str()), pos.get(e.callee.as_str()))
        else {
            continue;
        };
        let (sx, sy, tx, ty) = (x1 + node_w, y1 + node_h / 2.0, x2, y2 + node_h / 2.0);
        let back = tx <= sx;
        let d = if back {
            // A call to a service on the same or an earlier layer: a loop below.
            let low = y1.max(y2) + node_h + 18.0;
            format!(
                "M{sx:.1},{sy:.1} C{:.1},{low:.1} {:.1},{low:.1} {tx:.1},{ty:.1}",
                sx + 40.0,
                tx - 40.0
            )
        } else {
            let mid = (sx + tx) / 2.0;
            format!("M{sx:.1},{sy:.1} C{mid:.1},{sy:.1} {mid:.1},{ty:.1} {tx:.1},{ty:.1}")
        };
        let stroke = 1.0 + 4.0 * (e.calls as f64 / max_calls).sqrt();
        let err = e.errors > 0;
        // The label sits on the curve 60% of the way: edges fanning out of one caller (or
        // into one callee) have parted there.
        let (lx, ly) = if back {
            ((sx + tx) / 2.0, y1.max(y2) + node_h + 14.0)
        } else {
            let (t, mid) = (0.6, (sx + tx) / 2.0);
            let u = 1.0 - t;
            let bx =
                u * u * u * sx + 3.0 * u * u * t * mid + 3.0 * u * t * t * mid + t * t * t * tx;
            let by = u * u * u * sy + 3.0 * u * u * t * sy + 3.0 * u * t * t * ty + t * t * t * ty;
            (bx, by - 4.0)
        };
        svg.push_str(&format!(
            "<g class=\"edge{}\" data-caller=\"{}\" data-callee=\"{}\"><path d=\"{d}\" stroke-width=\"{stroke:.1}\" marker-end=\"url(#arrow)\"/>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"{}\">{} calls{} · p99 {}</text>\
             <title>{} → {}: {} calls, {} errors, p99 {:.1} ms</title></g>",
            if err { " err" } else { "" },
            page::escape(&e.caller),
            page::escape(&e.callee),
            "middle",
            e.calls,
            if err { format!(" · {} err", e.errors) } else { String::new() },
            dur((e.p99_ms * 1e6) as i64),
            page::escape(&e.caller),
            page::escape(&e.callee),
            e.calls,
            e.errors,
            e.p99_ms,
        ));
    }
    for (n, (x, y)) in &pos {
        let errors: i64 = red
            .iter()
            .filter(|o| o.service == *n)
            .map(|o| o.errors)
            .sum();
        svg.push_str(&format!(
            "<a href=\"/traces{}\"><g class=\"node{}\" data-service=\"{}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{node_w}\" height=\"{node_h}\" rx=\"6\" \
             style=\"stroke:{}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g></a>",
            query_string(&[[("service", *n)].as_slice(), window].concat()),
            if errors > 0 { " err" } else { "" },
            page::escape(n),
            colour(n),
            x + node_w / 2.0,
            y + node_h / 2.0 + 5.0,
            page::escape(n),
        ));
    }
    html! {
        figure.map {
            (page::svg_open(width as u32, height as u32 + 30, "service-map", "service map"))
            (PreEscaped(svg))
            (PreEscaped("</svg>"))
        }
    }
}
