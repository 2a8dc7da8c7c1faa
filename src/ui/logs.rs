//! `/logs`: log search with filter chips, and the log patterns of the window (new and
//! surging first); each log links to its trace.

use maud::{Markup, html};
use scrydb_engine::Signal;
use scrydb_engine::search::log_patterns::{LogPattern, PatternChange};

use super::cells;
use super::page::{self, time};
use super::params::{Params, Window};
use super::traces::{attr_term, limit, predicate, quoted};
use super::{UiError, UiState};
use crate::sql::search::{LEVELS, Target};

/// Patterns listed.
const MAX_PATTERNS: usize = 30;

fn search_text(p: &Params) -> Result<String, UiError> {
    let mut terms = Vec::new();
    if let Some(q) = p.get("q") {
        terms.push(super::traces::own_query(q, Target::Logs)?);
    }
    if let Some(sev) = p.get("severity") {
        let Some((_, n)) = LEVELS.iter().find(|(l, _)| l.eq_ignore_ascii_case(sev)) else {
            return Err(UiError::BadRequest(format!(
                "severity: {sev:?} is not trace, debug, info, warn, error or fatal"
            )));
        };
        terms.push(format!("severity>={n}"));
    }
    let services: Vec<String> = p
        .all("service")
        .iter()
        .map(|s| format!("service:{}", quoted(s)))
        .collect();
    if !services.is_empty() {
        // Chips of several services show the logs of any of them.
        terms.push(format!("({})", services.join(" OR ")));
    }
    for a in p.all("attr") {
        terms.push(attr_term(a)?);
    }
    Ok(terms.join(" "))
}

struct Line {
    time: i64,
    severity: String,
    service: String,
    body: String,
    trace: Option<String>,
    span: Option<String>,
    error: bool,
}

pub(super) fn page(state: &UiState, p: &Params) -> Result<Markup, UiError> {
    let db = &state.db;
    let snapshot = db.snapshot();
    let newest = snapshot.newest_time(Signal::Logs)?;
    let w = Window::of(p, newest)?;
    let limit = limit(p)?;
    let text = search_text(p)?;
    let pred = predicate(&text, Target::Logs)?;
    let sql = format!(
        "SELECT time, severity_number, severity_text, service_name, body, trace_id, span_id \
         FROM logs WHERE {} AND {pred} ORDER BY time DESC LIMIT {limit}",
        w.sql()
    );
    let mut lines = Vec::new();
    for b in &super::query(state, &sql)? {
        for r in 0..b.num_rows() {
            let number = cells::int(b, "severity_number", r).filter(|&n| n > 0);
            let mut severity = cells::text(b, "severity_text", r);
            if severity.is_empty() {
                severity = number.map_or(String::new(), |n| {
                    scrydb_engine::severity_name(n as i32).to_string()
                });
            }
            lines.push(Line {
                time: cells::int(b, "time", r).unwrap_or(0),
                error: number.is_some_and(|n| n >= 17),
                severity,
                service: cells::text(b, "service_name", r),
                body: cells::text(b, "body", r),
                trace: cells::id(b, "trace_id", r).map(|t| crate::sql::ids::hex(&t)),
                span: cells::id(b, "span_id", r).map(|s| crate::sql::ids::hex(&s)),
            });
        }
    }
    // Services with logs in the window, for the chips (most lines first).
    let chips_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service, count(*) AS n FROM logs WHERE {} \
         GROUP BY 1 ORDER BY n DESC, service LIMIT 30",
        w.sql()
    );
    let mut services = Vec::new();
    for b in &super::query(state, &chips_sql)? {
        for r in 0..b.num_rows() {
            services.push((
                cells::text(b, "service", r),
                cells::int(b, "n", r).unwrap_or(0),
            ));
        }
    }
    let mut patterns = snapshot.log_patterns(w.range(), None)?;
    let chosen: Vec<&str> = p.all("service");
    if !chosen.is_empty() {
        patterns.retain(|x| chosen.contains(&x.service.as_str()));
    }
    patterns.retain(|x| x.status != PatternChange::Gone);
    patterns.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(b.change.unwrap_or(0.0).total_cmp(&a.change.unwrap_or(0.0)))
            .then(b.count.cmp(&a.count))
    });
    let total_patterns = patterns.len();
    patterns.truncate(MAX_PATTERNS);
    let current_sev = p.get("severity");
    Ok(html! {
        h1 { "Logs" }
        form.search method="get" action="/logs" {
            div.row {
                input.q type="search" name="q" value=(p.get("q").unwrap_or("")) autofocus
                    placeholder="search: \"connection refused\"  @http.route:/cart  -retry …"
                    aria-label="search";
                @if let Some(s) = current_sev { input type="hidden" name="severity" value=(s); }
                @for s in &chosen { input type="hidden" name="service" value=(s); }
                @for a in p.all("attr") { input type="hidden" name="attr" value=(a); }
                @if let Some(r) = p.get("range") { input type="hidden" name="range" value=(r); }
                @if let Some(e) = p.get("end") { input type="hidden" name="end" value=(e); }
                label { "Attribute " input name="attr" placeholder="key=value"; }
                button type="submit" { "Search" }
            }
        }
        div.chips {
            span.label { "Severity ≥" }
            @for (level, _) in LEVELS {
                @if current_sev.is_some_and(|s| s.eq_ignore_ascii_case(level)) {
                    a.chip.on href=(format!("/logs{}", p.with("severity", None))) { (level) " ×" }
                } @else {
                    a.chip href=(format!("/logs{}", p.with("severity", Some(level)))) { (level) }
                }
            }
        }
        div.chips {
            span.label { "Service" }
            @for (s, n) in &services {
                @if chosen.contains(&s.as_str()) {
                    a.chip.on href=(format!("/logs{}", p.without("service", s))) { (page::service(s)) " ×" }
                } @else {
                    a.chip href=(format!("/logs{}", p.adding("service", s))) { (page::service(s)) " " span.n { (n) } }
                }
            }
        }
        @if !p.all("attr").is_empty() {
            div.chips {
                span.label { "Attributes" }
                @for a in p.all("attr") {
                    a.chip.on href=(format!("/logs{}", p.without("attr", a))) { (a) " ×" }
                }
            }
        }
        (page::window_bar("/logs", p, &w))
        div.split {
            section.lines {
                p.count { (lines.len()) " log" @if lines.len() != 1 { "s" } ", newest first" }
                table.results #log-results {
                    thead { tr { th { "Time (UTC)" } th { "Severity" } th { "Service" } th { "Body" } th { "Trace" } } }
                    tbody {
                        @for l in &lines {
                            tr.err[l.error] {
                                td.t { (time(l.time)) }
                                td { span.sev { (l.severity) } }
                                td { (page::service(&l.service)) }
                                td.body { (l.body) }
                                td {
                                    @if let Some(t) = &l.trace {
                                        @let href = match &l.span { Some(s) => format!("/trace/{t}?span={s}#detail"), None => format!("/trace/{t}") };
                                        a.trace-link href=(href) { code { (&t[..16]) "…" } }
                                    }
                                }
                            }
                        }
                    }
                }
                (page::cut(lines.len(), limit, "logs"))
                (page::shown_sql(&sql))
            }
            section.patterns {
                h2 { "Patterns of the window" }
                p.note { "Compared with the window before it; new and surging first." }
                @if patterns.is_empty() { p.empty { "No log patterns in this window." } }
                @for x in &patterns { (pattern(x, p)) }
                @if total_patterns > MAX_PATTERNS { p.note { (total_patterns - MAX_PATTERNS) " more not shown." } }
            }
        }
    })
}

fn rank(p: &LogPattern) -> u8 {
    match p.status {
        PatternChange::New => 0,
        PatternChange::Surging => 1,
        PatternChange::Steady | PatternChange::NoBaseline => 2,
        PatternChange::Declining => 3,
        PatternChange::Gone => 4,
    }
}

fn pattern(x: &LogPattern, p: &Params) -> Markup {
    // The template's constant words, as a phrase search for its lines.
    let words: Vec<&str> = x
        .template
        .split_whitespace()
        .filter(|w| *w != "<*>")
        .take(6)
        .collect();
    let search = words
        .iter()
        .map(|w| quoted(w))
        .collect::<Vec<_>>()
        .join(" ");
    let href = format!(
        "/logs{}",
        Params::parse(p.with("q", Some(&search)).trim_start_matches('?'))
            .adding("service", &x.service)
    );
    html! {
        div.pattern class=(format!("st-{}", x.status.as_str().replace(' ', "-"))) {
            span.badge { (x.status.as_str()) }
            " " span.n { (x.count) " lines" }
            @if let Some(c) = x.change { " " span.change { (format!("×{c:.1}")) } }
            " " (page::service(&x.service))
            div.template { a href=(href) { code { (x.template) } } }
        }
    }
}
