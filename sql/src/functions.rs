//! ScryDB's SQL functions: `duration_ms`, `matches`, and the table functions `trace_spans`
//! and `service_graph`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Column, DFSchema, Result, ScalarValue, plan_err};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::functions_aggregate::expr_fn::{approx_percentile_cont, count, sum};
use datafusion::logical_expr::{
    ColumnarValue, Expr, JoinType, LogicalPlanBuilder, ScalarUDF, Volatility, case, col,
    create_udf, lit,
};
use scrydb_engine::Signal;

use crate::ids::parse_hex_id;
use crate::table::ScryTable;

/// `duration_ms(ns)`: a nanosecond count (such as `spans.duration_ns`) in milliseconds, as a
/// double.
pub fn duration_ms() -> ScalarUDF {
    create_udf(
        "duration_ms",
        vec![DataType::Int64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Array(a) => {
                    let ns = a.as_primitive::<Int64Type>();
                    let ms: Float64Array = ns.iter().map(|v| v.map(|v| v as f64 / 1e6)).collect();
                    ColumnarValue::Array(Arc::new(ms))
                }
                ColumnarValue::Scalar(ScalarValue::Int64(v)) => {
                    ColumnarValue::Scalar(ScalarValue::Float64(v.map(|v| v as f64 / 1e6)))
                }
                ColumnarValue::Scalar(other) => {
                    return plan_err!("duration_ms takes nanoseconds as BIGINT, not {other:?}");
                }
            })
        }),
    )
}

/// `matches(text, query)`: whether `text` contains the tokens of `query`, folded to lower
/// case, consecutively — one token is a term, several a phrase
/// ([`scrydb_engine::search::tokenize`] defines tokens: `matches(body, 'refused')` is true
/// for "Connection REFUSED" and false for "refusedly"; `matches(body, '10.0.0.1')` needs
/// the four numbers in a row). `text` may also be `spans.events` (a list of events): then
/// whether any event's name contains the query (false for a span without events). NULL
/// when `text` or `query` is NULL; an error when `query` has no letters or digits.
pub fn matches() -> ScalarUDF {
    ScalarUDF::from(Matches {
        signature: datafusion::logical_expr::Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Matches {
    signature: datafusion::logical_expr::Signature,
}

/// Whether `t` is a list of structs with a string `name` field (`spans.events`).
fn is_event_list(t: &DataType) -> bool {
    match t {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fields) => fields
                .iter()
                .any(|f| f.name() == "name" && f.data_type() == &DataType::Utf8),
            _ => false,
        },
        _ => false,
    }
}

/// The texts `matches` searches: one per row, or the names of each row's events.
enum Texts {
    Strings(datafusion::arrow::array::StringArray),
    Events(
        datafusion::arrow::array::ListArray,
        datafusion::arrow::array::StringArray,
    ),
}

impl Texts {
    /// Whether row `i` is not NULL.
    fn is_valid(&self, i: usize) -> bool {
        match self {
            Texts::Strings(s) => s.is_valid(i),
            Texts::Events(list, _) => list.is_valid(i),
        }
    }

    /// Whether row `i` (one of its texts) contains `p`; `None` for a NULL row.
    fn matches(&self, i: usize, p: &scrydb_engine::search::Phrase) -> Option<bool> {
        match self {
            Texts::Strings(s) => s.is_valid(i).then(|| p.matches(s.value(i))),
            Texts::Events(list, names) => {
                if list.is_null(i) {
                    return None;
                }
                let o = list.value_offsets();
                let events = list.values();
                Some(
                    (o[i] as usize..o[i + 1] as usize).any(|e| {
                        events.is_valid(e) && names.is_valid(e) && p.matches(names.value(e))
                    }),
                )
            }
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Matches {
    fn name(&self) -> &str {
        "matches"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        fn text(t: &DataType) -> bool {
            match t {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
                DataType::Dictionary(_, v) => text(v),
                _ => false,
            }
        }
        match args {
            [t, q] if text(q) && (text(t) || is_event_list(t)) => Ok(vec![
                if is_event_list(t) {
                    t.clone()
                } else {
                    DataType::Utf8
                },
                DataType::Utf8,
            ]),
            [t, q] => plan_err!(
                "matches takes a text column (or spans.events) and a string query, not {t} \
                 and {q}"
            ),
            _ => plan_err!("matches takes 2 arguments, not {}", args.len()),
        }
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<ColumnarValue> {
        let args = args.args;
        let phrase = |q: &str| {
            scrydb_engine::search::Phrase::new(q).ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!(
                    "matches: the query '{q}' has no letters or digits to search for"
                ))
            })
        };
        let n = args
            .iter()
            .find_map(|a| match a {
                ColumnarValue::Array(a) => Some(a.len()),
                ColumnarValue::Scalar(_) => None,
            })
            .unwrap_or(1);
        let text = args[0].clone().into_array(n)?;
        let texts = if is_event_list(text.data_type()) {
            let list = text.as_list::<i32>().clone();
            let names = list
                .values()
                .as_struct()
                .column_by_name("name")
                .expect("an event list has names")
                .as_string::<i32>()
                .clone();
            Texts::Events(list, names)
        } else {
            Texts::Strings(text.as_string::<i32>().clone())
        };
        let row_matches = |i: usize, p: &scrydb_engine::search::Phrase| texts.matches(i, p);
        let out: BooleanArray = match &args[1] {
            ColumnarValue::Scalar(ScalarValue::Utf8(None)) => BooleanArray::new_null(n),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(q))) => {
                let p = phrase(q)?;
                (0..n).map(|i| row_matches(i, &p)).collect()
            }
            ColumnarValue::Scalar(other) => {
                return plan_err!("matches takes a string query, not {other:?}");
            }
            ColumnarValue::Array(queries) => {
                let queries = queries.as_string::<i32>();
                (0..n)
                    .map(|i| {
                        // A NULL text or query is NULL whatever the other holds.
                        if queries.is_null(i) || !texts.is_valid(i) {
                            return Ok(None);
                        }
                        Ok(row_matches(i, &phrase(queries.value(i))?))
                    })
                    .collect::<Result<_>>()?
            }
        };
        Ok(
            if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            } else {
                ColumnarValue::Array(Arc::new(out))
            },
        )
    }
}

/// Evaluates a constant argument of a table function (a literal, `now() - interval '1
/// hour'`, a cast) to a value.
pub(crate) fn constant(session: &dyn Session, e: &Expr) -> Result<ScalarValue> {
    let schema = DFSchema::empty();
    let physical = session.create_physical_expr(e.clone(), &schema)?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match physical.evaluate(&batch)? {
        ColumnarValue::Scalar(v) => Ok(v),
        ColumnarValue::Array(a) if a.len() == 1 => ScalarValue::try_from_array(&a, 0),
        ColumnarValue::Array(_) => plan_err!("argument {e} is not a constant"),
    }
}

/// A timestamp argument in nanoseconds: a timestamp, an RFC 3339 string or nanoseconds.
fn timestamp_arg(session: &dyn Session, e: &Expr, what: &str) -> Result<i64> {
    let v = constant(session, e)?;
    let v = match v {
        ScalarValue::Utf8(Some(_))
        | ScalarValue::LargeUtf8(Some(_))
        | ScalarValue::Utf8View(Some(_)) => v.cast_to(&DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Nanosecond,
            Some("UTC".into()),
        ))?,
        other => other,
    };
    let (value, scale) = match v {
        ScalarValue::TimestampNanosecond(Some(v), _) | ScalarValue::Int64(Some(v)) => (v, 1),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (v, 1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => (v, 1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => (v, 1_000_000_000),
        other => return plan_err!("{what} must be a timestamp, not {other:?}"),
    };
    match value.checked_mul(scale) {
        Some(ns) => Ok(ns),
        None => plan_err!("{what} is out of range: nanosecond timestamps reach years 1677 to 2262"),
    }
}

fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// `trace_spans('<hex trace id>')`: the spans of one trace (all columns of `spans`; like
/// any table, in no particular order: add `ORDER BY time`).
#[derive(Debug)]
pub struct TraceSpans {
    /// The spans table.
    pub spans: Arc<ScryTable>,
}

impl TableFunctionImpl for TraceSpans {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let id = trace_id_arg(&args, "trace_spans")?.to_vec();
        debug_assert_eq!(self.spans.signal(), Signal::Spans);
        let plan = LogicalPlanBuilder::scan("spans", provider_as_source(self.spans.clone()), None)?
            .filter(col("trace_id").eq(lit(ScalarValue::FixedSizeBinary(16, Some(id)))))?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// The one argument of a table function `name` taking a trace id (32 hex digits, or 16
/// bytes).
fn trace_id_arg(args: &TableFunctionArgs, name: &str) -> Result<[u8; 16]> {
    let [arg] = args.exprs() else {
        return plan_err!("{name} takes one argument, a trace id as hex");
    };
    let bytes = match constant(args.session(), arg)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => match parse_hex_id(&s, 16) {
            Some(id) => id,
            None => return plan_err!("{name}: '{s}' is not a 32-digit hex trace id"),
        },
        ScalarValue::FixedSizeBinary(16, Some(id)) | ScalarValue::Binary(Some(id))
            if id.len() == 16 =>
        {
            id
        }
        other => return plan_err!("{name} takes a trace id as hex, not {other:?}"),
    };
    Ok(bytes.try_into().expect("16 bytes"))
}

/// `critical_path('<trace hex>')` and `trace_stats('<trace hex>')`: the critical path of
/// a trace and its statistics per service ([`scrydb_engine::critical_path`]), computed
/// when the statement runs from the snapshot it reads (no rows for an unknown trace).
#[derive(Debug)]
pub struct TraceAnalysisFunction {
    /// Snapshots of the database.
    pub reader: scrydb_engine::Reader,
    /// Which table: the path, or the statistics.
    pub stats: bool,
}

impl TableFunctionImpl for TraceAnalysisFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = if self.stats {
            "trace_stats"
        } else {
            "critical_path"
        };
        let id = trace_id_arg(&args, name)?;
        let stats = self.stats;
        Ok(Arc::new(ComputedTable {
            reader: self.reader.clone(),
            schema: if stats {
                scrydb_engine::critical_path::stats_schema()
            } else {
                scrydb_engine::critical_path::path_schema()
            },
            compute: Box::new(move |snapshot| {
                // The spans only: the trace's logs and metric points are not needed.
                let trace = scrydb_engine::trace::Trace {
                    spans: snapshot.trace_rows(scrydb_engine::Signal::Spans, &[id], true)?,
                    ..Default::default()
                };
                let tree = trace.tree()?;
                let path = tree.critical_path();
                Ok(if stats {
                    scrydb_engine::critical_path::stats_batch(&tree, &path)
                } else {
                    scrydb_engine::critical_path::path_batch(&tree, &path)
                })
            }),
        }))
    }
}

/// `compare(selection [, baseline [, limit]])`: the values of spans' services, operations,
/// kinds, statuses and attributes over-represented in the spans matching `selection` (a
/// SQL predicate over `spans`, as a string) against those matching `baseline` (default:
/// every other span), best first, at most `limit` (default 20) — rows of
/// [`crate::compare::compare_schema`]. Both sets are read from the statement's snapshot
/// when it runs.
#[derive(Debug)]
pub struct CompareFunction {
    /// The session's limit on expression nesting, applied to the predicates.
    pub max_expression_depth: usize,
}

impl TableFunctionImpl for CompareFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const USAGE: &str = "compare takes (selection [, baseline [, limit]]): SQL predicates \
                             over spans as strings, and a row count";
        let exprs = args.exprs();
        if exprs.is_empty() || exprs.len() > 3 {
            return plan_err!("{USAGE}");
        }
        let session = args.session();
        let text = |e: &Expr, what: &str| -> Result<Option<String>> {
            match constant(session, e)? {
                ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                    Ok(s.filter(|s| !s.trim().is_empty()))
                }
                ScalarValue::Null => Ok(None),
                other => plan_err!("compare's {what} must be a string, not {other:?}"),
            }
        };
        let Some(selection) = text(&exprs[0], "selection")? else {
            return plan_err!("compare's selection must be a SQL predicate over spans");
        };
        let checked = |what: &str, p: &str| {
            crate::compare::predicate(what, p, self.max_expression_depth)
                .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))
        };
        let selection = checked("selection", &selection)?;
        let baseline = match exprs
            .get(1)
            .map(|e| text(e, "baseline"))
            .transpose()?
            .flatten()
        {
            Some(b) => checked("baseline", &b)?,
            None => crate::compare::complement(&selection),
        };
        let limit = match exprs.get(2).map(|e| constant(session, e)).transpose()? {
            None => 20,
            Some(v) => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 1 => n as usize,
                other => {
                    return plan_err!("compare's limit must be at least 1, not {other:?}");
                }
            },
        };
        Ok(Arc::new(CompareTable {
            selection,
            baseline,
            limit,
        }))
    }
}

/// The rows of one `compare` call, counted when scanned (so a plain `EXPLAIN` counts
/// too).
#[derive(Debug)]
struct CompareTable {
    /// The predicates, checked ([`crate::compare::predicate`]).
    selection: String,
    baseline: String,
    limit: usize,
}

#[async_trait::async_trait]
impl TableProvider for CompareTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        crate::compare::compare_schema()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use futures::StreamExt;
        let Some(state) = state
            .as_any()
            .downcast_ref::<datafusion::execution::SessionState>()
        else {
            return plan_err!("compare runs only in a ScryDB session");
        };
        // The two sets are statements of this one: same tables, same snapshot, same
        // memory pool. The baseline is counted for the selection's values only. Each
        // partition of a set's scan is counted by its own task (counting, not reading, is
        // most of the time), the parts merged in partition order.
        let mut selection: Option<Arc<crate::compare::Counts>> = None;
        let mut baseline = crate::compare::Counts::default();
        for (what, predicate) in [("selection", &self.selection), ("baseline", &self.baseline)] {
            let context = |e: datafusion::error::DataFusionError| {
                datafusion::error::DataFusionError::Plan(format!(
                    "compare's {what} {predicate}: {}",
                    e.find_root()
                ))
            };
            let sql = crate::compare::counting_sql(predicate);
            let plan = state.create_logical_plan(&sql).await.map_err(context)?;
            let plan = state.create_physical_plan(&plan).await.map_err(context)?;
            let streams =
                datafusion::physical_plan::execute_stream_partitioned(plan, state.task_ctx())?;
            // A JoinSet: the tasks stop when this statement is dropped (cancelled).
            let mut tasks = tokio::task::JoinSet::new();
            for (i, mut stream) in streams.into_iter().enumerate() {
                let only = selection.clone();
                tasks.spawn(async move {
                    let mut counts = crate::compare::Counts::default();
                    while let Some(batch) = stream.next().await {
                        counts.add_batch(&batch?, only.as_deref())?;
                    }
                    Ok::<_, datafusion::error::DataFusionError>((i, counts))
                });
            }
            let mut parts = Vec::new();
            while let Some(part) = tasks.join_next().await {
                let part = part.map_err(|e| {
                    datafusion::error::DataFusionError::Execution(format!(
                        "compare's {what}: a counting task failed: {e}"
                    ))
                })??;
                parts.push(part);
            }
            parts.sort_unstable_by_key(|(i, _)| *i);
            let mut set = crate::compare::Counts::default();
            for (_, part) in parts {
                set.merge(part);
            }
            if what == "selection" {
                selection = Some(Arc::new(set));
            } else {
                baseline = set;
            }
        }
        let selection = selection.expect("the selection is counted first");
        let rows = crate::compare::differences(&selection, &baseline, self.limit);
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![crate::compare::compare_batch(&rows)]],
                self.schema(),
                projection.cloned(),
            )?,
        )
    }
}

/// A table computed from the statement's snapshot when it is scanned: one batch of
/// `schema` (the rows of `log_patterns`, `critical_path`, `trace_stats`).
struct ComputedTable {
    reader: scrydb_engine::Reader,
    schema: datafusion::arrow::datatypes::SchemaRef,
    #[allow(clippy::type_complexity)]
    compute:
        Box<dyn Fn(&scrydb_engine::Snapshot) -> scrydb_engine::Result<RecordBatch> + Send + Sync>,
}

impl std::fmt::Debug for ComputedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputedTable")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TableProvider for ComputedTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let snapshot = crate::table::statement_snapshot(state, &self.reader);
        let batch = (self.compute)(&snapshot).map_err(crate::Error::from)?;
        Ok(
            datafusion::datasource::memory::MemorySourceConfig::try_new_exec(
                &[vec![batch]],
                self.schema(),
                projection.cloned(),
            )?,
        )
    }
}

/// `search(query [, table [, limit [, start [, end]]]])`: the rows of `table` (`'logs'`, the
/// default, or `'spans'`) matching `query` in the search syntax ([`crate::search`]), newest
/// first, at most `limit` (default 50), within `[start, end)` when given (timestamps or
/// strings). The same rows as `Session::search` and `scry search`, as a table usable in
/// joins; a query that does not parse is a planning error naming its column.
#[derive(Debug)]
pub struct SearchFunction {
    /// The spans table.
    pub spans: Arc<ScryTable>,
    /// The logs table.
    pub logs: Arc<ScryTable>,
}

impl TableFunctionImpl for SearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        use crate::search::{SearchQuery, Target};
        const USAGE: &str = "search takes (query [, 'logs' | 'spans' [, limit [, start [, end]]]])";
        let exprs = args.exprs();
        if exprs.is_empty() || exprs.len() > 5 {
            return plan_err!("{USAGE}");
        }
        let session = args.session();
        let text = |e: &Expr, what: &str| -> Result<String> {
            match constant(session, e)? {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => Ok(s),
                other => plan_err!("search's {what} must be a string, not {other:?}"),
            }
        };
        let query = text(&exprs[0], "query")?;
        let target = match exprs.get(1) {
            None => Target::Logs,
            Some(e) => match text(e, "table")?.as_str() {
                "logs" => Target::Logs,
                "spans" => Target::Spans,
                other => return plan_err!("search's table is 'logs' or 'spans', not '{other}'"),
            },
        };
        let limit = match exprs.get(2).map(|e| constant(session, e)).transpose()? {
            None => 50,
            Some(v) => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n >= 1 => n as usize,
                other => {
                    return plan_err!(
                        "search's limit must be a count of at least 1, not {other:?}"
                    );
                }
            },
        };
        let start = exprs
            .get(3)
            .map(|e| timestamp_arg(session, e, "search's start"))
            .transpose()?;
        let end = exprs
            .get(4)
            .map(|e| timestamp_arg(session, e, "search's end"))
            .transpose()?;
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            return plan_err!("search's start must be before its end");
        }
        let predicate = SearchQuery::parse(&query)
            .and_then(|q| q.to_sql(target))
            .or_else(|e| plan_err!("{e}\n{}", e.render(&query)))?;
        let table = match target {
            Target::Logs => self.logs.clone(),
            Target::Spans => self.spans.clone(),
        };
        let Some(state) = session
            .as_any()
            .downcast_ref::<datafusion::execution::session_state::SessionState>()
        else {
            return plan_err!("search needs a DataFusion session state");
        };
        let schema = DFSchema::try_from_qualified_schema(target.table(), &table.schema())?;
        let mut filter = state.create_logical_expr(&predicate, &schema)?;
        if let Some(s) = start {
            filter = col("time").gt_eq(ts_lit(s)).and(filter);
        }
        if let Some(e) = end {
            filter = col("time").lt(ts_lit(e)).and(filter);
        }
        let plan = LogicalPlanBuilder::scan(target.table(), provider_as_source(table), None)?
            .filter(filter)?
            .sort(vec![col("time").sort(false, false)])?
            .limit(0, Some(limit))?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// `service_graph(start, end)`: calls between services in `[start, end)`, derived from
/// spans whose parent span is in another service. One row per (caller, callee): `calls`,
/// `errors` (callee span status ERROR), and `p50_ms` / `p99_ms` of the callee spans'
/// durations (approximate percentiles). Rows come in no particular order.
#[derive(Debug)]
pub struct ServiceGraph {
    /// The spans table.
    pub spans: Arc<ScryTable>,
}

impl TableFunctionImpl for ServiceGraph {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let [start, end] = args.exprs() else {
            return plan_err!("service_graph takes two arguments: start and end time");
        };
        let start = timestamp_arg(args.session(), start, "service_graph's start")?;
        let end = timestamp_arg(args.session(), end, "service_graph's end")?;
        let source = provider_as_source(self.spans.clone());
        let c = |name: &str| Expr::Column(Column::new(Some("c"), name));
        let p = |name: &str| Expr::Column(Column::new(Some("p"), name));
        let children = LogicalPlanBuilder::scan("c", source.clone(), None)?
            .filter(
                col("time")
                    .gt_eq(ts_lit(start))
                    .and(col("time").lt(ts_lit(end))),
            )?
            .build()?;
        let parents = LogicalPlanBuilder::scan("p", source, None)?.build()?;
        let error = case(c("status_code"))
            .when(lit("ERROR"), lit(1i64))
            .otherwise(lit(0i64))?;
        let duration = c("duration_ns");
        let plan = LogicalPlanBuilder::from(children)
            .join(
                parents,
                JoinType::Inner,
                (
                    vec![
                        Column::new(Some("c"), "trace_id"),
                        Column::new(Some("c"), "parent_span_id"),
                    ],
                    vec![
                        Column::new(Some("p"), "trace_id"),
                        Column::new(Some("p"), "span_id"),
                    ],
                ),
                Some(p("service_name").not_eq(c("service_name"))),
            )?
            .aggregate(
                vec![
                    datafusion::logical_expr::cast(p("service_name"), DataType::Utf8)
                        .alias("caller"),
                    datafusion::logical_expr::cast(c("service_name"), DataType::Utf8)
                        .alias("callee"),
                ],
                vec![
                    count(lit(1)).alias("calls"),
                    sum(error).alias("errors"),
                    approx_percentile_cont(duration.clone().sort(true, false), lit(0.5), None)
                        .alias("p50_ns"),
                    approx_percentile_cont(duration.sort(true, false), lit(0.99), None)
                        .alias("p99_ns"),
                ],
            )?
            .project(vec![
                col("caller"),
                col("callee"),
                col("calls"),
                col("errors"),
                (datafusion::logical_expr::cast(col("p50_ns"), DataType::Float64) / lit(1e6))
                    .alias("p50_ms"),
                (datafusion::logical_expr::cast(col("p99_ns"), DataType::Float64) / lit(1e6))
                    .alias("p99_ms"),
            ])?
            .build()?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// `scry_stats()`: what the store holds on disk, per signal and time partition — the
/// library's [`scrydb_engine::Snapshot::partition_stats`] as a table (columns `signal`,
/// `partition_start`, `partition_end`, `segments`, `rows`, `bytes`, `uncompressed_bytes`,
/// `compression_ratio`, `index_bytes`, `bloom_bytes`, `rollup_bytes` (span rollups, the
/// `span_metrics` table), `term_index_bytes` (search indexes), `pattern_bytes` (log pattern files), `min_time`, `max_time`, and for
/// partitions retention thinned — null elsewhere — `kept_traces`, `kept_errors`,
/// `kept_slow`, `kept_warn_logs`, `kept_exemplars`: the traces kept and why). Read when the
/// statement is planned; unflushed rows are not included.
#[derive(Debug)]
pub struct ScryStats {
    /// Snapshots of the database.
    pub reader: scrydb_engine::Reader,
}

impl TableFunctionImpl for ScryStats {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        use datafusion::arrow::array::{
            Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
        };
        use datafusion::arrow::datatypes::{Field, TimeUnit};
        if !args.exprs().is_empty() {
            return plan_err!("scry_stats takes no arguments");
        }
        let parts = self.reader.snapshot().partition_stats();
        let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("signal", DataType::Utf8, false),
            Field::new("partition_start", ts(), false),
            Field::new("partition_end", ts(), false),
            Field::new("segments", DataType::Int64, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("uncompressed_bytes", DataType::Int64, false),
            Field::new("compression_ratio", DataType::Float64, false),
            Field::new("index_bytes", DataType::Int64, false),
            Field::new("bloom_bytes", DataType::Int64, false),
            Field::new("rollup_bytes", DataType::Int64, false),
            Field::new("term_index_bytes", DataType::Int64, false),
            Field::new("pattern_bytes", DataType::Int64, false),
            Field::new("min_time", ts(), false),
            Field::new("max_time", ts(), false),
            Field::new("kept_traces", DataType::Int64, true),
            Field::new("kept_errors", DataType::Int64, true),
            Field::new("kept_slow", DataType::Int64, true),
            Field::new("kept_warn_logs", DataType::Int64, true),
            Field::new("kept_exemplars", DataType::Int64, true),
        ]));
        let mut signal = StringBuilder::new();
        let time = || TimestampNanosecondBuilder::new().with_timezone("UTC");
        let (mut start, mut end, mut min, mut max) = (time(), time(), time(), time());
        let mut ints: Vec<Int64Builder> = (0..9).map(|_| Int64Builder::new()).collect();
        let mut ratio = Float64Builder::new();
        let mut kept: Vec<Int64Builder> = (0..5).map(|_| Int64Builder::new()).collect();
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for p in &parts {
            signal.append_value(p.signal.name());
            start.append_value(p.partition_start);
            end.append_value(p.partition_end);
            for (b, v) in ints.iter_mut().zip([
                p.segments as u64,
                p.rows,
                p.bytes,
                p.uncompressed_bytes,
                p.index_bytes,
                p.bloom_bytes,
                p.rollup_bytes,
                p.term_index_bytes,
                p.pattern_bytes,
            ]) {
                b.append_value(i(v));
            }
            ratio.append_value(p.uncompressed_bytes as f64 / p.bytes.max(1) as f64);
            min.append_value(p.min_time);
            max.append_value(p.max_time);
            let why = p
                .kept
                .map(|k| [k.traces, k.errors, k.slow, k.warn_logs, k.exemplars]);
            for (n, b) in kept.iter_mut().enumerate() {
                b.append_option(why.map(|w| i(w[n])));
            }
        }
        let mut ints = ints.into_iter().map(|mut b| Arc::new(b.finish()) as _);
        let mut next = || ints.next().expect("nine integer columns");
        let columns: Vec<datafusion::arrow::array::ArrayRef> = [
            Arc::new(signal.finish()) as datafusion::arrow::array::ArrayRef,
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            next(),
            next(),
            next(),
            next(),
            Arc::new(ratio.finish()),
            next(),
            next(),
            next(),
            next(),
            next(),
            Arc::new(min.finish()),
            Arc::new(max.finish()),
        ]
        .into_iter()
        .chain(kept.into_iter().map(|mut b| Arc::new(b.finish()) as _))
        .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// `log_patterns(start, end [, baseline_start, baseline_end])`: the log templates of
/// `[start, end)` with their lines there and in the baseline window (default: the window's
/// length just before it) — `service_name`, `template`, `count`, `first_seen`,
/// `last_seen`, `example`, `baseline_count`, `change` (rate over baseline rate, null when
/// the baseline has none) and `status` (`new`, `surging`, `steady`, `declining`, `gone`,
/// `no baseline`), new and surging templates first
/// ([`scrydb_engine::Snapshot::log_patterns`], `docs/search.md`). Computed when the
/// statement runs, from the snapshot it reads.
#[derive(Debug)]
pub struct LogPatternsFunction {
    /// Snapshots of the database.
    pub reader: scrydb_engine::Reader,
}

impl TableFunctionImpl for LogPatternsFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const USAGE: &str = "log_patterns takes (start, end [, baseline_start, baseline_end])";
        let exprs = args.exprs();
        if !matches!(exprs.len(), 2 | 4) {
            return plan_err!("{USAGE}");
        }
        let session = args.session();
        let names = ["start", "end", "baseline_start", "baseline_end"];
        let mut t = Vec::new();
        for (e, name) in exprs.iter().zip(names) {
            t.push(timestamp_arg(session, e, &format!("log_patterns' {name}"))?);
        }
        if t[0] >= t[1] {
            return plan_err!("log_patterns' start must be before its end");
        }
        let baseline = match t[..] {
            [_, _, s, e] if s >= e => {
                return plan_err!("log_patterns' baseline_start must be before its baseline_end");
            }
            [_, _, s, e] => Some(scrydb_engine::TimeRange::new(s, e)),
            _ => None,
        };
        let window = scrydb_engine::TimeRange::new(t[0], t[1]);
        Ok(Arc::new(ComputedTable {
            reader: self.reader.clone(),
            schema: scrydb_engine::search::log_patterns::patterns_schema(),
            compute: Box::new(move |snapshot| {
                let patterns = snapshot.log_patterns(window, baseline)?;
                Ok(scrydb_engine::search::log_patterns::patterns_batch(
                    &patterns,
                ))
            }),
        }))
    }
}
