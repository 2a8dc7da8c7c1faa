//! The manifest: the list of live segments, replaced atomically on every change.
//!
//! A manifest file `MANIFEST-<version>` (version zero-padded to 20 digits) is written under a
//! temporary name, fsynced, renamed and its directory fsynced; only then is the previous
//! one removed. At open the highest-numbered manifest is the current one. Layout (integers
//! little-endian):
//!
//! ```text
//!   0  magic          8  b"SCRYMAN\0"
//!   8  format_version 4  u32 = 1
//!  12  reserved       4  0
//!  16  payload_len    8  u64
//!  24  payload           JSON, see `Manifest`
//!  ..  crc            4  CRC-32 of every byte before it
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::io::FileSystem;
use crate::{Error, Result, Signal};

/// Magic bytes at the start of a manifest file.
pub const MAGIC: &[u8; 8] = b"SCRYMAN\0";
/// The manifest format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub(crate) const PREFIX: &str = "MANIFEST-";

/// One immutable Parquet segment: the rows of one signal in one time partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Unique, increasing segment number.
    pub id: u64,
    /// The table whose rows the segment holds.
    pub signal: Signal,
    /// Start (inclusive) of the segment's time partition, ns since the epoch.
    pub partition_start: i64,
    /// End (exclusive) of the segment's time partition, ns since the epoch.
    pub partition_end: i64,
    /// Path relative to the database directory, `/`-separated:
    /// `<signal>/<partition>/<id>.parquet`.
    pub path: String,
    /// Number of rows.
    pub rows: u64,
    /// Smallest `time` of any row, ns since the epoch.
    pub min_time: i64,
    /// Largest `time` of any row, ns since the epoch.
    pub max_time: i64,
    /// File size in bytes.
    pub size: u64,
    /// CRC-32 of the whole file.
    pub crc32: u32,
    /// Set when the segment was *thinned* by retention: its partition aged out and only the
    /// interesting traces (and their logs) were kept ([`crate::thin`]). Absent in
    /// manifests that never thinned anything (and in those of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinned: Option<Kept>,
}

/// Why the traces of a thinned partition were kept: how many traces, and how many for each
/// reason (a trace can have several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Traces kept.
    pub traces: u64,
    /// Traces with a span whose status is ERROR.
    pub errors: u64,
    /// Traces with a span slower than its operation's threshold or percentile in the
    /// partition ([`crate::Options::slow_threshold`], [`crate::Options::slow_percentile`]).
    pub slow: u64,
    /// Traces a log record at WARN or above refers to.
    pub warn_logs: u64,
    /// Traces a metric exemplar refers to.
    pub exemplars: u64,
}

impl SegmentMeta {
    /// Whether the segment may hold rows with `time` in `[start, end)`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.min_time < end && self.max_time >= start
    }
}

/// The current state of the segment set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Increases by one with every manifest written.
    pub version: u64,
    /// The id the next segment gets.
    pub next_segment_id: u64,
    /// Log files with a sequence number below this are fully in segments.
    pub wal_replay_from: u64,
    /// Live segments, in the order they were written.
    pub segments: Vec<Arc<SegmentMeta>>,
    /// The writer (host and directory) whose log `wal_replay_from` counts in, for a store
    /// in object storage ([`FileSystem::wal_owner`]); absent for a local store. A writer
    /// opening from another directory replays its whole local log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_owner: Option<String>,
}

impl Manifest {
    /// The manifest of a new, empty database.
    pub fn empty() -> Self {
        Manifest {
            version: 1,
            next_segment_id: 1,
            wal_replay_from: 1,
            segments: Vec::new(),
            wal_owner: None,
        }
    }
}

/// Path of manifest `version` in `dir`.
pub fn file_path(dir: &Path, version: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{version:020}"))
}

/// The version in a manifest file's name, if `path` is named like one.
pub(crate) fn parse_name(path: &Path) -> Option<u64> {
    let digits = path.file_name()?.to_str()?.strip_prefix(PREFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Encodes a manifest file.
pub fn encode(m: &Manifest) -> Vec<u8> {
    let payload = serde_json::to_vec(m).expect("a manifest always serializes");
    let mut out = Vec::with_capacity(payload.len() + 28);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a manifest file, naming `path` in any error.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    let bad = |offset: u64, reason: &str| Error::corrupted(path, Some(offset), reason);
    if bytes.len() < 28 {
        return Err(bad(0, "file is shorter than a manifest header"));
    }
    if &bytes[0..8] != MAGIC {
        return Err(bad(0, "not a ScryDB manifest (bad magic)"));
    }
    // The version comes before the checksum: a later version may checksum differently and
    // must be reported as a version the reader does not know, not as damage.
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(bad(8, "header declares format version 0"));
    }
    let body = &bytes[..bytes.len() - 4];
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(body) {
        return Err(bad(0, "checksum mismatch"));
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    if len != (body.len() - 24) as u64 {
        return Err(bad(16, "payload length does not match the file size"));
    }
    let m: Manifest = serde_json::from_slice(&body[24..])
        .map_err(|e| bad(24, &format!("payload does not decode: {e}")))?;
    let name_version = parse_name(path);
    if name_version.is_some_and(|v| v != m.version) {
        return Err(bad(24, "version in the file differs from its name"));
    }
    for seg in &m.segments {
        check_segment_path(seg).map_err(|reason| bad(24, &reason))?;
    }
    Ok(m)
}

/// A manifest may only name files inside the database's signal directories:
/// `<signal>/<partition>/<id:020>.parquet`, nothing absolute and no `..`.
fn check_segment_path(seg: &SegmentMeta) -> std::result::Result<(), String> {
    let parts: Vec<&str> = seg.path.split('/').collect();
    let ok = parts.len() == 3
        && parts[0] == seg.signal.name()
        && !parts[1].is_empty()
        && parts[1] != "."
        && parts[1] != ".."
        && !parts[1].contains('\\')
        && parts[2] == format!("{:020}.parquet", seg.id);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "segment {} has path {:?}, not {}/<partition>/{:020}.parquet",
            seg.id,
            seg.path,
            seg.signal.name(),
            seg.id
        ))
    }
}

/// Writes `m` as the new current manifest, durably, and returns its path.
pub fn write(fs: &dyn FileSystem, dir: &Path, m: &Manifest) -> Result<PathBuf> {
    let owned;
    let m = match fs.wal_owner() {
        Some(owner) if m.wal_owner.as_deref() != Some(owner.as_str()) => {
            owned = Manifest {
                wal_owner: Some(owner),
                ..m.clone()
            };
            &owned
        }
        _ => m,
    };
    let path = file_path(dir, m.version);
    let tmp = path.with_extension("tmp");
    let mut f = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&encode(m))
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
    Ok(path)
}

/// Loads the current manifest of `dir`, if there is one, and removes older manifests and
/// leftover temporary files.
///
/// A damaged current manifest is an error naming it: falling back to an older one could
/// silently lose segments whose log was already removed.
pub fn load_current(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Manifest>> {
    let (m, old) = read_current(fs, dir)?;
    for path in old {
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove", &path, e))?;
    }
    Ok(m)
}

/// Reads the current manifest of `dir`, if there is one, changing nothing; also returns
/// the files [`load_current`] removes (older manifests, temporary files).
pub fn read_current(fs: &dyn FileSystem, dir: &Path) -> Result<(Option<Manifest>, Vec<PathBuf>)> {
    let entries = fs.read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let mut obsolete = Vec::new();
    for e in entries {
        let name = e.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(PREFIX) && name.ends_with(".tmp") {
            obsolete.push(e.path);
        } else if let Some(v) = parse_name(&e.path) {
            found.push((v, e.path));
        }
    }
    found.sort();
    let Some((_, current)) = found.pop() else {
        return Ok((None, obsolete));
    };
    let bytes = fs
        .read(&current)
        .map_err(|e| Error::io("read", &current, e))?;
    let m = decode(&current, &bytes)?;
    obsolete.extend(found.into_iter().map(|(_, p)| p));
    Ok((Some(m), obsolete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let m = Manifest {
            version: 7,
            next_segment_id: 3,
            wal_replay_from: 9,
            segments: vec![Arc::new(SegmentMeta {
                id: 2,
                signal: Signal::Logs,
                partition_start: -3600,
                partition_end: 0,
                path: "logs/x/00000000000000000002.parquet".into(),
                rows: 10,
                min_time: -5,
                max_time: -1,
                size: 123,
                crc32: 42,
                thinned: None,
            })],
            wal_owner: None,
        };
        let p = file_path(Path::new("/db"), 7);
        let bytes = encode(&m);
        assert_eq!(decode(&p, &bytes).expect("decodes"), m);
        for i in [0, 9, 20, 30, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let err = decode(&p, &b).expect_err("damage is detected");
            assert!(
                err.to_string().contains("MANIFEST-00000000000000000007"),
                "{err}"
            );
        }
    }

    #[test]
    fn refuses_segment_paths_outside_the_database() {
        let seg = |path: &str| SegmentMeta {
            id: 2,
            signal: Signal::Spans,
            partition_start: 0,
            partition_end: 1,
            path: path.into(),
            rows: 1,
            min_time: 0,
            max_time: 0,
            size: 1,
            crc32: 0,
            thinned: None,
        };
        assert!(check_segment_path(&seg("spans/p/00000000000000000002.parquet")).is_ok());
        for bad in [
            "/etc/passwd",
            "spans/../../x/00000000000000000002.parquet",
            "spans/../00000000000000000002.parquet",
            "logs/p/00000000000000000002.parquet",
            "spans/p/00000000000000000003.parquet",
            "spans//00000000000000000002.parquet",
        ] {
            assert!(check_segment_path(&seg(bad)).is_err(), "{bad}");
        }
    }
}
