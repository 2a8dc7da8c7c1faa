//! The indexes (and Parquet metadata) a database keeps open for lookups, shared by every
//! snapshot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::PageIndexPolicy;

use super::format::index_path;
use super::read::SegmentIndex;
use crate::io::FileSystem;
use crate::manifest::SegmentMeta;
use crate::segment::file::SegmentFile;
use crate::{Error, Result};

/// What the database keeps open per segment for lookups: its index (or why it is not
/// usable) and its Parquet metadata with page index.
#[derive(Debug)]
struct Cached {
    index: std::result::Result<Arc<SegmentIndex>, String>,
    parquet: Mutex<Option<ArrowReaderMetadata>>,
}

/// Open segment indexes, shared by every snapshot of a database. An index that cannot be
/// used (missing, damaged) is reported once in the log; lookups then scan that segment.
#[derive(Debug, Default)]
pub struct IndexCache {
    segments: Mutex<HashMap<u64, Arc<Cached>>>,
}

impl IndexCache {
    fn entry(&self, fs: &dyn FileSystem, dir: &Path, seg: &SegmentMeta) -> Arc<Cached> {
        let mut map = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(seg.id)
            .or_insert_with(|| {
                let path = index_path(&dir.join(&seg.path));
                let index = SegmentIndex::open(fs, &path, seg.signal, seg.rows)
                    .map(Arc::new)
                    .map_err(|e| {
                        log::warn!(
                            "trace index unusable, lookups scan segment {} instead: {e} \
                             (`scry reindex` rebuilds it)",
                            seg.path
                        );
                        e.to_string()
                    });
                Arc::new(Cached {
                    index,
                    parquet: Mutex::new(None),
                })
            })
            .clone()
    }

    /// The index of `seg` (opened through `fs` on first use), or `None` when it is missing,
    /// damaged or could not be read.
    pub fn index(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Option<Arc<SegmentIndex>> {
        self.entry(fs, dir, seg).index.as_ref().ok().cloned()
    }

    /// The Parquet metadata (with page index) of `seg`, loaded once.
    pub fn parquet_metadata(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        seg: &SegmentMeta,
    ) -> Result<ArrowReaderMetadata> {
        let entry = self.entry(fs, dir, seg);
        let mut slot = entry.parquet.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = slot.as_ref() {
            return Ok(m.clone());
        }
        let path = dir.join(&seg.path);
        let file = SegmentFile(
            fs.open_read(&path)
                .map_err(|e| Error::io("open", &path, e))?,
        );
        let m = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::from(true)),
        )
        .map_err(|source| Error::Parquet {
            path: path.clone(),
            source,
        })?;
        *slot = Some(m.clone());
        Ok(m)
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
        let open: Vec<_> = map.values().filter_map(|c| c.index.as_ref().ok()).collect();
        (open.len(), open.iter().map(|i| i.memory()).sum())
    }
}
