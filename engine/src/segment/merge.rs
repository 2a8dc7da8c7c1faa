//! Merging sorted runs of rows into one sorted segment, a batch at a time.
//!
//! Every segment is sorted ([`sort_rows`]), so a merge of segments never needs all of
//! them in memory: it holds one decoded batch per input. Each step finds the input whose
//! current batch ends lowest in sort order (its last key is the *bound*), takes from every
//! input the rows up to that bound (a binary search over the inputs' keys, encoded with
//! Arrow's row format), sorts just those rows and appends them to the output. Every row
//! at or below the bound in any input is in some current batch (the inputs are sorted),
//! so the output is sorted; each step uses up at least one batch, so the merge ends.

use arrow::array::{ArrayRef, RecordBatch, new_empty_array};
use arrow::row::{RowConverter, Rows, SortField};

use super::writer::{SegmentSink, sort_keys, sort_rows};
use crate::{Result, Signal, schema};

/// Rows decoded at a time from each merge input.
pub const MERGE_BATCH_ROWS: usize = 8 * 1024;

/// A sorted run of batches (a segment's rows, possibly filtered).
pub type Run<'a> = Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 'a>;

struct Cursor<'a> {
    run: Run<'a>,
    batch: RecordBatch,
    keys: Rows,
    pos: usize,
    /// The last key of the previous batch, to check the run is sorted across batches.
    last: Option<arrow::row::OwnedRow>,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.batch.num_rows() - self.pos
    }
}

fn converter(signal: Signal) -> Result<RowConverter> {
    let full = schema::schema(signal);
    let keys = sort_keys(signal, |name| {
        let field = full
            .field_with_name(name)
            .expect("sort key columns are in the schema");
        Ok(new_empty_array(field.data_type()))
    })?;
    Ok(RowConverter::new(
        keys.iter()
            .map(|k| SortField::new(k.data_type().clone()))
            .collect(),
    )?)
}

fn key_rows(signal: Signal, conv: &RowConverter, batch: &RecordBatch) -> Result<Rows> {
    let keys: Vec<ArrayRef> = sort_keys(signal, |name| {
        Ok(batch
            .column_by_name(name)
            .expect("canonical batches have the sort key")
            .clone())
    })?;
    Ok(conv.convert_columns(&keys)?)
}

/// A run was found out of sort order (a segment written before spans and logs were sorted
/// by minute first: same format version, another order).
struct Unsorted;

/// Fills `cursor` with the next non-empty batch of its run; `Ok(false)` once the run is
/// done. Checks that the run really is sorted.
fn refill(
    signal: Signal,
    conv: &RowConverter,
    cursor: &mut Cursor<'_>,
) -> Result<std::result::Result<bool, Unsorted>> {
    while cursor.left() == 0 {
        match cursor.run.next() {
            None => return Ok(Ok(false)),
            Some(batch) => {
                let batch = batch?;
                let keys = key_rows(signal, conv, &batch)?;
                if keys.num_rows() > 0 {
                    let after_previous =
                        cursor.last.as_ref().is_none_or(|l| l.row() <= keys.row(0));
                    let sorted = (1..keys.num_rows()).all(|i| keys.row(i - 1) <= keys.row(i));
                    if !(after_previous && sorted) {
                        return Ok(Err(Unsorted));
                    }
                    cursor.last = Some(keys.row(keys.num_rows() - 1).owned());
                }
                cursor.keys = keys;
                cursor.batch = batch;
                cursor.pos = 0;
            }
        }
    }
    Ok(Ok(true))
}

/// Appends the rows of `runs` (each sorted as a segment of `signal` is, in the signal's
/// canonical schema) to `sink` in one sorted order. Memory: one decoded batch per run plus
/// the rows of one step.
///
/// Returns `Ok(false)` when a run turns out not to be sorted (segments written before
/// spans and logs were sorted by minute first have the same format version and another
/// order): `sink` then holds a partial, unusable output; the caller drops it and sorts
/// the inputs whole ([`super::writer::write_segment`]).
pub fn merge_runs(signal: Signal, runs: Vec<Run<'_>>, sink: &mut SegmentSink) -> Result<bool> {
    let conv = converter(signal)?;
    let empty = RecordBatch::new_empty(schema::schema(signal));
    let mut cursors = Vec::with_capacity(runs.len());
    for run in runs {
        let mut c = Cursor {
            run,
            batch: empty.clone(),
            keys: conv.empty_rows(0, 0),
            pos: 0,
            last: None,
        };
        match refill(signal, &conv, &mut c)? {
            Ok(true) => cursors.push(c),
            Ok(false) => {}
            Err(Unsorted) => return Ok(false),
        }
    }
    while cursors.len() > 1 {
        // The lowest last key of the current batches.
        let lowest = (0..cursors.len())
            .min_by(|&a, &b| {
                let (ca, cb) = (&cursors[a], &cursors[b]);
                ca.keys
                    .row(ca.batch.num_rows() - 1)
                    .cmp(&cb.keys.row(cb.batch.num_rows() - 1))
            })
            .expect("two cursors or more");
        let bound = {
            let c = &cursors[lowest];
            c.keys.row(c.batch.num_rows() - 1).owned()
        };
        let mut step = Vec::with_capacity(cursors.len());
        for c in &mut cursors {
            // The first position past the bound in c.pos..len (keys are sorted).
            let (mut lo, mut hi) = (c.pos, c.batch.num_rows());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if c.keys.row(mid) <= bound.row() {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if lo > c.pos {
                step.push(c.batch.slice(c.pos, lo - c.pos));
                c.pos = lo;
            }
        }
        match step.len() {
            0 => {}
            1 => sink.push(&step[0])?,
            _ => sink.push(&sort_rows(signal, &step, None)?)?,
        }
        let mut i = 0;
        while i < cursors.len() {
            match refill(signal, &conv, &mut cursors[i])? {
                Ok(true) => i += 1,
                Ok(false) => {
                    cursors.swap_remove(i);
                }
                Err(Unsorted) => return Ok(false),
            }
        }
    }
    // One run left: the rest of it only needs its order checked.
    if let Some(mut c) = cursors.pop() {
        loop {
            sink.push(&c.batch.slice(c.pos, c.left()))?;
            c.pos = c.batch.num_rows();
            match refill(signal, &conv, &mut c)? {
                Ok(true) => {}
                Ok(false) => break,
                Err(Unsorted) => return Ok(false),
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{FileSystem, StdFs};
    use std::sync::Arc;

    /// Spans of a few traces spread over five minutes, pseudo-random from `seed`, sorted
    /// as a segment and cut into batches of `batch` rows.
    fn run_of(seed: u64, rows: usize, batch: usize) -> Vec<RecordBatch> {
        use arrow::array::{FixedSizeBinaryArray, StringArray, TimestampNanosecondArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let mut x = seed;
        let mut times = Vec::new();
        let mut traces = Vec::new();
        for _ in 0..rows {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            traces.push([((x >> 40) % 7) as u8 + 1; 16]);
            times.push(((x >> 8) % (5 * 60_000_000_000)) as i64);
        }
        let ts = schema::timestamp_type();
        let input = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("time", ts.clone(), false),
                Field::new("end_time", ts, false),
                Field::new("trace_id", DataType::FixedSizeBinary(16), false),
                Field::new("span_id", DataType::FixedSizeBinary(8), false),
                Field::new("service_name", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC")),
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")),
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        traces.iter().map(Some),
                        16,
                    )
                    .expect("trace ids"),
                ),
                Arc::new(
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        (1..=rows as u64).map(|i| Some(i.to_be_bytes())),
                        8,
                    )
                    .expect("span ids"),
                ),
                Arc::new(StringArray::from(vec!["svc"; rows])),
                Arc::new(StringArray::from(vec!["op"; rows])),
            ],
        )
        .expect("batch");
        let canonical = crate::validate::normalize(Signal::Spans, &input).expect("normalize");
        let sorted = sort_rows(Signal::Spans, &[canonical], None).expect("sort");
        (0..sorted.num_rows())
            .step_by(batch)
            .map(|i| sorted.slice(i, batch.min(sorted.num_rows() - i)))
            .collect()
    }

    #[test]
    fn merging_sorted_runs_gives_the_same_rows_as_sorting_them_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let opts = crate::Options::default();
        // Runs of very different batch sizes, one empty, one of a single row.
        let runs_rows = [
            run_of(1, 500, 7),
            run_of(2, 300, 128),
            run_of(3, 0, 10),
            run_of(4, 1, 1),
            run_of(5, 1000, 1000),
        ];
        let all: Vec<RecordBatch> = runs_rows.iter().flatten().cloned().collect();
        let expected = sort_rows(Signal::Spans, &all, None).expect("sort");
        let runs: Vec<Run<'_>> = runs_rows
            .iter()
            .map(|r| Box::new(r.clone().into_iter().map(Ok)) as Run<'_>)
            .collect();
        let mut sink = SegmentSink::create(&fs, dir.path(), &opts, Signal::Spans, 1, 0, i64::MAX)
            .expect("sink");
        assert!(merge_runs(Signal::Spans, runs, &mut sink).expect("merge"));
        let meta = sink.finish().expect("finish");
        assert_eq!(meta.rows, expected.num_rows() as u64);
        let got = super::super::reader::read_segment(fs.as_ref(), dir.path(), &meta).expect("read");
        let got = arrow::compute::concat_batches(&expected.schema(), &got).expect("concat");
        // The same keys in the same order (rows with equal keys may swap).
        let conv = converter(Signal::Spans).expect("converter");
        let (a, b) = (
            key_rows(Signal::Spans, &conv, &got).expect("keys"),
            key_rows(Signal::Spans, &conv, &expected).expect("keys"),
        );
        assert!((0..a.num_rows()).all(|i| a.row(i) == b.row(i)));
        assert_eq!(meta.min_time, expected_min(&expected));
    }

    #[test]
    fn a_run_out_of_order_is_reported_not_merged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let opts = crate::Options::default();
        let sorted = run_of(7, 300, 50);
        // The same batches in reverse: each sorted, the run not.
        let reversed: Vec<RecordBatch> = sorted.iter().rev().cloned().collect();
        for runs in [
            vec![sorted.clone(), reversed.clone()],
            vec![reversed.clone()],
        ] {
            let runs: Vec<Run<'_>> = runs
                .into_iter()
                .map(|r| Box::new(r.into_iter().map(Ok)) as Run<'_>)
                .collect();
            let mut sink =
                SegmentSink::create(&fs, dir.path(), &opts, Signal::Spans, 2, 0, i64::MAX)
                    .expect("sink");
            assert!(!merge_runs(Signal::Spans, runs, &mut sink).expect("merge"));
        }
    }

    fn expected_min(b: &RecordBatch) -> i64 {
        use arrow::array::AsArray;
        use arrow::datatypes::TimestampNanosecondType;
        b.column(0)
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .copied()
            .min()
            .expect("rows")
    }
}
