//! The OTLP receiver that `scry serve` runs: OTLP/gRPC and OTLP/HTTP into one store, with
//! health, readiness and Prometheus endpoints, the receiver's own metrics written into the
//! store, and health-check probes of the services being debugged.
//!
//! Every request goes through [`crate::Db::ingest_otlp`], the library's one OTLP path, so
//! what the receiver stores is exactly what `scry ingest` stores. An acknowledged request is
//! in the write-ahead log as durably as the store's [`crate::Durability`] says; requests
//! from many connections are group-committed by the engine.
//!
//! Memory is bounded, not queued: a request body larger than
//! [`ServeOptions::max_request_bytes`] (after gzip) is refused (HTTP 413, gRPC
//! `RESOURCE_EXHAUSTED`), request bodies in flight share [`ServeOptions::max_in_flight_bytes`],
//! and while the engine's flush is behind ([`crate::WriteStats::backlogged`]) or the budget is
//! spent, requests are answered "retry later" (HTTP 503 with `Retry-After`, gRPC
//! `UNAVAILABLE`), which OpenTelemetry exporters retry with backoff.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let db = Arc::new(scrydb::Db::open("./scry-data", scrydb::Options::default())?);
//! let server = scrydb::server::Server::start(db.clone(), scrydb::server::ServeOptions::default())?;
//! println!("OTLP/gRPC on {}, OTLP/HTTP on {}", server.grpc_addr(), server.http_addr());
//! // ... later:
//! server.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! Routes (the contract; also in `docs/serve.md`):
//! - gRPC port: `opentelemetry.proto.collector.{trace,logs,metrics}.v1.*Service/Export`.
//! - HTTP port: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` (`application/x-protobuf` or
//!   `application/json`, optionally `Content-Encoding: gzip`); `GET /health` (liveness,
//!   never needs the token), `GET /ready` (store open, not failed, not pushing back),
//!   `GET /metrics` (Prometheus text; a browser asking for HTML gets the UI's metrics page),
//!   the web UI's pages ([`crate::ui`]), and MCP over streamable HTTP at `/mcp`
//!   ([`crate::mcp`]).
//!
//! With [`ServeOptions::alerts`], the receiver also evaluates alerting rules
//! ([`crate::alert`]).

pub(crate) mod auth;
mod http;
pub(crate) mod http_client;
mod probe;
mod receiver;
pub(crate) mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use probe::{Probe, ProbeTarget};
pub(crate) use telemetry::Sample;
pub use telemetry::{Counters, Outcome, Transport};

use crate::Db;

/// Options of [`Server::start`], every default documented.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Where OTLP/gRPC listens. Port 0 picks a free port ([`Server::grpc_addr`] says
    /// which). Default: `127.0.0.1:4317` (OTLP's gRPC port, loopback only).
    pub grpc_addr: SocketAddr,
    /// Where OTLP/HTTP, `/health`, `/ready` and `/metrics` listen. Default:
    /// `127.0.0.1:4318` (OTLP's HTTP port, loopback only).
    pub http_addr: SocketAddr,
    /// When set, every request except `GET /health` must carry `Authorization: Bearer
    /// <token>`; others get HTTP 401 / gRPC `UNAUTHENTICATED`. Default: none.
    pub token: Option<String>,
    /// Largest request body accepted, in bytes, after gzip decompression (and for gRPC,
    /// the largest message). Default: 16 MiB (the OpenTelemetry Collector accepts 20 MiB on
    /// HTTP and 4 MiB on gRPC; 512-span requests are about 0.4 MiB).
    pub max_request_bytes: usize,
    /// Bytes of request bodies (as received, and again after decompression) held at once
    /// by requests in progress; a request that would exceed it is answered "retry later".
    /// Default: 64 MiB.
    pub max_in_flight_bytes: usize,
    /// Requests decoded and stored at the same time; more wait (holding only their body, in
    /// the in-flight budget). A decoded request takes several times its wire size (a 0.4 MiB
    /// 512-span request becomes a few MiB of messages and then Arrow columns), so this, not
    /// the byte budget, bounds that memory; storing is CPU-bound, so more would not be
    /// faster. Default: 4.
    pub ingest_concurrency: usize,
    /// The `Retry-After` a pushed-back HTTP request is given (and the gRPC `RetryInfo`
    /// delay). Default: 1 s.
    pub retry_after: Duration,
    /// How often the receiver's own counters are written into the store as metrics of
    /// service `scrydb` (`None`: never). Default: 10 s.
    pub self_metrics_every: Option<Duration>,
    /// Health-check probes of the services being debugged. Default: none.
    pub probes: Vec<ProbeTarget>,
    /// How often each probe runs. Default: 10 s.
    pub probe_every: Duration,
    /// How long a probe waits for an answer before it counts the target as down.
    /// Default: 2 s.
    pub probe_timeout: Duration,
    /// The web UI ([`crate::ui`]) on the HTTP port, with these limits; `None` serves no
    /// UI (and `GET /metrics` is the Prometheus exposition for every request). Default: on.
    pub ui: Option<crate::ui::UiOptions>,
    /// The MCP server ([`crate::mcp`]) at `/mcp` on the HTTP port (streamable HTTP), with
    /// these limits; `None`: none. Default: on.
    pub mcp: Option<crate::mcp::McpOptions>,
    /// Alerting rules evaluated by the receiver ([`crate::alert`]); `None`: none.
    /// Default: none.
    pub alerts: Option<crate::alert::AlertOptions>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            token: None,
            max_request_bytes: 16 << 20,
            max_in_flight_bytes: 64 << 20,
            ingest_concurrency: 4,
            retry_after: Duration::from_secs(1),
            self_metrics_every: Some(Duration::from_secs(10)),
            probes: Vec::new(),
            probe_every: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(2),
            ui: Some(crate::ui::UiOptions::default()),
            mcp: Some(crate::mcp::McpOptions::default()),
            alerts: None,
        }
    }
}

/// Why the receiver could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// OTLP/gRPC or OTLP/HTTP.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// An option is out of range.
    #[error("invalid serve option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// The alerting rules file was refused.
    #[error(transparent)]
    Rules(#[from] crate::alert::RuleError),
    /// The receiver's runtime could not start, or one of its tasks failed.
    #[error("the receiver failed: {0}")]
    Runtime(String),
}

/// What the receiver shares between its tasks.
pub(crate) struct Shared {
    pub db: Arc<Db>,
    pub opts: ServeOptions,
    pub counters: Counters,
    pub budget: Arc<tokio::sync::Semaphore>,
    /// Slots for requests being decoded and stored ([`ServeOptions::ingest_concurrency`]).
    pub slots: tokio::sync::Semaphore,
    pub stopping: AtomicBool,
    /// Cancelled when the server stops: ends MCP sessions and streams.
    pub mcp_stop: tokio_util::sync::CancellationToken,
}

impl Shared {
    /// Why the receiver cannot take writes now, if it cannot (for `/ready` and pushback).
    pub fn not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        let w = self.db.write_stats();
        if w.poisoned {
            return Some("the store refuses writes after a failure; restart to recover".into());
        }
        if w.backlogged {
            return Some(format!(
                "the flush is behind ({} memtables wait): retry later",
                w.frozen_waiting
            ));
        }
        None
    }
}

/// A running receiver. Dropping it without [`Server::shutdown`] stops it abruptly (in-flight
/// requests are cut; everything acknowledged is in the log).
pub struct Server {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    reload: Option<ReloadSender>,
}

type ReloadSender = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<usize, String>>>;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish()
    }
}

impl Server {
    /// Binds both ports and starts serving `db` on a runtime of its own (named threads
    /// `scry-serve`), with the probes and self-metrics of `opts`. Returns once both ports
    /// accept connections.
    pub fn start(db: Arc<Db>, opts: ServeOptions) -> Result<Server, ServeError> {
        if opts.max_request_bytes < 1024 {
            return Err(ServeError::InvalidOption {
                option: "max_request_bytes",
                reason: format!("{} is below 1 KiB", opts.max_request_bytes),
            });
        }
        if opts.max_in_flight_bytes < opts.max_request_bytes {
            return Err(ServeError::InvalidOption {
                option: "max_in_flight_bytes",
                reason: format!(
                    "{} is below max_request_bytes ({}): no request could be taken",
                    opts.max_in_flight_bytes, opts.max_request_bytes
                ),
            });
        }
        if opts.ingest_concurrency == 0 {
            return Err(ServeError::InvalidOption {
                option: "ingest_concurrency",
                reason: "must be at least 1".into(),
            });
        }
        if opts.probe_every.is_zero() || opts.probe_timeout.is_zero() {
            return Err(ServeError::InvalidOption {
                option: "probe_every/probe_timeout",
                reason: "must be above zero".into(),
            });
        }
        if opts.token.as_deref().is_some_and(str::is_empty) {
            return Err(ServeError::InvalidOption {
                option: "token",
                reason: "is empty: every request would pass; give none or a real one".into(),
            });
        }
        if db.is_read_only() {
            return Err(ServeError::InvalidOption {
                option: "db",
                reason: "the store is open read-only; the receiver writes".into(),
            });
        }
        let rules = match &opts.alerts {
            Some(a) => Some(crate::alert::load(&db, a)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name("scry-serve")
            .enable_all()
            .build()
            .map_err(|e| ServeError::Runtime(format!("cannot start the runtime: {e}")))?;
        let permits = opts
            .max_in_flight_bytes
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            db,
            counters: Counters::default(),
            budget: Arc::new(tokio::sync::Semaphore::new(permits)),
            slots: tokio::sync::Semaphore::new(opts.ingest_concurrency),
            stopping: AtomicBool::new(false),
            mcp_stop: tokio_util::sync::CancellationToken::new(),
            opts,
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let _guard = runtime.enter();
        let bind = |what: &'static str, addr: SocketAddr| {
            let std = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|_| l))
                .map_err(|source| ServeError::Bind { what, addr, source })?;
            tokio::net::TcpListener::from_std(std).map_err(|source| ServeError::Bind {
                what,
                addr,
                source,
            })
        };
        let grpc = bind("OTLP/gRPC", shared.opts.grpc_addr)?;
        let http = bind("OTLP/HTTP", shared.opts.http_addr)?;
        let local = |l: &tokio::net::TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| ServeError::Bind { what, addr, source })
        };
        let grpc_addr = local(&grpc, "OTLP/gRPC", shared.opts.grpc_addr)?;
        let http_addr = local(&http, "OTLP/HTTP", shared.opts.http_addr)?;

        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let servers = vec![
            runtime.spawn(
                axum::serve(grpc, receiver::grpc_router(shared.clone()))
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
            ),
            runtime.spawn(
                axum::serve(http, http::router(shared.clone()))
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
            ),
        ];
        let mut tasks = Vec::new();
        if let Some(every) = shared.opts.self_metrics_every {
            tasks.push(runtime.spawn(telemetry::write_periodically(
                shared.clone(),
                every,
                stop_rx.clone(),
            )));
        }
        for target in shared.opts.probes.clone() {
            tasks.push(runtime.spawn(probe::run(shared.clone(), target, stop_rx.clone())));
        }
        let mut reload = None;
        if let (Some(set), Some(a)) = (rules, shared.opts.alerts.clone()) {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            reload = Some(tx);
            tasks.push(runtime.spawn(crate::alert::run(
                shared.db.clone(),
                set,
                a,
                format!("http://{http_addr}"),
                shared.counters.alerts().clone(),
                rx,
                stop_rx.clone(),
            )));
        }
        log::info!("OTLP/gRPC on {grpc_addr}, OTLP/HTTP on {http_addr}");
        if (shared.opts.ui.is_some() || shared.opts.mcp.is_some())
            && shared.opts.token.is_none()
            && !http_addr.ip().is_loopback()
        {
            log::warn!(
                "the web UI and MCP on {http_addr} have no token: they answer only requests \
                 naming a loopback host, which a client on another host can still claim; set \
                 a token before exposing them"
            );
        }
        Ok(Server {
            shared,
            runtime: Some(runtime),
            stop,
            tasks,
            servers,
            grpc_addr,
            http_addr,
            reload,
        })
    }

    /// Reloads the alerting rules file now (as a change of the file or SIGHUP does) and
    /// returns how many rules run; a refused file keeps the rules that were running and is
    /// the error. An error too when the server has no rules. Waits for the reload: must not
    /// be called from an async task.
    pub fn reload_rules(&self) -> Result<usize, String> {
        let tx = self
            .reload
            .as_ref()
            .ok_or_else(|| "the server evaluates no alerting rules".to_string())?;
        let runtime = self.runtime.as_ref().ok_or("the server is stopping")?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        runtime.block_on(async {
            tx.send(reply)
                .await
                .map_err(|_| "the alerting task stopped".to_string())?;
            answer
                .await
                .map_err(|_| "the alerting task stopped".to_string())?
        })
    }

    /// The address OTLP/gRPC listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address OTLP/HTTP (and `/health`, `/ready`, `/metrics`) listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The receiver's counters (what `GET /metrics` shows).
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Stops gracefully: stops accepting connections, lets requests in progress finish
    /// (their answers are sent), stops the probes, writes the counters into the store a
    /// last time, and returns. The store stays open: close it (which flushes) afterwards.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.mcp_stop.cancel();
        let _ = self.stop.send(true);
        let runtime = self
            .runtime
            .take()
            .expect("the runtime lives until shutdown");
        let servers = std::mem::take(&mut self.servers);
        let tasks = std::mem::take(&mut self.tasks);
        let shared = self.shared.clone();
        let result = runtime.block_on(async move {
            let mut first_error = None;
            for s in servers {
                match s.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_error.get_or_insert(format!("a listener failed: {e}"));
                    }
                    Err(e) => {
                        first_error.get_or_insert(format!("a listener panicked: {e}"));
                    }
                }
            }
            for t in tasks {
                if let Err(e) = t.await {
                    first_error.get_or_insert(format!("a background task panicked: {e}"));
                }
            }
            if shared.opts.self_metrics_every.is_some() {
                telemetry::write_once(&shared).await;
            }
            first_error
        });
        runtime.shutdown_timeout(Duration::from_secs(5));
        match result {
            None => Ok(()),
            Some(e) => Err(ServeError::Runtime(e)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            self.shared.mcp_stop.cancel();
            let _ = self.stop.send(true);
            rt.shutdown_background();
        }
    }
}
