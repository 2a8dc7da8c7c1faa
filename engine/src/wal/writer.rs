//! Appending frames to the current log file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format;
use crate::io::{FileSystem, WritableFile};
use crate::{Error, Result};

/// The log file currently being appended to.
pub struct WalWriter {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    seq: u64,
    len: u64,
    unsynced: bool,
}

impl WalWriter {
    /// Creates log file `seq` in `dir` and makes its header and directory entry durable.
    pub fn create(fs: &Arc<dyn FileSystem>, dir: &Path, seq: u64) -> Result<Self> {
        let path = super::file_path(dir, seq);
        let mut file = fs
            .create(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        file.write_all(&format::file_header(seq))
            .map_err(|e| Error::io("write", &path, e))?;
        file.sync_data().map_err(|e| Error::io("fsync", &path, e))?;
        fs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
        Ok(WalWriter {
            file,
            path,
            seq,
            len: format::FILE_HEADER_LEN as u64,
            unsynced: false,
        })
    }

    /// This file's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes in the file so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no frame yet.
    pub fn is_empty(&self) -> bool {
        self.len == format::FILE_HEADER_LEN as u64
    }

    /// Hands a complete frame to the operating system. On error the file may hold part of
    /// the frame; the caller must stop writing (fail-stop): recovery treats such a tail as
    /// torn.
    pub fn append(&mut self, frame: &[u8]) -> Result<()> {
        self.file
            .write_all(frame)
            .map_err(|e| Error::io("write", &self.path, e))?;
        self.len += frame.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every appended frame durable; a no-op when nothing was appended since the
    /// last sync.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(|e| Error::io("fsync", &self.path, e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Whether frames were appended since the last sync.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }
}
