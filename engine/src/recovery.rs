//! Recovery at open: what [`Db::open`](crate::Db::open) does to a directory once it holds
//! the lock and before any thread starts. It loads the current manifest (refusing a
//! directory whose manifest was lost), checks that every segment it names is there with its
//! recorded size, removes files no manifest names, and replays the write-ahead log into a
//! memtable. Only a writer recovers; a read-only open ([`read_only`]) reads the same state
//! and changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::FileSystem;
use crate::manifest::{self, Manifest};
use crate::memtable::Memtable;
use crate::wal::writer::WalWriter;
use crate::wal::{self, WAL_DIR};
use crate::{Error, Options, Result, Signal};

/// What opening a database found and did to its directory; see [`crate::Db::recovery_report`].
///
/// Recovery never deletes bytes it cannot prove were never acknowledged or are held
/// elsewhere: damaged log data is moved into quarantine files, unknown files are left alone.
/// This report says where everything went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The database was opened read-only: nothing was changed, what a writer would cut or
    /// move was only skipped.
    pub read_only: bool,
    /// Log files replayed.
    pub wal_files: usize,
    /// Batches recovered from the log into the memtable.
    pub wal_batches: u64,
    /// Bytes of a torn tail (an interrupted, never acknowledged write) cut off the newest
    /// log file.
    pub torn_tail_bytes: u64,
    /// Bytes past a corruption of the log moved into quarantine files
    /// (`WalRecovery::TruncateAtCorruption`, `scry recover`).
    pub quarantined_bytes: u64,
    /// Quarantine files this open wrote.
    pub quarantined: Vec<PathBuf>,
    /// Every quarantine file in the log directory, from this or earlier recoveries. They
    /// are never read or deleted by ScryDB.
    pub quarantine_files: Vec<PathBuf>,
    /// Leftover files removed: temporary files and segments of a flush that crashed before
    /// publishing, segments the manifest dropped whose deletion was interrupted.
    pub orphans_removed: Vec<PathBuf>,
    /// Files and directories in the store's folders that ScryDB did not create; left alone.
    pub left_alone: Vec<PathBuf>,
}

impl RecoveryReport {
    /// Whether the open found nothing to repair and nothing to report.
    pub fn is_clean(&self) -> bool {
        self.torn_tail_bytes == 0
            && self.quarantined_bytes == 0
            && self.quarantine_files.is_empty()
            && self.orphans_removed.is_empty()
            && self.left_alone.is_empty()
    }
}

impl std::fmt::Display for RecoveryReport {
    /// One line per finding (nothing for a clean open), e.g.
    /// `moved 120 bytes of damaged log into wal/…0003.wal.quarantine-1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (cut, moved, removed) = if self.read_only {
            ("skipped (read-only)", "skipped (read-only)", "found")
        } else {
            ("cut", "moved into quarantine", "removed")
        };
        if self.wal_batches > 0 {
            writeln!(
                f,
                "recovered {} batch(es) from {} log file(s)",
                self.wal_batches, self.wal_files
            )?;
        }
        if self.torn_tail_bytes > 0 {
            writeln!(
                f,
                "torn tail of {} bytes (a write interrupted by a crash, never acknowledged) {cut}",
                self.torn_tail_bytes
            )?;
        }
        if self.quarantined_bytes > 0 {
            writeln!(f, "{} bytes of damaged log {moved}", self.quarantined_bytes)?;
        }
        for q in &self.quarantine_files {
            writeln!(f, "quarantine file (kept for inspection): {}", q.display())?;
        }
        for o in &self.orphans_removed {
            writeln!(f, "leftover file {removed}: {}", o.display())?;
        }
        for l in &self.left_alone {
            writeln!(f, "not a ScryDB file, left alone: {}", l.display())?;
        }
        Ok(())
    }
}

/// What recovery hands the new handle.
pub(crate) struct Recovered {
    /// The current manifest (a new empty one for a new directory).
    pub manifest: Manifest,
    /// The rows of the log that no segment holds yet.
    pub memtable: Memtable,
    /// A new log file, after every replayed one.
    pub wal: WalWriter,
    /// What recovery found and did.
    pub report: RecoveryReport,
}

/// Recovers the database in `dir` (whose lock the caller holds).
pub(crate) fn recover(fs: &Arc<dyn FileSystem>, dir: &Path, opts: &Options) -> Result<Recovered> {
    let wal_dir = dir.join(WAL_DIR);
    for sub in std::iter::once(WAL_DIR).chain(Signal::ALL.iter().map(|s| s.name())) {
        let p = dir.join(sub);
        fs.create_dir_all(&p)
            .map_err(|e| Error::io("create directory", &p, e))?;
    }

    let manifest = match manifest::load_current(fs.as_ref(), dir).map_err(manifest_advice)? {
        Some(m) => m,
        None => {
            refuse_data_without_manifest(fs.as_ref(), dir, &wal_dir)?;
            let m = Manifest::empty();
            manifest::write(fs.as_ref(), dir, &m)?;
            m
        }
    };
    check_segments(fs.as_ref(), dir, &manifest)?;
    let mut report = RecoveryReport::default();
    // A manifest another directory committed (a store in object storage taken over by
    // another host, or written from there since this directory last did) does not count
    // in this directory's log: every log file here holds rows no manifest has.
    let foreign = manifest.wal_owner.is_some() && manifest.wal_owner != fs.wal_owner();
    if foreign {
        log::info!(
            "{}: the current manifest was committed by {}; replaying this directory's whole log",
            dir.display(),
            manifest.wal_owner.as_deref().unwrap_or_default()
        );
    }
    let newest_id = remove_orphans(fs.as_ref(), dir, &manifest, foreign, &mut report)?;

    let mut memtable = Memtable::default();
    let stats = wal::reader::replay(
        fs.as_ref(),
        &wal_dir,
        if foreign { 0 } else { manifest.wal_replay_from },
        opts.wal_recovery,
        false,
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
    let mut manifest = manifest;
    if foreign {
        // Take the store over explicitly before anything else publishes: from now on the
        // manifest counts in this directory's log (from its oldest file still here), and
        // new segment ids start past every object found, committed or not (another
        // writer's unfinished work is left alone, never reused).
        let first_local = first_log_seq(fs.as_ref(), &wal_dir)?.unwrap_or(next_seq);
        let taken = Manifest {
            version: manifest.version + 1,
            next_segment_id: manifest.next_segment_id.max(newest_id.map_or(0, |i| i + 1)),
            wal_replay_from: first_local.min(next_seq),
            segments: manifest.segments.clone(),
            wal_owner: fs.wal_owner(),
        };
        manifest::write(fs.as_ref(), dir, &taken)?;
        let old = manifest::file_path(dir, manifest.version);
        if let Err(e) = fs.remove_file(&old) {
            log::warn!("could not remove old manifest {}: {e}", old.display());
        }
        manifest = taken;
    }
    let wal = WalWriter::create(fs, &wal_dir, next_seq)?;
    report.wal_files = stats.files;
    report.wal_batches = stats.frames;
    report.torn_tail_bytes = stats.torn_tail_bytes;
    report.quarantined_bytes = stats.quarantined_bytes;
    report.quarantined = stats.quarantined;
    report.quarantine_files = stats.quarantine_files;
    Ok(Recovered {
        manifest,
        memtable,
        wal,
        report,
    })
}

/// What a read-only open sees: the current manifest (its segments checked to exist), read
/// without changing a byte or a name in `dir` (no lock, no directory, no truncation, no
/// removal, no new log file). The log is left to the handle's follower (`follow.rs`). A
/// writer may be working in `dir` at the same time: when a file vanishes between listing
/// and reading (the writer published a new manifest and removed what it replaced), the
/// whole read starts over.
pub(crate) fn read_only(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
) -> Result<(Manifest, Memtable, RecoveryReport)> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut version = None;
        let result = read_only_once(fs.as_ref(), dir, &mut version);
        let Err(e) = &result else {
            return result;
        };
        // A writer that published a new manifest meanwhile may have removed log files or
        // segments the old one named: read the new state instead of reporting damage.
        let vanished =
            matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
        let moved_on = version.is_some() && current_version(fs.as_ref(), dir) != version;
        if attempt >= ATTEMPTS || !(vanished || moved_on) {
            return result;
        }
        log::debug!(
            "{} changed while it was read ({e}); reading again",
            dir.display()
        );
    }
}

/// The version of the current manifest, if one can be read.
fn current_version(fs: &dyn FileSystem, dir: &Path) -> Option<u64> {
    manifest::read_current(fs, dir)
        .ok()
        .and_then(|(m, _)| m)
        .map(|m| m.version)
}

fn read_only_once(
    fs: &dyn FileSystem,
    dir: &Path,
    version: &mut Option<u64>,
) -> Result<(Manifest, Memtable, RecoveryReport)> {
    let wal_dir = dir.join(WAL_DIR);
    let not_a_store = || Error::NotAStore {
        dir: dir.to_path_buf(),
    };
    match fs.read_dir(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_a_store()),
        Err(e) => return Err(Error::io("list", dir, e)),
    }
    let manifest = match manifest::read_current(fs, dir).map_err(manifest_advice)?.0 {
        Some(m) => m,
        None => {
            refuse_data_without_manifest(fs, dir, &wal_dir)?;
            return Err(not_a_store());
        }
    };
    *version = Some(manifest.version);
    check_segments(fs, dir, &manifest)?;
    // The log is read by the handle's follower (`follow.rs`), which keeps reading it as
    // the writer appends; here only the quarantine files are listed for the report.
    let mut quarantine_files: Vec<PathBuf> = match fs.read_dir(&wal_dir) {
        Ok(entries) => entries
            .into_iter()
            .filter(|e| !e.is_dir && wal::reader::is_quarantine_file(&e.path))
            .map(|e| e.path)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("list", &wal_dir, e)),
    };
    quarantine_files.sort();
    let report = RecoveryReport {
        read_only: true,
        quarantine_files,
        ..RecoveryReport::default()
    };
    Ok((manifest, Memtable::default(), report))
}

/// Adds what to do to a damaged manifest's error: there is no command that repairs it.
fn manifest_advice(e: Error) -> Error {
    match e {
        Error::Corrupted {
            path,
            offset,
            reason,
        } => Error::Corrupted {
            reason: format!(
                "{reason}. ScryDB does not rebuild a manifest (`scry recover` repairs only the \
                 write-ahead log): restore {} from a backup; no file was changed",
                path.display()
            ),
            path,
            offset,
        },
        other => other,
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
    for part in partition_dirs(fs, dir, &mut Vec::new())? {
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

/// The partition directories of every signal. Regular files directly in a signal
/// directory are not the engine's: they are left alone, with a warning, and added to
/// `left_alone`.
fn partition_dirs(
    fs: &dyn FileSystem,
    dir: &Path,
    left_alone: &mut Vec<PathBuf>,
) -> Result<Vec<PathBuf>> {
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
                log::warn!(
                    "leaving {} alone: not a file ScryDB writes",
                    part.path.display()
                );
                left_alone.push(part.path);
            }
        }
    }
    Ok(out)
}

/// A name the engine gives files in a partition directory:
/// `<id:020>.parquet`, `.tidx`, `.sidx`, `.lpat`, `.rollup`, and their `.tmp` forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegmentFileName {
    id: u64,
    temporary: bool,
}

fn parse_segment_file_name(path: &Path) -> Option<SegmentFileName> {
    let name = path.file_name()?.to_str()?;
    let (name, temporary) = match name.strip_suffix(".tmp") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let digits = name
        .strip_suffix(".parquet")
        .or_else(|| name.strip_suffix(".tidx"))
        .or_else(|| name.strip_suffix(".sidx"))
        .or_else(|| name.strip_suffix(".lpat"))
        .or_else(|| name.strip_suffix(".rollup"))?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(SegmentFileName {
        id: digits.parse().ok()?,
        temporary,
    })
}

/// Removes the leftovers the engine can prove are its own and unneeded, in every
/// partition directory, and reports the rest:
///
/// - a file whose name the engine does not generate (anything but `<id:020>.parquet`,
///   `.tidx`, `.sidx`, `.lpat`, `.rollup` and their `.tmp` forms), and any subdirectory, is left alone with a
///   warning;
/// - temporary files (`*.parquet.tmp`, `*.tidx.tmp`, `*.sidx.tmp`, `*.lpat.tmp`,
///   `*.rollup.tmp`) were
///   never published:
///   removed;
/// - a segment, index or rollup the manifest does not name with an id below its
///   `next_segment_id` was published once and dropped by a later manifest (retention)
///   whose deletion was interrupted: removed;
/// - one with an id at or above `next_segment_id` was written by a flush this manifest
///   does not know. If the log file the manifest replays from (`wal_replay_from`) is still
///   there, that flush crashed before publishing and its rows are still in the log:
///   removed. Otherwise the manifest is older than the segments (restored from a backup)
///   and those segments may hold the only copy of their rows: open refuses with
///   [`Error::Corrupted`] naming them, before anything is removed.
///
/// A partition directory left empty is removed.
/// The sequence number of the oldest log file in `wal_dir`, if there is one.
fn first_log_seq(fs: &dyn FileSystem, wal_dir: &Path) -> Result<Option<u64>> {
    Ok(fs
        .read_dir(wal_dir)
        .map_err(|e| Error::io("list", wal_dir, e))?
        .iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| wal::parse_file_name(&e.path))
        .min())
}

/// Removes the leftovers (see above) and returns the largest segment id of any segment
/// file found. With `foreign` (the manifest was committed from another directory, whose
/// writer may still be finishing a flush), only temporary files are removed.
fn remove_orphans(
    fs: &dyn FileSystem,
    dir: &Path,
    m: &Manifest,
    foreign: bool,
    report: &mut RecoveryReport,
) -> Result<Option<u64>> {
    let live: HashSet<PathBuf> = m
        .segments
        .iter()
        .flat_map(|s| crate::segment::segment_files(&dir.join(&s.path)))
        .collect();
    let wal_dir = dir.join(WAL_DIR);
    let flush_log = wal::file_path(&wal_dir, m.wal_replay_from);
    let log_still_there = fs.file_size(&flush_log).is_ok();
    let mut newest_id: Option<u64> = None;

    let mut remove: Vec<PathBuf> = Vec::new();
    let mut newer: Vec<PathBuf> = Vec::new();
    let mut parts: Vec<(PathBuf, usize)> = Vec::new();
    for part in partition_dirs(fs, dir, &mut report.left_alone)? {
        let mut kept = 0;
        for f in fs
            .read_dir(&part)
            .map_err(|e| Error::io("list", &part, e))?
        {
            if live.contains(&f.path) {
                kept += 1;
                continue;
            }
            let name = (!f.is_dir)
                .then(|| parse_segment_file_name(&f.path))
                .flatten();
            if let Some(n) = &name {
                newest_id = newest_id.max(Some(n.id));
            }
            match name {
                None => {
                    log::warn!(
                        "leaving {} alone: not a file ScryDB writes",
                        f.path.display()
                    );
                    report.left_alone.push(f.path);
                    kept += 1;
                }
                Some(n) if n.temporary => remove.push(f.path),
                Some(_) if foreign => kept += 1,
                Some(n) if n.id < m.next_segment_id || log_still_there => remove.push(f.path),
                Some(_) => {
                    newer.push(f.path);
                    kept += 1;
                }
            }
        }
        parts.push((part, kept));
    }
    if let Some(first) = newer.first() {
        let names: Vec<String> = newer.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::corrupted(
            first,
            None,
            format!(
                "{} segment file(s) are newer than manifest {} (ids at or above its \
                 next_segment_id {}) and the log of an unfinished flush ({}) is gone: the \
                 manifest is older than the segments, e.g. restored from a backup. Nothing \
                 was deleted. Restore the newest manifest, or move these files out of the \
                 store to open it without their rows: {}",
                newer.len(),
                m.version,
                m.next_segment_id,
                flush_log.display(),
                names.join(", ")
            ),
        ));
    }
    for path in remove {
        log::info!(
            "removing leftover {} (named by no manifest)",
            path.display()
        );
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove", &path, e))?;
        report.orphans_removed.push(path);
    }
    for (part, kept) in parts {
        if kept == 0 && is_partition_dir_name(&part) {
            fs.remove_dir(&part)
                .map_err(|e| Error::io("remove directory", &part, e))?;
        }
    }
    Ok(newest_id)
}

/// Whether `path` is named like a partition directory the engine creates
/// (`YYYYMMDDTHHMMSSZ` or `ns<start>`, see [`crate::partition::partition_dir_name`]); only
/// those are removed when empty.
fn is_partition_dir_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if let Some(ns) = name.strip_prefix("ns") {
        return ns.parse::<i64>().is_ok();
    }
    let b = name.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}
