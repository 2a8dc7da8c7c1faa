//! An open index: memory-mapped, checked, with its bloom filter copied to memory.

use std::path::Path;

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::bloom::Bloom;
use super::format::{self, ENTRY_LEN, HEADER_LEN, Layout};
use crate::io::FileSystem;
use crate::{Error, Result, Signal};

/// An open index: memory-mapped, checked, with its bloom filter copied to memory.
pub struct SegmentIndex {
    /// The whole file, mapped by [`FileSystem::map`] (the mapping lives as long as this).
    map: Bytes,
    bloom: Bloom,
    layout: Layout,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentIndex")
            .field("entries", &self.entries())
            .field("bytes", &self.map.len())
            .finish()
    }
}

impl SegmentIndex {
    /// Opens and checks the index at `path` for a segment of `signal` with `rows` rows,
    /// memory-mapped through `fs` (a published index never changes). Reads the whole file
    /// once, for its checksum. Fails with [`Error::Io`] or [`Error::Corrupted`] naming the
    /// file; never panics on what the file holds.
    pub fn open(fs: &dyn FileSystem, path: &Path, signal: Signal, rows: u64) -> Result<Self> {
        let map = fs.map(path).map_err(|e| Error::io("map", path, e))?;
        let layout = format::decode(&map, path, signal, rows)?;
        let bloom = Bloom::from_words(
            (0..layout.bloom_words())
                .map(|i| {
                    let o = HEADER_LEN + i * 8;
                    u64::from_le_bytes(map[o..o + 8].try_into().expect("8 bytes"))
                })
                .collect(),
        );
        Ok(SegmentIndex { map, bloom, layout })
    }

    fn u32_at(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.map[o..o + 4].try_into().expect("4 bytes"))
    }

    /// Whether the segment may hold `id`, from the in-memory bloom filter alone.
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        self.bloom.may_contain(id)
    }

    /// The rows holding `id` (binary search over the mapped keys): `Ok(None)` when the
    /// segment does not hold it, `Err` when its rows cannot be read (the caller must not
    /// take that for "absent").
    pub fn rows(&self, id: &[u8; 16]) -> std::result::Result<Option<RoaringBitmap>, String> {
        if !self.may_contain(id) {
            return Ok(None);
        }
        match self.layout {
            Layout::V2 {
                n_entries,
                entries_at,
                ..
            } => {
                let key = |i: usize| &self.map[entries_at + i * ENTRY_LEN..][..16];
                let lo = self.first_entry(id, n_entries, entries_at);
                let mut rows = RoaringBitmap::new();
                let mut i = lo;
                while i < n_entries && key(i) == &id[..] {
                    let at = entries_at + i * ENTRY_LEN + 16;
                    let (start, len) = (self.u32_at(at), self.u32_at(at + 4));
                    let end = start
                        .checked_add(len)
                        .ok_or_else(|| format!("entry {i} overflows the row numbers"))?;
                    rows.insert_range(start..end);
                    i += 1;
                }
                Ok((!rows.is_empty()).then_some(rows))
            }
            Layout::V1 {
                n_keys,
                keys_at,
                offsets_at,
                bitmaps_at,
                ..
            } => {
                let key = |i: usize| &self.map[keys_at + i * 16..keys_at + (i + 1) * 16];
                let offset = |i: usize| self.u32_at(offsets_at + i * 4) as usize;
                let (mut lo, mut hi) = (0, n_keys);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match key(mid).cmp(&id[..]) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => {
                            let (start, end) =
                                (bitmaps_at + offset(mid), bitmaps_at + offset(mid + 1));
                            // Offsets passed the checksum; a file that is well-formed but
                            // wrong still must not panic the reader.
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
        }
    }

    /// In a version 2 index: the position of the first entry whose id is not below `id`
    /// (entries are sorted by (id, first row)); `n_entries` when there is none.
    fn first_entry(&self, id: &[u8; 16], n_entries: usize, entries_at: usize) -> usize {
        let key = |i: usize| &self.map[entries_at + i * ENTRY_LEN..][..16];
        let (mut lo, mut hi) = (0, n_entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if key(mid) < &id[..] {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Whether the segment holds `id` (the bloom filter, then a binary search): `Err` when
    /// the index cannot say (the caller must not take that for "absent").
    pub fn contains(&self, id: &[u8; 16]) -> std::result::Result<bool, String> {
        if !self.may_contain(id) {
            return Ok(false);
        }
        match self.layout {
            Layout::V2 {
                n_entries,
                entries_at,
                ..
            } => {
                let lo = self.first_entry(id, n_entries, entries_at);
                Ok(lo < n_entries && self.map[entries_at + lo * ENTRY_LEN..][..16] == id[..])
            }
            Layout::V1 { .. } => self.rows(id).map(|r| r.is_some()),
        }
    }

    /// Entries: distinct trace ids in a version-1 index, runs of rows (about one per
    /// trace id) in version 2.
    pub fn entries(&self) -> usize {
        match self.layout {
            Layout::V1 { n_keys, .. } => n_keys,
            Layout::V2 { n_entries, .. } => n_entries,
        }
    }

    /// Bytes held in memory (the bloom filter); the rest is mapped.
    pub fn memory(&self) -> usize {
        self.bloom.size()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::index::encode;
    use crate::io::StdFs;

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
        // A run of three rows too.
        let mut run = [0u8; 16];
        run[0] = 0xee;
        map.insert(run, RoaringBitmap::from_iter([7000u32, 7001, 7002, 7010]));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1.tidx");
        // Version 1 (written by older builds) reads as version 2 does.
        let v1 = crate::index::format::encode_v1(Signal::Spans, 8000, &map).expect("v1");
        std::fs::write(&path, &v1).expect("write");
        let idx = SegmentIndex::open(&StdFs, &path, Signal::Spans, 8000).expect("opens v1");
        assert_eq!(idx.entries(), 1001);
        for (id, rows) in &map {
            assert_eq!(idx.rows(id).expect("readable").as_ref(), Some(rows));
        }
        let bytes = encode(Signal::Spans, 8000, &map).expect("encodes");
        std::fs::write(&path, &bytes).expect("write");
        let idx = SegmentIndex::open(&StdFs, &path, Signal::Spans, 8000).expect("opens");
        assert_eq!(idx.entries(), 2002, "two runs per id, the run id has two");
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
                SegmentIndex::open(&StdFs, &path, Signal::Spans, 8000).is_err(),
                "{at}"
            );
        }
    }

    /// `bytes` (an encoded index) rewritten with a bloom filter of zero words and a valid
    /// checksum: well-formed to every check but the filter's size.
    fn without_bloom_words(bytes: &[u8]) -> Vec<u8> {
        let words = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes")) as usize;
        let mut out = bytes[..HEADER_LEN].to_vec();
        out[28..32].copy_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&bytes[HEADER_LEN + words * 8..bytes.len() - 4]);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn an_index_without_bloom_words_is_refused_not_a_panic() {
        let id = [7u8; 16];
        let map = HashMap::from([(id, RoaringBitmap::from_iter([0u32, 3]))]);
        let bytes = without_bloom_words(&encode(Signal::Logs, 4, &map).expect("encodes"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("2.tidx");
        std::fs::write(&path, &bytes).expect("write");
        match SegmentIndex::open(&StdFs, &path, Signal::Logs, 4) {
            Err(Error::Corrupted { path: p, .. }) => assert_eq!(p, path),
            Err(e) => panic!("wrong error: {e}"),
            Ok(idx) => panic!("opened; a lookup would divide by zero: {:?}", idx.rows(&id)),
        }
    }
}
