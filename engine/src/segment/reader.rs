//! Reading a segment back through the engine (tests, tools, compaction). The SQL layer reads
//! segment files directly with its own Parquet reader.

use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::writer::SEGMENT_FORMAT_VERSION;

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
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet_err)?;
    check_metadata(
        &path,
        meta,
        builder.metadata().file_metadata().key_value_metadata(),
    )?;
    let reader = builder
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

/// Checks the ScryDB key-value metadata of a segment: the format version it was written
/// with and the signal it holds.
pub fn check_metadata(path: &Path, meta: &SegmentMeta, kv: Option<&Vec<KeyValue>>) -> Result<()> {
    let get = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.as_deref())
    };
    match get("scrydb.format_version") {
        Some(v) if v == SEGMENT_FORMAT_VERSION => {}
        Some(v) => {
            return match v.parse::<u32>() {
                Ok(found) if found > 1 => Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: 1,
                }),
                _ => Err(Error::corrupted(
                    path,
                    None,
                    format!("segment declares format version {v:?}"),
                )),
            };
        }
        None => {
            return Err(Error::corrupted(
                path,
                None,
                "segment has no scrydb.format_version metadata",
            ));
        }
    }
    match get("scrydb.signal") {
        Some(s) if s == meta.signal.name() => Ok(()),
        other => Err(Error::corrupted(
            path,
            None,
            format!(
                "segment holds signal {other:?}, the manifest says {}",
                meta.signal.name()
            ),
        )),
    }
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
