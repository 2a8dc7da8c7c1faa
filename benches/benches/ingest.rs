//! Whole-path ingest of 1M spans through `Db::append` with the default durability
//! (validate, encode, group-committed WAL append + fsync, memtable, background flush with
//! push back), in 4096-span batches from one thread and from two threads; and the same
//! followed by `flush` until every row is in Parquet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scrydb_engine::{Db, Options, Signal};
use scrydb_workload::BASE_NS;
use scrydb_workload::synth::{Rng, batches};

fn run(threads: usize, flush: bool, data: &Arc<Vec<arrow::array::RecordBatch>>) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let (db, data) = (db.clone(), data.clone());
            s.spawn(move || {
                for b in data.iter().skip(k).step_by(threads) {
                    db.append(Signal::Spans, b).expect("append");
                }
            });
        }
    });
    if flush {
        db.flush().expect("flush");
    }
    let elapsed = t.elapsed();
    Arc::into_inner(db)
        .expect("sole owner")
        .close()
        .expect("close");
    elapsed
}

fn ingest(c: &mut Criterion) {
    let rows = 1_000_000;
    let data = Arc::new(batches(
        Signal::Spans,
        &mut Rng::new(3),
        rows,
        4096,
        BASE_NS,
    ));
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(40))
        .throughput(Throughput::Elements(rows as u64));
    for threads in [1, 2] {
        g.bench_function(format!("append_1m_spans_{threads}_thread"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| run(threads, false, &data)).sum())
        });
    }
    g.bench_function("append_and_flush_1m_spans_1_thread", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(1, true, &data)).sum())
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
