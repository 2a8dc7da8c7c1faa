//! Reading a segment back through the engine (tests, tools, index rebuilds), and checking it
//! against its manifest entry. The SQL layer reads pages selectively through
//! [`crate::Snapshot::open_segment`], which runs [`verify_segment`] once per segment first.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::writer::SEGMENT_FORMAT_MAX;

use crate::io::FileSystem;
use crate::manifest::SegmentMeta;
use crate::{Error, Result, schema};

/// Reads a whole segment, after checking its size and checksum against the manifest.
pub fn read_segment(
    fs: &dyn FileSystem,
    db_dir: &Path,
    meta: &SegmentMeta,
) -> Result<Vec<RecordBatch>> {
    SegmentStream::open(fs, db_dir, meta, None, 64 * 1024)?.collect()
}

/// A segment's rows, a batch at a time, in the segment's order: the file is checked first
/// (size and whole-file checksum against the manifest, read sequentially a chunk at a
/// time), then read a row group's column chunks at a time and decoded only as rows are
/// asked for — a stream holds one row group's compressed columns and one decoded batch,
/// however large the segment.
pub struct SegmentStream {
    path: std::path::PathBuf,
    schema: arrow::datatypes::SchemaRef,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
}

impl SegmentStream {
    /// Opens the segment `meta`, decoding `batch_size` rows at a time, only the top-level
    /// columns named in `columns` (every column when `None`; names the signal does not have
    /// are ignored). Batches have the signal's canonical schema, or its projection.
    pub fn open(
        fs: &dyn FileSystem,
        db_dir: &Path,
        meta: &SegmentMeta,
        columns: Option<&[&str]>,
        batch_size: usize,
    ) -> Result<Self> {
        verify_segment(fs, db_dir, meta)?;
        let path = db_dir.join(&meta.path);
        let file = fs
            .open_read(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let parquet_err = |source| Error::Parquet {
            path: path.clone(),
            source,
        };
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(super::file::SegmentFile::new(file, None))
                .map_err(parquet_err)?;
        check_metadata(
            &path,
            meta,
            builder.metadata().file_metadata().key_value_metadata(),
        )?;
        let full = schema::schema(meta.signal);
        let schema = match columns {
            None => full,
            Some(names) => {
                let indices: Vec<usize> = (0..full.fields().len())
                    .filter(|&i| names.contains(&full.field(i).name().as_str()))
                    .collect();
                Arc::new(full.project(&indices)?)
            }
        };
        // The file's columns that give the wanted ones (a derived column reads what it is
        // computed from, [`super::stored`]).
        let mask = ProjectionMask::roots(
            builder.metadata().file_metadata().schema_descr(),
            super::stored::columns_to_read(builder.schema(), &schema),
        );
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_size.max(1))
            .build()
            .map_err(parquet_err)?;
        Ok(SegmentStream {
            path,
            schema,
            reader,
        })
    }
}

impl Iterator for SegmentStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.reader.next()?;
        Some(
            batch
                .map_err(|e| Error::corrupted(&self.path, None, e.to_string()))
                .and_then(|b| super::stored::to_canonical(&self.path, &self.schema, &b)),
        )
    }
}

/// Checks the ScryDB key-value metadata of a segment: the format version it was written
/// with (1 to 3; a newer one is [`Error::UnsupportedVersion`]) and the signal it holds.
pub fn check_metadata(path: &Path, meta: &SegmentMeta, kv: Option<&Vec<KeyValue>>) -> Result<()> {
    let get = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.as_deref())
    };
    match get("scrydb.format_version") {
        Some(v) if matches!(v.parse::<u32>(), Ok(1..=SEGMENT_FORMAT_MAX)) => {}
        Some(v) => {
            return match v.parse::<u32>() {
                Ok(found) if found > SEGMENT_FORMAT_MAX => Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: SEGMENT_FORMAT_MAX,
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

/// Bytes read per call while checking a segment's checksum.
const VERIFY_CHUNK: u64 = 1 << 20;

/// Verifies a segment's size and whole-file CRC-32 against its manifest entry without
/// decoding it, reading it sequentially a chunk at a time (never whole into memory).
/// Damage (a missing file, a wrong size, a wrong checksum) is [`Error::Corrupted`] naming
/// the file; a failed read is [`Error::Io`].
pub fn verify_segment(fs: &dyn FileSystem, db_dir: &Path, meta: &SegmentMeta) -> Result<()> {
    let path = db_dir.join(&meta.path);
    let file = match fs.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::corrupted(
                &path,
                None,
                "segment named by the manifest is missing",
            ));
        }
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    if file.len() != meta.size {
        return Err(Error::corrupted(
            &path,
            None,
            format!(
                "segment is {} bytes, the manifest says {}",
                file.len(),
                meta.size
            ),
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    let mut pos = 0;
    while pos < meta.size {
        let end = (pos + VERIFY_CHUNK).min(meta.size);
        let chunk = file
            .read_at(pos..end)
            .map_err(|e| Error::io("read", &path, e))?;
        crc.update(&chunk);
        pos = end;
    }
    if crc.finalize() != meta.crc32 {
        return Err(Error::corrupted(
            &path,
            None,
            "segment checksum does not match the manifest",
        ));
    }
    Ok(())
}
