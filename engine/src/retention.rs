//! Retention: dropping whole time partitions, and deleting the files of segments that left
//! the manifest once no snapshot can read them any more.

use std::path::{Path, PathBuf};
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
            for file in crate::segment::segment_files(path) {
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
    let gone: Vec<Arc<SegmentMeta>> = old
        .segments
        .iter()
        .filter(|s| s.partition_end <= cutoff_ns)
        .cloned()
        .collect();
    let stats = remove_segments(shared, &gone, obsolete)?;
    if stats.segments > 0 {
        log::info!(
            "retention dropped {} segment(s), {} rows, of partitions ending at or before {cutoff_ns}",
            stats.segments,
            stats.rows
        );
    }
    Ok(stats)
}

/// Retention by age (`cutoff_ns`, as [`drop_before`]) and then by disk budget: while the
/// live segments and their trace indexes take more than `max_bytes`, the partitions that end
/// first are dropped (every signal's segments of them), oldest first. With
/// `keep_interesting`, nothing is dropped by the budget while a partition that ended is not
/// thinned yet: the compaction thread thins them first ([`crate::compaction`]), and a later
/// pass drops what is still over budget.
pub fn retain(
    shared: &Shared,
    cutoff_ns: Option<i64>,
    max_bytes: Option<u64>,
    obsolete: &mut ObsoleteFiles,
) -> Result<RetentionStats> {
    // Partitions within `keep_interesting` of the cutoff are thinned (by the compaction
    // thread), not dropped.
    let keep = shared
        .opts
        .keep_interesting
        .map_or(0, |k| i64::try_from(k.as_nanos()).unwrap_or(i64::MAX));
    let mut stats = match cutoff_ns {
        Some(c) => drop_before(shared, c.saturating_sub(keep), obsolete)?,
        None => RetentionStats::default(),
    };
    let Some(budget) = max_bytes else {
        return Ok(stats);
    };
    let m = shared.read_state().manifest.clone();
    let mut sized: Vec<(i64, u64)> = m
        .segments
        .iter()
        .map(|s| (s.partition_end, segment_bytes(shared, s)))
        .collect();
    let total: u64 = sized.iter().map(|(_, b)| b).sum();
    if total <= budget {
        return Ok(stats);
    }
    sized.sort_unstable();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    // With keep_interesting, nothing goes whole while a partition that ended can still be
    // thinned: the compaction thread thins them first, oldest first (unless thinning one
    // failed), and a later pass drops what is still over budget.
    if shared.opts.keep_interesting.is_some()
        && let Some(s) = m.segments.iter().find(|s| {
            s.signal != crate::Signal::Metrics
                && s.thinned.is_none()
                && s.partition_end <= now
                && !shared.thin_failed((s.partition_start, s.partition_end))
        })
    {
        log::info!(
            "disk budget of {budget} bytes: {total} bytes in segments and indexes; partitions \
             are thinned (the first ends at {}) before any is dropped",
            s.partition_end
        );
        return Ok(stats);
    }
    let mut left = total;
    let mut cutoff = None;
    let mut i = 0;
    while i < sized.len() && left > budget {
        let end = sized[i].0;
        // Every segment of the partitions ending at `end` goes together.
        while i < sized.len() && sized[i].0 == end {
            left -= sized[i].1;
            i += 1;
        }
        cutoff = Some(end);
    }
    if let Some(c) = cutoff {
        let more = drop_before(shared, c, obsolete)?;
        log::info!(
            "disk budget of {budget} bytes: {total} bytes in segments and indexes, dropped \
             partitions ending at or before {c} ({} segment(s))",
            more.segments
        );
        stats.segments += more.segments;
        stats.rows += more.rows;
        stats.bytes += more.bytes;
    }
    Ok(stats)
}

/// Bytes a segment takes on disk: its Parquet file, its trace index, its term index (spans
/// and logs), its log patterns (logs) and (spans) its rollup.
fn segment_bytes(shared: &Shared, s: &SegmentMeta) -> u64 {
    let path = shared.dir.join(&s.path);
    let [index, terms, patterns, rollup, _] = crate::segment::segment_files(&path);
    let size = |p: &Path| shared.fs.file_size(p).unwrap_or(0);
    s.size + size(&index) + size(&terms) + size(&patterns) + size(&rollup)
}

/// Bytes the segments of `m`, their trace and term indexes, log patterns and span rollups
/// take on disk (what a disk budget counts).
pub fn store_bytes(shared: &Shared, m: &Manifest) -> u64 {
    m.segments.iter().map(|s| segment_bytes(shared, s)).sum()
}

/// Swaps a compaction's `output` in for its `inputs` if every input is still in the
/// manifest (retention may have dropped some since the merge began); returns whether it
/// did. The outputs take the place of the first input in the manifest's order.
pub fn apply_compaction(
    shared: &Shared,
    inputs: &[Arc<SegmentMeta>],
    outputs: Vec<SegmentMeta>,
    obsolete: &mut ObsoleteFiles,
) -> Result<bool> {
    let old = shared.read_state().manifest.clone();
    let ids: std::collections::HashSet<u64> = inputs.iter().map(|s| s.id).collect();
    let live = old.segments.iter().filter(|s| ids.contains(&s.id)).count();
    if live != ids.len() {
        return Ok(false);
    }
    let mut segments = Vec::with_capacity(old.segments.len() + outputs.len());
    let mut outputs = Some(outputs);
    for s in &old.segments {
        if ids.contains(&s.id) {
            if let Some(o) = outputs.take() {
                segments.extend(o.into_iter().map(Arc::new));
            }
        } else {
            segments.push(s.clone());
        }
    }
    publish(shared, &old, segments)?;
    for seg in inputs {
        obsolete.add(seg, shared.dir.join(&seg.path));
    }
    Ok(true)
}

/// Writes and publishes a manifest like `old` with `segments`, then removes `old`'s file.
fn publish(shared: &Shared, old: &Manifest, segments: Vec<Arc<SegmentMeta>>) -> Result<()> {
    let new = Manifest {
        version: old.version + 1,
        next_segment_id: old.next_segment_id.max(shared.next_segment_id()),
        wal_replay_from: old.wal_replay_from,
        segments,
        wal_owner: shared.fs.wal_owner(),
    };
    manifest::write(shared.fs.as_ref(), &shared.dir, &new)?;
    shared.replace_manifest(Arc::new(new));
    let old_path = manifest::file_path(&shared.dir, old.version);
    if let Err(e) = shared.fs.remove_file(&old_path) {
        log::warn!("could not remove old manifest {}: {e}", old_path.display());
    }
    Ok(())
}

/// Publishes a manifest without `gone` and hands their files to `obsolete`.
fn remove_segments(
    shared: &Shared,
    gone: &[Arc<SegmentMeta>],
    obsolete: &mut ObsoleteFiles,
) -> Result<RetentionStats> {
    let mut stats = RetentionStats::default();
    if gone.is_empty() {
        return Ok(stats);
    }
    let old = shared.read_state().manifest.clone();
    let ids: std::collections::HashSet<u64> = gone.iter().map(|s| s.id).collect();
    let keep = old
        .segments
        .iter()
        .filter(|s| !ids.contains(&s.id))
        .cloned()
        .collect();
    publish(shared, &old, keep)?;
    for seg in gone {
        stats.segments += 1;
        stats.rows += seg.rows;
        stats.bytes += seg.size;
        obsolete.add(seg, shared.dir.join(&seg.path));
    }
    Ok(stats)
}
