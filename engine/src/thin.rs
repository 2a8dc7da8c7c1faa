//! Keeping what debugging needs longer: when a time partition ages out of
//! [`crate::Options::retention`] and [`crate::Options::keep_interesting`] is set, the
//! partition is not dropped but *thinned*: its spans and logs segments are rewritten keeping
//! only the **interesting traces** — whole, with all their spans and logs — and dropped for
//! good once it is older than retention + keep_interesting. Metric segments of the partition
//! stay until then (they are small and the exemplars point into the kept traces).
//!
//! A trace is interesting when, within the partition:
//! - one of its spans has status ERROR;
//! - one of its spans is slower than the 99th percentile of its operation (`service_name`,
//!   `name`) among the partition's spans (operations with fewer than 20 spans count none as
//!   slow);
//! - a log record at WARN or above (`severity_number >= 13`) carries its trace id;
//! - a metric exemplar (of metric points in the partition's time range) carries its trace id.
//!
//! The rewrite runs on the compaction thread (its outputs are swapped in like a merge's) and
//! records, in each output's manifest entry, how many traces were kept and why
//! ([`crate::manifest::Kept`]); `scry stats` shows it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::DataType;

use crate::manifest::{Kept, SegmentMeta};
use crate::{Result, Signal};

/// Operations with fewer spans than this in a partition have no "slow" spans.
const MIN_SPANS_FOR_P99: usize = 20;
/// `severity_number` of WARN.
const WARN: i32 = 13;

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

/// The interesting trace ids of a partition (module docs) and how many for each reason.
pub(crate) fn interesting(
    spans: &[RecordBatch],
    logs: &[RecordBatch],
    metrics: &[RecordBatch],
) -> Result<(HashSet<[u8; 16]>, Kept)> {
    let mut errors: HashSet<[u8; 16]> = HashSet::new();
    let mut slow: HashSet<[u8; 16]> = HashSet::new();
    let mut warn: HashSet<[u8; 16]> = HashSet::new();
    let mut exemplars: HashSet<[u8; 16]> = HashSet::new();
    // Durations per operation, for the percentiles.
    let mut per_op: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for b in spans {
        let (Some(tid), Some(status), Some(service), Some(name)) = (
            ids(b),
            strings(b, "status_code")?,
            strings(b, "service_name")?,
            strings(b, "name")?,
        ) else {
            continue;
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
            {
                per_op
                    .entry((service.value(i).to_string(), name.value(i).to_string()))
                    .or_default()
                    .push(d.value(i));
            }
        }
    }
    let p99: HashMap<(String, String), i64> = per_op
        .into_iter()
        .filter(|(_, v)| v.len() >= MIN_SPANS_FOR_P99)
        .map(|(k, mut v)| {
            v.sort_unstable();
            let at = ((v.len() as f64) * 0.99).ceil() as usize;
            (k, v[at.min(v.len() - 1)])
        })
        .collect();
    for b in spans {
        let (Some(tid), Some(service), Some(name)) =
            (ids(b), strings(b, "service_name")?, strings(b, "name")?)
        else {
            continue;
        };
        let Some(dur) = b
            .column_by_name("duration_ns")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        else {
            continue;
        };
        for i in 0..b.num_rows() {
            let key = (service.value(i).to_string(), name.value(i).to_string());
            if let Some(limit) = p99.get(&key)
                && dur.is_valid(i)
                && dur.value(i) > *limit
                && let Some(id) = id_at(tid, i)
            {
                slow.insert(id);
            }
        }
    }
    for b in logs {
        let (Some(tid), Some(sev)) = (
            ids(b),
            b.column_by_name("severity_number")
                .and_then(|c| c.as_any().downcast_ref::<Int32Array>()),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if sev.is_valid(i)
                && sev.value(i) >= WARN
                && let Some(id) = id_at(tid, i)
            {
                warn.insert(id);
            }
        }
    }
    for b in metrics {
        let Some(ex) = b.column_by_name("exemplars") else {
            continue;
        };
        let list = ex.as_list::<i32>();
        let values = list.values().as_struct();
        let Some(tid) = values
            .column_by_name("trace_id")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
        else {
            continue;
        };
        for i in 0..tid.len() {
            if let Some(id) = id_at(tid, i) {
                exemplars.insert(id);
            }
        }
    }
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

/// Every non-null trace id in `batches`.
pub(crate) fn trace_ids(batches: &[RecordBatch]) -> HashSet<[u8; 16]> {
    let mut out = HashSet::new();
    for b in batches {
        if let Some(t) = ids(b) {
            out.extend((0..t.len()).filter_map(|i| id_at(t, i)));
        }
    }
    out
}

/// The rows of `batches` whose trace id is in `keep`.
pub(crate) fn filter(
    batches: &[RecordBatch],
    keep: &HashSet<[u8; 16]>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(tid) = ids(b) else {
            continue;
        };
        let mask: BooleanArray = (0..b.num_rows())
            .map(|i| Some(id_at(tid, i).is_some_and(|id| keep.contains(&id))))
            .collect();
        let f = arrow::compute::filter_record_batch(b, &mask)?;
        if f.num_rows() > 0 {
            out.push(f);
        }
    }
    Ok(out)
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
