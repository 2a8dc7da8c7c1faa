//! Block checksums of a segment: a CRC-32 per 16 KiB block of the file's data pages, kept in
//! the file's own footer (key-value entry [`KEY`]), so that a read checks only the blocks it
//! touches instead of the whole file.
//!
//! The table is trusted only once it is tied to the manifest: on a segment's first use the
//! reader reads the *tail* (every byte after the last whole block: the last data pages, the
//! page index and the footer, which holds the table), and the CRC of the whole file computed
//! from the table's block CRCs followed by the tail's CRC (CRC-32 composes) must equal the
//! CRC the manifest records. A damaged tail or table fails that check, exactly as the
//! whole-file check would; a damaged block fails when a read touches it. No byte is served
//! before a checksum tied to the manifest has matched it. See `docs/format.md`, section 4.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::io::{FileSystem, ReadableFile};
use crate::manifest::SegmentMeta;
use crate::{Error, Result};

/// Bytes per checked block (the last partial block belongs to the tail).
pub const BLOCK: u64 = 16 * 1024;

/// The footer key-value entry holding the table: `"<block size>:<crc>…"`, each CRC as 8
/// lowercase hex digits, block 0 first.
pub const KEY: &str = "scrydb.block_crc32";

/// Computes block CRCs of bytes as they are written.
#[derive(Debug, Default)]
pub struct BlockHasher {
    crcs: Vec<u32>,
    hasher: crc32fast::Hasher,
    fill: u64,
}

impl BlockHasher {
    /// Adds the next bytes of the file.
    pub fn update(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            let n = ((BLOCK - self.fill) as usize).min(buf.len());
            self.hasher.update(&buf[..n]);
            self.fill += n as u64;
            buf = &buf[n..];
            if self.fill == BLOCK {
                let h = std::mem::take(&mut self.hasher);
                self.crcs.push(h.finalize());
                self.fill = 0;
            }
        }
    }

    /// The table of the whole blocks written so far, as the footer entry's value.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(8 + 8 * self.crcs.len());
        s.push_str(&BLOCK.to_string());
        s.push(':');
        for c in &self.crcs {
            s.push_str(&format!("{c:08x}"));
        }
        s
    }
}

/// A segment's block table, checked against its manifest entry, and which blocks reads
/// have already checked (each is checked once per process).
#[derive(Debug)]
pub struct BlockCrcs {
    path: PathBuf,
    crcs: Vec<u32>,
    checked: Vec<AtomicU64>,
}

impl BlockCrcs {
    /// Parses a footer entry's value; `None` if it is not a table of [`BLOCK`]-byte blocks.
    fn decode(path: &Path, value: &str) -> Option<BlockCrcs> {
        let (size, hex) = value.split_once(':')?;
        if size.parse::<u64>().ok()? != BLOCK || hex.len() % 8 != 0 || !hex.is_ascii() {
            return None;
        }
        let crcs = (0..hex.len() / 8)
            .map(|i| u32::from_str_radix(&hex[8 * i..8 * i + 8], 16).ok())
            .collect::<Option<Vec<u32>>>()?;
        let checked = (0..crcs.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Some(BlockCrcs {
            path: path.to_path_buf(),
            crcs,
            checked,
        })
    }

    /// The bytes the blocks cover: `[0, covered)`; the tail follows.
    pub fn covered(&self) -> u64 {
        self.crcs.len() as u64 * BLOCK
    }

    fn is_checked(&self, i: usize) -> bool {
        self.checked[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }

    fn mark_checked(&self, i: usize) {
        self.checked[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
    }

    /// Reads `range` of `file` (the segment this table belongs to), first checking every
    /// block it touches that no read has checked yet (reading those blocks whole). A block
    /// that does not match is an [`io::ErrorKind::InvalidData`] error naming the file and
    /// the bytes.
    pub fn read(&self, file: &dyn ReadableFile, range: Range<u64>) -> io::Result<Bytes> {
        let covered = self.covered();
        if range.start >= range.end || range.start >= covered {
            return file.read_at(range);
        }
        let first = (range.start / BLOCK) as usize;
        let last = ((range.end.min(covered) - 1) / BLOCK) as usize;
        if (first..=last).all(|i| self.is_checked(i)) {
            return file.read_at(range);
        }
        let start = first as u64 * BLOCK;
        let end = range.end.max((last as u64 + 1) * BLOCK);
        let bytes = file.read_at(start..end)?;
        for i in first..=last {
            if self.is_checked(i) {
                continue;
            }
            let at = ((i - first) as u64 * BLOCK) as usize;
            if crc32fast::hash(&bytes[at..at + BLOCK as usize]) != self.crcs[i] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: bytes {}..{} do not match their block checksum",
                        self.path.display(),
                        i as u64 * BLOCK,
                        (i as u64 + 1) * BLOCK
                    ),
                ));
            }
            self.mark_checked(i);
        }
        Ok(bytes.slice((range.start - start) as usize..(range.end - start) as usize))
    }
}

/// Bytes read per call while checking the tail.
const READ_CHUNK: u64 = 1 << 20;

/// The first-use check of segment `meta` through its block table: reads the footer and the
/// tail and ties the table to the manifest's CRC (module docs). `Ok(None)` when the file has
/// no usable table (segments written before it existed, or a footer that does not parse):
/// the caller then checks the whole file, which also names any damage. A table whose CRCs,
/// composed with the tail's, differ from the manifest is [`Error::Corrupted`].
pub fn check(fs: &dyn FileSystem, db_dir: &Path, meta: &SegmentMeta) -> Result<Option<BlockCrcs>> {
    let path = db_dir.join(&meta.path);
    let file = match fs.open_read(&path) {
        Ok(f) => f,
        // The whole-file check reports a missing file.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let size = file.len();
    if size != meta.size || size < 8 {
        return Ok(None);
    }
    let read = |r: Range<u64>| file.read_at(r).map_err(|e| Error::io("read", &path, e));
    let end = read(size - 8..size)?;
    if &end[4..] != b"PAR1" {
        return Ok(None);
    }
    let footer_len = u64::from(u32::from_le_bytes(end[..4].try_into().expect("4 bytes")));
    let Some(footer_start) = (size - 8).checked_sub(footer_len) else {
        return Ok(None);
    };
    let footer = read(footer_start..size - 8)?;
    let Ok(metadata) = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
    else {
        return Ok(None);
    };
    let table = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == KEY))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| BlockCrcs::decode(&path, v));
    let Some(table) = table else {
        return Ok(None);
    };
    if table.covered() > footer_start {
        return Ok(None);
    }
    let mut whole = crc32fast::Hasher::new();
    for &c in &table.crcs {
        whole.combine(&crc32fast::Hasher::new_with_initial_len(c, BLOCK));
    }
    let mut tail = crc32fast::Hasher::new();
    let mut pos = table.covered();
    while pos < size {
        let next = (pos + READ_CHUNK).min(size);
        tail.update(&read(pos..next)?);
        pos = next;
    }
    whole.combine(&tail);
    if whole.finalize() != meta.crc32 {
        return Err(Error::corrupted(
            &path,
            None,
            "segment checksum does not match the manifest",
        ));
    }
    Ok(Some(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Bytes);
    impl std::fmt::Debug for Mem {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Mem")
        }
    }
    impl ReadableFile for Mem {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, r: Range<u64>) -> io::Result<Bytes> {
            Ok(self.0.slice(r.start as usize..r.end as usize))
        }
    }

    #[test]
    fn blocks_compose_to_the_file_crc_and_catch_a_flipped_byte() {
        let data: Vec<u8> = (0..(3 * BLOCK + 100))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut h = BlockHasher::default();
        // Uneven writes, as a writer's buffer gives them.
        for chunk in data.chunks(5000) {
            h.update(chunk);
        }
        let table = BlockCrcs::decode(Path::new("s.parquet"), &h.encode()).expect("decodes");
        assert_eq!(table.covered(), 3 * BLOCK);
        let mut whole = crc32fast::Hasher::new();
        for &c in &table.crcs {
            whole.combine(&crc32fast::Hasher::new_with_initial_len(c, BLOCK));
        }
        let mut tail = crc32fast::Hasher::new();
        tail.update(&data[3 * BLOCK as usize..]);
        whole.combine(&tail);
        assert_eq!(whole.finalize(), crc32fast::hash(&data));

        let file = Mem(Bytes::from(data.clone()));
        let r = BLOCK - 10..BLOCK + 20;
        assert_eq!(
            table.read(&file, r.clone()).expect("reads")[..],
            data[r.start as usize..r.end as usize]
        );
        assert!(table.is_checked(0) && table.is_checked(1) && !table.is_checked(2));

        let mut bad = data.clone();
        bad[2 * BLOCK as usize + 5] ^= 1;
        let fresh = BlockCrcs::decode(Path::new("s.parquet"), &h.encode()).expect("decodes");
        let err = fresh
            .read(&Mem(Bytes::from(bad.clone())), 2 * BLOCK + 1..2 * BLOCK + 2)
            .expect_err("the flipped byte is caught");
        assert!(err.to_string().contains("s.parquet"), "{err}");
        // Reads of other blocks and of the tail still answer.
        assert!(fresh.read(&Mem(Bytes::from(bad.clone())), 0..10).is_ok());
        assert!(
            fresh
                .read(&Mem(Bytes::from(bad)), 3 * BLOCK..3 * BLOCK + 50)
                .is_ok()
        );
        assert!(BlockCrcs::decode(Path::new("s"), "4096:00000000").is_none());
        assert!(BlockCrcs::decode(Path::new("s"), "16384:0000000").is_none());
    }
}
