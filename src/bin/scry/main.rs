//! `scry`: the ScryDB command-line tool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

mod ingest;
mod sql;

/// OTLP decoding allocates every string and list of a request; mimalloc makes that about a
/// third cheaper than the system allocator (see `benches/benches/otlp.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use scrydb::synth::{self, Rng};
use scrydb::{Db, Options, Signal};

#[derive(Parser)]
#[command(
    name = "scry",
    version,
    about = "ScryDB: embedded OpenTelemetry database"
)]
struct Cli {
    /// Database directory.
    #[arg(long, global = true, env = "SCRY_DB", default_value = "./scry-data")]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate synthetic spans, logs and metrics, ingest them through the durable write
    /// path, flush, and report throughput and storage.
    Synth {
        /// Spans to generate.
        #[arg(long, default_value_t = 1_000_000)]
        spans: usize,
        /// Log records to generate (default: half the spans).
        #[arg(long)]
        logs: Option<usize>,
        /// Metric points to generate (default: a tenth of the spans).
        #[arg(long)]
        metrics: Option<usize>,
        /// Rows per appended batch.
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Store OTLP files: `.json` (OTLP/JSON), `.jsonl` (one request per line, as the
    /// Collector's file exporter writes), `.pb`/`.binpb` (protobuf), `-` for stdin. The
    /// signal is told from the content. Valid records are stored even when others are
    /// rejected; the exit code is non-zero if anything was rejected or unreadable.
    Ingest {
        /// Files to read; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Input format, when the file name does not say (default: from the extension,
        /// else from the content).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// The signal of protobuf input, when the content cannot tell it.
        #[arg(long, value_enum)]
        signal: Option<SignalArg>,
    },
    /// Run SQL over the tables spans, logs and metrics; with no query, an interactive
    /// prompt with history.
    Sql {
        /// The query; omit it for the interactive prompt.
        query: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: sql::OutputFormat,
    },
    /// Show segments, rows and bytes per signal and partition.
    Info,
    /// Check every segment against the checksum the manifest recorded.
    Verify,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Json,
    Jsonl,
    Protobuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum SignalArg {
    Traces,
    Logs,
    Metrics,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; `Ok(false)` when it finished but reported errors.
fn run(cli: Cli) -> scrydb::Result<bool> {
    match cli.command {
        Command::Ingest {
            files,
            format,
            signal,
        } => {
            let format = format.map(|f| match f {
                FormatArg::Json => scrydb::otlp::Format::Json,
                FormatArg::Jsonl => scrydb::otlp::Format::JsonLines,
                FormatArg::Protobuf => scrydb::otlp::Format::Protobuf,
            });
            let signal = signal.map(|s| match s {
                SignalArg::Traces => Signal::Spans,
                SignalArg::Logs => Signal::Logs,
                SignalArg::Metrics => Signal::Metrics,
            });
            let db = Db::open(&cli.db, Options::default())?;
            let ok = ingest::run(&db, &files, format, signal)?;
            db.close()?;
            Ok(ok)
        }
        Command::Synth {
            spans,
            logs,
            metrics,
            batch,
            seed,
        } => synth_cmd(
            &cli.db,
            spans,
            logs.unwrap_or(spans / 2),
            metrics.unwrap_or(spans / 10),
            batch.max(1),
            seed,
        )
        .map(|()| true),
        Command::Sql { query, format } => {
            let db = Db::open(&cli.db, Options::default())?;
            let session = match scrydb::SqlExt::session(&db) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(false);
                }
            };
            let ok = match query {
                Some(q) => sql::run_query(&session, &q, format),
                None => match sql::repl(&session, format) {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("error: {e}");
                        false
                    }
                },
            };
            drop(session);
            db.close()?;
            Ok(ok)
        }
        Command::Info => {
            let db = Db::open(&cli.db, Options::default())?;
            print_info(&db);
            db.close().map(|()| true)
        }
        Command::Verify => {
            let db = Db::open(&cli.db, Options::default())?;
            let n = db.verify()?;
            println!("{n} segments verified");
            db.close().map(|()| true)
        }
    }
}

fn synth_cmd(
    dir: &PathBuf,
    spans: usize,
    logs: usize,
    metrics: usize,
    batch: usize,
    seed: u64,
) -> scrydb::Result<()> {
    let db = Db::open(dir, Options::default())?;
    let mut rng = Rng::new(seed);
    let base = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - 3_600_000_000_000;
    println!("ingesting into {} ...", dir.display());
    for (signal, total) in [
        (Signal::Spans, spans),
        (Signal::Logs, logs),
        (Signal::Metrics, metrics),
    ] {
        if total == 0 {
            continue;
        }
        // Generate first so the timing below is the database's, not the generator's.
        let batches: Vec<_> = (0..total)
            .step_by(batch)
            .map(|start| {
                let n = batch.min(total - start);
                synth::batch(signal, &mut rng, n, base + start as i64 * 10_000)
            })
            .collect();
        let t = Instant::now();
        for b in &batches {
            db.append(signal, b)?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  {signal:<8} {total:>10} rows in {secs:>6.2} s  = {:>9.0} rows/s (durable appends, {batch} rows per batch)",
            total as f64 / secs
        );
    }
    let t = Instant::now();
    db.flush()?;
    println!("flush to Parquet: {:.2} s", t.elapsed().as_secs_f64());
    print_info(&db);
    db.close()
}

fn print_info(db: &Db) {
    let snap = db.snapshot();
    println!(
        "database {} (manifest {})",
        db.path().display(),
        snap.manifest_version()
    );
    println!(
        "{:<8} {:>9} {:>12} {:>14} {:>10} {:>12}",
        "signal", "segments", "rows", "bytes", "bytes/row", "unflushed"
    );
    for signal in Signal::ALL {
        let s = snap.stats(signal);
        let per_row = if s.segment_rows > 0 {
            format!("{:.1}", s.segment_bytes as f64 / s.segment_rows as f64)
        } else {
            "-".into()
        };
        println!(
            "{:<8} {:>9} {:>12} {:>14} {:>10} {:>12}",
            signal.name(),
            s.segments,
            s.segment_rows,
            s.segment_bytes,
            per_row,
            s.memtable_rows
        );
    }
    let mut partitions: BTreeMap<(Signal, i64), (usize, u64)> = BTreeMap::new();
    for signal in Signal::ALL {
        for seg in snap.segments(signal, None) {
            let e = partitions.entry((signal, seg.partition_start)).or_default();
            e.0 += 1;
            e.1 += seg.rows;
        }
    }
    if !partitions.is_empty() {
        println!("partitions:");
        for ((signal, start), (segs, rows)) in partitions {
            println!(
                "  {:<8} {}  {segs} segment(s), {rows} rows",
                signal.name(),
                scrydb::partition::partition_dir_name(start)
            );
        }
    }
}
