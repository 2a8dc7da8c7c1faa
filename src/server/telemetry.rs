//! The receiver's own counters: served as Prometheus text at `GET /metrics`, and written
//! into the store as metrics of service `scrydb` so SQL sees the receiver's history.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::Shared;
use crate::otlp::Request;
use crate::{Db, Signal};

/// The transport a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        })
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Stored whole.
    Ok,
    /// Stored, with some records rejected (OTLP partial success).
    Partial,
    /// Malformed payload (HTTP 400, gRPC `INVALID_ARGUMENT`).
    BadRequest,
    /// Over the size limit (HTTP 413, gRPC `RESOURCE_EXHAUSTED`).
    TooLarge,
    /// Unknown content type or encoding (HTTP 415).
    Unsupported,
    /// Missing or wrong token (HTTP 401, gRPC `UNAUTHENTICATED`).
    Unauthenticated,
    /// Pushed back: the store or the in-flight budget is full (HTTP 503, gRPC
    /// `UNAVAILABLE`).
    RetryLater,
    /// The store failed (HTTP 500, gRPC `INTERNAL`).
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::Unsupported => "unsupported",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::RetryLater => "retry_later",
            Outcome::Failed => "failed",
        }
    }
}

/// Requests counted per transport, signal (none: not known) and outcome.
type RequestCounts = BTreeMap<(Transport, Option<Signal>, Outcome), u64>;

/// One sample: metric name, labels, value, and whether it is a counter (else a gauge).
pub(crate) type Sample = (&'static str, Vec<(&'static str, String)>, f64, bool);

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BOUNDS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The receiver's counters since it started.
#[derive(Debug)]
pub struct Counters {
    started: SystemTime,
    requests: Mutex<RequestCounts>,
    accepted: [AtomicU64; 3],
    rejected: [AtomicU64; 3],
    bytes: [AtomicU64; 2],
    latency_buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_nanos: AtomicU64,
    alerts: Arc<crate::alert::AlertCounters>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            started: SystemTime::now(),
            requests: Mutex::default(),
            accepted: Default::default(),
            rejected: Default::default(),
            bytes: Default::default(),
            latency_buckets: Default::default(),
            latency_nanos: AtomicU64::new(0),
            alerts: Arc::default(),
        }
    }
}

impl Counters {
    /// The alerting counters (evaluations, notifications sent, failed, retried, dropped).
    pub fn alerts(&self) -> &Arc<crate::alert::AlertCounters> {
        &self.alerts
    }

    pub(crate) fn request(&self, t: Transport, s: Option<Signal>, o: Outcome) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((t, s, o))
            .or_default() += 1;
    }

    pub(crate) fn records(&self, s: Signal, accepted: u64, rejected: u64) {
        self.accepted[s.index()].fetch_add(accepted, Relaxed);
        self.rejected[s.index()].fetch_add(rejected, Relaxed);
    }

    pub(crate) fn bytes(&self, t: Transport, n: usize) {
        self.bytes[t as usize].fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.latency_buckets[i].fetch_add(1, Relaxed);
        self.latency_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Records of `signal` stored since the receiver started.
    pub fn records_accepted(&self, signal: Signal) -> u64 {
        self.accepted[signal.index()].load(Relaxed)
    }

    /// Records of `signal` rejected as invalid (OTLP partial success).
    pub fn records_rejected(&self, signal: Signal) -> u64 {
        self.rejected[signal.index()].load(Relaxed)
    }

    /// Requests that ended with `outcome`, over both transports and all signals.
    pub fn requests(&self, outcome: Outcome) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((_, _, o), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every counter and gauge as `(name, labels, value, is_counter)`, the one list both
    /// the Prometheus page and the self-metrics are made of.
    fn samples(&self, db: &Db) -> Vec<Sample> {
        let mut out = Vec::new();
        for ((t, s, o), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let mut labels = vec![("transport", t.to_string())];
            if let Some(s) = s {
                labels.push(("signal", s.to_string()));
            }
            labels.push(("outcome", o.label().to_string()));
            out.push(("scrydb_receiver_requests_total", labels, *n as f64, true));
        }
        for s in Signal::ALL {
            let l = vec![("signal", s.to_string())];
            let (a, r) = (self.records_accepted(s), self.records_rejected(s));
            out.push((
                "scrydb_receiver_records_accepted_total",
                l.clone(),
                a as f64,
                true,
            ));
            out.push(("scrydb_receiver_records_rejected_total", l, r as f64, true));
        }
        for t in [Transport::Grpc, Transport::Http] {
            let n = self.bytes[t as usize].load(Relaxed);
            out.push((
                "scrydb_receiver_bytes_total",
                vec![("transport", t.to_string())],
                n as f64,
                true,
            ));
        }
        out.push((
            "scrydb_receiver_pushed_back_total",
            vec![],
            self.requests(Outcome::RetryLater) as f64,
            true,
        ));
        let w = db.write_stats();
        let gauges = [
            ("scrydb_segments", w.segments as f64),
            ("scrydb_memtable_bytes", w.active_bytes as f64),
            ("scrydb_frozen_memtables", w.frozen_waiting as f64),
            ("scrydb_backlogged", f64::from(u8::from(w.backlogged))),
            ("scrydb_poisoned", f64::from(u8::from(w.poisoned))),
            (
                "scrydb_last_flush_seconds",
                w.last_flush.map_or(0.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, v) in gauges {
            out.push((name, vec![], v, false));
        }
        out.push(("scrydb_flushes_total", vec![], w.flushes as f64, true));
        out.push((
            "scrydb_flush_seconds_total",
            vec![],
            w.flush_time.as_secs_f64(),
            true,
        ));
        out.extend(self.alerts.samples());
        out.push(("scrydb_write_stalls_total", vec![], w.stalls as f64, true));
        out.push((
            "scrydb_write_stall_seconds_total",
            vec![],
            w.stall_time.as_secs_f64(),
            true,
        ));
        out
    }

    /// The Prometheus text exposition of every counter, the store's write-path gauges and
    /// the request latency histogram.
    pub fn prometheus(&self, db: &Db) -> String {
        let mut out = String::new();
        let mut last = "";
        let mut samples = self.samples(db);
        // One block per metric name (a stable sort keeps each block's label order).
        samples.sort_by_key(|s| s.0);
        for (name, labels, value, counter) in samples {
            if name != last {
                let kind = if counter { "counter" } else { "gauge" };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name;
            }
            let _ = writeln!(out, "{name}{} {value}", render_labels(&labels));
        }
        let name = "scrydb_receiver_request_seconds";
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.latency_buckets[LATENCY_BOUNDS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.latency_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
        out
    }

    /// The same counters as an OTLP metrics request of service `scrydb`: counters as
    /// cumulative monotonic sums from the receiver's start, gauges as gauges.
    pub fn otlp(&self, db: &Db) -> ExportMetricsServiceRequest {
        let now = nanos(SystemTime::now());
        let start = nanos(self.started);
        let mut metrics: Vec<Metric> = Vec::new();
        for (name, labels, value, counter) in self.samples(db) {
            let point = NumberDataPoint {
                attributes: labels.iter().map(|(k, v)| kv(k, v)).collect(),
                start_time_unix_nano: if counter { start } else { 0 },
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(value)),
                ..Default::default()
            };
            let name = name.replace('_', ".");
            if let Some(m) = metrics.iter_mut().find(|m| m.name == name) {
                match &mut m.data {
                    Some(metric::Data::Sum(s)) => s.data_points.push(point),
                    Some(metric::Data::Gauge(g)) => g.data_points.push(point),
                    _ => {}
                }
                continue;
            }
            let data = if counter {
                metric::Data::Sum(Sum {
                    data_points: vec![point],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })
            } else {
                metric::Data::Gauge(Gauge {
                    data_points: vec![point],
                })
            };
            metrics.push(Metric {
                name,
                data: Some(data),
                ..Default::default()
            });
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "scrydb")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

fn render_labels(labels: &[(&str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The instrumentation scope of what the receiver itself writes.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "scrydb.server".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Stores one request the receiver made itself (its metrics, probe results); a failure is
/// logged, never fatal.
pub(crate) async fn store_own(shared: &Arc<Shared>, request: Request, what: &str) {
    let db = shared.db.clone();
    match tokio::task::spawn_blocking(move || db.ingest_otlp(&request)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::warn!("could not store {what}: {e}"),
        Err(e) => log::warn!("could not store {what}: {e}"),
    }
}

pub(crate) async fn write_once(shared: &Arc<Shared>) {
    let request = Request::Metrics(shared.counters.otlp(&shared.db));
    store_own(shared, request, "the receiver's own metrics").await;
}

/// Writes the counters into the store every `every` until stopped.
pub(crate) async fn write_periodically(
    shared: Arc<Shared>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => write_once(&shared).await,
            _ = stop.changed() => return,
        }
    }
}
