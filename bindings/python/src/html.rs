//! The HTML waterfall of a trace, for notebooks (`Trace._repr_html_`).

use std::fmt::Write;

use scrydb::SpanTree;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(ns: i64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// A self-contained HTML table: one row per span, depth first, with its service, name
/// (indented by depth) and a bar placed by its start and duration within the trace.
/// Errors are red. No script, no external style.
pub fn waterfall(trace_id: &str, tree: &SpanTree, logs: usize) -> String {
    let mut h = String::new();
    let total = tree.duration_ns().max(1) as f64;
    let _ = write!(
        h,
        "<div class=\"scrydb-trace\"><div><b>trace {}</b> — {} spans, {} logs, {}</div>\
         <table style=\"border-collapse:collapse;font:12px monospace;width:100%\">\
         <tr><th style=\"text-align:left\">service</th><th style=\"text-align:left\">span</th>\
         <th style=\"text-align:right\">duration</th><th style=\"width:45%\"></th></tr>",
        escape(trace_id),
        tree.nodes.len(),
        logs,
        ms(tree.duration_ns())
    );
    for i in crate::trace::depth_first(tree) {
        let n = &tree.nodes[i];
        let left = (n.offset_ns.max(0) as f64 / total * 100.0).min(100.0);
        let width = (n.duration_ns.max(0) as f64 / total * 100.0)
            .max(0.3)
            .min(100.0 - left);
        let color = if n.is_error() { "#d9534f" } else { "#5b8def" };
        let title = match &n.status_message {
            Some(m) => format!("{} {}: {}", n.status_code, n.kind, m),
            None => format!("{} {}", n.status_code, n.kind),
        };
        let _ = write!(
            h,
            "<tr title=\"{}\"><td>{}</td><td style=\"padding-left:{}em\">{}{}</td>\
             <td style=\"text-align:right\">{}</td><td><div style=\"position:relative;height:10px\">\
             <div style=\"position:absolute;left:{left:.2}%;width:{width:.2}%;height:10px;\
             background:{color}\"></div></div></td></tr>",
            escape(&title),
            escape(&n.service),
            n.depth,
            escape(&n.name),
            if n.orphan { " (orphan)" } else { "" },
            ms(n.duration_ns)
        );
    }
    h.push_str("</table></div>");
    h
}
