//! Reading the log back at open: replay, torn-tail truncation, corruption detection.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;

use super::format::{self, FILE_HEADER_LEN, FRAME_HEADER_LEN, read_u32, read_u64};
use crate::io::FileSystem;
use crate::options::WalRecovery;
use crate::{Error, Result, Signal, schema};

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Log files read.
    pub files: usize,
    /// Frames (batches) handed to the callback.
    pub frames: u64,
    /// Highest sequence number of a log file that remains after replay, if any.
    pub last_seq: Option<u64>,
    /// Bytes dropped from damaged tails.
    pub dropped_bytes: u64,
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

/// Replays log files with sequence number `>= from_seq` in `wal_dir`, oldest first,
/// handing every intact batch to `sink`. Files below `from_seq` are already in segments and
/// are removed.
///
/// Damage is handled as `mode` says (see [`WalRecovery`]). Files are changed (a torn tail
/// truncated, later files removed) only after every file was read without an error, so a
/// failed replay leaves the log as it found it.
pub fn replay(
    fs: &dyn FileSystem,
    wal_dir: &Path,
    from_seq: u64,
    mode: WalRecovery,
    mut sink: impl FnMut(Signal, RecordBatch) -> Result<()>,
) -> Result<ReplayStats> {
    let entries = fs
        .read_dir(wal_dir)
        .map_err(|e| Error::io("list", wal_dir, e))?;
    let mut files: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        match super::parse_file_name(&entry.path) {
            Some(seq) if !entry.is_dir => files.push((seq, entry.path)),
            _ => log::warn!(
                "ignoring unexpected entry {} in the write-ahead log directory",
                entry.path.display()
            ),
        }
    }
    files.sort();

    let mut stats = ReplayStats::default();
    let (old, live): (Vec<_>, Vec<_>) = files.into_iter().partition(|(s, _)| *s < from_seq);
    for (_, path) in old {
        log::debug!("removing flushed log file {}", path.display());
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove", &path, e))?;
    }

    // (path, new length or None to remove)
    let mut actions: Vec<(PathBuf, Option<u64>)> = Vec::new();
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
        let torn = is_last && matches!(damage, Damage::TornCandidate(_));
        let reason = match &damage {
            Damage::TornCandidate(r) if !is_last => {
                format!("{r}, but a newer log file follows")
            }
            Damage::TornCandidate(r) => (*r).to_string(),
            Damage::Corrupt(r) => r.clone(),
        };
        if !torn && mode == WalRecovery::TolerateTornTail {
            return Err(Error::corrupted(
                path,
                Some(parsed.valid_len),
                format!(
                    "{reason}; acknowledged writes may be lost. Open with \
                     WalRecovery::TruncateAtCorruption to keep what precedes this offset"
                ),
            ));
        }
        stats.dropped_bytes += dropped;
        if torn {
            log::warn!(
                "write-ahead log {}: dropping a torn tail of {dropped} bytes at byte {} ({reason}): \
                 a write interrupted by a crash, never acknowledged",
                path.display(),
                parsed.valid_len
            );
        } else {
            log::warn!(
                "write-ahead log {}: damage at byte {} ({reason}); dropping {dropped} bytes \
                 and {} later log file(s) as WalRecovery::TruncateAtCorruption asks",
                path.display(),
                parsed.valid_len,
                live.len() - i - 1
            );
        }
        if parsed.valid_len < FILE_HEADER_LEN as u64 {
            actions.push((path.clone(), None));
        } else {
            actions.push((path.clone(), Some(parsed.valid_len)));
            stats.last_seq = Some(*seq);
        }
        for (_, later) in &live[i + 1..] {
            stats.dropped_bytes += fs.file_size(later).unwrap_or(0);
            actions.push((later.clone(), None));
        }
        break;
    }

    for (path, action) in actions {
        match action {
            Some(len) => fs
                .truncate(&path, len)
                .map_err(|e| Error::io("truncate", &path, e))?,
            None => fs
                .remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?,
        }
    }
    if stats.last_seq.is_none() {
        // Every live file was removed; remember the highest number so it is not reused.
        stats.last_seq = live.last().map(|(s, _)| *s);
    }
    Ok(stats)
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

    let mut off = FILE_HEADER_LEN;
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
            let damage = if end == bytes.len() {
                Damage::TornCandidate("last frame's payload checksum mismatch")
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
