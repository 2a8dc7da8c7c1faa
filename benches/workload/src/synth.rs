//! Deterministic synthetic telemetry with every column populated, for tests, benchmarks and
//! the CLI's smoke run. (The realistic generator with fault injection is [`crate::system`];
//! this one is about coverage and speed.)

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder, StringDictionaryBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::Int32Type;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, exemplar};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Link;
use scrydb_engine::Signal;
use scrydb_engine::otlp::columns::{
    Attrs, Context, Events, Exemplars, Links, Quantiles, ResourceScope, ts_builder,
};
use scrydb_engine::schema::{self, attributes_builder};

pub use crate::Rng;
use crate::proto::{kv, s};

const SERVICES: &[&str] = &[
    "frontend",
    "gateway",
    "checkout",
    "payment",
    "inventory",
    "cart",
    "shipping",
    "email",
    "recommendation",
    "ads",
    "currency",
    "queue-consumer",
];
const OPERATIONS: &[&str] = &[
    "GET /api/products",
    "POST /api/checkout",
    "GET /api/cart",
    "SELECT products",
    "redis GET",
    "oteldemo.PaymentService/Charge",
    "orders process",
    "HTTP POST",
];
const ROUTES: &[&str] = &["/api/products", "/api/checkout", "/api/cart", "/health"];
const HOSTS: &[&str] = &["node-a", "node-b", "node-c"];
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.26.0";

fn put(m: &mut Attrs, k: &str, v: &str) {
    m.keys().append_value(k);
    m.values().append_value(v);
}

fn end_map(m: &mut Attrs) {
    m.append(true)
        .expect("keys and values are appended in pairs");
}

/// The service name, resource and scope of every row, built by the engine's own column
/// builders (the ones OTLP conversion uses) from one resource per (service, host).
struct Sources {
    resources: Vec<Resource>,
    scope: InstrumentationScope,
    columns: ResourceScope,
}

impl Sources {
    fn new() -> Self {
        let resources = SERVICES
            .iter()
            .flat_map(|service| {
                HOSTS.iter().map(move |host| Resource {
                    attributes: vec![kv("service.name", s(service)), kv("host.name", s(host))],
                    ..Default::default()
                })
            })
            .collect();
        Sources {
            resources,
            scope: InstrumentationScope {
                name: "scrydb.synth".into(),
                version: "1.0.0".into(),
                attributes: vec![kv("scope.kind", s("synthetic"))],
                ..Default::default()
            },
            columns: ResourceScope::default(),
        }
    }

    /// Appends the row's service (an index into `SERVICES`) on a random host.
    fn append(&mut self, rng: &mut Rng, service: usize) {
        let host = rng.below(HOSTS.len() as u64) as usize;
        let scope_schema_url = if rng.chance(0.5) { SCHEMA_URL } else { "" };
        self.columns.append(&Context {
            resource: Some(&self.resources[service * HOSTS.len() + host]),
            service: SERVICES[service],
            resource_schema_url: SCHEMA_URL,
            scope: Some(&self.scope),
            scope_schema_url,
        });
    }
}

/// `n` spans in traces of about eight spans, starting at `base_ns` and about 10 µs apart,
/// with every column (events, links, attributes, resource, scope) populated.
pub fn spans(rng: &mut Rng, n: usize, base_ns: i64) -> RecordBatch {
    let mut time = ts_builder();
    let mut end = ts_builder();
    let mut duration = Int64Builder::with_capacity(n);
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut trace_state = StringBuilder::new();
    let mut flags = UInt32Builder::new();
    let mut name = StringBuilder::new();
    let mut kind = StringDictionaryBuilder::<Int32Type>::new();
    let mut status = StringDictionaryBuilder::<Int32Type>::new();
    let mut status_msg = StringBuilder::new();
    let mut attrs = attributes_builder();
    let mut dropped_attrs = UInt32Builder::new();
    let mut events = Events::default();
    let mut dropped_events = UInt32Builder::new();
    let mut links = Links::default();
    let mut dropped_links = UInt32Builder::new();
    let mut sources = Sources::new();
    let event_attrs = [kv("exception.type", s("TimeoutError"))];
    let link_attrs = vec![kv("link.kind", s("follows_from"))];

    let mut trace = rng.id::<16>();
    let mut prev_span: Option<[u8; 8]> = None;
    for i in 0..n {
        if i % 8 == 0 {
            trace = rng.id::<16>();
            prev_span = None;
        }
        let sid = rng.id::<8>();
        let t = base_ns + i as i64 * 10_000 + rng.below(5_000) as i64;
        let dur = 1_000 + rng.below(50_000_000) as i64;
        time.append_value(t);
        end.append_value(t + dur);
        duration.append_value(dur);
        trace_id.append_value(trace).expect("16 bytes");
        span_id.append_value(sid).expect("8 bytes");
        match prev_span {
            Some(p) => parent.append_value(p).expect("8 bytes"),
            None => parent.append_null(),
        }
        prev_span = Some(sid);
        if rng.chance(0.1) {
            trace_state.append_value("vendor=abc");
        } else {
            trace_state.append_null();
        }
        flags.append_value(1);
        let service = rng.below(SERVICES.len() as u64) as usize;
        let op = rng.pick(OPERATIONS);
        name.append_value(op);
        kind.append_value(schema::SPAN_KINDS[1 + rng.below(5) as usize]);
        let error = rng.chance(0.02);
        status.append_value(if error { "ERROR" } else { "UNSET" });
        if error {
            status_msg.append_value("upstream timed out");
        } else {
            status_msg.append_null();
        }
        put(
            &mut attrs,
            "http.request.method",
            if op.starts_with("GET") { "GET" } else { "POST" },
        );
        put(&mut attrs, "http.route", rng.pick(ROUTES));
        put(
            &mut attrs,
            "http.response.status_code",
            if error { "503" } else { "200" },
        );
        put(
            &mut attrs,
            "net.peer.port",
            &(1024 + rng.below(60000)).to_string(),
        );
        end_map(&mut attrs);
        dropped_attrs.append_value(0);

        let n_events = if error { 1 } else { rng.below(3) as usize / 2 };
        for e in 0..n_events {
            let name = if error { "exception" } else { "cache.miss" };
            events.push(Some(t + e as i64 * 100), name, &event_attrs, 0);
        }
        events.end_row();
        dropped_events.append_value(0);
        if rng.chance(0.05) {
            links.push(&Link {
                trace_id: rng.id::<16>().to_vec(),
                span_id: rng.id::<8>().to_vec(),
                attributes: link_attrs.clone(),
                flags: 1,
                ..Default::default()
            });
        }
        links.end_row();
        dropped_links.append_value(0);
        sources.append(rng, service);
    }

    // duration_ns is derived by validation; built here too so the batch is canonical.
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(end.finish()),
        Arc::new(duration.finish()),
    ];
    columns.push(Arc::new(trace_id.finish()));
    columns.push(Arc::new(span_id.finish()));
    columns.push(Arc::new(parent.finish()));
    columns.push(Arc::new(trace_state.finish()));
    columns.push(Arc::new(flags.finish()));
    columns.push(sources.columns.finish_service());
    columns.push(Arc::new(name.finish()));
    columns.push(Arc::new(kind.finish()));
    columns.push(Arc::new(status.finish()));
    columns.push(Arc::new(status_msg.finish()));
    columns.push(Arc::new(attrs.finish()));
    columns.push(Arc::new(dropped_attrs.finish()));
    columns.push(events.finish());
    columns.push(Arc::new(dropped_events.finish()));
    columns.push(links.finish());
    columns.push(Arc::new(dropped_links.finish()));
    sources.columns.finish_into(&mut columns);
    RecordBatch::try_new(schema::schema(Signal::Spans), columns)
        .expect("synthetic spans match the schema")
}

/// `n` log records starting at `base_ns`, most linked to a (random) trace and span.
pub fn logs(rng: &mut Rng, n: usize, base_ns: i64) -> RecordBatch {
    logs_with(rng, n, base_ns, |rng| {
        format!(
            "request {} handled in {} ms",
            rng.below(1_000_000),
            rng.below(900)
        )
    })
}

/// `n` log records as [`logs`] makes them, with bodies from [`crate::logtext`] (web,
/// HDFS, SSH, kernel and application lines); also returns each row's template index.
pub fn realistic_logs(rng: &mut Rng, n: usize, base_ns: i64) -> (RecordBatch, Vec<usize>) {
    let mut templates = Vec::with_capacity(n);
    let batch = logs_with(rng, n, base_ns, |rng| {
        let l = crate::logtext::line(rng);
        templates.push(l.template);
        l.text
    });
    (batch, templates)
}

fn logs_with(
    rng: &mut Rng,
    n: usize,
    base_ns: i64,
    mut make_body: impl FnMut(&mut Rng) -> String,
) -> RecordBatch {
    let mut time = ts_builder();
    let mut observed = ts_builder();
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut flags = UInt32Builder::new();
    let mut sev_num = Int32Builder::new();
    let mut sev_text = StringDictionaryBuilder::<Int32Type>::new();
    let mut body = StringBuilder::new();
    let mut event_name = StringBuilder::new();
    let mut attrs = attributes_builder();
    let mut dropped = UInt32Builder::new();
    let mut sources = Sources::new();
    for i in 0..n {
        let t = base_ns + i as i64 * 10_000 + rng.below(5_000) as i64;
        time.append_value(t);
        observed.append_value(t + 1_000);
        if rng.chance(0.8) {
            trace_id.append_value(rng.id::<16>()).expect("16 bytes");
            span_id.append_value(rng.id::<8>()).expect("8 bytes");
            flags.append_value(1);
        } else {
            trace_id.append_null();
            span_id.append_null();
            flags.append_null();
        }
        let (num, text) = if rng.chance(0.05) {
            (17, "ERROR")
        } else {
            (9, "INFO")
        };
        sev_num.append_value(num);
        sev_text.append_value(text);
        body.append_value(make_body(rng));
        if rng.chance(0.01) {
            event_name.append_value("app.checkout.completed");
        } else {
            event_name.append_null();
        }
        put(&mut attrs, "code.function", "handle");
        put(&mut attrs, "thread.id", &rng.below(64).to_string());
        end_map(&mut attrs);
        dropped.append_value(0);
        // The service is drawn without advancing the generator (as it always was: the
        // data of a seed must not change).
        let service = rng.clone().below(SERVICES.len() as u64) as usize;
        sources.append(rng, service);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(observed.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(flags.finish()),
        Arc::new(sev_num.finish()),
        Arc::new(sev_text.finish()),
        Arc::new(body.finish()),
        Arc::new(event_name.finish()),
        sources.columns.finish_service(),
        Arc::new(attrs.finish()),
        Arc::new(dropped.finish()),
    ];
    sources.columns.finish_into(&mut columns);
    RecordBatch::try_new(schema::schema(Signal::Logs), columns)
        .expect("synthetic logs match the schema")
}

/// `n` metric points starting at `base_ns`, cycling through gauge, sum, histogram,
/// exponential histogram and summary; histograms carry exemplars with trace ids.
pub fn metrics(rng: &mut Rng, n: usize, base_ns: i64) -> RecordBatch {
    let mut time = ts_builder();
    let mut start = ts_builder();
    let mut name = StringBuilder::new();
    let mut desc = StringBuilder::new();
    let mut unit = StringBuilder::new();
    let mut mtype = StringDictionaryBuilder::<Int32Type>::new();
    let mut temporality = StringDictionaryBuilder::<Int32Type>::new();
    let mut monotonic = BooleanBuilder::new();
    let mut flags = UInt32Builder::new();
    let mut attrs = attributes_builder();
    let mut value = Float64Builder::new();
    let mut value_int = Int64Builder::new();
    let mut count = UInt64Builder::new();
    let mut sum = Float64Builder::new();
    let mut min = Float64Builder::new();
    let mut max = Float64Builder::new();
    let mut buckets = ListBuilder::new(UInt64Builder::new());
    let mut bounds = ListBuilder::new(Float64Builder::new());
    let mut scale = Int32Builder::new();
    let mut zero_count = UInt64Builder::new();
    let mut zero_threshold = Float64Builder::new();
    let mut pos_off = Int32Builder::new();
    let mut pos_buckets = ListBuilder::new(UInt64Builder::new());
    let mut neg_off = Int32Builder::new();
    let mut neg_buckets = ListBuilder::new(UInt64Builder::new());
    let mut quantiles = Quantiles::default();
    let mut exemplars = Exemplars::default();
    let exemplar_attrs = vec![kv("user.tier", s("gold"))];
    let mut metadata = attributes_builder();
    let mut sources = Sources::new();

    for i in 0..n {
        let t = base_ns + i as i64 * 10_000;
        time.append_value(t);
        start.append_value(t - 60_000_000_000);
        let kind = schema::METRIC_TYPES[i % 5];
        mtype.append_value(kind);
        let (metric, u) = match kind {
            "gauge" => ("system.cpu.utilization", "1"),
            "sum" => ("http.server.requests", "{request}"),
            "histogram" => ("http.server.request.duration", "s"),
            "exponential_histogram" => ("rpc.server.duration", "ms"),
            _ => ("db.client.latency", "ms"),
        };
        name.append_value(metric);
        desc.append_value(format!("synthetic {kind}"));
        unit.append_value(u);
        flags.append_value(0);
        put(&mut attrs, "http.route", rng.pick(ROUTES));
        end_map(&mut attrs);
        match kind {
            "gauge" | "sum" => {
                if kind == "sum" {
                    temporality.append_value("CUMULATIVE");
                    monotonic.append_value(true);
                    let v = rng.below(1 << 40) as i64;
                    value.append_value(v as f64);
                    value_int.append_value(v);
                } else {
                    temporality.append_null();
                    monotonic.append_null();
                    value.append_value(rng.below(1000) as f64 / 1000.0);
                    value_int.append_null();
                }
                count.append_null();
                sum.append_null();
                min.append_null();
                max.append_null();
            }
            _ => {
                temporality.append_value(if kind == "summary" {
                    "UNSPECIFIED"
                } else {
                    "DELTA"
                });
                monotonic.append_null();
                value.append_null();
                value_int.append_null();
                count.append_value(100);
                sum.append_value(12.5);
                if kind == "summary" {
                    min.append_null();
                    max.append_null();
                } else {
                    min.append_value(0.001);
                    max.append_value(1.5);
                }
            }
        }
        if kind == "histogram" {
            buckets.values().append_slice(&[10, 80, 10]);
            buckets.append(true);
            bounds.values().append_slice(&[0.1, 1.0]);
            bounds.append(true);
        } else {
            buckets.append_null();
            bounds.append_null();
        }
        if kind == "exponential_histogram" {
            scale.append_value(3);
            zero_count.append_value(1);
            zero_threshold.append_value(0.0);
            pos_off.append_value(-2);
            pos_buckets.values().append_slice(&[5, 50, 44]);
            pos_buckets.append(true);
            neg_off.append_value(0);
            neg_buckets.values().append_slice(&[]);
            neg_buckets.append(true);
        } else {
            scale.append_null();
            zero_count.append_null();
            zero_threshold.append_null();
            pos_off.append_null();
            pos_buckets.append_null();
            neg_off.append_null();
            neg_buckets.append_null();
        }
        if kind == "summary" {
            quantiles.push_row(&[(0.5, 3.0), (0.99, 40.0)]);
        } else {
            quantiles.push_null();
        }
        if kind == "histogram" || kind == "exponential_histogram" {
            exemplars.push(&Exemplar {
                time_unix_nano: u64::try_from(t - 1_000).unwrap_or(0),
                value: Some(exemplar::Value::AsDouble(0.75)),
                trace_id: rng.id::<16>().to_vec(),
                span_id: rng.id::<8>().to_vec(),
                filtered_attributes: exemplar_attrs.clone(),
            });
        }
        exemplars.end_row();
        put(&mut metadata, "source", "synth");
        end_map(&mut metadata);
        sources.append(rng, i % SERVICES.len());
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(start.finish()),
        sources.columns.finish_service(),
        Arc::new(name.finish()),
        Arc::new(desc.finish()),
        Arc::new(unit.finish()),
        Arc::new(mtype.finish()),
        Arc::new(temporality.finish()),
        Arc::new(monotonic.finish()),
        Arc::new(flags.finish()),
        Arc::new(attrs.finish()),
        Arc::new(value.finish()),
        Arc::new(value_int.finish()),
        Arc::new(count.finish()),
        Arc::new(sum.finish()),
        Arc::new(min.finish()),
        Arc::new(max.finish()),
        Arc::new(buckets.finish()),
        Arc::new(bounds.finish()),
        Arc::new(scale.finish()),
        Arc::new(zero_count.finish()),
        Arc::new(zero_threshold.finish()),
        Arc::new(pos_off.finish()),
        Arc::new(pos_buckets.finish()),
        Arc::new(neg_off.finish()),
        Arc::new(neg_buckets.finish()),
        quantiles.finish(),
        exemplars.finish(),
        Arc::new(metadata.finish()),
    ];
    sources.columns.finish_into(&mut columns);
    RecordBatch::try_new(schema::schema(Signal::Metrics), columns)
        .expect("synthetic metrics match the schema")
}

/// Synthetic rows of any signal.
pub fn batch(signal: Signal, rng: &mut Rng, n: usize, base_ns: i64) -> RecordBatch {
    match signal {
        Signal::Spans => spans(rng, n, base_ns),
        Signal::Logs => logs(rng, n, base_ns),
        Signal::Metrics => metrics(rng, n, base_ns),
    }
}

/// `total` rows of `signal` in batches of `batch_rows` rows (the last one shorter), starting
/// at `base_ns` and about 10 µs apart.
pub fn batches(
    signal: Signal,
    rng: &mut Rng,
    total: usize,
    batch_rows: usize,
    base_ns: i64,
) -> Vec<RecordBatch> {
    let batch_rows = batch_rows.max(1);
    (0..total)
        .step_by(batch_rows)
        .map(|start| {
            batch(
                signal,
                rng,
                batch_rows.min(total - start),
                base_ns + start as i64 * 10_000,
            )
        })
        .collect()
}
