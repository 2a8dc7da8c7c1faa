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

/// A segment open for random-access reads.
#[derive(Debug, Clone)]
pub struct SegmentFile(pub Arc<dyn ReadableFile>);

impl Length for SegmentFile {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl ChunkReader for SegmentFile {
    type T = SequentialReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<SequentialReader> {
        if start > self.0.len() {
            return Err(ParquetError::EOF(format!(
                "read at offset {start} of a {}-byte segment",
                self.0.len()
            )));
        }
        Ok(SequentialReader {
            file: self.0.clone(),
            pos: start,
            buf: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start
            .checked_add(length as u64)
            .ok_or_else(|| ParquetError::EOF(format!("read of {length} bytes at {start}")))?;
        self.0
            .read_at(start..end)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

/// Reads a segment from an offset to its end, a chunk at a time.
#[derive(Debug)]
pub struct SequentialReader {
    file: Arc<dyn ReadableFile>,
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
