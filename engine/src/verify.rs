//! Checking every file of a store against its checksums, reporting every damaged file
//! rather than stopping at the first: [`Db::verify`](crate::Db::verify) for an open store,
//! [`verify_dir`] for a closed one. Neither changes the directory.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::index::{SegmentIndex, index_path};
use crate::io::FileSystem;
use crate::manifest::{self, Manifest};
use crate::wal::format::{self as walfmt, FILE_HEADER_LEN, FRAME_HEADER_LEN};
use crate::wal::{self, WAL_DIR};
use crate::{Error, Result, Signal, segment};

/// The kinds of file a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// `MANIFEST-<n>`.
    Manifest,
    /// A Parquet segment named by the manifest.
    Segment,
    /// A segment's trace index (`.tidx`).
    TraceIndex,
    /// A span segment's rollups (`.rollup`, [`crate::rollup`]).
    SpanRollup,
    /// A span or log segment's term index (`.sidx`, [`crate::search::index`]).
    TermIndex,
    /// A log segment's patterns (`.lpat`, [`crate::search::log_patterns`]).
    LogPatterns,
    /// A write-ahead log file.
    Wal,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Manifest => "manifest",
            FileKind::Segment => "segment",
            FileKind::TraceIndex => "trace index",
            FileKind::SpanRollup => "span rollup",
            FileKind::TermIndex => "term index",
            FileKind::LogPatterns => "log patterns",
            FileKind::Wal => "log file",
        })
    }
}

/// One damaged (or unreadable) file.
#[derive(Debug)]
pub struct Damage {
    /// What the file is.
    pub kind: FileKind,
    /// The signal its rows belong to, for segments and indexes.
    pub signal: Option<Signal>,
    /// The file.
    pub path: PathBuf,
    /// What was found: [`Error::Corrupted`] (names the file, and the offset when known),
    /// [`Error::UnsupportedVersion`], or [`Error::Io`] when it could not be read.
    pub error: Error,
}

/// What [`Db::verify`](crate::Db::verify) or [`verify_dir`] checked and found. Every file
/// was checked even when an earlier one was damaged: `damaged` lists them all.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// The version of the manifest the segments were checked against (`None` when the
    /// manifest is missing or damaged: then no segment or index could be checked).
    pub manifest_version: Option<u64>,
    /// Segments checked (size and whole-file CRC-32 against the manifest).
    pub segments: usize,
    /// Trace indexes checked (magic, version, CRC, signal and row count).
    pub indexes: usize,
    /// Log files checked (header and every frame's header and payload CRC).
    pub wal_files: usize,
    /// Intact frames in those log files.
    pub wal_frames: u64,
    /// An incomplete frame at the end of the newest log file: a write in progress, or one
    /// interrupted by a crash, never acknowledged (open drops it). Not damage.
    pub torn_tail: Option<PathBuf>,
    /// Quarantine files beside the log (`<seq>.wal.quarantine-<n>`): bytes an earlier
    /// recovery moved out of a damaged log file instead of deleting them. Not damage of
    /// the store, but acknowledged data that is no longer in it.
    pub quarantined: Vec<PathBuf>,
    /// Every damaged file, in the order found: manifest, segments and indexes by signal,
    /// then log files.
    pub damaged: Vec<Damage>,
}

impl VerifyReport {
    /// Whether no file is damaged.
    pub fn is_ok(&self) -> bool {
        self.damaged.is_empty()
    }

    fn damage(&mut self, kind: FileKind, signal: Option<Signal>, path: &Path, error: Error) {
        self.damaged.push(Damage {
            kind,
            signal,
            path: path.to_path_buf(),
            error,
        });
    }
}

/// Checks every file of the closed store in `dir` through `fs`: the current manifest, every
/// segment it names and its trace index, and every log file. Nothing is changed, locked or
/// recovered (a damaged log or manifest that would make [`Db::open`](crate::Db::open) fail
/// is reported like any other damage). Run it on a store no writer has open: a concurrent
/// flush can replace the manifest and remove files while it reads (use
/// [`Db::verify`](crate::Db::verify) on an open store).
///
/// Fails only when `dir` cannot be listed; damage is in the report.
pub fn verify_dir(fs: &dyn FileSystem, dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let manifest = current_manifest(fs, dir, &mut report)?;
    if let Some(m) = &manifest {
        check_segments(fs, dir, m, &mut report);
    }
    let wal_dir = dir.join(WAL_DIR);
    check_wal(
        fs,
        &wal_dir,
        manifest.as_ref().map_or(0, |m| m.wal_replay_from),
        &mut report,
    )?;
    report.quarantined = fs
        .read_dir(&wal_dir)
        .map_err(|e| Error::io("list", &wal_dir, e))?
        .into_iter()
        .filter(|e| {
            !e.is_dir
                && e.path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(".wal.quarantine-"))
        })
        .map(|e| e.path)
        .collect();
    Ok(report)
}

/// The current (highest-numbered) manifest, decoded, or `None` with the damage reported.
fn current_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    report: &mut VerifyReport,
) -> Result<Option<Manifest>> {
    let entries = fs.read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let current = entries
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| manifest::parse_name(&e.path).map(|v| (v, e.path)))
        .max();
    let Some((_, path)) = current else {
        report.damage(
            FileKind::Manifest,
            None,
            dir,
            Error::corrupted(
                dir,
                None,
                "no MANIFEST file: not a ScryDB store, or its manifest was lost",
            ),
        );
        return Ok(None);
    };
    let decoded = fs
        .read(&path)
        .map_err(|e| Error::io("read", &path, e))
        .and_then(|bytes| manifest::decode(&path, &bytes));
    match decoded {
        Ok(m) => {
            report.manifest_version = Some(m.version);
            Ok(Some(m))
        }
        Err(e) => {
            report.damage(FileKind::Manifest, None, &path, e);
            Ok(None)
        }
    }
}

/// Every segment of `m` (size and CRC), its trace index, (spans and logs) its term index,
/// (logs) its log patterns and (spans) its rollup.
pub(crate) fn check_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    m: &Manifest,
    report: &mut VerifyReport,
) {
    for signal in Signal::ALL {
        for seg in m.segments.iter().filter(|s| s.signal == signal) {
            let path = dir.join(&seg.path);
            report.segments += 1;
            if let Err(e) = segment::reader::verify_segment(fs, dir, seg) {
                report.damage(FileKind::Segment, Some(signal), &path, e);
            }
            let idx = index_path(&path);
            report.indexes += 1;
            match fs.file_size(&idx) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.damage(
                    FileKind::TraceIndex,
                    Some(signal),
                    &idx,
                    Error::corrupted(
                        &idx,
                        None,
                        "trace index is missing (lookups scan the segment; `scry reindex` rebuilds it)",
                    ),
                ),
                _ => {
                    if let Err(e) = SegmentIndex::open(fs, &idx, signal, seg.rows) {
                        report.damage(FileKind::TraceIndex, Some(signal), &idx, e);
                    }
                }
            }
            // A missing term index is not damage (stores from before term indexes: searches
            // scan those segments); a damaged one is, down to its decompressed body.
            if crate::search::index::indexed(signal) {
                let terms = crate::search::index::term_index_path(&path);
                match fs.file_size(&terms) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    _ => {
                        if let Err(e) =
                            crate::search::index::TermIndex::open(fs, &terms, signal, seg.rows)
                                .and_then(|t| t.check())
                        {
                            report.damage(FileKind::TermIndex, Some(signal), &terms, e);
                        }
                    }
                }
            }
            // A missing pattern file is not damage (stores from before them, or written
            // without: queries mine the rows); a damaged one is.
            if signal == Signal::Logs
                && let Err(e) = crate::search::log_patterns::read(fs, dir, seg)
            {
                let path = crate::search::log_patterns::pattern_path(&path);
                report.damage(FileKind::LogPatterns, Some(signal), &path, e);
            }
            // A missing rollup is not damage (stores from before rollups; it is computed
            // from the rows); a damaged one is.
            if signal == Signal::Spans
                && let Err(e) = crate::rollup::read(fs, dir, seg)
            {
                let path = crate::rollup::rollup_path(&path);
                report.damage(FileKind::SpanRollup, Some(signal), &path, e);
            }
        }
    }
}

/// Every log file in `wal_dir` with a sequence number of at least `from_seq` (older ones
/// are already in segments): its header, and every frame's header and payload CRC.
pub(crate) fn check_wal(
    fs: &dyn FileSystem,
    wal_dir: &Path,
    from_seq: u64,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut files: Vec<(u64, PathBuf)> = fs
        .read_dir(wal_dir)
        .map_err(|e| Error::io("list", wal_dir, e))?
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| wal::parse_file_name(&e.path).map(|s| (s, e.path)))
        .filter(|(s, _)| *s >= from_seq)
        .collect();
    files.sort();
    let newest = files.last().map(|(s, _)| *s);
    for (seq, path) in files {
        let bytes = match fs.read(&path) {
            Ok(b) => b,
            // Removed by a flush since the listing: its frames are in segments now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                report.damage(FileKind::Wal, None, &path, Error::io("read", &path, e));
                continue;
            }
        };
        report.wal_files += 1;
        match check_wal_file(&path, seq, &bytes) {
            Ok((frames, torn)) => {
                report.wal_frames += frames;
                match torn {
                    None => {}
                    Some(_) if Some(seq) == newest => report.torn_tail = Some(path),
                    Some((offset, what)) => report.damage(
                        FileKind::Wal,
                        None,
                        &path,
                        Error::corrupted(
                            &path,
                            Some(offset),
                            format!("{what}, but a newer log file follows"),
                        ),
                    ),
                }
            }
            Err(e) => report.damage(FileKind::Wal, None, &path, e),
        }
    }
    Ok(())
}

/// The intact frames of one log file, and where and why an incomplete tail starts (damage
/// that a crash during a write can leave at the end of a file); other damage is an error.
fn check_wal_file(
    path: &Path,
    seq: u64,
    bytes: &[u8],
) -> Result<(u64, Option<(u64, &'static str)>)> {
    let corrupt =
        |offset: usize, reason: String| Err(Error::corrupted(path, Some(offset as u64), reason));
    if bytes.len() < FILE_HEADER_LEN {
        return Ok((0, Some((0, "file header is incomplete"))));
    }
    let header = &bytes[..FILE_HEADER_LEN];
    if header.iter().all(|b| *b == 0) {
        return Ok((0, Some((0, "file header is zeroed"))));
    }
    if &header[0..8] != walfmt::MAGIC {
        return corrupt(0, "not a ScryDB log file (bad magic)".into());
    }
    let version = u32_at(header, 8);
    if version > walfmt::VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: walfmt::VERSION,
        });
    }
    if version == 0 || u32_at(header, 24) != crc32fast::hash(&header[0..24]) {
        return corrupt(0, "file header checksum mismatch".into());
    }
    if u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")) != seq {
        return corrupt(
            16,
            "file header's sequence number differs from its name".into(),
        );
    }
    let mut frames = 0;
    let mut off = FILE_HEADER_LEN;
    while off < bytes.len() {
        let rest = &bytes[off..];
        if rest.len() < FRAME_HEADER_LEN {
            return Ok((frames, Some((off as u64, "frame header is incomplete"))));
        }
        let h = &rest[..FRAME_HEADER_LEN];
        if u32_at(h, 12) != crc32fast::hash(&h[0..12]) {
            if rest.iter().all(|b| *b == 0) {
                return Ok((frames, Some((off as u64, "zero-filled tail"))));
            }
            return corrupt(off, format!("frame {frames}: header checksum mismatch"));
        }
        let len = u32_at(h, 0);
        if Signal::from_index(h[4]).is_none() || len > walfmt::MAX_PAYLOAD {
            return corrupt(
                off,
                format!("frame {frames} declares signal {} and length {len}", h[4]),
            );
        }
        let end = off + FRAME_HEADER_LEN + len as usize;
        if end > bytes.len() {
            return Ok((frames, Some((off as u64, "last frame is incomplete"))));
        }
        if u32_at(h, 8) != crc32fast::hash(&bytes[off + FRAME_HEADER_LEN..end]) {
            if end == bytes.len() {
                return Ok((
                    frames,
                    Some((off as u64, "last frame's payload checksum mismatch")),
                ));
            }
            return corrupt(off, format!("frame {frames}: payload checksum mismatch"));
        }
        frames += 1;
        off = end;
    }
    Ok((frames, None))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
