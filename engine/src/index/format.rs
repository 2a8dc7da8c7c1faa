//! The bytes of an index file: magic, format version, header, bloom words, then (version 2)
//! sorted (trace id, first row, rows) entries or (version 1) sorted keys, bitmap offsets
//! and bitmaps, and a CRC (`docs/format.md`, section 4a).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use super::bloom::Bloom;
use crate::{Error, Result, Signal};

/// `b"SCRYTIX\0"`.
pub const MAGIC: &[u8; 8] = b"SCRYTIX\0";
/// The index format version this build writes (2) and the newest it reads (it reads 1 too).
pub const VERSION: u32 = 2;
/// Bytes before the bloom words.
pub(crate) const HEADER_LEN: usize = 32;

/// Path of the index of the segment at `segment_path`.
pub fn index_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("tidx")
}

/// Encodes the index of a segment of `rows` rows, in format version 2: each trace id's
/// rows as runs of consecutive positions (segments are sorted so that a trace's rows are
/// contiguous within a minute: most ids have one run). Fails with [`Error::TooLarge`] when
/// the runs outgrow the format's `u32` counts.
pub fn encode(
    signal: Signal,
    rows: u64,
    map: &HashMap<[u8; 16], RoaringBitmap>,
) -> Result<Vec<u8>> {
    let mut keys: Vec<&[u8; 16]> = map.keys().collect();
    keys.sort_unstable();
    let mut bloom = Bloom::with_keys(keys.len());
    for k in &keys {
        bloom.insert(k);
    }
    let mut entries: Vec<u8> = Vec::with_capacity(keys.len() * ENTRY_LEN);
    let mut n_entries: u64 = 0;
    for k in &keys {
        let mut run: Option<(u32, u32)> = None;
        let mut push = |(start, len): (u32, u32), entries: &mut Vec<u8>| {
            entries.extend_from_slice(&k[..]);
            entries.extend_from_slice(&start.to_le_bytes());
            entries.extend_from_slice(&len.to_le_bytes());
            n_entries += 1;
        };
        for row in map[*k].iter() {
            run = match run {
                Some((start, len)) if start + len == row => Some((start, len + 1)),
                Some(r) => {
                    push(r, &mut entries);
                    Some((row, 1))
                }
                None => Some((row, 1)),
            };
        }
        if let Some(r) = run {
            push(r, &mut entries);
        }
    }
    let n_entries = u32::try_from(n_entries).map_err(|_| Error::TooLarge {
        what: "row runs of a trace index",
        size: n_entries,
        limit: u32::MAX.into(),
    })?;

    let mut out = Vec::with_capacity(HEADER_LEN + bloom.size() + entries.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(signal.index() as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&n_entries.to_le_bytes());
    out.extend_from_slice(&(bloom.words().len() as u32).to_le_bytes());
    for w in bloom.words() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&entries);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Encodes an index in format version 1 (a roaring bitmap per trace id), as builds before
/// version 2 wrote it: kept to test that version 1 still reads.
#[cfg(test)]
pub(crate) fn encode_v1(
    signal: Signal,
    rows: u64,
    map: &HashMap<[u8; 16], RoaringBitmap>,
) -> Result<Vec<u8>> {
    let mut keys: Vec<&[u8; 16]> = map.keys().collect();
    keys.sort_unstable();
    let mut bloom = Bloom::with_keys(keys.len());
    for k in &keys {
        bloom.insert(k);
    }
    let mut bitmaps = Vec::new();
    let mut offsets: Vec<u32> = Vec::with_capacity(keys.len() + 1);
    for k in &keys {
        offsets.push(bitmaps.len() as u32);
        map[*k]
            .serialize_into(&mut bitmaps)
            .expect("writing to memory does not fail");
    }
    offsets.push(bitmaps.len() as u32);
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.push(signal.index() as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    out.extend_from_slice(&(bloom.words().len() as u32).to_le_bytes());
    for w in bloom.words() {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for k in &keys {
        out.extend_from_slice(&k[..]);
    }
    for o in &offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
    out.extend_from_slice(&bitmaps);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Bytes of one version-2 entry: trace id (16), first row (u32), rows (u32).
pub(crate) const ENTRY_LEN: usize = 24;

/// Where the parts of a checked index file start (byte offsets).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout {
    /// Version 1: a roaring bitmap per key.
    V1 {
        /// Distinct trace ids.
        n_keys: usize,
        /// 64-bit words of the bloom filter (at [`HEADER_LEN`]).
        bloom_words: usize,
        /// The sorted keys, 16 bytes each.
        keys_at: usize,
        /// The `n_keys + 1` bitmap offsets, u32 each, relative to `bitmaps_at`.
        offsets_at: usize,
        /// The serialized bitmaps.
        bitmaps_at: usize,
    },
    /// Version 2: sorted (trace id, first row, rows) entries, one per run.
    V2 {
        /// Entries (runs).
        n_entries: usize,
        /// 64-bit words of the bloom filter (at [`HEADER_LEN`]).
        bloom_words: usize,
        /// The entries, [`ENTRY_LEN`] bytes each.
        entries_at: usize,
    },
}

impl Layout {
    /// 64-bit words of the bloom filter, which starts at [`HEADER_LEN`].
    pub(crate) fn bloom_words(&self) -> usize {
        match *self {
            Layout::V1 { bloom_words, .. } | Layout::V2 { bloom_words, .. } => bloom_words,
        }
    }
}

/// Checks the whole of an index file (`bytes`, read from `path`) for a segment of `signal`
/// with `rows` rows: magic, format version (before the checksum, so a newer file says so),
/// CRC, signal, row count, a bloom filter of at least one word, and sizes that fit the
/// file. Every later read of a part the layout names is in bounds. Reads versions 1 and 2.
pub(crate) fn decode(bytes: &[u8], path: &Path, signal: Signal, rows: u64) -> Result<Layout> {
    let bad = |offset: usize, reason: &str| Error::corrupted(path, Some(offset as u64), reason);
    if bytes.len() < HEADER_LEN + 4 {
        return Err(bad(0, "shorter than an index header"));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad(0, "not a ScryDB trace index (bad magic)"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    if version == 0 || version > VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let body_len = bytes.len() - 4;
    if crc32fast::hash(&bytes[..body_len]) != u32_at(body_len) {
        return Err(bad(0, "checksum mismatch"));
    }
    if bytes[12] as usize != signal.index() {
        return Err(bad(12, "index of another signal"));
    }
    if u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) != rows {
        return Err(bad(16, "row count differs from the segment's"));
    }
    let n_keys = u32_at(24) as usize;
    let bloom_words = u32_at(28) as usize;
    if bloom_words == 0 {
        // The writer sizes every filter to at least one word; lookups take hashes modulo
        // its size.
        return Err(bad(28, "bloom filter has no words"));
    }
    let keys_at = HEADER_LEN + bloom_words * 8;
    if version == 2 {
        if keys_at + n_keys * ENTRY_LEN != body_len {
            return Err(bad(24, "entries do not end at the checksum"));
        }
        return Ok(Layout::V2 {
            n_entries: n_keys,
            bloom_words,
            entries_at: keys_at,
        });
    }
    let offsets_at = keys_at + n_keys * 16;
    let bitmaps_at = offsets_at + (n_keys + 1) * 4;
    if bitmaps_at > body_len {
        return Err(bad(24, "sizes in the header exceed the file"));
    }
    if u32_at(offsets_at + n_keys * 4) as usize + bitmaps_at != body_len {
        return Err(bad(offsets_at, "bitmap offsets do not end at the checksum"));
    }
    Ok(Layout::V1 {
        n_keys,
        bloom_words,
        keys_at,
        offsets_at,
        bitmaps_at,
    })
}
