//! Byte layout of log files and frames (all integers little-endian).
//!
//! ```text
//! file header (32 bytes)
//!   0  magic        8  b"SCRYWAL\0"
//!   8  version      4  u32 = 1
//!  12  reserved     4  0
//!  16  seq          8  u64, the file's sequence number (equals its name)
//!  24  header_crc   4  CRC-32 of bytes 0..24
//!  28  reserved     4  0
//! frame (16-byte header + payload), repeated
//!   0  payload_len  4  u32
//!   4  signal       1  0 spans, 1 logs, 2 metrics
//!   5  reserved     3  0
//!   8  payload_crc  4  CRC-32 of the payload
//!  12  header_crc   4  CRC-32 of frame bytes 0..12
//!  16  payload         Arrow IPC stream: schema, dictionaries, one record batch, end marker
//! ```

use arrow::array::RecordBatch;
use arrow::ipc::writer::StreamWriter;

use crate::{Result, Signal};

/// Magic bytes at the start of every log file.
pub const MAGIC: &[u8; 8] = b"SCRYWAL\0";
/// The log format version this build writes and the newest it reads.
pub const VERSION: u32 = 1;
/// Size of the file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Size of a frame header.
pub const FRAME_HEADER_LEN: usize = 16;
/// Largest payload a frame may declare (guards against reading garbage lengths).
pub const MAX_PAYLOAD: u32 = 1 << 30;

/// Encodes a file header.
pub fn file_header(seq: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes one batch as a complete frame (header and payload).
///
/// This is the expensive part of an append and runs on the caller's thread, so concurrent
/// writers encode in parallel and the log thread only copies bytes.
pub fn encode_frame(signal: Signal, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + batch.get_array_memory_size() + 4096);
    buf.resize(FRAME_HEADER_LEN, 0);
    {
        let mut w = StreamWriter::try_new(&mut buf, batch.schema_ref())?;
        w.write(batch)?;
        w.finish()?;
    }
    let payload_len = u32::try_from(buf.len() - FRAME_HEADER_LEN)
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| {
            crate::Error::invalid(
                signal,
                "*",
                None,
                format!(
                    "batch encodes to {} bytes, above the 1 GiB frame limit; append it in smaller batches",
                    buf.len()
                ),
            )
        })?;
    let payload_crc = crc32fast::hash(&buf[FRAME_HEADER_LEN..]);
    buf[0..4].copy_from_slice(&payload_len.to_le_bytes());
    buf[4] = u8::try_from(signal.index()).expect("three signals");
    buf[8..12].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&buf[0..12]);
    buf[12..16].copy_from_slice(&header_crc.to_le_bytes());
    Ok(buf)
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
