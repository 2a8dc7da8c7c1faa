//! `scry export`: stored rows out as OTLP files that `scry ingest` (or any OTLP consumer)
//! reads back ([`scrydb::sql::export`], [`scrydb::otlp::export`]).

use std::io::Write;
use std::path::PathBuf;

use scrydb::Signal;
use scrydb::otlp::export::{DEFAULT_MAX_RECORDS, ExportFormat, ExportOptions};
use scrydb::sql::export::Selection;

/// What `scry export` was asked.
#[derive(clap::Args)]
pub struct Args {
    /// Trace ids (32 hex digits each): export every span of these traces and every log
    /// record carrying their ids.
    #[arg(value_name = "TRACE_ID", required_unless_present = "predicate")]
    pub trace_ids: Vec<String>,
    /// Export the rows of one table (--signal) for which this SQL predicate holds, e.g.
    /// "service_name = 'cart' AND time > now() - INTERVAL '1 hour'" (or "true" for all).
    #[arg(long = "where", value_name = "PREDICATE", conflicts_with = "trace_ids")]
    pub predicate: Option<String>,
    /// The table --where selects from [default: spans].
    #[arg(long, value_enum, requires = "predicate")]
    pub signal: Option<Table>,
    /// Output encoding: json (OTLP/JSON, one request per line) or protobuf (each request
    /// prefixed with its 4-byte big-endian length).
    #[arg(long, value_enum, default_value = "json")]
    pub format: OutputFormat,
    /// Write to this file instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Most records (spans, log records, data points) per request.
    #[arg(long, default_value_t = DEFAULT_MAX_RECORDS, hide = true)]
    pub max_records: usize,
}

/// A table to export from.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Table {
    /// `spans`.
    Spans,
    /// `logs`.
    Logs,
    /// `metrics`.
    Metrics,
}

/// How `scry export` encodes requests.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    /// OTLP/JSON lines.
    Json,
    /// Length-prefixed protobuf.
    Protobuf,
}

/// Writes the selected rows and prints what was written on stderr; `Ok(false)` on a bad
/// argument or query, or when no row of the given traces exists (said on stderr).
pub fn run(db: &scrydb::Db, args: &Args) -> scrydb::Result<bool> {
    let selection = match &args.predicate {
        Some(p) => Selection::predicate(
            match args.signal.unwrap_or(Table::Spans) {
                Table::Spans => Signal::Spans,
                Table::Logs => Signal::Logs,
                Table::Metrics => Signal::Metrics,
            },
            p.clone(),
        ),
        None => {
            let mut ids = Vec::new();
            for hex in &args.trace_ids {
                match scrydb::parse_trace_id(hex) {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Ok(false);
                    }
                }
            }
            Selection::Traces(ids)
        }
    };
    let session = match db.session() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    // The selection is checked before the output file is created: a bad predicate must
    // not truncate a file that is already there.
    if let Err(e) = selection.statements(session.max_expression_depth()) {
        eprintln!("error: {e}");
        return Ok(false);
    }
    let out: Box<dyn Write + Send> = match &args.output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("error: create {}: {e}", path.display());
                return Ok(false);
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let options = ExportOptions {
        format: match args.format {
            OutputFormat::Json => ExportFormat::JsonLines,
            OutputFormat::Protobuf => ExportFormat::Protobuf,
        },
        max_records: args.max_records,
        ..ExportOptions::default()
    };
    let exported = match scrydb::sql::export::export_blocking(session, &selection, out, options) {
        Ok((_, exported)) => exported,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    let r = exported.records;
    eprintln!(
        "exported {} spans, {} log records, {} data points in {} request(s), {} bytes{}",
        r.spans,
        r.logs,
        r.metrics,
        exported.requests,
        exported.bytes,
        args.output
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
    if matches!(selection, Selection::Traces(_)) && r.total() == 0 {
        eprintln!(
            "error: no span or log record of trace {} is stored",
            args.trace_ids.join(", ")
        );
        return Ok(false);
    }
    Ok(true)
}
