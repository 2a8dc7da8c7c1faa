//! Shared helpers for ScryDB's benchmarks.

use arrow::array::RecordBatch;
use scrydb_engine::Signal;
use scrydb_engine::synth::{self, Rng};

/// A fixed base time for generated data: 2025-11-25T00:00:00Z.
pub const BASE_NS: i64 = 1_764_028_800_000_000_000;

/// `total` synthetic rows of `signal` in batches of `batch` rows, deterministic by seed.
pub fn batches(signal: Signal, total: usize, batch: usize, seed: u64) -> Vec<RecordBatch> {
    let mut rng = Rng::new(seed);
    (0..total)
        .step_by(batch)
        .map(|start| {
            synth::batch(
                signal,
                &mut rng,
                batch.min(total - start),
                BASE_NS + start as i64 * 10_000,
            )
        })
        .collect()
}
