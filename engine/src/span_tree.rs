//! The span tree of one looked-up [`Trace`]: who is whose child, how deep, when each span
//! starts relative to the trace, how long it took and how much of that it spent itself.
//!
//! Computed once here for everything that draws or analyses a trace (the `scry trace`
//! waterfall, bindings, agents), so that none of them has to get parent links, clock skew,
//! broken parent chains or extreme timestamps right again. The tree is built from what the
//! spans say and never fails on what they say: a span whose parent is not in the trace is
//! a root flagged [`SpanNode::orphan`]; spans whose parent links loop (`a → b → a`, or a
//! span that is its own parent) are all kept, the loop broken at one of them, which becomes
//! a root flagged [`SpanNode::cycle_broken`]. All time arithmetic saturates: timestamps
//! anywhere in `i64` give offsets and durations, never an overflow.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};

use crate::trace::Trace;
use crate::{Error, Result, Signal};

/// One span of a [`SpanTree`], with where it sits in the tree and its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanNode {
    /// The span's id.
    pub span_id: [u8; 8],
    /// The parent id the span carries (`None` when it was sent as a root). It may name a
    /// span that is not in the trace ([`SpanNode::orphan`]) or lead into a loop
    /// ([`SpanNode::cycle_broken`]); [`SpanNode::parent`] is the parent in the tree.
    pub parent_span_id: Option<[u8; 8]>,
    /// Index in [`SpanTree::nodes`] of the parent in the tree; `None` for a root.
    pub parent: Option<usize>,
    /// Indexes in [`SpanTree::nodes`] of the children, by start time, then span id.
    pub children: Vec<usize>,
    /// Distance from the root of its tree (0 for a root).
    pub depth: usize,
    /// `service_name`.
    pub service: String,
    /// Span name.
    pub name: String,
    /// `kind` (`SERVER`, `CLIENT`, ...).
    pub kind: String,
    /// `status_code` (`UNSET`, `OK`, `ERROR`).
    pub status_code: String,
    /// `status_message`, when there is one.
    pub status_message: Option<String>,
    /// Start, ns since the epoch.
    pub start: i64,
    /// End, ns since the epoch, as sent (may be before `start`: see
    /// [`SpanNode::ends_before_start`]).
    pub end: i64,
    /// `start` minus the start of the trace ([`SpanTree::start`]); never negative,
    /// saturating at `i64::MAX`.
    pub offset_ns: i64,
    /// `end - start`, saturating at `i64::MAX`; 0 when the span ends before it starts.
    pub duration_ns: i64,
    /// The part of the duration not covered by any child: the duration minus the union of
    /// the children's intervals clipped to this span's. Overlapping (concurrent) children
    /// count once, so it is never negative and never more than `duration_ns`.
    pub self_ns: i64,
    /// The span names a parent that is not in the trace; it is a root of the tree.
    pub orphan: bool,
    /// The span's parent chain loops back to itself (or it is its own parent); the loop is
    /// cut here, so this span is a root of the tree.
    pub cycle_broken: bool,
    /// Another span of the trace has the same id and comes earlier in the order (start,
    /// span id); children naming that id hang under the earlier one.
    pub duplicate_id: bool,
    /// `end` is before `start`: `duration_ns` and `self_ns` are 0.
    pub ends_before_start: bool,
    /// Which batch of [`Trace::spans`] holds the span's row.
    pub batch: usize,
    /// The span's row in that batch (for the columns not copied here: attributes, events,
    /// links).
    pub row: usize,
}

impl SpanNode {
    /// Whether the span's status is `ERROR`.
    pub fn is_error(&self) -> bool {
        self.status_code == "ERROR"
    }

    /// The end used for intervals: `end`, or `start` when the span ends before it starts.
    fn effective_end(&self) -> i64 {
        self.end.max(self.start)
    }
}

/// The spans of one trace as a forest.
///
/// `nodes` are in depth-first pre-order: each root (by start time, then span id) followed
/// by its subtree, children by start time, then span id. Drawing the nodes in this order
/// with their `depth` as indentation gives the waterfall. The same spans always give the
/// same tree, whatever the order of the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanTree {
    /// Every span of the trace, exactly once, in depth-first pre-order.
    pub nodes: Vec<SpanNode>,
    /// Indexes in `nodes` of the roots: spans sent without a parent, orphans and spans where
    /// a parent loop was cut. In order of start, then span id.
    pub roots: Vec<usize>,
    /// The earliest start of any span (0 for an empty trace).
    pub start: i64,
    /// The latest end of any span (a span ending before it starts counts as ending at its
    /// start); `start` for an empty trace.
    pub end: i64,
}

impl SpanTree {
    /// Whether the trace has no spans.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `end - start` of the trace, saturating at `i64::MAX`.
    pub fn duration_ns(&self) -> i64 {
        sat(i128::from(self.end) - i128::from(self.start))
    }

    /// The index in `nodes` of the span with id `span_id` (the first of several with the
    /// same id).
    pub fn find(&self, span_id: &[u8]) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.span_id == span_id && !n.duplicate_id)
    }

    /// Span id → index in `nodes`, for many lookups (the first of several with the same
    /// id, like [`SpanTree::find`]).
    pub fn index_by_id(&self) -> HashMap<[u8; 8], usize> {
        let mut map = HashMap::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.duplicate_id {
                map.insert(n.span_id, i);
            }
        }
        map
    }

    /// The services of the trace, sorted, each once.
    pub fn services(&self) -> Vec<&str> {
        let mut s: Vec<&str> = self.nodes.iter().map(|n| n.service.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s
    }
}

/// `v` clamped into `i64`.
fn sat(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Total length of the union of `[start, end)` intervals (sorted here).
fn union_len(mut intervals: Vec<(i64, i64)>) -> i128 {
    intervals.sort_unstable();
    let mut total = 0i128;
    let mut current: Option<(i64, i64)> = None;
    for (s, e) in intervals {
        match &mut current {
            Some((_, ce)) if s <= *ce => *ce = (*ce).max(e),
            _ => {
                if let Some((cs, ce)) = current {
                    total += i128::from(ce) - i128::from(cs);
                }
                current = Some((s, e));
            }
        }
    }
    if let Some((cs, ce)) = current {
        total += i128::from(ce) - i128::from(cs);
    }
    total
}

fn missing(column: &str, reason: impl Into<String>) -> Error {
    Error::InvalidBatch {
        signal: Signal::Spans,
        column: column.into(),
        row: None,
        reason: reason.into(),
    }
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| missing(name, "missing: not a batch of the spans table"))
}

/// A text column (plain or dictionary-encoded) as strings; null is `None`.
fn texts(b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let c = cast(column(b, name)?, &DataType::Utf8)
        .map_err(|e| missing(name, format!("not text: {e}")))?;
    let c = c.as_string::<i32>();
    Ok((0..c.len())
        .map(|r| c.is_valid(r).then(|| c.value(r).to_string()))
        .collect())
}

/// A timestamp column in ns (null reads as 0; the schema makes these columns non-null).
fn times(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let c = cast(column(b, name)?, &DataType::Int64)
        .map_err(|e| missing(name, format!("not a timestamp: {e}")))?;
    let c = c.as_primitive::<Int64Type>();
    Ok((0..c.len())
        .map(|r| if c.is_valid(r) { c.value(r) } else { 0 })
        .collect())
}

/// A span id column; null (or an id of another width) is `None`.
fn span_ids(b: &RecordBatch, name: &str) -> Result<Vec<Option<[u8; 8]>>> {
    let c = column(b, name)?
        .as_fixed_size_binary_opt()
        .ok_or_else(|| missing(name, "not FixedSizeBinary(8)"))?;
    Ok((0..c.len())
        .map(|r| {
            c.is_valid(r)
                .then(|| <[u8; 8]>::try_from(c.value(r)).ok())
                .flatten()
        })
        .collect())
}

/// Reads the spans of `batches` as unlinked nodes.
fn read_nodes(batches: &[RecordBatch]) -> Result<Vec<SpanNode>> {
    let mut out = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let ids = span_ids(b, "span_id")?;
        let parents = span_ids(b, "parent_span_id")?;
        let starts = times(b, "time")?;
        let ends = times(b, "end_time")?;
        let services = texts(b, "service_name")?;
        let names = texts(b, "name")?;
        let kinds = texts(b, "kind")?;
        let codes = texts(b, "status_code")?;
        let messages = texts(b, "status_message")?;
        for r in 0..b.num_rows() {
            let (start, end) = (starts[r], ends[r]);
            out.push(SpanNode {
                span_id: ids[r].unwrap_or_default(),
                parent_span_id: parents[r],
                parent: None,
                children: Vec::new(),
                depth: 0,
                service: services[r].clone().unwrap_or_default(),
                name: names[r].clone().unwrap_or_default(),
                kind: kinds[r].clone().unwrap_or_default(),
                status_code: codes[r].clone().unwrap_or_default(),
                status_message: messages[r].clone().filter(|m| !m.is_empty()),
                start,
                end,
                offset_ns: 0,
                duration_ns: sat((i128::from(end) - i128::from(start)).max(0)),
                self_ns: 0,
                orphan: false,
                cycle_broken: false,
                duplicate_id: false,
                ends_before_start: end < start,
                batch: bi,
                row: r,
            });
        }
    }
    Ok(out)
}

/// Parent in the tree of every node (indexes into `nodes`, which are sorted), with orphans,
/// self-parents and duplicates flagged; loops are still in it.
fn link(nodes: &mut [SpanNode]) -> Vec<Option<usize>> {
    let ids: Vec<[u8; 8]> = nodes.iter().map(|n| n.span_id).collect();
    let parents: Vec<Option<[u8; 8]>> = nodes.iter().map(|n| n.parent_span_id).collect();
    let linked = crate::structure::link(&ids, &parents);
    for (i, n) in nodes.iter_mut().enumerate() {
        n.duplicate_id = linked.duplicate[i];
        n.orphan = linked.orphan[i];
        n.cycle_broken = linked.self_parent[i];
    }
    linked.parent
}

/// Cuts every loop of `parent` at its earliest member (the lowest index), flagging it.
fn break_cycles(nodes: &mut [SpanNode], parent: &mut [Option<usize>]) {
    for cut in crate::structure::break_cycles(parent) {
        nodes[cut].cycle_broken = true;
    }
}

impl Trace {
    /// The span tree of the trace's spans (see [`SpanTree`] for the order and what is
    /// flagged). An empty trace gives an empty tree.
    ///
    /// Fails only when [`Trace::spans`] holds batches that are not of the `spans` table
    /// (a missing or mistyped column, [`Error::InvalidBatch`]); batches from a lookup
    /// always are.
    pub fn tree(&self) -> Result<SpanTree> {
        let mut nodes = read_nodes(&self.spans)?;
        if nodes.is_empty() {
            return Ok(SpanTree::default());
        }
        // Fully deterministic: equal start and id fall back to where the row was.
        nodes.sort_by(|a, b| {
            (a.start, a.span_id, a.end, a.batch, a.row)
                .cmp(&(b.start, b.span_id, b.end, b.batch, b.row))
        });
        let mut parent = link(&mut nodes);
        break_cycles(&mut nodes, &mut parent);

        // Children in sorted order, since nodes are sorted.
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut roots = Vec::new();
        for (i, p) in parent.iter().enumerate() {
            match p {
                Some(p) => children[*p].push(i),
                None => roots.push(i),
            }
        }

        // Depth-first pre-order, iteratively (traces can be deep).
        let mut order = Vec::with_capacity(nodes.len());
        let mut depth = vec![0usize; nodes.len()];
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        while let Some(i) = stack.pop() {
            order.push(i);
            for &c in children[i].iter().rev() {
                depth[c] = depth[i] + 1;
                stack.push(c);
            }
        }
        debug_assert_eq!(order.len(), nodes.len(), "every span is reached once");
        let mut new_index = vec![0usize; nodes.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }

        let start = nodes.iter().map(|n| n.start).min().unwrap_or(0);
        let end = nodes
            .iter()
            .map(SpanNode::effective_end)
            .max()
            .unwrap_or(start);
        let self_ns: Vec<i64> = (0..nodes.len())
            .map(|i| {
                let (s, e) = (nodes[i].start, nodes[i].effective_end());
                let covered = union_len(
                    children[i]
                        .iter()
                        .map(|&c| {
                            let (cs, ce) = (nodes[c].start.max(s), nodes[c].effective_end().min(e));
                            (cs, ce.max(cs))
                        })
                        .collect(),
                );
                sat((i128::from(e) - i128::from(s) - covered).max(0)).min(nodes[i].duration_ns)
            })
            .collect();

        let mut slots: Vec<Option<SpanNode>> = nodes.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(slots.len());
        for &old in &order {
            let mut n = slots[old].take().expect("each node is in the order once");
            n.parent = parent[old].map(|p| new_index[p]);
            n.children = children[old].iter().map(|&c| new_index[c]).collect();
            n.depth = depth[old];
            n.offset_ns = sat(i128::from(n.start) - i128::from(start));
            n.self_ns = self_ns[old];
            out.push(n);
        }
        Ok(SpanTree {
            nodes: out,
            roots: roots.iter().map(|&r| new_index[r]).collect(),
            start,
            end,
        })
    }
}

/// Runs of at least this many like siblings are what [`SpanTree::folds`] folds by default
/// (the `scry trace` waterfall and the web UI).
pub const FOLD_RUN: usize = 6;

/// Which spans a folded waterfall hides ([`SpanTree::folds`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folds {
    /// `hidden[i]`: node `i` is folded away.
    pub hidden: Vec<bool>,
    /// For the last span shown before each folded run: the nodes of the run, in order (a
    /// waterfall draws one "⋯ N more" line for them after that span).
    pub after: HashMap<usize, Vec<usize>>,
}

impl Folds {
    /// Nothing folded: every node of `tree` shown.
    pub fn none(tree: &SpanTree) -> Folds {
        Folds {
            hidden: vec![false; tree.nodes.len()],
            after: HashMap::new(),
        }
    }

    /// Nodes shown.
    pub fn shown(&self) -> usize {
        self.hidden.iter().filter(|h| !**h).count()
    }
}

impl SpanTree {
    /// Folds runs of at least `min_run` (at least 4) like siblings — children of one span
    /// (or roots) next to each other with the same service and name, no children of their
    /// own, no error, and not `keep(i)` (callers keep, e.g., spans with an error log) — to
    /// their first two and last one. Huge traces of repeated calls (a loop of 1,000 cache
    /// reads) draw as a few lines; nothing interesting is ever hidden.
    pub fn folds(&self, min_run: usize, keep: &dyn Fn(usize) -> bool) -> Folds {
        let min_run = min_run.max(4);
        let mut hidden = vec![false; self.nodes.len()];
        let mut after: HashMap<usize, Vec<usize>> = HashMap::new();
        let foldable = |i: usize| {
            let n = &self.nodes[i];
            n.children.is_empty() && !n.is_error() && !keep(i)
        };
        for kids in std::iter::once(&self.roots).chain(self.nodes.iter().map(|n| &n.children)) {
            let mut at = 0;
            while at < kids.len() {
                let first = &self.nodes[kids[at]];
                let mut end = at;
                while end < kids.len()
                    && foldable(kids[end])
                    && self.nodes[kids[end]].service == first.service
                    && self.nodes[kids[end]].name == first.name
                {
                    end += 1;
                }
                if end - at >= min_run {
                    let middle = &kids[at + 2..end - 1];
                    for &i in middle {
                        hidden[i] = true;
                    }
                    after.insert(kids[at + 1], middle.to_vec());
                }
                at = end.max(at + 1);
            }
        }
        Folds { hidden, after }
    }
}

/// The OpenTelemetry severity level of a `severity_number` (1–24): `TRACE`, `DEBUG`,
/// `INFO`, `WARN`, `ERROR`, `FATAL`; `""` outside that range.
pub fn severity_name(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "",
    }
}

/// One log record of a looked-up [`Trace`] ([`Trace::log_lines`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLog {
    /// The span it was emitted in, when it names one.
    pub span_id: Option<[u8; 8]>,
    /// `time`, ns since the epoch.
    pub time: i64,
    /// `severity_number`, when set.
    pub severity_number: Option<i32>,
    /// `severity_text`, or the level of `severity_number` when there is no text.
    pub severity: String,
    /// `body` (empty when null).
    pub body: String,
    /// `service_name`.
    pub service: String,
    /// Batch of [`Trace::logs`] holding the record.
    pub batch: usize,
    /// Row in that batch.
    pub row: usize,
}

impl TraceLog {
    /// Whether it is an error: ERROR or FATAL by number (17 and above), or, when the
    /// number is absent or 0 ("unspecified"), by text.
    pub fn is_error(&self) -> bool {
        if let Some(n) = self.severity_number.filter(|&n| n > 0) {
            return n >= 17;
        }
        let s = self.severity.to_ascii_uppercase();
        s.starts_with("ERROR") || s.starts_with("FATAL")
    }
}

impl Trace {
    /// The trace's log records, oldest first (ties in storage order).
    ///
    /// Fails only when [`Trace::logs`] holds batches that are not of the `logs` table.
    pub fn log_lines(&self) -> Result<Vec<TraceLog>> {
        let bad = |name: &str, reason: String| Error::InvalidBatch {
            signal: Signal::Logs,
            column: name.into(),
            row: None,
            reason,
        };
        let mut out = Vec::new();
        for (bi, b) in self.logs.iter().enumerate() {
            let text = |name: &str| -> Result<Vec<Option<String>>> {
                let c = b
                    .column_by_name(name)
                    .ok_or_else(|| bad(name, "missing: not a batch of the logs table".into()))?;
                let c =
                    cast(c, &DataType::Utf8).map_err(|e| bad(name, format!("not text: {e}")))?;
                let c = c.as_string::<i32>();
                Ok((0..c.len())
                    .map(|r| c.is_valid(r).then(|| c.value(r).to_string()))
                    .collect())
            };
            let column = |name: &str| {
                b.column_by_name(name)
                    .ok_or_else(|| bad(name, "missing: not a batch of the logs table".into()))
            };
            let time = cast(column("time")?, &DataType::Int64)
                .map_err(|e| bad("time", format!("not a timestamp: {e}")))?;
            let time = time.as_primitive::<Int64Type>();
            let number = column("severity_number")?
                .as_primitive_opt::<arrow::datatypes::Int32Type>()
                .ok_or_else(|| bad("severity_number", "not Int32".into()))?;
            let span = column("span_id")?
                .as_fixed_size_binary_opt()
                .ok_or_else(|| bad("span_id", "not FixedSizeBinary(8)".into()))?;
            let (texts, bodies, services) =
                (text("severity_text")?, text("body")?, text("service_name")?);
            for r in 0..b.num_rows() {
                let severity_number = number.is_valid(r).then(|| number.value(r));
                let severity = match (&texts[r], severity_number) {
                    (Some(t), _) if !t.is_empty() => t.clone(),
                    (_, Some(n)) => severity_name(n).to_string(),
                    _ => String::new(),
                };
                out.push(TraceLog {
                    span_id: span
                        .is_valid(r)
                        .then(|| <[u8; 8]>::try_from(span.value(r)).ok())
                        .flatten(),
                    time: if time.is_valid(r) { time.value(r) } else { 0 },
                    severity_number,
                    severity,
                    body: bodies[r].clone().unwrap_or_default(),
                    service: services[r].clone().unwrap_or_default(),
                    batch: bi,
                    row: r,
                });
            }
        }
        out.sort_by_key(|l| l.time);
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{FixedSizeBinaryArray, RecordBatch, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    /// (id, parent, start, end, status)
    pub(crate) type Row = (u8, Option<u8>, i64, i64, &'static str);

    fn id(n: u8) -> [u8; 8] {
        [0, 0, 0, 0, 0, 0, 0, n]
    }

    /// A batch with the columns the tree reads (plain strings, not dictionaries: the tree
    /// must not care).
    fn batch(rows: &[Row]) -> RecordBatch {
        let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new("span_id", DataType::FixedSizeBinary(8), false),
            Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
            Field::new("time", ts(), false),
            Field::new("end_time", ts(), false),
            Field::new("service_name", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("status_code", DataType::Utf8, false),
            Field::new("status_message", DataType::Utf8, true),
        ]);
        let ids = FixedSizeBinaryArray::try_from_iter(rows.iter().map(|r| id(r.0))).expect("ids");
        let parents = FixedSizeBinaryArray::try_from_sparse_iter_with_size(
            rows.iter().map(|r| r.1.map(id)),
            8,
        )
        .expect("parents");
        let starts = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.2))
            .with_timezone("UTC");
        let ends = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.3))
            .with_timezone("UTC");
        let names: StringArray = rows.iter().map(|r| Some(format!("s{}", r.0))).collect();
        let constant = |v: &str| StringArray::from(vec![v; rows.len()]);
        let codes: StringArray = rows.iter().map(|r| Some(r.4)).collect();
        let messages: StringArray = rows.iter().map(|_| None::<&str>).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(ids),
                Arc::new(parents),
                Arc::new(starts),
                Arc::new(ends),
                Arc::new(constant("svc")),
                Arc::new(names),
                Arc::new(constant("INTERNAL")),
                Arc::new(codes),
                Arc::new(messages),
            ],
        )
        .expect("batch")
    }

    pub(crate) fn tree(rows: &[Row]) -> SpanTree {
        Trace {
            spans: vec![batch(rows)],
            ..Default::default()
        }
        .tree()
        .expect("tree")
    }

    /// (name, depth) in tree order.
    fn shape(t: &SpanTree) -> Vec<(String, usize)> {
        t.nodes.iter().map(|n| (n.name.clone(), n.depth)).collect()
    }

    fn node(t: &SpanTree, n: u8) -> &SpanNode {
        &t.nodes[t.find(&id(n)).expect("span in tree")]
    }

    #[test]
    fn a_normal_tree_in_start_order_with_offsets_and_self_times() {
        // Rows out of order; children ordered by start, then id.
        let t = tree(&[
            (3, Some(1), 150, 180, "UNSET"),
            (1, None, 100, 200, "UNSET"),
            (4, Some(2), 120, 130, "ERROR"),
            (2, Some(1), 110, 140, "UNSET"),
            (5, Some(1), 150, 160, "UNSET"),
        ]);
        let want: Vec<(String, usize)> = [("s1", 0), ("s2", 1), ("s4", 2), ("s3", 1), ("s5", 1)]
            .iter()
            .map(|(n, d)| (n.to_string(), *d))
            .collect();
        assert_eq!(shape(&t), want);
        assert_eq!(t.roots, [0]);
        assert_eq!((t.start, t.end, t.duration_ns()), (100, 200, 100));
        let root = node(&t, 1);
        assert_eq!(root.children, [1, 3, 4]);
        assert_eq!((root.offset_ns, root.duration_ns), (0, 100));
        // Children cover 110..140 and 150..180 (s5 inside s3): 60 of 100.
        assert_eq!(root.self_ns, 40);
        let s2 = node(&t, 2);
        assert_eq!((s2.offset_ns, s2.duration_ns, s2.self_ns), (10, 30, 20));
        assert_eq!(s2.parent, Some(0));
        assert!(node(&t, 4).is_error());
        assert!(t.nodes.iter().all(|n| !n.orphan && !n.cycle_broken));
        assert_eq!(t.services(), ["svc"]);
    }

    #[test]
    fn overlapping_and_overhanging_children_never_make_self_time_negative() {
        let t = tree(&[
            (1, None, 0, 100, "UNSET"),
            // Three concurrent children: their sum (190) exceeds the parent.
            (2, Some(1), 10, 90, "UNSET"),
            (3, Some(1), 20, 80, "UNSET"),
            (4, Some(1), 30, 80, "UNSET"),
            // Starts before and ends after the parent (clock skew): clipped to 0..100.
            (5, Some(1), -50, 5, "UNSET"),
            (6, Some(1), 95, 500, "UNSET"),
        ]);
        let root = node(&t, 1);
        // Covered: 0..5, 10..90, 95..100 = 90.
        assert_eq!(root.self_ns, 10);
        // The skewed child is first (earliest start) and sets the trace start.
        assert_eq!(t.start, -50);
        assert_eq!(root.offset_ns, 50);
        assert_eq!(t.nodes[1].name, "s5");

        // Children covering everything: self time 0, not negative.
        let t = tree(&[
            (1, None, 0, 100, "UNSET"),
            (2, Some(1), 0, 100, "UNSET"),
            (3, Some(1), 0, 100, "UNSET"),
        ]);
        assert_eq!(node(&t, 1).self_ns, 0);
    }

    #[test]
    fn orphans_become_flagged_roots() {
        let t = tree(&[
            (1, None, 0, 10, "UNSET"),
            (2, Some(9), 5, 8, "UNSET"),
            (3, Some(2), 6, 7, "UNSET"),
        ]);
        assert_eq!(t.roots, [0, 1]);
        let orphan = node(&t, 2);
        assert!(orphan.orphan && orphan.parent.is_none());
        assert_eq!(orphan.parent_span_id, Some(id(9)));
        assert_eq!(node(&t, 3).depth, 1);
        assert!(!node(&t, 3).orphan);
    }

    #[test]
    fn parent_cycles_and_self_parents_are_cut_and_flagged() {
        // a → b → a, with a child under b; a self-parent; a chain into a loop c → d → e → d.
        let t = tree(&[
            (1, Some(2), 10, 20, "UNSET"),
            (2, Some(1), 12, 18, "UNSET"),
            (3, Some(2), 13, 14, "UNSET"),
            (4, Some(4), 30, 40, "UNSET"),
            (5, Some(6), 50, 60, "UNSET"),
            (6, Some(7), 51, 59, "UNSET"),
            (7, Some(6), 52, 58, "UNSET"),
        ]);
        assert_eq!(t.nodes.len(), 7, "no span dropped");
        // The loop 1 ↔ 2 is cut at 1 (earliest): 1 is a root, 2 under it, 3 under 2.
        let a = node(&t, 1);
        assert!(a.cycle_broken && a.parent.is_none());
        assert_eq!(node(&t, 2).depth, 1);
        assert_eq!(node(&t, 3).depth, 2);
        assert!(!node(&t, 2).cycle_broken);
        let own = node(&t, 4);
        assert!(own.cycle_broken && own.parent.is_none() && own.children.is_empty());
        // 6 ↔ 7 cut at 6; 5 hangs under 6.
        assert!(node(&t, 6).cycle_broken);
        assert_eq!(node(&t, 5).depth, 1);
        assert_eq!(node(&t, 7).depth, 1);
        let roots: Vec<&str> = t.roots.iter().map(|&r| t.nodes[r].name.as_str()).collect();
        assert_eq!(roots, ["s1", "s4", "s6"]);
        // Every node's children point back to it.
        for (i, n) in t.nodes.iter().enumerate() {
            for &c in &n.children {
                assert_eq!(t.nodes[c].parent, Some(i));
            }
        }
    }

    #[test]
    fn extreme_timestamps_saturate_and_reversed_spans_are_flagged() {
        let t = tree(&[
            (1, None, i64::MIN, i64::MAX, "UNSET"),
            (2, Some(1), i64::MAX - 1, i64::MAX, "UNSET"),
            (3, Some(1), 0, i64::MIN, "UNSET"),
        ]);
        let root = node(&t, 1);
        assert_eq!(root.duration_ns, i64::MAX);
        assert_eq!(root.offset_ns, 0);
        assert_eq!(t.duration_ns(), i64::MAX);
        assert!(root.self_ns > 0 && root.self_ns <= root.duration_ns);
        let late = node(&t, 2);
        assert_eq!((late.offset_ns, late.duration_ns), (i64::MAX, 1));
        let reversed = node(&t, 3);
        assert!(reversed.ends_before_start);
        assert_eq!((reversed.duration_ns, reversed.self_ns), (0, 0));
        assert_eq!(reversed.offset_ns, i64::MAX);
    }

    #[test]
    fn duplicate_ids_keep_both_spans() {
        let t = tree(&[
            (1, None, 0, 10, "UNSET"),
            (1, None, 0, 12, "UNSET"),
            (2, Some(1), 1, 2, "UNSET"),
        ]);
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.roots.len(), 2);
        assert!(t.nodes[t.roots[1]].duplicate_id);
        assert_eq!(t.nodes[t.roots[0]].children.len(), 1);
    }

    #[test]
    fn an_empty_trace_gives_an_empty_tree_and_foreign_batches_an_error() {
        let t = Trace::default().tree().expect("empty");
        assert!(t.is_empty() && t.roots.is_empty());
        assert_eq!(t.duration_ns(), 0);
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(vec!["a"]))],
        )
        .expect("batch");
        let err = Trace {
            spans: vec![other],
            ..Default::default()
        }
        .tree()
        .expect_err("not spans");
        assert!(err.to_string().contains("span_id"), "{err}");
    }
}
