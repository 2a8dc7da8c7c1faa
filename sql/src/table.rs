//! The `spans`, `logs` and `metrics` tables: a DataFusion [`TableProvider`] over engine
//! snapshots.
//!
//! A scan takes a fresh snapshot, keeps the segments whose time range can match the query's
//! `time` predicates (the rest are never opened), reads them through DataFusion's Parquet
//! source (statistics, page index and predicate pushdown apply), and unions them with the
//! snapshot's unflushed memtable rows, so a row is queryable as soon as its append returns.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use scrydb_engine::{Reader, Signal, TimeRange, schema};

/// Files per scan partition: segments are read in parallel across at most this many
/// groups (DataFusion also splits large files by row group).
const MAX_GROUPS: usize = 8;

/// One signal's table.
#[derive(Debug, Clone)]
pub struct ScryTable {
    reader: Reader,
    signal: Signal,
    schema: SchemaRef,
    use_index: bool,
}

impl ScryTable {
    /// The table of `signal`, reading snapshots from `reader`.
    pub fn new(reader: Reader, signal: Signal) -> Self {
        ScryTable {
            reader,
            signal,
            schema: schema::schema(signal),
            use_index: true,
        }
    }

    /// The same table, with `trace_id` lookups going through the per-segment trace indexes
    /// (`true`, the default) or reading every segment's pages by statistics alone.
    pub fn with_trace_index(mut self, use_index: bool) -> Self {
        self.use_index = use_index;
        self
    }

    /// The signal whose rows the table holds.
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

/// The `[start, end)` range of `time` that every row matching all `filters` lies in
/// (`TimeRange::all()` when the filters do not bound `time`). Understands `time` compared
/// with a timestamp literal by `=`, `<`, `<=`, `>`, `>=` (either side), and `BETWEEN`;
/// other filters do not narrow the range.
pub fn time_range(filters: &[Expr]) -> TimeRange {
    let mut r = TimeRange::all();
    for f in filters {
        narrow(&mut r, f);
    }
    r
}

fn narrow(r: &mut TimeRange, e: &Expr) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            narrow(r, left);
            narrow(r, right);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = match (is_time(left), is_time(right)) {
                (true, false) => (*op, timestamp_ns(right)),
                (false, true) => match op.swap() {
                    Some(op) => (op, timestamp_ns(left)),
                    None => return,
                },
                _ => return,
            };
            let Some(v) = value else { return };
            apply(r, op, v);
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr) => {
            if let Some(lo) = timestamp_ns(low) {
                apply(r, Operator::GtEq, lo);
            }
            if let Some(hi) = timestamp_ns(high) {
                apply(r, Operator::LtEq, hi);
            }
        }
        _ => {}
    }
}

fn apply(r: &mut TimeRange, op: Operator, v: i64) {
    match op {
        Operator::Eq => {
            r.start = r.start.max(v);
            r.end = r.end.min(v.saturating_add(1));
        }
        Operator::Gt => r.start = r.start.max(v.saturating_add(1)),
        Operator::GtEq => r.start = r.start.max(v),
        Operator::Lt => r.end = r.end.min(v),
        Operator::LtEq => r.end = r.end.min(v.saturating_add(1)),
        _ => {}
    }
}

fn is_time(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == "time",
        Expr::Cast(c) => is_time(&c.expr),
        _ => false,
    }
}

/// A timestamp literal in nanoseconds.
fn timestamp_ns(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// The trace ids a query is restricted to by `trace_id = <id>` or `trace_id IN (<ids>)`
/// among its top-level filters (after the hex rewrite, ids are binary literals).
pub fn trace_ids(filters: &[Expr]) -> Option<Vec<[u8; 16]>> {
    fn id(e: &Expr) -> Option<[u8; 16]> {
        match e {
            Expr::Literal(ScalarValue::FixedSizeBinary(16, Some(b)), _) => {
                b.as_slice().try_into().ok()
            }
            _ => None,
        }
    }
    fn is_trace_id(e: &Expr) -> bool {
        matches!(e, Expr::Column(c) if c.name == "trace_id")
    }
    for f in filters {
        match f {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if is_trace_id(left)
                    && let Some(v) = id(right)
                {
                    return Some(vec![v]);
                }
                if is_trace_id(right)
                    && let Some(v) = id(left)
                {
                    return Some(vec![v]);
                }
            }
            Expr::InList(datafusion::logical_expr::expr::InList {
                expr,
                list,
                negated: false,
            }) if is_trace_id(expr) => {
                let ids: Option<Vec<[u8; 16]>> = list.iter().map(id).collect();
                if ids.is_some() {
                    return ids;
                }
            }
            _ => {}
        }
    }
    None
}

#[async_trait]
impl TableProvider for ScryTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter is passed to the Parquet source (statistics, page index, row filters)
    /// and used for time pruning, but DataFusion still applies it: `Inexact`.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = self.reader.snapshot();
        let range = time_range(filters);
        let bounded = range != TimeRange::all();
        let total = snapshot.segments(self.signal, None).len();
        let segments = snapshot.segments(self.signal, bounded.then_some(range));
        let memtable = snapshot
            .memtable_batches(self.signal, bounded.then_some(range))
            .map_err(crate::Error::from)?;

        let lookup = if self.use_index && self.signal != Signal::Metrics {
            trace_ids(filters)
        } else {
            None
        };
        let mut index_info = IndexInfo {
            ids: lookup.as_ref().map_or(0, Vec::len),
            ..IndexInfo::default()
        };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !segments.is_empty() {
            // The query's filters reach the source through DataFusion's physical filter
            // pushdown (the table answers `Inexact`), which prunes row groups and pages by
            // statistics and filters rows while decoding.
            let source = ParquetSource::new(self.schema.clone())
                .with_pushdown_filters(true)
                .with_reorder_filters(true)
                .with_enable_page_index(true);
            let groups = MAX_GROUPS.min(segments.len());
            let mut files: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
            let mut i = 0;
            for seg in &segments {
                // With trace ids to find, the segment's trace index says which rows (and so
                // which pages) to read, or that the segment can be skipped.
                let mut access = None;
                if let Some(ids) = &lookup {
                    match snapshot.index_rows(seg, ids) {
                        Some(rows) if rows.is_empty() => {
                            index_info.pruned += 1;
                            continue;
                        }
                        Some(rows) => {
                            index_info.rows += rows.len();
                            access = Some(ParquetRowSelection::new(
                                scrydb_engine::trace::row_selection(&rows, seg.rows),
                            ));
                        }
                        None => index_info.unindexed += 1,
                    }
                }
                // Object store paths are absolute, without the leading `/`.
                let path = std::path::absolute(snapshot.segment_path(seg))
                    .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
                let mut file = PartitionedFile::new(
                    path.to_string_lossy().trim_start_matches('/').to_string(),
                    seg.size,
                );
                if let Some(plan) = access {
                    file = file.with_extension(plan);
                }
                files[i % groups].push(file);
                i += 1;
            }
            files.retain(|g| !g.is_empty());
            if !files.is_empty() {
                let config = FileScanConfigBuilder::new(
                    ObjectStoreUrl::local_filesystem(),
                    Arc::new(source),
                )
                .with_file_groups(files.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
                inputs.push(DataSourceExec::from_data_source(config));
            }
        }
        let memtable_batches = memtable.len();
        if !memtable.is_empty() || inputs.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[memtable],
                self.schema.clone(),
                projection.cloned(),
            )?);
        }
        let input = UnionExec::try_new(inputs)?;
        Ok(Arc::new(ScryScanExec::new(
            input,
            ScanInfo {
                signal: self.signal,
                range: bounded.then_some(range),
                segments: segments.len(),
                total_segments: total,
                memtable_batches,
                index: index_info,
            },
        )))
    }
}

/// What the trace index did for a scan.
#[derive(Debug, Clone, Default)]
struct IndexInfo {
    /// Trace ids looked up (0: no lookup).
    ids: usize,
    /// Segments skipped because their index holds none of the ids.
    pruned: usize,
    /// Rows the indexes selected.
    rows: u64,
    /// Segments read in full because their index is missing or damaged.
    unindexed: usize,
}

/// What a scan chose, shown by `EXPLAIN`.
#[derive(Debug, Clone)]
struct ScanInfo {
    index: IndexInfo,
    signal: Signal,
    range: Option<TimeRange>,
    segments: usize,
    total_segments: usize,
    memtable_batches: usize,
}

/// The root of a table scan: passes its input through unchanged and shows in `EXPLAIN` how
/// many segments the time predicates pruned.
#[derive(Debug)]
pub struct ScryScanExec {
    input: Arc<dyn ExecutionPlan>,
    info: ScanInfo,
    properties: Arc<PlanProperties>,
}

impl ScryScanExec {
    fn new(input: Arc<dyn ExecutionPlan>, info: ScanInfo) -> Self {
        let properties = Arc::new(PlanProperties::new(
            input.equivalence_properties().clone(),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        ScryScanExec {
            input,
            info,
            properties,
        }
    }
}

impl DisplayAs for ScryScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        write!(
            f,
            "ScryScan: table={}, segments={} of {} ({} pruned by time), memtable_batches={}",
            i.signal,
            i.segments,
            i.total_segments,
            i.total_segments - i.segments,
            i.memtable_batches
        )?;
        if let Some(r) = i.range {
            write!(f, ", time=[{}, {})", r.start, r.end)?;
        }
        if i.index.ids > 0 {
            write!(
                f,
                ", trace_index: ids={} segments_pruned={} rows_selected={}",
                i.index.ids, i.index.pruned, i.index.rows
            )?;
            if i.index.unindexed > 0 {
                write!(f, " unindexed_segments={}", i.index.unindexed)?;
            }
        }
        Ok(())
    }
}

use datafusion::physical_plan::ExecutionPlanProperties;

impl ExecutionPlan for ScryScanExec {
    fn name(&self) -> &'static str {
        "ScryScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return datafusion::common::internal_err!("ScryScanExec has one child");
        }
        let input = children.swap_remove(0);
        Ok(match options.children_properties {
            ChildrenPropertiesMode::Keep => Arc::new(ScryScanExec {
                input,
                info: self.info.clone(),
                properties: self.properties.clone(),
            }),
            ChildrenPropertiesMode::Recompute => {
                Arc::new(ScryScanExec::new(input, self.info.clone()))
            }
        })
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(v),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_predicates_narrow_the_range() {
        assert_eq!(time_range(&[]), TimeRange::all());
        let r = time_range(&[col("time").gt_eq(ts(10)), col("time").lt(ts(20))]);
        assert_eq!(r, TimeRange::new(10, 20));
        let r = time_range(&[ts(10).lt(col("time")).and(col("time").lt_eq(ts(20)))]);
        assert_eq!(r, TimeRange::new(11, 21));
        let r = time_range(&[col("time").between(ts(5), ts(7))]);
        assert_eq!(r, TimeRange::new(5, 8));
        let r = time_range(&[col("time").eq(ts(5)), col("name").eq(lit("x"))]);
        assert_eq!(r, TimeRange::new(5, 6));
        // OR does not narrow.
        let r = time_range(&[col("time").lt(ts(5)).or(col("time").gt(ts(9)))]);
        assert_eq!(r, TimeRange::all());
    }
}
