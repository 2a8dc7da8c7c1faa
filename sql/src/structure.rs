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
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::{Session as CatalogSession, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::logical_expr::Expr;
use futures::StreamExt;
use scrydb_engine::structure::{SpanLink, TraceShape};

use crate::{Error, Session};

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

/// Calls `each` with the trace and link of every row of a batch of [`LINK_COLUMNS`] that
/// has a trace id.
fn links_of(b: &RecordBatch, mut each: impl FnMut([u8; 16], SpanLink)) -> DfResult<()> {
    let trace = b.column(0).as_fixed_size_binary();
    let span = b.column(1).as_fixed_size_binary();
    let parent = b.column(2).as_fixed_size_binary();
    let (start, end) = (times(b, 3)?, times(b, 4)?);
    for r in 0..b.num_rows() {
        if let Some(t) = fixed::<16>(trace, r) {
            each(
                t,
                SpanLink {
                    span_id: fixed::<8>(span, r).unwrap_or_default(),
                    parent_span_id: fixed::<8>(parent, r),
                    start: start[r],
                    end: end[r],
                },
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

/// The spans `plan` (a [`matching_sql`]) returns, by trace.
async fn matching(
    state: &datafusion::execution::SessionState,
    plan: Plan,
    label: &str,
) -> DfResult<HashMap<[u8; 16], HashSet<SpanLink>>> {
    let mut out: HashMap<[u8; 16], HashSet<SpanLink>> = HashMap::new();
    let mut seen = 0usize;
    execute(state, plan, |b| {
        count_spans(&mut seen, b.num_rows(), label, "matches")?;
        links_of(b, |t, link| {
            out.entry(t).or_default().insert(link);
        })
    })
    .await?;
    Ok(out)
}

/// Every pair of `relation` between spans matching `anchor` and `target` (checked
/// predicates), read as statements of `state` (so from its snapshot), ordered by trace,
/// then target, then anchor, each pair once.
async fn related(
    state: &datafusion::execution::SessionState,
    relation: Relation,
    anchor: &str,
    target: &str,
) -> DfResult<Vec<Pair>> {
    let name = relation.name();
    let anchor_label = format!("{name}: anchor {anchor}");
    let target_label = format!("{name}: target {target}");
    let label = format!("{name}({anchor}, {target})");
    // Both planned first: a condition that cannot run is an error whatever the data.
    let anchor_plan = prepare(state, &matching_sql(anchor), &anchor_label).await?;
    let target_plan = prepare(state, &matching_sql(target), &target_label).await?;
    let anchors = matching(state, anchor_plan, &anchor_label).await?;
    if anchors.is_empty() {
        return Ok(Vec::new());
    }
    let targets = matching(state, target_plan, &target_label).await?;
    let mut candidates: Vec<[u8; 16]> = anchors
        .keys()
        .filter(|t| targets.contains_key(*t))
        .copied()
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    candidates.sort_unstable();
    let mut traces: HashMap<[u8; 16], TraceRows> = HashMap::with_capacity(candidates.len());
    let mut seen = 0usize;
    if candidates.len() <= LOOKUP_TRACES {
        let plan = prepare(state, &links_sql(Some(&candidates)), &label).await?;
        execute(state, plan, |b| {
            count_spans(&mut seen, b.num_rows(), &label, "the related traces hold")?;
            links_of(b, |t, link| traces.entry(t).or_default().links.push(link))
        })
        .await?;
    } else {
        let keep: HashSet<[u8; 16]> = candidates.iter().copied().collect();
        let plan = prepare(state, &links_sql(None), &label).await?;
        execute(state, plan, |b| {
            let mut kept = 0;
            links_of(b, |t, link| {
                if keep.contains(&t) {
                    kept += 1;
                    traces.entry(t).or_default().links.push(link);
                }
            })?;
            count_spans(&mut seen, kept, &label, "the related traces hold")
        })
        .await?;
    }
    let mut out = Vec::new();
    let mut pairs = Vec::new();
    for id in &candidates {
        let Some(rows) = traces.get(id) else { continue };
        let shape = TraceShape::of(&rows.links);
        let flags = |set: Option<&HashSet<SpanLink>>| -> Vec<bool> {
            rows.links
                .iter()
                .map(|l| set.is_some_and(|s| s.contains(l)))
                .collect()
        };
        let (a, t) = (flags(anchors.get(id)), flags(targets.get(id)));
        pairs.clear();
        if relation
            .pairs(&shape, &a, &t, MAX_PAIRS - out.len(), &mut pairs)
            .is_err()
        {
            return plan_err!(
                "{label}: more than {MAX_PAIRS} related pairs; narrow the conditions \
                 (a time range, a service)"
            );
        }
        pairs.sort_unstable_by_key(|&(t, a, _)| (shape.nodes[t].left, shape.nodes[a].left));
        // A span stored twice (a retried export) pairs twice: once is enough.
        let mut once = HashSet::with_capacity(pairs.len());
        for &(t, a, distance) in &pairs {
            let pair = Pair {
                trace_id: *id,
                span_id: rows.links[t].span_id,
                anchor_span_id: rows.links[a].span_id,
                distance,
            };
            if once.insert(pair) {
                out.push(pair);
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
/// predicates over `spans`), as pairs: one statement of `session`
/// (`SELECT * FROM descendants(...)` and so on), so one snapshot.
pub async fn related_spans(
    session: &Session,
    relation: Relation,
    anchor: &str,
    target: &str,
) -> Result<Vec<Pair>, Error> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let sql = format!(
        "SELECT * FROM {}({}, {})",
        relation.name(),
        quote(anchor),
        quote(target)
    );
    let mut out = Vec::new();
    for b in session.sql(&sql).await? {
        let c = |i: usize| b.column(i).as_fixed_size_binary();
        let d = b
            .column(3)
            .as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
        for r in 0..b.num_rows() {
            out.push(Pair {
                trace_id: fixed::<16>(c(0), r).unwrap_or_default(),
                span_id: fixed::<8>(c(1), r).unwrap_or_default(),
                anchor_span_id: fixed::<8>(c(2), r).unwrap_or_default(),
                distance: d.value(r),
            });
        }
    }
    Ok(out)
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
        let pairs = related(state, self.relation, &self.anchor, &self.target).await?;
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![relation_batch(&pairs)]],
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
