//! Exact trace lookup, with no time hint: the per-segment trace indexes ([`crate::index`])
//! say which segments and rows hold a trace id; only the Parquet pages holding those rows
//! are read.

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use roaring::RoaringBitmap;

use crate::manifest::SegmentMeta;
use crate::snapshot::Snapshot;
use crate::{Error, Result, Signal, schema};

/// A row selection selecting exactly `rows` out of `total`.
pub fn row_selection(rows: &RoaringBitmap, total: u64) -> RowSelection {
    let mut selectors = Vec::new();
    let mut pos: u64 = 0;
    let mut iter = rows.iter().map(u64::from).peekable();
    while let Some(start) = iter.next() {
        let mut end = start + 1;
        while iter.peek() == Some(&end) {
            iter.next();
            end += 1;
        }
        if start > pos {
            selectors.push(RowSelector::skip((start - pos) as usize));
        }
        selectors.push(RowSelector::select((end - start) as usize));
        pos = end;
    }
    if total > pos {
        selectors.push(RowSelector::skip((total - pos) as usize));
    }
    RowSelection::from(selectors)
}

/// The row groups holding `rows` (positions in the whole file), and `rows` renumbered
/// within those groups taken together, with their row count.
fn row_groups_of(
    rows: &RoaringBitmap,
    groups: &[parquet::file::metadata::RowGroupMetaData],
) -> (Vec<usize>, RoaringBitmap, u64) {
    let mut chosen = Vec::new();
    let mut selected = RoaringBitmap::new();
    let mut start: u64 = 0;
    let mut kept: u64 = 0;
    let mut wanted = rows.iter().map(u64::from).peekable();
    for (i, g) in groups.iter().enumerate() {
        let end = start + u64::try_from(g.num_rows()).unwrap_or(0);
        let mut any = false;
        while let Some(&r) = wanted.peek().filter(|&&r| r < end) {
            wanted.next();
            // Positions come from the index, below u32::MAX rows per segment.
            selected.insert((kept + r - start) as u32);
            any = true;
        }
        if any {
            chosen.push(i);
            kept += end - start;
        }
        start = end;
    }
    (chosen, selected, kept)
}

/// The rows and time of every signal of one trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Spans of the trace.
    pub spans: Vec<RecordBatch>,
    /// Log records carrying the trace id.
    pub logs: Vec<RecordBatch>,
    /// Metric data points with an exemplar carrying the trace id.
    pub metrics: Vec<RecordBatch>,
}

impl Trace {
    /// Rows of `signal` found.
    pub fn rows(&self, signal: Signal) -> usize {
        let b = match signal {
            Signal::Spans => &self.spans,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        };
        b.iter().map(|b| b.num_rows()).sum()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        Signal::ALL.iter().all(|s| self.rows(*s) == 0)
    }
}

/// Which rows of `batch` hold one of `ids` (for metrics: in an exemplar).
fn matching(signal: Signal, batch: &RecordBatch, ids: &[[u8; 16]]) -> BooleanArray {
    match signal {
        Signal::Spans | Signal::Logs => {
            let col = batch
                .column_by_name("trace_id")
                .expect("canonical batch")
                .as_fixed_size_binary();
            (0..batch.num_rows())
                .map(|r| Some(col.is_valid(r) && ids.iter().any(|id| col.value(r) == id)))
                .collect()
        }
        Signal::Metrics => {
            let list = batch
                .column_by_name("exemplars")
                .expect("canonical batch")
                .as_list::<i32>();
            let tid = list
                .values()
                .as_struct()
                .column_by_name("trace_id")
                .expect("exemplar trace_id")
                .as_fixed_size_binary()
                .clone();
            let offsets = list.value_offsets();
            (0..batch.num_rows())
                .map(|r| {
                    Some(
                        list.is_valid(r)
                            && (offsets[r] as usize..offsets[r + 1] as usize).any(|i| {
                                tid.is_valid(i) && ids.iter().any(|id| tid.value(i) == id)
                            }),
                    )
                })
                .collect()
        }
    }
}

fn filter_ids(
    signal: Signal,
    batch: &RecordBatch,
    ids: &[[u8; 16]],
) -> Result<Option<RecordBatch>> {
    let mask = matching(signal, batch, ids);
    if mask.true_count() == 0 {
        return Ok(None);
    }
    Ok(Some(filter_record_batch(batch, &mask)?))
}

impl Snapshot {
    /// For each of `ids`, whether exactly one span segment of the snapshot holds spans of
    /// that trace and the memtable holds none — so the trace-tree columns that segment
    /// stores ([`crate::segment::tree`]) are the whole trace's tree. Decided by the trace
    /// indexes (bloom filter, then a binary search per segment): a segment whose index is
    /// missing or damaged makes the answer `false` for every id (it cannot say what it
    /// holds). Time: segments × ids probes, plus one pass over the memtable's spans.
    pub fn traces_whole_in_one_segment(&self, ids: &[[u8; 16]]) -> Result<Vec<bool>> {
        let mut holders = vec![0u32; ids.len()];
        for seg in self.segments(Signal::Spans, None) {
            let Some(idx) = self.indexes.index(self.fs.as_ref(), &self.dir, &seg) else {
                return Ok(vec![false; ids.len()]);
            };
            for (id, n) in ids.iter().zip(holders.iter_mut()) {
                match idx.contains(id) {
                    Ok(true) => *n += 1,
                    Ok(false) => {}
                    Err(e) => {
                        log::warn!("trace index of segment {} unusable: {e}", seg.path);
                        return Ok(vec![false; ids.len()]);
                    }
                }
            }
        }
        let mut unflushed = std::collections::HashSet::new();
        for b in self.memtable_batches(Signal::Spans, None)? {
            let col = b
                .column_by_name("trace_id")
                .expect("canonical batch")
                .as_fixed_size_binary();
            for r in 0..b.num_rows() {
                if let Ok(id) = <[u8; 16]>::try_from(col.value(r)) {
                    unflushed.insert(id);
                }
            }
        }
        Ok(ids
            .iter()
            .zip(holders)
            .map(|(id, n)| n == 1 && !unflushed.contains(id))
            .collect())
    }

    /// The rows of the segment `seg` that may hold one of `ids`, from its index: `None`
    /// when the index is unusable (the caller scans), `Some(empty)` when none does.
    pub fn index_rows(&self, seg: &SegmentMeta, ids: &[[u8; 16]]) -> Option<RoaringBitmap> {
        let idx = self.indexes.index(self.fs.as_ref(), &self.dir, seg)?;
        let mut rows = RoaringBitmap::new();
        for id in ids {
            match idx.rows(id) {
                Ok(Some(r)) => rows |= r,
                Ok(None) => {}
                Err(e) => {
                    log::warn!(
                        "trace index of segment {} unusable, scanning it instead: {e}",
                        seg.path
                    );
                    return None;
                }
            }
        }
        Some(rows)
    }

    /// Every row of `signal` holding one of `ids` (spans and logs by `trace_id`, metrics by
    /// exemplar trace id), memtable included. With `use_index`, segments are probed
    /// through their trace indexes and only the pages holding matching rows are read;
    /// without, every segment is read and filtered (the reference the index is tested
    /// against).
    pub fn trace_rows(
        &self,
        signal: Signal,
        ids: &[[u8; 16]],
        use_index: bool,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for seg in self.segments(signal, None) {
            let rows = if use_index {
                self.index_rows(&seg, ids)
            } else {
                None
            };
            match rows {
                Some(rows) if rows.is_empty() => {}
                Some(rows) => out.extend(self.read_rows(&seg, &rows, signal, ids)?),
                None => {
                    for b in self.read_segment(&seg, None)? {
                        out.extend(filter_ids(signal, &b, ids)?);
                    }
                }
            }
        }
        for b in self.memtable_batches(signal, None)? {
            out.extend(filter_ids(signal, &b, ids)?);
        }
        Ok(out)
    }

    /// Reads only `rows` of segment `seg` of `signal` (the row groups and pages holding
    /// them, as [`Snapshot::index_rows`] names them), then keeps the rows that really hold
    /// one of `ids`.
    pub fn read_rows(
        &self,
        seg: &SegmentMeta,
        rows: &RoaringBitmap,
        signal: Signal,
        ids: &[[u8; 16]],
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for b in self.read_selected(seg, rows, signal)? {
            out.extend(filter_ids(signal, &b, ids)?);
        }
        Ok(out)
    }

    /// The rows of segment `seg` a term index allows for `q`
    /// ([`crate::search::index::TermQuery`]): `None` when `q` narrows nothing or the
    /// segment has no usable term index (the caller scans it), `Some(empty)` when no row
    /// can match. The rows are whole blocks: the caller applies its predicate to them.
    pub fn search_rows(
        &self,
        seg: &SegmentMeta,
        q: &crate::search::index::TermQuery,
    ) -> Option<RoaringBitmap> {
        if q.is_all() {
            return None;
        }
        let idx = self.indexes.term_index(self.fs.as_ref(), &self.dir, seg)?;
        match idx.candidates(q) {
            Ok(Some(blocks)) => Some(idx.rows_of(&blocks)),
            Ok(None) => None,
            Err(e) => {
                if idx.first_report() {
                    log::warn!(
                        "term index of segment {} unusable, searches scan it instead: {e} \
                         (`scry reindex` rebuilds it)",
                        seg.path
                    );
                }
                None
            }
        }
    }

    /// Reads only `rows` of segment `seg` of `signal`: the row groups holding them, and
    /// within those the pages holding them, decoded in the canonical schema.
    pub fn read_selected(
        &self,
        seg: &SegmentMeta,
        rows: &RoaringBitmap,
        signal: Signal,
    ) -> Result<Vec<RecordBatch>> {
        let path = self.dir.join(&seg.path);
        let meta = self.segment_metadata(seg)?;
        let file = self.open_segment(seg)?;
        let parquet_err = |source| Error::Parquet {
            path: path.clone(),
            source,
        };
        // Only the row groups that hold a wanted row are opened at all (a large segment has
        // many), and the selection covers just their rows.
        let (groups, selected, total) = row_groups_of(rows, meta.metadata().row_groups());
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
            .with_row_groups(groups)
            .with_row_selection(row_selection(&selected, total))
            .with_batch_size(8192)
            .build()
            .map_err(parquet_err)?;
        let want = schema::schema(signal);
        let mut out = Vec::new();
        for b in reader {
            let b = b.map_err(|e| Error::corrupted(&path, None, e.to_string()))?;
            out.push(crate::segment::stored::to_canonical(&path, &want, &b)?);
        }
        Ok(out)
    }

    /// One trace: its spans, logs and exemplar points.
    pub fn trace(&self, id: [u8; 16], use_index: bool) -> Result<Trace> {
        Ok(Trace {
            spans: self.trace_rows(Signal::Spans, &[id], use_index)?,
            logs: self.trace_rows(Signal::Logs, &[id], use_index)?,
            metrics: self.trace_rows(Signal::Metrics, &[id], use_index)?,
        })
    }
}

/// Parses a trace id written as 32 hex digits (either case).
pub fn parse_trace_id(hex: &str) -> Result<[u8; 16]> {
    let s = hex.trim();
    let bad = || Error::InvalidOptions {
        option: "trace id",
        reason: format!("'{s}' is not 32 hex digits"),
    };
    if s.len() != 32 || !s.is_ascii() {
        return Err(bad());
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_cover_exactly_the_rows() {
        let rows: RoaringBitmap = [0u32, 1, 2, 10, 11, 99].into_iter().collect();
        let sel = row_selection(&rows, 100);
        let got: Vec<usize> = {
            let mut v = Vec::new();
            let mut pos = 0;
            for s in sel.iter() {
                if !s.skip {
                    v.extend(pos..pos + s.row_count);
                }
                pos += s.row_count;
            }
            assert_eq!(pos, 100);
            v
        };
        assert_eq!(got, vec![0, 1, 2, 10, 11, 99]);
        assert_eq!(
            parse_trace_id("5B8EFFF798038103d269b633813fc60c").expect("parses")[0],
            0x5b
        );
        assert!(parse_trace_id("5b8e").is_err());
    }
}
