//! The state a database's handle and its background threads share: what readers see (the
//! manifest and the memtables not yet in it), how far the flush is, and whether the database
//! is fail-stopped.
//!
//! It has a module of its own so that the threads (the log thread in `write.rs`, the flush
//! in `flush/`, retention) depend on it and not on the handle in `db.rs`, which starts them.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::follow::{Follower, Refreshed};
use crate::index::IndexCache;
use crate::io::FileSystem;
use crate::manifest::Manifest;
use crate::memtable::{FrozenMemtable, Memtable};
use crate::snapshot::Snapshot;
use crate::{Error, Options, Result};

/// What readers see: the current manifest and the memtables not yet in it.
pub(crate) struct State {
    pub manifest: Arc<Manifest>,
    pub active: Arc<Memtable>,
    pub frozen: VecDeque<Arc<FrozenMemtable>>,
}

/// How far the flush is: frozen memtables waiting, and the newest one in segments.
#[derive(Default)]
struct Progress {
    frozen_pending: usize,
    last_flushed: u64,
}

/// Counters of the write path, for [`crate::Db::write_stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub flushes: AtomicU64,
    pub flush_nanos: AtomicU64,
    pub last_flush_nanos: AtomicU64,
    pub stalls: AtomicU64,
    pub stall_nanos: AtomicU64,
    /// Parquet bytes of the segments flushes published.
    pub flushed_bytes: AtomicU64,
    /// Parquet bytes of the segments merges and thinnings published.
    pub rewritten_bytes: AtomicU64,
    /// Merges published.
    pub merges: AtomicU64,
}

impl Counters {
    /// Counts a segment of `bytes` that a merge (`merge`) or a thinning published.
    pub fn record_rewrite(&self, bytes: u64, merge: bool) {
        self.rewritten_bytes.fetch_add(bytes, Ordering::Relaxed);
        if merge {
            self.merges.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_flush(&self, took: Duration) {
        let n = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.flush_nanos.fetch_add(n, Ordering::Relaxed);
        self.last_flush_nanos.store(n, Ordering::Relaxed);
    }
}

/// Failures the engine's own tests inject where no file operation can.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHooks {
    /// The flush manager panics when the next memtable arrives, outside its guarded steps.
    pub panic_in_flush_manager: AtomicBool,
}

/// State shared by the handle and the background threads.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub opts: Options,
    pub fs: Arc<dyn FileSystem>,
    /// Open trace indexes and Parquet metadata, for lookups.
    pub indexes: Arc<IndexCache>,
    state: RwLock<State>,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    progress: Mutex<Progress>,
    progress_cv: Condvar,
    /// Counters of the write path.
    pub counters: Counters,
    /// The id the next segment gets (flush and compaction both take ids); every manifest
    /// written records at least this.
    next_segment_id: AtomicU64,
    /// For a read-only handle: what it read of the writer's files so far.
    follower: Option<Mutex<Follower>>,
    /// Partitions (start, end) whose thinning for the disk budget failed: the budget drops
    /// them whole rather than wait for them.
    thin_failed: Mutex<std::collections::BTreeSet<(i64, i64)>>,
    #[cfg(test)]
    pub test_hooks: TestHooks,
}

impl Shared {
    /// The state of a database just recovered: `manifest` published, `memtable` (the
    /// replayed log) active, nothing frozen, not poisoned.
    pub fn new(dir: PathBuf, opts: Options, manifest: Manifest, memtable: Memtable) -> Self {
        let next_segment_id = manifest.next_segment_id;
        Shared {
            dir,
            fs: opts.fs.clone(),
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
            follower: None,
            thin_failed: Mutex::default(),
            counters: Counters::default(),
            next_segment_id: AtomicU64::new(next_segment_id),
            #[cfg(test)]
            test_hooks: TestHooks::default(),
            opts,
        }
    }

    /// Takes a new segment id.
    pub fn alloc_segment_id(&self) -> u64 {
        self.next_segment_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Whether thinning partition `bounds` for the disk budget failed (since its last
    /// success).
    pub fn thin_failed(&self, bounds: (i64, i64)) -> bool {
        self.thin_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&bounds)
    }

    /// Records that thinning partition `bounds` failed.
    pub fn set_thin_failed(&self, bounds: (i64, i64)) {
        self.thin_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bounds);
    }

    /// Records that partition `bounds` was thinned.
    pub fn clear_thin_failed(&self, bounds: (i64, i64)) {
        self.thin_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&bounds);
    }

    /// What a new manifest must record as `next_segment_id`: above every id taken.
    pub fn next_segment_id(&self) -> u64 {
        self.next_segment_id.load(Ordering::SeqCst)
    }

    /// Makes this the state of a read-only handle that follows the writer with `follower`.
    pub fn following(mut self, follower: Follower) -> Self {
        self.follower = Some(Mutex::new(follower));
        self
    }

    /// Brings a read-only view up to the writer's current state (see [`crate::follow`]).
    /// A writer's view is always current: it fails with [`Error::InvalidOptions`] there.
    pub fn refresh(&self) -> Result<Refreshed> {
        let Some(f) = &self.follower else {
            return Err(Error::InvalidOptions {
                option: "refresh",
                reason: "only a read-only handle refreshes; a writer's view is always current"
                    .into(),
            });
        };
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        self.apply_refresh(&mut f)
    }

    /// Log files, batches and unread tail bytes of a following handle's view.
    pub fn follower_log_stats(&self) -> (usize, u64, u64) {
        self.follower.as_ref().map_or((0, 0, 0), |f| {
            f.lock().unwrap_or_else(|e| e.into_inner()).log_stats()
        })
    }

    fn apply_refresh(&self, f: &mut Follower) -> Result<Refreshed> {
        let (manifest, memtable, out) =
            f.refresh(self.fs.as_ref(), &self.dir, self.opts.wal_recovery)?;
        if manifest.is_some() || memtable.is_some() {
            let mut state = self.write_state();
            if let Some(m) = manifest {
                let live: std::collections::HashSet<u64> =
                    m.segments.iter().map(|s| s.id).collect();
                self.indexes.retain(|id| live.contains(&id));
                state.manifest = Arc::new(m);
            }
            if let Some(m) = memtable {
                state.active = Arc::new(m);
            }
        }
        Ok(out)
    }

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
        self.dir.join(crate::wal::WAL_DIR)
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
        if p.frozen_pending >= max && !self.is_poisoned() {
            let started = Instant::now();
            while p.frozen_pending >= max && !self.is_poisoned() {
                p = self.progress_cv.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.counters.stalls.fetch_add(1, Ordering::Relaxed);
            self.counters
                .stall_nanos
                .fetch_add(waited, Ordering::Relaxed);
        }
        if self.is_poisoned() {
            return Err(self.poison_error());
        }
        Ok(())
    }

    /// Frozen memtables waiting for the flush.
    pub fn frozen_pending(&self) -> usize {
        self.progress().frozen_pending
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
    pub fn wait_flushed(&self, id: u64) -> Result<()> {
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
        if let Some(f) = &self.follower {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            if f.on_snapshot
                && let Err(e) = self.apply_refresh(&mut f)
            {
                f.warn(&self.dir, &e);
            }
        }
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
