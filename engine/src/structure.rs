//! The shape of a trace from its spans' ids alone: each span's parent, depth, root and
//! nested-set interval, under exactly the rules of [`crate::SpanTree`].
//!
//! Structural questions — is this span a descendant of that one, which spans sit under a
//! `checkout` SERVER span — need only `span_id`, `parent_span_id` and the start and end
//! times that order the spans, not the names, statuses and attributes a [`crate::SpanTree`]
//! copies. [`TraceShape::of`] answers them from those four values per span, so a query can
//! read just those columns of the traces it looks at.
//!
//! The rules, shared with [`crate::SpanTree`] by construction (both call [`link`] and
//! [`break_cycles`]):
//! - spans are ordered by start, then span id, then end, then where they came from;
//! - a span id that occurs more than once belongs to its first occurrence in that order:
//!   children naming it hang under that one;
//! - a span whose parent is not in the trace is a root (an orphan); a span that is its own
//!   parent is a root; a loop of parent links is cut at its earliest member, which becomes
//!   a root;
//! - roots, and the children of each span, are in that order; numbering the spans in
//!   depth-first pre-order gives each its `left`, and `right` is the largest number in its
//!   subtree, so `a` is a proper ancestor of `d` exactly when
//!   `a.left < d.left <= a.right`.
//!
//! Clock skew changes nothing here: the shape follows the parent links, whatever the
//! times say (a child starting before its parent is still its child).

/// The parent links of spans, as [`link`] finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Linked {
    /// Index of each span's parent; loops are still in it ([`break_cycles`] cuts them).
    pub parent: Vec<Option<usize>>,
    /// Another span with the same id comes earlier.
    pub duplicate: Vec<bool>,
    /// The first span with each span's id (itself unless the id repeats).
    pub first: Vec<usize>,
    /// The span names a parent id no span has.
    pub orphan: Vec<bool>,
    /// The span's parent id is its own (first occurrence's) id.
    pub self_parent: Vec<bool>,
}

/// Links spans (given in their order) to their parents: a parent id resolves to the first
/// span with that id. Ids are matched through a sorted copy (no hashing: the cost does not
/// depend on how ids collide in a hash).
pub(crate) fn link(ids: &[[u8; 8]], parents: &[Option<[u8; 8]>]) -> Linked {
    let n = ids.len();
    // (id, position), sorted: the first entry of each id is its first occurrence.
    let mut by_id: Vec<([u8; 8], usize)> = ids.iter().copied().zip(0..n).collect();
    by_id.sort_unstable();
    let mut duplicate = vec![false; n];
    let mut first_of: Vec<usize> = (0..n).collect();
    for g in by_id.chunk_by(|a, b| a.0 == b.0) {
        for &(_, i) in &g[1..] {
            duplicate[i] = true;
            first_of[i] = g[0].1;
        }
    }
    let first = |id: &[u8; 8]| -> Option<usize> {
        let at = by_id.partition_point(|(x, _)| x < id);
        by_id.get(at).filter(|(x, _)| x == id).map(|&(_, i)| i)
    };
    let mut parent = vec![None; n];
    let mut orphan = vec![false; n];
    let mut self_parent = vec![false; n];
    for (i, p) in parents.iter().enumerate() {
        let Some(p) = p else { continue };
        match first(p) {
            None => orphan[i] = true,
            Some(j) if j == i => self_parent[i] = true,
            Some(j) => parent[i] = Some(j),
        }
    }
    Linked {
        parent,
        duplicate,
        first: first_of,
        orphan,
        self_parent,
    }
}

/// Cuts every loop of `parent` at its earliest member (the lowest index); returns the
/// members cut, which are roots afterwards.
pub(crate) fn break_cycles(parent: &mut [Option<usize>]) -> Vec<usize> {
    const OPEN: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![OPEN; parent.len()];
    let mut path = Vec::new();
    let mut cut_at = Vec::new();
    for i in 0..parent.len() {
        let mut at = i;
        // Walk up until a root, a node already known to reach a root, or this walk's path.
        while state[at] == OPEN {
            state[at] = ON_PATH;
            path.push(at);
            match parent[at] {
                Some(p) => at = p,
                None => break,
            }
        }
        if state[at] == ON_PATH && parent[at].is_some() {
            // `at` is on the path and has a parent: the path from `at` on is a loop.
            let from = path.iter().position(|&x| x == at).unwrap_or(0);
            let cut = path[from..].iter().copied().min().unwrap_or(at);
            parent[cut] = None;
            cut_at.push(cut);
        }
        for x in path.drain(..) {
            state[x] = DONE;
        }
    }
    cut_at
}

/// What [`TraceShape::of`] needs of one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanLink {
    /// `span_id`.
    pub span_id: [u8; 8],
    /// `parent_span_id`; `None` for a span sent as a root.
    pub parent_span_id: Option<[u8; 8]>,
    /// Start, ns (orders the spans).
    pub start: i64,
    /// End, ns (orders spans of equal start and id).
    pub end: i64,
}

/// Where one span sits in its trace's forest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeNode {
    /// The parent in the tree (an index into the spans given); `None` for a root.
    pub parent: Option<usize>,
    /// Distance from its root (0 for a root).
    pub depth: usize,
    /// The root of its tree (an index into the spans given; itself for a root).
    pub root: usize,
    /// Its number in depth-first pre-order over the whole forest (0-based; roots and
    /// children in span order).
    pub left: usize,
    /// The largest pre-order number in its subtree (`left` for a leaf).
    pub right: usize,
    /// The first span with its span id in the spans' order (an index into the spans
    /// given; itself unless the id repeats): the one children naming that id hang under.
    pub first: usize,
}

/// The forest of one trace's spans; `nodes[i]` is the place of the `i`-th span given to
/// [`TraceShape::of`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceShape {
    /// One per span given, in the order given.
    pub nodes: Vec<ShapeNode>,
}

impl TraceShape {
    /// The shape of one trace's spans, in any order (see the [module](self) docs for the
    /// rules). O(n log n) time, iterative (any depth).
    pub fn of(spans: &[SpanLink]) -> TraceShape {
        let n = spans.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (spans[i].start, spans[i].span_id, spans[i].end, i));
        let ids: Vec<[u8; 8]> = order.iter().map(|&i| spans[i].span_id).collect();
        let parents: Vec<Option<[u8; 8]>> =
            order.iter().map(|&i| spans[i].parent_span_id).collect();
        let linked = link(&ids, &parents);
        let mut parent = linked.parent;
        break_cycles(&mut parent);

        // In sorted positions from here on.
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut roots = Vec::new();
        for (i, p) in parent.iter().enumerate() {
            match p {
                Some(p) => children[*p].push(i),
                None => roots.push(i),
            }
        }
        let mut pre = Vec::with_capacity(n);
        let mut depth = vec![0usize; n];
        let mut root = vec![0usize; n];
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        for &r in &roots {
            root[r] = r;
        }
        while let Some(i) = stack.pop() {
            pre.push(i);
            for &c in children[i].iter().rev() {
                depth[c] = depth[i] + 1;
                root[c] = root[i];
                stack.push(c);
            }
        }
        debug_assert_eq!(pre.len(), n, "every span is reached once");
        let mut left = vec![0usize; n];
        for (number, &i) in pre.iter().enumerate() {
            left[i] = number;
        }
        // Subtree sizes, children before parents (reverse pre-order).
        let mut size = vec![1usize; n];
        for &i in pre.iter().rev() {
            if let Some(p) = parent[i] {
                size[p] += size[i];
            }
        }
        let mut nodes = vec![
            ShapeNode {
                parent: None,
                depth: 0,
                root: 0,
                left: 0,
                right: 0,
                first: 0,
            };
            n
        ];
        for (sorted, &input) in order.iter().enumerate() {
            nodes[input] = ShapeNode {
                parent: parent[sorted].map(|p| order[p]),
                depth: depth[sorted],
                root: order[root[sorted]],
                left: left[sorted],
                right: left[sorted] + size[sorted] - 1,
                first: order[linked.first[sorted]],
            };
        }
        TraceShape { nodes }
    }

    /// Whether span `a` is a proper ancestor of span `d` (indexes into the spans given).
    pub fn is_ancestor(&self, a: usize, d: usize) -> bool {
        let (a, d) = (&self.nodes[a], &self.nodes[d]);
        a.left < d.left && d.left <= a.right
    }

    /// The proper ancestors of span `i`, nearest first.
    pub fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.nodes[i].parent, |&p| self.nodes[p].parent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u8, parent: Option<u8>, start: i64) -> SpanLink {
        SpanLink {
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            start,
            end: start + 10,
        }
    }

    #[test]
    fn nested_sets_depths_and_roots() {
        // 1 ─ 2 ─ 4
        //   └ 3
        // 5 (orphan: parent 9 is missing)   6 (its own parent)
        let spans = [
            span(4, Some(2), 3),
            span(1, None, 0),
            span(3, Some(1), 2),
            span(2, Some(1), 1),
            span(5, Some(9), 4),
            span(6, Some(6), 5),
        ];
        let s = TraceShape::of(&spans);
        let at = |id: u8| spans.iter().position(|x| x.span_id == [id; 8]).expect("id");
        let (n1, n2, n3, n4, n5, n6) = (at(1), at(2), at(3), at(4), at(5), at(6));
        assert_eq!(s.nodes[n1].left, 0);
        assert_eq!(s.nodes[n1].right, 3);
        assert_eq!((s.nodes[n2].left, s.nodes[n2].right), (1, 2));
        assert_eq!((s.nodes[n4].left, s.nodes[n4].right), (2, 2));
        assert_eq!((s.nodes[n3].left, s.nodes[n3].right), (3, 3));
        assert_eq!((s.nodes[n5].left, s.nodes[n5].root), (4, n5));
        assert_eq!((s.nodes[n6].left, s.nodes[n6].parent), (5, None));
        assert_eq!(s.nodes[n4].depth, 2);
        assert_eq!(s.nodes[n4].root, n1);
        assert!(s.is_ancestor(n1, n4) && s.is_ancestor(n2, n4));
        assert!(!s.is_ancestor(n3, n4) && !s.is_ancestor(n4, n4) && !s.is_ancestor(n4, n1));
        assert!(!s.is_ancestor(n1, n5));
        assert_eq!(s.ancestors(n4).collect::<Vec<_>>(), vec![n2, n1]);
    }

    #[test]
    fn loops_are_cut_and_duplicates_resolve_to_the_first() {
        // 1 → 2 → 3 → 1: cut at the earliest (1), which becomes the root.
        let spans = [
            span(2, Some(1), 1),
            span(3, Some(2), 2),
            span(1, Some(3), 0),
        ];
        let s = TraceShape::of(&spans);
        assert_eq!(s.nodes[2].parent, None);
        assert_eq!(s.nodes[1].depth, 2);
        assert!(s.is_ancestor(2, 1));
        // Two spans with id 7: the child names the earlier one.
        let spans = [span(7, None, 5), span(7, None, 1), span(8, Some(7), 6)];
        let s = TraceShape::of(&spans);
        assert_eq!(s.nodes[2].parent, Some(1));
        assert_eq!(
            (s.nodes[0].first, s.nodes[1].first, s.nodes[2].first),
            (1, 1, 2)
        );
        // A chain deeper than any recursion could go.
        let deep: Vec<SpanLink> = (0..200_000u32)
            .map(|i| {
                let id = |x: u32| {
                    let mut b = [0u8; 8];
                    b[..4].copy_from_slice(&(x + 1).to_be_bytes());
                    b
                };
                SpanLink {
                    span_id: id(i),
                    parent_span_id: (i > 0).then(|| id(i - 1)),
                    start: i64::from(i),
                    end: i64::from(i) + 1,
                }
            })
            .collect();
        let s = TraceShape::of(&deep);
        assert_eq!(s.nodes[199_999].depth, 199_999);
        assert_eq!(s.nodes[0].right, 199_999);
        assert!(s.is_ancestor(0, 199_999));
    }
}
