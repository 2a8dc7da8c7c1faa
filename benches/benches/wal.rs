//! Write-ahead log append: frame encoding, and append + fsync of one frame.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scrydb_engine::Signal;
use scrydb_engine::io::{FileSystem, StdFs};
use scrydb_engine::wal::format::encode_frame;
use scrydb_engine::wal::writer::WalWriter;
use scrydb_workload::BASE_NS;
use scrydb_workload::synth::{Rng, batches};

fn wal(c: &mut Criterion) {
    let rows = 4096;
    let batch = batches(Signal::Spans, &mut Rng::new(1), rows, rows, BASE_NS).remove(0);
    let frame = encode_frame(Signal::Spans, &batch).expect("encodes");
    eprintln!(
        "frame of {rows} spans: {} bytes ({} per span; Arrow in memory {} per span)",
        frame.len(),
        frame.len() / rows,
        batch.get_array_memory_size() / rows
    );
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_function("encode_frame_4096_spans", |b| {
        b.iter(|| encode_frame(Signal::Spans, &batch).expect("encodes"))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let mut w = WalWriter::create(&fs, dir.path(), 1).expect("create");
    g.bench_function("append_4096_spans_no_sync", |b| {
        b.iter(|| w.append(&frame).expect("append"))
    });
    let mut w = WalWriter::create(&fs, dir.path(), 2).expect("create");
    g.bench_function("append_4096_spans_fsync", |b| {
        b.iter(|| {
            w.append(&frame).expect("append");
            w.sync().expect("sync")
        })
    });
    g.finish();
}

criterion_group!(benches, wal);
criterion_main!(benches);
