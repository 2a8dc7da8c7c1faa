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

/// Row positions of every trace id in `batch` (a sorted segment's rows).
pub fn collect(signal: Signal, batch: &RecordBatch) -> HashMap<[u8; 16], RoaringBitmap> {
    let mut map: HashMap<[u8; 16], RoaringBitmap> = HashMap::new();
    let mut add = |id: &[u8], row: usize| {
        if let Ok(id) = <[u8; 16]>::try_from(id) {
            map.entry(id).or_default().insert(row as u32);
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
    map
}

/// Writes the index of `batch` (the sorted rows of the segment at `segment_path`) durably,
/// through a temporary file.
pub fn write(
    fs: &Arc<dyn FileSystem>,
    segment_path: &Path,
    signal: Signal,
    batch: &RecordBatch,
) -> Result<u64> {
    let bytes = encode(signal, batch.num_rows() as u64, &collect(signal, batch));
    let path = index_path(segment_path);
    let tmp = path.with_extension("tidx.tmp");
    let mut f = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    Ok(bytes.len() as u64)
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
