//! The critical path of a trace: the chain of spans that the request's latency was spent
//! in, each with its contribution (the time on the path that it, and none of its children,
//! was what the request waited for).
//!
//! The path explains the duration of one root span, [`CriticalPath::root`]: of the trace's
//! roots, the longest of those sent without a parent (or, when every root is an orphan or a
//! cut loop, the longest root). Walking back from the root's end, a span's time is its own
//! until the latest-finishing child that started before the cursor; that child's window is
//! explained the same way (recursively), and the walk goes on from the child's start. So:
//!
//! - **Overlapping (concurrent) children**: only the one that finished last is waited on;
//!   the others run in its shadow and are off the path, unless one of them started earlier
//!   and is still running when the walk reaches the last one's start (then it takes over
//!   from there). Ties go to the child with the later clipped end, then the earlier start,
//!   then the tree's order.
//! - **Clock skew**: a child is clipped to its parent's window (a child that seems to start
//!   before its parent, or end after it, is counted only inside it); a child entirely
//!   outside its parent's window is off the path.
//! - **Async children** (`FOLLOWS_FROM` links, a `PRODUCER`'s `CONSUMER`): the part of
//!   them after their parent ended is not on the path — the request did not wait for it —
//!   and a consumer that started after its producer ended is off the path.
//! - **Orphans** (spans whose parent is missing) are roots of their own; the path of the
//!   chosen root does not include them.
//! - A span that ends before it starts counts as ending at its start.
//!
//! Contributions add up to the root's duration exactly; every segment of the path lies
//! inside its span's (clipped) interval. Runs in `O(n log n)` for `n` spans, iteratively
//! (a trace thousands of spans deep does not recurse).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::schema;
use crate::span_tree::{SpanNode, SpanTree};

/// A stretch of the critical path: the request waited on span [`SpanTree::nodes`]`[node]`
/// itself from `start` to `end` (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSegment {
    /// Index of the span in [`SpanTree::nodes`].
    pub node: usize,
    /// Start of the stretch, ns since the epoch.
    pub start: i64,
    /// End of the stretch, ns since the epoch (after `start`).
    pub end: i64,
}

/// The critical path of a [`SpanTree`] ([`SpanTree::critical_path`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriticalPath {
    /// The root whose duration the path explains; `None` for an empty trace.
    pub root: Option<usize>,
    /// The stretches, in time order, back to back from the root's start to its end (none
    /// for a root of zero duration). Consecutive stretches may be of the same span (a
    /// parent before and after a child).
    pub segments: Vec<PathSegment>,
    /// Per span of the tree (same indexes as [`SpanTree::nodes`]): its time on the path,
    /// ns (saturating at `i64::MAX`); 0 for spans off it.
    pub contribution: Vec<i64>,
    /// The spans on the path — the root and every span whose window the walk explained,
    /// even one whose own time on it is 0 (a server span exactly as long as its client
    /// call) — by the start of that window, then depth: a parent before its children.
    pub spans: Vec<usize>,
    /// Per span of the tree: whether it is in `spans`.
    pub on_path: Vec<bool>,
}

impl CriticalPath {
    /// Whether span `node` is on the path.
    pub fn contains(&self, node: usize) -> bool {
        self.on_path.get(node).copied().unwrap_or(false)
    }

    /// The length of the path: the root's duration, ns (saturating at `i64::MAX`).
    pub fn total_ns(&self) -> i64 {
        i64::try_from(self.total()).unwrap_or(i64::MAX)
    }

    /// The length of the path, exactly.
    fn total(&self) -> i128 {
        self.segments
            .iter()
            .map(|s| i128::from(s.end) - i128::from(s.start))
            .sum()
    }

    /// `part` ns of the path as a share of its length (0 for a path of length 0).
    pub fn share(&self, part: i64) -> f64 {
        let total = self.total();
        if total > 0 {
            (part as f64 / total as f64).min(1.0)
        } else {
            0.0
        }
    }

    /// Time on the path per service, largest first (ties by name); services of spans off
    /// the path are not listed.
    pub fn by_service<'a>(&self, tree: &'a SpanTree) -> Vec<(&'a str, i64)> {
        let mut per: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (i, &c) in self.contribution.iter().enumerate() {
            if c > 0 {
                let e = per.entry(tree.nodes[i].service.as_str()).or_default();
                *e = e.saturating_add(c);
            }
        }
        let mut out: Vec<(&str, i64)> = per.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }
}

fn effective_end(n: &SpanNode) -> i64 {
    n.end.max(n.start)
}

/// The root a trace's critical path explains: the longest root sent without a parent,
/// else the longest root; ties to the earliest in the tree's order.
fn main_root(tree: &SpanTree) -> Option<usize> {
    let longest = |candidates: &mut dyn Iterator<Item = usize>| {
        candidates.fold(None, |best: Option<usize>, r| match best {
            Some(b) if tree.nodes[b].duration_ns >= tree.nodes[r].duration_ns => Some(b),
            _ => Some(r),
        })
    };
    longest(&mut tree.roots.iter().copied().filter(|&r| {
        let n = &tree.nodes[r];
        !n.orphan && !n.cycle_broken
    }))
    .or_else(|| longest(&mut tree.roots.iter().copied()))
}

/// One span whose window is being explained.
struct Frame {
    node: usize,
    /// The window's start; the walk ends when the cursor reaches it.
    lo: i64,
    /// Where the walk is: everything after it is explained.
    cursor: i64,
    /// Children clipped to the window and not empty: (node, clipped start, clipped end),
    /// latest clipped end first, then earliest start, then tree order.
    children: Vec<(usize, i64, i64)>,
    next: usize,
}

impl Frame {
    fn new(tree: &SpanTree, node: usize, lo: i64, hi: i64) -> Frame {
        let mut children: Vec<(usize, i64, i64)> = tree.nodes[node]
            .children
            .iter()
            .filter_map(|&c| {
                let n = &tree.nodes[c];
                let (s, e) = (n.start.max(lo), effective_end(n).min(hi));
                (e > s).then_some((c, s, e))
            })
            .collect();
        children.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
        Frame {
            node,
            lo,
            cursor: hi,
            children,
            next: 0,
        }
    }
}

impl SpanTree {
    /// The critical path of the trace (see [`crate::critical_path`] for what is on it and
    /// how overlapping, async, skewed and orphaned spans count). An empty tree gives an
    /// empty path.
    pub fn critical_path(&self) -> CriticalPath {
        let mut contribution = vec![0i64; self.nodes.len()];
        let Some(root) = main_root(self) else {
            return CriticalPath::default();
        };
        let r = &self.nodes[root];
        let mut segments = Vec::new();
        // Stretches are found from the end backwards.
        let mut emit = |node: usize, start: i64, end: i64| {
            if end > start {
                segments.push(PathSegment { node, start, end });
                let len = i64::try_from(i128::from(end) - i128::from(start)).unwrap_or(i64::MAX);
                contribution[node] = contribution[node].saturating_add(len);
            }
        };
        // Every span whose window is explained: (window start, depth, node).
        let mut entered = vec![(r.start, r.depth, root)];
        let mut stack = vec![Frame::new(self, root, r.start, effective_end(r))];
        while let Some(f) = stack.last_mut() {
            if f.cursor <= f.lo {
                stack.pop();
                continue;
            }
            // The child that finished last among those started before the cursor; one
            // started at or after it ran in the shadow of a child already walked.
            let mut picked = None;
            while let Some(&(c, s, e)) = f.children.get(f.next) {
                f.next += 1;
                if s < f.cursor {
                    picked = Some((c, s, e.min(f.cursor)));
                    break;
                }
            }
            match picked {
                None => {
                    emit(f.node, f.lo, f.cursor);
                    stack.pop();
                }
                Some((c, s, e)) => {
                    emit(f.node, e, f.cursor);
                    f.cursor = s;
                    entered.push((s, self.nodes[c].depth, c));
                    let child = Frame::new(self, c, s, e);
                    stack.push(child);
                }
            }
        }
        segments.reverse();
        entered.sort_unstable();
        let mut on_path = vec![false; self.nodes.len()];
        for &(_, _, n) in &entered {
            on_path[n] = true;
        }
        CriticalPath {
            root: Some(root),
            segments,
            contribution,
            spans: entered.into_iter().map(|(_, _, n)| n).collect(),
            on_path,
        }
    }
}

/// The columns of SQL's `critical_path('<trace hex>')`: one row per span on the path, in
/// path order — `step` (1-based), `span_id`, `parent_span_id`, `service_name`, `name`,
/// `kind`, `status_code`, `depth`, `time` (the span's start), `duration_ns`, `self_ns`
/// (the span's own time, on the path or not), `critical_ns` (its time on the path) and
/// `critical_share` (`critical_ns` over the path's length, 0 for a path of length 0).
pub fn path_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("span_id", schema::span_id_type(), false),
        Field::new("parent_span_id", schema::span_id_type(), true),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("depth", DataType::Int64, false),
        Field::new("time", schema::timestamp_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("self_ns", DataType::Int64, false),
        Field::new("critical_ns", DataType::Int64, false),
        Field::new("critical_share", DataType::Float64, false),
    ]))
}

/// `path` of `tree` as rows of [`path_schema`].
pub fn path_batch(tree: &SpanTree, path: &CriticalPath) -> RecordBatch {
    let spans = &path.spans;
    let nodes: Vec<&SpanNode> = spans.iter().map(|&i| &tree.nodes[i]).collect();
    let strings = |f: &dyn Fn(&SpanNode) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(nodes.iter().map(|n| f(n))))
    };
    let ints = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    let ids = |v: Vec<Option<[u8; 8]>>| -> ArrayRef {
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(v.into_iter(), 8)
                .expect("8-byte ids"),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        ints((1..=spans.len() as i64).collect()),
        ids(nodes.iter().map(|n| Some(n.span_id)).collect()),
        ids(nodes.iter().map(|n| n.parent_span_id).collect()),
        strings(&|n| &n.service),
        strings(&|n| &n.name),
        strings(&|n| &n.kind),
        strings(&|n| &n.status_code),
        ints(nodes.iter().map(|n| n.depth as i64).collect()),
        Arc::new(
            TimestampNanosecondArray::from_iter_values(nodes.iter().map(|n| n.start))
                .with_timezone("UTC"),
        ),
        ints(nodes.iter().map(|n| n.duration_ns).collect()),
        ints(nodes.iter().map(|n| n.self_ns).collect()),
        ints(spans.iter().map(|&i| path.contribution[i]).collect()),
        Arc::new(Float64Array::from_iter_values(
            spans.iter().map(|&i| path.share(path.contribution[i])),
        )),
    ];
    RecordBatch::try_new(path_schema(), columns).expect("columns match the path schema")
}

/// The columns of SQL's `trace_stats('<trace hex>')`: one row per service of the trace,
/// most time on the critical path first — `service_name`, `spans`, `errors`,
/// `critical_ns`, `critical_share` (of the path's length) — and the trace's totals,
/// the same on every row: `trace_spans`, `trace_services`, `trace_errors`, `depth` (levels
/// of the deepest span, 1 for a trace of roots only), `duration_ns` (first start to last
/// end), `orphans` (spans whose parent is missing), `root_service`, `root_name` (the root
/// the critical path explains).
pub fn stats_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("service_name", DataType::Utf8, false),
        Field::new("spans", DataType::Int64, false),
        Field::new("errors", DataType::Int64, false),
        Field::new("critical_ns", DataType::Int64, false),
        Field::new("critical_share", DataType::Float64, false),
        Field::new("trace_spans", DataType::Int64, false),
        Field::new("trace_services", DataType::Int64, false),
        Field::new("trace_errors", DataType::Int64, false),
        Field::new("depth", DataType::Int64, false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("orphans", DataType::Int64, false),
        Field::new("root_service", DataType::Utf8, true),
        Field::new("root_name", DataType::Utf8, true),
    ]))
}

/// The statistics of `tree` (with its critical path `path`) as rows of [`stats_schema`]:
/// no rows for an empty trace.
pub fn stats_batch(tree: &SpanTree, path: &CriticalPath) -> RecordBatch {
    let mut per: std::collections::BTreeMap<&str, (i64, i64, i64)> = Default::default();
    for (i, n) in tree.nodes.iter().enumerate() {
        let e = per.entry(n.service.as_str()).or_default();
        e.0 += 1;
        e.1 += i64::from(n.is_error());
        e.2 = e.2.saturating_add(path.contribution[i]);
    }
    let mut rows: Vec<(&str, (i64, i64, i64))> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1.2.cmp(&a.1.2).then(a.0.cmp(b.0)));
    let n = rows.len();
    let errors = tree.nodes.iter().filter(|s| s.is_error()).count() as i64;
    let depth = tree
        .nodes
        .iter()
        .map(|s| s.depth as i64 + 1)
        .max()
        .unwrap_or(0);
    let orphans = tree.nodes.iter().filter(|s| s.orphan).count() as i64;
    let root = path.root.map(|r| &tree.nodes[r]);
    let repeat = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v; n])) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.0))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.1))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.2))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| path.share(r.1.2)),
        )),
        repeat(tree.nodes.len() as i64),
        repeat(n as i64),
        repeat(errors),
        repeat(depth),
        repeat(tree.duration_ns()),
        repeat(orphans),
        Arc::new(StringArray::from(vec![root.map(|r| r.service.as_str()); n])),
        Arc::new(StringArray::from(vec![root.map(|r| r.name.as_str()); n])),
    ];
    RecordBatch::try_new(stats_schema(), columns).expect("columns match the stats schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_tree::tests::{Row, tree};

    /// (span number, ns on the path) for the spans on the path, in path order.
    fn path(rows: &[Row]) -> Vec<(u8, i64)> {
        let t = tree(rows);
        let p = t.critical_path();
        check(&t, &p);
        p.spans
            .iter()
            .map(|&i| (t.nodes[i].span_id[7], p.contribution[i]))
            .collect()
    }

    /// What every path must satisfy: stretches back to back over the root's window, each
    /// inside its span's interval, contributions adding up to the root's duration.
    fn check(t: &SpanTree, p: &CriticalPath) {
        let Some(root) = p.root else {
            assert!(t.is_empty());
            return;
        };
        let r = &t.nodes[root];
        let mut at = r.start;
        for s in &p.segments {
            assert_eq!(s.start, at, "stretches are back to back: {p:?}");
            assert!(s.end > s.start);
            let n = &t.nodes[s.node];
            assert!(
                n.start <= s.start && s.end <= effective_end(n),
                "inside the span"
            );
            at = s.end;
        }
        if !p.segments.is_empty() {
            assert_eq!(at, effective_end(r));
        }
        assert_eq!(i128::from(p.total_ns()), i128::from(r.duration_ns));
        // A span on the path has its parent on it (the root has none), and is listed once,
        // after its parent.
        let mut seen = vec![false; t.nodes.len()];
        for &i in &p.spans {
            assert!(!seen[i], "listed once");
            seen[i] = true;
            assert!(p.contains(i));
            if i != root {
                let parent = t.nodes[i].parent.expect("a parent");
                assert!(seen[parent], "the parent of {i} comes first: {p:?}");
            }
        }
        for s in &p.segments {
            assert!(seen[s.node], "every stretch's span is listed");
            // No child of the span overlaps a stretch that is its own.
            let n = &t.nodes[s.node];
            for &c in &n.children {
                let c = &t.nodes[c];
                let (cs, ce) = (c.start.max(n.start), effective_end(c).min(effective_end(n)));
                assert!(
                    ce <= s.start || cs >= s.end || ce <= cs,
                    "a child runs during its parent's own stretch: {p:?}"
                );
            }
        }
    }

    #[test]
    fn sequential_children_are_all_on_the_path() {
        // 1 [0, 100): 2 [10, 40), 3 [50, 90).
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 10, 40, "OK"),
            (3, Some(1), 50, 90, "OK"),
        ];
        assert_eq!(path(&rows), [(1, 30), (2, 30), (3, 40)]);
    }

    #[test]
    fn of_parallel_children_the_last_to_finish_is_on_the_path() {
        // 2 and 3 run together; 3 finishes last. 4 starts before 3 and is still running
        // when the walk reaches 3's start: it takes over from there.
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 10, 60, "OK"),
            (3, Some(1), 30, 80, "OK"),
            (4, Some(1), 5, 40, "OK"),
        ];
        // Walking back from 100: 1 until 3 ends (20), 3 [30, 80); from 30, 2 (finishing
        // at 60, later than 4) for [10, 30); from 10, 4 for [5, 10); 1 for [0, 5).
        assert_eq!(path(&rows), [(1, 25), (4, 5), (2, 20), (3, 50)]);
    }

    #[test]
    fn nested_children_recurse() {
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 10, 90, "OK"),
            (3, Some(2), 20, 50, "OK"),
            (4, Some(3), 25, 45, "OK"),
            (5, Some(2), 60, 80, "OK"),
        ];
        assert_eq!(path(&rows), [(1, 20), (2, 30), (3, 10), (4, 20), (5, 20)]);
    }

    #[test]
    fn async_children_count_only_while_their_parent_runs() {
        // 2 is a fire-and-forget child running past its parent's end; 3 a consumer that
        // starts after the producer (1) ended.
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 70, 500, "OK"),
            (3, Some(1), 200, 300, "OK"),
        ];
        assert_eq!(path(&rows), [(1, 70), (2, 30)]);
    }

    #[test]
    fn skewed_children_are_clipped_to_their_parent() {
        // 2's clock is 20 ns behind: it seems to start before its parent.
        let rows = [(1, None, 100, 200, "OK"), (2, Some(1), 80, 150, "OK")];
        assert_eq!(path(&rows), [(1, 50), (2, 50)]);
    }

    #[test]
    fn orphans_are_off_the_path_of_the_root() {
        // 3's parent (9) is missing: an orphan root, longer than the real root, yet the
        // path is the real root's.
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 10, 20, "OK"),
            (3, Some(9), 0, 1000, "OK"),
            (4, Some(3), 0, 900, "OK"),
        ];
        assert_eq!(path(&rows), [(1, 90), (2, 10)]);
        // With only orphans, the longest one is explained.
        assert_eq!(
            path(&[(3, Some(9), 0, 1000, "OK"), (4, Some(3), 0, 900, "OK")]),
            [(3, 100), (4, 900)]
        );
    }

    #[test]
    fn a_span_covered_by_its_child_is_on_the_path_with_no_time_of_its_own() {
        // A client call and its server span of exactly the same window.
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 10, 90, "OK"),
            (3, Some(2), 10, 90, "OK"),
        ];
        assert_eq!(path(&rows), [(1, 20), (2, 0), (3, 80)]);
        // A child starting with its parent is listed after it.
        let rows = [
            (1, None, 0, 100, "OK"),
            (2, Some(1), 10, 90, "OK"),
            (3, Some(2), 10, 50, "OK"),
        ];
        assert_eq!(path(&rows), [(1, 20), (2, 40), (3, 40)]);
    }

    #[test]
    fn a_chain_a_hundred_thousand_deep_does_not_recurse() {
        const N: usize = 100_000;
        let node = |i: usize| SpanNode {
            span_id: (i as u64).to_be_bytes(),
            parent_span_id: (i > 0).then(|| ((i - 1) as u64).to_be_bytes()),
            parent: i.checked_sub(1),
            children: if i + 1 < N { vec![i + 1] } else { vec![] },
            depth: i,
            service: "s".into(),
            name: "n".into(),
            kind: "INTERNAL".into(),
            status_code: "OK".into(),
            status_message: None,
            start: i as i64,
            end: (2 * N - i) as i64,
            offset_ns: i as i64,
            duration_ns: (2 * (N - i)) as i64,
            self_ns: 2,
            orphan: false,
            cycle_broken: false,
            duplicate_id: false,
            ends_before_start: false,
            batch: 0,
            row: i,
        };
        let tree = SpanTree {
            nodes: (0..N).map(node).collect(),
            roots: vec![0],
            start: 0,
            end: 2 * N as i64,
        };
        let p = tree.critical_path();
        assert_eq!(p.spans.len(), N);
        assert_eq!(p.total_ns(), 2 * N as i64);
        assert!(p.contribution.iter().all(|&c| c == 2));
    }

    #[test]
    fn degenerate_spans_do_not_break_the_path() {
        // Zero-length root, a child ending before it starts, extreme timestamps.
        assert_eq!(path(&[(1, None, 5, 5, "OK")]), [(1, 0)]);
        assert_eq!(
            path(&[(1, None, 0, 10, "OK"), (2, Some(1), 8, 2, "OK")]),
            [(1, 10)]
        );
        let rows = [
            (1, None, i64::MIN, i64::MAX, "OK"),
            (2, Some(1), 0, i64::MAX, "OK"),
        ];
        let t = tree(&rows);
        let p = t.critical_path();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.total_ns(), i64::MAX);
        // Shares stay within 1 even where contributions saturate.
        let shares: f64 = p.contribution.iter().map(|&c| p.share(c)).sum();
        assert!(shares <= 1.0 + 1e-9, "{shares}");
        assert!(SpanTree::default().critical_path().root.is_none());
    }

    /// The same walk written the obvious way: recursive, re-scanning every child for each
    /// pick.
    fn naive(t: &SpanTree, node: usize, lo: i64, hi: i64, out: &mut Vec<PathSegment>) {
        let mut cursor = hi;
        loop {
            let mut best: Option<(i64, i64, i64, usize)> = None; // (min(e,cursor), e, -s, idx)
            let mut pick = None;
            for (i, &c) in t.nodes[node].children.iter().enumerate() {
                let n = &t.nodes[c];
                let (s, e) = (n.start.max(lo), effective_end(n).min(hi));
                if e <= s || s >= cursor {
                    continue;
                }
                let key = (e.min(cursor), e, -s, usize::MAX - i);
                if best.is_none_or(|b| key > b) {
                    best = Some(key);
                    pick = Some((c, s, e.min(cursor)));
                }
            }
            match pick {
                None => {
                    if cursor > lo {
                        out.push(PathSegment {
                            node,
                            start: lo,
                            end: cursor,
                        });
                    }
                    return;
                }
                Some((c, s, e)) => {
                    if cursor > e {
                        out.push(PathSegment {
                            node,
                            start: e,
                            end: cursor,
                        });
                    }
                    naive(t, c, s, e, out);
                    cursor = s;
                }
            }
        }
    }

    #[test]
    fn random_traces_match_the_naive_walk() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2000 {
            let n = 1 + rand(40) as u8;
            let mut rows: Vec<Row> = Vec::new();
            for i in 1..=n {
                let parent = match rand(10) {
                    0 if i > 1 => Some(200 + rand(5) as u8), // orphan
                    _ if i > 1 => Some(1 + rand(u64::from(i - 1)) as u8),
                    _ => None,
                };
                let start = rand(100) as i64;
                let end = start + rand(60) as i64 - 5; // a few end before they start
                rows.push((i, parent, start, end, "OK"));
            }
            let t = tree(&rows);
            let p = t.critical_path();
            check(&t, &p);
            let root = p.root.expect("a root");
            let r = &t.nodes[root];
            let mut want = Vec::new();
            naive(&t, root, r.start, effective_end(r), &mut want);
            // The naive walk emits in time order per frame; sort both by start.
            want.sort_by_key(|s| s.start);
            assert_eq!(p.segments, want, "{rows:?}");
        }
    }
}
