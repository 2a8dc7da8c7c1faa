//! `scry`: the ScryDB command-line tool.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

#[macro_use]
mod out;
mod alerts;
mod compare;
mod demo;
mod export;
mod ingest;
mod patterns;
mod search;
mod serve;
mod sql;
mod tail;
mod trace;
mod ui;

/// OTLP decoding allocates every string and list of a request; mimalloc makes that about a
/// third cheaper than the system allocator (see `benches/benches/otlp.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use scrydb::{Db, Options, Signal};
use scrydb_workload::synth::{self, Rng};

#[derive(Parser)]
#[command(
    name = "scry",
    version,
    about = "ScryDB: embedded OpenTelemetry database"
)]
struct Cli {
    /// Database directory [default: ./scry-data; `scry demo`: a new temporary directory, kept].
    /// Read commands (sql, trace, info) open it read-only, also beside a running writer, and
    /// refuse a directory that holds no store; writing commands create it.
    #[arg(long, global = true, env = "SCRY_DB")]
    db: Option<PathBuf>,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where a store's shared files live when not in `--db` (docs/scale-out.md).
#[derive(clap::Args, Clone, Debug, Default)]
struct RemoteArgs {
    /// Keep the store's manifest, segments and indexes in S3-compatible object storage at
    /// this URL (s3://bucket/prefix); --db is then the local directory of the log, the lock
    /// and the cache. Read commands take it several times: one view of several writers'
    /// stores. The connection comes from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, AWS_ALLOW_HTTP).
    #[arg(long, global = true, env = "SCRY_REMOTE", value_name = "URL")]
    remote: Vec<String>,
    /// Read commands: every writer's store directly under this prefix (s3://bucket/fleet),
    /// read as one store; writers that start later join at the next refresh.
    #[arg(long, global = true, value_name = "URL")]
    writers_under: Vec<String>,
    /// Writers: take the prefix's writer lease from another writer that is gone for good.
    #[arg(long, global = true)]
    take_over: bool,
    /// Most bytes of the local cache of remote files.
    #[arg(long, global = true, default_value = "1GiB", value_parser = serve::parse_size)]
    cache_size: usize,
}

static REMOTE: std::sync::OnceLock<RemoteArgs> = std::sync::OnceLock::new();

fn remote_opts(r: &RemoteArgs) -> scrydb::remote::RemoteOptions {
    let mut o = scrydb::remote::RemoteOptions::default();
    o.cache_bytes = r.cache_size as u64;
    o.take_over = r.take_over;
    o
}

fn remote_store(url: &str) -> scrydb::Result<scrydb::remote::RemoteStore> {
    scrydb::remote::RemoteStore::s3(url, &scrydb::remote::S3Options::from_env())
}

/// Opens the store of `--db` (and `--remote`, `--writers-under`) for reading: a local
/// directory, one store in object storage, or a view of several.
pub fn open_read(dir: &std::path::Path, opts: Options) -> scrydb::Result<Db> {
    let r = REMOTE.get().cloned().unwrap_or_default();
    match (r.remote.as_slice(), r.writers_under.is_empty()) {
        ([], true) => Db::open_read_only(dir, opts),
        ([one], true) => Db::open_remote_read_only(dir, remote_store(one)?, remote_opts(&r), opts),
        (many, _) => {
            let mut view = scrydb::remote::View::new();
            for url in many {
                view = view.remote(remote_store(url)?);
            }
            for url in &r.writers_under {
                view = view.writers_under(remote_store(url)?);
            }
            Db::open_view(dir, &view, remote_opts(&r), opts)
        }
    }
}

/// Opens the store of `--db` (and `--remote`) for writing.
pub fn open_write(dir: &std::path::Path, opts: Options) -> scrydb::Result<Db> {
    let r = REMOTE.get().cloned().unwrap_or_default();
    if !r.writers_under.is_empty() {
        return Err(scrydb::Error::InvalidOptions {
            option: "writers-under",
            reason: "a view of several writers is read-only; a writer takes one --remote"
                .to_string(),
        });
    }
    match r.remote.as_slice() {
        [] => Db::open(dir, opts),
        [one] => Db::open_remote(dir, remote_store(one)?, remote_opts(&r), opts),
        _ => Err(scrydb::Error::InvalidOptions {
            option: "remote",
            reason: "a writer writes one store: give one --remote".to_string(),
        }),
    }
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The scheduler: plans the queries `scry sql --cluster` sends and hands their stages
    /// to the executors.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
    },
    /// An executor: pulls tasks from the scheduler, reads segments from object storage and
    /// serves shuffle data to the other executors.
    Executor {
        /// The scheduler's address.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: std::net::SocketAddr,
        /// Host to listen on (and that other executors reach it by).
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Port of its shuffle-data (Flight) service.
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Port of its gRPC service.
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks it runs at once (default: the CPUs).
        #[arg(long)]
        vcores: Option<usize>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// The debugging story: generate a few minutes of telemetry of a 12-service shop with
    /// one injected incident into a fresh store, then walk from the symptom to the cause,
    /// printing every SQL query it runs. A `--db` must be new or empty (the demo never
    /// writes into an existing store); without one the store is a new temporary directory
    /// that is kept, and named at the end.
    Demo {
        /// Scenario seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The incident: latency, error_burst, down, retry_storm.
        #[arg(long, default_value = "error_burst")]
        fault: scrydb_workload::FaultKind,
        /// Simulated seconds.
        #[arg(long, default_value_t = 180, hide = true)]
        seconds: u32,
        /// Requests per simulated second.
        #[arg(long, default_value_t = 20, hide = true)]
        rate: u32,
        /// Then serve the web UI over the demo's store (read-only) on this address and
        /// print the affected trace's URL; Ctrl-C stops.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:4319")]
        ui: Option<std::net::SocketAddr>,
    },
    /// Serve the store to an AI agent over MCP on stdin/stdout (read-only, also beside a
    /// running writer): tools to search traces and logs, read a trace and its critical
    /// path, run read-only SQL, list alerts and diagnose a window, each with a byte cap
    /// (docs/mcp.md). `scry serve` serves the same tools at /mcp on its HTTP port.
    Mcp {
        /// The most bytes of JSON one tool result may take.
        #[arg(long, default_value_t = 24_000)]
        max_bytes: usize,
        /// How long one tool call may run before it is cancelled.
        #[arg(long, default_value = "15s", value_parser = serve::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Firing and pending alerts of the store (what `scry serve --rules` recorded), then
    /// the recent state changes; or check a rules file against the store.
    Alerts {
        /// Show the state changes of this long before now.
        #[arg(long, default_value = "24h", value_parser = serve::parse_duration)]
        since: std::time::Duration,
        /// At most this many recent changes.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Check this rules file against the store (every query planned) and list its
        /// rules, instead of listing alerts.
        #[arg(long, value_name = "FILE")]
        check: Option<std::path::PathBuf>,
    },
    /// Browse a store in the web browser: traces, logs, metrics, the service map and a SQL
    /// console, read-only (also beside a running writer). `scry serve` serves the same UI
    /// on its HTTP port. Ctrl-C stops.
    Ui {
        /// Address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:4319")]
        http: std::net::SocketAddr,
        /// Require this token: `Authorization: Bearer TOKEN`, or open a page once with
        /// `?token=TOKEN` in a browser.
        #[arg(long, env = "SCRY_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Generate workload telemetry as OTLP: `.json`/`.jsonl` (one request per line) or
    /// `.pb`/`.binpb` (length-prefixed protobuf).
    Gen {
        /// Spans to generate (at least).
        #[arg(long, default_value_t = 100_000)]
        spans: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Inject a fault: latency, error_burst, down, retry_storm.
        #[arg(long)]
        fault: Option<scrydb_workload::FaultKind>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
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
    /// Collector's file exporter writes), `.pb`/`.binpb` (protobuf), `-` for stdin; also
    /// Zipkin v2 JSON and Jaeger JSON (the UI's export), told by their content and mapped
    /// as the OpenTelemetry Collector's receivers map them. The signal is told from the
    /// content. Valid records are stored even when others are
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
        /// Run the query on the DataFusion Ballista cluster whose scheduler listens here
        /// (HOST:PORT; `scry cluster scheduler`). The store (--remote / --writers-under)
        /// must be in object storage; the executors read its segments directly.
        #[arg(long, value_name = "HOST:PORT", requires = "query")]
        cluster: Option<String>,
    },
    /// Run a DataFusion Ballista scheduler or executor with ScryDB's tables and functions
    /// (docs/scale-out.md). Both reach object storage through the AWS_* variables; Ctrl-C
    /// stops them.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Search logs (or spans with `--spans`) in the syntax people type into Lucene, Kibana
    /// or Datadog: free terms and "phrases" (matched by token, case-insensitively),
    /// service:checkout, severity>=WARN, status:error, duration>500ms, @http.route:/cart,
    /// -term, NOT, OR, parentheses. Newest matches first, at most --limit, with the trace
    /// id for `scry trace`.
    Search(search::Args),
    /// Log patterns: log lines grouped into templates (variables as <*>), counted in a
    /// window and in the window of the same length before it; new and surging templates
    /// first. "What is new in the logs during the incident?"
    Patterns(patterns::Args),
    /// Compare two sets of spans: which services, operations, kinds, statuses and
    /// attribute values are over-represented in the selection (e.g. the slow requests)
    /// against the baseline (the others), ranked by the difference of their shares.
    Compare(compare::Args),
    /// Write stored rows out as OTLP that `scry ingest` reads back into identical rows:
    /// whole traces by id (their spans and logs), or the rows of one table matching a SQL
    /// predicate (--where). OTLP/JSON lines (default) or length-prefixed protobuf, to
    /// standard output or -o FILE; what was written is summarized on stderr.
    Export(export::Args),
    /// Show one trace as a waterfall: spans as a tree with offsets and duration bars,
    /// their logs, and a summary. Found through the trace index, with no time hint. Runs
    /// of six or more like sibling spans (same service and name, no children, no error)
    /// are folded to their first two and last one (`--all` shows them).
    Trace {
        /// The trace id, 32 hex digits.
        trace_id: String,
        /// Mark the critical path: what the request waited on, each span's time on it and
        /// the share per service (docs/trace-analysis.md).
        #[arg(long)]
        critical_path: bool,
        /// Show every span: do not fold repeated siblings.
        #[arg(long)]
        all: bool,
    },
    /// Rebuild the trace indexes, term indexes, log patterns and span rollups of segments
    /// where they are missing or damaged (`--all`: every trace index, term index and log
    /// pattern file).
    Reindex {
        /// Rebuild every index, not only the unusable ones.
        #[arg(long)]
        all: bool,
    },
    /// Show segments, rows and bytes per signal and partition.
    Info,
    /// Merge the small segments of every time partition now (the background pass of a
    /// writer such as `scry serve` does it for closed partitions every 30 s).
    Compact,
    /// Drop old data now: partitions that ended more than --older-than ago, then the oldest
    /// partitions until the store fits --max-bytes. Disk frees once no reader uses them.
    Retain {
        /// Age limit, e.g. 7d, 12h.
        #[arg(long, value_parser = serve::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Disk budget for segments and trace indexes, e.g. 10GiB.
        #[arg(long, value_parser = serve::parse_size)]
        max_bytes: Option<usize>,
        #[command(flatten)]
        thin: ThinArgs,
    },
    /// Per signal and time partition: segments, rows, bytes on disk, bytes per row,
    /// compression ratio, trace index bytes, bloom filter memory, time range.
    Stats,
    /// Receive OTLP from OpenTelemetry SDKs and Collectors into the store: OTLP/gRPC and
    /// OTLP/HTTP (protobuf or JSON, gzip), with /health, /ready and /metrics on the HTTP
    /// port, and optional health-check probes of the services being debugged. Other
    /// terminals can query the store meanwhile (`scry sql`, `scry trace`, `scry tail`).
    /// Ctrl-C stops gracefully (a second one at once).
    Serve {
        /// OTLP/gRPC address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:4317")]
        grpc: std::net::SocketAddr,
        /// OTLP/HTTP address, also /health, /ready, /metrics and the web UI (port 0: any
        /// free port). Without --token, the UI answers only requests naming a loopback host.
        #[arg(long, default_value = "127.0.0.1:4318")]
        http: std::net::SocketAddr,
        /// Serve no web UI on the HTTP port (/metrics is then always the Prometheus text).
        #[arg(long)]
        no_ui: bool,
        /// Serve no MCP endpoint (/mcp) on the HTTP port.
        #[arg(long)]
        no_mcp: bool,
        /// Evaluate the alerting rules of this TOML file (docs/alerting.md); it is reloaded
        /// when it changes and on SIGHUP (a refused reload keeps the running rules).
        #[arg(long, value_name = "FILE")]
        rules: Option<std::path::PathBuf>,
        /// Post alert notifications (Alertmanager webhook format) to this http:// URL,
        /// for rules without webhooks of their own (repeatable).
        #[arg(long = "webhook", value_name = "URL", requires = "rules")]
        webhooks: Vec<scrydb::alert::WebhookUrl>,
        /// Require `Authorization: Bearer TOKEN` on every request but /health.
        #[arg(long, env = "SCRY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Probe a service's HTTP health endpoint, NAME=http://host:port/path (repeatable):
        /// results become `up`, `probe.duration`, `probe.status_code` metrics of service
        /// NAME, and state changes become log records.
        #[arg(long = "probe", value_name = "NAME=URL")]
        probes: Vec<scrydb::server::ProbeTarget>,
        /// How often each probe runs.
        #[arg(long, default_value = "10s", value_parser = serve::parse_duration)]
        probe_interval: std::time::Duration,
        /// How long a probe waits before counting the service as down.
        #[arg(long, default_value = "2s", value_parser = serve::parse_duration)]
        probe_timeout: std::time::Duration,
        /// Largest request body, after gzip decompression.
        #[arg(long, default_value = "16MiB", value_parser = serve::parse_size)]
        max_request_bytes: usize,
        /// Request bytes held at once by requests in progress; beyond it, "retry later".
        #[arg(long, default_value = "64MiB", value_parser = serve::parse_size)]
        max_in_flight_bytes: usize,
        /// Requests decoded and stored at once; more wait holding only their bodies.
        #[arg(long, default_value_t = 4)]
        ingest_concurrency: usize,
        /// How often the receiver writes its own counters into the store (service
        /// `scrydb`); 0 turns it off.
        #[arg(long, default_value = "10s", value_parser = serve::parse_duration)]
        self_metrics_interval: std::time::Duration,
        /// Drop time partitions that ended longer ago than this (checked every minute),
        /// e.g. 7d.
        #[arg(long, value_parser = parse_duration_arg)]
        retention: Option<std::time::Duration>,
        /// Do not merge small segments in the background.
        #[arg(long)]
        no_compaction: bool,
        #[command(flatten)]
        thin: ThinArgs,
        /// Disk budget: drop the oldest partitions while segments and indexes take more,
        /// e.g. 10GiB (checked every minute; with --keep-interesting they are thinned
        /// first).
        #[arg(long, value_parser = serve::parse_size)]
        max_bytes: Option<usize>,
        /// What an acknowledged request survives: sync (power loss: fsync before the
        /// answer, shared by concurrent requests), periodic (fsync every second), nosync
        /// (process crash only).
        #[arg(long, value_enum, default_value = "sync")]
        durability: DurabilityArg,
    },
    /// Print records as they are stored (by `scry serve` or any writer), like
    /// `kubectl logs -f`; Ctrl-C stops.
    Tail {
        /// The table to follow.
        #[arg(long, value_enum, default_value = "logs")]
        signal: SignalArg,
        /// Only records for which this SQL predicate holds, e.g.
        /// "severity_number >= 17 AND service_name = 'cart'".
        #[arg(long = "where")]
        filter: Option<String>,
        /// Stop after this many records.
        #[arg(long, short = 'n')]
        max: Option<u64>,
    },
    /// Check every file of a store that no writer has open: the manifest, every segment
    /// (its checksum), every trace index and every log frame. Lists every damaged file;
    /// the exit code is non-zero if any is. Changes nothing.
    Verify,
    /// Open a store whose write-ahead log is damaged (which a plain open refuses): keep
    /// every batch before the damage, move the damaged bytes and every later log file into
    /// quarantine files beside the log (never deleting them), and report what was moved.
    Recover,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Sync,
    Periodic,
    Nosync,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Json,
    Jsonl,
    Protobuf,
}

impl From<SignalArg> for Signal {
    fn from(s: SignalArg) -> Signal {
        match s {
            SignalArg::Traces => Signal::Spans,
            SignalArg::Logs => Signal::Logs,
            SignalArg::Metrics => Signal::Metrics,
        }
    }
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
    scrydb::tune_allocator();
    scrydb::tune_mimalloc();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `scry cluster scheduler|executor`: runs until Ctrl-C.
fn cluster_cmd(dir: &std::path::Path, c: ClusterCommand) -> scrydb::Result<bool> {
    let s3 = scrydb::remote::S3Options::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Ok(false);
        }
    };
    let result = runtime.block_on(async {
        match c {
            ClusterCommand::Scheduler { bind } => {
                let addr =
                    scrydb::sql::cluster::start_scheduler(bind, s3, dir.join("cluster-cache"))
                        .await?;
                say!("scheduler listening on {addr}; Ctrl-C stops it");
                let _ = tokio::signal::ctrl_c().await;
                Ok(())
            }
            ClusterCommand::Executor {
                scheduler,
                bind,
                port,
                grpc_port,
                vcores,
            } => {
                let vcores = vcores
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                say!("executor on {bind}:{port} pulling from {scheduler}; Ctrl-C stops it");
                scrydb::sql::cluster::run_executor(&bind, port, grpc_port, scheduler, vcores, s3)
                    .await
            }
        }
    });
    match result {
        Ok(()) => Ok(true),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(false)
        }
    }
}

/// `scry mcp`: the MCP tools over stdin/stdout until the client closes stdin.
fn mcp(
    dir: &std::path::Path,
    max_bytes: usize,
    timeout: std::time::Duration,
) -> scrydb::Result<bool> {
    if max_bytes < 1024 {
        eprintln!("error: --max-bytes {max_bytes} is below 1024");
        return Ok(false);
    }
    let db = std::sync::Arc::new(open_read(dir, Options::default())?);
    let mut opts = scrydb::mcp::McpOptions::default();
    opts.max_bytes = max_bytes;
    opts.timeout = timeout;
    let tools = scrydb::mcp::Tools::new(db, opts);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Ok(false);
        }
    };
    let result = runtime.block_on(scrydb::mcp::server::serve_stdio(tools));
    // Tokio's stdin read cannot be cancelled: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => Ok(true),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(false)
        }
    }
}

/// Runs a command; `Ok(false)` when it finished but reported errors.
fn run(cli: Cli) -> scrydb::Result<bool> {
    let _ = REMOTE.set(cli.remote.clone());
    let remote = !cli.remote.remote.is_empty() || !cli.remote.writers_under.is_empty();
    let local_only = match &cli.command {
        Command::Verify => Some("verify"),
        Command::Recover => Some("recover"),
        Command::Tail { .. } => Some("tail"),
        Command::Demo { .. } => Some("demo"),
        _ => None,
    };
    if let (true, Some(name)) = (remote, local_only) {
        return Err(scrydb::Error::InvalidOptions {
            option: "remote",
            reason: format!(
                "`scry {name}` works on a local directory only; drop --remote/--writers-under"
            ),
        });
    }
    let db_dir = cli
        .db
        .clone()
        .unwrap_or_else(|| PathBuf::from("./scry-data"));
    let cli = Cli {
        db: Some(db_dir.clone()),
        ..cli
    };
    match cli.command {
        Command::Demo {
            seed,
            fault,
            seconds,
            rate,
            ui,
        } => {
            // The demo writes a fresh store: never into one that holds anything, and a
            // temporary one is kept (and named) so the commands it prints can be run.
            let (dir, kept) = match cli_db_explicit() {
                Some(d) => {
                    refuse_non_empty(&d)?;
                    (d, false)
                }
                None => {
                    let tmp = tempfile::Builder::new()
                        .prefix("scry-demo-")
                        .tempdir()
                        .map_err(|e| scrydb::Error::Io {
                            op: "create temporary directory",
                            path: std::env::temp_dir(),
                            source: e,
                        })?;
                    (tmp.keep(), true)
                }
            };
            let args = demo::DemoArgs {
                seed,
                fault,
                seconds: seconds.max(30),
                rate: rate.max(1),
            };
            let result = demo::run(&dir, &args);
            if kept {
                say!(
                    "the store is kept at {} (remove it when done)",
                    dir.display()
                );
            }
            match (result, ui) {
                (Ok(outcome), Some(addr)) => {
                    let first = outcome
                        .example_trace
                        .map(|id| format!("/trace/{}?cp=1", scrydb::sql::ids::hex(&id)));
                    let served = ui::run(&dir, addr, None, first.as_deref())?;
                    Ok(outcome.matched && served)
                }
                (Ok(outcome), None) => Ok(outcome.matched),
                (Err(e), _) => {
                    eprintln!("error: {e}");
                    Ok(false)
                }
            }
        }
        Command::Gen {
            spans,
            seed,
            fault,
            out,
        } => gen_cmd(spans, seed, fault, &out).map(|()| true),
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
            let signal = signal.map(Signal::from);
            let db = open_write(&db_dir, Options::default())?;
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
            &db_dir,
            spans,
            logs.unwrap_or(spans / 2),
            metrics.unwrap_or(spans / 10),
            batch.max(1),
            seed,
        )
        .map(|()| true),
        Command::Cluster(c) => cluster_cmd(&db_dir, c),
        Command::Sql {
            query: Some(q),
            format,
            cluster: Some(addr),
        } => {
            let db = open_read(&db_dir, Options::default())?;
            let session = match db.session() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(false);
                }
            };
            let ctx = match scrydb::sql::cluster::connect(session, &addr) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(false);
                }
            };
            let ok = sql::run_cluster_query(&ctx, &q, format) == sql::Outcome::Ok;
            db.close()?;
            Ok(ok)
        }
        Command::Sql { query, format, .. } => {
            let db = open_read(&db_dir, Options::default())?;
            let session = match db.session() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(false);
                }
            };
            let ok = match query {
                // One argument may hold several statements; they run in order.
                Some(q) => sql::piped(session, format, std::io::Cursor::new(q)),
                None => match sql::repl(session, format) {
                    Ok(ok) => ok,
                    Err(e) => {
                        eprintln!("error: {e}");
                        false
                    }
                },
            };
            db.close()?;
            Ok(ok)
        }
        Command::Search(args) => {
            let db = open_read(&db_dir, Options::default())?;
            let ok = search::run(&db, &args)?;
            db.close()?;
            Ok(ok)
        }
        Command::Compare(args) => {
            let db = open_read(&db_dir, Options::default())?;
            let ok = compare::run(&db, &args)?;
            db.close()?;
            Ok(ok)
        }
        Command::Export(args) => {
            let db = open_read(&db_dir, Options::default())?;
            let ok = export::run(&db, &args)?;
            db.close()?;
            Ok(ok)
        }
        Command::Patterns(args) => {
            let db = open_read(&db_dir, Options::default())?;
            let ok = patterns::run(&db, &args)?;
            db.close()?;
            Ok(ok)
        }
        Command::Trace {
            trace_id,
            critical_path,
            all,
        } => {
            let db = open_read(&db_dir, Options::default())?;
            let found = trace::run(&db, &trace_id, trace::View { critical_path, all })?;
            db.close()?;
            Ok(found)
        }
        Command::Reindex { all } => {
            let db = open_write(&db_dir, Options::default())?;
            let n = db.rebuild_indexes(all)?;
            say!(
                "{n} index file(s) rebuilt (trace indexes, term indexes, log patterns, span \
                 rollups)"
            );
            db.close().map(|()| true)
        }
        Command::Serve {
            grpc,
            http,
            no_ui,
            no_mcp,
            rules,
            webhooks,
            token,
            probes,
            probe_interval,
            probe_timeout,
            max_request_bytes,
            max_in_flight_bytes,
            ingest_concurrency,
            self_metrics_interval,
            retention,
            no_compaction,
            thin,
            max_bytes,
            durability,
        } => serve::run(
            &db_dir,
            serve::ServeArgs {
                grpc,
                http,
                ui: !no_ui,
                mcp: !no_mcp,
                rules,
                webhooks,
                token: token.filter(|t| !t.is_empty()),
                probes,
                probe_interval,
                probe_timeout,
                max_request_bytes,
                max_in_flight_bytes,
                ingest_concurrency,
                self_metrics_interval: (!self_metrics_interval.is_zero())
                    .then_some(self_metrics_interval),
                durability: match durability {
                    DurabilityArg::Sync => scrydb::Durability::Sync,
                    DurabilityArg::Periodic => {
                        scrydb::Durability::Periodic(std::time::Duration::from_secs(1))
                    }
                    DurabilityArg::Nosync => scrydb::Durability::NoSync,
                },
                retention,
                compaction: !no_compaction,
                thin,
                max_bytes: max_bytes.map(|b| b as u64),
            },
        ),
        Command::Mcp { max_bytes, timeout } => mcp(&db_dir, max_bytes, timeout),
        Command::Alerts {
            since,
            limit,
            check,
        } => alerts::run(&db_dir, since, limit, check.as_deref()),
        Command::Ui { http, token } => {
            ui::run(&db_dir, http, token.filter(|t| !t.is_empty()), None)
        }
        Command::Compact => {
            let db = open_write(&db_dir, Options::default())?;
            let s = db.compact()?;
            say!(
                "{} merge(s): {} segments into {}, {} rows rewritten, {} -> {} bytes",
                s.merges,
                s.segments_in,
                s.merges,
                s.rows,
                s.bytes_in,
                s.bytes_out
            );
            db.close().map(|()| true)
        }
        Command::Retain {
            older_than,
            max_bytes,
            thin,
        } => {
            if older_than.is_none() && max_bytes.is_none() {
                eprintln!("error: say what to drop: --older-than DURATION and/or --max-bytes SIZE");
                return Ok(false);
            }
            // Thinning needs the policy the on-demand pass applies in the options.
            let thinning = thin.keep_interesting.is_some();
            let db = open_write(
                &db_dir,
                thin.apply(Options::default())
                    .retention(older_than.filter(|_| thinning))
                    .max_bytes(max_bytes.map(|b| b as u64).filter(|_| thinning)),
            )?;
            let s = db.retain(older_than, max_bytes.map(|b| b as u64))?;
            say!(
                "dropped {} segment(s), {} rows, {} bytes (freed once no reader uses them)",
                s.segments,
                s.rows,
                s.bytes
            );
            db.close().map(|()| true)
        }
        Command::Stats => {
            let db = open_read(&db_dir, Options::default())?;
            stdout_quietly(|out| print_stats(&db, out))?;
            db.close().map(|()| true)
        }
        Command::Tail {
            signal,
            filter,
            max,
        } => {
            let signal = Signal::from(signal);
            match tail::run(&db_dir, signal, filter.as_deref(), max) {
                Ok(ok) => Ok(ok),
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(false)
                }
            }
        }
        Command::Info => {
            let db = open_read(&db_dir, Options::default())?;
            stdout_quietly(|out| print_info(&db, out))?;
            db.close().map(|()| true)
        }
        Command::Verify => {
            let report = verify_cmd(&db_dir)?;
            print_verify(&report);
            Ok(report.is_ok())
        }
        Command::Recover => {
            // Recovering creates nothing: a directory that holds no store is refused (any
            // other error of a read-only look is what the recovery below is for).
            if let Err(e @ scrydb::Error::NotAStore { .. }) =
                Db::open_read_only(&db_dir, Options::default())
            {
                return Err(e);
            }
            let db = Db::open(
                &db_dir,
                Options::default().wal_recovery(scrydb::WalRecovery::TruncateAtCorruption),
            )?;
            let report = db.recovery_report();
            if report.is_clean() {
                say!("{}: nothing to recover", db_dir.display());
            } else {
                say_part!("{report}");
            }
            if report.quarantined.is_empty() {
                say!("no log bytes were moved");
            } else {
                say!(
                    "{} quarantine file(s) written; the batches in them are no longer in the \
                     database, their bytes are kept for inspection",
                    report.quarantined.len()
                );
            }
            db.close().map(|()| true)
        }
    }
}

/// Refuses a `--db` for the demo that exists and holds anything: the demo would mix its
/// generated telemetry into someone's store.
fn refuse_non_empty(dir: &std::path::Path) -> scrydb::Result<()> {
    let first = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(scrydb::Error::Io {
                op: "list",
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    match first {
        None => Ok(()),
        Some(entry) => Err(scrydb::Error::InvalidOptions {
            option: "--db",
            reason: format!(
                "{} is not empty (it holds {}): the demo writes a fresh store and never \
                 into an existing one. Give it a new or empty directory, or no --db for a \
                 temporary one",
                dir.display(),
                entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_else(|e| format!("an unreadable entry: {e}"))
            ),
        }),
    }
}

/// Verifies the store in `dir` without opening it (opening would replay the log, and
/// refuse a damaged one before anything could be reported), holding its lock so that no
/// writer changes it meanwhile.
fn verify_cmd(dir: &std::path::Path) -> scrydb::Result<scrydb::VerifyReport> {
    use scrydb::io::{FileSystem, StdFs};
    // A directory that holds no store is refused like the other read commands do; any
    // other failure of a read-only look is damage the report below lists.
    if let Err(e @ scrydb::Error::NotAStore { .. }) = Db::open_read_only(dir, Options::default()) {
        return Err(e);
    }
    let lock_file = dir.join(scrydb::LOCK_FILE);
    // A directory never opened by a writer has no lock file; none is created here.
    let _lock = if lock_file.exists() {
        Some(
            StdFs
                .try_lock(&lock_file)
                .map_err(|e| scrydb::lock_error(&StdFs, dir, e))?,
        )
    } else {
        None
    };
    scrydb::verify_dir(&StdFs, dir)
}

fn print_verify(r: &scrydb::VerifyReport) {
    match r.manifest_version {
        Some(v) => say!("manifest {v}"),
        None => say!("manifest: unusable, segments and indexes not checked"),
    }
    say!(
        "checked {} segment(s), {} trace index(es), {} log file(s) with {} frame(s)",
        r.segments,
        r.indexes,
        r.wal_files,
        r.wal_frames
    );
    if let Some(t) = &r.torn_tail {
        say!(
            "note: {} ends in an incomplete frame (an unacknowledged write; open drops it)",
            t.display()
        );
    }
    for q in &r.quarantined {
        say!(
            "quarantined: {} holds log bytes an earlier `scry recover` moved out of the store",
            q.display()
        );
    }
    for d in &r.damaged {
        let signal = d.signal.map(|s| format!(" ({s})")).unwrap_or_default();
        say!("DAMAGED {}{signal}: {}", d.kind, d.error);
    }
    if r.is_ok() {
        say!("ok: no damaged file");
    } else {
        say!("{} damaged file(s)", r.damaged.len());
    }
}

/// `--db` or `$SCRY_DB` as given (the demo uses a temporary directory otherwise).
fn cli_db_explicit() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--db" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--db=")) {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("SCRY_DB").map(PathBuf::from)
}

fn gen_cmd(
    spans: usize,
    seed: u64,
    fault: Option<scrydb_workload::FaultKind>,
    out: &std::path::Path,
) -> scrydb::Result<()> {
    use scrydb::otlp::Format;
    use scrydb_workload::{Workload, WorkloadOptions};
    use std::io::Write;
    let format = Format::from_path(out).ok_or_else(|| scrydb::Error::InvalidOptions {
        option: "--out",
        reason: format!("{}: use .json, .jsonl, .pb or .binpb", out.display()),
    })?;
    let rate = 50;
    let seconds = (spans / (rate * 18)).max(30) as u32;
    let opts = WorkloadOptions {
        seed,
        seconds: seconds + seconds / 10,
        traces_per_second: rate as u32,
        fault,
        ..Default::default()
    };
    let io = |e| scrydb::Error::Io {
        op: "write",
        path: out.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::create(out).map_err(|e| scrydb::Error::Io {
        op: "create",
        path: out.to_path_buf(),
        source: e,
    })?;
    let mut w = std::io::BufWriter::new(file);
    let workload = Workload::new(opts);
    let truth = workload.fault().cloned();
    let mut written = 0;
    for chunk in workload {
        if written >= spans {
            break;
        }
        written += chunk.spans;
        match format {
            Format::Json | Format::JsonLines => {
                for line in [
                    serde_json::to_string(&chunk.traces),
                    serde_json::to_string(&chunk.logs),
                    serde_json::to_string(&chunk.metrics),
                ] {
                    let line = line.map_err(|e| io(std::io::Error::other(e)))?;
                    writeln!(w, "{line}").map_err(io)?;
                }
            }
            Format::Protobuf => {
                use prost::Message;
                for m in [
                    chunk.traces.encode_to_vec(),
                    chunk.logs.encode_to_vec(),
                    chunk.metrics.encode_to_vec(),
                ] {
                    w.write_all(&(m.len() as u32).to_be_bytes()).map_err(io)?;
                    w.write_all(&m).map_err(io)?;
                }
            }
        }
    }
    w.flush().map_err(io)?;
    say!(
        "wrote {written} spans with their logs and metrics to {}",
        out.display()
    );
    if let Some(f) = truth {
        say!(
            "injected fault: {} on {}/{} from {} to {} (ns)",
            f.kind,
            f.service,
            f.operation,
            f.start_ns,
            f.end_ns
        );
    }
    Ok(())
}

fn synth_cmd(
    dir: &std::path::Path,
    spans: usize,
    logs: usize,
    metrics: usize,
    batch: usize,
    seed: u64,
) -> scrydb::Result<()> {
    let db = open_write(dir, Options::default())?;
    let mut rng = Rng::new(seed);
    let base = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - 3_600_000_000_000;
    say!("ingesting into {} ...", dir.display());
    for (signal, total) in [
        (Signal::Spans, spans),
        (Signal::Logs, logs),
        (Signal::Metrics, metrics),
    ] {
        if total == 0 {
            continue;
        }
        // Generate first so the timing below is the database's, not the generator's.
        let batches = synth::batches(signal, &mut rng, total, batch, base);
        let t = Instant::now();
        for b in &batches {
            db.append(signal, b)?;
        }
        let secs = t.elapsed().as_secs_f64();
        say!(
            "  {signal:<8} {total:>10} rows in {secs:>6.2} s  = {:>9.0} rows/s (durable appends, {batch} rows per batch)",
            total as f64 / secs
        );
    }
    let t = Instant::now();
    db.flush()?;
    say!("flush to Parquet: {:.2} s", t.elapsed().as_secs_f64());
    stdout_quietly(|out| print_info(&db, out))?;
    db.close()
}

/// Runs `print` on standard output (locked, buffered). A reader that went away
/// (`scry info | head -1`: `BrokenPipe`) ends the output quietly instead of a panic, as
/// `println!` would; any other write error is returned.
fn stdout_quietly(
    print: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> scrydb::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match print(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(scrydb::Error::Io {
            op: "write",
            path: PathBuf::from("<stdout>"),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The recovery report of an open, when it found anything.
fn print_recovery(db: &Db, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let report = db.recovery_report();
    if !report.is_clean() {
        for line in report.to_string().lines() {
            writeln!(out, "recovery: {line}")?;
        }
    }
    Ok(())
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    serve::parse_duration(s)
}

/// What retention keeps longer (`scry retain`, `scry serve`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ThinArgs {
    /// Instead of dropping partitions that aged out (or that a disk budget would drop),
    /// keep their interesting traces (errors, slow spans, WARN+ logs, exemplars), whole
    /// with their logs, this much longer, e.g. 30d.
    #[arg(long, value_parser = parse_duration_arg)]
    keep_interesting: Option<std::time::Duration>,
    /// With --keep-interesting: a span is slow above this percentile of its operation
    /// in its partition, e.g. 99 or 99.9.
    #[arg(long, default_value_t = 99.0, value_parser = parse_percentile)]
    slow_percentile: f64,
    /// With --keep-interesting: a span named OPERATION is slow above DURATION instead of
    /// its percentile, e.g. 'GET /checkout=500ms' (repeatable).
    #[arg(long = "slow-threshold", value_name = "OPERATION=DURATION", value_parser = parse_threshold)]
    slow_thresholds: Vec<(String, std::time::Duration)>,
}

impl ThinArgs {
    /// `o` with these applied.
    fn apply(self, o: Options) -> Options {
        let mut o = o
            .keep_interesting(self.keep_interesting)
            .slow_percentile(self.slow_percentile / 100.0);
        for (op, t) in self.slow_thresholds {
            o = o.slow_threshold(op, t);
        }
        o
    }
}

fn parse_percentile(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p < 100.0 => Ok(p),
        _ => Err(format!(
            "{s:?} is not a percentile between 0 and 100, like 99 or 99.9"
        )),
    }
}

/// Parses `OPERATION=DURATION`; the operation may itself hold `=`, the duration may not.
fn parse_threshold(s: &str) -> Result<(String, std::time::Duration), String> {
    let Some((op, d)) = s.rsplit_once('=') else {
        return Err(format!(
            "{s:?} is not OPERATION=DURATION, like 'GET /cart=500ms'"
        ));
    };
    if op.is_empty() {
        return Err(format!("{s:?} names no operation"));
    }
    Ok((op.to_string(), serve::parse_duration(d)?))
}

fn print_stats(db: &Db, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let parts = db.snapshot().partition_stats();
    writeln!(
        out,
        "{:<8} {:<16} {:>4} {:>11} {:>12} {:>9} {:>6} {:>10} {:>9} {:>10} {:>9}  time range",
        "signal",
        "partition",
        "segs",
        "rows",
        "bytes",
        "bytes/row",
        "ratio",
        "index",
        "bloom",
        "terms",
        "patterns"
    )?;
    let when = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    for p in &parts {
        writeln!(
            out,
            "{:<8} {:<16} {:>4} {:>11} {:>12} {:>9.1} {:>6.1} {:>10} {:>9} {:>10} {:>9}  {} .. {}",
            p.signal.name(),
            scrydb::partition::partition_dir_name(p.partition_start),
            p.segments,
            p.rows,
            p.bytes,
            p.bytes as f64 / p.rows.max(1) as f64,
            p.uncompressed_bytes as f64 / p.bytes.max(1) as f64,
            p.index_bytes,
            p.bloom_bytes,
            p.term_index_bytes,
            p.pattern_bytes,
            when(p.min_time),
            when(p.max_time)
        )?;
        if let Some(k) = p.kept {
            writeln!(
                out,
                "  thinned by retention: kept {} trace(s): {} with errors, {} slow, {} with \
                 WARN+ logs, {} with exemplars",
                k.traces, k.errors, k.slow, k.warn_logs, k.exemplars
            )?;
        }
    }
    let (rows, bytes, index, bloom) = parts.iter().fold((0, 0, 0, 0), |a, p| {
        (
            a.0 + p.rows,
            a.1 + p.bytes,
            a.2 + p.index_bytes,
            a.3 + p.bloom_bytes,
        )
    });
    writeln!(
        out,
        "total: {} partition(s), {rows} rows, {bytes} bytes of segments, {index} bytes of trace \
         indexes, {bloom} bytes of bloom filters in memory",
        parts.len()
    )
}

fn print_info(db: &Db, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    print_recovery(db, out)?;
    let snap = db.snapshot();
    writeln!(
        out,
        "database {} (manifest {})",
        db.path().display(),
        snap.manifest_version()
    )?;
    writeln!(
        out,
        "{:<8} {:>9} {:>12} {:>14} {:>10} {:>12}",
        "signal", "segments", "rows", "bytes", "bytes/row", "unflushed"
    )?;
    for signal in Signal::ALL {
        let s = snap.stats(signal);
        let per_row = if s.segment_rows > 0 {
            format!("{:.1}", s.segment_bytes as f64 / s.segment_rows as f64)
        } else {
            "-".into()
        };
        writeln!(
            out,
            "{:<8} {:>9} {:>12} {:>14} {:>10} {:>12}",
            signal.name(),
            s.segments,
            s.segment_rows,
            s.segment_bytes,
            per_row,
            s.memtable_rows
        )?;
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
        writeln!(out, "partitions:")?;
        for ((signal, start), (segs, rows)) in partitions {
            writeln!(
                out,
                "  {:<8} {}  {segs} segment(s), {rows} rows",
                signal.name(),
                scrydb::partition::partition_dir_name(start)
            )?;
        }
    }
    Ok(())
}
