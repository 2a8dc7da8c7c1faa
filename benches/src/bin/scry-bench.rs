//! `scry-bench`: the benchmark harness against DuckDB (see `docs/benchmarks.md`).
//!
//! ```sh
//! cargo run --release -p scrydb-benches --bin scry-bench -- --spans 1000000
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use scrydb_benches::harness::{self, BenchArgs};

/// The allocator the `scry` binary uses, so that ingest numbers are the CLI's: OTLP
/// decoding allocates every string and list.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The benchmark harness: ingest a workload (Arrow API and OTLP), measure storage, trace
/// lookups and analytics queries, and run the same on DuckDB over the same data. Prints a
/// table and writes JSON.
#[derive(Parser)]
#[command(name = "scry-bench")]
struct Cli {
    /// Store directory, kept after the run [default: a temporary directory under the
    /// current one, removed at the end].
    #[arg(long)]
    db: Option<PathBuf>,
    /// Spans to ingest (10M for the full run).
    #[arg(long, default_value_t = 1_000_000)]
    spans: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
    /// Trace lookups to time (present and absent each).
    #[arg(long, default_value_t = 1000)]
    lookups: usize,
    /// Skip the DuckDB side.
    #[arg(long)]
    no_duckdb: bool,
    /// Skip the chDB side (needs `chdb` from PyPI in the harness's Python:
    /// `target/venv/bin/pip install -r benches/py/requirements.txt`).
    #[arg(long)]
    no_chdb: bool,
    /// Ingest without background compaction, then compact and measure the lookups and
    /// queries again (before vs after compaction).
    #[arg(long)]
    compaction: bool,
    /// Only look up this many traces, through `Db::trace` and through SQL, in the existing
    /// store `--db` (opened read-only), and print their latencies: a loop to run under
    /// `perf record` (this binary keeps its symbols).
    #[arg(long, requires = "db")]
    lookups_only: Option<usize>,
    /// Only ingest `--spans` spans as OTLP protobuf into a fresh store (in `--db` or a
    /// temporary directory) and print each stage's time per span: a loop for `perf record`.
    #[arg(long, conflicts_with = "lookups_only")]
    otlp_only: bool,
    /// Run the search benchmark instead: this many log records with realistic bodies,
    /// ingested with and without term indexes (in `--db` or a temporary directory), then
    /// searched with the index, with a scan and on DuckDB (`ILIKE`, and `fts` when
    /// `duckdb-ext-fts` is installed). `--json` names its results file.
    #[arg(long, conflicts_with_all = ["lookups_only", "otlp_only"])]
    search: Option<usize>,
    /// Runs of each search (p50 and p99 over them).
    #[arg(long, default_value_t = 20)]
    search_runs: usize,
    /// Run the trace-analysis benchmark instead: `critical_path` and `trace_stats` on a
    /// 1,000- and a 10,000-span trace (a store in `--db` or a temporary directory), and
    /// `compare` over the last hour of `--analysis-store` when given.
    #[arg(long, conflicts_with_all = ["lookups_only", "otlp_only", "search"])]
    analysis: bool,
    /// An existing store (such as the harness's 10M spans) for `--analysis`'s `compare`.
    #[arg(long, requires = "analysis")]
    analysis_store: Option<PathBuf>,
    /// Run the web UI benchmark instead: every route of the UI over this existing store
    /// (opened read-only), p50 and p99 over `--ui-runs` loopback requests each. `--json`
    /// names its results file.
    #[arg(long, value_name = "STORE", conflicts_with_all = ["lookups_only", "otlp_only", "search", "analysis"])]
    ui: Option<PathBuf>,
    /// Run the alerting and MCP benchmark instead: each built-in alert rule's query and
    /// each MCP tool over this existing store (opened read-only), p50 and p99 over
    /// `--agent-runs` calls. `--json` names its results file.
    #[arg(long, value_name = "STORE", conflicts_with_all = ["lookups_only", "otlp_only", "search", "analysis", "ui"])]
    agents: Option<PathBuf>,
    /// Calls of each rule query and tool.
    #[arg(long, default_value_t = 10)]
    agent_runs: usize,
    /// Run the object-storage benchmark instead: this existing store's files are uploaded
    /// under --s3-url (once), then trace lookups and a RED query run on local disk and on
    /// the objects (no cache, and a warm cache). The endpoint and keys come from the
    /// AWS_* variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
    #[arg(long, value_name = "STORE", requires = "s3_url", conflicts_with_all = ["lookups_only", "otlp_only", "search", "analysis", "ui", "agents"])]
    remote: Option<PathBuf>,
    /// Where `--remote` puts the store: s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    s3_url: Option<String>,
    /// Trace lookups (and RED queries, at most 10) of `--remote`.
    #[arg(long, default_value_t = 20)]
    remote_runs: usize,
    /// Requests of each UI route.
    #[arg(long, default_value_t = 20)]
    ui_runs: usize,
    /// Time only this UI route (a path with its query string; repeatable) instead of the
    /// default set.
    #[arg(long, requires = "ui")]
    ui_route: Vec<String>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    scrydb::tune_allocator();
    scrydb::tune_mimalloc();
    let args = BenchArgs {
        spans: cli.spans,
        seed: cli.seed,
        json: cli.json,
        duckdb: !cli.no_duckdb,
        chdb: !cli.no_chdb,
        lookups: cli.lookups.max(10),
        compaction: cli.compaction,
    };
    // The store goes under the current directory, not /tmp: /tmp may be a small tmpfs.
    let tmp;
    let dir = match cli.db {
        Some(d) => d,
        None => match tempfile::tempdir_in(".") {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("error: create a temporary directory in .: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    if cli.otlp_only {
        return match harness::otlp_only(&dir, cli.spans, cli.seed) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(n) = cli.search {
        let a = scrydb_benches::search_bench::SearchArgs {
            logs: n,
            seed: cli.seed,
            json: args.json.clone(),
            duckdb: args.duckdb,
            runs: cli.search_runs.max(1),
        };
        return match scrydb_benches::search_bench::run(&dir, &a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let (Some(store), Some(url)) = (&cli.remote, &cli.s3_url) {
        return match scrydb_benches::remote_bench::run(
            store,
            url,
            cli.remote_runs.max(1),
            &args.json,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(store) = &cli.agents {
        return match scrydb_benches::agent_bench::run(store, cli.agent_runs.max(1), &args.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(store) = &cli.ui {
        return match scrydb_benches::ui_bench::run(
            store,
            cli.ui_runs.max(1),
            &cli.ui_route,
            &args.json,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.analysis {
        let store = cli.analysis_store.as_deref();
        return match scrydb_benches::analysis_bench::run(&dir, store, 20) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(n) = cli.lookups_only {
        return match harness::lookups_only(&dir, n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match harness::run(&dir, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
