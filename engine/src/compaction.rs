//! Compaction: merging the small segments of a time partition into large sorted ones.
//!
//! Every flush writes one segment per time partition it touches, so a partition that keeps
//! receiving rows collects many small segments, each with its own trace index and bloom
//! filter held in memory, and each opened by queries over its time range. Compaction
//! rewrites groups of them as one segment, sorted like any segment, with its trace index
//! rebuilt, and swaps it into the manifest in place of its inputs.
//!
//! ## Policy (size-tiered, per partition)
//!
//! - Segments are grouped by signal, exact partition bounds (a widened sparse partition is
//!   its own group) and *size tier* (sizes within a factor of 4 share a tier; everything
//!   below 256 KiB is the lowest). Only *small* segments — below
//!   [`Options::compaction_max_bytes`] (default 16 MiB of Parquet) — are merged; large ones
//!   are left alone forever.
//! - A partition is *closed* once its end is at least one partition width in the past
//!   (wall clock): late rows for it are unlikely. In a closed partition two segments of one
//!   tier merge; in an open one [`OPEN_MIN_INPUTS`] must wait, so a partition being written
//!   is not rewritten at every flush. Because only segments of one tier merge, a big merged
//!   segment is not rewritten each time a small one arrives (late rows into a closed
//!   partition cost a merge of the small ones, not of the whole partition).
//!   `Db::compact` (and `scry compact`) ignores tiers and merges every small segment of every
//!   partition.
//! - Inputs are taken oldest first, as many as fit in `compaction_max_bytes` together: the
//!   output is at most that size.
//! - Write amplification: a row is written once by its flush, then once per merge it takes
//!   part in; each merge moves it at least one tier up (four segments of a tier make one of
//!   the next in an open partition, two in a closed one), so a row is rewritten at most
//!   about `log4(compaction_max_bytes / flush segment size) + 1` times in an open partition
//!   — 2 to 3 times for 1 hour partitions receiving 64 MiB memtables — and
//!   `log2(...)` times in a closed one, then never again.
//!
//! ## Safety
//!
//! Compaction runs on its own thread (`scry-compact`), never holding a lock that ingest or
//! queries wait for. It reads its inputs through a snapshot (their files stay while it
//! reads), writes the output like a flush does (temporary name, fsync, rename, index,
//! directory fsync), and hands it to the flush manager — the only writer of manifests —
//! which swaps it in only if every input is still live (retention may have dropped them
//! meanwhile; then the output is deleted). The inputs' files go through the obsolete-file
//! path: deleted once no snapshot reads them. A crash at any point leaves either the old
//! manifest (the output is a leftover the next open removes) or the new one.
//!
//! Memory: a merge holds its inputs decoded plus one sorted copy, about twice the Arrow
//! size of `compaction_max_bytes` of Parquet (measured in `docs/benchmarks.md`: 32 MiB of
//! span segments peaked at 820 MiB). A merge that streams its inputs window by window
//! (they are all sorted by minute first) would bound this; it is not written yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::flush::manager::FlushMsg;
use crate::manifest::{Manifest, SegmentMeta};
use crate::segment::writer::{SegmentJob, write_segment};
use crate::state::Shared;
use crate::{Error, Options, Result, Signal};

/// Small segments an open partition collects before they are merged.
pub const OPEN_MIN_INPUTS: usize = 4;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// Merges done (each wrote one segment).
    pub merges: usize,
    /// Segments merged away.
    pub segments_in: usize,
    /// Rows rewritten.
    pub rows: u64,
    /// Parquet bytes of the inputs.
    pub bytes_in: u64,
    /// Parquet bytes of the outputs.
    pub bytes_out: u64,
}

/// Messages to the compaction thread.
pub(crate) enum CompactMsg {
    /// Run a pass now (`force`: every partition counts as closed) and answer.
    Run {
        force: bool,
        reply: Sender<Result<CompactionStats>>,
    },
    /// Thin the partitions that ended more than `older_than` ago (and not more than
    /// `older_than + keep` ago) and answer how many were thinned.
    Thin {
        older_than: std::time::Duration,
        keep: std::time::Duration,
        reply: Sender<Result<usize>>,
    },
    /// Stop (after the merge in progress).
    Close,
}

/// One merge: segments of one signal and partition, oldest first.
#[derive(Debug)]
pub(crate) struct Plan {
    pub signal: Signal,
    pub partition_start: i64,
    pub partition_end: i64,
    pub inputs: Vec<Arc<SegmentMeta>>,
}

/// Segments below this size share the lowest size tier.
const TIER_BASE: u64 = 256 << 10;

/// The size tier of a segment: sizes within a factor of 4 share one.
fn tier(size: u64) -> u32 {
    let mut t = 0;
    let mut bound = TIER_BASE;
    while size >= bound && t < 32 {
        bound = bound.saturating_mul(4);
        t += 1;
    }
    t
}

/// The merges the policy (module docs) picks from `m` at wall-clock time `now_ns`.
pub(crate) fn plan(m: &Manifest, opts: &Options, now_ns: i64, force: bool) -> Vec<Plan> {
    let max = opts.compaction_max_bytes;
    let width = opts.partition_nanos();
    // Background passes merge segments of one size tier; a forced pass every small one.
    let mut groups: BTreeMap<(Signal, i64, i64, u32), Vec<Arc<SegmentMeta>>> = BTreeMap::new();
    for s in &m.segments {
        if s.size < max {
            let t = if force { 0 } else { tier(s.size) };
            groups
                .entry((s.signal, s.partition_start, s.partition_end, t))
                .or_default()
                .push(s.clone());
        }
    }
    let mut plans = Vec::new();
    for ((signal, start, end, _), mut small) in groups {
        let closed = force || end.saturating_add(width) <= now_ns;
        let min_inputs = if closed { 2 } else { OPEN_MIN_INPUTS };
        small.sort_by_key(|s| s.id);
        let mut batch: Vec<Arc<SegmentMeta>> = Vec::new();
        let mut bytes = 0;
        for s in small {
            if !batch.is_empty() && bytes + s.size > max {
                if batch.len() >= min_inputs {
                    plans.push(Plan {
                        signal,
                        partition_start: start,
                        partition_end: end,
                        inputs: std::mem::take(&mut batch),
                    });
                } else {
                    // Too few to fill a merge: the oldest leaves the window.
                    batch.remove(0);
                }
                bytes = batch.iter().map(|b| b.size).sum();
            }
            bytes += s.size;
            batch.push(s);
        }
        if batch.len() >= min_inputs {
            plans.push(Plan {
                signal,
                partition_start: start,
                partition_end: end,
                inputs: batch,
            });
        }
    }
    plans
}

/// Writes the merge of `plan`'s inputs as segment `id`.
pub(crate) fn merge(shared: &Shared, plan: &Plan, id: u64) -> Result<SegmentMeta> {
    let mut batches = Vec::new();
    for seg in &plan.inputs {
        batches.extend(crate::segment::reader::read_segment(
            shared.fs.as_ref(),
            &shared.dir,
            seg,
        )?);
    }
    let job = SegmentJob {
        signal: plan.signal,
        id,
        partition_start: plan.partition_start,
        partition_end: plan.partition_end,
        batches,
        rows: None,
    };
    write_segment(&shared.fs, &shared.dir, &shared.opts, job)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Merges until the policy finds nothing more to do.
pub(crate) fn pass(
    shared: &Shared,
    flush_tx: &Sender<FlushMsg>,
    force: bool,
) -> Result<CompactionStats> {
    let mut stats = CompactionStats::default();
    // Plans whose outputs were refused (their inputs left meanwhile) are not retried in
    // this pass.
    let mut refused = 0;
    loop {
        if shared.is_poisoned() {
            return Err(shared.poison_error());
        }
        let manifest = shared.read_state().manifest.clone();
        let Some(p) = plan(&manifest, &shared.opts, now_ns(), force)
            .into_iter()
            .nth(refused)
        else {
            break;
        };
        let id = shared.alloc_segment_id();
        let output = match merge(shared, &p, id) {
            Ok(o) => o,
            Err(e) => {
                remove_output(shared, p.signal, p.partition_start, id);
                return Err(e);
            }
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        flush_tx
            .send(FlushMsg::Compacted {
                inputs: p.inputs.clone(),
                outputs: vec![output.clone()],
                reply,
            })
            .map_err(|_| Error::Closed)?;
        match rx.recv().map_err(|_| Error::Closed)? {
            Ok(true) => {
                stats.merges += 1;
                stats.segments_in += p.inputs.len();
                stats.rows += output.rows;
                stats.bytes_in += p.inputs.iter().map(|s| s.size).sum::<u64>();
                stats.bytes_out += output.size;
                log::info!(
                    "compacted {} {} segment(s) of partition {} into {} ({} rows, {} -> {} bytes)",
                    p.inputs.len(),
                    p.signal,
                    p.partition_start,
                    output.path,
                    output.rows,
                    p.inputs.iter().map(|s| s.size).sum::<u64>(),
                    output.size
                );
            }
            Ok(false) => {
                remove_output(shared, p.signal, p.partition_start, id);
                refused += 1;
            }
            Err(e) => {
                remove_output(shared, p.signal, p.partition_start, id);
                return Err(e);
            }
        }
    }
    Ok(stats)
}

/// Thins every partition that ended between `older_than + keep` and `older_than` ago
/// ([`crate::thin`]); returns how many were rewritten.
pub(crate) fn thin_pass(
    shared: &Shared,
    flush_tx: &Sender<FlushMsg>,
    older_than: std::time::Duration,
    keep: std::time::Duration,
) -> Result<usize> {
    let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    let aged = now_ns().saturating_sub(nanos(older_than));
    let gone = aged.saturating_sub(nanos(keep));
    let manifest = shared.read_state().manifest.clone();
    let read = |segs: &[&Arc<SegmentMeta>]| -> Result<Vec<arrow::array::RecordBatch>> {
        let mut out = Vec::new();
        for s in segs {
            out.extend(crate::segment::reader::read_segment(
                shared.fs.as_ref(),
                &shared.dir,
                s,
            )?);
        }
        Ok(out)
    };
    let mut thinned = 0;
    for ((start, end), inputs) in crate::thin::candidates(&manifest.segments, aged, gone) {
        let of = |signal: Signal| -> Vec<&Arc<SegmentMeta>> {
            inputs.iter().filter(|s| s.signal == signal).collect()
        };
        let metrics: Vec<&Arc<SegmentMeta>> = manifest
            .segments
            .iter()
            .filter(|s| s.signal == Signal::Metrics && s.overlaps(start, end))
            .collect();
        let (spans, logs) = (read(&of(Signal::Spans))?, read(&of(Signal::Logs))?);
        let (mut keep_ids, mut kept) = crate::thin::interesting(&spans, &logs, &read(&metrics)?)?;
        // Traces a previous thinning kept stay kept (late rows made this one necessary).
        for s in inputs.iter().filter(|s| s.thinned.is_some()) {
            keep_ids.extend(crate::thin::trace_ids(&read(&[s])?));
        }
        kept.traces = keep_ids.len() as u64;
        let mut outputs = Vec::new();
        let mut written: Vec<(Signal, u64)> = Vec::new();
        for (signal, batches) in [(Signal::Spans, spans), (Signal::Logs, logs)] {
            let rows = crate::thin::filter(&batches, &keep_ids)?;
            if rows.is_empty() {
                continue;
            }
            let id = shared.alloc_segment_id();
            written.push((signal, id));
            let job = SegmentJob {
                signal,
                id,
                partition_start: start,
                partition_end: end,
                batches: rows,
                rows: None,
            };
            match write_segment(&shared.fs, &shared.dir, &shared.opts, job) {
                Ok(mut meta) => {
                    meta.thinned = Some(kept);
                    outputs.push(meta);
                }
                Err(e) => {
                    for (s, id) in written {
                        remove_output(shared, s, start, id);
                    }
                    return Err(e);
                }
            }
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        flush_tx
            .send(FlushMsg::Compacted {
                inputs: inputs.clone(),
                outputs,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        match rx.recv().map_err(|_| Error::Closed)? {
            Ok(true) => {
                thinned += 1;
                log::info!(
                    "thinned partition {start}..{end}: kept {} trace(s) ({} with errors, {} slow, \
                     {} with WARN+ logs, {} with exemplars)",
                    kept.traces,
                    kept.errors,
                    kept.slow,
                    kept.warn_logs,
                    kept.exemplars
                );
            }
            other => {
                for (s, id) in written {
                    remove_output(shared, s, start, id);
                }
                other?;
            }
        }
    }
    Ok(thinned)
}

/// Deletes the files of an output that was not published (best effort: the next open
/// removes what is left, as named by no manifest).
fn remove_output(shared: &Shared, signal: Signal, partition_start: i64, id: u64) {
    let rel = crate::segment::writer::relative_path(signal, partition_start, id);
    let path = shared.dir.join(rel);
    for f in [
        crate::index::index_path(&path),
        path.with_extension("parquet.tmp"),
        path,
    ] {
        match shared.fs.remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("could not remove unpublished {}: {e}", f.display()),
        }
    }
}

/// Body of the `scry-compact` thread: a pass every `compaction_interval` when background
/// compaction is on, and one on every request, until `Close`.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<CompactMsg>, flush_tx: Sender<FlushMsg>) {
    loop {
        match rx.recv_timeout(shared.opts.compaction_interval) {
            Ok(CompactMsg::Run { force, reply }) => {
                let _ = reply.send(pass(&shared, &flush_tx, force));
            }
            Ok(CompactMsg::Thin {
                older_than,
                keep,
                reply,
            }) => {
                let _ = reply.send(thin_pass(&shared, &flush_tx, older_than, keep));
            }
            Ok(CompactMsg::Close) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                if let (Some(age), Some(keep)) =
                    (shared.opts.retention, shared.opts.keep_interesting)
                    && !shared.is_poisoned()
                    && let Err(e) = thin_pass(&shared, &flush_tx, age, keep)
                {
                    log::warn!("thinning aged partitions failed (nothing was lost): {e}");
                }
                if shared.opts.compaction && !shared.is_poisoned() {
                    // A failed merge changed nothing: its inputs are still live. The next
                    // pass tries again.
                    if let Err(e) = pass(&shared, &flush_tx, false) {
                        log::warn!("background compaction failed (nothing was lost): {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, start: i64, size: u64) -> Arc<SegmentMeta> {
        Arc::new(SegmentMeta {
            id,
            signal: Signal::Spans,
            partition_start: start,
            partition_end: start + 10,
            path: format!("spans/p/{id}.parquet"),
            rows: 1,
            min_time: start,
            max_time: start,
            size,
            crc32: 0,
            thinned: None,
        })
    }

    fn manifest(segments: Vec<Arc<SegmentMeta>>) -> Manifest {
        Manifest {
            segments,
            ..Manifest::empty()
        }
    }

    fn ids(plans: &[Plan]) -> Vec<Vec<u64>> {
        plans
            .iter()
            .map(|p| p.inputs.iter().map(|s| s.id).collect())
            .collect()
    }

    use std::time::Duration;

    #[test]
    fn open_partitions_wait_for_four_closed_ones_merge_two_big_ones_stay() {
        let opts = Options::default()
            .partition_duration(Duration::from_secs(1))
            .compaction_max_bytes(100);
        let width = opts.partition_nanos();
        let m = manifest(vec![
            seg(1, 0, 10),
            seg(2, 0, 10),
            seg(3, 0, 10),
            seg(9, 0, 500),
        ]);
        // Open (now is inside the partition): three small segments are not enough.
        assert!(plan(&m, &opts, 5, false).is_empty());
        // Closed: they merge; the big one never does.
        assert_eq!(
            ids(&plan(&m, &opts, 10 + width, false)),
            vec![vec![1, 2, 3]]
        );
        assert_eq!(ids(&plan(&m, &opts, 5, true)), vec![vec![1, 2, 3]]);
        // Inputs fill at most the size limit, oldest first.
        let opts = opts.compaction_max_bytes(100 << 20);
        let m = manifest((1..=7).map(|i| seg(i, 0, 30 << 20)).collect());
        assert_eq!(ids(&plan(&m, &opts, 5, false)), Vec::<Vec<u64>>::new());
        assert_eq!(
            ids(&plan(&m, &opts, 5, true)),
            vec![vec![1, 2, 3], vec![4, 5, 6]]
        );
        // Partitions never mix.
        let m = manifest(vec![seg(1, 0, 10), seg(2, 100, 10)]);
        assert!(plan(&m, &opts, 5, true).is_empty());
        // Tiers: a merged 4 MiB segment is not rewritten for each new 100 KiB one, but two
        // new ones merge (closed partition); a forced pass takes all three.
        let m = manifest(vec![
            seg(1, 0, 4 << 20),
            seg(2, 0, 100 << 10),
            seg(3, 0, 100 << 10),
        ]);
        let late = 10 + width;
        assert_eq!(ids(&plan(&m, &opts, late, false)), vec![vec![2, 3]]);
        let m = manifest(vec![seg(1, 0, 4 << 20), seg(2, 0, 100 << 10)]);
        assert!(plan(&m, &opts, late, false).is_empty());
        assert_eq!(ids(&plan(&m, &opts, late, true)), vec![vec![1, 2]]);
        assert_eq!(
            (tier(0), tier(255 << 10), tier(256 << 10), tier(1 << 20)),
            (0, 0, 1, 2)
        );
    }
}
