//! OTLP requests shaped like real instrumentation output (spans with 14 attributes and a
//! few events, logs with 6 attributes, histogram points with 11 buckets and an exemplar),
//! for the OTLP decode and ingest benchmarks. Timestamps start at [`BASE_NS`].

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, exemplar,
    metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::proto::{Value, kv, s};
use crate::{BASE_NS, Rng};

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.4.2")),
            kv("deployment.environment", s("production")),
            kv("host.name", s("node-7")),
            kv("telemetry.sdk.language", s("rust")),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    crate::proto::scope("opentelemetry-http", "0.27.0")
}

const SERVICES: [&str; 4] = ["frontend", "checkout", "payment", "inventory"];
const ROUTES: [&str; 5] = [
    "/api/cart",
    "/api/checkout",
    "/api/products/{id}",
    "/api/pay",
    "/health",
];

/// `n` spans (traces of 8) with 14 attributes each and a few events, split over
/// resources of 4 services.
pub fn traces(rng: &mut Rng, n: usize) -> ExportTraceServiceRequest {
    let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    let mut trace = rng.id::<16>();
    let mut parent: Vec<u8> = Vec::new();
    for i in 0..n {
        if i % 8 == 0 {
            trace = rng.id::<16>();
            parent.clear();
        }
        let span_id = rng.id::<8>().to_vec();
        let start = (BASE_NS + i as i64 * 10_000) as u64;
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let error = rng.chance(0.02);
        let status = if error { 500 } else { 200 };
        let attributes = vec![
            kv("http.request.method", s("GET")),
            kv("http.route", s(route)),
            kv("http.response.status_code", Value::IntValue(status)),
            kv("url.scheme", s("https")),
            kv("url.path", s(route)),
            kv("server.address", s("api.example.com")),
            kv("server.port", Value::IntValue(443)),
            kv("client.address", s("10.0.3.17")),
            kv("network.protocol.version", s("1.1")),
            kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64)")),
            kv(
                "http.request.body.size",
                Value::IntValue(rng.below(5000) as i64),
            ),
            kv(
                "http.response.body.size",
                Value::IntValue(rng.below(50000) as i64),
            ),
            kv("app.cache_hit", Value::BoolValue(rng.chance(0.7))),
            kv("app.items", Value::IntValue(rng.below(20) as i64)),
        ];
        let events = (0..1 + rng.below(3))
            .map(|e| span::Event {
                time_unix_nano: start + e * 1000,
                name: if error { "exception" } else { "log" }.into(),
                attributes: vec![
                    kv("exception.type", s("TimeoutError")),
                    kv(
                        "exception.message",
                        s("upstream request timed out after 2s"),
                    ),
                ],
                dropped_attributes_count: 0,
            })
            .collect();
        per_service[i % SERVICES.len()].push(Span {
            trace_id: trace.to_vec(),
            span_id: span_id.clone(),
            parent_span_id: parent.clone(),
            name: format!("GET {route}"),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1_000 + rng.below(50_000_000),
            attributes,
            events,
            status: Some(Status {
                code: if error { 2 } else { 0 },
                message: if error {
                    "timeout".into()
                } else {
                    String::new()
                },
            }),
            flags: 1,
            ..Default::default()
        });
        parent = span_id;
    }
    ExportTraceServiceRequest {
        resource_spans: SERVICES
            .iter()
            .zip(per_service)
            .map(|(svc, spans)| ResourceSpans {
                resource: resource(svc),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            })
            .collect(),
    }
}

/// `n` log records with 6 attributes, linked to spans.
pub fn logs(rng: &mut Rng, n: usize) -> ExportLogsServiceRequest {
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: (BASE_NS + i as i64 * 10_000) as u64,
            observed_time_unix_nano: (BASE_NS + i as i64 * 10_000 + 500) as u64,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(s("payment authorized for order 81723 in 42 ms")),
            }),
            attributes: vec![
                kv("code.function", s("authorize")),
                kv("code.filepath", s("src/payment.rs")),
                kv("code.lineno", Value::IntValue(212)),
                kv("thread.id", Value::IntValue(rng.below(64) as i64)),
                kv("order.id", Value::IntValue(rng.below(1_000_000) as i64)),
                kv("user.tier", s("gold")),
            ],
            trace_id: rng.id::<16>().to_vec(),
            span_id: rng.id::<8>().to_vec(),
            flags: 1,
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("payment"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// `n` histogram points (10 buckets, one exemplar each).
pub fn metrics(rng: &mut Rng, n: usize) -> ExportMetricsServiceRequest {
    let points = (0..n)
        .map(|i| HistogramDataPoint {
            attributes: vec![
                kv("http.route", s(ROUTES[i % ROUTES.len()])),
                kv("http.request.method", s("GET")),
            ],
            start_time_unix_nano: BASE_NS as u64,
            time_unix_nano: (BASE_NS + i as i64 * 1_000_000) as u64,
            count: 100,
            sum: Some(1234.5),
            bucket_counts: (0..11).map(|_| rng.below(20)).collect(),
            explicit_bounds: vec![5., 10., 25., 50., 75., 100., 250., 500., 750., 1000.],
            exemplars: vec![Exemplar {
                time_unix_nano: (BASE_NS + i as i64 * 1_000_000) as u64,
                value: Some(exemplar::Value::AsDouble(87.0)),
                trace_id: rng.id::<16>().to_vec(),
                span_id: rng.id::<8>().to_vec(),
                ..Default::default()
            }],
            min: Some(1.0),
            max: Some(900.0),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("frontend"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: "http.server.request.duration".into(),
                    unit: "ms".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
