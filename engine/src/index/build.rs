//! Building an index: the row positions of every trace id of a sorted segment, written
//! durably beside it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use roaring::RoaringBitmap;

use super::format::{encode, index_path};
use crate::io::FileSystem;
use crate::{Error, Result, Signal};

/// Most rows an indexed segment may hold: row positions are stored as `u32`.
pub const MAX_ROWS: u64 = 1 << 32;

/// Fails with [`Error::TooLarge`] when a segment of `rows` rows has positions an index
/// cannot address, so that no position is ever truncated.
fn check_addressable(rows: usize) -> Result<()> {
    if rows as u64 > MAX_ROWS {
        return Err(Error::TooLarge {
            what: "segment rows for a trace index",
            size: rows as u64,
            limit: MAX_ROWS,
        });
    }
    Ok(())
}

/// The trace index of a segment being written, built from its sorted rows batch by batch
/// (a segment need not be in memory whole to be indexed).
#[derive(Default)]
pub struct IndexBuilder {
    map: HashMap<[u8; 16], RoaringBitmap>,
    rows: u64,
}

impl IndexBuilder {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the rows of `batch`, the segment's next rows in order. Fails with
    /// [`Error::TooLarge`] once the segment has more than [`MAX_ROWS`] rows, so that no
    /// position is ever truncated.
    pub fn add(&mut self, signal: Signal, batch: &RecordBatch) -> Result<()> {
        let first = self.rows;
        check_addressable((first + batch.num_rows() as u64) as usize)?;
        self.rows += batch.num_rows() as u64;
        let map = &mut self.map;
        let mut add = |id: &[u8], row: usize| {
            if let Ok(id) = <[u8; 16]>::try_from(id) {
                // In range: `first + row < rows <= MAX_ROWS`, checked above.
                map.entry(id)
                    .or_default()
                    .insert((first + row as u64) as u32);
            }
        };
        match signal {
            Signal::Spans | Signal::Logs => {
                let col = batch
                    .column_by_name("trace_id")
                    .expect("canonical batches have trace_id")
                    .as_fixed_size_binary();
                for row in 0..col.len() {
                    if col.is_valid(row) {
                        add(col.value(row), row);
                    }
                }
            }
            Signal::Metrics => {
                let list = batch
                    .column_by_name("exemplars")
                    .expect("canonical metric batches have exemplars")
                    .as_list::<i32>();
                let items = list.values().as_struct();
                let ids = items
                    .column_by_name("trace_id")
                    .expect("exemplars have trace_id")
                    .as_fixed_size_binary();
                let offsets = list.value_offsets();
                for row in 0..list.len() {
                    if list.is_null(row) {
                        continue;
                    }
                    for i in offsets[row] as usize..offsets[row + 1] as usize {
                        if ids.is_valid(i) {
                            add(ids.value(i), row);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Row positions of every trace id added.
    pub fn positions(&self) -> &HashMap<[u8; 16], RoaringBitmap> {
        &self.map
    }

    /// Writes the index beside the segment at `segment_path` durably, through a temporary
    /// file; returns its size in bytes.
    pub fn write(
        &self,
        fs: &Arc<dyn FileSystem>,
        segment_path: &Path,
        signal: Signal,
    ) -> Result<u64> {
        let bytes = encode(signal, self.rows, &self.map)?;
        crate::io::write_durably(fs.as_ref(), &index_path(segment_path), &bytes)?;
        Ok(bytes.len() as u64)
    }
}

/// Row positions of every trace id in `batch` (a sorted segment's rows). Fails with
/// [`Error::TooLarge`] for a batch of more than [`MAX_ROWS`] rows.
pub fn collect(signal: Signal, batch: &RecordBatch) -> Result<HashMap<[u8; 16], RoaringBitmap>> {
    let mut b = IndexBuilder::new();
    b.add(signal, batch)?;
    Ok(b.map)
}

/// Writes the index of `batch` (the sorted rows of the segment at `segment_path`) durably,
/// through a temporary file.
pub fn write(
    fs: &Arc<dyn FileSystem>,
    segment_path: &Path,
    signal: Signal,
    batch: &RecordBatch,
) -> Result<u64> {
    let mut b = IndexBuilder::new();
    b.add(signal, batch)?;
    b.write(fs, segment_path, signal)
}

/// Rebuilds the index of a segment from its rows (for `scry reindex` and damaged indexes).
pub fn build_for_segment(
    fs: &Arc<dyn FileSystem>,
    db_dir: &Path,
    meta: &crate::SegmentMeta,
) -> Result<u64> {
    let batches = crate::segment::reader::read_segment(fs.as_ref(), db_dir, meta)?;
    let schema = crate::schema::schema(meta.signal);
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    let size = write(fs, &db_dir.join(&meta.path), meta.signal, &batch)?;
    let dir = db_dir.join(&meta.path);
    let dir = dir.parent().expect("segments are in a partition directory");
    fs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_past_u32_are_an_error_not_wrapped() {
        assert!(check_addressable(0).is_ok());
        assert!(check_addressable(u32::MAX as usize).is_ok());
        // Positions 0..=u32::MAX: the last one still fits.
        assert!(check_addressable(1 << 32).is_ok());
        match check_addressable((1 << 32) + 1) {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), ((1 << 32) + 1, MAX_ROWS));
            }
            other => panic!("{other:?}"),
        }
    }
}
