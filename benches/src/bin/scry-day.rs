//! `scry-day`: write amplification of compaction over a simulated day of live ingest.
//!
//! A day is `--partitions` time partitions (24 by default, like a day of hourly ones), each
//! `--partition-secs` of wall-clock time wide (10 s by default: the day runs in four
//! minutes). Spans are appended at a steady rate with the current time as their timestamp,
//! `--spans-per-partition` per partition, so each partition is written while it is open,
//! closes, and is compacted by the background thread (every `--compaction-secs`) exactly as
//! a store under `scry serve` would be — in 1/360 of the time. After the last partition
//! closes and compaction settles, it reports the Parquet bytes flushes wrote, the bytes
//! merges rewrote, write amplification `(flushed + rewritten) / flushed`, the segments left
//! per partition and the peak RSS of the process.
//!
//! ```text
//! cargo run --release -p scrydb-benches --bin scry-day
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use scrydb::{Db, Options, Signal};
use scrydb_workload::{Rng, synth};

#[derive(Parser)]
#[command(
    name = "scry-day",
    about = "Write amplification of compaction over a simulated day"
)]
struct Cli {
    /// Store directory [default: a new temporary directory under `.`].
    #[arg(long)]
    db: Option<PathBuf>,
    /// Partitions in the day.
    #[arg(long, default_value_t = 24)]
    partitions: u64,
    /// Wall-clock width of a partition, in seconds.
    #[arg(long, default_value_t = 10)]
    partition_secs: u64,
    /// Spans appended per partition.
    #[arg(long, default_value_t = 400_000)]
    spans_per_partition: u64,
    /// Spans per append.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Memtable size in MiB.
    #[arg(long, default_value_t = 64)]
    memtable_mib: usize,
    /// How often background compaction looks for work, in seconds.
    #[arg(long, default_value_t = 1)]
    compaction_secs: u64,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> ExitCode {
    env_logger::init();
    let cli = Cli::parse();
    let tmp;
    let dir = match &cli.db {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir_in(".").expect("temporary directory");
            tmp.path().to_path_buf()
        }
    };
    let width = Duration::from_secs(cli.partition_secs);
    let opts = Options::default()
        .partition_duration(width)
        .memtable_size(cli.memtable_mib << 20)
        .compaction_interval(Duration::from_secs(cli.compaction_secs));
    let db = match Db::open(&dir, opts) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("scry-day: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Start at a partition boundary so that each partition gets its share.
    let w = i64::try_from(width.as_nanos()).expect("width");
    while now_ns() % w > w / 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let total = cli.partitions * cli.spans_per_partition;
    let per_sec = cli.spans_per_partition as f64 / cli.partition_secs as f64;
    let mut rng = Rng::new(0xDA7);
    let mut sent = 0u64;
    println!(
        "scry-day: {} partitions of {} s, {} spans each ({:.0} spans/s), memtable {} MiB",
        cli.partitions, cli.partition_secs, cli.spans_per_partition, per_sec, cli.memtable_mib
    );
    while sent < total {
        let due = (started.elapsed().as_secs_f64() * per_sec) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let n = (cli.batch as u64).min(total - sent) as usize;
        let batch = synth::spans(&mut rng, n, now_ns());
        if let Err(e) = db.append(Signal::Spans, &batch) {
            eprintln!("scry-day: append: {e}");
            return ExitCode::FAILURE;
        }
        sent += n as u64;
    }
    let ingest = started.elapsed();
    if let Err(e) = db.flush() {
        eprintln!("scry-day: flush: {e}");
        return ExitCode::FAILURE;
    }
    // The last partition closes one width after it ends; then one more pass.
    std::thread::sleep(width * 2 + Duration::from_secs(cli.compaction_secs * 3));
    let s = db.write_stats();
    let parts = db.snapshot().partition_stats();
    let mut per_part: Vec<usize> = parts.iter().map(|p| p.segments).collect();
    per_part.sort_unstable();
    let rows: u64 = parts.iter().map(|p| p.rows).sum();
    let bytes: u64 = parts.iter().map(|p| p.bytes).sum();
    let wa = (s.flushed_bytes + s.rewritten_bytes) as f64 / s.flushed_bytes.max(1) as f64;
    println!(
        "ingested {sent} spans in {:.1} s; {} flushes wrote {:.1} MB, {} merges rewrote {:.1} MB: \
         write amplification {wa:.2} (of segment bytes; the log adds 1 write of the raw rows)",
        ingest.as_secs_f64(),
        s.flushes,
        s.flushed_bytes as f64 / 1e6,
        s.merges,
        s.rewritten_bytes as f64 / 1e6,
    );
    println!(
        "{} partitions, {} segments (per partition: min {}, median {}, max {}), {rows} rows, \
         {:.1} MB; peak RSS {:.0} MiB",
        parts.len(),
        s.segments,
        per_part.first().copied().unwrap_or(0),
        per_part.get(per_part.len() / 2).copied().unwrap_or(0),
        per_part.last().copied().unwrap_or(0),
        bytes as f64 / 1e6,
        peak_rss_mib()
    );
    if rows != sent {
        eprintln!("scry-day: the store holds {rows} spans, {sent} were appended");
        return ExitCode::FAILURE;
    }
    match db.close() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scry-day: close: {e}");
            ExitCode::FAILURE
        }
    }
}
