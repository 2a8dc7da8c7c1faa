//! The write-ahead log: every accepted batch is framed here before its append returns.
//!
//! A log is a sequence of files `wal/<seq>.wal` (`seq` zero-padded to 20 digits). Each file
//! starts with a header (magic, format version, its sequence number, a CRC) followed by
//! frames; a frame holds one batch of one signal as an Arrow IPC stream, with a CRC of its
//! header and one of its payload. The format is in `docs/format.md`.
//!
//! The log knows nothing of the memtable: [`reader::replay`] hands each recovered batch to a
//! callback.

pub mod format;
pub mod reader;
pub mod writer;

use std::path::{Path, PathBuf};

/// Name of the write-ahead log directory in the database directory.
pub const WAL_DIR: &str = "wal";

/// Path of the log file with sequence number `seq` under `wal_dir`.
pub fn file_path(wal_dir: &Path, seq: u64) -> PathBuf {
    wal_dir.join(format!("{seq:020}.wal"))
}

/// Parses a log file name back into its sequence number.
pub fn parse_file_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
