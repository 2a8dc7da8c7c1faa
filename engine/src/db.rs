//! The database handle: open, append, snapshot, flush, close.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use crossbeam_channel::Sender;

use crate::compaction::CompactMsg;
use crate::flush::manager::FlushMsg;
use crate::flush::{manager, worker};
use crate::follow::{Follower, Refreshed};
use crate::io::LockGuard;
use crate::recovery::{self, Recovered, RecoveryReport};
use crate::retention::RetentionStats;
use crate::snapshot::Snapshot;
use crate::state::Shared;
use crate::write::{CommitMsg, Committer, clone_error};
use crate::{Error, Options, Result, Signal, validate, wal};

/// Name of the lock file in the database directory.
pub const LOCK_FILE: &str = "LOCK";

/// The error for a failed attempt to lock `dir`'s lock file: [`Error::Locked`] naming the
/// holder (as it wrote itself into the lock file) when someone holds it, else the I/O error.
pub fn lock_error(fs: &dyn crate::io::FileSystem, dir: &Path, e: std::io::Error) -> Error {
    let lock_file = dir.join(LOCK_FILE);
    if e.kind() != std::io::ErrorKind::WouldBlock {
        return Error::io("lock", &lock_file, e);
    }
    let holder = fs
        .read(&lock_file)
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Error::Locked {
        dir: dir.to_path_buf(),
        lock_file,
        holder,
    }
}

/// Writes who holds the lock into the (locked) lock file, for [`lock_error`]: the process
/// id and its command line, one line, at most 300 bytes. Only informative: a failure is
/// logged, never fatal.
fn write_lock_holder(fs: &dyn crate::io::FileSystem, lock_path: &Path) {
    let mut line = format!(
        "pid {}: {}",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line.push('\n');
    let written = fs
        .create(lock_path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        log::debug!(
            "could not note the lock holder in {}: {e}",
            lock_path.display()
        );
    }
}

/// The state of the write path; see [`Db::write_stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteStats {
    /// The flush is behind: `max_frozen` memtables wait for it, so the next memtable
    /// rotation blocks appends until one is written. A server should push back (answer
    /// "retry later") instead of queueing more requests.
    pub backlogged: bool,
    /// Frozen memtables waiting for (or in) the flush.
    pub frozen_waiting: usize,
    /// [`Options::max_frozen_memtables`].
    pub max_frozen: usize,
    /// Bytes in the active memtable.
    pub active_bytes: usize,
    /// [`Options::memtable_size`]: the active memtable is frozen when it reaches this.
    pub memtable_size: usize,
    /// Memtables flushed since open.
    pub flushes: u64,
    /// Time spent flushing them (encoding, fsync, publishing), in total.
    pub flush_time: std::time::Duration,
    /// How long the latest flush took.
    pub last_flush: Option<std::time::Duration>,
    /// Times appends were blocked because the flush was behind.
    pub stalls: u64,
    /// Time appends spent blocked, in total.
    pub stall_time: std::time::Duration,
    /// Segments in the current manifest.
    pub segments: usize,
    /// Parquet bytes of the segments flushes wrote since open.
    pub flushed_bytes: u64,
    /// Parquet bytes of the segments compaction merges and retention's thinning wrote since
    /// open. Write amplification of segments is `(flushed_bytes + rewritten_bytes) /
    /// flushed_bytes`.
    pub rewritten_bytes: u64,
    /// Compaction merges published since open.
    pub merges: u64,
    /// The database refuses writes after a failure ([`Error::Poisoned`]).
    pub poisoned: bool,
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
    compact_tx: Sender<CompactMsg>,
    /// The compaction thread, stopped before the others (it publishes through the flush
    /// manager).
    compactor: Mutex<Option<JoinHandle<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    lock: Mutex<Option<LockGuard>>,
    report: RecoveryReport,
    read_only: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.shared.dir).finish()
    }
}

impl Db {
    /// Opens the database in `dir`, creating the directory if needed, and recovers it:
    /// replays the write-ahead log (dropping a torn tail with a warning), removes the
    /// leftovers it can prove are its own (temporary files, segments of a crashed flush,
    /// segments whose deletion was interrupted) and leaves every other file alone, and
    /// starts the background threads. [`Db::recovery_report`] says what it did.
    ///
    /// Fails with [`Error::Locked`] when another `Db` (in this or another process) has the
    /// directory open, with [`Error::Corrupted`] naming the file when the manifest or the log
    /// is damaged beyond a torn tail (the message names `scry recover` for the log) or when
    /// segments are newer than the manifest, and never panics on what it finds on disk.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs
            .try_lock(&lock_path)
            .map_err(|e| lock_error(fs.as_ref(), &dir, e))?;
        write_lock_holder(fs.as_ref(), &lock_path);
        let Recovered {
            manifest,
            memtable,
            wal,
            report,
        } = recovery::recover(&fs, &dir, &opts)?;
        let shared = Arc::new(Shared::new(dir, opts, manifest, memtable));

        let mut threads = Vec::new();
        let (job_tx, job_rx) = crossbeam_channel::bounded(shared.opts.flush_threads * 2);
        for i in 0..shared.opts.flush_threads {
            let (s, rx) = (shared.clone(), job_rx.clone());
            threads.push(spawn_fail_stop(
                &shared,
                format!("scry-flush-{i}"),
                "a flush worker thread",
                move || worker::run(s, rx),
            )?);
        }
        let (flush_tx, flush_rx) = crossbeam_channel::bounded(shared.opts.max_frozen_memtables + 2);
        let s = shared.clone();
        threads.push(spawn_fail_stop(
            &shared,
            "scry-flush".into(),
            "the flush manager thread",
            move || manager::run(s, flush_rx, job_tx),
        )?);
        let (commit_tx, commit_rx) = crossbeam_channel::bounded(1024);
        let committer = Committer::new(shared.clone(), wal, flush_tx.clone());
        threads.push(spawn_fail_stop(
            &shared,
            "scry-wal".into(),
            "the log thread",
            move || committer.run(commit_rx),
        )?);
        let (compact_tx, compact_rx) = crossbeam_channel::bounded(16);
        let (s, ftx) = (shared.clone(), flush_tx.clone());
        let compactor = spawn_fail_stop(
            &shared,
            "scry-compact".into(),
            "the compaction thread",
            move || crate::compaction::run(s, compact_rx, ftx),
        )?;

        Ok(Db {
            shared,
            commit_tx,
            flush_tx,
            compact_tx,
            compactor: Mutex::new(Some(compactor)),
            threads: Mutex::new(threads),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
            report,
            read_only: false,
        })
    }

    /// Opens the database in `dir` for reading only, without modifying the directory in
    /// any way: no lock is taken, nothing is created, truncated, renamed or removed (no
    /// recovery writes, no new log file, no leftover removal, no flush on close). The view
    /// is the current manifest's segments plus the log's acknowledged batches, read into
    /// this handle's memory (a torn tail is skipped; damage is handled as
    /// [`Options::wal_recovery`] says, except that nothing is moved), so a read after a
    /// writer crashed still sees every acknowledged row.
    ///
    /// It works while another process has the store open for writing, and follows it:
    /// every snapshot first picks up the writer's newest manifest and the log frames it
    /// acknowledged since the previous snapshot (reading only the new bytes), so a query
    /// sees every write acknowledged before it started ([`Options::follow_writer`] turns
    /// this off; [`Db::refresh`] does it on demand). If a refresh fails (the writer's
    /// files are damaged), the snapshot keeps the previous view and a warning is logged.
    ///
    /// A query that is still reading an older view can meet a segment the writer has
    /// since deleted (retention or compaction); that read fails with [`Error::Io`] naming
    /// the file, and running it again reads the new view.
    ///
    /// Writes ([`Db::append`], [`Db::flush`], [`Db::drop_partitions_before`],
    /// [`Db::rebuild_indexes`]) fail with [`Error::ReadOnly`]. A directory that holds no
    /// store (missing, empty, no manifest and no data) is [`Error::NotAStore`]; one whose
    /// manifest was lost but that holds data is [`Error::Corrupted`], as for [`Db::open`].
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        let (manifest, memtable, mut report) = recovery::read_only(&fs, &dir)?;
        let follower = Follower::new(&manifest, opts.follow_writer);
        let shared = Arc::new(Shared::new(dir, opts, manifest, memtable).following(follower));
        let stats = shared.refresh()?;
        debug_assert!(!stats.skipped_log);
        let (files, batches, unread) = shared.follower_log_stats();
        report.wal_files = files;
        report.wal_batches = batches;
        match shared.opts.wal_recovery {
            crate::WalRecovery::TolerateTornTail => report.torn_tail_bytes = unread,
            crate::WalRecovery::TruncateAtCorruption => report.quarantined_bytes = unread,
        }
        // No thread reads these: every write is refused before it would send.
        let (commit_tx, _) = crossbeam_channel::bounded(1);
        let (flush_tx, _) = crossbeam_channel::bounded(1);
        let (compact_tx, _) = crossbeam_channel::bounded(1);
        Ok(Db {
            shared,
            commit_tx,
            flush_tx,
            compact_tx,
            compactor: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            lock: Mutex::new(None),
            report,
            read_only: true,
        })
    }

    /// Opens (creating if needed) the store whose log, lock and cache are in the local
    /// directory `dir` and whose manifest, segments and indexes are in object storage at
    /// `remote` ([`crate::remote`]): otherwise exactly [`Db::open`]. Besides the local lock,
    /// the writer takes the prefix's lease: a second writer on the same prefix is refused
    /// with [`Error::Io`] naming the holder.
    pub fn open_remote(
        dir: impl AsRef<Path>,
        remote: crate::remote::RemoteStore,
        remote_opts: crate::remote::RemoteOptions,
        mut opts: Options,
    ) -> Result<Db> {
        let dir = dir.as_ref();
        let fs = crate::remote::RemoteFs::new(dir, remote, remote_opts)
            .map_err(|e| Error::io("create", dir, e))?;
        opts.fs = Arc::new(fs);
        Db::open(dir, opts)
    }

    /// Opens the store at `remote` read-only ([`Db::open_read_only`]), with `dir` as the
    /// local directory of its cache. From another host it reads what the writer committed
    /// (flushed segments); from the writer's own directory it also follows the writer's
    /// log.
    pub fn open_remote_read_only(
        dir: impl AsRef<Path>,
        remote: crate::remote::RemoteStore,
        remote_opts: crate::remote::RemoteOptions,
        mut opts: Options,
    ) -> Result<Db> {
        let dir = dir.as_ref();
        let fs = crate::remote::RemoteFs::new_read_only(dir, remote, remote_opts)
            .map_err(|e| Error::io("create", dir, e))?;
        opts.fs = Arc::new(fs);
        Db::open_read_only(dir, opts)
    }

    /// Opens several stores as one read-only store ([`crate::remote::View`]): every table
    /// and [`Db::trace`] read all of them, with time pruning and the indexes of each
    /// segment as in one store. `dir` is the local directory of the members' caches. A
    /// refresh (automatic before snapshots unless [`Options::follow_writer`] is off) picks
    /// up new manifests of every member and writers that appeared under a parent prefix.
    /// It reads committed segments only: rows still in a writer's log are not in the view.
    pub fn open_view(
        dir: impl AsRef<Path>,
        view: &crate::remote::View,
        remote_opts: crate::remote::RemoteOptions,
        mut opts: Options,
    ) -> Result<Db> {
        let dir = dir.as_ref();
        if view.is_empty() {
            return Err(Error::invalid_option(
                "view",
                "a view needs at least one store or parent prefix".to_string(),
            ));
        }
        let fs = crate::remote::ViewFs::new(dir, view, remote_opts)?;
        opts.fs = Arc::new(fs);
        Db::open_read_only(dir, opts)
    }

    /// Brings a read-only handle's view up to what the writing process has done since the
    /// last refresh (a newer manifest, newly acknowledged log frames) and says what changed,
    /// including the new batches in log order (what `scry tail` prints). Snapshots do this
    /// themselves unless [`Options::follow_writer`] is off; call it to see refresh errors.
    ///
    /// On a writer it fails with [`Error::InvalidOptions`]: a writer's view is always
    /// current.
    pub fn refresh(&self) -> Result<Refreshed> {
        self.shared.refresh()
    }

    /// Whether this handle was opened with [`Db::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What opening found and did to the directory: log batches recovered, a torn tail
    /// cut, damaged log bytes moved into quarantine files, leftover files removed, foreign
    /// files left alone. [`RecoveryReport::is_clean`] is true for an ordinary open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
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
        match self.start_append(signal, batch)? {
            Some(pending) => pending.wait(),
            None => Ok(()),
        }
    }

    /// Starts an append and returns without waiting for the log write: the caller prepares
    /// its next batch while this one is written and synced, and learns the outcome from
    /// [`PendingAppend::wait`], which then means exactly what [`Db::append`] returning
    /// means. `None` for a batch of no rows (nothing to wait for).
    ///
    /// Validation happens here: an invalid batch is an [`Error::InvalidBatch`] now and is
    /// not started. Appends started from one thread are logged, made visible and
    /// acknowledged in the order they were started, so a caller holding several may wait
    /// for them oldest first. Several appends waiting together share one log sync (group
    /// commit). The rows may become visible to snapshots before `wait` returns; dropping a
    /// [`PendingAppend`] does not cancel it.
    pub fn start_append(
        &self,
        signal: Signal,
        batch: &RecordBatch,
    ) -> Result<Option<PendingAppend<'_>>> {
        self.check_writable()?;
        let batch = validate::normalize(signal, batch)?;
        if batch.num_rows() == 0 {
            return Ok(None);
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
        Ok(Some(PendingAppend { db: self, rx }))
    }

    /// How the write path is doing: whether appends are being pushed back (the flush is
    /// behind), and counters since open. Cheap (a few atomic loads and one short lock):
    /// a server can ask before every request.
    pub fn write_stats(&self) -> WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.shared.counters;
        let frozen_waiting = self.shared.frozen_pending();
        let max_frozen = self.shared.opts.max_frozen_memtables;
        let (active_bytes, segments) = {
            let state = self.shared.read_state();
            (state.active.bytes(), state.manifest.segments.len())
        };
        let last = c.last_flush_nanos.load(Relaxed);
        WriteStats {
            backlogged: !self.read_only && frozen_waiting >= max_frozen,
            frozen_waiting,
            max_frozen,
            active_bytes,
            memtable_size: self.shared.opts.memtable_size,
            flushes: c.flushes.load(Relaxed),
            flush_time: std::time::Duration::from_nanos(c.flush_nanos.load(Relaxed)),
            last_flush: (last > 0).then(|| std::time::Duration::from_nanos(last)),
            stalls: c.stalls.load(Relaxed),
            stall_time: std::time::Duration::from_nanos(c.stall_nanos.load(Relaxed)),
            segments,
            flushed_bytes: c.flushed_bytes.load(Relaxed),
            rewritten_bytes: c.rewritten_bytes.load(Relaxed),
            merges: c.merges.load(Relaxed),
            poisoned: self.shared.is_poisoned(),
        }
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

    /// Rebuilds the trace index of every segment, the term index of every span and log
    /// segment and the log patterns of every log segment (all, or only those missing,
    /// damaged or — term indexes — of an older format when `all` is false), and writes the
    /// span rollup of every span
    /// segment whose rollup file is missing or damaged (a valid one is always kept: after
    /// thinning or a compaction it counts spans the rows no longer hold); returns how many
    /// files were written.
    pub fn rebuild_indexes(&self, all: bool) -> Result<usize> {
        self.check_writable()?;
        let snap = self.snapshot();
        let mut n = 0;
        for seg in snap.segments(Signal::Spans, None) {
            if !crate::rollup::needs_rebuild(self.shared.fs.as_ref(), &self.shared.dir, &seg)? {
                continue;
            }
            if seg.thinned.is_some() {
                log::warn!(
                    "rebuilding the span rollup of thinned segment {} from its rows: it now \
                     counts only the spans thinning kept",
                    seg.path
                );
            }
            crate::rollup::rebuild(&self.shared.fs, &self.shared.dir, &seg)?;
            self.shared.indexes.forget(seg.id);
            n += 1;
        }
        for signal in Signal::ALL {
            for seg in snap.segments(signal, None) {
                if !all
                    && snap
                        .index_cache()
                        .index(self.shared.fs.as_ref(), &self.shared.dir, &seg)
                        .is_some()
                {
                    continue;
                }
                crate::index::build_for_segment(&self.shared.fs, &self.shared.dir, &seg)?;
                self.shared.indexes.forget(seg.id);
                n += 1;
            }
        }
        // Term indexes of span and log segments, then log patterns of log segments: each
        // written durably, then its partition directory fsynced.
        let (fs, dir) = (&self.shared.fs, &self.shared.dir);
        type Rebuild =
            fn(&Arc<dyn crate::io::FileSystem>, &Path, &crate::SegmentMeta) -> Result<u64>;
        type Check = fn(&dyn crate::io::FileSystem, &Path, &crate::SegmentMeta) -> Result<bool>;
        let derived: [(Signal, Check, Rebuild); 3] = [
            (
                Signal::Spans,
                crate::search::index::needs_rebuild,
                crate::search::index::build_for_segment,
            ),
            (
                Signal::Logs,
                crate::search::index::needs_rebuild,
                crate::search::index::build_for_segment,
            ),
            (
                Signal::Logs,
                crate::search::log_patterns::needs_rebuild,
                crate::search::log_patterns::rebuild,
            ),
        ];
        for (signal, needs, rebuild) in derived {
            for seg in snap.segments(signal, None) {
                if !all && !needs(fs.as_ref(), dir, &seg)? {
                    continue;
                }
                rebuild(fs, dir, &seg)?;
                let path = dir.join(&seg.path);
                let part = path
                    .parent()
                    .expect("segments are in a partition directory");
                fs.sync_dir(part).map_err(|e| Error::io("fsync", part, e))?;
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

    /// Merges small segments now, treating every time partition as closed (the policy is
    /// in [`crate::compaction`]; the background thread does the same every 30 s for closed
    /// partitions unless [`Options::compaction`] is off). Returns when the pass is done;
    /// ingest and queries go on meanwhile, and snapshots taken before keep reading the old
    /// segments, whose files are deleted once the last such snapshot is gone.
    pub fn compact(&self) -> Result<crate::compaction::CompactionStats> {
        self.check_writable()?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.compact_tx
            .send(CompactMsg::Run { force: true, reply })
            .map_err(|_| self.gone_error())?;
        rx.recv().unwrap_or_else(|_| Err(self.gone_error()))
    }

    /// Retention on demand: drops every time partition that ended more than `older_than`
    /// ago (with [`Options::keep_interesting`]: thins those that ended less than
    /// `older_than + keep_interesting` ago instead, see [`crate::thin`]), then — with a
    /// `max_bytes` budget — the oldest remaining partitions until the segments and their
    /// trace indexes take at most `max_bytes` (the log is not counted). With
    /// `keep_interesting`, the budget thins partitions that ended (oldest first) before it
    /// drops any, and drops only what is still over budget once all are thinned.
    /// Whole partitions go, across all signals. Snapshots taken before keep reading the
    /// dropped segments; their files are deleted when the last such snapshot is gone.
    /// Unflushed rows are not affected.
    pub fn retain(
        &self,
        older_than: Option<std::time::Duration>,
        max_bytes: Option<u64>,
    ) -> Result<RetentionStats> {
        self.check_writable()?;
        let cutoff_ns = older_than.map(|d| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |n| i64::try_from(n.as_nanos()).unwrap_or(i64::MAX));
            now.saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        });
        if let (Some(age), Some(keep)) = (older_than, self.shared.opts.keep_interesting) {
            let (reply, rx) = crossbeam_channel::bounded(1);
            self.compact_tx
                .send(CompactMsg::Thin {
                    older_than: age,
                    keep,
                    reply,
                })
                .map_err(|_| self.gone_error())?;
            rx.recv().unwrap_or_else(|_| Err(self.gone_error()))?;
        }
        if let (Some(budget), Some(_)) = (max_bytes, self.shared.opts.keep_interesting) {
            let (reply, rx) = crossbeam_channel::bounded(1);
            self.compact_tx
                .send(CompactMsg::BudgetThin { budget, reply })
                .map_err(|_| self.gone_error())?;
            // A failed thinning is logged and remembered: the budget then drops that
            // partition whole.
            if let Err(e) = rx.recv().unwrap_or_else(|_| Err(self.gone_error())) {
                log::warn!("thinning for the disk budget failed: {e}");
            }
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        self.flush_tx
            .send(FlushMsg::Retain {
                cutoff_ns,
                max_bytes,
                reply,
            })
            .map_err(|_| self.gone_error())?;
        rx.recv().unwrap_or_else(|_| Err(self.gone_error()))
    }

    /// Checks every file of the store against its checksums and reports every damaged
    /// file, not only the first: the current manifest, every segment it names (size and
    /// whole-file CRC), every segment's trace index (magic, version, CRC, signal, row
    /// count; a missing index counts as damaged) and every log file not yet flushed (its
    /// header and every frame's CRCs; an incomplete frame at the end of the newest file is
    /// a write in progress, reported as `torn_tail`, not damage). Changes nothing.
    ///
    /// Fails only when a directory cannot be listed; damage, including files that could
    /// not be read, is in the report ([`VerifyReport::is_ok`](crate::verify::VerifyReport::is_ok)).
    pub fn verify(&self) -> Result<crate::verify::VerifyReport> {
        use crate::verify::{self, FileKind, VerifyReport};
        let snap = self.snapshot();
        let (fs, dir) = (self.shared.fs.as_ref(), &self.shared.dir);
        let mut report = VerifyReport {
            manifest_version: Some(snap.manifest.version),
            ..VerifyReport::default()
        };
        let mpath = crate::manifest::file_path(dir, snap.manifest.version);
        match fs.read(&mpath) {
            Ok(bytes) => {
                if let Err(e) = crate::manifest::decode(&mpath, &bytes) {
                    report.damaged.push(verify::Damage {
                        kind: FileKind::Manifest,
                        signal: None,
                        path: mpath,
                        error: e,
                    });
                }
            }
            // Replaced by a newer manifest since the snapshot was taken.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report.damaged.push(verify::Damage {
                kind: FileKind::Manifest,
                signal: None,
                path: mpath.clone(),
                error: Error::io("read", &mpath, e),
            }),
        }
        verify::check_segments(fs, dir, &snap.manifest, &mut report);
        verify::check_wal(
            fs,
            &dir.join(wal::WAL_DIR),
            snap.manifest.wal_replay_from,
            &mut report,
        )?;
        Ok(report)
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
        if self.closed.swap(true, Ordering::SeqCst) || self.read_only {
            return Ok(());
        }
        let _ = self.compact_tx.send(CompactMsg::Close);
        let compactor = self
            .compactor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = compactor
            && t.join().is_err()
        {
            self.shared.poison("thread scry-compact panicked".into());
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
        if self.read_only {
            return Err(Error::ReadOnly {
                dir: self.shared.dir.clone(),
            });
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if self.shared.is_poisoned() {
            return Err(self.shared.poison_error());
        }
        Ok(())
    }

    /// The error for a log thread that no longer answers.
    pub(crate) fn gone_error(&self) -> Error {
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

/// Starts a named background thread whose panic fail-stops the database: the panic is
/// caught and poisons it, which wakes every caller waiting on the thread's progress
/// (`flush`, `close`, a full memtable) with [`Error::Poisoned`] instead of leaving them
/// waiting for a thread that is gone. (Steps that can fail on their own, such as a flush,
/// catch their panics closer to the work; this is the net under everything else.)
fn spawn_fail_stop(
    shared: &Arc<Shared>,
    name: String,
    what: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>> {
    let s = shared.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
                s.poison(format!("{what} panicked: {}", worker::panic_message(&p)));
            }
        })
        .map_err(|e| Error::io("spawn thread", &shared.dir, e))
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("closing ScryDB at {}: {e}", self.shared.dir.display());
        }
    }
}

/// An append the log thread has but has not yet answered ([`Db::start_append`]).
#[must_use = "an append's outcome is only known by waiting for it"]
pub struct PendingAppend<'a> {
    db: &'a Db,
    rx: crossbeam_channel::Receiver<Result<()>>,
}

impl PendingAppend<'_> {
    /// Waits for the append's outcome: `Ok` once its rows are in the write-ahead log as
    /// durably as [`crate::Durability`] says and visible, or the error [`Db::append`]
    /// would have returned.
    pub fn wait(self) -> Result<()> {
        self.rx.recv().unwrap_or_else(|_| Err(self.db.gone_error()))
    }
}

impl std::fmt::Debug for PendingAppend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAppend").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow::array::{FixedSizeBinaryArray, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::schema;

    /// `n` spans with only the required columns.
    fn spans(n: usize) -> RecordBatch {
        let times: Vec<i64> = (0..n as i64)
            .map(|i| 1_764_028_800_000_000_000 + i)
            .collect();
        let ts = || Arc::new(TimestampNanosecondArray::from(times.clone()).with_timezone("UTC"));
        let ids = |width: usize| {
            let values = (0..n).map(|i| {
                let mut id = vec![0u8; width];
                id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                id
            });
            Arc::new(FixedSizeBinaryArray::try_from_iter(values).expect("ids"))
        };
        let schema = Schema::new(vec![
            Field::new("time", schema::timestamp_type(), false),
            Field::new("end_time", schema::timestamp_type(), false),
            Field::new("trace_id", schema::trace_id_type(), false),
            Field::new("span_id", schema::span_id_type(), false),
            Field::new("name", arrow::datatypes::DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                ts(),
                ts(),
                ids(16),
                ids(8),
                Arc::new(StringArray::from(vec!["op"; n])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn started_appends_are_answered_in_order_and_validated_up_front() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), Options::default()).expect("open");
        let pending: Vec<PendingAppend<'_>> = (1..=3)
            .map(|n| {
                db.start_append(Signal::Spans, &spans(n))
                    .expect("starts")
                    .expect("rows to wait for")
            })
            .collect();
        // The rows of all three are stored once each is answered.
        for p in pending {
            p.wait().expect("stored");
        }
        assert_eq!(db.snapshot().stats(Signal::Spans).memtable_rows, 6);
        // No rows: nothing to wait for.
        assert!(
            db.start_append(Signal::Spans, &spans(1).slice(0, 0))
                .expect("empty")
                .is_none()
        );
        // An invalid batch is refused when started, and nothing of it is stored.
        let bad = spans(2).project(&[0, 1, 2]).expect("without span_id");
        let err = db.start_append(Signal::Spans, &bad).expect_err("refused");
        assert!(matches!(err, Error::InvalidBatch { .. }), "{err}");
        assert_eq!(db.snapshot().stats(Signal::Spans).memtable_rows, 6);
        db.close().expect("close");
    }

    #[test]
    fn a_panic_in_the_flush_manager_poisons_instead_of_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
        db.append(Signal::Spans, &spans(10)).expect("append");
        db.shared
            .test_hooks
            .panic_in_flush_manager
            .store(true, Ordering::SeqCst);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let d = db.clone();
        let caller = std::thread::spawn(move || {
            let _ = tx.send(d.flush());
        });
        let flushed = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("flush returns instead of waiting forever for a dead thread");
        match flushed {
            Err(Error::Poisoned { reason }) => {
                assert!(reason.contains("injected panic"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let err = db.append(Signal::Spans, &spans(1)).expect_err("refused");
        assert!(matches!(err, Error::Poisoned { .. }), "{err}");
        caller.join().expect("the caller thread ends");
        let db = Arc::into_inner(db).expect("the caller thread is done with it");
        assert!(matches!(db.close(), Err(Error::Poisoned { .. })));
    }
}
