//! The memtable: accepted batches not yet in segments, kept as they arrived.
//!
//! Batches are immutable Arrow data, so a reader's snapshot shares them by reference: the
//! active memtable sits behind an `Arc` and is copied (a vector of references, not the data)
//! only when a writer adds to it while a snapshot holds it.

use arrow::array::RecordBatch;

use crate::Signal;

/// Batches of each signal, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Memtable {
    batches: [Vec<RecordBatch>; 3],
    rows: [usize; 3],
    bytes: usize,
}

impl Memtable {
    /// Adds a validated batch.
    pub fn push(&mut self, signal: Signal, batch: RecordBatch) {
        self.rows[signal.index()] += batch.num_rows();
        self.bytes += batch.get_array_memory_size();
        self.batches[signal.index()].push(batch);
    }

    /// The batches of one signal.
    pub fn batches(&self, signal: Signal) -> &[RecordBatch] {
        &self.batches[signal.index()]
    }

    /// Rows of one signal.
    pub fn rows(&self, signal: Signal) -> usize {
        self.rows[signal.index()]
    }

    /// Approximate memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether no batch was added.
    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(|r| *r == 0)
    }
}

/// A memtable that no longer takes writes and waits for (or is in) the flush.
#[derive(Debug)]
pub struct FrozenMemtable {
    /// Increasing number of this frozen memtable.
    pub id: u64,
    /// Its data.
    pub table: Memtable,
    /// Every log file up to and including this sequence number holds only data that is in
    /// this or an earlier memtable: once this one is in segments, they can go.
    pub wal_seq: u64,
}
