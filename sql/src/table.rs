//! The `spans`, `logs` and `metrics` tables: a DataFusion [`TableProvider`] over engine
//! snapshots.
//!
//! A scan reads the snapshot of its statement (one per statement, shared by every table scan
//! in it: see [`StatementSnapshots`]), keeps the segments whose time range can match the
//! query's `time` predicates (the rest are never opened), reads them through DataFusion's
//! Parquet source (statistics, page index and predicate pushdown apply) with a reader that
//! goes through the engine's file system and its cached Parquet metadata
//! ([`SegmentReaderFactory`]), and unions them with the snapshot's unflushed memtable rows,
//! so a row is queryable as soon as its append returns. The plan and every stream it
//! returns own the snapshot: no segment file it names is deleted before the last batch.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

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
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileMetrics, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use scrydb_engine::search::index::{Field, TermQuery};
use scrydb_engine::segment::file::SegmentFile;
use scrydb_engine::{Reader, SegmentMeta, Signal, Snapshot, TimeRange, schema};

/// Files per scan partition: segments are read in parallel across at most this many
/// groups (DataFusion also splits large files by row group).
const MAX_GROUPS: usize = 8;

/// The snapshots of one SQL statement, one per database, taken by the first table scan of
/// the statement that reads that database and shared by every later scan of it (self-joins,
/// subqueries, table functions, joins across signals), so a statement never sees a row on
/// one side of a join that the other side lacks.
///
/// [`crate::Session`] puts a fresh one into the `SessionConfig` of every statement it plans.
/// A plan built without one (a `SessionContext` used directly) takes a snapshot per scan.
#[derive(Debug, Default)]
pub struct StatementSnapshots {
    taken: Mutex<Vec<(PathBuf, Arc<Snapshot>)>>,
}

impl StatementSnapshots {
    /// The statement's snapshot of the database `reader` reads, taken now if this is the
    /// statement's first scan of it.
    pub fn get(&self, reader: &Reader) -> Arc<Snapshot> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, snap)) = taken.iter().find(|(dir, _)| dir == reader.path()) {
            return snap.clone();
        }
        let snap = Arc::new(reader.snapshot());
        taken.push((reader.path().to_path_buf(), snap.clone()));
        snap
    }
}

/// The snapshot a scan planned with `state` reads.
pub(crate) fn statement_snapshot(state: &dyn Session, reader: &Reader) -> Arc<Snapshot> {
    match state.config().get_extension::<StatementSnapshots>() {
        Some(statement) => statement.get(reader),
        None => Arc::new(reader.snapshot()),
    }
}

/// One signal's table.
#[derive(Debug, Clone)]
pub struct ScryTable {
    reader: Reader,
    signal: Signal,
    schema: SchemaRef,
    use_index: bool,
    term_index: bool,
    time_pruning: bool,
    /// Plans scans that a cluster's executors can run ([`ScryTable::for_cluster`]).
    cluster: bool,
}

impl ScryTable {
    /// The table of `signal`, reading snapshots from `reader`.
    pub fn new(reader: Reader, signal: Signal) -> Self {
        ScryTable {
            reader,
            signal,
            schema: schema::schema(signal),
            use_index: true,
            term_index: true,
            time_pruning: true,
            cluster: false,
        }
    }

    /// The same table, planning scans that other processes can run: a distributed engine's
    /// executors (`crate::cluster`) that have only the object store and DataFusion's own
    /// operators. Segments are read by their object-storage URLs through DataFusion's
    /// Parquet reader (no engine reader, so no block checksums), `end_time` is computed
    /// by a projection, trace-id lookups read their rows at planning (the scan carries
    /// them), and term-index row selections are dropped (files the index rules out are
    /// still skipped). A segment on local disk is an error.
    pub fn for_cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Whether the table plans scans for a cluster.
    pub fn is_for_cluster(&self) -> bool {
        self.cluster
    }

    /// The reader the table takes snapshots from.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Whether `trace_id` lookups use the trace indexes, searches the term indexes, and
    /// `time` predicates prune segments (the three `with_*` switches).
    pub fn switches(&self) -> (bool, bool, bool) {
        (self.use_index, self.term_index, self.time_pruning)
    }

    /// Whether the table has the trace-tree columns (internal schema of the structural
    /// functions).
    pub(crate) fn has_tree_columns(&self) -> bool {
        self.schema != schema::schema(self.signal)
    }

    /// The same table, with `time` predicates pruning segments and memtable rows before
    /// any file is opened (`true`, the default) or not (every segment is read and the
    /// predicates filter its rows: the reference pruning is tested against).
    pub fn with_time_pruning(mut self, time_pruning: bool) -> Self {
        self.time_pruning = time_pruning;
        self
    }

    /// The same table, with `trace_id` lookups going through the per-segment trace indexes
    /// (`true`, the default) or reading every segment's pages by statistics alone.
    pub fn with_trace_index(mut self, use_index: bool) -> Self {
        self.use_index = use_index;
        self
    }

    /// The same table, with searches (`matches`, `attributes['k'] = 'v'`) reading only the
    /// blocks the per-segment term indexes name (`true`, the default) or every segment
    /// (the reference the index is tested against).
    pub fn with_term_index(mut self, term_index: bool) -> Self {
        self.term_index = term_index;
        self
    }

    /// The signal whose rows the table holds.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The snapshot a scan of this table planned with `state` reads.
    pub(crate) fn snapshot(&self, state: &dyn Session) -> Arc<Snapshot> {
        statement_snapshot(state, &self.reader)
    }

    /// The `spans` table with the trace-tree columns segments store after its own
    /// ([`scrydb_engine::segment::tree`]): each span's depth, nested-set interval and root
    /// within its trace's spans **in its segment**, null for spans of the memtable, of
    /// segments written before format 3, and for rows a trace-id lookup reads. Internal:
    /// the structural functions use it for traces a single segment holds whole.
    pub(crate) fn with_tree_columns(mut self) -> Self {
        if self.signal == Signal::Spans {
            self.schema = scrydb_engine::segment::tree::spans_with_tree();
        }
        self
    }
}

/// `batch` with a null column for each field of `schema` it lacks (by name), in `schema`'s
/// order.
fn widen(
    schema: &SchemaRef,
    batch: &datafusion::arrow::array::RecordBatch,
) -> Result<datafusion::arrow::array::RecordBatch> {
    if batch.schema().fields().len() == schema.fields().len() {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => datafusion::arrow::array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    Ok(datafusion::arrow::array::RecordBatch::try_new(
        schema.clone(),
        columns,
    )?)
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

/// Whether `e` is the `time` column, possibly behind casts that keep every nanosecond (to
/// a nanosecond timestamp in any time zone: the zone changes how a value prints, not the
/// instant). A cast that can narrow the value (to seconds, to a date, to a string) is not
/// looked through: `CAST(time AS TIMESTAMP(0)) = t` matches a whole second of `time`,
/// not the instant `t`.
fn is_time(e: &Expr) -> bool {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    let exact = |t: &DataType| matches!(t, DataType::Timestamp(TimeUnit::Nanosecond, _));
    match e {
        Expr::Column(c) => c.name == "time",
        Expr::Cast(c) => exact(c.field.data_type()) && is_time(&c.expr),
        Expr::TryCast(c) => exact(c.field.data_type()) && is_time(&c.expr),
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

/// The trace ids a query is restricted to by `trace_id = <id>`, `trace_id IN (<ids>)` or
/// an `OR` of such (which DataFusion makes of an `IN` list of up to 3 ids) among its
/// top-level filters (after the hex rewrite, ids are binary literals).
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
    /// The ids `e` restricts `trace_id` to, or `None` when it is not such a condition.
    fn ids(e: &Expr, depth: usize) -> Option<Vec<[u8; 16]>> {
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if is_trace_id(left) {
                    id(right).map(|v| vec![v])
                } else if is_trace_id(right) {
                    id(left).map(|v| vec![v])
                } else {
                    None
                }
            }
            // An `OR` chain nests one level per id: bounded, so a hostile filter cannot
            // exhaust the stack here.
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) if depth < 64 => {
                let mut l = ids(left, depth + 1)?;
                l.extend(ids(right, depth + 1)?);
                Some(l)
            }
            Expr::InList(datafusion::logical_expr::expr::InList {
                expr,
                list,
                negated: false,
            }) if is_trace_id(expr) => list.iter().map(id).collect(),
            _ => None,
        }
    }
    filters.iter().find_map(|f| ids(f, 0))
}

/// The condition on a segment's terms that `filters` (a scan's top-level filters, all of
/// which hold for every row returned) imply, for the term index of `signal`
/// ([`scrydb_engine::search::index`]). Understood: `matches(<indexed text column>,
/// '<query>')` (every token of the query; `matches(events, …)` on event names),
/// `<attributes column>['key'] = 'value'` and `IN ('v1', …)` (the `key=value` terms), a
/// numeric comparison of an attribute read as a number — `CAST` or `TRY_CAST` of
/// `<attributes column>['key']` to an integer type or `DOUBLE` compared (`=`, `<`, `<=`,
/// `>`, `>=`, `BETWEEN`) with a number (the numeric ranges) — and `AND` / `OR` of those;
/// anything else narrows nothing. The filters are still applied to the rows the index
/// selects.
pub fn term_query(signal: Signal, filters: &[Expr]) -> TermQuery {
    TermQuery::and(filters.iter().map(|f| term_condition(signal, f)).collect())
}

fn term_condition(signal: Signal, e: &Expr) -> TermQuery {
    fn text(e: &Expr) -> Option<&str> {
        match e {
            Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
                _,
            ) => Some(s),
            _ => None,
        }
    }
    // `<column>['key']` on an indexed attribute column: (field, key).
    let attribute = |e: &Expr| -> Option<(Field, String)> {
        let Expr::ScalarFunction(f) = e else {
            return None;
        };
        if f.name() != "get_field" || f.args.len() != 2 {
            return None;
        }
        let Expr::Column(c) = &f.args[0] else {
            return None;
        };
        let field = Field::of_column(signal, &c.name).filter(|f| !f.is_text())?;
        Some((field, text(&f.args[1])?.to_string()))
    };
    // `CAST(<column>['key'] AS <integer or DOUBLE>)`, possibly cast again to a wider type
    // that keeps every value (never from a float to an integer, which truncates).
    let numeric = |mut e: &Expr| -> Option<(Field, String)> {
        use datafusion::arrow::datatypes::DataType as T;
        let mut casts = Vec::new();
        loop {
            match e {
                Expr::Cast(c) => {
                    casts.push(c.field.data_type().clone());
                    e = &c.expr;
                }
                Expr::TryCast(c) => {
                    casts.push(c.field.data_type().clone());
                    e = &c.expr;
                }
                _ => break,
            }
        }
        let mut float = false;
        // Innermost cast first.
        for t in casts.iter().rev() {
            match t {
                T::Float64 => float = true,
                T::Int8 | T::Int16 | T::Int32 | T::Int64 if !float => {}
                T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64 if !float => {}
                _ => return None,
            }
        }
        if casts.is_empty() {
            return None;
        }
        attribute(e)
    };
    let number = |e: &Expr| -> Option<f64> {
        const EXACT: u64 = 1 << 53;
        let Expr::Literal(v, _) = e else { return None };
        let int = |v: i128| (v.unsigned_abs() <= u128::from(EXACT)).then_some(v as f64);
        match v {
            ScalarValue::Float64(Some(f)) => Some(*f),
            ScalarValue::Int8(Some(i)) => int(i128::from(*i)),
            ScalarValue::Int16(Some(i)) => int(i128::from(*i)),
            ScalarValue::Int32(Some(i)) => int(i128::from(*i)),
            ScalarValue::Int64(Some(i)) => int(i128::from(*i)),
            ScalarValue::UInt8(Some(i)) => int(i128::from(*i)),
            ScalarValue::UInt16(Some(i)) => int(i128::from(*i)),
            ScalarValue::UInt32(Some(i)) => int(i128::from(*i)),
            ScalarValue::UInt64(Some(i)) => int(i128::from(*i)),
            _ => None,
        }
    };
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            ) && (numeric(left).is_some() || numeric(right).is_some()) =>
        {
            // `value op n`, or `n op value` read as `value op' n`.
            let (a, n, op) = match (numeric(left), number(right)) {
                (Some(a), Some(n)) => (a, n, *op),
                _ => match (numeric(right), number(left)) {
                    (Some(a), Some(n)) => (a, n, op.swap().expect("comparisons swap")),
                    _ => return TermQuery::All,
                },
            };
            let (lo, hi) = match op {
                Operator::Eq => (Some((n, true)), Some((n, true))),
                Operator::Lt => (None, Some((n, false))),
                Operator::LtEq => (None, Some((n, true))),
                Operator::Gt => (Some((n, false)), None),
                _ => (Some((n, true)), None),
            };
            TermQuery::range(a.0, &a.1, lo, hi)
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => match (numeric(expr), number(low), number(high)) {
            (Some(a), Some(lo), Some(hi)) => {
                TermQuery::range(a.0, &a.1, Some((lo, true)), Some((hi, true)))
            }
            _ => TermQuery::All,
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => TermQuery::and(vec![
            term_condition(signal, left),
            term_condition(signal, right),
        ]),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => TermQuery::or(vec![
            term_condition(signal, left),
            term_condition(signal, right),
        ]),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (a, v) = match (attribute(left), text(right)) {
                (Some(a), Some(v)) => (a, v),
                _ => match (attribute(right), text(left)) {
                    (Some(a), Some(v)) => (a, v),
                    _ => return TermQuery::All,
                },
            };
            TermQuery::attribute(a.0, &a.1, v)
        }
        Expr::InList(datafusion::logical_expr::expr::InList {
            expr,
            list,
            negated: false,
        }) => {
            let Some((field, key)) = attribute(expr) else {
                return TermQuery::All;
            };
            let values: Option<Vec<&str>> = list.iter().map(text).collect();
            match values {
                Some(v) => TermQuery::or(
                    v.into_iter()
                        .map(|v| TermQuery::attribute(field, &key, v))
                        .collect(),
                ),
                None => TermQuery::All,
            }
        }
        Expr::ScalarFunction(f) if f.name() == "matches" && f.args.len() == 2 => {
            let (Expr::Column(c), Some(q)) = (&f.args[0], text(&f.args[1])) else {
                return TermQuery::All;
            };
            match Field::of_column(signal, &c.name) {
                Some(field) => TermQuery::phrase(field, q),
                None => TermQuery::All,
            }
        }
        _ => TermQuery::All,
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = statement_snapshot(state, &self.reader);
        let range = if self.time_pruning {
            time_range(filters)
        } else {
            TimeRange::all()
        };
        let bounded = range != TimeRange::all();
        let total = snapshot.segments(self.signal, None).len();
        let segments = snapshot.segments(self.signal, bounded.then_some(range));
        let memtable = snapshot
            .memtable_batches(self.signal, bounded.then_some(range))
            .map_err(crate::Error::from)?
            .iter()
            .map(|b| widen(&self.schema, b))
            .collect::<Result<Vec<_>>>()?;

        let lookup = if self.use_index && self.signal != Signal::Metrics {
            trace_ids(filters)
        } else {
            None
        };
        // Without a trace-id lookup, the term indexes may narrow the rows to read.
        let terms = match &lookup {
            None if self.term_index && self.signal != Signal::Metrics => {
                term_query(self.signal, filters)
            }
            _ => TermQuery::All,
        };
        let mut index_info = IndexInfo {
            ids: lookup.as_ref().map_or(0, Vec::len),
            terms: terms.terms(),
            ..IndexInfo::default()
        };
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        // A trace-id lookup reads the rows the trace indexes name through the engine (the
        // pages holding them, decoded at once, as `Db::trace` does), not through a Parquet
        // scan: a lookup costs what the engine's costs. The indexes are asked now (EXPLAIN
        // shows what they chose); the rows are read when the plan runs. Segments without a
        // usable index are scanned below. DataFusion applies every filter to the rows again.
        let n_segments = segments.len();
        let mut segments = segments;
        if let Some(ids) = &lookup {
            let mut rest = Vec::new();
            let mut reads = Vec::new();
            for seg in segments {
                match snapshot.index_rows(&seg, ids) {
                    Some(rows) if rows.is_empty() => index_info.pruned += 1,
                    Some(rows) => {
                        index_info.rows += rows.len();
                        reads.push((seg, rows));
                    }
                    None => {
                        index_info.unindexed += 1;
                        rest.push(seg);
                    }
                }
            }
            segments = rest;
            if !reads.is_empty() {
                let rows = IndexedRows {
                    schema: self.schema.clone(),
                    snapshot: snapshot.clone(),
                    signal: self.signal,
                    ids: ids.clone(),
                    reads: Arc::new(reads),
                    next: 0,
                    pending: std::collections::VecDeque::new(),
                };
                if self.cluster {
                    // Executors cannot read through the engine: the rows travel in the plan.
                    let mut rows = rows;
                    let mut batches = Vec::new();
                    while let Some(b) = rows.generate_next_batch()? {
                        batches.push(b);
                    }
                    inputs.push(MemorySourceConfig::try_new_exec(
                        &[batches],
                        self.schema.clone(),
                        projection.cloned(),
                    )?);
                } else {
                    let generator: Arc<parking_lot::RwLock<dyn LazyBatchGenerator>> =
                        Arc::new(parking_lot::RwLock::new(rows));
                    inputs.push(Arc::new(
                        LazyMemoryExec::try_new(self.schema.clone(), vec![generator])?
                            .with_projection(projection.cloned()),
                    ));
                }
            }
        }
        // A search reads, through the Parquet scan below, only the blocks the segments'
        // term indexes name (a row selection per file: the pages holding them); a segment
        // whose index holds none of the terms is not read at all, one without a usable
        // index is read whole.
        let mut selections: HashMap<u64, datafusion::parquet::arrow::arrow_reader::RowSelection> =
            HashMap::new();
        if !terms.is_all() {
            let mut kept = Vec::new();
            for seg in segments {
                match snapshot.search_rows(&seg, &terms) {
                    Some(rows) if rows.is_empty() => index_info.pruned += 1,
                    Some(rows) => {
                        index_info.rows += rows.len();
                        // A selection of most of the file costs more to apply than it
                        // saves: such a file is read whole.
                        if rows.len() * 2 < seg.rows {
                            selections.insert(
                                seg.id,
                                scrydb_engine::trace::row_selection(&rows, seg.rows),
                            );
                        }
                        kept.push(seg);
                    }
                    None => {
                        index_info.unindexed += 1;
                        kept.push(seg);
                    }
                }
            }
            segments = kept;
        }
        if self.cluster && !segments.is_empty() {
            inputs.push(self.cluster_scan(&snapshot, segments, projection, limit)?);
        } else if !segments.is_empty() {
            let mut factory = SegmentReaderFactory {
                snapshot: snapshot.clone(),
                segments: HashMap::new(),
            };
            // Newest segments first in every group: a `ORDER BY time DESC LIMIT n` (a search)
            // finds its rows early, and DataFusion's top-k filter then skips the row groups
            // and files too old to enter it by their statistics.
            segments.sort_by_key(|seg| std::cmp::Reverse((seg.max_time, seg.id)));
            let groups = MAX_GROUPS.min(segments.len());
            let mut files: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
            for (i, seg) in segments.iter().enumerate() {
                // Object store paths are absolute, without the leading `/`.
                let path = std::path::absolute(snapshot.segment_path(seg))
                    .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
                let location = path.to_string_lossy().trim_start_matches('/').to_string();
                factory.segments.insert(location.clone(), seg.clone());
                let mut file = PartitionedFile::new(location, seg.size);
                if let Some(selection) = selections.remove(&seg.id) {
                    file.extensions.insert(ParquetRowSelection::new(selection));
                }
                files[i % groups].push(file);
            }
            files.retain(|g| !g.is_empty());
            if !files.is_empty() {
                // The query's filters reach the source through DataFusion's physical filter
                // pushdown (the table answers `Inexact`), which prunes row groups and pages
                // by statistics and filters rows while decoding.
                let source = ParquetSource::new(self.schema.clone())
                    .with_pushdown_filters(true)
                    .with_reorder_filters(true)
                    .with_enable_page_index(true)
                    .with_parquet_file_reader_factory(Arc::new(factory));
                let config = FileScanConfigBuilder::new(
                    ObjectStoreUrl::local_filesystem(),
                    Arc::new(source),
                )
                .with_file_groups(files.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .with_expr_adapter(Some(Arc::new(DerivedColumns)))
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
        if self.cluster {
            return Ok(input);
        }
        Ok(Arc::new(ScryScanExec::new(
            input,
            snapshot,
            ScanInfo {
                signal: self.signal,
                range: bounded.then_some(range),
                segments: n_segments,
                total_segments: total,
                memtable_batches,
                index: index_info,
            },
        )))
    }
}

impl ScryTable {
    /// The Parquet scan of `segments` by their object-storage URLs, with only DataFusion's
    /// own operators (see [`ScryTable::for_cluster`]).
    fn cluster_scan(
        &self,
        snapshot: &Snapshot,
        mut segments: Vec<Arc<SegmentMeta>>,
        projection: Option<&Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        use datafusion::common::DataFusionError;
        use datafusion::physical_expr::expressions::{BinaryExpr as PBinary, CastExpr, Column};
        use datafusion::physical_plan::projection::ProjectionExec;
        segments.sort_by_key(|seg| std::cmp::Reverse((seg.max_time, seg.id)));
        let mut bucket: Option<String> = None;
        let groups = MAX_GROUPS.min(segments.len());
        let mut files: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
        for (i, seg) in segments.iter().enumerate() {
            let url = snapshot.segment_url(seg).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "segment {} is on local disk: a cluster reads stores in object storage \
                     only",
                    seg.path
                ))
            })?;
            let (scheme, rest) = url.split_once("://").unwrap_or(("", &url));
            let (b, key) = rest.split_once('/').unwrap_or((rest, ""));
            let b = format!("{scheme}://{b}");
            match &bucket {
                Some(have) if *have != b => {
                    return Err(DataFusionError::Plan(format!(
                        "a cluster scan reads one bucket; {url} is outside {have}"
                    )));
                }
                _ => bucket = Some(b),
            }
            files[i % groups].push(PartitionedFile::new(key.to_string(), seg.size));
        }
        let bucket = ObjectStoreUrl::parse(bucket.unwrap_or_default())?;
        // Segments do not store derived columns (`end_time`): read what the projection
        // needs of the stored ones, then compute them on top.
        let derived: Vec<usize> = scrydb_engine::segment::stored::derived_columns(self.signal)
            .iter()
            .filter_map(|n| self.schema.index_of(n).ok())
            .collect();
        let wanted: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let needs_derived = wanted.iter().any(|i| derived.contains(i));
        let mut read = wanted.clone();
        if needs_derived {
            for name in ["time", "duration_ns"] {
                let i = self.schema.index_of(name)?;
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }
        let source = ParquetSource::new(self.schema.clone())
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_enable_page_index(true);
        let config = FileScanConfigBuilder::new(bucket, Arc::new(source))
            .with_file_groups(
                files
                    .into_iter()
                    .filter(|g| !g.is_empty())
                    .map(FileGroup::new)
                    .collect(),
            )
            .with_projection_indices(Some(read.clone()))?
            .with_limit(if needs_derived { None } else { limit })
            .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        if !needs_derived && read == wanted {
            return Ok(scan);
        }
        let at = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
            let i = self.schema.index_of(name)?;
            let pos = read.iter().position(|r| *r == i).expect("read holds it");
            Ok(Arc::new(Column::new(name, pos)))
        };
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
        for i in &wanted {
            let field = self.schema.field(*i);
            let expr: Arc<dyn PhysicalExpr> = if derived.contains(i) {
                // end_time = time + duration_ns, in nanoseconds.
                let start = Arc::new(CastExpr::new(
                    at("time")?,
                    datafusion::arrow::datatypes::DataType::Int64,
                    None,
                ));
                let sum = Arc::new(PBinary::new(start, Operator::Plus, at("duration_ns")?));
                Arc::new(CastExpr::new(sum, field.data_type().clone(), None))
            } else {
                at(field.name())?
            };
            exprs.push((expr, field.name().clone()));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}

/// The rows of a trace-id lookup that segments' trace indexes named, read segment by
/// segment through the engine when the plan runs ([`Snapshot::read_rows`]).
#[derive(Debug)]
struct IndexedRows {
    /// The table's schema (the rows read are widened to it).
    schema: SchemaRef,
    snapshot: Arc<Snapshot>,
    signal: Signal,
    ids: Vec<[u8; 16]>,
    /// Each segment to read and the rows its index named.
    reads: Arc<Vec<(Arc<SegmentMeta>, roaring::RoaringBitmap)>>,
    /// The next entry of `reads`.
    next: usize,
    /// Batches read and not yet returned.
    pending: std::collections::VecDeque<datafusion::arrow::array::RecordBatch>,
}

impl fmt::Display for IndexedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace-index rows of {} segment(s), read by the engine",
            self.reads.len()
        )
    }
}

impl LazyBatchGenerator for IndexedRows {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn generate_next_batch(&mut self) -> Result<Option<datafusion::arrow::array::RecordBatch>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Ok(Some(b));
            }
            let Some((seg, rows)) = self.reads.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            let batches = self
                .snapshot
                .read_rows(seg, rows, self.signal, &self.ids)
                .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
            for b in &batches {
                self.pending.push_back(widen(&self.schema, b)?);
            }
        }
    }

    fn reset_state(&self) -> Arc<parking_lot::RwLock<dyn LazyBatchGenerator>> {
        Arc::new(parking_lot::RwLock::new(IndexedRows {
            schema: self.schema.clone(),
            snapshot: self.snapshot.clone(),
            signal: self.signal,
            ids: self.ids.clone(),
            reads: self.reads.clone(),
            next: 0,
            pending: std::collections::VecDeque::new(),
        }))
    }
}

/// Opens the segments of one scan through the engine's file system, with their Parquet
/// metadata (footer and page index) read once per segment and process and cached by the
/// engine. It owns the scan's snapshot, so the files stay readable while any reader lives.
#[derive(Debug)]
pub struct SegmentReaderFactory {
    snapshot: Arc<Snapshot>,
    /// Segments by the object-store location the scan gave their files.
    segments: HashMap<String, Arc<SegmentMeta>>,
}

impl ParquetFileReaderFactory for SegmentReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let location = file.object_meta.location.as_ref();
        let Some(seg) = self.segments.get(location) else {
            return datafusion::common::internal_err!(
                "segment reader asked for {location}, which its scan did not plan"
            );
        };
        let metrics = ParquetFileMetrics::new(partition_index, location, metrics);
        Ok(Box::new(SegmentReader {
            snapshot: self.snapshot.clone(),
            segment: seg.clone(),
            file: None,
            bytes_scanned: metrics.bytes_scanned,
        }))
    }
}

/// Reads one segment for DataFusion's Parquet source. Page reads are positioned reads of a
/// local file, done inline (no blocking-pool hop): they take microseconds when the page
/// cache holds them.
struct SegmentReader {
    snapshot: Arc<Snapshot>,
    segment: Arc<SegmentMeta>,
    /// Opened on the first byte read (metadata comes from the cache).
    file: Option<SegmentFile>,
    bytes_scanned: Count,
}

impl SegmentReader {
    fn read(&mut self, range: Range<u64>) -> std::result::Result<bytes::Bytes, ParquetError> {
        let external =
            |e: scrydb_engine::Error| ParquetError::External(Box::new(crate::Error::Engine(e)));
        if self.file.is_none() {
            self.file = Some(
                self.snapshot
                    .open_segment(&self.segment)
                    .map_err(external)?,
            );
        }
        let file = self.file.as_ref().expect("opened above");
        let path = self.snapshot.segment_path(&self.segment);
        let bytes = file.read_at(range.clone()).map_err(|source| {
            external(if source.kind() == std::io::ErrorKind::InvalidData {
                // A block that does not match its checksum.
                scrydb_engine::Error::Corrupted {
                    path,
                    offset: None,
                    reason: source.to_string(),
                }
            } else {
                scrydb_engine::Error::Io {
                    op: "read",
                    path,
                    source,
                }
            })
        })?;
        self.bytes_scanned.add(bytes.len());
        Ok(bytes)
    }
}

impl AsyncFileReader for SegmentReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, std::result::Result<bytes::Bytes, ParquetError>> {
        let r = self.read(range);
        async move { r }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, std::result::Result<Vec<bytes::Bytes>, ParquetError>> {
        let r = ranges.into_iter().map(|r| self.read(r)).collect();
        async move { r }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, std::result::Result<Arc<ParquetMetaData>, ParquetError>> {
        let r = self
            .snapshot
            .segment_metadata(&self.segment)
            .map(|m| m.metadata().clone())
            .map_err(|e| ParquetError::External(Box::new(crate::Error::Engine(e))));
        async move { r }.boxed()
    }
}

/// Adapts the scan's projection and filters to a segment file: a column the file does not
/// store because it follows from others (segment format 2, `spans.end_time`; see
/// [`scrydb_engine::segment::stored`]) becomes the expression that computes it from the
/// file's columns; everything else is DataFusion's default adaptation.
#[derive(Debug)]
struct DerivedColumns;

impl PhysicalExprAdapterFactory for DerivedColumns {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        Ok(Arc::new(DerivedColumnsAdapter {
            default: DefaultPhysicalExprAdapterFactory
                .create(logical_file_schema.clone(), physical_file_schema.clone())?,
            logical: logical_file_schema,
            physical: physical_file_schema,
        }))
    }
}

#[derive(Debug)]
struct DerivedColumnsAdapter {
    default: Arc<dyn PhysicalExprAdapter>,
    logical: SchemaRef,
    physical: SchemaRef,
}

impl PhysicalExprAdapter for DerivedColumnsAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
        use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column};
        let stored = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
            Ok(Arc::new(Column::new(name, self.logical.index_of(name)?)))
        };
        let expr = expr
            .transform(|e| {
                let Some(col) = e.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(e));
                };
                if col.name() != "end_time" || self.physical.index_of("end_time").is_ok() {
                    return Ok(Transformed::no(e));
                }
                // end_time = time + duration_ns, in nanoseconds.
                let end_type = self
                    .logical
                    .field_with_name("end_time")?
                    .data_type()
                    .clone();
                let start = Arc::new(CastExpr::new(
                    stored("time")?,
                    datafusion::arrow::datatypes::DataType::Int64,
                    None,
                ));
                let sum = Arc::new(BinaryExpr::new(
                    start,
                    Operator::Plus,
                    stored("duration_ns")?,
                ));
                Ok(Transformed::yes(Arc::new(CastExpr::new(
                    sum, end_type, None,
                ))))
            })
            .data()?;
        // Maps the columns (those just introduced too) to the file's positions.
        self.default.rewrite(expr)
    }
}

/// What the trace or term indexes did for a scan.
#[derive(Debug, Clone, Default)]
struct IndexInfo {
    /// Trace ids looked up (0: no lookup).
    ids: usize,
    /// Terms of a search's term-index condition (0: none).
    terms: usize,
    /// Segments skipped because their index holds none of the ids (or terms).
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

/// The root of a table scan: passes its input through unchanged, shows in `EXPLAIN` how
/// many segments the time predicates pruned, and owns the snapshot the scan reads — as does
/// every stream it returns, so retention or compaction cannot delete a file the query has
/// yet to read.
#[derive(Debug)]
pub struct ScryScanExec {
    input: Arc<dyn ExecutionPlan>,
    snapshot: Arc<Snapshot>,
    info: ScanInfo,
    properties: Arc<PlanProperties>,
}

impl ScryScanExec {
    fn new(input: Arc<dyn ExecutionPlan>, snapshot: Arc<Snapshot>, info: ScanInfo) -> Self {
        let properties = Arc::new(PlanProperties::new(
            input.equivalence_properties().clone(),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        ScryScanExec {
            input,
            snapshot,
            info,
            properties,
        }
    }

    /// The manifest version the scan reads.
    pub fn manifest_version(&self) -> u64 {
        self.snapshot.manifest_version()
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
        let used = if i.index.ids > 0 {
            Some(("trace_index: ids", i.index.ids))
        } else if i.index.terms > 0 {
            Some(("term_index: terms", i.index.terms))
        } else {
            None
        };
        if let Some((index, n)) = used {
            write!(
                f,
                ", {index}={n} segments_pruned={} rows_selected={}",
                i.index.pruned, i.index.rows
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
                snapshot: self.snapshot.clone(),
                info: self.info.clone(),
                properties: self.properties.clone(),
            }),
            ChildrenPropertiesMode::Recompute => Arc::new(ScryScanExec::new(
                input,
                self.snapshot.clone(),
                self.info.clone(),
            )),
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
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        // The stream may outlive the plan (DataFusion drops plans while streams run): it
        // keeps the snapshot, and with it every file the scan names, until it is dropped.
        let snapshot = self.snapshot.clone();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map(move |batch| {
                let _owned = &snapshot;
                batch
            }),
        )))
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
