//! `scry compare`: what is over-represented in a selection of spans against a baseline
//! ([`scrydb::sql::compare`]).

use crate::search::TimeArgs;

/// What `scry compare` was asked.
#[derive(clap::Args)]
pub struct Args {
    /// The selection: a SQL predicate over `spans`, e.g. "duration_ns > 500e6" or
    /// "status_code = 'ERROR'".
    #[arg(long = "where", value_name = "PREDICATE")]
    pub selection: String,
    /// The baseline: a SQL predicate over `spans` (default: every span in the time range
    /// that the selection does not hold).
    #[arg(long, value_name = "PREDICATE")]
    pub baseline: Option<String>,
    /// Both sets only within this time range.
    #[command(flatten)]
    pub time: TimeArgs,
    /// Most values printed.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the SQL statements that count the two sets.
    #[arg(long)]
    pub show_sql: bool,
}

/// Prints the ranked differences; `Ok(false)` on a bad argument or query (said on stderr).
pub fn run(db: &scrydb::Db, args: &Args) -> scrydb::Result<bool> {
    use scrydb::sql::compare;
    let (from, to) = match args.time.bounds() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    use scrydb::diagnose::sql_timestamp_literal;
    let mut time = String::new();
    if let Some(f) = from {
        time.push_str(&format!(" AND time >= {}", sql_timestamp_literal(f)));
    }
    if let Some(t) = to {
        time.push_str(&format!(" AND time < {}", sql_timestamp_literal(t)));
    }
    if args.limit == 0 {
        eprintln!("error: --limit must be at least 1");
        return Ok(false);
    }
    // Each predicate is checked as one expression (and parenthesized) before the time
    // range is added to it.
    let depth = scrydb::sql::SessionOptions::default().max_expression_depth;
    let checked = |what: &str, p: &str| compare::predicate(what, p, depth);
    let (selection, baseline) = match (
        checked("selection", &args.selection),
        args.baseline
            .as_deref()
            .map(|b| checked("baseline", b))
            .transpose(),
    ) {
        (Ok(s), Ok(b)) => {
            let b = b.unwrap_or_else(|| compare::complement(&s));
            (format!("{s}{time}"), format!("{b}{time}"))
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    if args.show_sql {
        say!("{}", compare::counting_sql(&selection));
        say!("{}", compare::counting_sql(&baseline));
    }
    let session = match db.session() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    let rows = match scrydb::sql::block_on(compare::compare(
        session,
        &selection,
        Some(&baseline),
        args.limit,
    )) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    if rows.is_empty() {
        say!("nothing is over-represented in the selection (or it is empty)");
        return Ok(true);
    }
    say!(
        "{:>6} {:>9} {:>9}  {:<40} VALUE",
        "SCORE",
        "SELECTED",
        "BASELINE",
        "DIMENSION"
    );
    for r in &rows {
        say!(
            "{:>6.3} {:>8.1}% {:>8.1}%  {:<40} {} ({} / {})",
            r.score,
            r.selection_share * 100.0,
            r.baseline_share * 100.0,
            r.dimension,
            r.value,
            r.selection_count,
            r.baseline_count
        );
    }
    Ok(true)
}
