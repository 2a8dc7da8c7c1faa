//! `/metrics`: the metrics of the window per service, and a chart of one over time —
//! gauges as they are, monotonic cumulative sums as rates, histograms as p50/p90/p99 —
//! with its exemplars as points that open their trace.

use std::collections::BTreeMap;

use maud::{Markup, PreEscaped, html};
use scrydb_engine::Signal;
use scrydb_engine::arrow::array::{Array, AsArray, RecordBatch};
use scrydb_engine::arrow::datatypes::{Float64Type, UInt64Type};

use super::cells;
use super::page::{self, time};
use super::params::{Params, Window, query_string};
use super::{MAX_METRIC_POINTS, UiError, UiState};
use crate::diagnose::sql_string_literal;

/// Lines a chart draws (the series with most points).
const MAX_LINES: usize = 8;
/// Time buckets a chart's lines are averaged into.
const BUCKETS: i64 = 120;
/// Exemplar points drawn.
const MAX_EXEMPLARS: usize = 300;
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
];

struct Metric {
    service: String,
    name: String,
    kind: String,
    unit: String,
    points: i64,
}

/// One line of a chart.
struct Line {
    label: String,
    points: Vec<(i64, f64)>,
}

/// An exemplar: time, value, trace, span.
struct Exemplar {
    time: i64,
    value: f64,
    trace: String,
    span: Option<String>,
}

pub(super) fn page(state: &UiState, p: &Params) -> Result<Markup, UiError> {
    let db = &state.db;
    let newest = db.snapshot().newest_time(Signal::Metrics)?;
    let w = Window::of(p, newest)?;
    let list_sql = format!(
        "SELECT CAST(service_name AS VARCHAR) AS service, name, CAST(metric_type AS VARCHAR) AS kind, \
         max(unit) AS unit, count(*) AS points FROM metrics WHERE {} GROUP BY 1, 2, 3 \
         ORDER BY service, name LIMIT 1000",
        w.sql()
    );
    let mut list = Vec::new();
    for b in &super::query(state, &list_sql)? {
        for r in 0..b.num_rows() {
            list.push(Metric {
                service: cells::text(b, "service", r),
                name: cells::text(b, "name", r),
                kind: cells::text(b, "kind", r),
                unit: cells::text(b, "unit", r),
                points: cells::int(b, "points", r).unwrap_or(0),
            });
        }
    }
    let mut by_service: BTreeMap<&str, Vec<&Metric>> = BTreeMap::new();
    for m in &list {
        by_service.entry(&m.service).or_default().push(m);
    }
    let chart = match p.get("name") {
        Some(name) => Some(chart(state, p, &w, name)?),
        None => None,
    };
    let range = p.get("range").unwrap_or("1h");
    Ok(html! {
        h1 { "Metrics" }
        (page::window_bar("/metrics", p, &w))
        div.split {
            nav.metric-list #metric-list {
                @if list.is_empty() { p.empty { "No metrics in this window." } }
                @for (svc, metrics) in &by_service {
                    h3 { (page::service(svc)) }
                    ul {
                        @for m in metrics {
                            li.current[p.get("name") == Some(m.name.as_str()) && p.get("service") == Some(m.service.as_str())] {
                                a href=(metric_href(m, range, p.get("end"))) { (m.name) }
                                " " span.kind { (m.kind) @if !m.unit.is_empty() { " · " (m.unit) } " · " (m.points) " points" }
                            }
                        }
                    }
                }
            }
            section.chart-area {
                @match chart {
                    Some(c) => (c),
                    None => p.note { "Pick a metric to chart it." },
                }
            }
        }
    })
}

/// The link that charts `m` over the current window.
fn metric_href(m: &Metric, range: &str, end: Option<&str>) -> String {
    let mut link = vec![
        ("name", m.name.as_str()),
        ("service", m.service.as_str()),
        ("range", range),
    ];
    if let Some(e) = end {
        link.push(("end", e));
    }
    format!("/metrics{}", query_string(&link))
}

fn chart(state: &UiState, p: &Params, w: &Window, name: &str) -> Result<Markup, UiError> {
    let mut filter = format!("{} AND name = {}", w.sql(), sql_string_literal(name));
    if let Some(s) = p.get("service") {
        filter.push_str(&format!(" AND service_name = {}", sql_string_literal(s)));
    }
    let sql = format!(
        "SELECT time, CAST(service_name AS VARCHAR) AS service, attributes, \
         CAST(metric_type AS VARCHAR) AS kind, CAST(aggregation_temporality AS VARCHAR) AS temporality, \
         is_monotonic, unit, value, value_int, bucket_counts, explicit_bounds, quantile_values, exemplars, \
         resource_attributes['service.instance.id'] AS instance \
         FROM metrics WHERE {filter} ORDER BY time LIMIT {MAX_METRIC_POINTS}"
    );
    let batches = super::query(state, &sql)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let first = batches.iter().find(|b| b.num_rows() > 0);
    let Some(first) = first else {
        return Ok(html! { h2 { (name) } p.empty { "No points of this metric in the window." } });
    };
    let kind = cells::text(first, "kind", 0);
    let unit = cells::text(first, "unit", 0);
    let cumulative = cells::text(first, "temporality", 0).eq_ignore_ascii_case("cumulative");
    let monotonic = cells::text(first, "is_monotonic", 0) == "true";
    let mut exemplars = Vec::new();
    for b in &batches {
        read_exemplars(b, &mut exemplars);
    }
    let (lines, what) = match kind.as_str() {
        "histogram" => (
            histogram_lines(&batches, cumulative),
            "p50, p90 and p99 of each time bucket (from the merged bucket counts)".to_string(),
        ),
        "exponential_histogram" => (
            exp_histogram_lines(state, &filter, w, &batches)?,
            "p50, p90 and p99 of each time bucket (merged exponential histograms)".to_string(),
        ),
        "summary" => (
            summary_lines(&batches),
            "the quantiles each point reports".to_string(),
        ),
        "sum" if cumulative && monotonic => (
            number_lines(&batches, true),
            "rate per second of each series (a cumulative, monotonic sum)".to_string(),
        ),
        _ => (
            number_lines(&batches, false),
            "the value of each series".to_string(),
        ),
    };
    let (t0, t1) = match (w.start, w.end) {
        (Some(s), Some(e)) => (s, e),
        _ => {
            let ts = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
            let (lo, hi) = ts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
            if lo > hi {
                (0, 1)
            } else {
                (lo, hi.saturating_add(1))
            }
        }
    };
    Ok(html! {
        h2 #chart-title { (name) " " span.kind { (kind) @if !unit.is_empty() { " · " (unit) } } }
        p.note { "Lines: " (what) ". Points: exemplars, each opening its trace." }
        (line_chart(&lines, &exemplars, t0, t1))
        ul.legend {
            @for (k, l) in lines.iter().enumerate() {
                li { span.swatch style=(format!("background:{}", PALETTE[k % PALETTE.len()])) {} (l.label) }
            }
        }
        @if rows >= MAX_METRIC_POINTS { p.note { "The chart reads the first " (MAX_METRIC_POINTS) " points of the window; narrow it for all." } }
        @if !exemplars.is_empty() {
            h3 { "Exemplars" }
            table.results #exemplars {
                thead { tr { th { "Time (UTC)" } th.num { "Value" } th { "Trace" } } }
                tbody {
                    @for e in exemplars.iter().rev().take(20) {
                        tr { td.t { (time(e.time)) } td.num { (format!("{:.4}", e.value)) }
                            td { a.trace-link href=(match &e.span { Some(s) => format!("/trace/{}?span={s}#detail", e.trace), None => format!("/trace/{}", e.trace) }) { code { (&e.trace[..16]) "…" } } } }
                    }
                }
            }
        }
        (page::shown_sql(&sql))
    })
}

/// The series key of a row: its service and attributes.
fn series_key(b: &RecordBatch, r: usize) -> String {
    let mut attrs: Vec<String> = cells::attrs(b, "attributes", r)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
        .collect();
    attrs.sort();
    // Instances of one service are series of their own (their counters run separately).
    let mut service = cells::text(b, "service", r);
    let instance = cells::text(b, "instance", r);
    if !instance.is_empty() {
        service = format!("{service}/{instance}");
    }
    if attrs.is_empty() {
        service
    } else {
        format!("{service} {{{}}}", attrs.join(", "))
    }
}

fn number_lines(batches: &[RecordBatch], rate: bool) -> Vec<Line> {
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let v = cells::float(b, "value", r).or_else(|| cells::float(b, "value_int", r));
            if let (Some(t), Some(v)) = (cells::int(b, "time", r), v) {
                series.entry(series_key(b, r)).or_default().push((t, v));
            }
        }
    }
    let mut lines: Vec<Line> = series
        .into_iter()
        .map(|(label, pts)| {
            let points = if rate {
                pts.windows(2)
                    .filter(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1)
                    .map(|w| (w[1].0, (w[1].1 - w[0].1) / ((w[1].0 - w[0].0) as f64 / 1e9)))
                    .collect()
            } else {
                pts
            };
            Line { label, points }
        })
        .collect();
    lines.sort_by(|a, b| {
        b.points
            .len()
            .cmp(&a.points.len())
            .then(a.label.cmp(&b.label))
    });
    lines.truncate(MAX_LINES);
    for l in &mut lines {
        l.points = bucketed(&l.points);
    }
    lines
}

/// Averages `points` (sorted by time) into at most [`BUCKETS`] buckets.
fn bucketed(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let width = (last.0.saturating_sub(first.0) / BUCKETS).saturating_add(1);
    let mut out: Vec<(i64, f64, u32)> = Vec::new();
    for &(t, v) in points {
        let b = first.0 + (t - first.0) / width * width;
        match out.last_mut() {
            Some(o) if o.0 == b => {
                o.1 += v;
                o.2 += 1;
            }
            _ => out.push((b, v, 1)),
        }
    }
    out.into_iter()
        .map(|(t, s, n)| (t, s / f64::from(n)))
        .collect()
}

fn u64_list(b: &RecordBatch, name: &str, r: usize) -> Option<Vec<u64>> {
    let c = b.column_by_name(name)?.as_list_opt::<i32>()?;
    if c.is_null(r) {
        return None;
    }
    let v = c.value(r);
    let v = v.as_primitive_opt::<UInt64Type>()?;
    Some(v.values().to_vec())
}

fn f64_list(b: &RecordBatch, name: &str, r: usize) -> Option<Vec<f64>> {
    let c = b.column_by_name(name)?.as_list_opt::<i32>()?;
    if c.is_null(r) {
        return None;
    }
    let v = c.value(r);
    let v = v.as_primitive_opt::<Float64Type>()?;
    Some(v.values().to_vec())
}

/// The `q` quantile of explicit-bucket counts (linear inside the bucket; the overflow
/// bucket answers its lower bound).
pub fn bucket_quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total = counts.iter().fold(0u64, |a, &c| a.saturating_add(c));
    if total == 0 || counts.len() != bounds.len() + 1 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && seen.saturating_add(c) as f64 >= rank {
            if i == bounds.len() {
                return bounds.last().copied();
            }
            let upper = bounds[i];
            let lower = if i == 0 {
                upper.min(0.0)
            } else {
                bounds[i - 1]
            };
            let into = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * into);
        }
        seen = seen.saturating_add(c);
    }
    bounds.last().copied()
}

fn histogram_lines(batches: &[RecordBatch], cumulative: bool) -> Vec<Line> {
    // Per series, the counts of each point (differences of a cumulative series).
    let mut last: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut deltas: Vec<(i64, Vec<u64>)> = Vec::new();
    let mut bounds: Option<Vec<f64>> = None;
    for b in batches {
        for r in 0..b.num_rows() {
            let (Some(t), Some(counts), Some(bd)) = (
                cells::int(b, "time", r),
                u64_list(b, "bucket_counts", r),
                f64_list(b, "explicit_bounds", r),
            ) else {
                continue;
            };
            let expected = bounds.get_or_insert_with(|| bd.clone());
            if *expected != bd || counts.len() != bd.len() + 1 {
                continue;
            }
            let d = if cumulative {
                let key = series_key(b, r);
                let d = match last.get(&key) {
                    Some(prev)
                        if prev.len() == counts.len()
                            && prev.iter().zip(&counts).all(|(p, c)| c >= p) =>
                    {
                        Some(counts.iter().zip(prev).map(|(c, p)| c - p).collect())
                    }
                    // A reset: its counts since it started again.
                    Some(_) => Some(counts.clone()),
                    // The first point of the series in the window is only the baseline (its
                    // counts go back to whenever the process started).
                    None => None,
                };
                last.insert(key, counts);
                match d {
                    Some(d) => d,
                    None => continue,
                }
            } else {
                counts
            };
            deltas.push((t, d));
        }
    }
    let Some(bounds) = bounds else {
        return Vec::new();
    };
    let (Some(first), Some(end)) = (deltas.first().map(|d| d.0), deltas.last().map(|d| d.0)) else {
        return Vec::new();
    };
    let width = (end.saturating_sub(first) / BUCKETS).saturating_add(1);
    let mut merged: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for (t, d) in deltas {
        let slot = merged
            .entry(first + (t - first) / width * width)
            .or_insert_with(|| vec![0; d.len()]);
        for (s, c) in slot.iter_mut().zip(d) {
            *s = s.saturating_add(c);
        }
    }
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)]
        .into_iter()
        .map(|(label, q)| Line {
            label: label.into(),
            points: merged
                .iter()
                .filter_map(|(t, c)| bucket_quantile(&bounds, c, q).map(|v| (*t, v)))
                .collect(),
        })
        .collect()
}

fn exp_histogram_lines(
    state: &UiState,
    filter: &str,
    w: &Window,
    batches: &[RecordBatch],
) -> Result<Vec<Line>, UiError> {
    let times = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).filter_map(move |r| cells::int(b, "time", r)));
    let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let span = match w.len {
        Some(l) => l,
        None => hi.saturating_sub(lo),
    };
    let seconds = (span / BUCKETS / 1_000_000_000).max(1);
    let q = |q: f64| {
        format!(
            "exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, {q})"
        )
    };
    let sql = format!(
        "SELECT date_bin(INTERVAL '{seconds} seconds', time) AS t, {} AS p50, {} AS p90, {} AS p99 \
         FROM metrics WHERE {filter} AND time <= to_timestamp_nanos({hi}) GROUP BY 1 ORDER BY 1 \
         LIMIT {MAX_METRIC_POINTS}",
        q(0.5),
        q(0.9),
        q(0.99)
    );
    let out = super::query(state, &sql)?;
    Ok(["p50", "p90", "p99"]
        .into_iter()
        .map(|label| Line {
            label: label.into(),
            points: out
                .iter()
                .flat_map(|b| {
                    (0..b.num_rows()).filter_map(move |r| {
                        Some((cells::int(b, "t", r)?, cells::float(b, label, r)?))
                    })
                })
                .collect(),
        })
        .collect())
}

fn summary_lines(batches: &[RecordBatch]) -> Vec<Line> {
    let mut series: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for b in batches {
        let Some(list) = b
            .column_by_name("quantile_values")
            .and_then(|c| c.as_list_opt::<i32>())
        else {
            continue;
        };
        for r in 0..b.num_rows() {
            let Some(t) = cells::int(b, "time", r) else {
                continue;
            };
            if list.is_null(r) {
                continue;
            }
            let item = list.value(r);
            let Some(s) = item.as_struct_opt() else {
                continue;
            };
            for k in 0..s.len() {
                let q = s
                    .column_by_name("quantile")
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .filter(|c| c.is_valid(k))
                    .map(|c| c.value(k));
                let v = s
                    .column_by_name("value")
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .filter(|c| c.is_valid(k))
                    .map(|c| c.value(k));
                if let (Some(q), Some(v)) = (q, v) {
                    series.entry(format!("q{q}")).or_default().push((t, v));
                }
            }
        }
    }
    series
        .into_iter()
        .take(MAX_LINES)
        .map(|(label, pts)| Line {
            label,
            points: bucketed(&pts),
        })
        .collect()
}

fn read_exemplars(b: &RecordBatch, out: &mut Vec<Exemplar>) {
    let Some(list) = b
        .column_by_name("exemplars")
        .and_then(|c| c.as_list_opt::<i32>())
    else {
        return;
    };
    for r in 0..b.num_rows() {
        if out.len() >= MAX_EXEMPLARS || list.is_null(r) {
            continue;
        }
        let item = list.value(r);
        let Some(s) = item.as_struct_opt() else {
            continue;
        };
        for k in 0..s.len() {
            let trace = s
                .column_by_name("trace_id")
                .and_then(|c| cells::text_of(c.as_ref(), k));
            let value = s
                .column_by_name("value")
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .filter(|c| c.is_valid(k))
                .map(|c| c.value(k))
                .or_else(|| {
                    s.column_by_name("value_int")
                        .and_then(|c| cells::int_of(c.as_ref(), k))
                        .map(|v| v as f64)
                });
            let t = s
                .column_by_name("time")
                .and_then(|c| cells::int_of(c.as_ref(), k));
            if let (Some(trace), Some(value), Some(time)) = (trace, value, t) {
                let span = s
                    .column_by_name("span_id")
                    .and_then(|c| cells::text_of(c.as_ref(), k));
                out.push(Exemplar {
                    time,
                    value,
                    trace,
                    span,
                });
            }
        }
    }
}

fn line_chart(lines: &[Line], exemplars: &[Exemplar], t0: i64, t1: i64) -> Markup {
    const W: f64 = 900.0;
    const H: f64 = 260.0;
    const L: f64 = 70.0;
    const B: f64 = 24.0;
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(exemplars.iter().map(|e| e.value))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((0.0f64, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi == f64::MIN {
        return html! { p.empty { "Nothing to draw: no numeric points." } };
    }
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    let span = (t1 - t0).max(1) as f64;
    let x = |t: i64| L + (t.clamp(t0, t1) - t0) as f64 / span * (W - L - 10.0);
    let y = |v: f64| H - B - (v - lo) / (hi - lo) * (H - B - 12.0);
    let mut svg = String::new();
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/><line class=\"axis\" x1=\"{L}\" y1=\"12\" x2=\"{L}\" y2=\"{0}\"/>",
        H - B,
        W - 10.0
    ));
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\"/><text class=\"tick\" x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            y(v),
            W - 10.0,
            L - 4.0,
            y(v) + 4.0,
            short(v)
        ));
    }
    svg.push_str(&format!(
        "<text class=\"tick\" x=\"{L}\" y=\"{0}\">{1}</text><text class=\"tick\" x=\"{2}\" y=\"{0}\" text-anchor=\"end\">{3}</text>",
        H - 6.0,
        time(t0),
        W - 10.0,
        time(t1)
    ));
    for (k, l) in lines.iter().enumerate() {
        let pts: Vec<String> = l
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        svg.push_str(&format!(
            "<polyline class=\"series\" fill=\"none\" stroke=\"{}\" points=\"{}\"><title>{}</title></polyline>",
            PALETTE[k % PALETTE.len()],
            pts.join(" "),
            page::escape(&l.label)
        ));
    }
    for e in exemplars {
        if !e.value.is_finite() {
            continue;
        }
        let href = match &e.span {
            Some(s) => format!("/trace/{}?span={s}#detail", e.trace),
            None => format!("/trace/{}", e.trace),
        };
        svg.push_str(&format!(
            "<a class=\"exemplar\" href=\"{href}\"><circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"><title>exemplar {} at {} — trace {}</title></circle></a>",
            x(e.time),
            y(e.value),
            short(e.value),
            time(e.time),
            e.trace
        ));
    }
    html! {
        figure.linechart {
            (page::svg_open(W as u32, H as u32, "chart", "metric over time"))
            (PreEscaped(svg))
            (PreEscaped("</svg>"))
        }
    }
}

/// A number in a few characters.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles() {
        let bounds = [10.0, 20.0, 50.0];
        // 10 below 10, 10 in (10, 20], none above.
        assert_eq!(bucket_quantile(&bounds, &[10, 10, 0, 0], 0.5), Some(10.0));
        assert_eq!(bucket_quantile(&bounds, &[10, 10, 0, 0], 0.75), Some(15.0));
        assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 5], 0.99), Some(50.0));
        assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
        assert_eq!(bucket_quantile(&bounds, &[1, 2], 0.5), None);
        let b = bucketed(&[(0, 1.0), (1, 3.0), (1_000, 5.0)]);
        assert_eq!(b.first(), Some(&(0, 2.0)));
        assert_eq!(b.len(), 2);
        assert_eq!(b.last().map(|p| p.1), Some(5.0));
        assert_eq!(short(1234567.0), "1.23M");
    }
}
