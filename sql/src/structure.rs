//! Structural predicates: spans by where they sit in their trace's tree.
//!
//! `descendants(anchor, target)` is every span matching `target` that has a proper ancestor
//! matching `anchor` in the same trace — TraceQL's `{anchor} >> {target}`. Likewise
//! `children` (`>`: the target's parent matches), `parents` (`<`: the target is the parent
//! of an anchor) and `ancestors` (`<<`: the target is a proper ancestor of an anchor). Both
//! conditions are SQL predicates over `spans`, as strings. Each result row is one related
//! pair: `trace_id`, the target's `span_id`, the `anchor_span_id` and the `distance` in
//! generations (1 for a parent or child). So "traces where a `checkout` SERVER span has a
//! `payment` descendant with an error" is
//!
//! ```sql
//! SELECT DISTINCT trace_id FROM descendants(
//!     'name = ''checkout'' AND kind = ''SERVER''',
//!     'service_name = ''payment'' AND status_code = ''ERROR''')
//! ```
//!
//! and the result joins with `spans` on `(trace_id, span_id)`.
//!
//! The tree is the one [`scrydb_engine::SpanTree`] draws, with the same rules for orphans,
//! loops and repeated span ids ([`scrydb_engine::structure`]); it is built from every span
//! of the trace in the statement's snapshot, segments and memtable alike, so a trace whose
//! spans were flushed at different times is one tree.
//!
//! How it runs: one scan per condition finds its spans (each narrowed by the trace and term
//! indexes as any `WHERE` is), which gives the traces holding both an anchor and a target;
//! then only those traces' `span_id`, `parent_span_id` and times are read — through the trace indexes when there are at most
//! [`LOOKUP_TRACES`] of them, in one scan otherwise — and their shapes are built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, RecordBatch, UInt32Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type};
use datafusion::catalog::TableProvider;
use datafusion::catalog::{Session as CatalogSession, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::{Expr, LogicalPlan};
use futures::StreamExt;
use scrydb_engine::structure::{SpanLink, TraceShape};

use crate::{Error, ScryTable, Session};

/// Candidate traces up to which their spans are read through the trace indexes (one
/// `trace_id IN (...)` lookup); above it, one scan reads the id columns of every span and
/// keeps the candidates'.
pub const LOOKUP_TRACES: usize = 512;

/// The most pairs one call returns; a call that would return more fails, asking for
/// narrower conditions.
pub const MAX_PAIRS: usize = 10_000_000;

/// The most spans one call reads for each of its steps (the anchors, the targets, the
/// spans of the traces holding both); a call that needs more fails, asking for narrower
/// conditions. About 60 bytes of memory each.
pub const MAX_SPANS: usize = 10_000_000;

/// How a target span relates to an anchor span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// The target's parent is the anchor (TraceQL `{anchor} > {target}`).
    Children,
    /// The anchor is a proper ancestor of the target (`>>`).
    Descendants,
    /// The target is the anchor's parent (`<`).
    Parents,
    /// The target is a proper ancestor of the anchor (`<<`).
    Ancestors,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Relation; 4] = [
        Relation::Children,
        Relation::Descendants,
        Relation::Parents,
        Relation::Ancestors,
    ];

    /// The SQL table function's name.
    pub fn name(self) -> &'static str {
        match self {
            Relation::Children => "children",
            Relation::Descendants => "descendants",
            Relation::Parents => "parents",
            Relation::Ancestors => "ancestors",
        }
    }

    /// TraceQL's operator for it.
    pub fn traceql(self) -> &'static str {
        match self {
            Relation::Children => ">",
            Relation::Descendants => ">>",
            Relation::Parents => "<",
            Relation::Ancestors => "<<",
        }
    }

    /// Adds the (target, anchor, distance) pairs of one trace's `shape` to `out`, where
    /// `anchor[i]` and `target[i]` say which spans match which condition; fails (leaving
    /// `out` partly filled) once `out` would hold more than `max` pairs. The work is
    /// proportional to the spans plus the pairs: each span's nearest matching ancestor is
    /// found in one pass, and ancestor walks only step from match to match.
    fn pairs(
        self,
        shape: &TraceShape,
        anchor: &[bool],
        target: &[bool],
        max: usize,
        out: &mut Vec<(usize, usize, u32)>,
    ) -> Result<(), ()> {
        let nodes = &shape.nodes;
        let mut push = |pair: (usize, usize, u32)| {
            if out.len() >= max {
                return Err(());
            }
            out.push(pair);
            Ok(())
        };
        let generations = |below: usize, above: usize| {
            u32::try_from(nodes[below].depth - nodes[above].depth).unwrap_or(u32::MAX)
        };
        // For the walks: the lower span of a pair is the one that matches `lower`; its
        // ancestors matching `upper` are what it pairs with.
        let (lower, upper) = match self {
            Relation::Children | Relation::Descendants => (target, anchor),
            Relation::Parents | Relation::Ancestors => (anchor, target),
        };
        let pair = |low: usize, up: usize, d: u32| match self {
            Relation::Children | Relation::Descendants => (low, up, d),
            Relation::Parents | Relation::Ancestors => (up, low, d),
        };
        match self {
            Relation::Children | Relation::Parents => {
                for low in (0..nodes.len()).filter(|&i| lower[i]) {
                    if let Some(p) = nodes[low].parent
                        && upper[p]
                    {
                        push(pair(low, p, 1))?;
                    }
                }
            }
            Relation::Descendants | Relation::Ancestors => {
                // Nearest proper ancestor matching `upper`, parents before children.
                let mut pre = vec![0usize; nodes.len()];
                for (i, n) in nodes.iter().enumerate() {
                    pre[n.left] = i;
                }
                let mut nearest: Vec<Option<usize>> = vec![None; nodes.len()];
                for &i in &pre {
                    if let Some(p) = nodes[i].parent {
                        nearest[i] = if upper[p] { Some(p) } else { nearest[p] };
                    }
                }
                for low in (0..nodes.len()).filter(|&i| lower[i]) {
                    let mut at = nearest[low];
                    while let Some(up) = at {
                        push(pair(low, up, generations(low, up)))?;
                        at = nearest[up];
                    }
                }
            }
        }
        Ok(())
    }
}

/// A matched span's place in the tree its segment stores ([`scrydb_engine::segment::tree`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    depth: u32,
    left: u32,
    right: u32,
}

impl Relation {
    /// Adds the (target, anchor, distance) pairs of one trace to `out` from the trees its
    /// one segment stores: `anchors` and `targets` are the matching spans' places (the pairs
    /// index them). Fails once `out` would hold more than `max` pairs. One sweep in
    /// pre-order: the stack holds the upper spans whose subtree holds the current position
    /// (nested intervals), so each lower span pairs with exactly the stack's entries — its
    /// matching proper ancestors, the deepest on top.
    fn stored_pairs(
        self,
        anchors: &[Stored],
        targets: &[Stored],
        max: usize,
        out: &mut Vec<(usize, usize, u32)>,
    ) -> Result<(), ()> {
        let (lower, upper) = match self {
            Relation::Children | Relation::Descendants => (targets, anchors),
            Relation::Parents | Relation::Ancestors => (anchors, targets),
        };
        // (left, is upper, index): at an equal position (a span matching both) the lower
        // one is looked at first, so a span is never its own ancestor.
        let mut events: Vec<(u32, bool, usize)> = lower
            .iter()
            .enumerate()
            .map(|(i, s)| (s.left, false, i))
            .chain(upper.iter().enumerate().map(|(i, s)| (s.left, true, i)))
            .collect();
        events.sort_unstable();
        let mut stack: Vec<usize> = Vec::new();
        for (left, is_upper, i) in events {
            while stack.last().is_some_and(|&u| upper[u].right < left) {
                stack.pop();
            }
            if is_upper {
                stack.push(i);
                continue;
            }
            let low = lower[i];
            let from = match self {
                // Only the parent: the deepest matching ancestor, one generation up.
                Relation::Children | Relation::Parents => match stack.last() {
                    Some(&u) if upper[u].depth + 1 == low.depth => stack.len() - 1,
                    _ => stack.len(),
                },
                Relation::Descendants | Relation::Ancestors => 0,
            };
            for &u in stack[from..].iter().rev() {
                if out.len() >= max {
                    return Err(());
                }
                let d = low.depth.saturating_sub(upper[u].depth);
                out.push(match self {
                    Relation::Children | Relation::Descendants => (i, u, d),
                    Relation::Parents | Relation::Ancestors => (u, i, d),
                });
            }
        }
        Ok(())
    }
}

/// The columns of a structural function's rows: `trace_id`, `span_id` (the target),
/// `anchor_span_id`, `distance`.
pub fn relation_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("anchor_span_id", DataType::FixedSizeBinary(8), false),
        Field::new("distance", DataType::UInt32, false),
    ]))
}

/// One related pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The target span (matching the target condition).
    pub span_id: [u8; 8],
    /// The anchor span it relates to.
    pub anchor_span_id: [u8; 8],
    /// Generations between them (1: parent and child).
    pub distance: u32,
}

/// The spans read of one candidate trace.
#[derive(Default)]
struct TraceRows {
    links: Vec<SpanLink>,
}

/// The statement reading the spans matching `predicate` (checked): the same columns as
/// [`links_sql`], so a span of the tree is an anchor or a target when its whole
/// [`SpanLink`] (id, parent, start, end) was matched. A predicate is only ever a `WHERE`
/// here, where ScryDB's hex-id comparisons (`trace_id = '<hex>'`) apply.
fn matching_sql(predicate: &str) -> String {
    format!("{LINK_COLUMNS} WHERE trace_id IS NOT NULL AND {predicate}")
}

/// What both statements read.
const LINK_COLUMNS: &str = "SELECT trace_id, span_id, parent_span_id, time, end_time FROM spans";

/// The statement reading the id columns and times of the spans of `traces` (`None`: of
/// every span).
fn links_sql(traces: Option<&[[u8; 16]]>) -> String {
    match traces {
        Some(ids) => {
            let list: Vec<String> = ids
                .iter()
                .map(|id| format!("'{}'", crate::ids::hex(id)))
                .collect();
            format!("{LINK_COLUMNS} WHERE trace_id IN ({})", list.join(", "))
        }
        None => format!("{LINK_COLUMNS} WHERE trace_id IS NOT NULL"),
    }
}

type Plan = Arc<dyn datafusion::physical_plan::ExecutionPlan>;

/// Plans `sql` as a statement of `state`; errors start with `label`.
async fn prepare(
    state: &datafusion::execution::SessionState,
    sql: &str,
    label: &str,
) -> DfResult<Plan> {
    let context = |e: datafusion::error::DataFusionError| {
        datafusion::error::DataFusionError::Plan(format!("{label}: {}", e.find_root()))
    };
    let plan = state.create_logical_plan(sql).await.map_err(context)?;
    state.create_physical_plan(&plan).await.map_err(context)
}

/// The session's `spans` table.
async fn spans_table(state: &datafusion::execution::SessionState) -> Option<ScryTable> {
    let options = state.config().options();
    let schema = state
        .catalog_list()
        .catalog(&options.catalog.default_catalog)?
        .schema(&options.catalog.default_schema)?;
    let table = schema.table("spans").await.ok()??;
    table.downcast_ref::<ScryTable>().cloned()
}

/// The `WHERE` of a statement `SELECT ... FROM spans WHERE ...` (as planned, with its
/// subqueries), if it has that shape.
fn spans_filter(plan: &LogicalPlan) -> Option<Expr> {
    match plan {
        LogicalPlan::Projection(p) => spans_filter(&p.input),
        LogicalPlan::Filter(f) => match f.input.as_ref() {
            LogicalPlan::TableScan(scan) if scan.table_name.table() == "spans" => {
                Some(f.predicate.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// The statement [`matching_sql`]`(predicate)` planned over `spans` with the trace-tree
/// columns its segments store ([`ScryTable::with_tree_columns`]): its rows are the
/// [`LINK_COLUMNS`] then `tree_depth`, `tree_left`, `tree_right`. `None` when it cannot be
/// built this way (the caller plans the plain statement; the result is the same, computed
/// from the spans).
async fn tree_plan(
    state: &datafusion::execution::SessionState,
    table: &ScryTable,
    sql: &str,
) -> Option<Plan> {
    use datafusion::logical_expr::{LogicalPlanBuilder, col};
    use scrydb_engine::segment::tree;
    let logical = state.create_logical_plan(sql).await.ok()?;
    let predicate = spans_filter(&logical)?;
    let source =
        datafusion::datasource::provider_as_source(Arc::new(table.clone().with_tree_columns()));
    let columns = [
        "trace_id",
        "span_id",
        "parent_span_id",
        "time",
        "end_time",
        tree::DEPTH,
        tree::LEFT,
        tree::RIGHT,
    ]
    .map(|c| col(format!("spans.{c}")));
    let plan = LogicalPlanBuilder::scan("spans", source, None)
        .and_then(|b| b.filter(predicate))
        .and_then(|b| b.project(columns))
        .and_then(|b| b.build())
        .ok()?;
    match state.create_physical_plan(&plan).await {
        Ok(p) => Some(p),
        Err(e) => {
            log::debug!("structural function: stored trees not used for {sql}: {e}");
            None
        }
    }
}

/// Runs `plan`, handing each batch to `each`.
async fn execute(
    state: &datafusion::execution::SessionState,
    plan: Plan,
    mut each: impl FnMut(&RecordBatch) -> DfResult<()>,
) -> DfResult<()> {
    let mut stream = datafusion::physical_plan::execute_stream(plan, state.task_ctx())?;
    while let Some(batch) = stream.next().await {
        each(&batch?)?;
    }
    Ok(())
}

fn fixed<const N: usize>(c: &FixedSizeBinaryArray, r: usize) -> Option<[u8; N]> {
    c.is_valid(r).then(|| c.value(r).try_into().ok()).flatten()
}

/// A timestamp column as ns (null: 0).
fn times(b: &RecordBatch, i: usize) -> DfResult<Vec<i64>> {
    let c = datafusion::arrow::compute::cast(b.column(i), &DataType::Int64)?;
    let c = c.as_primitive::<Int64Type>();
    Ok((0..c.len())
        .map(|r| if c.is_valid(r) { c.value(r) } else { 0 })
        .collect())
}

/// Calls `each` with the trace, link and stored tree place (when the batch has the tree
/// columns and the row has them) of every row of a batch of [`LINK_COLUMNS`] (then maybe
/// the tree columns) that has a trace id.
fn links_of(
    b: &RecordBatch,
    mut each: impl FnMut([u8; 16], SpanLink, Option<Stored>),
) -> DfResult<()> {
    let trace = b.column(0).as_fixed_size_binary();
    let span = b.column(1).as_fixed_size_binary();
    let parent = b.column(2).as_fixed_size_binary();
    let (start, end) = (times(b, 3)?, times(b, 4)?);
    let tree = (b.num_columns() >= 8).then(|| {
        (
            b.column(5).as_primitive::<UInt32Type>(),
            b.column(6).as_primitive::<UInt32Type>(),
            b.column(7).as_primitive::<UInt32Type>(),
        )
    });
    for r in 0..b.num_rows() {
        if let Some(t) = fixed::<16>(trace, r) {
            let stored = tree.and_then(|(d, l, rt)| {
                (d.is_valid(r) && l.is_valid(r) && rt.is_valid(r)).then(|| Stored {
                    depth: d.value(r),
                    left: l.value(r),
                    right: rt.value(r),
                })
            });
            each(
                t,
                SpanLink {
                    span_id: fixed::<8>(span, r).unwrap_or_default(),
                    parent_span_id: fixed::<8>(parent, r),
                    start: start[r],
                    end: end[r],
                },
                stored,
            );
        }
    }
    Ok(())
}

/// Fails once more than [`MAX_SPANS`] spans were read for one purpose.
fn count_spans(seen: &mut usize, rows: usize, label: &str, what: &str) -> DfResult<()> {
    *seen += rows;
    if *seen > MAX_SPANS {
        return plan_err!(
            "{label}: {what} more than {MAX_SPANS} spans; narrow the conditions (a time range, \
             a service)"
        );
    }
    Ok(())
}

/// The spans one condition matched in one trace.
#[derive(Default)]
struct Matches {
    links: Vec<SpanLink>,
    /// Each link's stored tree place, while every one has it.
    stored: Option<Vec<Stored>>,
}

/// The spans `plan` (a [`matching_sql`], maybe with the tree columns) returns, by trace.
async fn matching(
    state: &datafusion::execution::SessionState,
    plan: Plan,
    label: &str,
) -> DfResult<HashMap<[u8; 16], Matches>> {
    let mut out: HashMap<[u8; 16], Matches> = HashMap::new();
    let mut seen = 0usize;
    execute(state, plan, |b| {
        count_spans(&mut seen, b.num_rows(), label, "matches")?;
        links_of(b, |t, link, tree| {
            let m = out.entry(t).or_insert_with(|| Matches {
                links: Vec::new(),
                stored: Some(Vec::new()),
            });
            m.links.push(link);
            match (tree, m.stored.as_mut()) {
                (Some(s), Some(v)) => v.push(s),
                _ => m.stored = None,
            }
        })
    })
    .await?;
    Ok(out)
}

/// What a structural call found, and how it found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Related {
    /// The related pairs, ordered by trace, then target, then anchor (in the tree's
    /// pre-order), each once.
    pub pairs: Vec<Pair>,
    /// Traces whose tree was read from what their one segment stores.
    pub stored_trees: usize,
    /// Traces whose tree was built from their spans (held by several segments or the
    /// memtable, or by segments written before trees were stored).
    pub computed_trees: usize,
}

/// Every pair of `relation` between spans matching `anchor` and `target` (checked
/// predicates), read as statements of `state` (so from its snapshot).
async fn related(
    state: &datafusion::execution::SessionState,
    relation: Relation,
    anchor: &str,
    target: &str,
) -> DfResult<Related> {
    // Every scan and the whole-trace check must read one snapshot (a stored tree mixed with
    // one from a segment a compaction has since replaced would pair wrongly): a state
    // planned without a statement's snapshots gets them here.
    let owned;
    let state = if state
        .config()
        .get_extension::<crate::StatementSnapshots>()
        .is_some()
    {
        state
    } else {
        let mut s = state.clone();
        s.config_mut()
            .set_extension(Arc::new(crate::StatementSnapshots::default()));
        owned = s;
        &owned
    };
    let name = relation.name();
    let anchor_label = format!("{name}: anchor {anchor}");
    let target_label = format!("{name}: target {target}");
    let label = format!("{name}({anchor}, {target})");
    // Both planned first: a condition that cannot run is an error whatever the data.
    let mut anchor_plan = prepare(state, &matching_sql(anchor), &anchor_label).await?;
    let mut target_plan = prepare(state, &matching_sql(target), &target_label).await?;
    // The same statements reading the stored trees too, when they can.
    let table = spans_table(state).await;
    if let Some(t) = &table
        && let (Some(a), Some(b)) = (
            tree_plan(state, t, &matching_sql(anchor)).await,
            tree_plan(state, t, &matching_sql(target)).await,
        )
    {
        (anchor_plan, target_plan) = (a, b);
    }
    let mut out = Related::default();
    let anchors = matching(state, anchor_plan, &anchor_label).await?;
    if anchors.is_empty() {
        return Ok(out);
    }
    let targets = matching(state, target_plan, &target_label).await?;
    let mut candidates: Vec<[u8; 16]> = anchors
        .keys()
        .filter(|t| targets.contains_key(*t))
        .copied()
        .collect();
    if candidates.is_empty() {
        return Ok(out);
    }
    candidates.sort_unstable();
    // A trace one segment holds whole, whose matches all came with their stored place:
    // its pairs come from the stored tree. The others' trees are built from their spans.
    let eligible: Vec<[u8; 16]> = candidates
        .iter()
        .filter(|id| anchors[*id].stored.is_some() && targets[*id].stored.is_some())
        .copied()
        .collect();
    let whole: HashSet<[u8; 16]> = match &table {
        Some(t) if !eligible.is_empty() => {
            let snapshot = t.snapshot(state);
            let flags = snapshot
                .traces_whole_in_one_segment(&eligible)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            eligible
                .iter()
                .zip(flags)
                .filter(|(_, whole)| *whole)
                .map(|(id, _)| *id)
                .collect()
        }
        _ => HashSet::new(),
    };
    let computed: Vec<[u8; 16]> = candidates
        .iter()
        .filter(|id| !whole.contains(*id))
        .copied()
        .collect();
    let mut traces: HashMap<[u8; 16], TraceRows> = HashMap::with_capacity(computed.len());
    let mut seen = 0usize;
    if computed.is_empty() {
    } else if computed.len() <= LOOKUP_TRACES {
        let plan = prepare(state, &links_sql(Some(&computed)), &label).await?;
        execute(state, plan, |b| {
            count_spans(&mut seen, b.num_rows(), &label, "the related traces hold")?;
            links_of(b, |t, link, _| {
                traces.entry(t).or_default().links.push(link)
            })
        })
        .await?;
    } else {
        let keep: HashSet<[u8; 16]> = computed.iter().copied().collect();
        let plan = prepare(state, &links_sql(None), &label).await?;
        execute(state, plan, |b| {
            let mut kept = 0;
            links_of(b, |t, link, _| {
                if keep.contains(&t) {
                    kept += 1;
                    traces.entry(t).or_default().links.push(link);
                }
            })?;
            count_spans(&mut seen, kept, &label, "the related traces hold")
        })
        .await?;
    }
    let too_many = || {
        plan_err!(
            "{label}: more than {MAX_PAIRS} related pairs; narrow the conditions \
             (a time range, a service)"
        )
    };
    let mut pairs = Vec::new();
    // (target's pre-order number, anchor's, pair) of one trace, to order it.
    let mut ordered: Vec<(usize, usize, Pair)> = Vec::new();
    for id in &candidates {
        let (a, t) = (&anchors[id], &targets[id]);
        pairs.clear();
        ordered.clear();
        let budget = MAX_PAIRS - out.pairs.len();
        if whole.contains(id) {
            out.stored_trees += 1;
            let (sa, st) = (
                a.stored.as_deref().unwrap_or_default(),
                t.stored.as_deref().unwrap_or_default(),
            );
            if relation.stored_pairs(sa, st, budget, &mut pairs).is_err() {
                return too_many();
            }
            for &(ti, ai, distance) in &pairs {
                ordered.push((
                    st[ti].left as usize,
                    sa[ai].left as usize,
                    Pair {
                        trace_id: *id,
                        span_id: t.links[ti].span_id,
                        anchor_span_id: a.links[ai].span_id,
                        distance,
                    },
                ));
            }
        } else {
            let Some(rows) = traces.get(id) else { continue };
            out.computed_trees += 1;
            let shape = TraceShape::of(&rows.links);
            let flags = |m: &Matches| -> Vec<bool> {
                let set: HashSet<&SpanLink> = m.links.iter().collect();
                rows.links.iter().map(|l| set.contains(l)).collect()
            };
            let (fa, ft) = (flags(a), flags(t));
            if relation
                .pairs(&shape, &fa, &ft, budget, &mut pairs)
                .is_err()
            {
                return too_many();
            }
            for &(ti, ai, distance) in &pairs {
                ordered.push((
                    shape.nodes[ti].left,
                    shape.nodes[ai].left,
                    Pair {
                        trace_id: *id,
                        span_id: rows.links[ti].span_id,
                        anchor_span_id: rows.links[ai].span_id,
                        distance,
                    },
                ));
            }
        }
        ordered.sort_unstable_by_key(|&(t, a, _)| (t, a));
        // A span stored twice (a retried export) pairs twice: once is enough.
        let mut once = HashSet::with_capacity(ordered.len());
        for &(_, _, pair) in &ordered {
            if once.insert(pair) {
                out.pairs.push(pair);
            }
        }
    }
    Ok(out)
}

/// The rows of [`relation_schema`] for `pairs`.
pub fn relation_batch(pairs: &[Pair]) -> RecordBatch {
    fn ids<const N: usize>(v: impl Iterator<Item = [u8; N]>) -> FixedSizeBinaryArray {
        let mut b = FixedSizeBinaryBuilder::new(N as i32);
        for id in v {
            b.append_value(id).expect("ids have the builder's width");
        }
        b.finish()
    }
    RecordBatch::try_new(
        relation_schema(),
        vec![
            Arc::new(ids(pairs.iter().map(|p| p.trace_id))),
            Arc::new(ids(pairs.iter().map(|p| p.span_id))),
            Arc::new(ids(pairs.iter().map(|p| p.anchor_span_id))),
            Arc::new(UInt32Array::from_iter_values(
                pairs.iter().map(|p| p.distance),
            )),
        ],
    )
    .expect("columns match the schema")
}

/// The spans matching `target` related by `relation` to spans matching `anchor` (SQL
/// predicates over `spans`), as pairs — what `SELECT * FROM descendants(...)` and so on
/// return — from one snapshot of `session`'s database.
pub async fn related_spans(
    session: &Session,
    relation: Relation,
    anchor: &str,
    target: &str,
) -> Result<Vec<Pair>, Error> {
    Ok(relate(session, relation, anchor, target).await?.pairs)
}

/// [`related_spans`], also saying how many traces' trees were read from what their segment
/// stores and how many were built from their spans.
pub async fn relate(
    session: &Session,
    relation: Relation,
    anchor: &str,
    target: &str,
) -> Result<Related, Error> {
    let name = relation.name();
    let depth = session.max_expression_depth();
    let anchor = crate::compare::sql_predicate(&format!("{name}'s anchor"), anchor, depth)?;
    let target = crate::compare::sql_predicate(&format!("{name}'s target"), target, depth)?;
    let mut state = session.context().state();
    state
        .config_mut()
        .set_extension(Arc::new(crate::StatementSnapshots::default()));
    Ok(related(&state, relation, &anchor, &target).await?)
}

/// The SQL table functions `children`, `descendants`, `parents` and `ancestors`, each
/// `(anchor, target)`: SQL predicates over `spans` as strings; rows of
/// [`relation_schema`], computed from the statement's snapshot when scanned.
#[derive(Debug)]
pub struct RelationFunction {
    /// Which relation.
    pub relation: Relation,
    /// The session's limit on expression nesting, applied to the predicates.
    pub max_expression_depth: usize,
}

impl TableFunctionImpl for RelationFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let name = self.relation.name();
        let exprs = args.exprs();
        if exprs.len() != 2 {
            return plan_err!(
                "{name} takes (anchor, target): two SQL predicates over spans, as strings"
            );
        }
        let mut checked = Vec::new();
        for (e, what) in exprs.iter().zip(["anchor", "target"]) {
            let text = match crate::functions::constant(args.session(), e)? {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                    if !s.trim().is_empty() =>
                {
                    s
                }
                other => {
                    return plan_err!(
                        "{name}'s {what} must be a SQL predicate over spans as a string, \
                         not {other:?}"
                    );
                }
            };
            let p = crate::compare::sql_predicate(
                &format!("{name}'s {what}"),
                &text,
                self.max_expression_depth,
            )
            .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
            checked.push(p);
        }
        let target = checked.pop().expect("two predicates");
        let anchor = checked.pop().expect("two predicates");
        Ok(Arc::new(RelationTable {
            relation: self.relation,
            anchor,
            target,
        }))
    }
}

/// The rows of one structural call, computed when scanned.
#[derive(Debug)]
struct RelationTable {
    relation: Relation,
    anchor: String,
    target: String,
}

#[async_trait::async_trait]
impl TableProvider for RelationTable {
    fn schema(&self) -> SchemaRef {
        relation_schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn CatalogSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let Some(state) = state
            .as_any()
            .downcast_ref::<datafusion::execution::SessionState>()
        else {
            return plan_err!("{} runs only in a ScryDB session", self.relation.name());
        };
        let related = related(state, self.relation, &self.anchor, &self.target).await?;
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![relation_batch(&related.pairs)]],
                self.schema(),
                projection.cloned(),
            )?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_trees_pair_as_the_computed_shape_does() {
        // Random forests (orphans, second roots, repeated ids, loops), random anchors and
        // targets: the sweep over stored places gives exactly the pairs of the shape walk.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..400 {
            let n = 1 + next(40) as usize;
            let links: Vec<SpanLink> = (0..n)
                .map(|i| SpanLink {
                    span_id: [next(n as u64 + 3) as u8; 8],
                    parent_span_id: (next(6) != 0).then(|| [next(n as u64 + 3) as u8; 8]),
                    start: next(20) as i64,
                    end: i as i64,
                })
                .collect();
            let shape = TraceShape::of(&links);
            let anchor: Vec<bool> = (0..n).map(|_| next(3) == 0).collect();
            let target: Vec<bool> = (0..n).map(|_| next(2) == 0).collect();
            let places = |flags: &[bool]| -> (Vec<usize>, Vec<Stored>) {
                (0..n)
                    .filter(|&i| flags[i])
                    .map(|i| {
                        let node = shape.nodes[i];
                        (
                            i,
                            Stored {
                                depth: node.depth as u32,
                                left: node.left as u32,
                                right: node.right as u32,
                            },
                        )
                    })
                    .unzip()
            };
            let (ai, sa) = places(&anchor);
            let (ti, st) = places(&target);
            for relation in Relation::ALL {
                let mut want = Vec::new();
                relation
                    .pairs(&shape, &anchor, &target, usize::MAX, &mut want)
                    .expect("no budget");
                let mut got = Vec::new();
                relation
                    .stored_pairs(&sa, &st, usize::MAX, &mut got)
                    .expect("no budget");
                let mut got: Vec<(usize, usize, u32)> =
                    got.into_iter().map(|(t, a, d)| (ti[t], ai[a], d)).collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "{relation:?} over {links:?}");
            }
        }
    }

    #[test]
    fn pairs_follow_the_tree() {
        // 1 ─ 2 ─ 3
        let link = |id: u8, parent: Option<u8>, start: i64| SpanLink {
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            start,
            end: start + 1,
        };
        let shape = TraceShape::of(&[link(1, None, 0), link(2, Some(1), 1), link(3, Some(2), 2)]);
        let anchor = [true, false, false];
        let target = [false, true, true];
        let mut out = Vec::new();
        Relation::Descendants
            .pairs(&shape, &anchor, &target, 100, &mut out)
            .expect("within the budget");
        assert_eq!(out, vec![(1, 0, 1), (2, 0, 2)]);
        out.clear();
        Relation::Children
            .pairs(&shape, &anchor, &target, 100, &mut out)
            .expect("within the budget");
        assert_eq!(out, vec![(1, 0, 1)]);
        out.clear();
        // Targets that are ancestors of anchors: with anchor 3, targets 1 and 2.
        Relation::Ancestors
            .pairs(
                &shape,
                &[false, false, true],
                &[true, true, false],
                100,
                &mut out,
            )
            .expect("within the budget");
        assert_eq!(out, vec![(1, 2, 1), (0, 2, 2)]);
        out.clear();
        Relation::Parents
            .pairs(
                &shape,
                &[false, false, true],
                &[true, true, false],
                100,
                &mut out,
            )
            .expect("within the budget");
        assert_eq!(out, vec![(1, 2, 1)]);
        // Past the budget: an error, not a huge allocation.
        out.clear();
        assert!(
            Relation::Descendants
                .pairs(
                    &shape,
                    &[true, true, true],
                    &[true, true, true],
                    2,
                    &mut out
                )
                .is_err()
        );
        assert_eq!(
            out.len(),
            2,
            "stops at the budget: (1,0), (2,1) and then (2,0) is one too many"
        );
        assert_eq!(
            links_sql(Some(&[[0xab; 16]])),
            "SELECT trace_id, span_id, parent_span_id, time, end_time FROM spans WHERE \
             trace_id IN ('abababababababababababababababab')"
        );
    }
}
