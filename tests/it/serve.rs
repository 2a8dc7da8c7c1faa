//! `scry serve` as a separate process: real OpenTelemetry SDK clients over both transports,
//! every way a request can be wrong, the token, a kill -9 during a steady export, graceful
//! shutdown, probes of a service that goes down and up, `scry tail`, and the lock error
//! naming the server. Every check reads the store through a read-only open beside the
//! running server (another process) or after it stopped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use scrydb::{Db, Options};
use scrydb_workload::Rng;

use crate::common::{http, single_i64, try_http};

/// A `scry serve` child process and its addresses.
struct Serve {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Serve {
    fn start(dir: &Path, extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scry"))
            .arg("--db")
            .arg(dir)
            .args(["serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scry serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the first line");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                .parse()
                .expect("address")
        };
        let (grpc, http) = (addr("grpc="), addr("http="));
        Serve { child, grpc, http }
    }

    /// SIGTERM, then wait: a graceful stop must exit 0 within a few seconds.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut out = String::new();
                if let Some(mut s) = self.child.stdout.take() {
                    let _ = s.read_to_string(&mut out);
                }
                assert!(status.success(), "scry serve exited with {status}: {out}");
                return out;
            }
            assert!(Instant::now() < deadline, "scry serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn traces_request(seed: u64, spans: usize) -> ExportTraceServiceRequest {
    scrydb_workload::otlp::traces(&mut Rng::new(seed), spans)
}

fn spans_in(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn count_sql(dir: &Path, sql: &str) -> i64 {
    let db = Db::open_read_only(dir, Options::default()).expect("open read-only");
    single_i64(&db.sql_blocking(sql).expect(sql))
}

const PB: (&str, &str) = ("Content-Type", "application/x-protobuf");

#[test]
fn opentelemetry_sdk_exports_over_grpc_and_http_arrive_whole() {
    let python = crate::duckdb::python().expect(
        "the OpenTelemetry Python SDK is not installed: run the README's test command \
         (tests/run.sh), which installs it into target/venv, or set SCRY_PYTHON",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &["--token", "s3cret"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/otel_export.py");
    let mut summaries = Vec::new();
    for (transport, addr) in [("grpc", server.grpc), ("http", server.http)] {
        let out = Command::new(&python)
            .arg(&script)
            .args([
                "--transport",
                transport,
                "--run-id",
                "it",
                "--token",
                "s3cret",
            ])
            .args(["--endpoint", &format!("http://{addr}")])
            .output()
            .expect("run the SDK exporter");
        assert!(
            out.status.success(),
            "{transport}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one JSON line");
        summaries.push(summary);
    }
    // A second process (this one) reads while the server runs.
    let db = Db::open_read_only(dir.path(), Options::default()).expect("open read-only");
    for s in &summaries {
        let service = s["service"].as_str().expect("service");
        let q = |sql: String| single_i64(&db.sql_blocking(&sql).expect(&sql));
        assert_eq!(
            q(format!(
                "SELECT count(*) FROM spans WHERE service_name = '{service}'"
            )),
            s["spans"].as_i64().expect("spans"),
            "{service}"
        );
        assert_eq!(
            q(format!(
                "SELECT count(*) FROM spans WHERE service_name = '{service}' \
                 AND resource_attributes['scry.run_id'] = 'it' \
                 AND attributes['http.route'] = '/checkout' AND attributes['ratio'] = '0.5' \
                 AND attributes['flag'] = 'true' AND attributes['tags'] = '[\"a\",\"b\"]'"
            )),
            s["spans"].as_i64().expect("spans"),
            "{service}: attributes and resource"
        );
        let error_trace = s["error_trace_id"].as_str().expect("error trace");
        assert_eq!(
            q(format!(
                "SELECT count(*) FROM spans WHERE trace_id = '{error_trace}' \
                 AND status_code = 'ERROR' AND status_message = 'card declined' \
                 AND events[1]['name'] = 'retry' AND parent_span_id IS NOT NULL"
            )),
            1,
            "{service}: the failed span with its event"
        );
        assert_eq!(
            q(format!(
                "SELECT count(*) FROM logs WHERE service_name = '{service}' \
                 AND trace_id = '{error_trace}' AND body LIKE 'log % of it'"
            )),
            s["logs"].as_i64().expect("logs"),
            "{service}: logs carry their trace"
        );
        assert_eq!(
            q(format!(
                "SELECT count(*) FROM logs WHERE service_name = '{service}' \
                 AND severity_text = 'WARN'"
            )),
            1
        );
        assert_eq!(
            q(format!(
                "SELECT count(*) FROM metrics WHERE service_name = '{service}' AND \
                 ((name = 'scry.test.requests' AND value_int = 3 AND is_monotonic) OR \
                  (name = 'scry.test.latency' AND count = 3 AND sum = 555 AND unit = 'ms'))"
            )),
            2,
            "{service}: the counter and the histogram"
        );
    }
    drop(db);
    let out = server.stop();
    assert!(out.contains("stored 30 spans, 10 logs, 4 metrics"), "{out}");
}

#[test]
fn every_malformed_request_gets_its_status_and_the_store_stays_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(
        dir.path(),
        &[
            "--max-request-bytes",
            "1MiB",
            "--max-in-flight-bytes",
            "8MiB",
        ],
    );
    let h = server.http;
    let good = traces_request(1, 50);
    let body = good.encode_to_vec();

    let (s, hd, b) = http(h, "POST", "/v1/traces", &[PB], &body);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(hd["content-type"], "application/x-protobuf");
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            &b[..],
        )
        .expect("an ExportTraceServiceResponse");
    assert_eq!(resp.partial_success, None);

    // Garbage, truncated protobuf, JSON of the wrong signal: 400 with a google.rpc.Status.
    for (what, ct, payload) in [
        (
            "garbage",
            "application/x-protobuf",
            b"\xff\xff\xff\xff not protobuf".to_vec(),
        ),
        (
            "truncated",
            "application/x-protobuf",
            body[..body.len() / 2].to_vec(),
        ),
        (
            "bad json",
            "application/json",
            b"{\"resourceSpans\": [".to_vec(),
        ),
        (
            "logs json on the traces endpoint",
            "application/json",
            br#"{"resourceLogs":[]}"#.to_vec(),
        ),
    ] {
        let (s, hd, b) = http(h, "POST", "/v1/traces", &[("Content-Type", ct)], &payload);
        assert_eq!(s, 400, "{what}: {}", String::from_utf8_lossy(&b));
        assert_eq!(hd["content-type"], ct, "{what}");
        if ct == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON status");
            assert_eq!(v["code"], 3, "{what}");
            assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{what}");
        }
    }
    // Wrong content type or encoding: 415.
    let (s, _, _) = http(
        h,
        "POST",
        "/v1/logs",
        &[("Content-Type", "text/plain")],
        b"hi",
    );
    assert_eq!(s, 415);
    let (s, _, _) = http(h, "POST", "/v1/logs", &[], b"hi");
    assert_eq!(s, 415, "no content type");
    let (s, _, _) = http(
        h,
        "POST",
        "/v1/traces",
        &[PB, ("Content-Encoding", "br")],
        &body,
    );
    assert_eq!(s, 415);
    // Too large, declared or streamed, and a gzip bomb: 413.
    let (s, _, _) = http(
        h,
        "POST",
        "/v1/traces",
        &[PB, ("Content-Length", "2000000")],
        &[],
    );
    assert_eq!(s, 413, "declared length");
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    let (s, _, b) = http(
        h,
        "POST",
        "/v1/traces",
        &[PB, ("Content-Encoding", "gzip")],
        &bomb,
    );
    assert_eq!(s, 413, "gzip bomb: {}", String::from_utf8_lossy(&b));
    let (s, _, _) = http(
        h,
        "POST",
        "/v1/traces",
        &[PB, ("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(s, 400, "invalid gzip");
    // Gzip done right, as protobuf and as JSON.
    let (s, _, b) = http(
        h,
        "POST",
        "/v1/traces",
        &[PB, ("Content-Encoding", "gzip")],
        &gzip(&body),
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"ok",
         "startTimeUnixNano":"1764028800000000000","endTimeUnixNano":"1764028800100000000"},
        {"traceId":"5B8E","spanId":"EEE19B7EC3C1B174","name":"bad id",
         "startTimeUnixNano":"1764028800000000000","endTimeUnixNano":"1764028800100000000"}]}]}]}"#;
    let (s, hd, b) = http(
        h,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/json; charset=utf-8")],
        json,
    );
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(hd["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&b).expect("JSON response");
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("spans[1]"),
        "{v}"
    );
    // Other methods and paths.
    let (s, _, _) = http(h, "GET", "/v1/traces", &[], b"");
    assert_eq!(s, 405);
    let (s, _, _) = http(h, "POST", "/v1/nothing", &[PB], &body);
    assert_eq!(s, 404);

    let (s, _, b) = http(h, "GET", "/ready", &[], b"");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let (_, _, metrics) = http(h, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    for want in [
        "scrydb_receiver_requests_total{transport=\"http\",signal=\"spans\",outcome=\"bad_request\"} 5",
        "scrydb_receiver_requests_total{transport=\"http\",signal=\"spans\",outcome=\"too_large\"} 2",
        "scrydb_receiver_requests_total{transport=\"http\",signal=\"spans\",outcome=\"partial\"} 1",
        "scrydb_receiver_records_accepted_total{signal=\"spans\"} 101",
        "scrydb_receiver_records_rejected_total{signal=\"spans\"} 1",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }
    assert_eq!(
        metrics
            .matches("# TYPE scrydb_receiver_requests_total")
            .count(),
        1
    );
    server.stop();
    assert_eq!(count_sql(dir.path(), "SELECT count(*) FROM spans"), 101);
}

#[test]
fn grpc_answers_partial_success_gzip_and_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(
        dir.path(),
        &["--token", "tok", "--max-request-bytes", "1MiB"],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let url = format!("http://{}", server.grpc);
        let mut client = TraceServiceClient::connect(url.clone())
            .await
            .expect("connect");
        let authed = |req: ExportTraceServiceRequest, token: &str| {
            let mut r = tonic::Request::new(req);
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("ascii"),
            );
            r
        };
        // No token, wrong token.
        let e = client
            .export(traces_request(1, 10))
            .await
            .expect_err("no token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        let e = client
            .export(authed(traces_request(1, 10), "nope"))
            .await
            .expect_err("wrong token");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        // A good request, then one with an invalid span: partial success.
        let ok = client
            .export(authed(traces_request(2, 100), "tok"))
            .await
            .expect("export");
        assert_eq!(ok.into_inner().partial_success, None);
        let mut bad = traces_request(3, 10);
        let n = spans_in(&bad);
        bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 15];
        let resp = client
            .export(authed(bad, "tok"))
            .await
            .expect("partial success")
            .into_inner();
        let partial = resp.partial_success.expect("partial success");
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("15 bytes"),
            "{}",
            partial.error_message
        );
        // Gzip-compressed gRPC.
        let mut gz = TraceServiceClient::connect(url.clone())
            .await
            .expect("connect")
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        gz.export(authed(traces_request(4, 100), "tok"))
            .await
            .expect("gzip export");
        // A gzip bomb: 8 MiB of one letter compress to a few KiB, over the 1 MiB limit once
        // inflated.
        let mut bomb = traces_request(7, 1);
        bomb.resource_spans[0].scope_spans[0].spans[0].name = "a".repeat(8 << 20);
        let e = gz.export(authed(bomb, "tok")).await.expect_err("gzip bomb");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
        // A message over the limit.
        let e = client
            .export(authed(traces_request(5, 5000), "tok"))
            .await
            .expect_err("too large");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
        let total = spans_in(&traces_request(2, 100)) + n - 1 + spans_in(&traces_request(4, 100));
        total as i64
    });
    let want = {
        let (a, b, c) = (
            traces_request(2, 100),
            traces_request(3, 10),
            traces_request(4, 100),
        );
        (spans_in(&a) + spans_in(&b) - 1 + spans_in(&c)) as i64
    };
    assert_eq!(
        count_sql(dir.path(), "SELECT count(*) FROM spans"),
        want,
        "while it runs"
    );
    // /health needs no token; everything else does.
    let (s, _, _) = http(server.http, "GET", "/health", &[], b"");
    assert_eq!(s, 200);
    let (s, hd, _) = http(server.http, "GET", "/metrics", &[], b"");
    assert_eq!(s, 401);
    assert_eq!(hd["www-authenticate"], "Bearer");
    let (s, _, _) = http(
        server.http,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer tok")],
        b"",
    );
    assert_eq!(s, 200);
    let body = traces_request(6, 5).encode_to_vec();
    let (s, _, _) = http(
        server.http,
        "POST",
        "/v1/traces",
        &[PB, ("Authorization", "Bearer bad")],
        &body,
    );
    assert_eq!(s, 401);
    server.stop();
}

#[test]
fn a_kill_9_during_a_steady_export_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &[]);
    let addr = server.http;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3u64)
        .map(|c| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut req = traces_request(c * 1_000_000 + i, 64);
                    // Mark every span with its request so the store can be checked per request.
                    let key = format!("c{c}-{i}");
                    for rs in &mut req.resource_spans {
                        for ss in &mut rs.scope_spans {
                            for sp in &mut ss.spans {
                                sp.attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
                                    key: "req".into(),
                                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                                        value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(key.clone())),
                                    }),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                    let body = req.encode_to_vec();
                    match try_http(addr, "POST", "/v1/traces", &[PB], &body) {
                        Ok((200, _, _)) => acked.push((key, spans_in(&req))),
                        Ok((status, _, b)) => panic!("{status}: {}", String::from_utf8_lossy(&b)),
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = server.child.id().to_string();
    Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("kill -9");
    stop.store(true, Ordering::SeqCst);
    let acked: Vec<(String, usize)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    drop(server);
    assert!(
        acked.len() > 10,
        "only {} requests acknowledged",
        acked.len()
    );
    // A read-only open after the crash already sees every acknowledged request (from the
    // log); a writer's recovery keeps them.
    for open_as_writer in [false, true] {
        let db = if open_as_writer {
            Db::open(dir.path(), Options::default()).expect("recover")
        } else {
            Db::open_read_only(dir.path(), Options::default()).expect("read-only")
        };
        let per_req = db
            .sql_blocking(
                "SELECT attributes['req'] || ':' || CAST(count(*) AS VARCHAR) AS x FROM spans GROUP BY attributes['req']",
            )
            .expect("query");
        let found: BTreeMap<String, i64> = crate::common::rows(&per_req)
            .iter()
            .filter_map(|r| r.strip_prefix("x=")?.split_once(':'))
            .map(|(k, n)| (k.to_string(), n.trim().parse().expect("count")))
            .collect();
        for (key, spans) in &acked {
            assert_eq!(
                found.get(key).copied(),
                Some(*spans as i64),
                "acknowledged request {key} (writer: {open_as_writer})"
            );
        }
        if open_as_writer {
            db.close().expect("close");
        }
    }
}

/// A tiny HTTP service whose health endpoint can be switched off and on.
struct Service {
    up: Arc<AtomicBool>,
    port: u16,
}

impl Service {
    fn start() -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(false).expect("blocking");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                if flag.load(Ordering::SeqCst) {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                } else {
                    let _ = conn.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown",
                    );
                }
            }
        });
        Service { up, port }
    }
}

#[test]
fn a_probe_records_a_service_going_down_and_up_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start();
    // A second probe of a port nobody listens on: down from the start.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let probe = format!("cart=http://127.0.0.1:{}/healthz", svc.port);
    let gone = format!("ghost=http://127.0.0.1:{closed_port}/");
    let server = Serve::start(
        dir.path(),
        &[
            "--probe",
            &probe,
            "--probe",
            &gone,
            "--probe-interval",
            "100ms",
            "--probe-timeout",
            "1s",
        ],
    );
    let ups = |dir: &Path| {
        count_sql(
            dir,
            "SELECT count(*) FROM metrics WHERE name = 'up' AND service_name = 'cart'",
        )
    };
    let wait_for = |n: i64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while ups(dir.path()) < n {
            assert!(Instant::now() < deadline, "no {n} probes");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(3);
    svc.up.store(false, Ordering::SeqCst);
    let at = ups(dir.path());
    wait_for(at + 3);
    svc.up.store(true, Ordering::SeqCst);
    let at = ups(dir.path());
    wait_for(at + 3);
    server.stop();

    let db = Db::open_read_only(dir.path(), Options::default()).expect("open");
    let q = |sql: &str| {
        let b = db.sql_blocking(sql).expect(sql);
        crate::common::rows(&b)
    };
    // The `up` series goes 1…, 0…, 1… in time order.
    let series = db
        .sql_blocking(
            "SELECT CAST(value AS BIGINT) FROM metrics WHERE name = 'up' AND service_name = 'cart' ORDER BY time",
        )
        .expect("series");
    let values: Vec<i64> = series
        .iter()
        .flat_map(|b| {
            let a = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(
                b.column(0).as_ref(),
            );
            (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
        })
        .collect();
    let mut runs: Vec<i64> = values.clone();
    runs.dedup();
    assert_eq!(runs, vec![1, 0, 1], "{values:?}");
    // One log per state change, the down one with the reason.
    let logs = q("SELECT severity_text, body FROM logs WHERE service_name = 'cart'");
    assert_eq!(logs.len(), 3, "{logs:?}");
    let has = |sev: &str, text: &str| logs.iter().any(|l| l.contains(sev) && l.contains(text));
    assert!(has("ERROR", "cart is down: answered HTTP 503"), "{logs:?}");
    assert!(has("INFO", "cart is up (HTTP 200"), "{logs:?}");
    assert!(has("INFO", "cart is up again (HTTP 200"), "{logs:?}");
    let codes = q(
        "SELECT DISTINCT CAST(value AS BIGINT) FROM metrics WHERE name = 'probe.status_code' AND service_name = 'cart' ORDER BY 1",
    );
    assert_eq!(codes.len(), 2, "200 and 503: {codes:?}");
    let ghost = q(
        "SELECT DISTINCT CAST(value AS BIGINT) FROM metrics WHERE name = 'up' AND service_name = 'ghost'",
    );
    assert_eq!(ghost.len(), 1, "{ghost:?}");
    assert!(ghost[0].contains('0'), "{ghost:?}");
    let ghost_logs = q("SELECT body FROM logs WHERE service_name = 'ghost'");
    assert_eq!(ghost_logs.len(), 1, "{ghost_logs:?}");
    assert!(ghost_logs[0].contains("cannot connect"), "{ghost_logs:?}");
    // The receiver's own metrics were written at shutdown.
    assert!(!q("SELECT 1 FROM metrics WHERE service_name = 'scrydb' LIMIT 1").is_empty());
}

#[test]
fn tail_prints_what_arrives_and_the_lock_error_names_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &[]);
    // A second writer is refused, naming the server's process.
    let out = Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args(["ingest", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("run scry ingest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("pid {}: ", server.child.id())) && stderr.contains("serve"),
        "{stderr}"
    );

    let mut tail = Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args([
            "tail",
            "--signal",
            "logs",
            "--where",
            "severity_number >= 13",
            "-n",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scry tail");
    std::thread::sleep(Duration::from_millis(700));
    let log = |sev: &str, n: u32, body: &str| {
        format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"cart"}}}}]}},
            "scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1764028800000000000","severityText":"{sev}",
            "severityNumber":{n},"body":{{"stringValue":"{body}"}},
            "traceId":"5b8efff798038103d269b633813fc60c"}}]}}]}}]}}"#
        )
    };
    for (sev, n, body) in [("INFO", 9, "all fine"), ("WARN", 13, "disk almost full")] {
        let (s, _, b) = http(
            server.http,
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/json")],
            log(sev, n, body).as_bytes(),
        );
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = tail.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "scry tail printed nothing");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    tail.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(status.success(), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("WARN  cart disk almost full trace=5b8efff798038103d269b633813fc60c"),
        "{out}"
    );
    // A filter that does not parse fails at once, naming the problem.
    let bad = Command::new(env!("CARGO_BIN_EXE_scry"))
        .arg("--db")
        .arg(dir.path())
        .args(["tail", "--where", "no_such_column = 1"])
        .output()
        .expect("run scry tail");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_column"));
    server.stop();
}

#[test]
fn requests_beyond_the_in_flight_budget_are_told_to_retry_later() {
    use scrydb::server::{ServeOptions, Server};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    let mut opts = ServeOptions::default();
    opts.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    opts.http_addr = "127.0.0.1:0".parse().expect("addr");
    opts.max_request_bytes = 64 << 10;
    opts.max_in_flight_bytes = 64 << 10;
    opts.self_metrics_every = None;
    let server = Server::start(db.clone(), opts).expect("start");
    let addr = server.http_addr();
    // A slow client: 60 KB declared, 48 KB sent, then it pauses (holding 48 KB of budget).
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 60000\r\n\r\n",
    )
    .expect("head");
    slow.write_all(&vec![0u8; 48_000])
        .expect("part of the body");
    std::thread::sleep(Duration::from_millis(300));
    let body = traces_request(1, 40).encode_to_vec();
    assert!(body.len() > 16 << 10, "{} bytes", body.len());
    let (s, hd, b) = http(addr, "POST", "/v1/traces", &[PB], &body);
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
    assert_eq!(hd["retry-after"], "1");
    let (s, _, _) = http(addr, "GET", "/health", &[], b"");
    assert_eq!(s, 200, "liveness is not load");
    // Once the slow request ends, the budget is back.
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    let (s, _, b) = http(addr, "POST", "/v1/traces", &[PB], &body);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(
        server
            .counters()
            .requests(scrydb::server::Outcome::RetryLater),
        1
    );
    server.shutdown().expect("shutdown");
    Arc::try_unwrap(db)
        .expect("sole owner")
        .close()
        .expect("close");
}

#[test]
fn a_store_that_failed_is_not_ready_and_answers_retry_later() {
    use scrydb::io::StdFs;
    use scrydb::io::fault::{FaultOp, FaultyFs};
    use scrydb::server::{ServeOptions, Server};
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = FaultyFs::new(Arc::new(StdFs));
    let db = Db::open(
        dir.path(),
        Options::default().file_system(Arc::new(fs.clone())),
    )
    .expect("open");
    let db = Arc::new(db);
    let mut opts = ServeOptions::default();
    opts.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    opts.http_addr = "127.0.0.1:0".parse().expect("addr");
    opts.self_metrics_every = None;
    let server = Server::start(db.clone(), opts).expect("start");
    let addr = server.http_addr();
    let body = traces_request(1, 20).encode_to_vec();
    assert_eq!(http(addr, "POST", "/v1/traces", &[PB], &body).0, 200);
    // The next log fsync fails: the store fail-stops.
    fs.fail_from(FaultOp::Sync, 1);
    let (s, hd, b) = http(addr, "POST", "/v1/traces", &[PB], &body);
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
    assert!(hd.contains_key("retry-after"));
    let (s, _, b) = http(addr, "GET", "/ready", &[], b"");
    assert_eq!(s, 503);
    assert!(
        String::from_utf8_lossy(&b).contains("refuses writes"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    assert_eq!(
        http(addr, "GET", "/health", &[], b"").0,
        200,
        "alive, not ready"
    );
    let (_, _, m) = http(addr, "GET", "/metrics", &[], b"");
    assert!(String::from_utf8_lossy(&m).contains("scrydb_poisoned 1"));
    server.shutdown().expect("shutdown");
    drop(db);
    // What was acknowledged is there after a reopen. The failed request's frame reached
    // the log before its fsync failed, so it may be there too (its outcome was unknown,
    // and the client was told to retry: OTLP delivery is at least once).
    fs.heal();
    let n = spans_in(&traces_request(1, 20)) as i64;
    let stored = count_sql(dir.path(), "SELECT count(*) FROM spans");
    assert!(
        stored == n || stored == 2 * n,
        "{stored} spans stored, {n} acknowledged"
    );
}

#[test]
fn rust_opentelemetry_otlp_exporter_over_grpc_with_gzip_and_token() {
    use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Serve::start(dir.path(), &["--token", "rust"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let provider = rt.block_on(async {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", "Bearer rust".parse().expect("ascii"));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", server.grpc))
            .with_metadata(metadata)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .expect("exporter");
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("rust-sdk")
                    .build(),
            )
            .build()
    });
    let tracer = provider.tracer("scrydb-test");
    let mut trace_id = String::new();
    tracer.in_span("GET /cart", |cx| {
        trace_id = cx.span().span_context().trace_id().to_string();
        let mut child = tracer.start("load cart");
        child.set_attribute(opentelemetry::KeyValue::new("cart.items", 3));
        child.set_status(opentelemetry::trace::Status::error("cache miss"));
        child.end();
    });
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    drop(rt);
    let db = Db::open_read_only(dir.path(), Options::default()).expect("open read-only");
    let rows = crate::common::rows(
        &db.sql_blocking(&format!(
            "SELECT name, attributes['cart.items'] AS items, status_message, parent_span_id IS NULL AS root \
             FROM spans WHERE service_name = 'rust-sdk' AND trace_id = '{trace_id}'"
        ))
        .expect("query"),
    );
    assert_eq!(
        rows,
        vec![
            "name=GET /cart|items=∅|status_message=∅|root=true".to_string(),
            "name=load cart|items=3|status_message=cache miss|root=false".to_string(),
        ]
    );
    drop(db);
    server.stop();
}
