//! The frame every page shares (header, navigation), and small pieces of markup: times,
//! durations, service colours, the window picker.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::params::{Params, RANGES, Window};

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy)]
pub struct Nav(&'static str);

impl Nav {
    /// The entry of a page titled `title` (a trace belongs to Traces).
    pub fn of(title: &'static str) -> Nav {
        Nav(if title == "Trace" { "Traces" } else { title })
    }
}

const ENTRIES: [(&str, &str); 5] = [
    ("Traces", "/traces"),
    ("Logs", "/logs"),
    ("Metrics", "/metrics"),
    ("Services", "/services"),
    ("SQL", "/sql"),
];

/// A whole page: `body` inside the frame.
pub fn html(title: &str, nav: Nav, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ScryDB" }
                link rel="stylesheet" href="/assets/scry.css";
                // No icon: browsers would ask for /favicon.ico on every page.
                link rel="icon" href="data:,";
                script src="/assets/scry.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/traces" { "ScryDB" }
                    nav {
                        @for (name, href) in ENTRIES {
                            @if name == nav.0 {
                                a.current href=(href) aria-current="page" { (name) }
                            } @else {
                                a href=(href) { (name) }
                            }
                        }
                    }
                    span.mode { @if live { "live: receiving OTLP" } @else { "read-only" } }
                }
                main { (body) }
            }
        }
    }
}

/// `ns` as a short duration: `850ns`, `12.3µs`, `4.56ms`, `1.23s`, `2m03s`.
pub fn dur(ns: i64) -> String {
    let a = ns.unsigned_abs() as f64;
    let sign = if ns < 0 { "-" } else { "" };
    if a < 1e3 {
        format!("{ns}ns")
    } else if a < 1e6 {
        format!("{sign}{:.1}µs", a / 1e3)
    } else if a < 1e9 {
        format!("{sign}{:.2}ms", a / 1e6)
    } else if a < 60e9 {
        format!("{sign}{:.2}s", a / 1e9)
    } else {
        let s = (a / 1e9) as u64;
        format!("{sign}{}m{:02}s", s / 60, s % 60)
    }
}

/// `ns` since the epoch as `2025-11-25 10:02:03.123` (UTC).
pub fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// `ns` since the epoch as RFC 3339 (for `end=` links).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A colour of a service, the same for the same name on every page.
pub fn colour(service: &str) -> &'static str {
    const PALETTE: [&str; 12] = [
        "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
        "#8cd17d", "#499894", "#d37295", "#a0cbe8",
    ];
    let h = service.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    PALETTE[(h % PALETTE.len() as u64) as usize]
}

/// The window picker: the ranges as links, older/newer, and what the window is.
pub fn window_bar(path: &str, params: &Params, w: &Window) -> Markup {
    let current = params.get("range").unwrap_or("1h");
    let shift = |by: i64| {
        let end = rfc3339(w.anchor.saturating_add(by));
        format!("{path}{}", params.with("end", Some(&end)))
    };
    html! {
        div.window {
            span.label { "Window" }
            @for r in RANGES {
                @if r == current {
                    a.current href=(format!("{path}{}", params.with("range", Some(r)))) { (r) }
                } @else {
                    a href=(format!("{path}{}", params.with("range", Some(r)))) { (r) }
                }
            }
            @if let Some(len) = w.len {
                a.shift href=(shift(-len)) title="the window before this one" { "◀ older" }
                a.shift href=(shift(len)) title="the window after this one" { "newer ▶" }
            }
            span.range {
                @match (w.start, w.end) {
                    (Some(s), Some(e)) => { (time(s)) " – " (time(e)) " UTC" }
                    (None, Some(e)) => { "everything before " (time(e)) " UTC" }
                    _ => { "everything stored" }
                }
            }
        }
    }
}

/// A service name with its colour swatch.
pub fn service(name: &str) -> Markup {
    html! {
        span.svc { span.swatch style=(format!("background:{}", colour(name))) {} (name) }
    }
}

/// An SQL statement shown under a result, folded.
pub fn shown_sql(sql: &str) -> Markup {
    html! {
        details.sql { summary { "SQL" } pre { code { (sql) } } }
    }
}

/// A note that a list was cut at `limit`.
pub fn cut(shown: usize, limit: usize, what: &str) -> Markup {
    html! {
        @if shown >= limit {
            p.note { "Showing the newest " (limit) " " (what) "; narrow the search or raise "
                code { "limit" } " (at most 1000) for more." }
        }
    }
}

/// An SVG `<svg>` opening with a view box, for charts (maud cannot name SVG attributes
/// with capitals).
pub fn svg_open(w: u32, h: u32, class: &str, label: &str) -> PreEscaped<String> {
    PreEscaped(format!(
        "<svg class=\"{class}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(label)
    ))
}

/// `s` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(dur(850), "850ns");
        assert_eq!(dur(12_345), "12.3µs");
        assert_eq!(dur(4_560_000), "4.56ms");
        assert_eq!(dur(1_230_000_000), "1.23s");
        assert_eq!(dur(123_000_000_000), "2m03s");
        assert_eq!(dur(-4_560_000), "-4.56ms");
        assert_eq!(colour("checkout"), colour("checkout"));
    }
}
