//! The web UI (`scrydb::ui`): every route over a store the workload generator filled with
//! an injected fault, the HTML each draws, bad input, the token, `scry serve`'s
//! `/metrics` negotiation, huge traces, and — in a real browser (Debian's Chromium driven
//! by Python Playwright, `tests/py/ui_browser.py`) — clicking from a search result and a
//! log to their trace and toggling the critical path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{FixedSizeBinaryArray, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use scrydb::otlp::Request;
use scrydb::otlp::ingest::{IngestOptions, Ingester};
use scrydb::sql::ids::hex;
use scrydb::ui::{UiServeOptions, UiServer};
use scrydb::{Db, Options, Signal};
use scrydb_workload::{FaultKind, Workload, WorkloadOptions};

use crate::common::{BASE, http};

/// A store of the twelve-service shop with an error burst, closed; the trace id of one
/// failed request.
fn shop(dir: &Path) -> String {
    let db = Db::open(dir, Options::default()).expect("open");
    let workload = Workload::new(WorkloadOptions {
        seed: 3,
        start_ns: BASE,
        seconds: 90,
        traces_per_second: 6,
        fault: Some(FaultKind::ErrorBurst),
    });
    let mut ingester = Ingester::new(&db, IngestOptions::default());
    for chunk in workload {
        ingester
            .ingest_request(&Request::Traces(chunk.traces))
            .expect("spans");
        ingester
            .ingest_request(&Request::Logs(chunk.logs))
            .expect("logs");
        ingester
            .ingest_request(&Request::Metrics(chunk.metrics))
            .expect("metrics");
    }
    ingester.finish();
    db.flush().expect("flush");
    let b = db
        .sql_blocking(
            "SELECT trace_id FROM spans WHERE status_code = 'ERROR' AND parent_span_id IS NOT NULL \
             ORDER BY time LIMIT 1",
        )
        .expect("an error span");
    let id = crate::common::trace_ids(&b[0])[0];
    db.close().expect("close");
    hex(&id)
}

fn serve(dir: &Path, opts: UiServeOptions) -> UiServer {
    let db = Arc::new(Db::open_read_only(dir, Options::default()).expect("open read-only"));
    UiServer::start(db, opts).expect("start the UI")
}

fn local() -> UiServeOptions {
    let mut o = UiServeOptions::default();
    o.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    o
}

/// `GET path` as HTML: asserts the status, returns the page.
fn page(addr: SocketAddr, path: &str, status: u16) -> String {
    let (code, headers, body) = http(addr, "GET", path, &[("Accept", "text/html")], b"");
    let body = String::from_utf8(body).expect("utf-8");
    assert_eq!(code, status, "GET {path}: {body}");
    if status == 200 {
        assert!(
            headers
                .get("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "GET {path}: {headers:?}"
        );
        assert!(body.starts_with("<!DOCTYPE html>"), "GET {path}");
    }
    body
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn every_route_draws_the_shop_with_its_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = shop(dir.path());
    let ui = serve(dir.path(), local());
    let a = ui.addr();

    // `/` leads to the trace search.
    let (code, headers, _) = http(a, "GET", "/", &[], b"");
    assert_eq!(code, 303);
    assert_eq!(headers.get("location").map(String::as_str), Some("/traces"));

    // Search: newest first, bounded, the scatter, each row opening its trace.
    let traces = page(a, "/traces?status=error&limit=20", 200);
    assert_eq!(count(&traces, "class=\"trace-link\""), 20, "{traces}");
    assert_eq!(count(&traces, "<circle class=\"pt err\""), 20);
    assert!(traces.contains("Showing the newest 20 spans"));
    assert!(
        traces.contains("status_code = &#39;ERROR&#39;")
            || traces.contains("status_code = 'ERROR'")
    );
    let none = page(a, "/traces?service=nosuchservice", 200);
    assert!(none.contains("No spans match"));
    let filtered = page(
        a,
        "/traces?service=inventory&operation=ReserveStock&min=1us&attr=rpc.method%3DReserveStock&range=all",
        200,
    );
    assert!(count(&filtered, "class=\"trace-link\"") > 0, "{filtered}");
    assert!(
        !filtered.contains(">frontend</span>") || filtered.contains("<option value=\"frontend\"")
    );

    // The trace: every span drawn, the critical path marked, the detail, logs in place.
    let t = page(a, &format!("/trace/{trace}?cp=1"), 200);
    let spans: i64 = crate::common::single_i64(
        &Db::open_read_only(dir.path(), Options::default())
            .expect("open")
            .sql_blocking(&format!(
                "SELECT count(*) FROM spans WHERE trace_id = '{trace}'"
            ))
            .expect("count"),
    );
    assert_eq!(count(&t, "class=\"wf-row"), spans as usize, "{t}");
    assert!(t.contains("class=\"waterfall cp-on\" id=\"waterfall\""));
    assert!(count(&t, "class=\"wf-cpseg\"") > 0);
    assert!(count(&t, "data-cp=\"1\"") > 0);
    assert!(t.contains("id=\"detail\""));
    assert!(t.contains("wf-row err"), "an error span is marked");
    assert!(t.contains("Critical path: "));
    // Without script the toggle is a link; off again is the page without `cp`.
    assert!(t.contains(&format!("href=\"/trace/{trace}\"")), "{t}");
    let off = page(a, &format!("/trace/{trace}"), 200);
    assert!(off.contains("class=\"waterfall\" id=\"waterfall\""));
    // The trace's logs sit under their spans.
    assert!(count(&t, "class=\"wf-log") > 0, "{t}");

    // Logs: chips, patterns, rows linking to traces.
    let logs = page(a, "/logs?severity=error&range=all", 200);
    assert!(count(&logs, "class=\"trace-link\"") > 0, "{logs}");
    assert!(logs.contains("class=\"chip on\""));
    assert!(logs.contains("Patterns of the window"));
    assert!(count(&logs, "class=\"pattern") > 0);
    // Two service chips show the logs of either.
    let two = page(
        a,
        "/logs?service=inventory&service=checkout&severity=error&range=all",
        200,
    );
    let rows = count(&two, "class=\"trace-link\"");
    let one = page(a, "/logs?service=inventory&severity=error&range=all", 200);
    assert!(rows > count(&one, "class=\"trace-link\""), "{two}");
    let chip = page(a, "/logs?service=inventory&range=all", 200);
    assert!(
        chip.contains("service_name = &#39;inventory&#39;")
            || chip.contains("service_name = 'inventory'")
    );

    // Metrics: the list, a histogram's quantiles with exemplars, a gauge, a sum as a rate.
    let m = page(a, "/metrics?range=all", 200);
    assert!(m.contains("rpc.server.duration"), "{m}");
    let h = page(
        a,
        "/metrics?name=rpc.server.duration&service=frontend&range=all",
        200,
    );
    assert_eq!(count(&h, "<polyline"), 3, "p50, p90, p99: {h}");
    assert!(count(&h, "class=\"exemplar\"") > 0);
    let g = page(a, "/metrics?name=process.cpu.utilization&range=all", 200);
    assert!(count(&g, "<polyline") >= 1);
    let s = page(a, "/metrics?name=rpc.server.requests&range=all", 200);
    assert!(s.contains("rate per second") || s.contains("the value of each series"));
    let e = page(
        a,
        "/metrics?name=db.client.operation.duration&range=all",
        200,
    );
    assert_eq!(count(&e, "<polyline"), 3, "{e}");
    let gone = page(a, "/metrics?name=no.such.metric&range=all", 200);
    assert!(gone.contains("No points of this metric"));

    // Services: twelve nodes, edges with calls, the RED table.
    let sv = page(a, "/services?range=all", 200);
    assert_eq!(count(&sv, "<g class=\"node"), 12, "{sv}");
    assert!(count(&sv, "<g class=\"edge") >= 11);
    assert!(
        sv.contains("<g class=\"edge err\""),
        "the failing calls are marked"
    );
    assert!(count(&sv, "<tr class=\"err\">") > 0);

    // SQL: a table, CSV.
    let q = page(
        a,
        "/sql?q=SELECT+service_name%2C+count(*)+AS+n+FROM+spans+GROUP+BY+1+ORDER+BY+1",
        200,
    );
    assert!(q.contains("id=\"sql-result\""));
    assert!(q.contains("12 rows"), "{q}");
    let (code, headers, csv) = http(
        a,
        "GET",
        "/sql.csv?q=SELECT+service_name%2C+count(*)+AS+n+FROM+spans+GROUP+BY+1+ORDER+BY+1",
        &[],
        b"",
    );
    assert_eq!(code, 200);
    assert!(headers["content-type"].starts_with("text/csv"));
    let csv = String::from_utf8(csv).expect("utf-8");
    assert_eq!(csv.lines().next(), Some("service_name,n"));
    assert_eq!(csv.lines().count(), 13);
    let ids = page(
        a,
        &format!("/sql?q=SELECT+trace_id+FROM+spans+WHERE+trace_id+%3D+%27{trace}%27+LIMIT+1"),
        200,
    );
    assert!(
        ids.contains(&format!("<td>{trace}</td>")),
        "ids show as hex"
    );

    // The assets and the probes.
    for (path, kind) in [
        ("/assets/scry.css", "text/css"),
        ("/assets/scry.js", "text/javascript"),
    ] {
        let (code, headers, _) = http(a, "GET", path, &[], b"");
        assert_eq!(code, 200);
        assert!(headers["content-type"].starts_with(kind));
    }
    assert_eq!(http(a, "GET", "/assets/other.js", &[], b"").0, 404);
    assert_eq!(http(a, "GET", "/health", &[], b"").0, 200);
    assert_eq!(http(a, "GET", "/ready", &[], b"").0, 200);
    ui.shutdown().expect("shutdown");
}

#[test]
fn bad_input_gets_a_page_that_says_what_and_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = shop(dir.path());
    let mut opts = local();
    opts.ui.sql_rows = 5;
    opts.ui.csv_rows = 7;
    let ui = serve(dir.path(), opts);
    let a = ui.addr();
    let bad = page(a, "/trace/zz", 400);
    assert!(bad.contains("trace id"), "{bad}");
    let missing = page(a, &format!("/trace/{}", "0".repeat(31) + "1"), 404);
    assert!(missing.contains("is not in the store"));
    let span = page(a, &format!("/trace/{trace}?span=0000000000000001"), 404);
    assert!(span.contains("span 0000000000000001 is not in trace"));
    let span = page(a, &format!("/trace/{trace}?span=xyz"), 400);
    assert!(span.contains("16 hex digits"));
    let q = page(a, "/traces?q=%28timeout", 400);
    assert!(q.contains("search:"), "{q}");
    for (path, says) in [
        ("/traces?min=5parsecs", "min:"),
        ("/traces?status=sad", "status:"),
        ("/traces?limit=many", "limit:"),
        ("/traces?range=soon", "range:"),
        ("/traces?end=yesterday", "end:"),
        ("/traces?attr=a+b%3Dc", "attr:"),
        ("/logs?severity=loud", "severity:"),
        ("/services?map=wide", "map:"),
    ] {
        let p = page(a, path, 400);
        assert!(p.contains(says), "{path}: {p}");
    }
    // The console refuses writes and says why, shows errors in place, and cuts rows.
    for q in [
        "CREATE+VIEW+v+AS+SELECT+1",
        "COPY+(SELECT+1)+TO+%27%2Ftmp%2Fx.csv%27",
        "SET+datafusion.execution.batch_size+%3D+1",
        "SELECT+1%3B+SELECT+2",
        "SELECT+1+AS+x+INTO+made",
        "SELECT+1+AS+x+UNION+ALL+SELECT+2+INTO+made",
    ] {
        let p = page(a, &format!("/sql?q={q}"), 200);
        assert!(p.contains("class=\"error\""), "{q}: {p}");
        let (code, _, body) = http(a, "GET", &format!("/sql.csv?q={q}"), &[], b"");
        assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    }
    let p = page(a, "/sql?q=SELECT+*+FROM+made", 200);
    assert!(
        p.contains("class=\"error\""),
        "SELECT INTO made no table: {p}"
    );
    let p = page(a, "/sql?q=SELECT+nosuchcolumn+FROM+spans", 200);
    assert!(p.contains("nosuchcolumn"));
    let p = page(a, "/sql?q=SELECT+*+FROM+spans", 200);
    assert!(p.contains("cut at 5 rows"), "{p}");
    assert_eq!(count(&p, "<tr><td>"), 5);
    let (_, _, csv) = http(a, "GET", "/sql.csv?q=SELECT+span_id+FROM+spans", &[], b"");
    assert_eq!(
        String::from_utf8_lossy(&csv).lines().count(),
        8,
        "header + 7 rows"
    );
    let (code, _, _) = http(a, "GET", "/sql.csv", &[], b"");
    assert_eq!(code, 400);
    ui.shutdown().expect("shutdown");

    // A statement over the time limit is cancelled with a message.
    let mut opts = local();
    opts.ui.sql_timeout = std::time::Duration::from_millis(1);
    let ui = serve(dir.path(), opts);
    let p = page(
        ui.addr(),
        "/sql?q=SELECT+count(*)+FROM+spans+a+CROSS+JOIN+spans+b+CROSS+JOIN+spans+c",
        200,
    );
    assert!(p.contains("time limit"), "{p}");
    ui.shutdown().expect("shutdown");
}

#[test]
fn the_token_guards_every_page_and_a_browser_logs_in_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    shop(dir.path());
    let mut opts = local();
    opts.token = Some("s3cret;x".into());
    let ui = serve(dir.path(), opts);
    let a = ui.addr();
    assert_eq!(http(a, "GET", "/traces", &[], b"").0, 401);
    assert_eq!(http(a, "GET", "/assets/scry.css", &[], b"").0, 401);
    assert_eq!(http(a, "GET", "/health", &[], b"").0, 200);
    assert_eq!(http(a, "GET", "/traces?token=wrong", &[], b"").0, 401);
    let (code, headers, _) = http(a, "GET", "/logs?range=all&token=s3cret%3Bx", &[], b"");
    assert_eq!(code, 303);
    assert_eq!(headers["location"], "/logs?range=all");
    let cookie = headers["set-cookie"]
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    assert!(headers["set-cookie"].contains("HttpOnly"));
    assert_eq!(
        http(a, "GET", "/logs?range=all", &[("Cookie", &cookie)], b"").0,
        200
    );
    assert_eq!(
        http(
            a,
            "GET",
            "/traces",
            &[("Authorization", "Bearer s3cret;x")],
            b""
        )
        .0,
        200
    );
    assert_eq!(
        http(a, "GET", "/traces", &[("Cookie", "scry_token=s3cret")], b"").0,
        401
    );
    // The login redirect stays on this site.
    let (code, headers, _) = http(a, "GET", "//evil.example/x?token=s3cret%3Bx", &[], b"");
    assert_eq!(code, 303);
    assert_eq!(headers["location"], "/evil.example/x");
    // With a token, any host name may browse (the token is the guard).
    assert_eq!(
        http(
            a,
            "GET",
            "/traces",
            &[
                ("Authorization", "Bearer s3cret;x"),
                ("Host", "scry.example:80")
            ],
            b""
        )
        .0,
        200
    );
    ui.shutdown().expect("shutdown");

    // Without a token, pages answer only loopback host names (no DNS rebinding).
    let ui = serve(dir.path(), local());
    let a = ui.addr();
    for host in ["localhost:1234", "127.0.0.1", "[::1]:80"] {
        assert_eq!(
            http(a, "GET", "/traces", &[("Host", host)], b"").0,
            200,
            "{host}"
        );
    }
    let (code, _, body) = http(
        a,
        "GET",
        "/traces",
        &[("Host", "rebound.example:4319")],
        b"",
    );
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        http(a, "GET", "/health", &[("Host", "rebound.example")], b"").0,
        200
    );
    ui.shutdown().expect("shutdown");

    // An empty token would let everyone in: refused.
    let mut opts = local();
    opts.token = Some(String::new());
    let db = Arc::new(Db::open_read_only(dir.path(), Options::default()).expect("open"));
    let e = UiServer::start(db, opts).expect_err("an empty token");
    assert!(e.to_string().contains("token"), "{e}");
}

#[test]
fn scry_serve_serves_the_ui_and_metrics_negotiates() {
    let dir = tempfile::tempdir().expect("tempdir");
    shop(dir.path());
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    let mut opts = scrydb::server::ServeOptions::default();
    opts.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    opts.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    opts.self_metrics_every = None;
    let server = scrydb::server::Server::start(db.clone(), opts).expect("serve");
    let a = server.http_addr();
    let html = page(a, "/metrics?range=all", 200);
    assert!(html.contains("live: receiving OTLP"));
    let (code, headers, text) = http(a, "GET", "/metrics", &[("Accept", "text/plain")], b"");
    assert_eq!(code, 200);
    assert!(headers["content-type"].starts_with("text/plain"));
    assert!(
        String::from_utf8_lossy(&text).contains("scrydb_"),
        "Prometheus text"
    );
    page(a, "/traces?range=all", 200);
    page(a, "/services?range=all", 200);
    server.shutdown().expect("shutdown");

    // Without the UI, `/metrics` is the exposition for everyone and pages are not found.
    let mut opts = scrydb::server::ServeOptions::default();
    opts.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    opts.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    opts.self_metrics_every = None;
    opts.ui = None;
    let server = scrydb::server::Server::start(db.clone(), opts).expect("serve");
    let (code, _, text) = http(
        server.http_addr(),
        "GET",
        "/metrics",
        &[("Accept", "text/html")],
        b"",
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&text).contains("scrydb_"));
    assert_eq!(http(server.http_addr(), "GET", "/traces", &[], b"").0, 404);
    server.shutdown().expect("shutdown");
}

/// A trace of one root with `n` like children (and one failing child in the middle).
fn wide_trace(n: usize) -> (RecordBatch, [u8; 16]) {
    let trace = [7u8; 16];
    let ts = |v: Vec<i64>| Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"));
    let mut starts = vec![BASE];
    let mut ends = vec![BASE + 10_000_000_000];
    let mut ids = vec![1u64.to_be_bytes()];
    let mut parents = vec![None];
    let mut names = vec!["batch job".to_string()];
    let mut status = vec!["OK".to_string()];
    for i in 0..n {
        starts.push(BASE + i as i64 * 1_000_000);
        ends.push(BASE + i as i64 * 1_000_000 + 900_000);
        ids.push((i as u64 + 2).to_be_bytes());
        parents.push(Some(1u64.to_be_bytes()));
        names.push("cache GET".into());
        status.push(if i == n / 2 {
            "ERROR".into()
        } else {
            "UNSET".into()
        });
    }
    let rows = starts.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "end_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("status_code", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            ts(starts),
            ts(ends),
            Arc::new(
                FixedSizeBinaryArray::try_from_iter(std::iter::repeat_n(trace, rows)).expect("ids"),
            ),
            Arc::new(FixedSizeBinaryArray::try_from_iter(ids.into_iter()).expect("ids")),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(parents.into_iter(), 8)
                    .expect("ids"),
            ),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                "worker", rows,
            ))),
            Arc::new(StringArray::from_iter_values(names)),
            Arc::new(StringArray::from_iter_values(status)),
        ],
    )
    .expect("batch");
    (batch, trace)
}

#[test]
fn a_huge_trace_folds_its_repeats_and_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (batch, trace) = wide_trace(5_000);
    let db = Db::open(dir.path(), Options::default()).expect("open");
    db.append(Signal::Spans, &batch).expect("append");
    db.close().expect("close");
    let ui = serve(dir.path(), local());
    let a = ui.addr();
    let id = hex(&trace);
    let folded = page(a, &format!("/trace/{id}"), 200);
    // The root, two + one around the failing span on each side, the failing span.
    assert_eq!(count(&folded, "class=\"wf-row"), 1 + 3 + 1 + 3, "{folded}");
    assert_eq!(count(&folded, "class=\"wf-fold\""), 2);
    assert!(folded.contains("more worker cache GET spans"));
    assert!(
        !folded.contains("class=\"minimap\""),
        "short enough for a screen"
    );
    let all = page(a, &format!("/trace/{id}?all=1"), 200);
    assert_eq!(
        count(&all, "class=\"wf-row"),
        scrydb::ui::MAX_WATERFALL_ROWS
    );
    assert!(all.contains("more rows not drawn"));
    assert!(all.contains("class=\"minimap\""));
    // A span deep in the fold is still shown when asked for: it is never folded away.
    let deep = page(
        a,
        &format!("/trace/{id}?span={}", hex(&1000u64.to_be_bytes())),
        200,
    );
    assert!(deep.contains(&format!("id=\"s-{}\"", hex(&1000u64.to_be_bytes()))));
    ui.shutdown().expect("shutdown");
}

/// The Python with Playwright that `tests/run.sh` installs, and Debian's Chromium.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let python = std::env::var_os("SCRY_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python");
            venv.exists().then_some(venv)
        })?;
    let chromium = std::env::var_os("SCRY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    chromium.exists().then_some((python, chromium))
}

#[test]
fn in_a_real_browser_search_leads_to_the_trace_and_the_critical_path_toggles() {
    if std::env::var_os("SCRY_SKIP_BROWSER").is_some() {
        eprintln!("skipped: SCRY_SKIP_BROWSER is set");
        return;
    }
    let (python, chromium) = browser().expect(
        "Chromium and Playwright are not installed: run the README's test command \
         (tests/run.sh), which installs Debian's chromium and Playwright into target/venv, \
         or set SCRY_SKIP_BROWSER=1",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = shop(dir.path());
    let ui = serve(dir.path(), local());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/ui_browser.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script)
        .arg(format!("http://{}", ui.addr()))
        .arg(&trace)
        .env("SCRY_CHROMIUM", &chromium);
    if let Some(shots) = std::env::var_os("SCRY_UI_SCREENSHOTS") {
        cmd.env("SCRY_UI_SCREENSHOTS", shots);
    }
    let out = cmd.output().expect("run the browser test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("all browser checks passed"),
        "{stdout}\n{stderr}"
    );
    ui.shutdown().expect("shutdown");
}

/// Reads `child`'s standard output until the line with `open http://…`: the address and path.
fn opened(child: &mut std::process::Child) -> (SocketAddr, String, String) {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.expect("a line");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(url) = line.trim().strip_prefix("open http://") {
            let url = url.split_whitespace().next().expect("a URL");
            let (addr, path) = url.split_at(url.find('/').expect("a path"));
            return (addr.parse().expect("address"), path.to_string(), seen);
        }
    }
    panic!("no `open http://` line in:\n{seen}");
}

/// SIGTERM, then the exit status.
fn stop(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    child.wait().expect("wait")
}

#[test]
fn scry_demo_ui_opens_on_the_affected_trace_and_scry_ui_serves_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args([
            "demo",
            "--seconds",
            "60",
            "--rate",
            "8",
            "--ui",
            "127.0.0.1:0",
        ])
        .env_remove("SCRY_DB")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start scry demo --ui");
    let (addr, path, printed) = opened(&mut demo);
    assert!(
        path.starts_with("/trace/") && path.ends_with("?cp=1"),
        "{path}"
    );
    assert!(printed.contains("verdict:"), "{printed}");
    let trace = page(addr, &path, 200);
    assert!(trace.contains("class=\"waterfall cp-on\""));
    assert!(
        trace.contains("wf-row err"),
        "the affected trace failed: {trace}"
    );
    page(addr, "/services?range=all", 200);
    assert!(stop(demo).success());

    // `scry ui` over the demo's store, with a token: the printed URL logs the browser in.
    let mut ui = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args(["ui", "--http", "127.0.0.1:0", "--token", "t0k en"])
        .env_remove("SCRY_DB")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start scry ui");
    let (addr, path, _) = opened(&mut ui);
    assert_eq!(path, "/traces?token=t0k+en");
    assert_eq!(http(addr, "GET", "/traces", &[], b"").0, 401);
    let (code, headers, _) = http(addr, "GET", &path, &[], b"");
    assert_eq!(code, 303);
    let cookie = headers["set-cookie"]
        .split(';')
        .next()
        .expect("cookie")
        .to_string();
    let (code, _, body) = http(
        addr,
        "GET",
        "/traces?range=all",
        &[("Cookie", &cookie)],
        b"",
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("class=\"trace-link\""));
    assert!(stop(ui).success());
}
