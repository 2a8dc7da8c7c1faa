//! The web UI: search, trace waterfalls with the critical path, logs, metrics charts, the
//! service map and a read-only SQL console, as server-rendered HTML.
//!
//! `scry serve` serves it on its HTTP port beside OTLP/HTTP; `scry ui` serves an existing
//! store read-only ([`UiServer`]). Every page is rendered on the server (HTML, and SVG for
//! the charts and the service map) and reads without JavaScript; every filter is a URL
//! parameter, so a link reproduces a view. One small script of ScryDB's own
//! (`/assets/scry.js`, no third-party code) adds conveniences: the critical-path toggle
//! without a reload, minimap clicks, and keyboard focus of the search box.
//!
//! Routes (the contract; `docs/ui.md` shows each screen):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | redirects to `/traces` |
//! | `GET /traces` | span search: `q` (search syntax), `service`, `operation`, `attr` (`key=value`, repeatable), `min`/`max` (durations such as `250ms`), `status` (`error`, `ok`, `unset`), `roots=1`, window, `limit` |
//! | `GET /trace/<32 hex>` | the waterfall: `cp=1` critical path, `span=<16 hex>` span shown in detail, `all=1` no folding |
//! | `GET /logs` | log search: `q`, `severity` (minimum level), `service`, `attr` (repeatable), window, `limit`; the window's log patterns |
//! | `GET /metrics` | metric list per service; `name` (and `service`) charts one metric with its exemplars; window. With `scry serve`, a request that does not accept `text/html` gets the Prometheus exposition instead |
//! | `GET /services` | service map (`service_graph`) and RED table (`span_metrics`) of the window |
//! | `GET /sql` | SQL console: `q` runs one read-only statement, at most [`UiOptions::sql_rows`] rows within [`UiOptions::sql_timeout`] |
//! | `GET /sql.csv` | the same statement's result as CSV, at most [`UiOptions::csv_rows`] rows |
//! | `GET /assets/scry.css`, `/assets/scry.js` | the style sheet and the script |
//!
//! The window of every page is `range` (`5m`, `15m`, `1h` default, `6h`, `24h`, `7d`, or
//! `all`) ending at `end` (RFC 3339 or ns since the epoch; default: just after the newest
//! record of the page's table, so a store of last week opens on its data, and a live store
//! on the present).
//!
//! Every page reads a bounded number of rows: searches and tables have a limit (at most
//! 1,000 rows), charts at most [`MAX_METRIC_POINTS`] points, a waterfall at most
//! [`MAX_WATERFALL_ROWS`] rows after folding.

mod assets;
pub(crate) mod cells;
mod logs;
mod metrics;
mod page;
pub(crate) mod params;
mod services;
mod sql;
mod trace;
mod traces;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::Db;
pub(crate) use params::Params;
pub use params::{decode, encode};

/// Most waterfall rows a trace page draws (after folding repeated siblings); the rest of a
/// larger trace is summarized in one line, with `all=1` lifting folding, not this bound.
pub const MAX_WATERFALL_ROWS: usize = 3_000;

/// Most metric points a chart reads.
pub const MAX_METRIC_POINTS: usize = 20_000;

/// Limits of the UI's pages, every default documented.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UiOptions {
    /// Most rows the SQL console shows. Default: 1,000.
    pub sql_rows: usize,
    /// Most rows `/sql.csv` writes. Default: 100,000.
    pub csv_rows: usize,
    /// Longest a console statement (or its CSV) may run; it is cancelled then. Default: 10 s.
    pub sql_timeout: Duration,
    /// Longest the queries of one page (other than the console's) may run; the page then
    /// answers 503 and says to narrow the window. Default: 10 s.
    pub page_timeout: Duration,
    /// Pages drawn at once; more wait their turn (each runs queries: this bounds the UI's
    /// share of CPU and memory beside ingest). Default: 4.
    pub concurrent_pages: usize,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            sql_rows: 1_000,
            csv_rows: 100_000,
            sql_timeout: Duration::from_secs(10),
            concurrent_pages: 4,
            page_timeout: Duration::from_secs(10),
        }
    }
}

/// What every page handler shares.
pub(crate) struct UiState {
    db: Arc<Db>,
    opts: UiOptions,
    /// `scry serve` (receiving): shown in the header; `/metrics` negotiates Prometheus.
    live: bool,
    /// Slots for pages being drawn ([`UiOptions::concurrent_pages`]).
    slots: Arc<tokio::sync::Semaphore>,
}

/// Why a page could not be drawn; shown as a page with the status code.
#[derive(Debug)]
pub(crate) enum UiError {
    /// The request is wrong (a parameter, a query): 400 with the message.
    BadRequest(String),
    /// Nothing there: 404.
    NotFound(String),
    /// The store or the query failed: 500.
    Internal(String),
    /// A query of the page ran out of time: 503.
    TooSlow(String),
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UiError::BadRequest(m)
            | UiError::NotFound(m)
            | UiError::Internal(m)
            | UiError::TooSlow(m) => f.write_str(m),
        }
    }
}

impl From<crate::Error> for UiError {
    fn from(e: crate::Error) -> Self {
        UiError::Internal(e.to_string())
    }
}

impl From<crate::sql::Error> for UiError {
    fn from(e: crate::sql::Error) -> Self {
        match e {
            crate::sql::Error::Query(m) => UiError::BadRequest(m),
            crate::sql::Error::Search(e) => UiError::BadRequest(e.to_string()),
            e => UiError::Internal(e.to_string()),
        }
    }
}

/// The UI's routes over `db`, without authentication (the caller layers it; see
/// [`crate::server`] and [`UiServer`]). `live` marks a store being written by `scry serve`
/// (shown in the header, and `GET /metrics` answers non-HTML requests with `prometheus`
/// when it is given).
pub(crate) fn routes(
    db: Arc<Db>,
    opts: UiOptions,
    prometheus: Option<Arc<dyn Fn() -> String + Send + Sync>>,
) -> axum::Router {
    let live = prometheus.is_some();
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.concurrent_pages.max(1)));
    let state = Arc::new(UiState {
        db,
        opts,
        live,
        slots,
    });
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/traces") }))
        .route("/traces", get(traces_page))
        .route("/trace/{id}", get(trace_page))
        .route("/logs", get(logs_page))
        .route(
            "/metrics",
            get(
                move |s: State<Arc<UiState>>, h: HeaderMap, q: RawQuery| async move {
                    let html = h
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("text/html"));
                    match (&prometheus, html) {
                        (Some(text), false) => (
                            [(
                                header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            text(),
                        )
                            .into_response(),
                        _ => metrics_page(s, q).await,
                    }
                },
            ),
        )
        .route("/services", get(services_page))
        .route("/sql", get(sql_page))
        .route("/sql.csv", get(sql_csv))
        .route("/assets/{file}", get(assets::serve))
        .with_state(state)
}

/// Runs one of a page's queries, cancelled after [`UiOptions::page_timeout`].
pub(crate) fn query(
    state: &UiState,
    sql: &str,
) -> Result<Vec<scrydb_engine::arrow::array::RecordBatch>, UiError> {
    let session = state.db.session()?;
    let timeout = state.opts.page_timeout;
    crate::sql::block_on(async move { tokio::time::timeout(timeout, session.sql(sql)).await })
        .map_err(|_| {
            UiError::TooSlow(format!(
                "the page's queries ran longer than {timeout:?} and were cancelled; narrow \
                 the window or the search"
            ))
        })?
        .map_err(UiError::from)
}

/// Runs `draw` on a blocking thread (pages read the store and run queries synchronously)
/// and answers with its page, or an error page.
async fn render(
    state: Arc<UiState>,
    query: Option<String>,
    title: &'static str,
    draw: fn(&UiState, &Params) -> Result<maud::Markup, UiError>,
) -> Response {
    let params = Params::parse(query.as_deref().unwrap_or(""));
    let nav = page::Nav::of(title);
    let Ok(_slot) = state.slots.clone().acquire_owned().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the UI is stopping\n").into_response();
    };
    let result = tokio::task::spawn_blocking(move || {
        let drawn = draw(&state, &params);
        (drawn, state)
    })
    .await;
    match result {
        Ok((Ok(body), state)) => page::html(title, nav, state.live, body).into_response(),
        Ok((Err(e), state)) => error_page(title, nav, state.live, e),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page failed: {e}\n"),
        )
            .into_response(),
    }
}

fn error_page(title: &'static str, nav: page::Nav, live: bool, e: UiError) -> Response {
    let (code, message) = match e {
        UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
        UiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        UiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        UiError::TooSlow(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
    };
    let body = maud::html! {
        div.error role="alert" {
            strong { (code.canonical_reason().unwrap_or("error")) ": " }
            span.message { (message) }
        }
    };
    (code, page::html(title, nav, live, body)).into_response()
}

async fn traces_page(s: State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    render(s.0, q, "Traces", traces::page).await
}

async fn trace_page(
    s: State<Arc<UiState>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    // The id travels as the first parameter (an `id` in the query cannot override it) so
    // that `render` keeps one signature.
    let q = match q {
        Some(q) if !q.is_empty() => format!("id={}&{q}", params::encode(&id)),
        _ => format!("id={}", params::encode(&id)),
    };
    render(s.0, Some(q), "Trace", trace::page).await
}

async fn logs_page(s: State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    render(s.0, q, "Logs", logs::page).await
}

async fn metrics_page(s: State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    render(s.0, q, "Metrics", metrics::page).await
}

async fn services_page(s: State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    render(s.0, q, "Services", services::page).await
}

async fn sql_page(s: State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    render(s.0, q, "SQL", sql::page).await
}

async fn sql_csv(State(state): State<Arc<UiState>>, RawQuery(q): RawQuery) -> Response {
    let params = Params::parse(q.as_deref().unwrap_or(""));
    let Ok(_slot) = state.slots.clone().acquire_owned().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "the UI is stopping\n").into_response();
    };
    match tokio::task::spawn_blocking(move || sql::csv(&state, &params)).await {
        Ok(Ok(csv)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"scrydb-result.csv\"",
                ),
            ],
            csv,
        )
            .into_response(),
        Ok(Err(UiError::BadRequest(m))) => {
            (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response()
        }
        Ok(Err(UiError::NotFound(m))) => (StatusCode::NOT_FOUND, format!("{m}\n")).into_response(),
        Ok(Err(UiError::Internal(m))) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{m}\n")).into_response()
        }
        Ok(Err(UiError::TooSlow(m))) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{m}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Options of [`UiServer::start`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UiServeOptions {
    /// Where the UI listens; port 0 picks a free one ([`UiServer::addr`]). Default:
    /// `127.0.0.1:4319` (loopback only).
    pub addr: SocketAddr,
    /// When set, every page needs the token: as `Authorization: Bearer <token>`, or once
    /// as `?token=<token>` in a browser (which then keeps it in a cookie). `GET /health`
    /// never needs it. Default: none.
    pub token: Option<String>,
    /// The pages' limits.
    pub ui: UiOptions,
}

impl Default for UiServeOptions {
    fn default() -> Self {
        UiServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 4319)),
            token: None,
            ui: UiOptions::default(),
        }
    }
}

/// The web UI over a store without the OTLP receiver (`scry ui`): typically a store opened
/// read-only, beside a writer or after it stopped. Serves the UI's routes and `GET /health`,
/// `GET /ready`, until [`UiServer::shutdown`] (or drop).
pub struct UiServer {
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for UiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl UiServer {
    /// Binds `opts.addr` and serves the UI over `db` on a runtime of its own (threads named
    /// `scry-ui`). Returns once the port accepts connections.
    pub fn start(db: Arc<Db>, opts: UiServeOptions) -> Result<UiServer, crate::server::ServeError> {
        use crate::server::ServeError;
        if opts.token.as_deref().is_some_and(str::is_empty) {
            return Err(ServeError::InvalidOption {
                option: "token",
                reason: "is empty: every request would pass; give none or a real one".into(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scry-ui")
            .enable_all()
            .build()
            .map_err(|e| ServeError::Runtime(format!("cannot start the runtime: {e}")))?;
        let _guard = runtime.enter();
        let listener = std::net::TcpListener::bind(opts.addr)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| ServeError::Bind {
                what: "the web UI",
                addr: opts.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            what: "the web UI",
            addr: opts.addr,
            source,
        })?;
        let token = opts.token.map(Arc::<str>::from);
        let router = routes(db.clone(), opts.ui, None)
            .route("/health", get(|| async { "ok\n" }))
            .route(
                "/ready",
                get(move || {
                    let db = db.clone();
                    async move {
                        if db.write_stats().poisoned {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "not ready: the store failed\n",
                            )
                                .into_response()
                        } else {
                            "ready\n".into_response()
                        }
                    }
                }),
            )
            .layer(axum::middleware::from_fn(move |req, next| {
                crate::server::auth::ui(token.clone(), req, next)
            }));
        let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
        let server = runtime.spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .into_future(),
        );
        log::info!("web UI on http://{addr}/");
        Ok(UiServer {
            runtime: Some(runtime),
            stop,
            server: Some(server),
            addr,
        })
    }

    /// The address the UI listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets pages in progress finish, and returns.
    pub fn shutdown(mut self) -> Result<(), crate::server::ServeError> {
        let _ = self.stop.send(true);
        let runtime = self
            .runtime
            .take()
            .expect("the runtime lives until shutdown");
        let server = self.server.take();
        let result = runtime.block_on(async move {
            match server {
                Some(s) => s.await,
                None => Ok(Ok(())),
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(5));
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(crate::server::ServeError::Runtime(format!(
                "the listener failed: {e}"
            ))),
            Err(e) => Err(crate::server::ServeError::Runtime(format!(
                "the listener panicked: {e}"
            ))),
        }
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            let _ = self.stop.send(true);
            rt.shutdown_background();
        }
    }
}
