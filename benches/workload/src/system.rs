//! A deterministic workload generator: a microservice system of twelve services that emits
//! OTLP traces, logs and metrics, with an optional injected fault whose ground truth is
//! recorded.
//!
//! Requests of three kinds enter at `frontend` and fan out through `gateway` to
//! `recommendation`, `ad`, `inventory` (PostgreSQL), `cart` (Redis), `checkout`, `currency`,
//! `payment`, `shipping`, and through a Kafka topic to `order-worker` and `email`. Spans
//! follow the OpenTelemetry semantic conventions (`http.*`, `rpc.*`, `db.*`,
//! `messaging.*`, `peer.service`); every call is a CLIENT span in the caller and a SERVER
//! span in the callee. Logs are linked to spans (and some are not); metrics are request
//! counters, latency histograms and exponential histograms with exemplars pointing at real
//! spans, and gauges (CPU, queue depth).
//!
//! A [`Fault`] in a time window makes one operation slow ([`FaultKind::Latency`]), fail
//! often ([`FaultKind::ErrorBurst`]), unreachable ([`FaultKind::Down`]) or fail so that its
//! callers retry ([`FaultKind::RetryStorm`]).
//!
//! The same seed and options always give the same telemetry.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::Rng;
use crate::proto::{i, kv, s};

/// The services of the simulated system.
pub const SERVICES: [&str; 12] = [
    "frontend",
    "gateway",
    "recommendation",
    "ad",
    "inventory",
    "cart",
    "checkout",
    "currency",
    "payment",
    "shipping",
    "order-worker",
    "email",
];

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The operation becomes slow (hundreds of milliseconds more).
    Latency,
    /// The operation fails for about half its calls.
    ErrorBurst,
    /// The service is unreachable: its callers' calls fail with "connection refused".
    Down,
    /// The operation fails with UNAVAILABLE most of the time and its callers retry up to
    /// three times, multiplying the traffic.
    RetryStorm,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Latency,
        FaultKind::ErrorBurst,
        FaultKind::Down,
        FaultKind::RetryStorm,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency",
            FaultKind::ErrorBurst => "error_burst",
            FaultKind::Down => "down",
            FaultKind::RetryStorm => "retry_storm",
        }
    }

    /// (service, operation) the fault can hit; the seed picks one.
    fn targets(self) -> [(&'static str, &'static str); 2] {
        match self {
            FaultKind::Latency => [("inventory", "SELECT products"), ("currency", "Convert")],
            FaultKind::ErrorBurst => [("payment", "Charge"), ("inventory", "ReserveStock")],
            FaultKind::Down => [("shipping", "GetQuote"), ("ad", "GetAds")],
            FaultKind::RetryStorm => [("cart", "GetCart"), ("currency", "Convert")],
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s.replace('-', "_"))
            .ok_or_else(|| {
                format!(
                    "unknown fault kind '{s}' (one of {})",
                    FaultKind::ALL.map(|k| k.name()).join(", ")
                )
            })
    }
}

/// The injected fault: the ground truth a diagnosis is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// The service whose operation misbehaves.
    pub service: &'static str,
    /// The operation (span name of its server span, or of the database span).
    pub operation: &'static str,
    /// Start of the fault window, ns since the epoch.
    pub start_ns: i64,
    /// End (exclusive) of the fault window.
    pub end_ns: i64,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Seed: the same seed gives the same telemetry.
    pub seed: u64,
    /// Start of the simulated time, ns since the epoch.
    pub start_ns: i64,
    /// Simulated seconds.
    pub seconds: u32,
    /// Requests (traces) entering per simulated second.
    pub traces_per_second: u32,
    /// Fault to inject in the middle third of the run, if any.
    pub fault: Option<FaultKind>,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            seed: 1,
            start_ns: 1_764_064_800_000_000_000, // 2025-11-25T10:00:00Z
            seconds: 180,
            traces_per_second: 20,
            fault: None,
        }
    }
}

/// One interval's telemetry as OTLP requests.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    /// Spans of the traces that started in the interval.
    pub traces: ExportTraceServiceRequest,
    /// Logs of the interval.
    pub logs: ExportLogsServiceRequest,
    /// Metric points of the interval.
    pub metrics: ExportMetricsServiceRequest,
    /// Spans in `traces`.
    pub spans: usize,
}

const MS: i64 = 1_000_000;
/// Simulated seconds per [`Chunk`] (also the metric export interval).
pub const CHUNK_SECONDS: u32 = 10;

/// A handled request: (operation, duration ns, failed, trace id, span id, start time).
type Handled = (String, i64, bool, Vec<u8>, Vec<u8>, i64);

/// Telemetry gathered per service during one chunk.
type ByService = BTreeMap<&'static str, ServiceData>;

/// The work a server span does below it: returns (duration, failed).
type Body<'b> = dyn FnMut(&mut Workload, &mut ByService, &Call<'_>) -> (i64, bool) + 'b;

#[derive(Default)]
struct ServiceData {
    spans: Vec<Span>,
    logs: Vec<LogRecord>,
    /// (route, duration ns, error, trace id, span id, time) of server spans.
    requests: Vec<Handled>,
    /// Durations of database calls.
    db_calls: Vec<(i64, Vec<u8>, Vec<u8>, i64)>,
}

/// The generator. Iterate it for [`Chunk`]s of [`CHUNK_SECONDS`] simulated seconds.
pub struct Workload {
    opts: WorkloadOptions,
    rng: Rng,
    fault: Option<Fault>,
    next_second: u32,
    counters: BTreeMap<(&'static str, String), (u64, u64)>,
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.namespace", s("shop")),
            kv("service.version", s("2.3.1")),
            kv("deployment.environment.name", s("production")),
            kv("host.name", s(&format!("{service}-7d9f8"))),
        ],
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    crate::proto::scope(name, "1.0.0")
}

/// A call being built: where it runs and what it is.
struct Call<'a> {
    trace: &'a [u8],
    parent: Option<&'a [u8]>,
    start: i64,
}

impl Workload {
    /// A generator for `opts`.
    pub fn new(opts: WorkloadOptions) -> Self {
        let mut rng = Rng::new(opts.seed);
        let fault = opts.fault.map(|kind| {
            let (service, operation) = kind.targets()[rng.below(2) as usize];
            let third = i64::from(opts.seconds) / 3 * 1_000_000_000;
            Fault {
                kind,
                service,
                operation,
                start_ns: opts.start_ns + third,
                end_ns: opts.start_ns + 2 * third,
            }
        });
        Workload {
            opts,
            rng,
            fault,
            next_second: 0,
            counters: BTreeMap::new(),
        }
    }

    /// The injected fault, if any.
    pub fn fault(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }

    /// The options.
    pub fn options(&self) -> &WorkloadOptions {
        &self.opts
    }

    fn fault_at(&self, service: &str, op: &str, t: i64) -> Option<FaultKind> {
        self.fault
            .as_ref()
            .filter(|f| {
                f.service == service && f.operation == op && t >= f.start_ns && t < f.end_ns
            })
            .map(|f| f.kind)
    }

    /// A latency around `median_ms` (log-normal-ish, deterministic).
    fn latency(&mut self, median_ms: f64) -> i64 {
        let u = (self.rng.below(1_000_000) as f64 + 0.5) / 1e6;
        let z = (u / (1.0 - u)).ln() * 0.35; // logistic ≈ normal
        ((median_ms * z.exp()) * MS as f64) as i64
    }

    fn new_span(
        &mut self,
        call: &Call<'_>,
        name: &str,
        kind: span::SpanKind,
        dur: i64,
        attrs: Vec<KeyValue>,
    ) -> Span {
        Span {
            trace_id: call.trace.to_vec(),
            span_id: self.rng.id::<8>().to_vec(),
            parent_span_id: call.parent.map(<[u8]>::to_vec).unwrap_or_default(),
            name: name.into(),
            kind: kind as i32,
            start_time_unix_nano: call.start as u64,
            end_time_unix_nano: (call.start + dur) as u64,
            attributes: attrs,
            flags: 0x100,
            status: Some(Status::default()),
            ..Default::default()
        }
    }

    fn fail(span: &mut Span, message: &str) {
        span.status = Some(Status {
            code: 2,
            message: message.into(),
        });
    }

    /// An RPC from `caller` to `service.op`: a CLIENT span in the caller and (unless the
    /// service is down) a SERVER span in the service whose work `body` adds. Returns the
    /// client span's duration and whether it failed.
    #[allow(clippy::too_many_arguments)]
    fn rpc(
        &mut self,
        out: &mut BTreeMap<&'static str, ServiceData>,
        caller: &'static str,
        service: &'static str,
        op: &'static str,
        median_ms: f64,
        call: &Call<'_>,
        body: &mut Body<'_>,
    ) -> (i64, bool) {
        let fault = self.fault_at(service, op, call.start);
        let attempts = if fault == Some(FaultKind::RetryStorm) {
            4
        } else {
            1
        };
        let mut t = call.start;
        let mut failed = false;
        for attempt in 0..attempts {
            let client_call = Call {
                trace: call.trace,
                parent: call.parent,
                start: t,
            };
            let mut client = self.new_span(
                &client_call,
                &format!("{service}.{op}"),
                span::SpanKind::Client,
                0,
                vec![
                    kv("rpc.system", s("grpc")),
                    kv("rpc.service", s(service)),
                    kv("rpc.method", s(op)),
                    kv("peer.service", s(service)),
                    kv("server.address", s(&format!("{service}.shop.svc"))),
                    kv("server.port", i(50051)),
                ],
            );
            if attempt > 0 {
                client.attributes.push(kv("rpc.retry.attempt", i(attempt)));
            }
            let net = self.latency(0.4);
            let (dur, err) = if fault == Some(FaultKind::Down) {
                Self::fail(&mut client, "connection refused");
                self.log(
                    out,
                    caller,
                    &client,
                    17,
                    &format!("call to {service}.{op} failed: connection refused"),
                );
                (self.latency(2.0), true)
            } else {
                let server_call = Call {
                    trace: call.trace,
                    parent: Some(&client.span_id),
                    start: t + net / 2,
                };
                let mut server = self.new_span(
                    &server_call,
                    op,
                    span::SpanKind::Server,
                    0,
                    vec![
                        kv("rpc.system", s("grpc")),
                        kv("rpc.service", s(service)),
                        kv("rpc.method", s(op)),
                        kv("rpc.grpc.status_code", i(0)),
                    ],
                );
                let server_id = server.span_id.clone();
                let child_start = server_call.start + self.latency(0.2);
                let child_call = Call {
                    trace: call.trace,
                    parent: Some(&server_id),
                    start: child_start,
                };
                let (inner, inner_err) = body(self, out, &child_call);
                let mut own = self.latency(median_ms);
                if fault == Some(FaultKind::Latency) {
                    own += 350 * MS + self.latency(150.0);
                }
                let mut err = inner_err;
                let fail_now = match fault {
                    Some(FaultKind::ErrorBurst) => self.rng.chance(0.5),
                    Some(FaultKind::RetryStorm) => self.rng.chance(0.8),
                    _ => self.rng.chance(0.002),
                };
                if fail_now {
                    let (code, msg) = match (fault, service) {
                        (Some(FaultKind::RetryStorm), _) => {
                            (14, "UNAVAILABLE: upstream overloaded")
                        }
                        (_, "payment") => (13, "card processor returned 502"),
                        _ => (13, "internal error"),
                    };
                    Self::fail(&mut server, msg);
                    server.attributes[3] = kv("rpc.grpc.status_code", i(code));
                    self.log(out, service, &server, 17, &format!("{op} failed: {msg}"));
                    err = true;
                } else if inner_err {
                    Self::fail(&mut server, "a dependency failed");
                }
                let dur = (child_start - server_call.start) + inner + own;
                server.end_time_unix_nano = (server_call.start + dur) as u64;
                if dur > 300 * MS {
                    self.log(
                        out,
                        service,
                        &server,
                        13,
                        &format!("slow {op}: {} ms", dur / MS),
                    );
                } else if self.rng.chance(0.1) {
                    self.log(out, service, &server, 9, &format!("{op} handled"));
                }
                let data = out.entry(service).or_default();
                data.requests.push((
                    op.to_string(),
                    dur,
                    err,
                    server.trace_id.clone(),
                    server.span_id.clone(),
                    server_call.start,
                ));
                data.spans.push(server);
                if err {
                    Self::fail(&mut client, "remote call failed");
                }
                (dur + net, err)
            };
            client.end_time_unix_nano = (t + dur) as u64;
            out.entry(caller).or_default().spans.push(client);
            t += dur;
            failed = err;
            if !err {
                break;
            }
            t += 5 * MS; // backoff
        }
        (t - call.start, failed)
    }

    /// A database (or cache) call: one CLIENT span in `service`.
    #[allow(clippy::too_many_arguments)]
    fn db(
        &mut self,
        out: &mut BTreeMap<&'static str, ServiceData>,
        service: &'static str,
        system: &str,
        op: &'static str,
        statement: &str,
        median_ms: f64,
        call: &Call<'_>,
    ) -> (i64, bool) {
        let mut dur = self.latency(median_ms);
        let fault = self.fault_at(service, op, call.start);
        if fault == Some(FaultKind::Latency) {
            dur += 350 * MS + self.latency(150.0);
        }
        let mut attrs = vec![
            kv("db.system", s(system)),
            kv("db.operation.name", s(op.split(' ').next().unwrap_or(op))),
            kv("db.query.text", s(statement)),
            kv("server.address", s(&format!("{system}.shop.svc"))),
        ];
        if system == "postgresql" {
            attrs.push(kv("db.namespace", s("shop")));
        }
        let mut sp = self.new_span(call, op, span::SpanKind::Client, dur, attrs);
        let err = match fault {
            Some(FaultKind::ErrorBurst) => self.rng.chance(0.5),
            Some(FaultKind::Down) => true,
            _ => false,
        };
        if err {
            Self::fail(&mut sp, "query failed");
        }
        if dur > 300 * MS {
            self.log(
                out,
                service,
                &sp,
                13,
                &format!("slow query ({} ms): {statement}", dur / MS),
            );
        }
        let data = out.entry(service).or_default();
        data.db_calls
            .push((dur, sp.trace_id.clone(), sp.span_id.clone(), call.start));
        data.spans.push(sp);
        (dur, err)
    }

    fn log(
        &mut self,
        out: &mut BTreeMap<&'static str, ServiceData>,
        service: &'static str,
        sp: &Span,
        severity: i32,
        body: &str,
    ) {
        let text = match severity {
            17..=20 => "ERROR",
            13..=16 => "WARN",
            _ => "INFO",
        };
        out.entry(service).or_default().logs.push(LogRecord {
            time_unix_nano: sp.start_time_unix_nano + 1000,
            observed_time_unix_nano: sp.start_time_unix_nano + 2000,
            severity_number: severity,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(s(body)),
            }),
            attributes: vec![kv("code.function", s(&sp.name))],
            trace_id: sp.trace_id.clone(),
            span_id: sp.span_id.clone(),
            flags: 1,
            ..Default::default()
        });
    }

    /// One request entering at `frontend`.
    fn request(&mut self, out: &mut BTreeMap<&'static str, ServiceData>, start: i64) {
        let trace = self.rng.id::<16>().to_vec();
        let pick = self.rng.below(10);
        let (route, method) = match pick {
            0..=3 => ("/", "GET"),
            4..=6 => ("/cart", "GET"),
            _ => ("/checkout", "POST"),
        };
        let root_call = Call {
            trace: &trace,
            parent: None,
            start,
        };
        let client_ip = format!("203.0.113.{}", self.rng.below(250));
        let mut root = self.new_span(
            &root_call,
            &format!("{method} {route}"),
            span::SpanKind::Server,
            0,
            vec![
                kv("http.request.method", s(method)),
                kv("http.route", s(route)),
                kv("url.path", s(route)),
                kv("url.scheme", s("https")),
                kv("server.address", s("shop.example.com")),
                kv("user_agent.original", s("Mozilla/5.0")),
                kv("client.address", s(&client_ip)),
            ],
        );
        let call = Call {
            trace: &trace,
            parent: Some(&root.span_id),
            start: start + self.latency(0.3),
        };
        let (inner, err) = match pick {
            0..=3 => self.rpc(out, "frontend", "gateway", "GetHome", 1.0, &call, &mut |w, out, c| {
                let (d1, e1) = w.rpc(out, "gateway", "recommendation", "ListRecommendations", 3.0, c, &mut |w, out, c| {
                    w.rpc(out, "recommendation", "inventory", "GetProducts", 1.0, c, &mut |w, out, c| {
                        w.db(out, "inventory", "postgresql", "SELECT products", "SELECT id, name, price FROM products WHERE id = ANY($1)", 4.0, c)
                    })
                });
                let c2 = Call { trace: c.trace, parent: c.parent, start: c.start + d1 };
                let (d2, e2) = w.rpc(out, "gateway", "ad", "GetAds", 2.0, &c2, &mut |_, _, _| (0, false));
                (d1 + d2, e1 || e2)
            }),
            4..=6 => self.rpc(out, "frontend", "gateway", "GetCart", 1.0, &call, &mut |w, out, c| {
                w.rpc(out, "gateway", "cart", "GetCart", 1.5, c, &mut |w, out, c| {
                    w.db(out, "cart", "redis", "HGETALL", "HGETALL cart:{user}", 0.5, c)
                })
            }),
            _ => self.rpc(out, "frontend", "gateway", "PlaceOrder", 1.0, &call, &mut |w, out, c| {
                w.rpc(out, "gateway", "checkout", "PlaceOrder", 2.0, c, &mut |w, out, c| {
                    let mut t = c.start;
                    let mut any_err = false;
                    let steps: [(&'static str, &'static str, f64); 5] = [
                        ("cart", "GetCart", 1.5),
                        ("currency", "Convert", 1.0),
                        ("payment", "Charge", 25.0),
                        ("inventory", "ReserveStock", 2.0),
                        ("shipping", "GetQuote", 3.0),
                    ];
                    for (svc, op, ms) in steps {
                        let sc = Call { trace: c.trace, parent: c.parent, start: t };
                        let (d, e) = w.rpc(out, "checkout", svc, op, ms, &sc, &mut |w, out, c| match (svc, op) {
                            ("cart", _) => w.db(out, "cart", "redis", "HGETALL", "HGETALL cart:{user}", 0.5, c),
                            ("inventory", _) => w.db(out, "inventory", "postgresql", "UPDATE stock", "UPDATE stock SET reserved = reserved + $1 WHERE product_id = $2", 3.0, c),
                            _ => (0, false),
                        });
                        t += d;
                        if e {
                            any_err = true;
                            break;
                        }
                    }
                    if !any_err {
                        // Publish the order; the worker consumes it and sends the email.
                        let pc = Call { trace: c.trace, parent: c.parent, start: t };
                        let d = w.latency(1.0);
                        let producer = w.new_span(&pc, "orders publish", span::SpanKind::Producer, d, vec![
                            kv("messaging.system", s("kafka")),
                            kv("messaging.destination.name", s("orders")),
                            kv("messaging.operation.type", s("publish")),
                        ]);
                        let cc = Call { trace: c.trace, parent: Some(&producer.span_id), start: t + d + w.latency(20.0) };
                        let cd = w.latency(5.0);
                        let consumer = w.new_span(&cc, "orders process", span::SpanKind::Consumer, cd + 10 * MS, vec![
                            kv("messaging.system", s("kafka")),
                            kv("messaging.destination.name", s("orders")),
                            kv("messaging.operation.type", s("process")),
                        ]);
                        let ec = Call { trace: c.trace, parent: Some(&consumer.span_id), start: cc.start + cd };
                        w.rpc(out, "order-worker", "email", "SendConfirmation", 4.0, &ec, &mut |_, _, _| (0, false));
                        out.entry("order-worker").or_default().spans.push(consumer);
                        out.entry("checkout").or_default().spans.push(producer);
                        t += d;
                    }
                    (t - c.start, any_err)
                })
            }),
        };
        let dur = call.start - start + inner + self.latency(0.5);
        root.end_time_unix_nano = (start + dur) as u64;
        let status = if err { 500 } else { 200 };
        root.attributes
            .push(kv("http.response.status_code", i(status)));
        if err {
            Self::fail(&mut root, "");
        }
        let data = out.entry("frontend").or_default();
        data.requests.push((
            route.to_string(),
            dur,
            err,
            root.trace_id.clone(),
            root.span_id.clone(),
            start,
        ));
        data.spans.push(root);
    }

    fn metrics(
        &mut self,
        data: &BTreeMap<&'static str, ServiceData>,
        start: i64,
        end: i64,
    ) -> ExportMetricsServiceRequest {
        let bounds = vec![5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];
        let mut resource_metrics = Vec::new();
        for service in SERVICES {
            let d = data.get(service);
            let mut metrics = Vec::new();
            let mut by_op: BTreeMap<&str, Vec<&Handled>> = BTreeMap::new();
            for r in d.map(|d| d.requests.as_slice()).unwrap_or(&[]) {
                by_op.entry(r.0.as_str()).or_default().push(r);
            }
            let mut hist_points = Vec::new();
            let mut count_points = Vec::new();
            for (op, reqs) in &by_op {
                let mut buckets = vec![0u64; bounds.len() + 1];
                let mut sum = 0.0;
                let (mut min, mut max) = (f64::MAX, 0.0f64);
                let mut errors = 0;
                for r in reqs {
                    let ms = r.1 as f64 / 1e6;
                    buckets[bounds.iter().position(|b| ms <= *b).unwrap_or(bounds.len())] += 1;
                    sum += ms;
                    min = min.min(ms);
                    max = max.max(ms);
                    errors += u64::from(r.2);
                }
                // The exemplar is the slowest request of the interval: a real span.
                let slow = reqs.iter().max_by_key(|r| r.1).expect("non-empty");
                hist_points.push(HistogramDataPoint {
                    attributes: vec![kv("rpc.method", s(op)), kv("http.route", s(op))],
                    start_time_unix_nano: start as u64,
                    time_unix_nano: end as u64,
                    count: reqs.len() as u64,
                    sum: Some(sum),
                    bucket_counts: buckets,
                    explicit_bounds: bounds.clone(),
                    exemplars: vec![Exemplar {
                        time_unix_nano: slow.5 as u64,
                        value: Some(exemplar::Value::AsDouble(slow.1 as f64 / 1e6)),
                        trace_id: slow.3.clone(),
                        span_id: slow.4.clone(),
                        ..Default::default()
                    }],
                    min: Some(min),
                    max: Some(max),
                    ..Default::default()
                });
                let c = self.counters.entry((service, op.to_string())).or_default();
                c.0 += reqs.len() as u64;
                c.1 += errors;
                let (total, errs) = *c;
                count_points.push(NumberDataPoint {
                    attributes: vec![kv("operation", s(op))],
                    start_time_unix_nano: self.opts.start_ns as u64,
                    time_unix_nano: end as u64,
                    value: Some(number_data_point::Value::AsInt(total as i64)),
                    ..Default::default()
                });
                count_points.push(NumberDataPoint {
                    attributes: vec![
                        kv("operation", s(op)),
                        kv("error", any_value::Value::BoolValue(true)),
                    ],
                    start_time_unix_nano: self.opts.start_ns as u64,
                    time_unix_nano: end as u64,
                    value: Some(number_data_point::Value::AsInt(errs as i64)),
                    ..Default::default()
                });
            }
            if !hist_points.is_empty() {
                metrics.push(Metric {
                    name: "rpc.server.duration".into(),
                    unit: "ms".into(),
                    description: "Duration of handled requests".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: hist_points,
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                });
                metrics.push(Metric {
                    name: "rpc.server.requests".into(),
                    unit: "{request}".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: count_points,
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                });
            }
            if let Some(d) = d.filter(|d| !d.db_calls.is_empty()) {
                // Base-2 exponential histogram at scale 2 of the database call durations.
                let scale = 2;
                let factor = 2f64.powf(2f64.powi(-scale));
                let mut counts: BTreeMap<i32, u64> = BTreeMap::new();
                let mut sum = 0.0;
                for c in &d.db_calls {
                    let ms = (c.0 as f64 / 1e6).max(1e-6);
                    let idx = (ms.ln() / factor.ln()).ceil() as i32 - 1;
                    *counts.entry(idx).or_default() += 1;
                    sum += ms;
                }
                let offset = *counts.keys().next().expect("non-empty");
                let last = *counts.keys().last().expect("non-empty");
                let bucket_counts = (offset..=last)
                    .map(|k| counts.get(&k).copied().unwrap_or(0))
                    .collect();
                let slow = d.db_calls.iter().max_by_key(|c| c.0).expect("non-empty");
                metrics.push(Metric {
                    name: "db.client.operation.duration".into(),
                    unit: "ms".into(),
                    data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint {
                            start_time_unix_nano: start as u64,
                            time_unix_nano: end as u64,
                            count: d.db_calls.len() as u64,
                            sum: Some(sum),
                            scale,
                            zero_count: 0,
                            positive: Some(Buckets {
                                offset,
                                bucket_counts,
                            }),
                            exemplars: vec![Exemplar {
                                time_unix_nano: slow.3 as u64,
                                value: Some(exemplar::Value::AsDouble(slow.0 as f64 / 1e6)),
                                trace_id: slow.1.clone(),
                                span_id: slow.2.clone(),
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                });
            }
            let busy = d.map_or(0, |d| d.spans.len()) as f64;
            metrics.push(Metric {
                name: "process.cpu.utilization".into(),
                unit: "1".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: end as u64,
                        value: Some(number_data_point::Value::AsDouble(
                            (0.05 + busy / 5000.0 + self.rng.below(100) as f64 / 2000.0).min(1.0),
                        )),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            });
            if service == "order-worker" {
                metrics.push(Metric {
                    name: "messaging.queue.depth".into(),
                    unit: "{message}".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("messaging.destination.name", s("orders"))],
                            time_unix_nano: end as u64,
                            value: Some(number_data_point::Value::AsInt(self.rng.below(20) as i64)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                });
            }
            resource_metrics.push(ResourceMetrics {
                resource: resource(service),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope("scrydb.workload"),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            });
        }
        ExportMetricsServiceRequest { resource_metrics }
    }
}

impl Iterator for Workload {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next_second >= self.opts.seconds {
            return None;
        }
        let first = self.next_second;
        let last = (first + CHUNK_SECONDS).min(self.opts.seconds);
        self.next_second = last;
        let mut data: BTreeMap<&'static str, ServiceData> = BTreeMap::new();
        let per_second = i64::from(self.opts.traces_per_second.max(1));
        for second in first..last {
            let base = self.opts.start_ns + i64::from(second) * 1_000_000_000;
            for k in 0..per_second {
                let jitter = self.rng.below(1_000_000_000 / per_second as u64) as i64;
                self.request(&mut data, base + k * (1_000_000_000 / per_second) + jitter);
            }
            // Logs without a trace: background jobs.
            if second % 5 == 0 {
                let t = (base + 500 * MS) as u64;
                data.entry("inventory").or_default().logs.push(LogRecord {
                    time_unix_nano: t,
                    observed_time_unix_nano: t,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(s("stock cache refreshed")),
                    }),
                    ..Default::default()
                });
            }
        }
        let start = self.opts.start_ns + i64::from(first) * 1_000_000_000;
        let end = self.opts.start_ns + i64::from(last) * 1_000_000_000;
        let metrics = self.metrics(&data, start, end);
        let mut spans = 0;
        let mut resource_spans = Vec::new();
        let mut resource_logs = Vec::new();
        for (service, d) in data {
            spans += d.spans.len();
            resource_spans.push(ResourceSpans {
                resource: resource(service),
                scope_spans: vec![ScopeSpans {
                    scope: scope("opentelemetry-instrumentation"),
                    spans: d.spans,
                    schema_url: String::new(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            });
            if !d.logs.is_empty() {
                resource_logs.push(ResourceLogs {
                    resource: resource(service),
                    scope_logs: vec![ScopeLogs {
                        scope: scope("app.logger"),
                        log_records: d.logs,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                });
            }
        }
        Some(Chunk {
            traces: ExportTraceServiceRequest { resource_spans },
            logs: ExportLogsServiceRequest { resource_logs },
            metrics,
            spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let opts = WorkloadOptions {
            seconds: 30,
            traces_per_second: 5,
            fault: Some(FaultKind::ErrorBurst),
            ..Default::default()
        };
        let a: Vec<Chunk> = Workload::new(opts.clone()).collect();
        let b: Vec<Chunk> = Workload::new(opts.clone()).collect();
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.traces, y.traces);
            assert_eq!(x.logs, y.logs);
            assert_eq!(x.metrics, y.metrics);
        }
        let services: std::collections::BTreeSet<String> = a
            .iter()
            .flat_map(|c| &c.traces.resource_spans)
            .filter_map(|r| r.resource.as_ref())
            .map(|r| {
                match r.attributes[0]
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                }
            })
            .collect();
        assert_eq!(services.len(), 12, "{services:?}");
        for c in &a {
            for req in [
                scrydb_engine::otlp::Request::Traces(c.traces.clone()),
                scrydb_engine::otlp::Request::Logs(c.logs.clone()),
                scrydb_engine::otlp::Request::Metrics(c.metrics.clone()),
            ] {
                let conv = req.convert();
                assert_eq!(conv.rejected, 0, "{:?}", conv.errors);
            }
        }
        let f = Workload::new(opts).fault().cloned().expect("fault");
        assert_eq!(f.kind, FaultKind::ErrorBurst);
        assert!(f.start_ns < f.end_ns);
    }
}
