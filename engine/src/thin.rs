//! Keeping what debugging needs longer: when a time partition ages out of
//! [`crate::Options::retention`] and [`crate::Options::keep_interesting`] is set, the
//! partition is not dropped but *thinned*: its spans and logs segments are rewritten keeping
//! only the **interesting traces** — whole, with all their spans and logs — and dropped for
//! good once it is older than retention + keep_interesting. A disk budget
//! ([`crate::Options::max_bytes`]) with `keep_interesting` thins the same way before it
//! drops: while the store is over budget, the oldest partitions that ended are thinned, and
//! partitions go whole only if it is still over budget once every one of them is. Metric
//! segments of the partition stay until it is dropped (they are small and the exemplars
//! point into the kept traces).
//!
//! A trace is interesting when, within the partition:
//! - one of its spans has status ERROR;
//! - one of its spans is slow: longer than the threshold set for its operation name with
//!   [`crate::Options::slow_threshold`], or else longer than the
//!   [`crate::Options::slow_percentile`] (default 99th) of its operation (`service_name`,
//!   `name`) among the partition's spans (operations with fewer than 20 spans count none as
//!   slow by percentile). Percentiles come from a histogram with buckets under 1 % wide;
//! - a log record at WARN or above (`severity_number >= 13`) carries its trace id;
//! - a metric exemplar (of metric points in the partition's time range) carries its trace id.
//!
//! The rewrite runs on the compaction thread (its outputs are swapped in like a merge's),
//! streaming like a merge: it reads the partition's spans twice (only the five columns the
//! rule needs), then merges the kept rows of every input into one segment per signal.
//! Memory is the kept trace ids and a histogram per operation, not the partition. Each
//! output's manifest entry records how many traces were kept and why
//! ([`crate::manifest::Kept`]); `scry stats` and `scry_stats()` show it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::DataType;

use crate::manifest::{Kept, SegmentMeta};
use crate::{Result, Signal};

/// Operations with fewer spans than this in a partition have no "slow" spans by
/// percentile (an explicit threshold still applies).
const MIN_SPANS_FOR_PERCENTILE: u64 = 20;
/// `severity_number` of WARN.
const WARN: i32 = 13;

/// What counts as slow: spans above their operation's explicit threshold, or else above
/// the `percentile` of their operation (`service_name`, `name`) in the partition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SlowRule {
    /// Percentile in (0, 1), 0.99 by default.
    pub percentile: f64,
    /// Span name → threshold in ns, for every service.
    pub thresholds: BTreeMap<String, i64>,
}

/// Visits the batches of some segments, reading only the named columns.
pub(crate) type Visit<'a> = dyn Fn(&[Arc<SegmentMeta>], &[&str], &mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()>
    + 'a;

/// A histogram of durations with log-linear buckets: exact below 128 ns, then 128 buckets
/// per power of two (an error below 0.8 %), so a partition's percentiles take a few KiB
/// per operation however many spans it holds.
#[derive(Debug, Default)]
struct Histogram {
    buckets: BTreeMap<u32, u64>,
    count: u64,
}

const SUB_BITS: u32 = 7;

fn bucket(v: i64) -> u32 {
    let v = v.max(0) as u64;
    if v < 1 << SUB_BITS {
        return v as u32;
    }
    let e = 63 - v.leading_zeros();
    let m = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    ((e - SUB_BITS + 1) << SUB_BITS) | m as u32
}

/// The largest value of `bucket`.
fn bucket_high(b: u32) -> i64 {
    if b < 1 << SUB_BITS {
        return i64::from(b);
    }
    let e = (b >> SUB_BITS) + SUB_BITS - 1;
    let m = u64::from(b & ((1 << SUB_BITS) - 1));
    let low = ((1u64 << SUB_BITS) + m) << (e - SUB_BITS);
    let high = low + (1u64 << (e - SUB_BITS)) - 1;
    i64::try_from(high).unwrap_or(i64::MAX)
}

impl Histogram {
    fn add(&mut self, v: i64) {
        *self.buckets.entry(bucket(v)).or_default() += 1;
        self.count += 1;
    }

    /// The upper bound of the bucket holding the `ceil(count * p)`-th smallest value (the
    /// nearest-rank percentile): spans above it are slower than the percentile, about
    /// `(1 - p) * count` of them.
    fn percentile_bound(&self, p: f64) -> i64 {
        // 0-based rank of the nearest-rank percentile.
        let rank = ((self.count as f64 * p).ceil() as u64)
            .saturating_sub(1)
            .min(self.count.saturating_sub(1));
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen += n;
            if seen > rank {
                return bucket_high(b);
            }
        }
        i64::MAX
    }
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>> {
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let c = arrow::compute::cast(c, &DataType::Utf8)?;
    Ok(Some(c.as_string::<i32>().clone()))
}

fn ids(batch: &RecordBatch) -> Option<&FixedSizeBinaryArray> {
    batch
        .column_by_name("trace_id")
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
}

fn id_at(a: &FixedSizeBinaryArray, i: usize) -> Option<[u8; 16]> {
    if a.is_null(i) {
        return None;
    }
    a.value(i).try_into().ok()
}

const SPAN_COLUMNS: &[&str] = &[
    "trace_id",
    "status_code",
    "service_name",
    "name",
    "duration_ns",
];

/// The interesting trace ids of a partition (module docs) and how many for each reason,
/// from its `spans` and `logs` segments and the `metrics` segments over its time range.
/// Reads the spans twice (percentiles, then the spans above them), each time only the
/// columns it needs, a batch at a time: memory is the kept ids and a histogram per
/// operation, not the partition.
pub(crate) fn interesting(
    visit: &Visit<'_>,
    rule: &SlowRule,
    spans: &[Arc<SegmentMeta>],
    logs: &[Arc<SegmentMeta>],
    metrics: &[Arc<SegmentMeta>],
) -> Result<(HashSet<[u8; 16]>, Kept)> {
    let mut errors: HashSet<[u8; 16]> = HashSet::new();
    let mut slow: HashSet<[u8; 16]> = HashSet::new();
    let mut warn: HashSet<[u8; 16]> = HashSet::new();
    let mut exemplars: HashSet<[u8; 16]> = HashSet::new();
    // service → span name → durations.
    let mut per_op: HashMap<String, HashMap<String, Histogram>> = HashMap::new();
    visit(spans, SPAN_COLUMNS, &mut |b| {
        let (Some(tid), Some(status), Some(service), Some(name)) = (
            ids(b),
            strings(b, "status_code")?,
            strings(b, "service_name")?,
            strings(b, "name")?,
        ) else {
            return Ok(());
        };
        let dur = b
            .column_by_name("duration_ns")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
        for i in 0..b.num_rows() {
            if status.is_valid(i)
                && status.value(i) == "ERROR"
                && let Some(id) = id_at(tid, i)
            {
                errors.insert(id);
            }
            if let Some(d) = dur
                && d.is_valid(i)
                && !rule.thresholds.contains_key(name.value(i))
            {
                let (svc, op) = (service.value(i), name.value(i));
                let ops = match per_op.get_mut(svc) {
                    Some(ops) => ops,
                    None => per_op.entry(svc.to_string()).or_default(),
                };
                match ops.get_mut(op) {
                    Some(h) => h.add(d.value(i)),
                    None => ops.entry(op.to_string()).or_default().add(d.value(i)),
                }
            }
        }
        Ok(())
    })?;
    let bounds: HashMap<String, HashMap<String, i64>> = per_op
        .into_iter()
        .map(|(svc, ops)| {
            let ops = ops
                .into_iter()
                .filter(|(_, h)| h.count >= MIN_SPANS_FOR_PERCENTILE)
                .map(|(op, h)| (op, h.percentile_bound(rule.percentile)))
                .collect();
            (svc, ops)
        })
        .collect();
    visit(spans, SPAN_COLUMNS, &mut |b| {
        let (Some(tid), Some(service), Some(name)) =
            (ids(b), strings(b, "service_name")?, strings(b, "name")?)
        else {
            return Ok(());
        };
        let Some(dur) = b
            .column_by_name("duration_ns")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        else {
            return Ok(());
        };
        for i in 0..b.num_rows() {
            if !dur.is_valid(i) {
                continue;
            }
            let limit = match rule.thresholds.get(name.value(i)) {
                Some(t) => Some(*t),
                None => bounds
                    .get(service.value(i))
                    .and_then(|ops| ops.get(name.value(i)))
                    .copied(),
            };
            if limit.is_some_and(|l| dur.value(i) > l)
                && let Some(id) = id_at(tid, i)
            {
                slow.insert(id);
            }
        }
        Ok(())
    })?;
    visit(logs, &["trace_id", "severity_number"], &mut |b| {
        let (Some(tid), Some(sev)) = (
            ids(b),
            b.column_by_name("severity_number")
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>()),
        ) else {
            return Ok(());
        };
        for i in 0..b.num_rows() {
            if sev.is_valid(i)
                && sev.value(i) >= WARN
                && let Some(id) = id_at(tid, i)
            {
                warn.insert(id);
            }
        }
        Ok(())
    })?;
    visit(metrics, &["exemplars"], &mut |b| {
        let Some(ex) = b.column_by_name("exemplars") else {
            return Ok(());
        };
        let list = ex.as_list::<i32>();
        let values = list.values().as_struct();
        let Some(tid) = values
            .column_by_name("trace_id")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
        else {
            return Ok(());
        };
        // Only the exemplars of points that are there (a sliced batch shares its values).
        let offsets = list.value_offsets();
        let (first, last) = (offsets[0] as usize, offsets[list.len()] as usize);
        for i in first..last {
            if let Some(id) = id_at(tid, i) {
                exemplars.insert(id);
            }
        }
        Ok(())
    })?;
    let mut all: HashSet<[u8; 16]> = HashSet::new();
    for s in [&errors, &slow, &warn, &exemplars] {
        all.extend(s.iter().copied());
    }
    let kept = Kept {
        traces: all.len() as u64,
        errors: errors.len() as u64,
        slow: slow.len() as u64,
        warn_logs: warn.len() as u64,
        exemplars: exemplars.len() as u64,
    };
    Ok((all, kept))
}

/// Adds every non-null trace id of `batch` to `out`.
pub(crate) fn trace_ids(batch: &RecordBatch, out: &mut HashSet<[u8; 16]>) {
    if let Some(t) = ids(batch) {
        out.extend((0..t.len()).filter_map(|i| id_at(t, i)));
    }
}

/// The rows of `batch` whose trace id is in `keep` (in their order).
pub(crate) fn filter(batch: &RecordBatch, keep: &HashSet<[u8; 16]>) -> Result<RecordBatch> {
    let Some(tid) = ids(batch) else {
        return Ok(batch.slice(0, 0));
    };
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|i| Some(id_at(tid, i).is_some_and(|id| keep.contains(&id))))
        .collect();
    Ok(arrow::compute::filter_record_batch(batch, &mask)?)
}

/// Partitions whose spans or logs need thinning: bounds → their spans and logs segments.
pub(crate) fn candidates(
    segments: &[Arc<SegmentMeta>],
    aged_before: i64,
    gone_before: i64,
) -> BTreeMap<(i64, i64), Vec<Arc<SegmentMeta>>> {
    let mut parts: BTreeMap<(i64, i64), Vec<Arc<SegmentMeta>>> = BTreeMap::new();
    for s in segments {
        if s.signal != Signal::Metrics
            && s.partition_end <= aged_before
            && s.partition_end > gone_before
        {
            parts
                .entry((s.partition_start, s.partition_end))
                .or_default()
                .push(s.clone());
        }
    }
    parts.retain(|_, segs| segs.iter().any(|s| s.thinned.is_none()));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_cover_every_value_within_one_percent() {
        let mut last = -1;
        for v in (0..5000).chain([1 << 20, (1 << 20) + 1, i64::MAX / 2, i64::MAX]) {
            let b = bucket(v);
            let high = bucket_high(b);
            assert!(high >= v, "{v} in bucket {b} whose top is {high}");
            assert!((high - v) as f64 <= (v as f64) / 128.0 + 0.5, "{v}: {high}");
            if v < 5000 {
                assert!(b as i64 >= last, "buckets grow with values");
                last = b as i64;
            }
        }
        assert_eq!(bucket(-5), 0);
        // The 99th percentile of 1..=1000 (the 990th value) is 990, within a bucket's width:
        // the ten values above it are slow.
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.add(v);
        }
        let p = h.percentile_bound(0.99);
        assert!((990..=997).contains(&p), "{p}");
        // Exact below 128 ns: of 0..100, the 99th value is 98, so one span (99) is slow.
        let mut h = Histogram::default();
        for v in 0..100 {
            h.add(v);
        }
        assert_eq!(h.percentile_bound(0.99), 98);
        assert_eq!(h.percentile_bound(0.5), 49);
        let mut h = Histogram::default();
        h.add(7);
        assert_eq!(
            h.percentile_bound(0.99),
            7,
            "one value is its own percentile"
        );
    }
}
