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
}

impl ScryTable {
    /// The table of `signal`, reading snapshots from `reader`.
    pub fn new(reader: Reader, signal: Signal) -> Self {
        ScryTable {
            reader,
            signal,
            schema: schema::schema(signal),
        }
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
            for (i, seg) in segments.iter().enumerate() {
                // Object store paths are absolute, without the leading `/`.
                let path = std::path::absolute(snapshot.segment_path(seg))
                    .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
                files[i % groups].push(PartitionedFile::new(
                    path.to_string_lossy().trim_start_matches('/').to_string(),
                    seg.size,
                ));
            }
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_file_groups(files.into_iter().map(FileGroup::new).collect())
                    .with_projection_indices(projection.cloned())?
                    .with_limit(limit)
                    .build();
            inputs.push(DataSourceExec::from_data_source(config));
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
            },
        )))
    }
}

/// What a scan chose, shown by `EXPLAIN`.
#[derive(Debug, Clone)]
struct ScanInfo {
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
