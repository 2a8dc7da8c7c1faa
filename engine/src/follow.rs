//! A read-only handle following a writer in another process: every refresh reads the newest
//! manifest and the log frames written since the last refresh, without changing a byte or a
//! name in the directory.
//!
//! The view after a refresh is what a writer's recovery would see at that moment: the
//! segments of the current manifest plus every frame of every log file numbered from the
//! manifest's `wal_replay_from` on. Log files are read incrementally: each file's frames are
//! parsed once and kept (as the batches the writer's memtable holds), and the next refresh
//! reads only the bytes appended since. When a newer manifest covers a log file (its rows are
//! in segments now), that file's batches are dropped.
//!
//! Races with the writer are resolved by reading again, never by guessing: the writer removes
//! a log file only after publishing the manifest that covers it, so a file that vanished
//! while it was read, or a manifest that changed while the log was read, means "read the new
//! state". An incomplete or damaged frame at the end of the newest log file is a write in
//! progress: reading stops before it and resumes there next time. Damage anywhere else is
//! reported like recovery would report it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use crate::io::FileSystem;
use crate::manifest::{self, Manifest};
use crate::memtable::Memtable;
use crate::options::WalRecovery;
use crate::wal::{self, WAL_DIR};
use crate::{Error, Result, Signal};

/// What one [`crate::Db::refresh`] changed in a read-only view.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct Refreshed {
    /// The manifest version the view reads now.
    pub manifest_version: u64,
    /// Whether a newer manifest was picked up (segments were added or removed).
    pub new_manifest: bool,
    /// Batches read from the log since the previous refresh, in log order: rows the writer
    /// acknowledged since then (what `scry tail` prints).
    pub new_batches: Vec<(Signal, RecordBatch)>,
    /// Whether log files were covered by a new manifest before this handle had read all of
    /// their frames (the reader fell more than a flush behind): their rows are in the view
    /// through segments, but are missing from `new_batches`.
    pub skipped_log: bool,
}

/// One log file as far as it was read.
#[derive(Default)]
struct FileTail {
    /// Where the next read starts.
    end: u64,
    batches: Vec<(Signal, RecordBatch)>,
    /// Why the last read stopped early, if it did.
    stopped: Option<String>,
}

/// The follower's state; lives in the shared state of a read-only handle.
pub(crate) struct Follower {
    manifest_version: u64,
    replay_from: u64,
    files: BTreeMap<u64, FileTail>,
    /// Refresh on every snapshot (else only on an explicit refresh).
    pub on_snapshot: bool,
    last_warning: Option<Instant>,
    /// Bytes past the last frame read in the newest log file: a write in progress, a torn
    /// tail, or (under `TruncateAtCorruption`) the damaged rest of the log.
    unread_tail: u64,
}

/// At most how often a failed automatic refresh is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Reads of a directory that keeps changing under them before giving up.
const ATTEMPTS: usize = 8;

impl Follower {
    /// A follower of a view opened at `manifest` with nothing of the log read yet: the
    /// first refresh reads the whole live log.
    pub fn new(manifest: &Manifest, on_snapshot: bool) -> Self {
        Follower {
            manifest_version: manifest.version,
            replay_from: manifest.wal_replay_from,
            files: BTreeMap::new(),
            on_snapshot,
            last_warning: None,
            unread_tail: 0,
        }
    }

    /// Logs a failed automatic refresh, at most every few seconds.
    pub fn warn(&mut self, dir: &Path, e: &Error) {
        if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            log::warn!(
                "{}: could not pick up the writer's latest changes ({e}); reading the view \
                 of the previous refresh",
                dir.display()
            );
            self.last_warning = Some(Instant::now());
        }
    }

    /// Reads the newest manifest and the log written since the last refresh. Returns the
    /// new manifest if it changed, the memtable of the new view if anything changed, and
    /// what changed.
    pub fn refresh(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        mode: WalRecovery,
    ) -> Result<(Option<Manifest>, Option<Memtable>, Refreshed)> {
        let wal_dir = dir.join(WAL_DIR);
        let mut out = Refreshed::default();
        let mut new_manifest = None;
        let mut changed = false;
        for attempt in 1..=ATTEMPTS {
            let current = current_manifest_version(fs, dir)?;
            if current != Some(self.manifest_version) {
                let m = match manifest::read_current(fs, dir)?.0 {
                    Some(m) => m,
                    None => {
                        return Err(Error::corrupted(
                            dir,
                            None,
                            "the manifest this view read is gone and no newer one exists",
                        ));
                    }
                };
                if m.version < self.manifest_version {
                    return Err(Error::corrupted(
                        manifest::file_path(dir, m.version),
                        None,
                        format!(
                            "the current manifest is version {}, older than version {} that \
                             this view read before",
                            m.version, self.manifest_version
                        ),
                    ));
                }
                self.manifest_version = m.version;
                self.replay_from = m.wal_replay_from;
                let covered: Vec<u64> = self
                    .files
                    .range(..m.wal_replay_from)
                    .map(|(s, _)| *s)
                    .collect();
                for seq in covered {
                    if let Some(tail) = self.files.remove(&seq)
                        && tail.stopped.is_some()
                    {
                        out.skipped_log = true;
                    }
                }
                new_manifest = Some(m);
                out.new_manifest = true;
                changed = true;
            }
            match self.read_log(fs, &wal_dir, mode, &mut out) {
                Ok(read_any) => changed |= read_any,
                Err(e) if is_vanished(&e) && attempt < ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
            // Log files are removed only after a manifest covering them is published: if
            // none was, every file read above was complete as far as it was read.
            if current_manifest_version(fs, dir)? == Some(self.manifest_version) {
                out.manifest_version = self.manifest_version;
                let memtable = changed.then(|| self.memtable());
                return Ok((new_manifest, memtable, out));
            }
        }
        Err(Error::io(
            "follow",
            dir,
            std::io::Error::other(format!(
                "the store changed {ATTEMPTS} times while it was read; try again"
            )),
        ))
    }

    /// Reads new frames of the live log files; returns whether any were read.
    fn read_log(
        &mut self,
        fs: &dyn FileSystem,
        wal_dir: &Path,
        mode: WalRecovery,
        out: &mut Refreshed,
    ) -> Result<bool> {
        let mut seqs: Vec<(u64, PathBuf)> = match fs.read_dir(wal_dir) {
            Ok(entries) => entries
                .into_iter()
                .filter(|e| !e.is_dir)
                .filter_map(|e| wal::parse_file_name(&e.path).map(|s| (s, e.path)))
                .filter(|(s, _)| *s >= self.replay_from)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("list", wal_dir, e)),
        };
        seqs.sort();
        let newest = seqs.last().map(|(s, _)| *s);
        let mut read_any = false;
        self.unread_tail = 0;
        for (seq, path) in &seqs {
            let tail = self.files.entry(*seq).or_default();
            let size = fs.file_size(path).map_err(|e| Error::io("stat", path, e))?;
            if size < tail.end {
                return Err(Error::corrupted(
                    path,
                    Some(size),
                    format!(
                        "the log file shrank to {size} bytes below the {} already read",
                        tail.end
                    ),
                ));
            }
            if size > tail.end {
                let file = fs.open_read(path).map_err(|e| Error::io("open", path, e))?;
                let bytes = file
                    .read_at(tail.end..size)
                    .map_err(|e| Error::io("read", path, e))?;
                let mut fresh = Vec::new();
                let read = wal::reader::read_tail(path, *seq, tail.end, &bytes, &mut |s, b| {
                    fresh.push((s, b));
                    Ok(())
                })?;
                if !fresh.is_empty() {
                    read_any = true;
                    out.new_batches.extend(fresh.iter().cloned());
                    tail.batches.extend(fresh);
                }
                tail.end = read.end;
                tail.stopped = read.stopped;
            }
            let Some(reason) = &tail.stopped else {
                continue;
            };
            if Some(*seq) == newest {
                // A write in progress (or a torn tail the writer's recovery will cut).
                self.unread_tail = size - tail.end;
                continue;
            }
            // A newer file exists, so this one is finished: what stopped the read is
            // damage to acknowledged writes, not a write in progress.
            if mode == WalRecovery::TolerateTornTail {
                return Err(Error::corrupted(
                    path,
                    Some(tail.end),
                    format!(
                        "{reason}; a newer log file follows, so this is damage to acknowledged \
                         writes, not a torn tail. Nothing was changed. Run `scry recover` (or \
                         open with WalRecovery::TruncateAtCorruption) to keep what precedes \
                         this offset"
                    ),
                ));
            }
            // TruncateAtCorruption: the view ends here, as the writer's recovery would
            // end the log here (moving the rest into quarantine files).
            self.unread_tail = size - tail.end;
            break;
        }
        // Files the directory no longer lists but no new manifest covers cannot exist (the
        // writer removes only covered files); forget them if they do.
        let listed: std::collections::HashSet<u64> = seqs.iter().map(|(s, _)| *s).collect();
        self.files.retain(|s, _| listed.contains(s));
        Ok(read_any)
    }

    /// Log files in the view, batches read from them, and bytes left unread at the end.
    pub fn log_stats(&self) -> (usize, u64, u64) {
        let batches = self.files.values().map(|t| t.batches.len() as u64).sum();
        (self.files.len(), batches, self.unread_tail)
    }

    fn memtable(&self) -> Memtable {
        let mut m = Memtable::default();
        for tail in self.files.values() {
            for (signal, batch) in &tail.batches {
                m.push(*signal, batch.clone());
            }
        }
        m
    }
}

/// The version of the newest manifest file, by name only (cheap: one directory listing).
fn current_manifest_version(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>> {
    let entries = fs.read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    Ok(entries
        .iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| manifest::parse_name(&e.path))
        .max())
}

fn is_vanished(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}
