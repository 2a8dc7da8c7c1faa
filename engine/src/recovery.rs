//! Recovery at open: what [`Db::open`](crate::Db::open) does to a directory once it holds
//! the lock and before any thread starts. It loads the current manifest (refusing a
//! directory whose manifest was lost), checks that every segment it names is there with its
//! recorded size, removes files no manifest names, and replays the write-ahead log into a
//! memtable. Only a writer recovers; nothing here runs for a reader.

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

    let manifest = match manifest::load_current(fs.as_ref(), dir)? {
        Some(m) => m,
        None => {
            refuse_data_without_manifest(fs.as_ref(), dir, &wal_dir)?;
            let m = Manifest::empty();
            manifest::write(fs.as_ref(), dir, &m)?;
            m
        }
    };
    check_segments(fs.as_ref(), dir, &manifest)?;
    remove_orphans(fs.as_ref(), dir, &manifest)?;

    let mut memtable = Memtable::default();
    let stats = wal::reader::replay(
        fs.as_ref(),
        &wal_dir,
        manifest.wal_replay_from,
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
    let wal = WalWriter::create(fs, &wal_dir, next_seq)?;
    let report = RecoveryReport {
        read_only: false,
        wal_files: stats.files,
        wal_batches: stats.frames,
        torn_tail_bytes: stats.torn_tail_bytes,
        quarantined_bytes: stats.quarantined_bytes,
        quarantined: stats.quarantined,
        quarantine_files: stats.quarantine_files,
        orphans_removed: Vec::new(),
        left_alone: Vec::new(),
    };
    Ok(Recovered {
        manifest,
        memtable,
        wal,
        report,
    })
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

/// Removes segment files (their indexes, temporary files) that the manifest does not name:
/// leftovers of a flush that crashed before publishing, or of a removal that crashed before
/// deleting. A partition directory left empty is removed too.
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
