//! `scry-load`: sustained OTLP load against a real `scry serve` process, measured.
//!
//! Starts `scry serve` on free loopback ports over a new store, pre-encodes a set of
//! realistic trace export requests (`--spans-per-request` spans each, from the workload
//! generator), then runs `--clients` concurrent exporters for `--seconds` over OTLP/HTTP
//! protobuf (keep-alive HTTP/1.1 connections) or OTLP/gRPC (one HTTP/2 channel per client),
//! each sending its next request as soon as the previous one is acknowledged. A request
//! pushed back (HTTP 503/429, gRPC UNAVAILABLE) waits `--backoff` and is retried, as an
//! OpenTelemetry exporter would. Reports acknowledged spans/s, p50/p99 request latency,
//! pushbacks, the server's CPU (user+system over the run) and its peak RSS, then stops the
//! server gracefully and checks that every acknowledged span is in the store.
//!
//! ```text
//! cargo build --release --bin scry && cargo run --release -p scrydb-benches --bin scry-load -- --transport http
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use prost::Message;
use scrydb_workload::Rng;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Transport {
    Http,
    Grpc,
}

#[derive(Parser)]
#[command(name = "scry-load", about = "Sustained OTLP load against scry serve")]
struct Cli {
    /// The `scry` binary [default: `scry` beside this program].
    #[arg(long)]
    scry: Option<PathBuf>,
    /// Store directory [default: a new temporary directory under `.`].
    #[arg(long)]
    db: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "http")]
    transport: Transport,
    /// Concurrent exporters.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Spans per export request.
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Wait before retrying a pushed-back request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    backoff: u64,
    /// Extra arguments for `scry serve` (e.g. `--durability=periodic`).
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
}

struct Totals {
    spans: AtomicU64,
    requests: AtomicU64,
    pushbacks: AtomicU64,
    failures: AtomicU64,
    reconnects: AtomicU64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    let scry = match &cli.scry {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("scry"),
    };
    let tmp;
    let dir = match &cli.db {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir_in(".").map_err(|e| e.to_string())?;
            tmp.path().to_path_buf()
        }
    };
    // Distinct requests so the store does not see one trace id over and over.
    let mut rng = Rng::new(42);
    let requests: Vec<(Vec<u8>, usize, scrydb::otlp::ExportTraceServiceRequest)> = (0..64)
        .map(|_| {
            let r = scrydb_workload::otlp::traces(&mut rng, cli.spans_per_request);
            let n = r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            (r.encode_to_vec(), n, r)
        })
        .collect();
    let requests = Arc::new(requests);
    let avg_bytes = requests.iter().map(|r| r.0.len()).sum::<usize>() / requests.len();

    let server = Server::start(&scry, &dir, &cli.serve_arg)?;
    let cpu0 = server.cpu_seconds();
    let totals = Arc::new(Totals {
        spans: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        pushbacks: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.seconds);
    let backoff = Duration::from_millis(cli.backoff);
    // A reader in this (another) process follows the store while it is written: how long
    // does a snapshot's refresh take, and does it always see every acknowledged span?
    let reader = {
        let (dir, totals) = (dir.clone(), totals.clone());
        std::thread::spawn(move || -> Result<(Vec<Duration>, u64), String> {
            let db = scrydb::Db::open_read_only(&dir, scrydb::Options::default())
                .map_err(|e| e.to_string())?;
            let (mut took, mut missed) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let acked = totals.spans.load(Ordering::SeqCst);
                let t = Instant::now();
                let snap = db.snapshot();
                took.push(t.elapsed());
                let s = snap.stats(scrydb::Signal::Spans);
                if s.segment_rows + s.memtable_rows < acked {
                    missed += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok((took, missed))
        })
    };
    let mut latencies: Vec<Duration> = match cli.transport {
        Transport::Http => {
            let handles: Vec<_> = (0..cli.clients)
                .map(|c| {
                    let (requests, totals, addr) = (requests.clone(), totals.clone(), server.http);
                    std::thread::spawn(move || {
                        http_client(addr, c, &requests, &totals, deadline, backoff)
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        }
        Transport::Grpc => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let tasks: Vec<_> = (0..cli.clients)
                    .map(|c| {
                        let (requests, totals) = (requests.clone(), totals.clone());
                        let url = format!("http://{}", server.grpc);
                        tokio::spawn(async move {
                            grpc_client(url, c, &requests, &totals, deadline, backoff).await
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap_or_default());
                }
                all
            })
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let (mut refresh, missed) = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_string())??;
    refresh.sort();
    let cpu = server.cpu_seconds() - cpu0;
    let rss = server.peak_rss_mib();
    let stop_started = Instant::now();
    server.stop()?;
    let stop_took = stop_started.elapsed();

    latencies.sort();
    let pct = |p: f64| percentile_ms(&latencies, p);
    let spans = totals.spans.load(Ordering::SeqCst);
    let db =
        scrydb::Db::open_read_only(&dir, scrydb::Options::default()).map_err(|e| e.to_string())?;
    let stored = db
        .sql_blocking("SELECT count(*) FROM spans")
        .map_err(|e| e.to_string())?;
    let stored = stored
        .first()
        .map(|b| {
            arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(b.column(0).as_ref())
                .value(0)
        })
        .unwrap_or(0) as u64;
    println!(
        "transport={:?} clients={} spans/request={} bytes/request={} seconds={:.1}",
        cli.transport, cli.clients, cli.spans_per_request, avg_bytes, wall
    );
    println!(
        "acknowledged {spans} spans in {} requests: {:.0} spans/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        totals.requests.load(Ordering::SeqCst),
        spans as f64 / wall,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    println!(
        "pushbacks {} (retried after {} ms), reconnects {}, failures {}; server CPU {:.2} cores ({:.1} s), peak RSS {:.0} MiB; graceful stop {:.1} s",
        totals.pushbacks.load(Ordering::SeqCst),
        cli.backoff,
        totals.reconnects.load(Ordering::SeqCst),
        totals.failures.load(Ordering::SeqCst),
        cpu / wall,
        cpu,
        rss,
        stop_took.as_secs_f64()
    );
    let at = |p: f64| percentile_ms(&refresh, p);
    println!(
        "reader in another process: {} snapshots, refresh p50 {:.2} ms, p99 {:.2} ms; {} saw fewer spans than were acknowledged before it",
        refresh.len(),
        at(0.5),
        at(0.99),
        missed
    );
    println!("stored {stored} spans (acknowledged {spans})");
    if missed > 0 {
        return Err(format!("{missed} snapshots missed acknowledged spans"));
    }
    if stored < spans {
        return Err(format!("{} acknowledged spans are missing", spans - stored));
    }
    Ok(())
}

/// The `p` quantile of sorted durations, in milliseconds (0 when there are none).
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn http_client(
    addr: SocketAddr,
    client: usize,
    requests: &[(Vec<u8>, usize, scrydb::otlp::ExportTraceServiceRequest)],
    totals: &Totals,
    deadline: Instant,
    backoff: Duration,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i = client;
    while Instant::now() < deadline {
        let (body, spans, _) = &requests[i % requests.len()];
        if conn.is_none() {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let r = BufReader::new(s.try_clone().expect("clone a socket"));
                    conn = Some((s, r));
                }
                Err(_) => {
                    totals.failures.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff);
                    continue;
                }
            }
        }
        let (w, r) = conn.as_mut().expect("connected above");
        let t = Instant::now();
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let status = w
            .write_all(head.as_bytes())
            .and_then(|()| w.write_all(body))
            .and_then(|()| read_response(r));
        match status {
            Ok(200) => {
                latencies.push(t.elapsed());
                totals.spans.fetch_add(*spans as u64, Ordering::Relaxed);
                totals.requests.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(429) | Ok(503) => {
                totals.pushbacks.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(backoff);
            }
            Ok(status) => {
                eprintln!("unexpected HTTP {status}");
                totals.failures.fetch_add(1, Ordering::Relaxed);
                conn = None;
                std::thread::sleep(backoff);
            }
            // The server closes a connection whose request body it refused without reading
            // it (after a 503): reconnect and send again, as an exporter does.
            Err(_) => {
                totals.reconnects.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
    latencies
}

/// Reads one response; returns its status.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(status)
}

async fn grpc_client(
    url: String,
    client: usize,
    requests: &[(Vec<u8>, usize, scrydb::otlp::ExportTraceServiceRequest)],
    totals: &Totals,
    deadline: Instant,
    backoff: Duration,
) -> Vec<Duration> {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let mut latencies = Vec::new();
    let Ok(mut c) = TraceServiceClient::connect(url).await else {
        totals.failures.fetch_add(1, Ordering::Relaxed);
        return latencies;
    };
    let mut i = client;
    while Instant::now() < deadline {
        let (_, spans, req) = &requests[i % requests.len()];
        let t = Instant::now();
        match c.export(req.clone()).await {
            Ok(_) => {
                latencies.push(t.elapsed());
                totals.spans.fetch_add(*spans as u64, Ordering::Relaxed);
                totals.requests.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                totals.pushbacks.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
            }
            Err(_) => {
                totals.failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
            }
        }
    }
    latencies
}

/// The `scry serve` child.
struct Server {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
}

impl Server {
    fn start(scry: &PathBuf, dir: &PathBuf, extra: &[String]) -> Result<Server, String> {
        let mut child = Command::new(scry)
            .arg("--db")
            .arg(dir)
            .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--self-metrics-interval", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", scry.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().ok_or("no stdout")?)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = |key: &str| -> Result<SocketAddr, String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .ok_or_else(|| format!("no {key} in {line:?}"))?
                .parse()
                .map_err(|e| format!("{e}"))
        };
        Ok(Server {
            http: addr("http=")?,
            grpc: addr("grpc=")?,
            child,
        })
    }

    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 14th
        // field of the line, stime the 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // Clock ticks are 100 per second on Linux.
        (ticks(11) + ticks(12)) / 100.0
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn stop(mut self) -> Result<(), String> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("scry serve exited with {status}"));
        }
        Ok(())
    }
}
