//! `/traces`: span search with a duration-over-time scatter of the results.

use maud::{Markup, html};
use scrydb_engine::Signal;

use super::cells;
use super::page::{self, dur, time};
use super::params::{Params, Window};
use super::{UiError, UiState};
use crate::sql::search::{SearchQuery, Target};

/// Default and largest `limit` of a search page.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` a page takes.
pub const MAX_LIMIT: usize = 1_000;

/// `limit` of `params`, bounded.
pub fn limit(params: &Params) -> Result<usize, UiError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .map(|n| n.clamp(1, MAX_LIMIT))
            .map_err(|_| UiError::BadRequest(format!("limit: {l:?} is not a number"))),
    }
}

/// `v` quoted for the search syntax.
pub fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `key=value` of an `attr` parameter as a search term (`@key:"value"`; `key` alone: the
/// attribute is present).
pub fn attr_term(a: &str) -> Result<String, UiError> {
    let (k, v) = match a.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (a.trim(), None),
    };
    if k.is_empty() || k.contains(|c: char| c.is_whitespace() || "\"():<>=".contains(c)) {
        return Err(UiError::BadRequest(format!(
            "attr: {a:?} is not key=value (keys have no spaces, quotes, parentheses, : < > =)"
        )));
    }
    Ok(match v {
        Some(v) => format!("@{k}:{}", quoted(v)),
        None => format!("@{k}:*"),
    })
}

/// The search of the form's fields, in the search syntax.
fn search_text(p: &Params) -> Result<String, UiError> {
    let mut terms = Vec::new();
    if let Some(q) = p.get("q") {
        terms.push(own_query(q, Target::Spans)?);
    }
    if let Some(s) = p.get("service") {
        terms.push(format!("service:{}", quoted(s)));
    }
    if let Some(o) = p.get("operation") {
        terms.push(format!("name:{}", quoted(o)));
    }
    for a in p.all("attr") {
        terms.push(attr_term(a)?);
    }
    for (name, op) in [("min", ">="), ("max", "<=")] {
        if let Some(d) = p.get(name) {
            let ns = crate::sql::search::parse_duration_ns(d)
                .map_err(|e| UiError::BadRequest(format!("{name}: {e}")))?;
            terms.push(format!("duration{op}{ns}ns"));
        }
    }
    match p.get("status") {
        None | Some("any") => {}
        Some(s @ ("error" | "ok" | "unset")) => terms.push(format!("status:{s}")),
        Some(s) => {
            return Err(UiError::BadRequest(format!(
                "status: {s:?} is not error, ok, unset or any"
            )));
        }
    }
    Ok(terms.join(" "))
}

/// The `q` of a form, checked on its own (an error points into what the person typed) and
/// grouped, to be joined with the form's other filters.
pub fn own_query(q: &str, target: Target) -> Result<String, UiError> {
    predicate(q, target)?;
    Ok(format!("({q})"))
}

/// The SQL predicate of a search text (`true` for none); a syntax error names where.
pub fn predicate(text: &str, target: Target) -> Result<String, UiError> {
    if text.trim().is_empty() {
        return Ok("true".into());
    }
    SearchQuery::parse(text)
        .and_then(|q| q.to_sql(target))
        .map_err(|e| UiError::BadRequest(format!("search: {}", e.render(text))))
}

struct Hit {
    time: i64,
    trace: String,
    span: String,
    service: String,
    name: String,
    duration: i64,
    error: bool,
    root: bool,
}

pub(super) fn page(state: &UiState, p: &Params) -> Result<Markup, UiError> {
    let db = &state.db;
    let newest = db.snapshot().newest_time(Signal::Spans)?;
    let w = Window::of(p, newest)?;
    let limit = limit(p)?;
    let text = search_text(p)?;
    let pred = predicate(&text, Target::Spans)?;
    let roots = if p.flag("roots") {
        " AND parent_span_id IS NULL"
    } else {
        ""
    };
    let sql = format!(
        "SELECT time, trace_id, span_id, service_name, name, duration_ns, status_code, \
         parent_span_id IS NULL AS root FROM spans WHERE {} AND {pred}{roots} \
         ORDER BY time DESC LIMIT {limit}",
        w.sql()
    );
    let batches = super::query(state, &sql)?;
    let mut hits = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            hits.push(Hit {
                time: cells::int(b, "time", r).unwrap_or(0),
                trace: cells::text(b, "trace_id", r),
                span: cells::text(b, "span_id", r),
                service: cells::text(b, "service_name", r),
                name: cells::text(b, "name", r),
                duration: cells::int(b, "duration_ns", r).unwrap_or(0),
                error: cells::text(b, "status_code", r) == "ERROR",
                root: cells::text(b, "root", r) == "true",
            });
        }
    }
    // Services and operations of the window, for the form (from the span rollups: small).
    let ops_sql = format!(
        "SELECT DISTINCT CAST(service_name AS VARCHAR) AS service, name FROM span_metrics \
         WHERE {} ORDER BY service, name LIMIT 5000",
        w.sql()
    );
    let ops = super::query(state, &ops_sql)?;
    let mut services: Vec<String> = Vec::new();
    let mut operations: Vec<String> = Vec::new();
    let chosen = p.get("service");
    for b in &ops {
        for r in 0..b.num_rows() {
            let s = cells::text(b, "service", r);
            if chosen.is_none_or(|c| c == s) {
                operations.push(cells::text(b, "name", r));
            }
            if services.last() != Some(&s) {
                services.push(s);
            }
        }
    }
    operations.sort_unstable();
    operations.dedup();
    let field = |name: &str| p.get(name).unwrap_or("").to_string();
    Ok(html! {
        h1 { "Traces" }
        form.search method="get" action="/traces" {
            div.row {
                input.q type="search" name="q" value=(field("q")) autofocus
                    placeholder="search: timeout  @http.route:/cart  event:exception  …"
                    aria-label="search";
                button type="submit" { "Search" }
            }
            div.row {
                label { "Service "
                    select name="service" {
                        option value="" { "any" }
                        @for s in &services {
                            option value=(s) selected[chosen == Some(s.as_str())] { (s) }
                        }
                    }
                }
                label { "Operation "
                    input name="operation" list="operations" value=(field("operation"));
                    datalist id="operations" {
                        @for o in &operations { option value=(o) {} }
                    }
                }
                label { "Attribute "
                    input name="attr" placeholder="key=value" value=(p.all("attr").first().copied().unwrap_or(""));
                }
                @for a in p.all("attr").iter().skip(1) {
                    input type="hidden" name="attr" value=(a);
                }
                label { "Duration ≥ " input.short name="min" placeholder="100ms" value=(field("min")); }
                label { "≤ " input.short name="max" placeholder="2s" value=(field("max")); }
                label { "Status "
                    select name="status" {
                        @for s in ["any", "error", "ok", "unset"] {
                            option value=(s) selected[p.get("status").unwrap_or("any") == s] { (s) }
                        }
                    }
                }
                label { input type="checkbox" name="roots" value="1" checked[p.flag("roots")]; " entry spans only" }
                @if let Some(r) = p.get("range") { input type="hidden" name="range" value=(r); }
                @if let Some(e) = p.get("end") { input type="hidden" name="end" value=(e); }
                @if let Some(l) = p.get("limit") { input type="hidden" name="limit" value=(l); }
            }
        }
        (page::window_bar("/traces", p, &w))
        (scatter(&hits, &w))
        p.count { (hits.len()) " span" @if hits.len() != 1 { "s" } ", newest first" }
        table.results #trace-results {
            thead { tr { th { "Time (UTC)" } th { "Service" } th { "Operation" } th.num { "Duration" } th { "Status" } th { "Trace" } } }
            tbody {
                @for h in &hits {
                    tr.err[h.error] {
                        td.t { (time(h.time)) }
                        td { (page::service(&h.service)) }
                        td { a.op href=(format!("/trace/{}?span={}", h.trace, h.span)) { (h.name) }
                             @if h.root { span.tag { "entry" } } }
                        td.num { (dur(h.duration)) }
                        td { @if h.error { span.status.error { "ERROR" } } @else { span.status { "ok" } } }
                        td { a.trace-link href=(format!("/trace/{}?span={}", h.trace, h.span)) { code { (&h.trace[..h.trace.len().min(16)]) "…" } } }
                    }
                }
            }
        }
        (page::cut(hits.len(), limit, "spans"))
        (page::shown_sql(&sql))
    })
}

/// Duration (log scale) over time of the results; each point opens its trace.
fn scatter(hits: &[Hit], w: &Window) -> Markup {
    const W: f64 = 960.0;
    const H: f64 = 200.0;
    const L: f64 = 64.0;
    const B: f64 = 22.0;
    if hits.is_empty() {
        return html! { p.empty { "No spans match in this window." } };
    }
    let (t0, t1) = match (w.start, w.end) {
        (Some(s), Some(e)) => (s, e),
        _ => (
            hits.iter().map(|h| h.time).min().unwrap_or(0),
            hits.iter()
                .map(|h| h.time)
                .max()
                .unwrap_or(0)
                .saturating_add(1),
        ),
    };
    let span = (t1 - t0).max(1) as f64;
    let lo = hits.iter().map(|h| h.duration.max(1)).min().unwrap_or(1) as f64;
    let hi = hits.iter().map(|h| h.duration.max(1)).max().unwrap_or(1) as f64;
    let (llo, lhi) = (lo.log10(), hi.log10().max(lo.log10() + 1e-9));
    let x = |t: i64| L + (t - t0) as f64 / span * (W - L - 8.0);
    let y = |d: i64| {
        let v = (d.max(1) as f64).log10();
        H - B - (v - llo) / (lhi - llo) * (H - B - 10.0)
    };
    html! {
        figure.scatter {
            (page::svg_open(W as u32, H as u32, "chart", "duration of each result over time"))
            line.axis x1=(L) y1=(H - B) x2=(W - 8.0) y2=(H - B) {}
            line.axis x1=(L) y1="10" x2=(L) y2=(H - B) {}
            text.tick x=(L - 4.0) y=(y(hi as i64) + 4.0) text-anchor="end" { (dur(hi as i64)) }
            text.tick x=(L - 4.0) y=(y(lo as i64) + 4.0) text-anchor="end" { (dur(lo as i64)) }
            text.tick x=(L) y=(H - 6.0) { (time(t0)) }
            text.tick x=(W - 8.0) y=(H - 6.0) text-anchor="end" { (time(t1)) }
            @for h in hits {
                a href=(format!("/trace/{}?span={}", h.trace, h.span)) {
                    circle.pt.err[h.error] cx=(format!("{:.1}", x(h.time))) cy=(format!("{:.1}", y(h.duration))) r="3.5" {
                        title { (h.service) " " (h.name) " · " (dur(h.duration)) " · " (time(h.time)) }
                    }
                }
            }
            (maud::PreEscaped("</svg>"))
            figcaption { "Duration (log scale) of each result over the window; red: error. A point opens its trace." }
        }
    }
}
