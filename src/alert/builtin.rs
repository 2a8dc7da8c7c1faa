//! Built-in rules, off unless a rules file asks for them (`[[builtin]]`), each expanded
//! into an ordinary rule whose SQL the file could have written itself:
//!
//! | `kind` | fires per | when | `value` |
//! |---|---|---|---|
//! | `error_rate_jump` | service, operation | the error rate of the last `window` (default 5m) is at least `factor` (2) × that of the `baseline` (1h) before it and at least `min_rise` (0.05) above it, over at least `min_count` (20) spans | the error rate (0–1) |
//! | `latency_jump` | service, operation | the p99 duration of the last `window` is at least `factor` (2) × the baseline's and at least `min_rise` ms (50) above it, over at least `min_count` (20) spans | the p99 in ms |
//! | `probe_down` | service | the latest `up` point of its health probe (`scry serve --probe`) in the last `window` (1m) is 0 | the latest `up` |
//! | `log_surge` | service, template | a log template of the last `window` (5m) is new or surging against the window before it (`log_patterns`), with at least `min_count` (20) lines; not while that window is incomplete (no logs in its first tenth: a new store), never for service `scrydb` (the alerts' own records) | its lines in the window |
//!
//! The jumps are the demo diagnosis's anomaly tests as rules (read from the `span_metrics`
//! rollups, so an evaluation costs milliseconds). As the baseline window slides into a
//! lasting fault the jump shrinks, and the alert resolves: a jump rule says "something
//! changed", not "something is still wrong" (`keep_firing_for` holds it longer).

use std::time::Duration;

use super::rules::{BuiltinSpec, Group, parse_duration};

fn interval_sql(d: Duration) -> String {
    format!("INTERVAL '{} milliseconds'", d.as_millis())
}

/// The group a built-in rule becomes: named after the rule, one rule.
pub(crate) fn expand(spec: BuiltinSpec) -> Result<Group, String> {
    let dur = |v: &Option<String>, default: &str| parse_duration(v.as_deref().unwrap_or(default));
    // `window`, `baseline` and `interval` errors name the value; say which field.
    let dur = |v: &Option<String>, default: &str, what: &str| {
        dur(v, default).map_err(|e| format!("{what}: {e}"))
    };
    let interval = dur(&spec.interval, "30s", "interval")?;
    if interval < Duration::from_secs(1) {
        return Err("interval is below 1s".into());
    }
    let factor = spec.factor.unwrap_or(2.0);
    if !(factor.is_finite() && factor >= 1.0) {
        return Err(format!("factor {factor} must be a number of at least 1"));
    }
    if let Some(r) = spec.min_rise
        && !(r.is_finite() && r >= 0.0)
    {
        return Err(format!("min_rise {r} must be a number of at least 0"));
    }
    let min_count = spec.min_count.unwrap_or(20);
    let kind = spec.kind.clone();
    let name = spec.name.clone().unwrap_or_else(|| match kind.as_str() {
        "error_rate_jump" => "ErrorRateJump".into(),
        "latency_jump" => "LatencyJump".into(),
        "probe_down" => "ProbeDown".into(),
        "log_surge" => "LogSurge".into(),
        other => other.to_string(),
    });
    let (expr, condition, summary) = match kind.as_str() {
        "error_rate_jump" | "latency_jump" => {
            let window = dur(&spec.window, "5m", "window")?;
            let baseline = dur(&spec.baseline, "1h", "baseline")?;
            if window.is_zero() || baseline.is_zero() {
                return Err("window and baseline must be above zero".into());
            }
            let (w, b) = (interval_sql(window), interval_sql(baseline));
            let range = |from: &str, to: &str| {
                format!("time >= {{{{ $now }}}} - {from} AND time < {{{{ $now }}}} - {to}")
            };
            let cur = range(&w, "INTERVAL '0 seconds'");
            let base = range(&format!("{w} - {b}"), &w);
            if kind == "error_rate_jump" {
                let rise = spec.min_rise.unwrap_or(0.05);
                let aggregate = "sum(count) AS n, CAST(sum(errors) AS DOUBLE) / sum(count) AS rate";
                (
                    format!(
                        "WITH cur AS (SELECT CAST(service_name AS VARCHAR) AS service_name, name AS operation, {aggregate} \
                         FROM span_metrics WHERE {cur} GROUP BY 1, 2), \
                         base AS (SELECT CAST(service_name AS VARCHAR) AS service_name, name AS operation, {aggregate} \
                         FROM span_metrics WHERE {base} GROUP BY 1, 2) \
                         SELECT cur.service_name, cur.operation, cur.rate AS value \
                         FROM cur LEFT JOIN base ON cur.service_name = base.service_name AND cur.operation = base.operation \
                         WHERE cur.n >= {min_count} \
                         AND cur.rate >= coalesce(base.rate, 0) * {factor} \
                         AND cur.rate - coalesce(base.rate, 0) >= {rise}"
                    ),
                    None,
                    format!(
                        "{{{{ $labels.service_name }}}} {{{{ $labels.operation }}}}: error rate {{{{ $value }}}} \
                         in the last {}, at least {factor}x the {} before",
                        spec.window.as_deref().unwrap_or("5m"),
                        spec.baseline.as_deref().unwrap_or("1h")
                    ),
                )
            } else {
                let rise_ms = spec.min_rise.unwrap_or(50.0);
                let aggregate = "sum(count) AS n, exp_histogram_quantile(scale, zero_count, \
                                 positive_offset, positive_bucket_counts, 0.99) / 1e6 AS p99_ms";
                (
                    format!(
                        "WITH cur AS (SELECT CAST(service_name AS VARCHAR) AS service_name, name AS operation, {aggregate} \
                         FROM span_metrics WHERE {cur} GROUP BY 1, 2), \
                         base AS (SELECT CAST(service_name AS VARCHAR) AS service_name, name AS operation, {aggregate} \
                         FROM span_metrics WHERE {base} GROUP BY 1, 2) \
                         SELECT cur.service_name, cur.operation, cur.p99_ms AS value \
                         FROM cur JOIN base ON cur.service_name = base.service_name AND cur.operation = base.operation \
                         WHERE cur.n >= {min_count} AND base.n >= {min_count} \
                         AND cur.p99_ms >= base.p99_ms * {factor} \
                         AND cur.p99_ms - base.p99_ms >= {rise_ms}"
                    ),
                    None,
                    format!(
                        "{{{{ $labels.service_name }}}} {{{{ $labels.operation }}}}: p99 {{{{ $value }}}} ms \
                         in the last {}, at least {factor}x the {} before",
                        spec.window.as_deref().unwrap_or("5m"),
                        spec.baseline.as_deref().unwrap_or("1h")
                    ),
                )
            }
        }
        "probe_down" => {
            let window = dur(&spec.window, "1m", "window")?;
            (
                format!(
                    "SELECT CAST(service_name AS VARCHAR) AS service_name, \
                     last_value(value ORDER BY time) AS value FROM metrics \
                     WHERE name = 'up' AND time > {{{{ $now }}}} - {} AND time <= {{{{ $now }}}} \
                     GROUP BY 1",
                    interval_sql(window)
                ),
                Some("< 1"),
                "{{ $labels.service_name }}'s health probe is down".to_string(),
            )
        }
        "log_surge" => {
            let window = dur(&spec.window, "5m", "window")?;
            let w = window.as_millis();
            // The baseline is the window before; it is only complete when logs were already
            // arriving at its start (else, on a new store, every template looks new).
            let head = (w / 10).max(1);
            (
                format!(
                    "SELECT CAST(service_name AS VARCHAR) AS service_name, template, \
                     CAST(count AS DOUBLE) AS value \
                     FROM log_patterns({{{{ $now - {w}ms }}}}, {{{{ $now }}}}) \
                     WHERE status IN ('new', 'surging') AND count >= {min_count} \
                     AND CAST(service_name AS VARCHAR) <> 'scrydb' \
                     AND (SELECT count(*) FROM logs WHERE time >= {{{{ $now - {b}ms }}}} \
                          AND time < {{{{ $now - {c}ms }}}}) > 0",
                    b = 2 * w,
                    c = 2 * w - head
                ),
                None,
                "{{ $labels.service_name }}: {{ $value }} lines of a new or surging \
                 log pattern: {{ $labels.template }}"
                    .to_string(),
            )
        }
        other => {
            return Err(format!(
                "unknown built-in kind {other:?} (error_rate_jump, latency_jump, probe_down, \
                 log_surge)"
            ));
        }
    };
    let group = format!("builtin:{name}");
    let rule = spec.into_rule(name, expr, condition, &summary)?;
    Ok(Group {
        name: group,
        interval,
        timeout: interval.min(Duration::from_secs(30)),
        rules: vec![rule],
    })
}
