//! The trace structure a span segment stores (segment format 3): for each span, its place in
//! the tree of its trace's spans **in that segment** — depth, nested-set interval and root
//! span id — computed by [`TraceShape::of`] (the rules of [`crate::SpanTree`]: orphans are
//! roots, loops are cut, a repeated span id belongs to its first occurrence, clock skew
//! changes nothing) when the segment is written, over every row it holds.
//!
//! A flush computes it over the spans the flush writes; a compaction over the rows of all
//! its inputs together, so a trace whose spans were flushed at different times gets one tree
//! once its segments are merged (the fix-up). The values describe the segment's rows only:
//! they are the trace's tree exactly when no other segment (and no memtable) holds spans of
//! that trace, which readers check ([`crate::Snapshot::traces_whole_in_one_segment`]) before
//! they use them. Segments written before format 3 have no such columns; readers compute
//! the tree from the spans instead.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, RecordBatch,
    UInt32Array,
};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, Schema, SchemaRef};

use crate::structure::{SpanLink, TraceShape};
use crate::{Error, Result, Signal, schema};

/// Distance from the span's root in the segment's tree of its trace (0 for a root).
pub const DEPTH: &str = "tree_depth";
/// The span's number in depth-first pre-order over its trace's forest in the segment.
pub const LEFT: &str = "tree_left";
/// The largest pre-order number in the span's subtree (`tree_left` for a leaf): span `a`
/// is a proper ancestor of `d` exactly when `a.tree_left < d.tree_left <= a.tree_right`.
pub const RIGHT: &str = "tree_right";
/// The `span_id` of the root of the span's tree in the segment (its own for a root).
pub const ROOT: &str = "tree_root_span_id";

/// The tree columns' names, in the order they follow the signal's columns.
pub const COLUMNS: [&str; 4] = [DEPTH, LEFT, RIGHT, ROOT];

/// The tree columns' fields (nullable: a span of a segment written before format 3, or of
/// the memtable, has none).
pub fn fields() -> [FieldRef; 4] {
    [
        Arc::new(Field::new(DEPTH, DataType::UInt32, true)),
        Arc::new(Field::new(LEFT, DataType::UInt32, true)),
        Arc::new(Field::new(RIGHT, DataType::UInt32, true)),
        Arc::new(Field::new(ROOT, schema::span_id_type(), true)),
    ]
}

/// The `spans` canonical schema followed by the tree columns: what span rows carry on their
/// way into a segment, and what a reader of the stored structure asks for.
pub fn spans_with_tree() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut f: Vec<FieldRef> = schema::schema(Signal::Spans)
                .fields()
                .iter()
                .cloned()
                .collect();
            f.extend(fields());
            Arc::new(Schema::new(f))
        })
        .clone()
}

/// One span as the tree needs it: its trace and its [`SpanLink`].
pub type RowLink = ([u8; 16], SpanLink);

/// The columns of a batch of span rows the tree is computed from: `trace_id`, `span_id`,
/// `parent_span_id`, `time` and `end_time` (the canonical schema, or any batch holding them).
pub struct LinkColumns {
    trace: FixedSizeBinaryArray,
    span: FixedSizeBinaryArray,
    parent: FixedSizeBinaryArray,
    start: arrow::array::Int64Array,
    end: arrow::array::Int64Array,
}

impl LinkColumns {
    /// The columns of `batch`; a missing or mistyped one is [`Error::InvalidBatch`].
    pub fn of(batch: &RecordBatch) -> Result<LinkColumns> {
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                Error::invalid(
                    Signal::Spans,
                    name,
                    None,
                    "missing where the trace tree needs it",
                )
            })
        };
        let ids = |name: &str| -> Result<FixedSizeBinaryArray> {
            col(name)?
                .as_fixed_size_binary_opt()
                .cloned()
                .ok_or_else(|| Error::invalid(Signal::Spans, name, None, "is not a binary id"))
        };
        // Timestamps reinterpreted as i64 (no copy for the canonical type).
        let ns = |name: &str| -> Result<arrow::array::Int64Array> {
            let c = col(name)?;
            match c.as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>() {
                Some(t) => Ok(arrow::array::Int64Array::new(
                    t.values().clone(),
                    t.nulls().cloned(),
                )),
                None => Ok(arrow::compute::cast(c, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone()),
            }
        };
        Ok(LinkColumns {
            trace: ids("trace_id")?,
            span: ids("span_id")?,
            parent: ids("parent_span_id")?,
            start: ns("time")?,
            end: ns("end_time")?,
        })
    }

    /// Row `r`'s trace id (a null one reads as zeros).
    pub fn trace(&self, r: usize) -> [u8; 16] {
        if self.trace.is_valid(r) {
            self.trace.value(r).try_into().unwrap_or_default()
        } else {
            [0; 16]
        }
    }

    /// Row `r`'s trace and link (a null id reads as zeros, a null time as 0).
    pub fn link(&self, r: usize) -> RowLink {
        fn fixed<const N: usize>(a: &FixedSizeBinaryArray, r: usize) -> Option<[u8; N]> {
            a.is_valid(r).then(|| a.value(r).try_into().ok()).flatten()
        }
        let ns = |a: &arrow::array::Int64Array| if a.is_valid(r) { a.value(r) } else { 0 };
        (
            fixed::<16>(&self.trace, r).unwrap_or_default(),
            SpanLink {
                span_id: fixed::<8>(&self.span, r).unwrap_or_default(),
                parent_span_id: fixed::<8>(&self.parent, r),
                start: ns(&self.start),
                end: ns(&self.end),
            },
        )
    }
}

/// The [`RowLink`] of every row of `batch` ([`LinkColumns`]), appended to `out` in row
/// order.
pub fn row_links(batch: &RecordBatch, out: &mut Vec<RowLink>) -> Result<()> {
    let c = LinkColumns::of(batch)?;
    out.extend((0..batch.num_rows()).map(|r| c.link(r)));
    Ok(())
}

/// The tree columns of a segment's rows, in row order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TreeColumns {
    /// `tree_depth` per row.
    pub depth: Vec<u32>,
    /// `tree_left` per row.
    pub left: Vec<u32>,
    /// `tree_right` per row.
    pub right: Vec<u32>,
    /// `tree_root_span_id` per row.
    pub root: Vec<[u8; 8]>,
}

impl TreeColumns {
    /// The trees of `rows`, the spans of one segment (in its row order, or any order whose
    /// positions the caller keeps): each trace's spans are shaped together by
    /// [`TraceShape::of`], ties between otherwise identical spans broken by position.
    pub fn of(rows: &[RowLink]) -> TreeColumns {
        Self::of_rows(rows.len(), |i| rows[i].0, |i| rows[i].1)
    }

    /// [`TreeColumns::of`] for `n` rows given by position: `trace(i)` and `link(i)` are row
    /// `i`'s. Holds about 40 bytes per row besides one trace's spans at a time.
    pub fn of_rows(
        n: usize,
        trace: impl Fn(usize) -> [u8; 16],
        link: impl Fn(usize) -> SpanLink,
    ) -> TreeColumns {
        let mut order: Vec<([u8; 16], u32)> = (0..n)
            .map(|i| {
                (
                    trace(i),
                    u32::try_from(i).expect("a segment holds fewer than 2^32 rows"),
                )
            })
            .collect();
        order.sort_unstable();
        let mut out = TreeColumns {
            depth: vec![0; n],
            left: vec![0; n],
            right: vec![0; n],
            root: vec![[0; 8]; n],
        };
        let mut links = Vec::new();
        let narrow = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            links.clear();
            links.extend(group.iter().map(|&(_, i)| link(i as usize)));
            let shape = TraceShape::of(&links);
            for (k, &(_, i)) in group.iter().enumerate() {
                // A span stored twice alike (a retried export; other columns may differ)
                // takes its first copy's place, so whichever copy a condition matches, it
                // relates as the span its children hang under does.
                let first = shape.nodes[k].first;
                let node = if links[first] == links[k] {
                    shape.nodes[first]
                } else {
                    shape.nodes[k]
                };
                let i = i as usize;
                out.depth[i] = narrow(node.depth);
                out.left[i] = narrow(node.left);
                out.right[i] = narrow(node.right);
                out.root[i] = links[node.root].span_id;
            }
        }
        out
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.depth.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.depth.is_empty()
    }

    /// The columns of rows `offset..offset + len`, in [`COLUMNS`] order.
    pub fn arrays(&self, offset: usize, len: usize) -> [ArrayRef; 4] {
        let r = offset..offset + len;
        let mut root = FixedSizeBinaryBuilder::with_capacity(len, 8);
        for id in &self.root[r.clone()] {
            root.append_value(id).expect("ids are 8 bytes");
        }
        [
            Arc::new(UInt32Array::from(self.depth[r.clone()].to_vec())),
            Arc::new(UInt32Array::from(self.left[r.clone()].to_vec())),
            Arc::new(UInt32Array::from(self.right[r].to_vec())),
            Arc::new(root.finish()),
        ]
    }

    /// `batch` (span rows, canonical schema) with the tree columns of rows
    /// `offset..offset + batch.num_rows()` appended ([`spans_with_tree`]).
    pub fn attach(&self, batch: &RecordBatch, offset: usize) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        columns.extend(self.arrays(offset, batch.num_rows()));
        Ok(RecordBatch::try_new(spans_with_tree(), columns)?)
    }
}

/// Wraps the batches of `run` (span rows, canonical schema) so each carries its rows' tree
/// columns: rows `rows` of `tree` hold the run's rows in the order the run yields them
/// (several runs share one `tree`). A run yielding more rows than that (the segment at
/// `path` read differently twice) is [`Error::Corrupted`].
pub fn attach_run<'a>(
    run: impl Iterator<Item = Result<RecordBatch>> + Send + 'a,
    tree: Arc<TreeColumns>,
    rows: std::ops::Range<usize>,
    path: std::path::PathBuf,
) -> impl Iterator<Item = Result<RecordBatch>> + Send + 'a {
    let mut offset = rows.start;
    run.map(move |b| {
        let b = b?;
        if offset + b.num_rows() > rows.end {
            return Err(Error::corrupted(
                &path,
                None,
                format!(
                    "read {} rows where an earlier read of the same segment gave {}",
                    offset - rows.start + b.num_rows(),
                    rows.len()
                ),
            ));
        }
        let out = tree.attach(&b, offset)?;
        offset += b.num_rows();
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(trace: u8, id: u8, parent: Option<u8>, start: i64) -> RowLink {
        (
            [trace; 16],
            SpanLink {
                span_id: [id; 8],
                parent_span_id: parent.map(|p| [p; 8]),
                start,
                end: start + 5,
            },
        )
    }

    #[test]
    fn each_trace_is_shaped_on_its_own_whatever_the_row_order() {
        // Trace 1: 1 ─ 2 ─ 3; trace 2: 1 ─ 4 and an orphan 5. Rows interleaved.
        let rows = vec![
            link(2, 4, Some(1), 3),
            link(1, 3, Some(2), 2),
            link(1, 1, None, 0),
            link(2, 1, None, 1),
            link(1, 2, Some(1), 1),
            link(2, 5, Some(9), 2),
        ];
        let t = TreeColumns::of(&rows);
        // Trace 1.
        assert_eq!(
            (t.depth[2], t.left[2], t.right[2], t.root[2]),
            (0, 0, 2, [1; 8])
        );
        assert_eq!(
            (t.depth[4], t.left[4], t.right[4], t.root[4]),
            (1, 1, 2, [1; 8])
        );
        assert_eq!(
            (t.depth[1], t.left[1], t.right[1], t.root[1]),
            (2, 2, 2, [1; 8])
        );
        // Trace 2: span 1 (start 1), its child 4 (start 3), the orphan 5 (start 2) a root
        // after span 1's tree.
        assert_eq!(
            (t.depth[3], t.left[3], t.right[3], t.root[3]),
            (0, 0, 1, [1; 8])
        );
        assert_eq!(
            (t.depth[0], t.left[0], t.right[0], t.root[0]),
            (1, 1, 1, [1; 8])
        );
        assert_eq!(
            (t.depth[5], t.left[5], t.right[5], t.root[5]),
            (0, 2, 2, [5; 8])
        );
        let batch = t.arrays(1, 3);
        assert_eq!(batch[0].len(), 3);
        assert_eq!(
            batch[1]
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .values(),
            &[2, 0, 0]
        );
    }
}
