//! A [`FileSystem`] that fails on command, for tests of fail-stop and recovery.

use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{DirEntry, FileSystem, LockGuard, ReadableFile, WritableFile};

/// The kinds of operation [`FaultyFs`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// A `write` to any file opened through [`FileSystem::create`].
    Write,
    /// An fsync of a file ([`WritableFile::sync_data`]) or a directory.
    Sync,
    /// A rename.
    Rename,
    /// A file creation.
    Create,
    /// A read: [`FileSystem::read`], [`FileSystem::open_read`], [`FileSystem::map`] and
    /// every [`ReadableFile::read_at`].
    Read,
}

const OPS: usize = 5;

#[derive(Debug, Default)]
struct Counters {
    /// Operations seen so far, per kind.
    seen: [AtomicU64; OPS],
    /// Fail the operation whose 1-based number equals this (0: never), per kind.
    fail_at: [AtomicU64; OPS],
    /// Injected errors look like a full disk (`StorageFull`, ENOSPC) instead of a generic
    /// I/O error.
    disk_full: std::sync::atomic::AtomicBool,
}

impl Counters {
    fn check(&self, op: FaultOp, path: &Path) -> io::Result<()> {
        let i = op as usize;
        let n = self.seen[i].fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.fail_at[i].load(Ordering::SeqCst);
        if at != 0 && n >= at {
            if self.disk_full.load(Ordering::SeqCst) {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "No space left on device (injected at {op:?} #{n} on {})",
                        path.display()
                    ),
                ));
            }
            return Err(io::Error::other(format!(
                "injected {op:?} failure #{n} on {}",
                path.display()
            )));
        }
        Ok(())
    }
}

/// Wraps another [`FileSystem`]; once armed with [`FaultyFs::fail_from`], the Nth and every
/// later operation of that kind fails with an I/O error (a disk that went bad stays bad).
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    counters: Arc<Counters>,
}

impl FaultyFs {
    /// Wraps `inner`; nothing fails until armed.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        FaultyFs {
            inner,
            counters: Arc::default(),
        }
    }

    /// Fails the `n`-th operation of kind `op` counted from now (1 = the next one) and
    /// every later one.
    pub fn fail_from(&self, op: FaultOp, n: u64) {
        let i = op as usize;
        let seen = self.counters.seen[i].load(Ordering::SeqCst);
        self.counters.fail_at[i].store(seen + n.max(1), Ordering::SeqCst);
    }

    /// Makes injected failures look like a full disk (`ErrorKind::StorageFull`, the
    /// message of ENOSPC) rather than a generic I/O error.
    pub fn disk_full(&self, on: bool) {
        self.counters.disk_full.store(on, Ordering::SeqCst);
    }

    /// Stops failing operations of every kind.
    pub fn heal(&self) {
        for a in &self.counters.fail_at {
            a.store(0, Ordering::SeqCst);
        }
    }

    /// How many operations of kind `op` were attempted so far.
    pub fn count(&self, op: FaultOp) -> u64 {
        self.counters.seen[op as usize].load(Ordering::SeqCst)
    }
}

struct FaultyFile {
    inner: Box<dyn WritableFile>,
    counters: Arc<Counters>,
    path: PathBuf,
}

#[derive(Debug)]
struct FaultyReadFile {
    inner: Arc<dyn ReadableFile>,
    counters: Arc<Counters>,
    path: PathBuf,
}

impl ReadableFile for FaultyReadFile {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, range: Range<u64>) -> io::Result<Bytes> {
        self.counters.check(FaultOp::Read, &self.path)?;
        self.inner.read_at(range)
    }
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.counters.check(FaultOp::Write, &self.path)?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WritableFile for FaultyFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.counters.check(FaultOp::Sync, &self.path)?;
        self.inner.sync_data()
    }
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.counters.check(FaultOp::Create, path)?;
        Ok(Box::new(FaultyFile {
            inner: self.inner.create(path)?,
            counters: self.counters.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Bytes> {
        self.counters.check(FaultOp::Read, path)?;
        self.inner.read(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        self.counters.check(FaultOp::Read, path)?;
        Ok(Arc::new(FaultyReadFile {
            inner: self.inner.open_read(path)?,
            counters: self.counters.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn map(&self, path: &Path) -> io::Result<Bytes> {
        self.counters.check(FaultOp::Read, path)?;
        self.inner.map(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.counters.check(FaultOp::Rename, from)?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.read_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.counters.check(FaultOp::Sync, path)?;
        self.inner.sync_dir(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.inner.try_lock(path)
    }
}
