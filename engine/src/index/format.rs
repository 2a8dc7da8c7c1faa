//! The bytes of an index file: magic, format version, header, bloom words, sorted keys,
//! bitmap offsets, bitmaps, CRC (`docs/format.md`, section 4a).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use super::bloom::Bloom;
use crate::{Error, Result, Signal};

/// `b"SCRYTIX\0"`.
pub const MAGIC: &[u8; 8] = b"SCRYTIX\0";
/// Index format version.
pub const VERSION: u32 = 1;
/// Bytes before the bloom words.
pub(crate) const HEADER_LEN: usize = 32;

/// Path of the index of the segment at `segment_path`.
pub fn index_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("tidx")
}

/// Encodes the index of a segment of `rows` rows. Fails with [`Error::TooLarge`] when the
/// keys or bitmaps outgrow the format's `u32` counts and offsets.
pub fn encode(
    signal: Signal,
    rows: u64,
    map: &HashMap<[u8; 16], RoaringBitmap>,
) -> Result<Vec<u8>> {
    let too_large = |what, size: usize| Error::TooLarge {
        what,
        size: size as u64,
        limit: u32::MAX.into(),
    };
    let n_keys =
        u32::try_from(map.len()).map_err(|_| too_large("trace ids of a segment", map.len()))?;
    let mut keys: Vec<&[u8; 16]> = map.keys().collect();
    keys.sort_unstable();
    let mut bloom = Bloom::with_keys(keys.len());
    for k in &keys {
        bloom.insert(k);
    }
    let mut bitmaps = Vec::new();
    let mut offsets: Vec<u32> = Vec::with_capacity(keys.len() + 1);
    let offset = |len: usize| {
        u32::try_from(len).map_err(|_| too_large("bitmap bytes of a trace index", len))
    };
    for k in &keys {
        offsets.push(offset(bitmaps.len())?);
        map[*k]
            .serialize_into(&mut bitmaps)
            .expect("writing to memory does not fail");
    }
    offsets.push(offset(bitmaps.len())?);

    let mut out =
        Vec::with_capacity(HEADER_LEN + bloom.size() + keys.len() * 20 + 4 + bitmaps.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(signal.index() as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&n_keys.to_le_bytes());
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

/// Where the parts of a checked index file start (byte offsets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Distinct trace ids.
    pub n_keys: usize,
    /// 64-bit words of the bloom filter (at [`HEADER_LEN`]).
    pub bloom_words: usize,
    /// The sorted keys, 16 bytes each.
    pub keys_at: usize,
    /// The `n_keys + 1` bitmap offsets, u32 each, relative to `bitmaps_at`.
    pub offsets_at: usize,
    /// The serialized bitmaps.
    pub bitmaps_at: usize,
}

/// Checks the whole of an index file (`bytes`, read from `path`) for a segment of `signal`
/// with `rows` rows: magic, format version (before the checksum, so a newer file says so),
/// CRC, signal, row count, a bloom filter of at least one word, and sizes that fit the
/// file. Every later read of a part the
/// layout names is in bounds.
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
    if version != VERSION {
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
    let offsets_at = keys_at + n_keys * 16;
    let bitmaps_at = offsets_at + (n_keys + 1) * 4;
    if bitmaps_at > body_len {
        return Err(bad(24, "sizes in the header exceed the file"));
    }
    if u32_at(offsets_at + n_keys * 4) as usize + bitmaps_at != body_len {
        return Err(bad(offsets_at, "bitmap offsets do not end at the checksum"));
    }
    Ok(Layout {
        n_keys,
        bloom_words,
        keys_at,
        offsets_at,
        bitmaps_at,
    })
}
