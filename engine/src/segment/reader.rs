//! Reading a segment back through the engine (tests, tools, compaction). The SQL layer reads
//! segment files directly with its own Parquet reader.

use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::io::FileSystem;
use crate::manifest::SegmentMeta;
use crate::{Error, Result, schema};

/// Reads a whole segment, after checking its size and checksum against the manifest.
pub fn read_segment(
    fs: &dyn FileSystem,
    db_dir: &Path,
    meta: &SegmentMeta,
) -> Result<Vec<RecordBatch>> {
    let path = db_dir.join(&meta.path);
    let bytes = fs.read(&path).map_err(|e| Error::io("read", &path, e))?;
    if bytes.len() as u64 != meta.size {
        return Err(Error::corrupted(
            &path,
            None,
            format!(
                "segment is {} bytes, the manifest says {}",
                bytes.len(),
                meta.size
            ),
        ));
    }
    if crc32fast::hash(&bytes) != meta.crc32 {
        return Err(Error::corrupted(
            &path,
            None,
            "segment checksum does not match the manifest",
        ));
    }
    let parquet_err = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(parquet_err)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(parquet_err)?;
    let want = schema::schema(meta.signal);
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::corrupted(&path, None, e.to_string()))?;
        let batch = RecordBatch::try_new(want.clone(), batch.columns().to_vec())
            .map_err(|e| Error::corrupted(&path, None, format!("segment schema differs: {e}")))?;
        out.push(batch);
    }
    Ok(out)
}

/// Verifies a segment's size and checksum without decoding it.
pub fn verify_segment(fs: &dyn FileSystem, db_dir: &Path, meta: &SegmentMeta) -> Result<()> {
    let path = db_dir.join(&meta.path);
    let bytes = fs.read(&path).map_err(|e| Error::io("read", &path, e))?;
    if bytes.len() as u64 != meta.size || crc32fast::hash(&bytes) != meta.crc32 {
        return Err(Error::corrupted(
            &path,
            None,
            "segment size or checksum does not match the manifest",
        ));
    }
    Ok(())
}
