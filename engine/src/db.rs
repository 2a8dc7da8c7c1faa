//! The database handle: open, append, snapshot, flush, close.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use crossbeam_channel::Sender;

use crate::flush::manager::FlushMsg;
use crate::flush::{manager, worker};
use crate::io::{FileSystem, LockGuard};
use crate::manifest::{self, Manifest};
use crate::memtable::{FrozenMemtable, Memtable};
use crate::retention::RetentionStats;
use crate::snapshot::Snapshot;
use crate::wal::writer::WalWriter;
use crate::write::{CommitMsg, Committer, clone_error};
use crate::{Error, Options, Result, Signal, segment, validate, wal};

/// Name of the lock file in the database directory.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the write-ahead log directory.
pub const WAL_DIR: &str = "wal";

/// What readers see: the current manifest and the memtables not yet in it.
pub(crate) struct State {
    pub manifest: Arc<Manifest>,
    pub active: Arc<Memtable>,
    pub frozen: VecDeque<Arc<FrozenMemtable>>,
}

#[derive(Default)]
struct Progress {
    frozen_pending: usize,
    last_flushed: u64,
}

/// State shared by the handle and the background threads.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub opts: Options,
    pub fs: Arc<dyn FileSystem>,
    /// Open trace indexes and Parquet metadata, for lookups.
    pub indexes: Arc<crate::trace::IndexCache>,
    state: RwLock<State>,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    progress: Mutex<Progress>,
    progress_cv: Condvar,
}

impl Shared {
    pub fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock poisons it; the state itself is always consistent
        // (every update is a few assignments), and the database is fail-stopped anyway.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.dir.join(WAL_DIR)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Fail-stop: from now on writes are refused. The first reason is kept.
    pub fn poison(&self, reason: String) {
        {
            let mut r = self.poison_reason.lock().unwrap_or_else(|e| e.into_inner());
            if r.is_none() {
                log::error!(
                    "ScryDB at {} refuses further writes: {reason}",
                    self.dir.display()
                );
                *r = Some(reason);
            }
        }
        self.poisoned.store(true, Ordering::SeqCst);
        let _guard = self.progress();
        self.progress_cv.notify_all();
    }

    pub fn poison_error(&self) -> Error {
        let reason = self
            .poison_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "unknown failure".into());
        Error::Poisoned { reason }
    }

    /// Blocks until fewer than `max` frozen memtables wait for the flush.
    pub fn wait_for_frozen_slot(&self, max: usize) -> Result<()> {
        let mut p = self.progress();
        while p.frozen_pending >= max && !self.is_poisoned() {
            p = self.progress_cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if self.is_poisoned() {
            return Err(self.poison_error());
        }
        Ok(())
    }

    pub fn frozen_added(&self) {
        self.progress().frozen_pending += 1;
    }

    /// Swaps in a new manifest and drops the frozen memtable it now covers, in one step.
    pub fn publish(&self, manifest: Arc<Manifest>, frozen_id: u64) {
        let mut state = self.write_state();
        state.manifest = manifest;
        let front = state.frozen.pop_front();
        debug_assert_eq!(
            front.map(|f| f.id),
            Some(frozen_id),
            "flushes publish in order"
        );
    }

    /// Swaps in a new manifest that changes no memtable (retention, compaction).
    pub fn replace_manifest(&self, manifest: Arc<Manifest>) {
        self.write_state().manifest = manifest;
    }

    /// Records that frozen memtable `id` is in segments.
    pub fn flushed(&self, id: u64) {
        let mut p = self.progress();
        p.frozen_pending = p.frozen_pending.saturating_sub(1);
        p.last_flushed = id;
        self.progress_cv.notify_all();
    }

    /// Blocks until frozen memtable `id` is in segments.
    fn wait_flushed(&self, id: u64) -> Result<()> {
        let mut p = self.progress();
        while p.last_flushed < id && !self.is_poisoned() {
            p = self.progress_cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        if p.last_flushed < id {
            return Err(self.poison_error());
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        let state = self.read_state();
        Snapshot {
            dir: self.dir.clone(),
            fs: self.fs.clone(),
            manifest: state.manifest.clone(),
            frozen: state.frozen.iter().cloned().collect(),
            active: state.active.clone(),
            indexes: self.indexes.clone(),
        }
    }
}

/// Takes read snapshots of a database; see [`Db::reader`].
#[derive(Clone)]
pub struct Reader {
    shared: Arc<Shared>,
}

impl Reader {
    /// An immutable view of the database now; see [`Db::snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

/// An open ScryDB database: one directory, one writer process.
///
/// `Db` is `Send + Sync`; share it (`Arc<Db>`) between threads. Appends from many threads
/// are committed together (group commit). Reads go through [`Db::snapshot`] and never wait
/// for writers.
///
/// Dropping a `Db` closes it like [`Db::close`] but can only log errors; call `close` to see
/// them.
pub struct Db {
    shared: Arc<Shared>,
    commit_tx: Sender<CommitMsg>,
    flush_tx: Sender<FlushMsg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    lock: Mutex<Option<LockGuard>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.shared.dir).finish()
    }
}

impl Db {
    /// Opens the database in `dir`, creating the directory if needed, and recovers it:
    /// replays the write-ahead log (dropping a torn tail with a warning), removes files that
    /// no manifest names, and starts the background threads.
    ///
    /// Fails with [`Error::Locked`] when another `Db` (in this or another process) has the
    /// directory open, with [`Error::Corrupted`] naming the file when the manifest or the log
    /// is damaged beyond a torn tail, and never panics on what it finds on disk.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs.try_lock(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked {
                    dir: dir.clone(),
                    lock_file: lock_path.clone(),
                }
            } else {
                Error::io("lock", &lock_path, e)
            }
        })?;
        let wal_dir = dir.join(WAL_DIR);
        for sub in std::iter::once(WAL_DIR).chain(Signal::ALL.iter().map(|s| s.name())) {
            let p = dir.join(sub);
            fs.create_dir_all(&p)
                .map_err(|e| Error::io("create directory", &p, e))?;
        }

        let manifest = match manifest::load_current(fs.as_ref(), &dir)? {
            Some(m) => m,
            None => {
                refuse_data_without_manifest(fs.as_ref(), &dir, &wal_dir)?;
                let m = Manifest::empty();
                manifest::write(fs.as_ref(), &dir, &m)?;
                m
            }
        };
        check_segments(fs.as_ref(), &dir, &manifest)?;
        remove_orphans(fs.as_ref(), &dir, &manifest)?;

        let mut memtable = Memtable::default();
        let stats = wal::reader::replay(
            fs.as_ref(),
            &wal_dir,
            manifest.wal_replay_from,
            opts.wal_recovery,
            |signal, batch| {
                memtable.push(signal, batch);
                Ok(())
            },
        )?;
        if stats.frames > 0 {
            log::info!(
                "recovered {} batches from {} log file(s) in {}",
                stats.frames,
                stats.files,
                wal_dir.display()
            );
        }
        let next_seq = stats
            .last_seq
            .map_or(manifest.wal_replay_from, |s| s + 1)
            .max(manifest.wal_replay_from);
        let wal = WalWriter::create(&fs, &wal_dir, next_seq)?;

        let shared = Arc::new(Shared {
            dir,
            fs,
            indexes: Arc::default(),
            state: RwLock::new(State {
                manifest: Arc::new(manifest),
                active: Arc::new(memtable),
                frozen: VecDeque::new(),
            }),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            progress: Mutex::new(Progress::default()),
            progress_cv: Condvar::new(),
            opts,
        });

        let mut threads = Vec::new();
        let spawn_err = |e: std::io::Error| Error::io("spawn thread", &shared.dir, e);
        let (job_tx, job_rx) = crossbeam_channel::bounded(shared.opts.flush_threads * 2);
        for i in 0..shared.opts.flush_threads {
            let (s, rx) = (shared.clone(), job_rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("scry-flush-{i}"))
                    .spawn(move || worker::run(s, rx))
                    .map_err(spawn_err)?,
            );
        }
        let (flush_tx, flush_rx) = crossbeam_channel::bounded(shared.opts.max_frozen_memtables + 2);
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("scry-flush".into())
                .spawn(move || manager::run(s, flush_rx, job_tx))
                .map_err(spawn_err)?,
        );
        let (commit_tx, commit_rx) = crossbeam_channel::bounded(1024);
        let committer = Committer::new(shared.clone(), wal, flush_tx.clone());
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("scry-wal".into())
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        committer.run(commit_rx)
                    }));
                    if let Err(p) = r {
                        s.poison(format!(
                            "the log thread panicked: {}",
                            worker::panic_message(&p)
                        ));
                    }
                })
                .map_err(spawn_err)?,
        );

        Ok(Db {
            shared,
            commit_tx,
            flush_tx,
            threads: Mutex::new(threads),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the database was opened with.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// Appends a batch of rows to `signal`'s table.
    ///
    /// The batch is validated and normalized to the table's schema first (see
    /// [`crate::validate`]); an invalid batch is rejected whole with
    /// [`Error::InvalidBatch`]. When this returns `Ok`, the batch is in the write-ahead log
    /// as durably as [`crate::Durability`] says and visible to every snapshot taken from now
    /// on. When it returns an error nothing of the batch is visible; after an I/O error the
    /// database is fail-stopped ([`Error::Poisoned`]) and the batch may or may not reappear
    /// after reopening, like any write whose outcome is unknown.
    ///
    /// Blocks while the memtable is full and the flush is behind (push back).
    pub fn append(&self, signal: Signal, batch: &RecordBatch) -> Result<()> {
        self.check_writable()?;
        let batch = validate::normalize(signal, batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let frame = wal::format::encode_frame(signal, &batch)?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.commit_tx
            .send(CommitMsg::Append {
                signal,
                batch,
                frame,
                reply,
            })
            .map_err(|_| self.gone_error())?;
        rx.recv().unwrap_or_else(|_| Err(self.gone_error()))
    }

    /// Takes a read snapshot: every batch acknowledged before this call, and nothing
    /// appended after it.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// One trace, found exactly with no time hint: its spans, its log records and the
    /// metric points whose exemplars carry its id, unflushed rows included. Segments are
    /// probed through their trace indexes; a segment whose index is missing or damaged is
    /// scanned instead (and said so once in the log).
    pub fn trace(&self, trace_id: [u8; 16]) -> Result<crate::trace::Trace> {
        self.snapshot().trace(trace_id, true)
    }

    /// Rebuilds the trace index of every segment (all, or only those whose index is
    /// missing or damaged when `all` is false); returns how many were rebuilt.
    pub fn rebuild_indexes(&self, all: bool) -> Result<usize> {
        let snap = self.snapshot();
        let mut n = 0;
        for signal in Signal::ALL {
            for seg in snap.segments(signal, None) {
                if !all && snap.index_cache().index(&self.shared.dir, &seg).is_some() {
                    continue;
                }
                crate::index::build_for_segment(&self.shared.fs, &self.shared.dir, &seg)?;
                self.shared.indexes.forget(seg.id);
                n += 1;
            }
        }
        Ok(n)
    }

    /// A handle that takes snapshots of this database and can be kept and shared (it is
    /// `Clone + Send + Sync`) by readers such as the SQL layer. It keeps working after the
    /// `Db` is closed, seeing the state the close left.
    pub fn reader(&self) -> Reader {
        Reader {
            shared: self.shared.clone(),
        }
    }

    /// Writes everything appended before this call into segments and returns when those
    /// are published (and the log files they covered removed).
    pub fn flush(&self) -> Result<()> {
        self.check_writable()?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.commit_tx
            .send(CommitMsg::Flush { reply })
            .map_err(|_| self.gone_error())?;
        let target = rx.recv().unwrap_or_else(|_| Err(self.gone_error()))?;
        self.shared.wait_flushed(target)
    }

    /// Drops every segment whose time partition ends at or before `cutoff_ns` (ns since the
    /// epoch): retention by hand ([`Options::retention`] does it in the background).
    /// Snapshots taken before keep reading those segments; their files are deleted once
    /// the last such snapshot is gone. Unflushed rows are not affected.
    pub fn drop_partitions_before(&self, cutoff_ns: i64) -> Result<RetentionStats> {
        self.check_writable()?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.flush_tx
            .send(FlushMsg::DropBefore { cutoff_ns, reply })
            .map_err(|_| self.gone_error())?;
        rx.recv().unwrap_or_else(|_| Err(self.gone_error()))
    }

    /// Checks every segment of the current manifest against its recorded size and
    /// checksum. Returns the number of segments checked, or the first damaged one as
    /// [`Error::Corrupted`].
    pub fn verify(&self) -> Result<usize> {
        let snap = self.snapshot();
        for seg in &snap.manifest.segments {
            segment::reader::verify_segment(self.shared.fs.as_ref(), &self.shared.dir, seg)?;
        }
        Ok(snap.manifest.segments.len())
    }

    /// Flushes everything, stops the background threads and releases the directory. After
    /// a clean close the segments hold every acknowledged row and the log is empty.
    ///
    /// Returns [`Error::Poisoned`] if the database had failed; its unflushed data then stays
    /// in the log and is recovered by the next open.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        let result = match self.commit_tx.send(CommitMsg::Close { reply }) {
            Ok(()) => rx
                .recv()
                .unwrap_or_else(|_| Err(self.gone_error()))
                .and_then(|target| self.shared.wait_flushed(target)),
            Err(_) => Err(self.gone_error()),
        };
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let name = t.thread().name().unwrap_or("?").to_string();
            if t.join().is_err() {
                self.shared.poison(format!("thread {name} panicked"));
            }
        }
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        if self.shared.is_poisoned() {
            return Err(self.shared.poison_error());
        }
        result
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if self.shared.is_poisoned() {
            return Err(self.shared.poison_error());
        }
        Ok(())
    }

    /// The error for a log thread that no longer answers.
    fn gone_error(&self) -> Error {
        if self.shared.is_poisoned() {
            clone_error(&self.shared.poison_error())
        } else if self.closed.load(Ordering::SeqCst) {
            Error::Closed
        } else {
            Error::Poisoned {
                reason: "the log thread stopped".into(),
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("closing ScryDB at {}: {e}", self.shared.dir.display());
        }
    }
}

/// Every segment the manifest names must exist with its recorded size.
fn check_segments(fs: &dyn FileSystem, dir: &Path, m: &Manifest) -> Result<()> {
    for seg in &m.segments {
        let path = dir.join(&seg.path);
        match fs.file_size(&path) {
            Ok(size) if size == seg.size => {}
            Ok(size) => {
                return Err(Error::corrupted(
                    &path,
                    None,
                    format!(
                        "segment is {size} bytes, manifest {} says {}",
                        m.version, seg.size
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::corrupted(
                    &path,
                    None,
                    format!("segment named by manifest {} is missing", m.version),
                ));
            }
            Err(e) => return Err(Error::io("stat", &path, e)),
        }
    }
    Ok(())
}

/// Removes segment files (and temporary files) that the manifest does not name: leftovers
/// of a flush that crashed before publishing, or of a removal that crashed before deleting.
/// A directory without a manifest is new only if it holds no log file and no segment: a
/// lost manifest must not turn into deleting segments that no manifest names.
fn refuse_data_without_manifest(fs: &dyn FileSystem, dir: &Path, wal_dir: &Path) -> Result<()> {
    let refuse = |found: &Path| {
        Err(Error::corrupted(
            dir,
            None,
            format!(
                "no MANIFEST file, but {} exists: the manifest was lost or removed. \
                 Restore it from a backup (ScryDB does not rebuild it on its own)",
                found.display()
            ),
        ))
    };
    for part in partition_dirs(fs, dir)? {
        for f in fs
            .read_dir(&part)
            .map_err(|e| Error::io("list", &part, e))?
        {
            if f.path.extension().is_some_and(|x| x == "parquet") {
                return refuse(&f.path);
            }
        }
    }
    for e in fs
        .read_dir(wal_dir)
        .map_err(|e| Error::io("list", wal_dir, e))?
    {
        if !e.is_dir && wal::parse_file_name(&e.path).is_some() {
            return refuse(&e.path);
        }
    }
    Ok(())
}

/// The partition directories of every signal (other entries in a signal directory are
/// left alone, with a warning).
fn partition_dirs(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for signal in Signal::ALL {
        let sdir = dir.join(signal.name());
        for part in fs
            .read_dir(&sdir)
            .map_err(|e| Error::io("list", &sdir, e))?
        {
            if part.is_dir {
                out.push(part.path);
            } else {
                log::warn!("leaving unexpected file {} alone", part.path.display());
            }
        }
    }
    Ok(out)
}

fn remove_orphans(fs: &dyn FileSystem, dir: &Path, m: &Manifest) -> Result<()> {
    let live: HashSet<PathBuf> = m
        .segments
        .iter()
        .flat_map(|s| {
            let path = dir.join(&s.path);
            [crate::index::index_path(&path), path]
        })
        .collect();
    for part in partition_dirs(fs, dir)? {
        let mut remaining = 0;
        for f in fs
            .read_dir(&part)
            .map_err(|e| Error::io("list", &part, e))?
        {
            if f.is_dir || live.contains(&f.path) {
                remaining += 1;
                continue;
            }
            log::info!("removing {} (named by no manifest)", f.path.display());
            fs.remove_file(&f.path)
                .map_err(|e| Error::io("remove", &f.path, e))?;
        }
        if remaining == 0 {
            fs.remove_dir(&part)
                .map_err(|e| Error::io("remove directory", &part, e))?;
        }
    }
    Ok(())
}
