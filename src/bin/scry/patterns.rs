//! `scry patterns`: the log templates of a window against the window before it
//! ([`scrydb::Snapshot::log_patterns`]), new and surging ones first.

use scrydb::search::log_patterns::{LogPattern, PatternChange};
use scrydb::{Signal, TimeRange};

use crate::search::{TimeArgs, now_ns};

/// What `scry patterns` was asked. Without --since or --from, the window is the hour that
/// ends with the newest log; --to defaults to now (or just after the newest log).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub time: TimeArgs,
    /// Only templates of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Most templates printed.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    /// Print one example line under each template.
    #[arg(long)]
    pub examples: bool,
}

const HOUR_NS: i64 = 3_600_000_000_000;

/// The window `args` describe; `None` when the store has no log and no time was given.
fn window(db: &scrydb::Db, args: &Args) -> Result<Option<TimeRange>, String> {
    let range = match args.time.bounds()? {
        (Some(from), to) => TimeRange::new(from, to.unwrap_or_else(now_ns)),
        (None, to) => {
            let end = match to {
                Some(t) => t,
                None => match db.snapshot().newest_time(Signal::Logs) {
                    Ok(Some(t)) => t.saturating_add(1),
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e.to_string()),
                },
            };
            TimeRange::new(end.saturating_sub(HOUR_NS), end)
        }
    };
    if range.start >= range.end {
        return Err("the window is empty: its start is not before its end".into());
    }
    Ok(Some(range))
}

fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn change(p: &LogPattern) -> String {
    match (p.status, p.change) {
        (PatternChange::NoBaseline, _) | (_, None) => "-".into(),
        (_, Some(x)) if x >= 10.0 => format!("x{x:.0}"),
        (_, Some(x)) => format!("x{x:.1}"),
    }
}

/// Prints the patterns; `Ok(false)` when the request was refused (the error is printed).
pub fn run(db: &scrydb::Db, args: &Args) -> scrydb::Result<bool> {
    let w = match window(db, args) {
        Ok(Some(w)) => w,
        Ok(None) => {
            say!("no logs in the store");
            return Ok(true);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    let patterns = db.snapshot().log_patterns(w, None)?;
    let shown: Vec<&LogPattern> = patterns
        .iter()
        .filter(|p| args.service.as_ref().is_none_or(|s| &p.service == s))
        .collect();
    let len = w.end.saturating_sub(w.start);
    say!(
        "log patterns {} .. {} against the {} before ({} templates{})",
        time(w.start),
        time(w.end),
        if len % HOUR_NS == 0 {
            format!("{}h", len / HOUR_NS)
        } else {
            format!("{}s", len / 1_000_000_000)
        },
        shown.len(),
        if shown.len() > args.limit {
            format!(", first {}", args.limit)
        } else {
            String::new()
        }
    );
    if shown.is_empty() {
        return Ok(true);
    }
    say!(
        "{:<11} {:>7} {:>9} {:>9}  {:<16} TEMPLATE",
        "STATUS",
        "CHANGE",
        "COUNT",
        "BEFORE",
        "SERVICE"
    );
    for p in shown.iter().take(args.limit) {
        say!(
            "{:<11} {:>7} {:>9} {:>9}  {:<16} {}",
            p.status.as_str(),
            change(p),
            p.count,
            p.baseline_count,
            p.service,
            p.template
        );
        if args.examples {
            say!("{:>58}e.g. {}", "", p.example);
        }
    }
    Ok(true)
}
