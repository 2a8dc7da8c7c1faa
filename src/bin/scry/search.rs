//! `scry search [--spans] 'QUERY'`: the search syntax (`scrydb::sql::search`) over logs or
//! spans, newest first, bounded, with the trace id so `scry trace` follows.

use std::time::{SystemTime, UNIX_EPOCH};

use scrydb::sql::search::{SearchRequest, Target};

use crate::sql::{Outcome, OutputFormat, run_query};

/// What `scry search` was asked.
#[derive(clap::Args)]
pub struct Args {
    /// The query, e.g. 'service:checkout "connection refused" -retry'.
    pub query: String,
    /// Search spans instead of logs.
    #[arg(long)]
    pub spans: bool,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Most matches printed.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print the SQL the query compiles to first.
    #[arg(long)]
    pub show_sql: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

/// The time window of a command: `--since`, or `--from` and `--to`.
#[derive(clap::Args)]
pub struct TimeArgs {
    /// Only the last this long before --to (default: now): 90s, 15m, 1h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// From this time on (RFC 3339 or ns since the epoch).
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (RFC 3339 or ns since the epoch).
    #[arg(long)]
    pub to: Option<String>,
}

impl TimeArgs {
    /// (from, to) in ns since the epoch, each if given; `--since` counts back from `--to`
    /// or now.
    pub fn bounds(&self) -> Result<(Option<i64>, Option<i64>), String> {
        let to = self
            .to
            .as_deref()
            .map(|t| parse_time("--to", t))
            .transpose()?;
        let from = match (&self.since, &self.from) {
            (Some(_), Some(_)) => return Err("give --since or --from, not both".into()),
            (Some(since), None) => Some(
                to.unwrap_or_else(now_ns)
                    .saturating_sub(parse_since(since)?),
            ),
            (None, Some(from)) => Some(parse_time("--from", from)?),
            (None, None) => None,
        };
        Ok((from, to))
    }
}

/// A time argument in ns since the epoch: RFC 3339 (`2025-11-25T10:00:00Z`) or ns.
fn parse_time(what: &str, s: &str) -> Result<i64, String> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!("{what} `{s}` is not a time: RFC 3339 (2025-11-25T10:00:00Z) or nanoseconds")
        })
}

/// `--since` as nanoseconds: `90s`, `15m`, `1h`, `7d`.
fn parse_since(s: &str) -> Result<i64, String> {
    let bad = || format!("--since `{s}` is not a duration such as 90s, 15m, 1h or 7d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let scale: i64 = match unit {
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// The clock, in ns since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The request `args` describe.
fn request(args: &Args) -> Result<SearchRequest, String> {
    let target = if args.spans {
        Target::Spans
    } else {
        Target::Logs
    };
    let mut r = SearchRequest::new(args.query.clone(), target);
    r.limit = args.limit.max(1);
    (r.from_ns, r.to_ns) = args.time.bounds()?;
    Ok(r)
}

/// Runs the search and prints the matches; `Ok(false)` when the query was refused or
/// failed (the error is printed).
pub fn run(db: &scrydb::Db, args: &Args) -> scrydb::Result<bool> {
    let r = match request(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    let statement = match r.sql() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}\n{}", e.render(&args.query));
            return Ok(false);
        }
    };
    let columns = match r.target {
        Target::Logs => "time, service_name, severity_text, body, trace_id",
        Target::Spans => {
            "time, service_name, name, duration_ms(duration_ns) AS duration_ms, status_code, trace_id"
        }
    };
    let display = format!("SELECT {columns} FROM ({statement}) ORDER BY time DESC");
    if args.show_sql {
        println!("{statement}");
    }
    let session = match db.session() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    Ok(matches!(
        run_query(session, &display, args.format),
        Outcome::Ok | Outcome::OutputClosed
    ))
}
