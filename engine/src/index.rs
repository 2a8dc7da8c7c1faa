//! The per-segment trace index: for every trace id in a segment, a roaring bitmap of the
//! row positions holding it (for `metrics`, the rows whose exemplars carry it), plus a bloom
//! filter over the ids that readers keep in memory so a lookup opens only segments that can
//! hold the id.
//!
//! File `<id:020>.tidx` beside segment `<id:020>.parquet` (layout in `docs/format.md`,
//! section 4a). It is written and fsynced before the segment is published, read through
//! `memmap2` (never read whole), and checked against its CRC when first opened. It can be
//! rebuilt from the segment at any time ([`build_for_segment`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use roaring::RoaringBitmap;

use crate::io::FileSystem;
use crate::{Error, Result, Signal};

/// `b"SCRYTIX\0"`.
pub const MAGIC: &[u8; 8] = b"SCRYTIX\0";
/// Index format version.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
/// Bloom filter bits per distinct trace id (about 1% false positives with 7 probes).
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_PROBES: u64 = 7;

/// Path of the index of the segment at `segment_path`.
pub fn index_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("tidx")
}

/// Row positions of every trace id in `batch` (a sorted segment's rows).
pub fn collect(signal: Signal, batch: &RecordBatch) -> HashMap<[u8; 16], RoaringBitmap> {
    let mut map: HashMap<[u8; 16], RoaringBitmap> = HashMap::new();
    let mut add = |id: &[u8], row: usize| {
        if let Ok(id) = <[u8; 16]>::try_from(id) {
            map.entry(id).or_default().insert(row as u32);
        }
    };
    match signal {
        Signal::Spans | Signal::Logs => {
            let col = batch
                .column_by_name("trace_id")
                .expect("canonical batches have trace_id")
                .as_fixed_size_binary();
            for row in 0..col.len() {
                if col.is_valid(row) {
                    add(col.value(row), row);
                }
            }
        }
        Signal::Metrics => {
            let list = batch
                .column_by_name("exemplars")
                .expect("canonical metric batches have exemplars")
                .as_list::<i32>();
            let items = list.values().as_struct();
            let ids = items
                .column_by_name("trace_id")
                .expect("exemplars have trace_id")
                .as_fixed_size_binary();
            let offsets = list.value_offsets();
            for row in 0..list.len() {
                if list.is_null(row) {
                    continue;
                }
                for i in offsets[row] as usize..offsets[row + 1] as usize {
                    if ids.is_valid(i) {
                        add(ids.value(i), row);
                    }
                }
            }
        }
    }
    map
}

/// Two independent 64-bit hashes of an id (ids are usually random, but not always).
fn hashes(id: &[u8; 16]) -> (u64, u64) {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let a = u64::from_le_bytes(id[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(id[8..].try_into().expect("8 bytes"));
    let h1 = mix(a ^ mix(b));
    let h2 = mix(b.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix(a)) | 1;
    (h1, h2)
}

/// A bloom filter over trace ids.
#[derive(Debug, Clone)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn with_keys(n: usize) -> Self {
        let bits = (n * BLOOM_BITS_PER_KEY).max(64);
        Bloom {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    fn insert(&mut self, id: &[u8; 16]) {
        let bits = self.words.len() as u64 * 64;
        let (h1, h2) = hashes(id);
        for i in 0..BLOOM_PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether `id` may be in the set (false: certainly not).
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        let bits = self.words.len() as u64 * 64;
        let (h1, h2) = hashes(id);
        (0..BLOOM_PROBES).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    /// Bytes held in memory.
    pub fn size(&self) -> usize {
        self.words.len() * 8
    }
}

/// Encodes the index of a segment of `rows` rows.
pub fn encode(signal: Signal, rows: u64, map: &HashMap<[u8; 16], RoaringBitmap>) -> Vec<u8> {
    let mut keys: Vec<&[u8; 16]> = map.keys().collect();
    keys.sort_unstable();
    let mut bloom = Bloom::with_keys(keys.len());
    for k in &keys {
        bloom.insert(k);
    }
    let mut bitmaps = Vec::new();
    let mut offsets: Vec<u32> = Vec::with_capacity(keys.len() + 1);
    for k in &keys {
        offsets.push(u32::try_from(bitmaps.len()).expect("index under 4 GiB"));
        map[*k]
            .serialize_into(&mut bitmaps)
            .expect("writing to memory does not fail");
    }
    offsets.push(u32::try_from(bitmaps.len()).expect("index under 4 GiB"));

    let mut out =
        Vec::with_capacity(HEADER_LEN + bloom.size() + keys.len() * 20 + 4 + bitmaps.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(signal.index() as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    out.extend_from_slice(&(bloom.words.len() as u32).to_le_bytes());
    for w in &bloom.words {
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
    out
}

/// Writes the index of `batch` (the sorted rows of the segment at `segment_path`) durably,
/// through a temporary file.
pub fn write(
    fs: &Arc<dyn FileSystem>,
    segment_path: &Path,
    signal: Signal,
    batch: &RecordBatch,
) -> Result<u64> {
    let bytes = encode(signal, batch.num_rows() as u64, &collect(signal, batch));
    let path = index_path(segment_path);
    let tmp = path.with_extension("tidx.tmp");
    let mut f = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    Ok(bytes.len() as u64)
}

/// Rebuilds the index of a segment from its rows (for `scry reindex` and damaged indexes).
pub fn build_for_segment(
    fs: &Arc<dyn FileSystem>,
    db_dir: &Path,
    meta: &crate::SegmentMeta,
) -> Result<u64> {
    let batches = crate::segment::reader::read_segment(fs.as_ref(), db_dir, meta)?;
    let schema = crate::schema::schema(meta.signal);
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    let size = write(fs, &db_dir.join(&meta.path), meta.signal, &batch)?;
    let dir = db_dir.join(&meta.path);
    let dir = dir.parent().expect("segments are in a partition directory");
    fs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
    Ok(size)
}

/// An open index: memory-mapped, checked, with its bloom filter copied to memory.
pub struct SegmentIndex {
    map: memmap2::Mmap,
    bloom: Bloom,
    n_keys: usize,
    keys_at: usize,
    offsets_at: usize,
    bitmaps_at: usize,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentIndex")
            .field("keys", &self.n_keys)
            .field("bytes", &self.map.len())
            .finish()
    }
}

impl SegmentIndex {
    /// Opens and checks the index at `path` for a segment of `signal` with `rows` rows.
    pub fn open(path: &Path, signal: Signal, rows: u64) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        // The file is immutable once published; nobody truncates it while it is mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
        let bad = |offset: usize, reason: &str| Error::corrupted(path, Some(offset as u64), reason);
        if map.len() < HEADER_LEN + 4 {
            return Err(bad(0, "shorter than an index header"));
        }
        if &map[..8] != MAGIC {
            return Err(bad(0, "not a ScryDB trace index (bad magic)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: VERSION,
            });
        }
        let body_len = map.len() - 4;
        if crc32fast::hash(&map[..body_len]) != u32_at(body_len) {
            return Err(bad(0, "checksum mismatch"));
        }
        if map[12] as usize != signal.index() {
            return Err(bad(12, "index of another signal"));
        }
        if u64::from_le_bytes(map[16..24].try_into().expect("8 bytes")) != rows {
            return Err(bad(16, "row count differs from the segment's"));
        }
        let n_keys = u32_at(24) as usize;
        let words = u32_at(28) as usize;
        let keys_at = HEADER_LEN + words * 8;
        let offsets_at = keys_at + n_keys * 16;
        let bitmaps_at = offsets_at + (n_keys + 1) * 4;
        if bitmaps_at > body_len {
            return Err(bad(24, "sizes in the header exceed the file"));
        }
        let bloom = Bloom {
            words: (0..words)
                .map(|i| {
                    let o = HEADER_LEN + i * 8;
                    u64::from_le_bytes(map[o..o + 8].try_into().expect("8 bytes"))
                })
                .collect(),
        };
        let idx = SegmentIndex {
            map,
            bloom,
            n_keys,
            keys_at,
            offsets_at,
            bitmaps_at,
        };
        if idx.offset(n_keys) as usize + bitmaps_at != body_len {
            return Err(bad(
                idx.offsets_at,
                "bitmap offsets do not end at the checksum",
            ));
        }
        Ok(idx)
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.map[self.keys_at + i * 16..self.keys_at + (i + 1) * 16]
    }

    fn offset(&self, i: usize) -> u32 {
        let o = self.offsets_at + i * 4;
        u32::from_le_bytes(self.map[o..o + 4].try_into().expect("4 bytes"))
    }

    /// Whether the segment may hold `id`, from the in-memory bloom filter alone.
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        self.bloom.may_contain(id)
    }

    /// The rows holding `id` (binary search over the mapped keys): `Ok(None)` when the
    /// segment does not hold it, `Err` when its bitmap cannot be read (the caller must not
    /// take that for "absent").
    pub fn rows(&self, id: &[u8; 16]) -> std::result::Result<Option<RoaringBitmap>, String> {
        if !self.may_contain(id) {
            return Ok(None);
        }
        let (mut lo, mut hi) = (0, self.n_keys);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(&id[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let start = self.bitmaps_at + self.offset(mid) as usize;
                    let end = self.bitmaps_at + self.offset(mid + 1) as usize;
                    // Offsets passed the checksum; a file that is well-formed but wrong
                    // still must not panic the reader.
                    let bytes = self
                        .map
                        .get(start..end)
                        .ok_or_else(|| format!("bitmap {mid} lies outside the file"))?;
                    return RoaringBitmap::deserialize_from(bytes)
                        .map(Some)
                        .map_err(|e| format!("bitmap {mid} does not decode: {e}"));
                }
            }
        }
        Ok(None)
    }

    /// Distinct trace ids.
    pub fn keys(&self) -> usize {
        self.n_keys
    }

    /// Bytes held in memory (the bloom filter); the rest is mapped.
    pub fn memory(&self) -> usize {
        self.bloom.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bloom() {
        let mut map: HashMap<[u8; 16], RoaringBitmap> = HashMap::new();
        for i in 0u32..1000 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&(i * 7919).to_le_bytes());
            id[15] = 1;
            map.entry(id).or_default().insert(i);
            map.entry(id).or_default().insert(i + 5000);
        }
        let bytes = encode(Signal::Spans, 6000, &map);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1.tidx");
        std::fs::write(&path, &bytes).expect("write");
        let idx = SegmentIndex::open(&path, Signal::Spans, 6000).expect("opens");
        assert_eq!(idx.keys(), 1000);
        for (id, rows) in &map {
            assert_eq!(idx.rows(id).expect("readable").as_ref(), Some(rows));
        }
        let absent = (0u32..10_000)
            .filter(|i| {
                let mut id = [9u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                idx.may_contain(&id)
            })
            .count();
        assert!(absent < 300, "bloom false positives: {absent} of 10000");

        // Any flipped byte is detected.
        for at in [0, 9, 40, bytes.len() / 2, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[at] ^= 0x20;
            std::fs::write(&path, &b).expect("write");
            assert!(
                SegmentIndex::open(&path, Signal::Spans, 6000).is_err(),
                "{at}"
            );
        }
    }
}
