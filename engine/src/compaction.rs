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
//! Memory: a merge streams ([`crate::segment::merge`]): it reads each input a row group's
//! column chunks at a time and holds one decoded batch of [`MERGE_BATCH_ROWS`] rows per
//! input and the output's row group being encoded — not the partition's rows. Segments
//! written before spans and logs were sorted by minute first (same format version) are not
//! in merge order: a merge that meets one falls back to reading its inputs whole and
//! sorting them, as compaction did before it streamed. Thinning
//! ([`crate::thin`]) streams the same way and holds the kept trace ids and a duration
//! histogram per operation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::flush::manager::FlushMsg;
use crate::manifest::{Manifest, SegmentMeta};
use crate::segment::merge::{MERGE_BATCH_ROWS, Run, merge_runs};
use crate::segment::reader::{SegmentStream, read_segment};
use crate::segment::writer::{SegmentJob, SegmentSink, write_segment};
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
    /// Thin the oldest partitions that ended while the store is over `budget` bytes
    /// ([`budget_thin_pass`]) and answer how many were thinned.
    BudgetThin {
        budget: u64,
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

/// A sink for compaction's output segment `id` of `signal` in the partition `[start, end)`,
/// written with the compaction writer settings ([`Options::for_compaction`]).
fn output_sink(
    shared: &Shared,
    signal: Signal,
    id: u64,
    start: i64,
    end: i64,
) -> Result<SegmentSink> {
    SegmentSink::create(
        &shared.fs,
        &shared.dir,
        &shared.opts.for_compaction(),
        signal,
        id,
        start,
        end,
    )
}

/// Writes the merge of `plan`'s inputs as segment `id`, streaming: one decoded batch per
/// input is in memory at a time ([`crate::segment::merge`]), beside, for spans, the trace
/// trees of the output's rows ([`merge_runs_of`]).
pub(crate) fn merge(shared: &Shared, plan: &Plan, id: u64) -> Result<SegmentMeta> {
    let runs = merge_runs_of(shared, plan.signal, &plan.inputs, None)?;
    let mut sink = output_sink(
        shared,
        plan.signal,
        id,
        plan.partition_start,
        plan.partition_end,
    )?;
    // The output's rollups are the inputs' merged (each counts its rows exactly, or, for a
    // thinned input, every span its partition had): never recounted from the rows, which
    // thinning may have cut.
    let given = if plan.signal == Signal::Spans {
        Some(merged_rollups(shared, &plan.inputs)?)
    } else {
        None
    };
    if let Some(r) = &given {
        sink.set_rollups(r.clone());
    }
    if merge_runs(plan.signal, runs, &mut sink)? {
        return sink.finish();
    }
    // An input of the order before minute-first sorting: sort the inputs whole (the
    // temporary file of the abandoned output is written over).
    drop(sink);
    log::info!(
        "compaction: a {} segment of partition {} predates minute-first sorting; merging \
         {} segment(s) in memory",
        plan.signal,
        plan.partition_start,
        plan.inputs.len()
    );
    let mut batches = Vec::new();
    for seg in &plan.inputs {
        batches.extend(read_segment(shared.fs.as_ref(), &shared.dir, seg)?);
    }
    let meta = write_segment(
        &shared.fs,
        &shared.dir,
        &shared.opts.for_compaction(),
        SegmentJob {
            signal: plan.signal,
            id,
            partition_start: plan.partition_start,
            partition_end: plan.partition_end,
            batches,
            rows: None,
        },
    )?;
    if let Some(r) = &given {
        write_rollups(shared, &meta, r)?;
    }
    Ok(meta)
}

/// Replaces the rollup file of the just-written (unpublished) segment `meta` with `r`,
/// durably (the file, then its directory) before the manifest can name the segment.
fn write_rollups(shared: &Shared, meta: &SegmentMeta, r: &crate::rollup::Rollups) -> Result<()> {
    let path = shared.dir.join(&meta.path);
    crate::rollup::write(&shared.fs, &path, r)?;
    let dir = path
        .parent()
        .expect("segments are in a partition directory");
    shared
        .fs
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync", dir, e))
}

/// The merged rollups of the span segments among `segs`.
fn merged_rollups(shared: &Shared, segs: &[Arc<SegmentMeta>]) -> Result<crate::rollup::Rollups> {
    let mut all = crate::rollup::Rollups::new();
    for s in segs.iter().filter(|s| s.signal == Signal::Spans) {
        all.merge(&crate::rollup::of_segment(
            shared.fs.as_ref(),
            &shared.dir,
            s,
        )?);
    }
    Ok(all)
}

/// The most span rows whose trace trees one compaction or thinning output computes (about
/// 100 bytes each while it does); past it the output stores none.
pub const MAX_TREE_ROWS: usize = 4_000_000;

/// The merge inputs for `segs` (one run each, in their order), reading only the rows of the
/// traces in `keep` when given (thinning). Span rows carry their trace-tree columns
/// ([`crate::segment::tree`]), computed first over the rows of all inputs together — so
/// the output holds one tree per trace however its spans were split between the inputs.
/// That first pass reads five columns of every input and holds about 100 bytes per row
/// (the links and their sort keys), then 20 (the columns) while the merge runs; past
/// [`MAX_TREE_ROWS`] rows it gives up and the output stores no trees.
fn merge_runs_of<'a>(
    shared: &'a Shared,
    signal: Signal,
    segs: &'a [Arc<SegmentMeta>],
    keep: Option<&'a std::collections::HashSet<[u8; 16]>>,
) -> Result<Vec<Run<'a>>> {
    let filtered = move |b: Result<arrow::array::RecordBatch>| match keep {
        Some(k) => b.and_then(|b| crate::thin::filter(&b, k)),
        None => b,
    };
    let open = |s: &Arc<SegmentMeta>, columns: Option<&[&str]>| {
        SegmentStream::open(
            shared.fs.as_ref(),
            &shared.dir,
            s,
            columns,
            MERGE_BATCH_ROWS,
        )
    };
    let mut runs: Vec<Run<'a>> = Vec::with_capacity(segs.len());
    if signal != Signal::Spans {
        for s in segs {
            runs.push(Box::new(open(s, None)?.map(filtered)));
        }
        return Ok(runs);
    }
    let mut links = Vec::new();
    let mut counts = Vec::with_capacity(segs.len());
    for s in segs {
        let before = links.len();
        let columns = ["trace_id", "span_id", "parent_span_id", "time", "end_time"];
        for b in open(s, Some(&columns))?.map(filtered) {
            crate::segment::tree::row_links(&b?, &mut links)?;
            if links.len() > MAX_TREE_ROWS {
                // Too many rows to shape in memory (a thinning that keeps most of a huge
                // partition, or a very large compaction_max_bytes): the output stores no
                // trees and readers shape its traces when asked, as for older segments.
                log::info!(
                    "compaction: more than {MAX_TREE_ROWS} span rows in one output; its trace                      trees are left to readers"
                );
                drop(links);
                let mut runs: Vec<Run<'a>> = Vec::with_capacity(segs.len());
                for s in segs {
                    runs.push(Box::new(open(s, None)?.map(filtered)));
                }
                return Ok(runs);
            }
        }
        counts.push(links.len() - before);
    }
    let all = std::sync::Arc::new(crate::segment::tree::TreeColumns::of(&links));
    drop(links);
    let mut offset = 0;
    for (s, n) in segs.iter().zip(counts) {
        runs.push(Box::new(crate::segment::tree::attach_run(
            open(s, None)?.map(filtered),
            all.clone(),
            offset..offset + n,
            shared.dir.join(&s.path),
        )));
        offset += n;
    }
    Ok(runs)
}

/// Visits the batches of `segs`, reading only `columns`.
fn visit(
    shared: &Shared,
    segs: &[Arc<SegmentMeta>],
    columns: &[&str],
    f: &mut dyn FnMut(&arrow::array::RecordBatch) -> Result<()>,
) -> Result<()> {
    for s in segs {
        let stream = SegmentStream::open(
            shared.fs.as_ref(),
            &shared.dir,
            s,
            Some(columns),
            MERGE_BATCH_ROWS,
        )?;
        for batch in stream {
            f(&batch?)?;
        }
    }
    Ok(())
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
                shared.counters.record_rewrite(output.size, true);
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
    let mut thinned = 0;
    for ((start, end), inputs) in crate::thin::candidates(&manifest.segments, aged, gone) {
        if thin_partition(shared, flush_tx, &manifest, start, end, inputs)? {
            thinned += 1;
        }
    }
    Ok(thinned)
}

/// While the store takes more than `budget` bytes, thins its oldest partitions that ended
/// before now and were not thinned yet, oldest first — the disk budget drops
/// ([`crate::retention::retain`]) only what is left over budget once they are; returns how
/// many were rewritten.
pub(crate) fn budget_thin_pass(
    shared: &Shared,
    flush_tx: &Sender<FlushMsg>,
    budget: u64,
) -> Result<usize> {
    let mut thinned = 0;
    let mut first_error = None;
    loop {
        if shared.is_poisoned() {
            return Err(shared.poison_error());
        }
        let manifest = shared.read_state().manifest.clone();
        if crate::retention::store_bytes(shared, &manifest) <= budget {
            break;
        }
        let Some(((start, end), inputs)) =
            crate::thin::candidates(&manifest.segments, now_ns(), i64::MIN)
                .into_iter()
                .find(|(bounds, _)| !shared.thin_failed(*bounds))
        else {
            break;
        };
        match thin_partition(shared, flush_tx, &manifest, start, end, inputs) {
            Ok(true) => thinned += 1,
            // Retention changed the partition meanwhile: look again.
            Ok(false) => {}
            Err(e) => {
                // The budget drops it whole instead of waiting for a thinning that fails;
                // the next partition is tried now.
                log::warn!("thinning partition {start}..{end} for the disk budget failed: {e}");
                shared.set_thin_failed((start, end));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(thinned),
    }
}

/// Rewrites the spans and logs segments `inputs` of partition `[start, end)` keeping the
/// interesting traces ([`crate::thin`]), streaming; returns whether the result was
/// published (not when retention or compaction changed the inputs meanwhile).
fn thin_partition(
    shared: &Shared,
    flush_tx: &Sender<FlushMsg>,
    manifest: &Manifest,
    start: i64,
    end: i64,
    inputs: Vec<Arc<SegmentMeta>>,
) -> Result<bool> {
    let of = |signal: Signal| -> Vec<Arc<SegmentMeta>> {
        inputs
            .iter()
            .filter(|s| s.signal == signal)
            .cloned()
            .collect()
    };
    let metrics: Vec<Arc<SegmentMeta>> = manifest
        .segments
        .iter()
        .filter(|s| s.signal == Signal::Metrics && s.overlaps(start, end))
        .cloned()
        .collect();
    let visit = |segs: &[Arc<SegmentMeta>],
                 columns: &[&str],
                 f: &mut dyn FnMut(&arrow::array::RecordBatch) -> Result<()>| {
        visit(shared, segs, columns, f)
    };
    let (mut keep_ids, mut kept) = crate::thin::interesting(
        &visit,
        &shared.opts.slow_rule(),
        &of(Signal::Spans),
        &of(Signal::Logs),
        &metrics,
    )?;
    // Traces a previous thinning kept stay kept (late rows made this one necessary).
    let earlier: Vec<Arc<SegmentMeta>> = inputs
        .iter()
        .filter(|s| s.thinned.is_some())
        .cloned()
        .collect();
    visit(&earlier, &["trace_id"], &mut |b| {
        crate::thin::trace_ids(b, &mut keep_ids);
        Ok(())
    })?;
    kept.traces = keep_ids.len() as u64;
    let mut outputs = Vec::new();
    let mut written: Vec<(Signal, u64)> = Vec::new();
    let mut write = |signal: Signal, written: &mut Vec<(Signal, u64)>| -> Result<()> {
        let segs = of(signal);
        if segs.is_empty() {
            return Ok(());
        }
        let runs = merge_runs_of(shared, signal, &segs, Some(&keep_ids))?;
        let id = shared.alloc_segment_id();
        written.push((signal, id));
        let mut sink = output_sink(shared, signal, id, start, end)?;
        // The partition's span rollups count every span it had, kept or not.
        let rollups = if signal == Signal::Spans {
            let r = merged_rollups(shared, &segs)?;
            sink.set_rollups(r.clone());
            Some(r)
        } else {
            None
        };
        let mut meta = if merge_runs(signal, runs, &mut sink)? {
            if sink.rows() == 0 && !sink.has_rollups() {
                // Nothing kept: no segment (its temporary file goes with `written`). A span
                // segment with no row left is still written when it carries rollups.
                return Ok(());
            }
            sink.finish()?
        } else {
            // Segments of the order before minute-first sorting: sort the kept rows (few)
            // in memory.
            drop(sink);
            let mut kept_rows = Vec::new();
            for s in &segs {
                for b in read_segment(shared.fs.as_ref(), &shared.dir, s)? {
                    let f = crate::thin::filter(&b, &keep_ids)?;
                    if f.num_rows() > 0 {
                        kept_rows.push(f);
                    }
                }
            }
            if kept_rows.is_empty() {
                let Some(r) = rollups.filter(|r| !r.is_empty()) else {
                    return Ok(());
                };
                // No span kept: an empty segment carries the partition's rollups.
                let mut sink = output_sink(shared, signal, id, start, end)?;
                sink.set_rollups(r);
                let mut meta = sink.finish()?;
                meta.thinned = Some(kept);
                outputs.push(meta);
                return Ok(());
            }
            let meta = write_segment(
                &shared.fs,
                &shared.dir,
                &shared.opts.for_compaction(),
                SegmentJob {
                    signal,
                    id,
                    partition_start: start,
                    partition_end: end,
                    batches: kept_rows,
                    rows: None,
                },
            )?;
            if let Some(r) = &rollups {
                write_rollups(shared, &meta, r)?;
            }
            meta
        };
        meta.thinned = Some(kept);
        outputs.push(meta);
        Ok(())
    };
    let result =
        write(Signal::Spans, &mut written).and_then(|()| write(Signal::Logs, &mut written));
    let cleanup = |written: &[(Signal, u64)]| {
        for &(s, id) in written {
            remove_output(shared, s, start, id);
        }
    };
    if let Err(e) = result {
        cleanup(&written);
        return Err(e);
    }
    // Outputs with no rows were never finished: their temporary files go now.
    for &(s, id) in &written {
        if !outputs.iter().any(|o| o.id == id) {
            remove_output(shared, s, start, id);
        }
    }
    let written_sizes: Vec<u64> = outputs.iter().map(|o| o.size).collect();
    let (reply, rx) = crossbeam_channel::bounded(1);
    flush_tx
        .send(FlushMsg::Compacted {
            inputs,
            outputs,
            reply,
        })
        .map_err(|_| Error::Closed)?;
    match rx.recv().map_err(|_| Error::Closed)? {
        Ok(true) => {
            shared.clear_thin_failed((start, end));
            for o in &written_sizes {
                shared.counters.record_rewrite(*o, false);
            }
            log::info!(
                "thinned partition {start}..{end}: kept {} trace(s) ({} with errors, {} slow, \
                 {} with WARN+ logs, {} with exemplars)",
                kept.traces,
                kept.errors,
                kept.slow,
                kept.warn_logs,
                kept.exemplars
            );
            Ok(true)
        }
        other => {
            cleanup(&written);
            other
        }
    }
}

/// Deletes the files of an output that was not published (best effort: the next open
/// removes what is left, as named by no manifest).
fn remove_output(shared: &Shared, signal: Signal, partition_start: i64, id: u64) {
    let rel = crate::segment::writer::relative_path(signal, partition_start, id);
    let path = shared.dir.join(rel);
    let tmp = [
        path.with_extension("parquet.tmp"),
        path.with_extension("tidx.tmp"),
        path.with_extension("sidx.tmp"),
        path.with_extension("lpat.tmp"),
        path.with_extension("rollup.tmp"),
    ];
    for f in crate::segment::segment_files(&path).into_iter().chain(tmp) {
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
            Ok(CompactMsg::BudgetThin { budget, reply }) => {
                let _ = reply.send(budget_thin_pass(&shared, &flush_tx, budget));
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
                if let (Some(budget), Some(_)) =
                    (shared.opts.max_bytes, shared.opts.keep_interesting)
                    && !shared.is_poisoned()
                    && let Err(e) = budget_thin_pass(&shared, &flush_tx, budget)
                {
                    log::warn!(
                        "thinning for the disk budget failed (nothing was lost; the budget \
                         drops the partition whole instead): {e}"
                    );
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
