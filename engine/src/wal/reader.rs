//! Reading the log back at open: replay, torn-tail truncation, corruption detection and
//! quarantine.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;

use super::format::{self, FILE_HEADER_LEN, FRAME_HEADER_LEN, read_u32, read_u64};
use crate::io::FileSystem;
use crate::options::WalRecovery;
use crate::{Error, Result, Signal, schema};

/// What a replay found (and, unless it was read-only, did).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Log files read.
    pub files: usize,
    /// Frames (batches) handed to the callback.
    pub frames: u64,
    /// Highest sequence number of a live log file found (kept, cut, removed or
    /// quarantined), if any: the next log file must be numbered above it.
    pub last_seq: Option<u64>,
    /// Bytes of torn tails: writes interrupted by a crash, never acknowledged. They are cut
    /// off the newest log file (a read-only replay only skips them).
    pub torn_tail_bytes: u64,
    /// Bytes past a corruption that `WalRecovery::TruncateAtCorruption` moved out of the
    /// log into quarantine files (a read-only replay only skips them).
    pub quarantined_bytes: u64,
    /// Quarantine files this replay wrote (see [`quarantine_path`]).
    pub quarantined: Vec<PathBuf>,
    /// Every quarantine file in the log directory after replay, older ones included.
    pub quarantine_files: Vec<PathBuf>,
}

#[derive(Debug)]
enum Damage {
    /// Could be an interrupted write, if it is at the end of the newest file.
    TornCandidate(&'static str),
    /// Definitely not an interrupted write.
    Corrupt(String),
}

/// A parsed file: frames handed over up to `valid_len`, and the damage that stopped
/// parsing, if any.
struct Parsed {
    valid_len: u64,
    damage: Option<Damage>,
}

/// What replay does to a live log file once every file was read.
enum Action {
    /// Cut a torn tail: the file keeps its first `len` bytes (removed when `None`).
    DropTorn { path: PathBuf, len: Option<u64> },
    /// Move the bytes from `from` on into a quarantine file, then keep the first `from`
    /// bytes (remove the file when `from` is below a header).
    Quarantine { path: PathBuf, from: u64 },
}

/// Suffix of the files that hold log bytes moved aside by recovery:
/// `<seq:020>.wal.quarantine-<n>`.
pub const QUARANTINE_SUFFIX: &str = ".quarantine-";

/// Whether `path` is a quarantine file ([`quarantine_path`]).
pub fn is_quarantine_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once(QUARANTINE_SUFFIX))
        .is_some_and(|(base, n)| {
            super::parse_file_name(Path::new(base)).is_some()
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The first free quarantine name for log file `path`: `<path>.quarantine-<n>`, n = 1, 2, ...
/// (a log file can be quarantined more than once: its sequence number is never reused, but
/// an earlier recovery may have kept its head and a later one moved more of it).
pub fn quarantine_path(fs: &dyn FileSystem, path: &Path) -> PathBuf {
    let mut n = 1u32;
    loop {
        let mut name = path.as_os_str().to_os_string();
        name.push(format!("{QUARANTINE_SUFFIX}{n}"));
        let candidate = PathBuf::from(name);
        if fs.file_size(&candidate).is_err() {
            return candidate;
        }
        n += 1;
    }
}

/// Replays log files with sequence number `>= from_seq` in `wal_dir`, oldest first,
/// handing every intact batch to `sink`. Files below `from_seq` are already in segments and
/// are removed (unless `read_only`).
///
/// A torn tail (an interrupted write at the end of the newest file, never acknowledged) is
/// cut off. Any other damage is corruption of acknowledged data, handled as `mode` says
/// (see [`WalRecovery`]): refused with [`Error::Corrupted`] naming the file, the offset and
/// the `scry recover` command, or (under `TruncateAtCorruption`) the bytes from the damage
/// on, and every later log file, are **moved** into quarantine files beside the log, never
/// deleted. Files are changed only after every file was read without an error, so a failed
/// replay leaves the log as it found it. With `read_only` nothing is changed at all: the
/// same decisions are made, and what would be cut or moved is only skipped.
pub fn replay(
    fs: &dyn FileSystem,
    wal_dir: &Path,
    from_seq: u64,
    mode: WalRecovery,
    read_only: bool,
    mut sink: impl FnMut(Signal, RecordBatch) -> Result<()>,
) -> Result<ReplayStats> {
    let entries = fs
        .read_dir(wal_dir)
        .map_err(|e| Error::io("list", wal_dir, e))?;
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    let mut stats = ReplayStats::default();
    for entry in entries {
        match super::parse_file_name(&entry.path) {
            Some(seq) if !entry.is_dir => files.push((seq, entry.path)),
            _ if !entry.is_dir && is_quarantine_file(&entry.path) => {
                stats.quarantine_files.push(entry.path);
            }
            _ => log::warn!(
                "ignoring unexpected entry {} in the write-ahead log directory",
                entry.path.display()
            ),
        }
    }
    files.sort();

    let (old, live): (Vec<_>, Vec<_>) = files.into_iter().partition(|(s, _)| *s < from_seq);
    if !read_only {
        for (_, path) in old {
            log::debug!("removing flushed log file {}", path.display());
            fs.remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
        }
    }

    let mut actions: Vec<Action> = Vec::new();
    for (i, (seq, path)) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        stats.files += 1;
        let parsed = parse_file(path, *seq, &bytes, &mut |signal, batch| {
            stats.frames += 1;
            sink(signal, batch)
        })?;
        let Some(damage) = parsed.damage else {
            stats.last_seq = Some(*seq);
            continue;
        };
        let dropped = bytes.len() as u64 - parsed.valid_len;
        if let (true, Damage::TornCandidate(why)) = (is_last, &damage) {
            log::warn!(
                "write-ahead log {}: {} a torn tail of {dropped} bytes at byte {} ({why}): \
                 a write interrupted by a crash, never acknowledged",
                path.display(),
                if read_only { "skipping" } else { "dropping" },
                parsed.valid_len,
            );
            stats.torn_tail_bytes += dropped;
            if parsed.valid_len >= FILE_HEADER_LEN as u64 {
                stats.last_seq = Some(*seq);
                actions.push(Action::DropTorn {
                    path: path.clone(),
                    len: Some(parsed.valid_len),
                });
            } else {
                actions.push(Action::DropTorn {
                    path: path.clone(),
                    len: None,
                });
            }
            break;
        }
        let reason = match &damage {
            Damage::TornCandidate(r) => format!("{r}, but a newer log file follows"),
            Damage::Corrupt(r) => r.clone(),
        };
        if mode == WalRecovery::TolerateTornTail {
            let db_dir = wal_dir.parent().unwrap_or(wal_dir);
            return Err(Error::corrupted(
                path,
                Some(parsed.valid_len),
                format!(
                    "{reason}; this is damage to acknowledged writes, not a torn tail. \
                     The live log was left as it was. Run `scry recover --db {}` (or open with \
                     WalRecovery::TruncateAtCorruption) to keep what precedes this offset \
                     and move the rest of the log into quarantine files",
                    db_dir.display()
                ),
            ));
        }
        let later = &live[i + 1..];
        log::warn!(
            "write-ahead log {}: damage at byte {} ({reason}); {} {dropped} bytes and {} later \
             log file(s) {} quarantine files beside the log, as WalRecovery::TruncateAtCorruption asks",
            path.display(),
            parsed.valid_len,
            if read_only { "skipping" } else { "moving" },
            later.len(),
            if read_only {
                "that a writer would move into"
            } else {
                "into"
            },
        );
        stats.quarantined_bytes += dropped;
        if parsed.valid_len >= FILE_HEADER_LEN as u64 {
            stats.last_seq = Some(*seq);
        }
        actions.push(Action::Quarantine {
            path: path.clone(),
            from: parsed.valid_len,
        });
        for (_, later) in later {
            stats.quarantined_bytes += fs.file_size(later).unwrap_or(0);
            actions.push(Action::Quarantine {
                path: later.clone(),
                from: 0,
            });
        }
        break;
    }

    if !read_only {
        for action in actions {
            match action {
                Action::DropTorn {
                    path,
                    len: Some(len),
                } => fs
                    .truncate(&path, len)
                    .map_err(|e| Error::io("truncate", &path, e))?,
                Action::DropTorn { path, len: None } => fs
                    .remove_file(&path)
                    .map_err(|e| Error::io("remove", &path, e))?,
                Action::Quarantine { path, from } => {
                    let q = quarantine(fs, wal_dir, &path, from)?;
                    stats.quarantined.push(q.clone());
                    stats.quarantine_files.push(q);
                }
            }
        }
    }
    // Numbers of removed or quarantined files are never reused.
    stats.last_seq = stats.last_seq.max(live.last().map(|(s, _)| *s));
    stats.quarantine_files.sort();
    Ok(stats)
}

/// What [`read_tail`] read of one log file.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Offset just past the last whole, valid frame read: where the next read starts.
    pub end: u64,
    /// Why reading stopped before the end of the bytes, if it did: an incomplete or damaged
    /// frame (a write in progress when this is the newest file).
    pub stopped: Option<String>,
}

/// Reads the frames of log file `path` (number `seq`) from byte `from` (0, or a frame
/// boundary an earlier call returned) to `bytes`' end, handing each to `sink`. `bytes` are
/// the file's bytes from `from` on. Nothing is changed; what stops the read is returned,
/// not judged: a follower decides whether it is a write in progress or damage.
pub(crate) fn read_tail(
    path: &Path,
    seq: u64,
    from: u64,
    bytes: &[u8],
    sink: &mut dyn FnMut(Signal, RecordBatch) -> Result<()>,
) -> Result<Tail> {
    let parsed = if from == 0 {
        parse_file(path, seq, bytes, sink)?
    } else {
        parse_frames(bytes, 0, sink)?
    };
    Ok(Tail {
        end: from + parsed.valid_len,
        stopped: parsed.damage.map(|d| match d {
            Damage::TornCandidate(r) => r.to_string(),
            Damage::Corrupt(r) => r,
        }),
    })
}

/// Moves the bytes of log file `path` from `from` on into a new quarantine file (durably,
/// before the log file loses them) and returns its path. A file kept with less than a
/// header is renamed whole.
fn quarantine(fs: &dyn FileSystem, wal_dir: &Path, path: &Path, from: u64) -> Result<PathBuf> {
    let q = quarantine_path(fs, path);
    if from < FILE_HEADER_LEN as u64 {
        fs.rename(path, &q)
            .map_err(|e| Error::io("rename", path, e))?;
        fs.sync_dir(wal_dir)
            .map_err(|e| Error::io("fsync", wal_dir, e))?;
    } else {
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        let mut f = fs.create(&q).map_err(|e| Error::io("create", &q, e))?;
        f.write_all(&bytes[start..])
            .map_err(|e| Error::io("write", &q, e))?;
        f.sync_data().map_err(|e| Error::io("fsync", &q, e))?;
        drop(f);
        fs.sync_dir(wal_dir)
            .map_err(|e| Error::io("fsync", wal_dir, e))?;
        fs.truncate(path, from)
            .map_err(|e| Error::io("truncate", path, e))?;
    }
    log::warn!(
        "write-ahead log {}: moved the bytes from offset {from} on into {}",
        path.display(),
        q.display()
    );
    Ok(q)
}

fn parse_file(
    path: &Path,
    seq: u64,
    bytes: &[u8],
    sink: &mut dyn FnMut(Signal, RecordBatch) -> Result<()>,
) -> Result<Parsed> {
    let damaged = |valid_len: usize, damage: Damage| Parsed {
        valid_len: valid_len as u64,
        damage: Some(damage),
    };
    if bytes.len() < FILE_HEADER_LEN {
        return Ok(damaged(
            0,
            Damage::TornCandidate("file header is incomplete"),
        ));
    }
    let header = &bytes[..FILE_HEADER_LEN];
    if header.iter().all(|b| *b == 0) {
        return Ok(damaged(0, Damage::TornCandidate("file header is zeroed")));
    }
    if &header[0..8] != format::MAGIC {
        return Ok(damaged(
            0,
            Damage::Corrupt("not a ScryDB log file (bad magic)".into()),
        ));
    }
    // The version is read before the checksum: a later version may lay out (and checksum)
    // the rest of the header differently, and must be reported as such, not as damage.
    let version = read_u32(header, 8);
    if version > format::VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: format::VERSION,
        });
    }
    if version == 0 {
        return Ok(damaged(
            0,
            Damage::Corrupt("file header declares version 0".into()),
        ));
    }
    if read_u32(header, 24) != crc32fast::hash(&header[0..24]) {
        return Ok(damaged(
            0,
            Damage::Corrupt("file header checksum mismatch".into()),
        ));
    }
    if read_u64(header, 16) != seq {
        return Ok(damaged(
            0,
            Damage::Corrupt(format!(
                "header says sequence {} but the file name says {seq}",
                read_u64(header, 16)
            )),
        ));
    }

    parse_frames(bytes, FILE_HEADER_LEN, sink)
}

/// Parses the frames of `bytes` from `off` on (`bytes` may be a file's tail read from any
/// frame boundary: offsets in the result are relative to `bytes`).
fn parse_frames(
    bytes: &[u8],
    mut off: usize,
    sink: &mut dyn FnMut(Signal, RecordBatch) -> Result<()>,
) -> Result<Parsed> {
    let damaged = |valid_len: usize, damage: Damage| Parsed {
        valid_len: valid_len as u64,
        damage: Some(damage),
    };
    while off < bytes.len() {
        let rest = &bytes[off..];
        if rest.len() < FRAME_HEADER_LEN {
            return Ok(damaged(
                off,
                Damage::TornCandidate("frame header is incomplete"),
            ));
        }
        let h = &rest[..FRAME_HEADER_LEN];
        if read_u32(h, 12) != crc32fast::hash(&h[0..12]) {
            let damage = if rest.iter().all(|b| *b == 0) {
                Damage::TornCandidate("zero-filled tail")
            } else {
                Damage::Corrupt("frame header checksum mismatch".into())
            };
            return Ok(damaged(off, damage));
        }
        let len = read_u32(h, 0);
        let Some(signal) = Signal::from_index(h[4]).filter(|_| len <= format::MAX_PAYLOAD) else {
            return Ok(damaged(
                off,
                Damage::Corrupt(format!("frame declares signal {} and length {len}", h[4])),
            ));
        };
        let end = off + FRAME_HEADER_LEN + len as usize;
        if end > bytes.len() {
            return Ok(damaged(
                off,
                Damage::TornCandidate("last frame is incomplete"),
            ));
        }
        let payload = &bytes[off + FRAME_HEADER_LEN..end];
        if read_u32(h, 8) != crc32fast::hash(payload) {
            // A complete last frame with a wrong checksum is a torn write only when its
            // end never reached the disk: every payload ends with the Arrow end-of-stream
            // marker `FF FF FF FF 00 00 00 00`, so 8 zero bytes there are a zero-filled
            // extent, not data. Anything else (a flipped bit) is damage to a frame that
            // may have been acknowledged.
            let damage = if end == bytes.len()
                && payload.len() >= 8
                && payload[payload.len() - 8..].iter().all(|b| *b == 0)
            {
                Damage::TornCandidate("last frame ends zero-filled")
            } else if end == bytes.len() {
                Damage::Corrupt("last frame's payload checksum mismatch (the frame is complete, so this is not a torn write)".into())
            } else {
                Damage::Corrupt("frame payload checksum mismatch".into())
            };
            return Ok(damaged(off, damage));
        }
        let batch = match decode_payload(signal, payload) {
            Ok(batch) => batch,
            Err(reason) => return Ok(damaged(off, Damage::Corrupt(reason))),
        };
        sink(signal, batch)?;
        off = end;
    }
    Ok(Parsed {
        valid_len: bytes.len() as u64,
        damage: None,
    })
}

fn decode_payload(signal: Signal, payload: &[u8]) -> Result<RecordBatch, String> {
    let mut reader = StreamReader::try_new(Cursor::new(payload), None)
        .map_err(|e| format!("frame does not decode as Arrow IPC: {e}"))?;
    let batch = reader
        .next()
        .ok_or("frame holds no record batch")?
        .map_err(|e| format!("frame does not decode as Arrow IPC: {e}"))?;
    if reader.next().is_some() {
        return Err("frame holds more than one record batch".into());
    }
    let want = schema::schema(signal);
    if batch.schema().fields() != want.fields() {
        return Err(format!(
            "frame's schema is not the {signal} schema of this format version"
        ));
    }
    // Re-attach the canonical schema object so batches compare equal downstream.
    RecordBatch::try_new(want, batch.columns().to_vec()).map_err(|e| e.to_string())
}
