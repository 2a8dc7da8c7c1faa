//! OTLP in: protobuf decode + conversion to Arrow, per signal, on requests shaped like real
//! instrumentation output (spans with 14 attributes and 1–3 events; logs with 6 attributes;
//! histogram points with 11 buckets and an exemplar); and decode + convert + durable append
//! (default durability) for spans, the whole path an OTLP receiver takes.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use scrydb_engine::otlp::{Request, decode_protobuf};
use scrydb_engine::{Db, Options, Signal};
use scrydb_workload::{Rng, otlp};

/// The allocator the `scry` binary uses: OTLP decoding allocates every string and list.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records per request: what an SDK's batch exporter sends at its default batch size.
const PER_REQUEST: usize = 512;
const REQUESTS: usize = 40;

fn encoded(signal: Signal) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(7);
    (0..REQUESTS)
        .map(|_| match signal {
            Signal::Spans => otlp::traces(&mut rng, PER_REQUEST).encode_to_vec(),
            Signal::Logs => otlp::logs(&mut rng, PER_REQUEST).encode_to_vec(),
            Signal::Metrics => otlp::metrics(&mut rng, PER_REQUEST).encode_to_vec(),
        })
        .collect()
}

fn decode_convert(c: &mut Criterion) {
    let mut g = c.benchmark_group("otlp");
    g.sample_size(20)
        .throughput(Throughput::Elements((PER_REQUEST * REQUESTS) as u64));
    for signal in Signal::ALL {
        let payloads = encoded(signal);
        let bytes: usize = payloads.iter().map(Vec::len).sum();
        eprintln!(
            "{signal}: {} bytes of protobuf per record",
            bytes / (PER_REQUEST * REQUESTS)
        );
        g.bench_function(format!("decode_{signal}"), |b| {
            b.iter(|| {
                for p in &payloads {
                    let req: Request = decode_protobuf(p, Some(signal)).expect("decodes");
                    assert_eq!(req.records(), PER_REQUEST);
                }
            })
        });
        g.bench_function(format!("decode_convert_{signal}"), |b| {
            b.iter(|| {
                for p in &payloads {
                    let req: Request = decode_protobuf(p, Some(signal)).expect("decodes");
                    let c = req.convert();
                    assert_eq!(c.batch.num_rows(), PER_REQUEST);
                }
            })
        });
    }
    let payloads = encoded(Signal::Spans);
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("decode_convert_append_spans", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("tempdir");
                let db = Db::open(dir.path(), Options::default()).expect("open");
                let t = Instant::now();
                for p in &payloads {
                    let req = decode_protobuf(p, None).expect("decodes");
                    db.ingest_otlp(&req).expect("ingest");
                }
                total += t.elapsed();
                db.close().expect("close");
            }
            total
        })
    });
}

criterion_group!(benches, decode_convert);
criterion_main!(benches);
