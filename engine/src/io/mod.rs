//! The one trait all engine file I/O goes through.
//!
//! The engine never calls `std::fs` directly: it asks a [`FileSystem`]. [`StdFs`] is the
//! operating system's; [`fault::FaultyFs`] wraps another and fails the Nth write, fsync,
//! rename, create or read, which is how the tests prove fail-stop and recovery. The trait is
//! small on purpose so that a store can later keep its segments elsewhere (object storage).

pub mod fault;
pub mod powercut;

use std::any::Any;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

/// A file open for writing (created new or truncated).
pub trait WritableFile: Write + Send {
    /// Makes everything written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file open for random-access reads. ScryDB reads only files that no writer changes any
/// more (published segments and indexes), so a length taken at open stays true.
pub trait ReadableFile: Send + Sync + fmt::Debug {
    /// The file's length in bytes when it was opened.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly the bytes of `range`; a range past the end is an
    /// [`io::ErrorKind::UnexpectedEof`] error, never a short read.
    fn read_at(&self, range: Range<u64>) -> io::Result<Bytes>;
}

/// An entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Full path of the entry.
    pub path: PathBuf,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// A held directory lock; released when dropped.
pub type LockGuard = Box<dyn Any + Send + Sync>;

/// The file operations the engine needs, and no more.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents; succeeds if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates a file for writing, truncating an existing one.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Bytes>;
    /// Opens a file for random-access reads (segment pages).
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;
    /// The whole content of an immutable file, memory-mapped where the file system can (an
    /// index that lookups binary-search without reading it whole). The caller must not
    /// use this on a file that may still change.
    fn map(&self, path: &Path) -> io::Result<Bytes>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory; a missing directory is an empty list.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes a directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Shortens a file to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Size of a file in bytes.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// Takes an exclusive advisory lock on `path` (created if missing) without waiting.
    /// Fails with [`io::ErrorKind::WouldBlock`] when someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard>;
    /// Who writes this store's log, when the store's shared files can be written from more
    /// than one directory (object storage: [`crate::remote::RemoteFs`]). Manifests record
    /// it (`wal_owner`), so that a directory whose log a manifest does not describe
    /// replays all of it. `None` (the default) for a store in one local directory.
    fn wal_owner(&self) -> Option<String> {
        None
    }
    /// The object-storage URL (`s3://bucket/key`) of the file at `path`, when it lives in
    /// object storage; what another process (a cluster executor, DuckDB) reads it by.
    fn object_url(&self, _path: &Path) -> Option<String> {
        None
    }
    /// The object-storage stores (`s3://bucket/prefix`) this file system reads, when every
    /// file a manifest names is in one of them; `None` when any is on local disk.
    fn remote_stores(&self) -> Option<Vec<String>> {
        None
    }
}

/// A locked file that unlocks explicitly when dropped. Closing alone is not enough: a child
/// process forked (by any thread of this process) between our open and its `exec` holds a
/// duplicate of the descriptor, and a `flock` lock lives until every duplicate is closed.
struct HeldLock(File);

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl Write for StdFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WritableFile for StdFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct StdReadFile {
    file: File,
    len: u64,
}

impl ReadableFile for StdReadFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, range: Range<u64>) -> io::Result<Bytes> {
        if range.start > range.end || range.end > self.len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read of bytes {range:?} of a {}-byte file", self.len),
            ));
        }
        let n = usize::try_from(range.end - range.start).map_err(io::Error::other)?;
        let mut buf = vec![0; n];
        #[cfg(unix)]
        std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut buf, range.start)?;
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < n {
                let got = std::os::windows::fs::FileExt::seek_read(
                    &self.file,
                    &mut buf[done..],
                    range.start + done as u64,
                )?;
                if got == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                done += got;
            }
        }
        Ok(Bytes::from(buf))
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn read(&self, path: &Path) -> io::Result<Bytes> {
        std::fs::read(path).map(Bytes::from)
    }

    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(StdReadFile { file, len }))
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            // An empty file cannot be mapped on every platform.
            return Ok(Bytes::new());
        }
        // SAFETY: callers map only immutable files (published indexes), which nobody
        // truncates or rewrites while they are mapped; they are deleted only by name, which
        // leaves the mapping valid.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(Bytes::from_owner(map))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let iter = match std::fs::read_dir(path) {
            Ok(it) => it,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in iter {
            let entry = entry?;
            out.push(DirEntry {
                path: entry.path(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(HeldLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock is held by another open database",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Writes `bytes` to `path` durably through `<path>.tmp`: created, written, fsynced, then
/// renamed over `path`. The caller fsyncs the directory when the name must be durable too.
/// A failure leaves at most the temporary file, which open removes as a leftover.
pub(crate) fn write_durably(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> crate::Result<()> {
    use crate::Error;
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    let tmp = PathBuf::from(name);
    let mut f = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, path)
        .map_err(|e| Error::io("rename", &tmp, e))
}

/// Length of the header [`seal`] writes: magic (8 bytes), version (u32), flags (u32, zero),
/// size of the uncompressed payload (u64), all little-endian.
const SEALED_HEADER_LEN: usize = 24;

/// A side file's bytes (span rollups, log patterns; `docs/format.md`): the header, the
/// zstd-compressed `payload`, and a CRC-32 of everything before it.
pub(crate) fn seal(magic: &[u8; 8], version: u32, payload: &[u8]) -> crate::Result<Vec<u8>> {
    let packed = zstd::bulk::compress(payload, 3).map_err(|e| crate::Error::Io {
        op: "compress",
        path: PathBuf::from("<side file>"),
        source: e,
    })?;
    let mut out = Vec::with_capacity(SEALED_HEADER_LEN + packed.len() + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&packed);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The payload of a file [`seal`] wrote, read from `path` (for messages) and holding a
/// `what` (for messages). Damage is [`crate::Error::Corrupted`], another version than
/// `version` [`crate::Error::UnsupportedVersion`].
pub(crate) fn unseal(
    path: &Path,
    bytes: &[u8],
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> crate::Result<Vec<u8>> {
    use crate::Error;
    let corrupt = |at: Option<u64>, why: String| Error::corrupted(path, at, why);
    if bytes.len() < SEALED_HEADER_LEN + 4 || &bytes[..8] != magic {
        return Err(corrupt(
            Some(0),
            format!("not a {what} file (bad magic or too short)"),
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt(None, "checksum mismatch".to_string()));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: version,
        });
    }
    let raw_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    // zstd allocates the stated size up front: a size no compression ratio explains is
    // damage, not an allocation to attempt.
    let packed_len = (body.len() - SEALED_HEADER_LEN) as u64;
    if raw_len > packed_len.saturating_mul(1024).saturating_add(1 << 20) {
        return Err(corrupt(
            Some(16),
            "payload size out of proportion to the file".to_string(),
        ));
    }
    zstd::bulk::decompress(&body[SEALED_HEADER_LEN..], raw_len as usize)
        .map_err(|e| corrupt(Some(SEALED_HEADER_LEN as u64), format!("payload: {e}")))
}
