//! `scry alerts`: the store's firing and pending alerts and recent changes, or a check of
//! a rules file.

use std::path::Path;
use std::time::Duration;

use scrydb::Options;
use scrydb::alert::{self, Alert, RuleSet};

fn when(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn labels(a: &Alert) -> String {
    a.labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lists alerts, or checks `check`; `Ok(false)` on a refused file or a failed query.
pub fn run(
    dir: &Path,
    since: Duration,
    limit: usize,
    check: Option<&Path>,
) -> scrydb::Result<bool> {
    let db = crate::open_read(dir, Options::default())?;
    if let Some(path) = check {
        return Ok(
            match RuleSet::load(path).and_then(|set| {
                set.check(&db, &path.display().to_string())?;
                Ok(set)
            }) {
                Ok(set) => {
                    say_part!("{}", alert::describe(&set));
                    say!("{}: ok", path.display());
                    true
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    false
                }
            },
        );
    }
    let current = match alert::current(&db) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    let from = alert::now_ns().saturating_sub(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    let recent = match alert::history(&db, Some(from), limit) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    if current.is_empty() {
        say!("no firing or pending alerts");
    } else {
        say!("{} current alert(s):", current.len());
        for a in &current {
            let since = a.fired.or(a.started).unwrap_or(a.time);
            let value = if a.value.is_nan() {
                String::new()
            } else {
                format!(" value={}", alert::format_value(a.value))
            };
            say!(
                "  {:<8} {:<24} since {} {}{value}",
                a.state.as_str(),
                a.rule,
                when(since),
                labels(a)
            );
            if let Some(e) = &a.error {
                say!("           error: {e}");
            } else if let Some(s) = a.annotations.get("summary") {
                say!("           {s}");
            }
        }
    }
    say!();
    if recent.is_empty() {
        say!("no changes in the last {}", humanize(since));
    } else {
        let shown = if recent.len() >= limit {
            format!(", the newest {limit}; --limit shows more")
        } else {
            String::new()
        };
        say!(
            "changes in the last {} (oldest first{shown}):",
            humanize(since)
        );
        for a in &recent {
            say!(
                "  {} {:<8} {:<24} {}",
                when(a.time),
                a.state.as_str(),
                a.rule,
                labels(a)
            );
        }
    }
    Ok(true)
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86400) && s > 0 {
        format!("{}d", s / 86400)
    } else if s.is_multiple_of(3600) && s > 0 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
