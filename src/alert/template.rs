//! Templates of annotations (`{{ $labels.service_name }} at {{ $value }}`) and of rule
//! queries (`{{ $now }}`, `{{ $now - 5m }}`).

use std::collections::BTreeMap;

use super::rules::parse_duration;
use crate::diagnose::sql_timestamp_literal;

/// A parsed annotation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Label(String),
    Value,
}

/// The `{{ ... }}` pieces of `s`: text before, the trimmed inside, and the rest; an
/// unclosed `{{` is an error.
fn next_action(s: &str) -> Result<Option<(&str, &str, &str)>, String> {
    let Some(open) = s.find("{{") else {
        return Ok(None);
    };
    let after = &s[open + 2..];
    let close = after
        .find("}}")
        .ok_or_else(|| format!("`{{{{` without `}}}}` in {s:?}"))?;
    Ok(Some((
        &s[..open],
        after[..close].trim(),
        &after[close + 2..],
    )))
}

impl Template {
    /// Parses `s`: text with `{{ $value }}` and `{{ $labels.NAME }}`; anything else inside
    /// `{{ }}` is an error.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some((before, action, after)) = next_action(rest)? {
            if !before.is_empty() {
                parts.push(Part::Text(before.to_string()));
            }
            if action == "$value" {
                parts.push(Part::Value);
            } else if let Some(name) = action.strip_prefix("$labels.") {
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(format!("`{{{{ {action} }}}}` names no label"));
                }
                parts.push(Part::Label(name.to_string()));
            } else {
                return Err(format!(
                    "`{{{{ {action} }}}}` is not `{{{{ $value }}}}` or `{{{{ $labels.NAME }}}}`"
                ));
            }
            rest = after;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The text with `labels` and `value` filled in; a missing label renders empty.
    pub fn render(&self, labels: &BTreeMap<String, String>, value: f64) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Label(name) => out.push_str(labels.get(name).map_or("", String::as_str)),
                Part::Value => out.push_str(&format_value(value)),
            }
        }
        out
    }
}

/// A value as templates and summaries show it: at most four decimals, no trailing zeros.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "0" || s == "-0" {
        // Too small for four decimals: keep its significant digits.
        format!("{v:e}")
    } else {
        s.to_string()
    }
}

/// A rule's query with `{{ $now }}`, `{{ $now - DURATION }}` and `{{ $now + DURATION }}`
/// replaced by timestamp literals of `now_ns` (nanoseconds since the epoch).
pub fn render_expr(expr: &str, now_ns: i64) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some((before, action, after)) = next_action(rest)? {
        out.push_str(before);
        let offset = match action.strip_prefix("$now") {
            Some("") => 0,
            Some(tail) => {
                let tail = tail.trim_start();
                let (sign, d) = if let Some(d) = tail.strip_prefix('-') {
                    (-1i64, d)
                } else if let Some(d) = tail.strip_prefix('+') {
                    (1, d)
                } else {
                    return Err(format!(
                        "`{{{{ {action} }}}}` in the query: write `$now`, `$now - 5m` or `$now + 5m`"
                    ));
                };
                let d = parse_duration(d)?;
                sign * i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
            }
            None => {
                return Err(format!(
                    "`{{{{ {action} }}}}` in the query: only `{{{{ $now }}}}` (optionally `- 5m`) \
                     is replaced in queries"
                ));
            }
        };
        out.push_str(&sql_timestamp_literal(now_ns.saturating_add(offset)));
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_render_labels_and_value() {
        let t = Template::parse("{{ $labels.service }} at {{$value}}!").expect("parses");
        let labels = BTreeMap::from([("service".to_string(), "cart".to_string())]);
        assert_eq!(t.render(&labels, 0.25), "cart at 0.25!");
        assert_eq!(t.render(&BTreeMap::new(), 3.0), " at 3!");
        assert!(Template::parse("{{ $labels }}").is_err());
        assert!(Template::parse("{{ .Value }}").is_err());
        assert!(Template::parse("open {{ $value").is_err());
    }

    #[test]
    fn values_format_short() {
        assert_eq!(format_value(0.123456), "0.1235");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(0.00001234), "1.234e-5");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn queries_get_the_evaluation_time() {
        assert_eq!(
            render_expr("t > {{ $now - 1s }} AND t <= {{$now}}", 5_000_000_000).expect("renders"),
            "t > to_timestamp_nanos(4000000000) AND t <= to_timestamp_nanos(5000000000)"
        );
        assert!(render_expr("{{ $value }}", 0).is_err());
        assert!(render_expr("{{ $now * 2 }}", 0).is_err());
    }
}
