//! `scry serve`: the OTLP receiver over a store, until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scrydb::server::{ProbeTarget, ServeOptions, Server};
use scrydb::{Options, Signal};

/// What `scry serve` was asked for.
pub struct ServeArgs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// Serve the web UI on the HTTP port.
    pub ui: bool,
    /// Serve MCP at /mcp on the HTTP port.
    pub mcp: bool,
    /// The alerting rules file.
    pub rules: Option<std::path::PathBuf>,
    /// Default webhooks of the rules.
    pub webhooks: Vec<scrydb::alert::WebhookUrl>,
    pub token: Option<String>,
    pub probes: Vec<ProbeTarget>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub max_request_bytes: usize,
    pub max_in_flight_bytes: usize,
    pub ingest_concurrency: usize,
    pub self_metrics_interval: Option<Duration>,
    pub durability: scrydb::Durability,
    pub retention: Option<Duration>,
    /// What retention keeps longer: applied to the store's options.
    pub thin: crate::ThinArgs,
    pub compaction: bool,
    pub max_bytes: Option<u64>,
}

/// Parses `250ms`, `10s`, `2m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s, 2m, 1h or 7d"))?;
    let secs = match unit.trim() {
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (ms, s, m, h or d)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses `512KiB`, `16MiB`, `1GiB`, `10GB` or plain bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 16MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Runs the receiver until a signal; `Ok(false)` when it stopped with errors.
pub fn run(dir: &Path, args: ServeArgs) -> scrydb::Result<bool> {
    let db = Arc::new(crate::open_write(
        dir,
        args.thin
            .apply(Options::default())
            .durability(args.durability)
            .retention(args.retention)
            .compaction(args.compaction)
            .max_bytes(args.max_bytes),
    )?);
    if !db.recovery_report().is_clean() {
        eprint!("{}", db.recovery_report());
    }
    let mut opts = ServeOptions::default();
    opts.grpc_addr = args.grpc;
    opts.http_addr = args.http;
    if !args.ui {
        opts.ui = None;
    }
    if !args.mcp {
        opts.mcp = None;
    }
    opts.token = args.token;
    opts.probes = args.probes;
    opts.probe_every = args.probe_interval;
    opts.probe_timeout = args.probe_timeout;
    opts.max_request_bytes = args.max_request_bytes;
    opts.max_in_flight_bytes = args.max_in_flight_bytes;
    opts.ingest_concurrency = args.ingest_concurrency;
    opts.self_metrics_every = args.self_metrics_interval;
    if let Some(rules) = &args.rules {
        let mut a = scrydb::alert::AlertOptions::new(rules);
        a.webhooks = args.webhooks.clone();
        a.reload_on_sighup = true;
        opts.alerts = Some(a);
    }

    // The first Ctrl-C or SIGTERM stops gracefully; a second one exits at once (the next
    // open recovers everything acknowledged from the log).
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let signals = Arc::new(AtomicUsize::new(0));
    let handler = {
        let signals = signals.clone();
        ctrlc::set_handler(move || {
            if signals.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = stop_tx.send(());
            } else {
                eprintln!(
                    "scry serve: second signal, exiting now (the next open recovers the log)"
                );
                std::process::exit(130);
            }
        })
    };
    if let Err(e) = handler {
        log::warn!("cannot handle Ctrl-C ({e}); stop the receiver with SIGKILL");
    }

    let server = match Server::start(db.clone(), opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(false);
        }
    };
    say!(
        "scry serve: listening grpc={} http={} store={}",
        server.grpc_addr(),
        server.http_addr(),
        dir.display()
    );
    say!(
        "  export with OTEL_EXPORTER_OTLP_ENDPOINT=http://{} (gRPC) or http://{} (HTTP); Ctrl-C stops",
        server.grpc_addr(),
        server.http_addr()
    );
    if args.ui {
        say!("  web UI: http://{}/", server.http_addr());
    }
    if args.mcp {
        say!("  MCP (streamable HTTP): http://{}/mcp", server.http_addr());
    }
    if let Some(rules) = &args.rules {
        say!(
            "  alerting rules: {} (reloaded on change and SIGHUP)",
            rules.display()
        );
    }
    let _ = stop_rx.recv();
    say!("scry serve: stopping (finishing requests in progress, then flushing)");
    let accepted: Vec<(Signal, u64)> = Signal::ALL
        .iter()
        .map(|s| (*s, server.counters().records_accepted(*s)))
        .collect();
    let mut ok = true;
    if let Err(e) = server.shutdown() {
        eprintln!("error: {e}");
        ok = false;
    }
    let db = match Arc::try_unwrap(db) {
        Ok(db) => db,
        Err(_) => {
            eprintln!("error: the store is still in use; it is closed when the process exits");
            return Ok(false);
        }
    };
    db.close()?;
    let summary: Vec<String> = accepted.iter().map(|(s, n)| format!("{n} {s}")).collect();
    say!("scry serve: stopped; stored {}", summary.join(", "));
    Ok(ok)
}
