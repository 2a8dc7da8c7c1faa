//! A segment file opened through the engine's [`FileSystem`](crate::io::FileSystem), readable
//! by the Parquet reader: every page read goes through the same trait as writes do, so fault
//! injection (and, later, object storage) covers reads too.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use crate::io::ReadableFile;

/// Bytes a sequential reader fetches per call.
const READ_CHUNK: u64 = 64 * 1024;

/// A segment open for random-access reads. With a block table
/// ([`super::blocks::BlockCrcs`], from the segment's first-use check), every read of the
/// checked blocks is checked against it first; without one, reads are served as they are
/// (the caller checked the whole file).
#[derive(Debug, Clone)]
pub struct SegmentFile {
    file: Arc<dyn ReadableFile>,
    blocks: Option<Arc<super::blocks::BlockCrcs>>,
}

impl SegmentFile {
    /// `file`, read with the checks of `blocks` (none: the caller checked the whole file).
    pub fn new(file: Arc<dyn ReadableFile>, blocks: Option<Arc<super::blocks::BlockCrcs>>) -> Self {
        SegmentFile { file, blocks }
    }

    /// Reads exactly `range` (see [`ReadableFile::read_at`]), after checking the blocks it
    /// touches; a block that does not match is an [`io::ErrorKind::InvalidData`] error
    /// naming the file.
    pub fn read_at(&self, range: std::ops::Range<u64>) -> io::Result<Bytes> {
        match &self.blocks {
            Some(b) => b.read(self.file.as_ref(), range),
            None => self.file.read_at(range),
        }
    }
}

impl Length for SegmentFile {
    fn len(&self) -> u64 {
        self.file.len()
    }
}

impl ChunkReader for SegmentFile {
    type T = SequentialReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SequentialReader> {
        if start > self.file.len() {
            return Err(ParquetError::EOF(format!(
                "read at offset {start} of a {}-byte segment",
                self.file.len()
            )));
        }
        Ok(SequentialReader {
            file: self.clone(),
            pos: start,
            buf: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start
            .checked_add(length as u64)
            .ok_or_else(|| ParquetError::EOF(format!("read of {length} bytes at {start}")))?;
        self.read_at(start..end)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

/// Reads a segment from an offset to its end, a chunk at a time.
#[derive(Debug)]
pub struct SequentialReader {
    file: SegmentFile,
    pos: u64,
    buf: Bytes,
}

impl Read for SequentialReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            let end = (self.pos + READ_CHUNK).min(self.file.len());
            if end <= self.pos {
                return Ok(0);
            }
            self.buf = self.file.read_at(self.pos..end)?;
            self.pos = end;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}
