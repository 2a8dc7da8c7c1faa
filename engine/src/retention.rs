//! Retention: dropping whole time partitions, and deleting the files of segments that left
//! the manifest once no snapshot can read them any more.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use crate::Result;
use crate::manifest::{self, Manifest, SegmentMeta};
use crate::state::Shared;

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Segments removed from the manifest.
    pub segments: usize,
    /// Rows in those segments.
    pub rows: u64,
    /// Bytes of those segments (freed once no snapshot reads them).
    pub bytes: u64,
}

/// Segment files no longer in the manifest, waiting for the last snapshot that names them.
///
/// A snapshot holds its manifest, which holds an `Arc` of every segment it names; once the
/// last such `Arc` is gone, no reader can open the file and it is deleted. A crash before
/// that leaves the file behind, and the next open removes it as named by no manifest.
#[derive(Default)]
pub struct ObsoleteFiles {
    pending: Vec<(Weak<SegmentMeta>, PathBuf, u64)>,
}

impl ObsoleteFiles {
    /// Registers a segment that left the manifest.
    pub fn add(&mut self, seg: &Arc<SegmentMeta>, path: PathBuf) {
        self.pending.push((Arc::downgrade(seg), path, seg.id));
    }

    /// Deletes every registered file that no snapshot can read any more.
    pub fn purge(&mut self, shared: &Shared) {
        self.pending.retain(|(seg, path, id)| {
            if seg.strong_count() > 0 {
                return true;
            }
            shared.indexes.forget(*id);
            for file in [crate::index::index_path(path), path.clone()] {
                match shared.fs.remove_file(&file) {
                    Ok(()) => log::debug!("removed obsolete {}", file.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => log::warn!("could not remove obsolete {}: {e}", file.display()),
                }
            }
            if let Some(dir) = path.parent() {
                // Succeeds only when the partition has no segment left.
                let _ = shared.fs.remove_dir(dir);
            }
            false
        });
    }

    /// Files still waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no file is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Removes from the manifest every segment whose partition ends at or before `cutoff_ns`.
/// Runs on the flush manager thread, the only writer of manifests.
pub fn drop_before(
    shared: &Shared,
    cutoff_ns: i64,
    obsolete: &mut ObsoleteFiles,
) -> Result<RetentionStats> {
    let old = shared.read_state().manifest.clone();
    let (gone, keep): (Vec<_>, Vec<_>) = old
        .segments
        .iter()
        .cloned()
        .partition(|s| s.partition_end <= cutoff_ns);
    let mut stats = RetentionStats::default();
    if gone.is_empty() {
        return Ok(stats);
    }
    let new = Manifest {
        version: old.version + 1,
        next_segment_id: old.next_segment_id,
        wal_replay_from: old.wal_replay_from,
        segments: keep,
    };
    manifest::write(shared.fs.as_ref(), &shared.dir, &new)?;
    shared.replace_manifest(Arc::new(new));
    let old_path = manifest::file_path(&shared.dir, old.version);
    if let Err(e) = shared.fs.remove_file(&old_path) {
        log::warn!("could not remove old manifest {}: {e}", old_path.display());
    }
    for seg in &gone {
        stats.segments += 1;
        stats.rows += seg.rows;
        stats.bytes += seg.size;
        obsolete.add(seg, shared.dir.join(&seg.path));
    }
    log::info!(
        "retention dropped {} segment(s), {} rows, of partitions ending at or before {cutoff_ns}",
        stats.segments,
        stats.rows
    );
    Ok(stats)
}
