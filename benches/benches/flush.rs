//! Flush of 1M spans to one Parquet segment: sort, zstd encode, write, fsync.

use std::sync::Arc;
use std::time::Duration;

use arrow::compute::concat_batches;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scrydb_engine::io::{FileSystem, StdFs};
use scrydb_engine::segment::writer::{SegmentJob, write_segment};
use scrydb_engine::{Options, Signal, schema};
use scrydb_workload::BASE_NS;
use scrydb_workload::synth::{Rng, batches};

fn flush(c: &mut Criterion) {
    let rows = 1_000_000;
    let parts = batches(Signal::Spans, &mut Rng::new(7), rows, 65_536, BASE_NS);
    let batch = concat_batches(&schema::schema(Signal::Spans), &parts).expect("concat");
    drop(parts);
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let opts = Options::default();
    let mut id = 0;
    let mut g = c.benchmark_group("flush");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(rows as u64));
    g.bench_function("segment_1m_spans", |b| {
        b.iter(|| {
            id += 1;
            let meta = write_segment(
                &fs,
                dir.path(),
                &opts,
                SegmentJob::whole(
                    Signal::Spans,
                    id,
                    BASE_NS,
                    BASE_NS + 3_600_000_000_000,
                    batch.clone(),
                ),
            )
            .expect("segment written");
            std::fs::remove_file(dir.path().join(&meta.path)).expect("remove");
            meta.size
        })
    });
    g.finish();
}

criterion_group!(benches, flush);
criterion_main!(benches);
