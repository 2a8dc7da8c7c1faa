//! The flush manager thread.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::worker::{WorkItem, panic_message};
use crate::manifest::{self, Manifest, SegmentMeta};
use crate::memtable::FrozenMemtable;
use crate::retention::{self, ObsoleteFiles, RetentionStats};
use crate::segment::writer::SegmentJob;
use crate::state::Shared;
use crate::{Error, Result, Signal, partition, wal};

/// Messages to the manager.
pub enum FlushMsg {
    /// Write this memtable out. Memtables arrive in freeze order.
    Flush(Arc<FrozenMemtable>),
    /// Drop every segment whose partition ends at or before `cutoff_ns`.
    DropBefore {
        /// Partition end cutoff, ns since the epoch.
        cutoff_ns: i64,
        /// The answer.
        reply: Sender<Result<RetentionStats>>,
    },
    /// Swap a compaction's output in for its inputs, if every input is still live; answers
    /// whether it did.
    Compacted {
        /// The merged segments.
        inputs: Vec<Arc<SegmentMeta>>,
        /// The segments written in their place (none: every row was dropped).
        outputs: Vec<SegmentMeta>,
        /// The answer.
        reply: Sender<Result<bool>>,
    },
    /// Apply retention now: drop partitions ending at or before `cutoff_ns`, then the
    /// oldest partitions until the store fits `max_bytes`.
    Retain {
        /// Partition end cutoff, ns since the epoch.
        cutoff_ns: Option<i64>,
        /// Disk budget in bytes.
        max_bytes: Option<u64>,
        /// The answer.
        reply: Sender<Result<RetentionStats>>,
    },
    /// Stop after the messages before this one.
    Close,
}

/// How often the manager applies [`crate::Options::retention`] while idle.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// How often the manager wakes to delete obsolete files while idle.
const TICK: Duration = Duration::from_millis(500);

fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::Poisoned {
            reason: format!(
                "the flush manager panicked during {what}: {}",
                panic_message(&p)
            ),
        })
    })
}

/// Body of the `scry-flush` thread.
pub fn run(shared: Arc<Shared>, rx: Receiver<FlushMsg>, workers: Sender<WorkItem>) {
    let mut obsolete = ObsoleteFiles::default();
    let mut last_retention: Option<Instant> = None;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(FlushMsg::Flush(frozen)) => {
                #[cfg(test)]
                if shared
                    .test_hooks
                    .panic_in_flush_manager
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    panic!("injected panic in the flush manager");
                }
                // After a failure its data stays in the log; recovery will flush it.
                let started = Instant::now();
                if !shared.is_poisoned()
                    && let Err(e) = guarded("a flush", || flush_one(&shared, &frozen, &workers))
                {
                    shared.poison(format!("flush of memtable {} failed: {e}", frozen.id));
                } else {
                    shared.counters.record_flush(started.elapsed());
                }
            }
            Ok(FlushMsg::DropBefore { cutoff_ns, reply }) => {
                let result = if shared.is_poisoned() {
                    Err(shared.poison_error())
                } else {
                    guarded("retention", || {
                        retention::drop_before(&shared, cutoff_ns, &mut obsolete)
                    })
                };
                if let Err(e) = &result {
                    shared.poison(format!("retention failed: {e}"));
                }
                let _ = reply.send(result);
            }
            Ok(FlushMsg::Compacted {
                inputs,
                outputs,
                reply,
            }) => {
                let result = if shared.is_poisoned() {
                    Err(shared.poison_error())
                } else {
                    guarded("a compaction's publication", || {
                        retention::apply_compaction(&shared, &inputs, outputs, &mut obsolete)
                    })
                };
                if let Err(e) = &result {
                    shared.poison(format!("publishing a compaction failed: {e}"));
                }
                let _ = reply.send(result);
            }
            Ok(FlushMsg::Retain {
                cutoff_ns,
                max_bytes,
                reply,
            }) => {
                let result = if shared.is_poisoned() {
                    Err(shared.poison_error())
                } else {
                    guarded("retention", || {
                        retention::retain(&shared, cutoff_ns, max_bytes, &mut obsolete)
                    })
                };
                if let Err(e) = &result {
                    shared.poison(format!("retention failed: {e}"));
                }
                let _ = reply.send(result);
            }
            Ok(FlushMsg::Close) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if (shared.opts.retention.is_some() || shared.opts.max_bytes.is_some())
            && !shared.is_poisoned()
            && last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY)
        {
            last_retention = Some(Instant::now());
            let cutoff = shared.opts.retention.map(retention_cutoff);
            if let Err(e) = guarded("retention", || {
                retention::retain(&shared, cutoff, shared.opts.max_bytes, &mut obsolete)
            }) {
                shared.poison(format!("retention failed: {e}"));
            }
        }
        obsolete.purge(&shared);
    }
    obsolete.purge(&shared);
    if !obsolete.is_empty() {
        log::info!(
            "{} obsolete segment file(s) are still read by snapshots; the next open removes them",
            obsolete.len()
        );
    }
}

/// Partitions ending at or before this are older than `keep`.
fn retention_cutoff(keep: Duration) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    now.saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX))
}

/// Writes one frozen memtable as segments and publishes them.
fn flush_one(
    shared: &Arc<Shared>,
    frozen: &Arc<FrozenMemtable>,
    workers: &Sender<WorkItem>,
) -> Result<()> {
    let width = shared.opts.partition_nanos();
    let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
    let mut pending = 0usize;
    for signal in Signal::ALL {
        let batches = frozen.table.batches(signal);
        if batches.is_empty() {
            continue;
        }
        for (start, end, rows) in coarsen_sparse(split_by_partition(batches, width), width) {
            let job = SegmentJob {
                signal,
                id: shared.alloc_segment_id(),
                partition_start: start,
                partition_end: end,
                batches: batches.to_vec(),
                rows,
            };
            workers
                .send(WorkItem {
                    job,
                    reply: reply_tx.clone(),
                })
                .map_err(|_| Error::Poisoned {
                    reason: "flush worker threads are gone".into(),
                })?;
            pending += 1;
        }
    }
    drop(reply_tx);

    let mut written = Vec::with_capacity(pending);
    let mut first_error = None;
    for _ in 0..pending {
        match reply_rx.recv() {
            Ok(Ok(meta)) => written.push(Arc::new(meta)),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(Error::Poisoned {
                    reason: "a flush worker thread died".into(),
                });
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    written.sort_by_key(|m| m.id);
    let bytes: u64 = written.iter().map(|m| m.size).sum();

    let old = shared.read_state().manifest.clone();
    let mut segments = old.segments.clone();
    segments.extend(written);
    let new = Manifest {
        version: old.version + 1,
        next_segment_id: shared.next_segment_id(),
        wal_replay_from: frozen.wal_seq + 1,
        segments,
        wal_owner: shared.fs.wal_owner(),
    };
    manifest::write(shared.fs.as_ref(), &shared.dir, &new)?;
    shared.publish(Arc::new(new), frozen.id);
    shared
        .counters
        .flushed_bytes
        .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);

    // Housekeeping: failures here cost disk space, not data; open cleans up either way.
    let old_path = manifest::file_path(&shared.dir, old.version);
    if let Err(e) = shared.fs.remove_file(&old_path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("could not remove old manifest {}: {e}", old_path.display());
    }
    let wal_dir = shared.wal_dir();
    match shared.fs.read_dir(&wal_dir) {
        Ok(entries) => {
            for e in entries {
                if wal::parse_file_name(&e.path).is_some_and(|s| s <= frozen.wal_seq)
                    && let Err(err) = shared.fs.remove_file(&e.path)
                {
                    log::warn!(
                        "could not remove flushed log file {}: {err}",
                        e.path.display()
                    );
                }
            }
        }
        Err(e) => log::warn!("could not list {}: {e}", wal_dir.display()),
    }
    shared.flushed(frozen.id);
    Ok(())
}

/// The rows of one partition as (batch, row) positions; `None` for every row.
type PartitionRows = Option<Vec<(usize, usize)>>;

/// A partition of a flush holding fewer rows than this is *sparse*.
pub(crate) const SPARSE_PARTITION_ROWS: usize = 1024;
/// A flush writes at most this many sparse segments per signal at the partition width
/// before it widens their partitions.
pub(crate) const MAX_SPARSE_SEGMENTS: usize = 16;
/// How a sparse partition widens, step by step: ×24 (an hour becomes a day), ×7 (a week),
/// ×4 (4 weeks), ×13 (52 weeks).
const COARSEN_STEPS: [i64; 4] = [24, 7, 4, 13];

/// Keeps a flush of sparse data (a few rows in each of many partitions, e.g. old data
/// spread over months) from writing a tiny segment per partition. Partitions with at least
/// [`SPARSE_PARTITION_ROWS`] rows keep the configured width. While more than
/// [`MAX_SPARSE_SEGMENTS`] sparse partitions remain, the sparse ones are merged into the
/// enclosing partition of the next coarser width ([`COARSEN_STEPS`]); widths are multiples
/// of each other, so the partitions nest and the merged partition's bounds hold every row
/// it gets. Returns `(start, end, rows)` per segment to write.
///
/// Time pruning stays exact: it uses each segment's recorded `min_time`/`max_time`, and a
/// widened segment records its own (wider) partition bounds.
fn coarsen_sparse(parts: Vec<(i64, PartitionRows)>, width: i64) -> Vec<(i64, i64, PartitionRows)> {
    let end = |start: i64, w: i64| start.saturating_add(w);
    // Few partitions (the common case: one): nothing to merge.
    if parts.len() <= MAX_SPARSE_SEGMENTS {
        return parts
            .into_iter()
            .map(|(start, rows)| (start, end(start, width), rows))
            .collect();
    }
    let mut dense: Vec<(i64, i64, PartitionRows)> = Vec::new();
    let mut sparse: Vec<(i64, Vec<(usize, usize)>)> = Vec::new();
    for (start, rows) in parts {
        // Several partitions: split_by_partition lists the rows of each.
        let rows = rows.unwrap_or_default();
        if rows.len() >= SPARSE_PARTITION_ROWS {
            dense.push((start, end(start, width), Some(rows)));
        } else {
            sparse.push((start, rows));
        }
    }
    let mut w = width;
    for step in COARSEN_STEPS {
        if sparse.len() <= MAX_SPARSE_SEGMENTS {
            break;
        }
        let Some(wider) = w.checked_mul(step) else {
            break;
        };
        w = wider;
        let mut merged: BTreeMap<i64, Vec<(usize, usize)>> = BTreeMap::new();
        for (start, rows) in sparse {
            merged
                .entry(partition::partition_start(start, w))
                .or_default()
                .extend(rows);
        }
        sparse = Vec::with_capacity(merged.len());
        for (start, rows) in merged {
            if rows.len() >= SPARSE_PARTITION_ROWS {
                dense.push((start, end(start, w), Some(rows)));
            } else {
                sparse.push((start, rows));
            }
        }
    }
    dense.extend(
        sparse
            .into_iter()
            .map(|(start, rows)| (start, end(start, w), Some(rows))),
    );
    dense.sort_by_key(|(start, end, _)| (*start, *end));
    dense
}

/// Splits a signal's rows by time partition: per partition start, its rows, or `None` when
/// every row is in that one partition (the common case).
fn split_by_partition(batches: &[RecordBatch], width: i64) -> Vec<(i64, PartitionRows)> {
    let times = |b: &RecordBatch| {
        b.column(0)
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .clone()
    };
    let first = batches
        .iter()
        .find_map(|b| times(b).first().copied())
        .map(|t| partition::partition_start(t, width))
        .unwrap_or(0);
    if batches.iter().all(|b| {
        times(b)
            .iter()
            .all(|t| partition::partition_start(*t, width) == first)
    }) {
        return vec![(first, None)];
    }
    let mut rows: BTreeMap<i64, Vec<(usize, usize)>> = BTreeMap::new();
    for (bi, b) in batches.iter().enumerate() {
        for (ri, t) in times(b).iter().enumerate() {
            rows.entry(partition::partition_start(*t, width))
                .or_default()
                .push((bi, ri));
        }
    }
    rows.into_iter()
        .map(|(start, r)| (start, Some(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    fn part(start: i64, rows: usize) -> (i64, PartitionRows) {
        (start, Some((0..rows).map(|r| (0, r)).collect()))
    }

    #[test]
    fn sparse_partitions_widen_and_dense_ones_keep_their_width() {
        let day = 24 * HOUR;
        // A dense hour, and 20 sparse hours of the same day.
        let mut parts = vec![part(3 * HOUR, SPARSE_PARTITION_ROWS)];
        parts.extend((4..24).map(|h| part(h * HOUR, 2)));
        let out = coarsen_sparse(parts, HOUR);
        let shape: Vec<(i64, i64, usize)> = out
            .iter()
            .map(|(s, e, r)| (*s, *e, r.as_ref().map_or(0, Vec::len)))
            .collect();
        assert_eq!(
            shape,
            vec![(0, day, 40), (3 * HOUR, 4 * HOUR, SPARSE_PARTITION_ROWS)]
        );

        // A few sparse partitions are left as they are.
        let few: Vec<_> = (0..MAX_SPARSE_SEGMENTS as i64)
            .map(|h| part(h * HOUR, 1))
            .collect();
        let out = coarsen_sparse(few, HOUR);
        assert_eq!(out.len(), MAX_SPARSE_SEGMENTS);
        assert!(out.iter().all(|(s, e, _)| e - s == HOUR));
    }
}
