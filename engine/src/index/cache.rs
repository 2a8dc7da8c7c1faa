//! The indexes (and Parquet metadata) a database keeps open for lookups, shared by every
//! snapshot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::PageIndexPolicy;

use super::format::index_path;
use super::read::SegmentIndex;
use crate::io::FileSystem;
use crate::manifest::SegmentMeta;
use crate::segment::blocks::BlockCrcs;
use crate::segment::file::SegmentFile;
use crate::{Error, Result};

/// What the database keeps open per segment for lookups: its index (or why it is not
/// usable) and its Parquet metadata with page index. Each is loaded by the first user that
/// needs it, outside the cache's map lock: only users of the same segment wait for a load.
#[derive(Debug, Default)]
struct Cached {
    /// Set once, success or failure: an unusable index is reported once and scanned around.
    index: OnceLock<std::result::Result<Arc<SegmentIndex>, String>>,
    /// Set once loaded; a failed load is not kept (the next user tries again).
    parquet: OnceLock<ArrowReaderMetadata>,
    /// Held while loading `parquet`, so that one user reads it and the others wait.
    parquet_loading: Mutex<()>,
    /// Set once the segment passed its first-use check against the size and CRC its
    /// manifest entry records: with its block table when it has one (reads then check the
    /// blocks they touch), `None` when the whole file was checked. A failed check is not
    /// kept (the next user checks again).
    verified: OnceLock<Option<Arc<BlockCrcs>>>,
    /// Held while checking, so that one user reads the file and the others wait.
    verifying: Mutex<()>,
    /// The span rollup rows of a span segment, once read (or computed from its rows); a
    /// failure is not kept.
    rollup: OnceLock<arrow::array::RecordBatch>,
    /// Held while loading `rollup`.
    rollup_loading: Mutex<()>,
    /// The term index of a span or log segment (or why it is not usable), set once.
    terms: OnceLock<std::result::Result<Arc<crate::search::index::TermIndex>, String>>,
    /// The log patterns of a log segment, once read (or mined from its rows); a failure is
    /// not kept.
    patterns: OnceLock<Arc<crate::search::log_patterns::SegmentPatterns>>,
    /// Held while loading `patterns`.
    patterns_loading: Mutex<()>,
}

/// Open segment indexes, shared by every snapshot of a database. An index that cannot be
/// used (missing, damaged, unreadable) is reported once in the log; lookups then scan that
/// segment. No file is read while the cache's own lock is held.
#[derive(Debug, Default)]
pub struct IndexCache {
    segments: Mutex<HashMap<u64, Arc<Cached>>>,
}

impl IndexCache {
    /// The slot of segment `id`, created empty: the map lock is held for the lookup only.
    fn entry(&self, id: u64) -> Arc<Cached> {
        let mut map = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id).or_default().clone()
    }

    /// The index of `seg` (opened through `fs` on first use), or `None` when it is missing,
    /// damaged or could not be read.
    pub fn index(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Option<Arc<SegmentIndex>> {
        let entry = self.entry(seg.id);
        let index = entry.index.get_or_init(|| {
            let path = index_path(&dir.join(&seg.path));
            SegmentIndex::open(fs, &path, seg.signal, seg.rows)
                .map(Arc::new)
                .map_err(|e| {
                    log::warn!(
                        "trace index unusable, lookups scan segment {} instead: {e} \
                         (`scry reindex` rebuilds it)",
                        seg.path
                    );
                    e.to_string()
                })
        });
        index.as_ref().ok().cloned()
    }

    /// The term index of `seg` (opened through `fs` on first use), or `None` when it is
    /// missing (a store from before term indexes), damaged or could not be read: searches
    /// then scan the segment. An index that opened, or one found damaged, is remembered
    /// (damage is logged once); a missing file or an I/O error is not, so the next search
    /// tries again (after `scry reindex`, or once the error is gone).
    pub fn term_index(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Option<Arc<crate::search::index::TermIndex>> {
        if !crate::search::index::indexed(seg.signal) {
            return None;
        }
        let entry = self.entry(seg.id);
        if let Some(known) = entry.terms.get() {
            return known.as_ref().ok().cloned();
        }
        let path = crate::search::index::term_index_path(&dir.join(&seg.path));
        match crate::search::index::TermIndex::open(fs, &path, seg.signal, seg.rows) {
            Ok(idx) => entry
                .terms
                .get_or_init(|| Ok(Arc::new(idx)))
                .as_ref()
                .ok()
                .cloned(),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                log::debug!(
                    "segment {} has no term index: searches scan it (`scry reindex` builds it)",
                    seg.path
                );
                None
            }
            Err(e @ Error::Corrupted { .. }) => {
                log::warn!(
                    "term index unusable, searches scan segment {} instead: {e} (`scry \
                     reindex` rebuilds it)",
                    seg.path
                );
                let _ = entry.terms.set(Err(e.to_string()));
                None
            }
            Err(e) => {
                log::warn!(
                    "term index of segment {} not read, scanning it: {e}",
                    seg.path
                );
                None
            }
        }
    }

    /// Checks, once per segment and process, the file of `seg` against the size and CRC-32
    /// its manifest entry records, before any of its bytes is used. A segment with a block
    /// table ([`crate::segment::blocks`]) is checked by reading its tail (last data pages,
    /// page index, footer) and tying the table to the manifest's CRC; the table is returned
    /// and reads check each block they touch ([`SegmentFile`]). A segment without one is
    /// read whole (sequentially, 1 MiB at a time) and `None` is returned. Concurrent callers
    /// for the same segment wait for the first; later callers return at once. Damage is
    /// [`Error::Corrupted`] naming the file; a failure is not remembered, so a file that
    /// could not be read (an I/O error) is checked again on the next use.
    ///
    /// The check trusts the file to stay as it was checked for the life of the process:
    /// damage that happens after it is not seen (see `docs/format.md`, "Integrity").
    pub fn verify_segment(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Result<Option<Arc<BlockCrcs>>> {
        let entry = self.entry(seg.id);
        if let Some(v) = entry.verified.get() {
            return Ok(v.clone());
        }
        let _checking = entry.verifying.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = entry.verified.get() {
            return Ok(v.clone());
        }
        let blocks = match crate::segment::blocks::check(fs, dir, seg)? {
            Some(b) => Some(Arc::new(b)),
            None => {
                crate::segment::reader::verify_segment(fs, dir, seg)?;
                None
            }
        };
        Ok(entry.verified.get_or_init(|| blocks).clone())
    }

    /// The Parquet metadata (with page index) of `seg`, loaded once, after the segment's
    /// first-use check ([`IndexCache::verify_segment`]) passed.
    pub fn parquet_metadata(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Result<ArrowReaderMetadata> {
        let entry = self.entry(seg.id);
        if let Some(m) = entry.parquet.get() {
            return Ok(m.clone());
        }
        let _loading = entry
            .parquet_loading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(m) = entry.parquet.get() {
            return Ok(m.clone());
        }
        let blocks = self.verify_segment(fs, dir, seg)?;
        let path = dir.join(&seg.path);
        let file = SegmentFile::new(
            fs.open_read(&path)
                .map_err(|e| Error::io("open", &path, e))?,
            blocks,
        );
        let m = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::from(true)),
        )
        .map_err(|source| Error::Parquet {
            path: path.clone(),
            source,
        })?;
        Ok(entry.parquet.get_or_init(|| m).clone())
    }

    /// The span rollup rows of span segment `seg` (the `span_metrics` schema), read once
    /// per segment and process: its rollup file, or computed from its rows when that is
    /// missing or damaged ([`crate::rollup::of_segment`]).
    pub fn rollup(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Result<arrow::array::RecordBatch> {
        let entry = self.entry(seg.id);
        if let Some(b) = entry.rollup.get() {
            return Ok(b.clone());
        }
        let _loading = entry
            .rollup_loading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(b) = entry.rollup.get() {
            return Ok(b.clone());
        }
        let batch = crate::rollup::batch_of_segment(fs, dir, seg)?;
        Ok(entry.rollup.get_or_init(|| batch).clone())
    }

    /// The log patterns of log segment `seg`, read once per segment and process: its
    /// pattern file, or mined from its rows when that is missing or damaged
    /// ([`crate::search::log_patterns::of_segment`]).
    pub fn log_patterns(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Result<Arc<crate::search::log_patterns::SegmentPatterns>> {
        let entry = self.entry(seg.id);
        if let Some(p) = entry.patterns.get() {
            return Ok(p.clone());
        }
        let _loading = entry
            .patterns_loading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = entry.patterns.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(crate::search::log_patterns::of_segment(fs, dir, seg)?);
        Ok(entry.patterns.get_or_init(|| p).clone())
    }

    /// Forgets segments no longer in the manifest (their files are going away).
    pub fn retain(&self, live: impl Fn(u64) -> bool) {
        let mut map = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|id, _| live(*id));
    }

    /// Forgets one segment, so its index is reopened on next use (after a rebuild).
    pub fn forget(&self, id: u64) {
        let mut map = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&id);
    }

    /// (indexes open, bytes they hold in memory).
    pub fn stats(&self) -> (usize, usize) {
        let map = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        let open: Vec<_> = map
            .values()
            .filter_map(|c| c.index.get().and_then(|i| i.as_ref().ok()))
            .collect();
        (open.len(), open.iter().map(|i| i.memory()).sum())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;
    use std::sync::Condvar;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use roaring::RoaringBitmap;

    use super::*;
    use crate::Signal;
    use crate::index::encode;
    use crate::io::{DirEntry, LockGuard, ReadableFile, StdFs, WritableFile};

    /// The operating system's file system, except that reads of segment 1's files (its
    /// index and its Parquet file) wait until the gate opens.
    #[derive(Debug, Default)]
    struct GatedFs {
        open: Mutex<bool>,
        opened: Condvar,
        waiting: AtomicUsize,
    }

    impl GatedFs {
        fn wait(&self, path: &Path) {
            if path.file_stem().is_some_and(|s| s == "1") {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                while !*open {
                    open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
                }
            }
        }

        fn release(&self) {
            *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.opened.notify_all();
        }
    }

    impl FileSystem for GatedFs {
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            StdFs.create_dir_all(path)
        }
        fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
            StdFs.create(path)
        }
        fn read(&self, path: &Path) -> io::Result<Bytes> {
            self.wait(path);
            StdFs.read(path)
        }
        fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
            self.wait(path);
            StdFs.open_read(path)
        }
        fn map(&self, path: &Path) -> io::Result<Bytes> {
            self.wait(path);
            StdFs.map(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_file(path)
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_dir(path)
        }
        fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
            StdFs.read_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.sync_dir(path)
        }
        fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
            StdFs.truncate(path, len)
        }
        fn file_size(&self, path: &Path) -> io::Result<u64> {
            StdFs.file_size(path)
        }
        fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
            StdFs.try_lock(path)
        }
    }

    /// Segment `id` of 4 spans rows with an index holding one trace id (its Parquet file
    /// is not written: reading its metadata fails, after the gate).
    fn segment(dir: &Path, id: u64) -> SegmentMeta {
        let path = format!("spans/p/{id}.parquet");
        let map = HashMap::from([([id as u8; 16], RoaringBitmap::from_iter([1u32]))]);
        let full: PathBuf = dir.join(&path);
        std::fs::create_dir_all(full.parent().expect("dir")).expect("mkdir");
        std::fs::write(
            index_path(&full),
            encode(Signal::Spans, 4, &map).expect("encodes"),
        )
        .expect("write");
        SegmentMeta {
            id,
            signal: Signal::Spans,
            partition_start: 0,
            partition_end: 1,
            path,
            rows: 4,
            min_time: 0,
            max_time: 0,
            size: 0,
            crc32: 0,
            thinned: None,
        }
    }

    #[test]
    fn opening_one_segment_blocks_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (one, two) = (segment(dir.path(), 1), segment(dir.path(), 2));
        let fs = Arc::new(GatedFs::default());
        let cache = Arc::new(IndexCache::default());

        // Segment 1's first users wait in the file system: one opening its index, one
        // loading its Parquet metadata.
        let mut first_users = Vec::new();
        for metadata in [false, true] {
            let (fs, cache, dir, one) = (
                fs.clone(),
                cache.clone(),
                dir.path().to_path_buf(),
                one.clone(),
            );
            first_users.push(std::thread::spawn(move || {
                if metadata {
                    assert!(cache.parquet_metadata(fs.as_ref(), &dir, &one).is_err());
                } else {
                    assert!(cache.index(fs.as_ref(), &dir, &one).is_some());
                }
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while fs.waiting.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let both_waited_in_the_fs = fs.waiting.load(Ordering::SeqCst) == 2;

        // Meanwhile segment 2 opens, and the cache answers.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (f, c, d) = (fs.clone(), cache.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let idx = c.index(f.as_ref(), &d, &two).is_some();
            let stats = c.stats();
            let _ = tx.send((idx, stats));
        });
        let other = rx.recv_timeout(Duration::from_secs(10));
        fs.release();
        let (idx, stats) = other.expect("segment 2 waited for segment 1's file");
        assert!(
            both_waited_in_the_fs,
            "loading segment 1's metadata waited for its index"
        );
        assert!(idx);
        assert_eq!(stats.0, 1, "segment 1 is not open yet");
        for t in first_users {
            t.join().expect("first users of segment 1 finish");
        }
        assert_eq!(cache.stats().0, 2);
    }
}
