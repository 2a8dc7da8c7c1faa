//! The tools: their catalogue (names, descriptions, argument schemas) and what each does.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ToolError, Tools};
use crate::alert::rfc3339;
use crate::arrow::array::{Array, AsArray, RecordBatch};
use crate::arrow::datatypes::DataType;
use crate::diagnose::{sql_string_literal, sql_timestamp_literal};
use crate::sql::ids::hex;
use crate::sql::search::{SearchQuery, Target};
use crate::ui::cells;
use crate::ui::params::{Params, Window};
use crate::{Signal, SpanTree};

/// One tool of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec {
    /// Its name.
    pub name: &'static str,
    /// What it does and returns, for the model.
    pub description: &'static str,
    /// Its arguments as a JSON Schema object (text).
    pub input_schema: &'static str,
}

impl ToolSpec {
    /// The argument schema as JSON.
    pub fn schema(&self) -> Map<String, Value> {
        match serde_json::from_str(self.input_schema) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

macro_rules! window_props {
    () => {
        r#""since": {"type": "string", "description": "How far back from `end`: 15m, 1h (default), 6h, 7d, or all"},
    "end": {"type": "string", "description": "End of the window, RFC 3339 or ns since the epoch (default: just after the newest record)"}"#
    };
}

macro_rules! page_props {
    () => {
        r#""cursor": {"type": "string", "description": "From a previous result's `cursor`: continue where it was cut"},
    "max_bytes": {"type": "integer", "minimum": 1024, "description": "Cap on this result's size in bytes (at most the server's, 24000 by default)"}"#
    };
}

macro_rules! schema {
    ($($body:tt)*) => { concat!("{\"type\": \"object\", \"additionalProperties\": false, ", $($body)*, "}") };
}

/// Every tool, in the order `tools/list` gives them.
pub static TOOLS: [ToolSpec; 9] = [
    ToolSpec {
        name: "get_schema",
        description: "The tables (spans, logs, metrics, span_metrics, alerts) with their columns and types, ScryDB's SQL functions, and how ids, attributes and times are written in SQL. Start here before run_sql.",
        input_schema: schema!(
            r#""properties": {"table": {"type": "string", "description": "Only this table"}}"#
        ),
    },
    ToolSpec {
        name: "search_traces",
        description: "Traces with spans matching a search, newest first: per trace its id, root service and operation, start, duration, span and error counts, services, matched spans. Metadata only; read one with get_trace. Search syntax: words and \"phrases\" (name, status message, events), service:NAME, name:OP, status:error, duration>500ms, @attr.key:value, AND/OR/NOT.",
        input_schema: schema!(
            r#""properties": {
    "query": {"type": "string", "description": "Search text (see the description); empty: every span"},
    "service": {"type": "string"}, "operation": {"type": "string", "description": "Span name"},
    "errors_only": {"type": "boolean"},
    "min_duration": {"type": "string", "description": "e.g. 250ms, 2s"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Traces per page (default 20)"},
    "#,
            window_props!(),
            ",",
            page_props!(),
            "}"
        ),
    },
    ToolSpec {
        name: "get_trace",
        description: "One trace's topology without attributes: every span as [index, parent index, span_id, service, name, start offset ms, duration ms, status] in tree (depth-first) order, with per-service counts. Pass span_ids (up to 20) to get those spans' details: attributes, events, resource, logs. Huge traces are paged with a cursor.",
        input_schema: schema!(
            r#""properties": {
    "trace_id": {"type": "string", "description": "32 hex digits"},
    "span_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 20, "description": "Spans (16 hex digits) whose details to include"},
    "#,
            page_props!(),
            "}, \"required\": [\"trace_id\"]"
        ),
    },
    ToolSpec {
        name: "get_critical_path",
        description: "What a trace's duration was spent waiting on: total, time on the critical path per service, and the spans on the path with the most time on it (span_id, service, name, ms, share), largest first.",
        input_schema: schema!(
            r#""properties": {
    "trace_id": {"type": "string", "description": "32 hex digits"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "Spans per page (default 20)"},
    "#,
            page_props!(),
            "}, \"required\": [\"trace_id\"]"
        ),
    },
    ToolSpec {
        name: "search_logs",
        description: "Log records matching a search, newest first: time, service, severity, body (clipped to 300 characters), trace and span ids. Search syntax as search_traces (words, \"phrases\", service:NAME, level>=warn, @attr.key:value).",
        input_schema: schema!(
            r#""properties": {
    "query": {"type": "string"}, "service": {"type": "string"},
    "min_severity": {"type": "string", "description": "TRACE, DEBUG, INFO, WARN, ERROR or FATAL"},
    "trace_id": {"type": "string"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "Records per page (default 50)"},
    "#,
            window_props!(),
            ",",
            page_props!(),
            "}"
        ),
    },
    ToolSpec {
        name: "log_patterns",
        description: "Log templates of a window against the window before it: service, template, count, baseline count, change, status (new, surging, steady, declining, gone), an example; new and surging first.",
        input_schema: schema!(
            r#""properties": {
    "service": {"type": "string"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Templates per page (default 20)"},
    "#,
            window_props!(),
            ",",
            page_props!(),
            "}"
        ),
    },
    ToolSpec {
        name: "run_sql",
        description: "Runs one read-only SQL query (DataFusion dialect; see get_schema) and returns its columns and rows; anything but a query is refused before it runs. Pages with a cursor (stable when the query has ORDER BY). Cells are clipped to 500 characters.",
        input_schema: schema!(
            r#""properties": {
    "sql": {"type": "string"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "Rows per page (default 100)"},
    "#,
            page_props!(),
            "}, \"required\": [\"sql\"]"
        ),
    },
    ToolSpec {
        name: "list_alerts",
        description: "Alerts from the alerting rules of scry serve: the current ones (pending, firing, nodata, error) and the state changes of a recent window.",
        input_schema: schema!(
            r#""properties": {
    "since": {"type": "string", "description": "Changes of this long before now (default 24h)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "Changes per page (default 50)"},
    "#,
            page_props!(),
            "}"
        ),
    },
    ToolSpec {
        name: "diagnose",
        description: "Looks for an incident in a window and its cause: when error rate or latency rose, which services were hit, the root-cause service and operation with evidence, an example trace, where its time went, the error logs and new log patterns. Returns a summary and the findings.",
        input_schema: schema!(
            r#""properties": {
    "#,
            window_props!(),
            ",",
            page_props!(),
            "}"
        ),
    },
];

fn bad(msg: impl Into<String>) -> ToolError {
    ToolError::BadArguments(msg.into())
}

fn failed(e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(e.to_string())
}

/// `s` in at most `n` bytes (cut at a character boundary, with an ellipsis when cut).
fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// FNV-1a of `s`, for cursors.
fn hash(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The largest offset a cursor may carry.
const MAX_OFFSET: usize = 100_000_000;

/// The arguments every paged tool takes, and the page it asked for.
struct Paging {
    offset: usize,
    cap: usize,
    /// What a cursor of these arguments is tied to.
    seed: u32,
    /// The window end the first page resolved (a cursor keeps it, so that the pages of a
    /// live store read the same window).
    anchor: Option<i64>,
    /// The window end this page used, for its cursor.
    used_anchor: std::sync::Mutex<Option<i64>>,
}

impl Paging {
    fn of(
        tool: &str,
        args: &mut Map<String, Value>,
        server_cap: usize,
    ) -> Result<Paging, ToolError> {
        let cursor = match args.remove("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(c),
            Some(other) => return Err(bad(format!("cursor must be a string, not {other}"))),
        };
        let cap = match args.remove("max_bytes") {
            None | Some(Value::Null) => server_cap,
            Some(v) => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| bad(format!("max_bytes must be a whole number, not {v}")))?;
                if n < 1024 {
                    return Err(bad(format!("max_bytes {n} is below 1024")));
                }
                usize::try_from(n).unwrap_or(usize::MAX).min(server_cap)
            }
        };
        let seed = hash(&format!("{tool}{}", Value::Object(args.clone())));
        let (offset, anchor) = match cursor {
            None => (0, None),
            Some(c) => {
                let foreign = || bad(format!("cursor {c:?} is not one this server gave"));
                let mut parts = c.split('.');
                let (Some(o), Some(a), Some(h), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(foreign());
                };
                let o: usize = o.parse().map_err(|_| foreign())?;
                let a: Option<i64> = match a {
                    "" => None,
                    a => Some(a.parse().map_err(|_| foreign())?),
                };
                if u32::from_str_radix(h, 16).ok() != Some(seed) {
                    return Err(bad(format!(
                        "cursor {c:?} belongs to a call with other arguments: repeat that \
                         call's arguments with it"
                    )));
                }
                if o > MAX_OFFSET {
                    return Err(foreign());
                }
                (o, a)
            }
        };
        Ok(Paging {
            offset,
            cap,
            seed,
            anchor,
            used_anchor: std::sync::Mutex::new(None),
        })
    }

    fn cursor(&self, offset: usize) -> String {
        let anchor = self
            .used_anchor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or_else(String::new, |a| a.to_string());
        format!("{offset}.{anchor}.{:08x}", self.seed)
    }

    /// `head` with `items` under `key`, as many as fit the byte cap; `more` says the query
    /// had rows beyond `items`. Adds `truncated` and, when there is more, `cursor`. The
    /// head's own lists are shortened first if the head alone would not leave room; an item
    /// larger than the cap by itself is replaced by a note (and the cursor moves past it).
    fn fit(&self, mut head: Map<String, Value>, key: &str, items: Vec<Value>, more: bool) -> Value {
        head.insert("truncated".into(), Value::Bool(false));
        head.insert(key.into(), Value::Array(Vec::new()));
        // Room for the cursor, the flag flipping to true, and a note.
        const SLACK: usize = 160;
        let budget = self.cap.saturating_sub(SLACK);
        let mut head_cut = false;
        while Value::Object(head.clone()).to_string().len() > budget / 2 {
            // Halve the head's longest list (never the page's own).
            let longest = head
                .iter()
                .filter(|(k, v)| k.as_str() != key && v.as_array().is_some_and(|a| !a.is_empty()))
                .max_by_key(|(_, v)| v.to_string().len())
                .map(|(k, _)| k.clone());
            let Some(k) = longest else { break };
            if let Some(Value::Array(a)) = head.get_mut(&k) {
                a.truncate(a.len() / 2);
            }
            head_cut = true;
        }
        if head_cut {
            head.insert(
                "head_truncated".into(),
                Value::String("some lists above were shortened to fit max_bytes".into()),
            );
        }
        let mut size = Value::Object(head.clone()).to_string().len();
        let total = items.len();
        let mut kept = Vec::new();
        for item in items {
            let n = item.to_string().len() + 1;
            if size + n > budget {
                if kept.is_empty() {
                    kept.push(json!({"omitted": format!(
                        "this item alone takes {n} bytes, more than max_bytes allows; raise max_bytes to read it"
                    )}));
                }
                break;
            }
            size += n;
            kept.push(item);
        }
        let cut = kept.len() < total;
        let next = self.offset + kept.len();
        head.insert(key.into(), Value::Array(kept));
        if cut || more {
            head.insert("truncated".into(), Value::Bool(true));
            head.insert("cursor".into(), Value::String(self.cursor(next)));
        }
        Value::Object(head)
    }
}

fn take<T: for<'de> Deserialize<'de>>(
    tool: &str,
    args: Map<String, Value>,
) -> Result<T, ToolError> {
    serde_json::from_value(Value::Object(args))
        .map_err(|e| bad(format!("arguments of {tool}: {e}")))
}

fn limit(v: Option<u64>, default: usize, max: usize, what: &str) -> Result<usize, ToolError> {
    match v {
        None => Ok(default),
        Some(0) => Err(bad(format!("limit must be at least 1 {what}"))),
        Some(n) if n as usize > max => Err(bad(format!("limit {n} is above {max} {what}"))),
        Some(n) => Ok(n as usize),
    }
}

/// The window of `since` / `end` over `signal`'s newest record (or the end a cursor kept).
fn window(
    tools: &Tools,
    signal: Signal,
    since: Option<&str>,
    end: Option<&str>,
    paging: &Paging,
) -> Result<Window, ToolError> {
    let newest = tools.db.snapshot().newest_time(signal).map_err(failed)?;
    let mut q = format!("range={}", crate::ui::encode(since.unwrap_or("1h")));
    let kept = paging.anchor.map(|a| a.to_string());
    if let Some(e) = end.or(kept.as_deref()) {
        q.push_str(&format!("&end={}", crate::ui::encode(e)));
    }
    let w = Window::of(&Params::parse(&q), newest).map_err(|e| bad(format!("window: {e}")))?;
    *paging.used_anchor.lock().unwrap_or_else(|e| e.into_inner()) = Some(w.anchor);
    Ok(w)
}

fn search_predicate(text: Option<&str>, target: Target) -> Result<String, ToolError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok("true".into()),
        Some(t) => SearchQuery::parse(t)
            .and_then(|q| q.to_sql(target))
            .map_err(|e| bad(format!("query: {}", e.render(t)))),
    }
}

fn trace_id(s: &str) -> Result<[u8; 16], ToolError> {
    crate::parse_trace_id(s.trim()).map_err(|e| bad(format!("trace_id: {e}")))
}

async fn query(tools: &Tools, sql: &str) -> Result<Vec<RecordBatch>, ToolError> {
    let session = tools.db.session().map_err(failed)?;
    let df = session.read_only_dataframe(sql).await.map_err(failed)?;
    df.collect().await.map_err(failed)
}

fn rows(batches: &[RecordBatch]) -> impl Iterator<Item = (&RecordBatch, usize)> {
    batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| (b, r)))
}

/// Runs one tool (the name is known).
pub(super) async fn run(
    tools: &Tools,
    name: &str,
    mut args: Map<String, Value>,
) -> Result<Value, ToolError> {
    let paging = Paging::of(name, &mut args, tools.opts.max_bytes)?;
    match name {
        "get_schema" => get_schema(tools, args, &paging).await,
        "search_traces" => search_traces(tools, args, &paging).await,
        "get_trace" => get_trace(tools, args, &paging),
        "get_critical_path" => get_critical_path(tools, args, &paging),
        "search_logs" => search_logs(tools, args, &paging).await,
        "log_patterns" => log_patterns(tools, args, &paging).await,
        "run_sql" => run_sql(tools, args, &paging).await,
        "list_alerts" => list_alerts(tools, args, &paging).await,
        "diagnose" => diagnose(tools, args, &paging).await,
        other => Err(ToolError::Unknown(other.to_string())),
    }
}

const FUNCTIONS: [(&str, &str); 14] = [
    (
        "trace_spans('<trace id>')",
        "table: every span of one trace (index lookup)",
    ),
    (
        "search('<query>', 'spans'|'logs' [, start, end])",
        "table: rows matching the search syntax",
    ),
    (
        "log_patterns(start, end [, baseline_start, baseline_end])",
        "table: log templates with counts and status",
    ),
    (
        "service_graph(start, end)",
        "table: caller → callee edges with calls, errors, latency",
    ),
    (
        "critical_path('<trace id>')",
        "table: the critical path of a trace",
    ),
    (
        "trace_stats('<trace id>')",
        "table: per-span statistics of a trace",
    ),
    (
        "compare(<condition>, <baseline condition> ...)",
        "table: attributes that set spans apart",
    ),
    (
        "descendants / ancestors / children / parents(cond, cond)",
        "table: structural pairs of spans",
    ),
    ("duration_ms(duration_ns)", "nanoseconds to milliseconds"),
    (
        "matches(text, 'words')",
        "true when the text contains the words in a row",
    ),
    (
        "exp_histogram_quantile(scale, zero_count, positive_offset, positive_bucket_counts, q)",
        "aggregate: quantile of span_metrics or metrics histograms",
    ),
    (
        "attributes['key']",
        "an attribute (also resource_attributes, scope_attributes)",
    ),
    (
        "trace_id = '<32 hex>'",
        "ids compare with hex strings; they display as hex",
    ),
    (
        "to_timestamp_nanos(ns), date_bin(INTERVAL '1 minute', time)",
        "time: a UTC timestamp in ns",
    ),
];

async fn get_schema(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        table: Option<String>,
    }
    let a: A = take("get_schema", args)?;
    let filter = match &a.table {
        Some(t) => format!("AND table_name = {}", sql_string_literal(t)),
        None => "AND table_name IN ('spans', 'logs', 'metrics', 'span_metrics', 'alerts')".into(),
    };
    let b = query(
        tools,
        &format!(
            "SELECT table_name, column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'public' {filter} ORDER BY table_name, ordinal_position"
        ),
    )
    .await?;
    let mut tables: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (b, r) in rows(&b) {
        tables
            .entry(cells::text(b, "table_name", r))
            .or_default()
            .push(json!([
                cells::text(b, "column_name", r),
                clip(&cells::text(b, "data_type", r), 80)
            ]));
    }
    if let Some(t) = &a.table
        && tables.is_empty()
    {
        return Err(bad(format!(
            "no table {t:?} (spans, logs, metrics, span_metrics, alerts)"
        )));
    }
    let items: Vec<Value> = tables
        .into_iter()
        .map(|(name, columns)| json!({"table": name, "columns": columns}))
        .collect();
    let mut head = Map::new();
    head.insert(
        "functions".into(),
        Value::Array(FUNCTIONS.iter().map(|(f, d)| json!([f, d])).collect()),
    );
    head.insert(
        "notes".into(),
        json!([
            "time columns are UTC timestamps (ns); durations are duration_ns (BIGINT)",
            "service_name is dictionary-encoded: CAST(service_name AS VARCHAR) to group or join on it",
            "span_metrics holds 10-second rollups per service, operation, kind, status: sum(count), sum(errors), exp_histogram_quantile(...) for latency — much cheaper than scanning spans",
        ]),
    );
    let items: Vec<Value> = items.into_iter().skip(paging.offset).collect();
    Ok(paging.fit(head, "tables", items, false))
}

async fn search_traces(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        query: Option<String>,
        service: Option<String>,
        operation: Option<String>,
        errors_only: Option<bool>,
        min_duration: Option<String>,
        limit: Option<u64>,
        since: Option<String>,
        end: Option<String>,
    }
    let a: A = take("search_traces", args)?;
    let n = limit(a.limit, 20, 100, "trace")?;
    let w = window(
        tools,
        Signal::Spans,
        a.since.as_deref(),
        a.end.as_deref(),
        paging,
    )?;
    let mut conds = vec![
        w.sql(),
        search_predicate(a.query.as_deref(), Target::Spans)?,
    ];
    if let Some(s) = &a.service {
        conds.push(format!("service_name = {}", sql_string_literal(s)));
    }
    if let Some(o) = &a.operation {
        conds.push(format!("name = {}", sql_string_literal(o)));
    }
    if a.errors_only == Some(true) {
        conds.push("status_code = 'ERROR'".into());
    }
    if let Some(d) = &a.min_duration {
        let ns = crate::sql::search::parse_duration_ns(d)
            .map_err(|e| bad(format!("min_duration: {e}")))?;
        conds.push(format!("duration_ns >= {ns}"));
    }
    let matched = query(
        tools,
        &format!(
            "SELECT trace_id, max(time) AS last_match, count(*) AS matched FROM spans WHERE {} \
             GROUP BY trace_id ORDER BY last_match DESC, trace_id LIMIT {} OFFSET {}",
            conds.join(" AND "),
            n + 1,
            paging.offset
        ),
    )
    .await?;
    let mut ids: Vec<(String, i64)> = rows(&matched)
        .map(|(b, r)| {
            (
                cells::text(b, "trace_id", r),
                cells::int(b, "matched", r).unwrap_or(0),
            )
        })
        .collect();
    let more = ids.len() > n;
    ids.truncate(n);
    let mut items = Vec::new();
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(|(t, _)| sql_string_literal(t)).collect();
        let meta = query(
            tools,
            &format!(
                "SELECT trace_id, count(*) AS spans, \
                 sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
                 min(time) AS start, max(end_time) AS finish, \
                 count(DISTINCT service_name) AS services, \
                 first_value(CAST(service_name AS VARCHAR) ORDER BY parent_span_id IS NULL DESC, time) AS root_service, \
                 first_value(name ORDER BY parent_span_id IS NULL DESC, time) AS root_name \
                 FROM spans WHERE trace_id IN ({}) GROUP BY trace_id",
                list.join(", ")
            ),
        )
        .await?;
        let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
        for (b, r) in rows(&meta) {
            let start = cells::int(b, "start", r).unwrap_or(0);
            let finish = cells::int(b, "finish", r).unwrap_or(start);
            by_id.insert(
                cells::text(b, "trace_id", r),
                json!({
                    "root": format!("{}: {}", cells::text(b, "root_service", r), clip(&cells::text(b, "root_name", r), 120)),
                    "start": rfc3339(start),
                    "duration_ms": ms(finish.saturating_sub(start)),
                    "spans": cells::int(b, "spans", r).unwrap_or(0),
                    "errors": cells::int(b, "errors", r).unwrap_or(0),
                    "services": cells::int(b, "services", r).unwrap_or(0),
                }),
            );
        }
        for (id, matched) in ids {
            let mut v = by_id.remove(&id).unwrap_or_else(|| json!({}));
            if let Value::Object(m) = &mut v {
                m.insert("trace_id".into(), Value::String(id));
                m.insert("matched_spans".into(), json!(matched));
            }
            items.push(v);
        }
    }
    let mut head = Map::new();
    head.insert("window".into(), window_json(&w));
    Ok(paging.fit(head, "traces", items, more))
}

fn window_json(w: &Window) -> Value {
    json!({
        "start": w.start.map(rfc3339),
        "end": w.end.map(rfc3339),
    })
}

fn span_tree(tools: &Tools, id: &str) -> Result<(crate::Trace, SpanTree), ToolError> {
    let id = trace_id(id)?;
    let trace = tools.db.trace(id).map_err(failed)?;
    if trace.rows(Signal::Spans) == 0 {
        return Err(failed(format!(
            "no spans of trace {} in the store",
            hex(&id)
        )));
    }
    let tree = trace.tree().map_err(failed)?;
    Ok((trace, tree))
}

fn get_trace(tools: &Tools, args: Map<String, Value>, paging: &Paging) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        trace_id: String,
        #[serde(default)]
        span_ids: Vec<String>,
    }
    let a: A = take("get_trace", args)?;
    if a.span_ids.len() > 20 {
        return Err(bad(format!(
            "span_ids: {} given, at most 20",
            a.span_ids.len()
        )));
    }
    let (trace, tree) = span_tree(tools, &a.trace_id)?;
    let mut services: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for n in &tree.nodes {
        let e = services.entry(n.service.as_str()).or_default();
        e.0 += 1;
        e.1 += u64::from(n.is_error());
    }
    let mut head = Map::new();
    head.insert(
        "trace_id".into(),
        Value::String(hex(&trace_id(&a.trace_id)?)),
    );
    head.insert("start".into(), Value::String(rfc3339(tree.start)));
    head.insert("duration_ms".into(), json!(ms(tree.duration_ns())));
    head.insert("span_count".into(), json!(tree.nodes.len()));
    head.insert(
        "services".into(),
        Value::Array(
            services
                .iter()
                .map(|(s, (n, e))| json!({"service": s, "spans": n, "errors": e}))
                .collect(),
        ),
    );
    head.insert(
        "columns".into(),
        json!([
            "index",
            "parent",
            "span_id",
            "service",
            "name",
            "start_ms",
            "duration_ms",
            "status"
        ]),
    );
    // Details first: they are what was asked for by name.
    let logs = trace.log_lines().unwrap_or_default();
    let mut details = Vec::new();
    for s in &a.span_ids {
        let bytes = crate::sql::ids::parse_hex_id(s.trim(), 8)
            .ok_or_else(|| bad(format!("span_ids: {s:?} is not 16 hex digits")))?;
        let i = tree
            .find(&bytes)
            .ok_or_else(|| bad(format!("span_ids: no span {s} in this trace")))?;
        details.push(detail(&trace, &tree, i, &logs));
    }
    let mut size = 0;
    let budget = paging.cap / 2;
    let mut kept = Vec::new();
    for d in details {
        size += d.to_string().len();
        if size > budget {
            head.insert(
                "details_note".into(),
                Value::String("details of some spans left out: ask for fewer at once".into()),
            );
            break;
        }
        kept.push(d);
    }
    if !a.span_ids.is_empty() {
        head.insert("details".into(), Value::Array(kept));
    }
    let items: Vec<Value> = tree
        .nodes
        .iter()
        .enumerate()
        .skip(paging.offset)
        .map(|(i, n)| {
            json!([
                i,
                n.parent,
                hex(&n.span_id),
                clip(&n.service, 100),
                clip(&n.name, 100),
                ms(n.offset_ns),
                ms(n.duration_ns),
                if n.is_error() { "ERROR" } else { "" }
            ])
        })
        .collect();
    Ok(paging.fit(head, "spans", items, false))
}

fn detail(trace: &crate::Trace, tree: &SpanTree, i: usize, logs: &[crate::TraceLog]) -> Value {
    let n = &tree.nodes[i];
    let b = &trace.spans[n.batch];
    let attrs = |name: &str| -> Value {
        Value::Object(
            cells::attrs(b, name, n.row)
                .into_iter()
                .take(50)
                .map(|(k, v)| (k, v.map_or(Value::Null, |v| Value::String(clip(&v, 200)))))
                .collect(),
        )
    };
    let mut events = Vec::new();
    if let Some(list) = b
        .column_by_name("events")
        .and_then(|c| c.as_list_opt::<i32>())
        && list.is_valid(n.row)
    {
        let items = list.value(n.row);
        if let Some(st) = items.as_struct_opt() {
            for e in 0..st.len().min(20) {
                let name = st
                    .column_by_name("name")
                    .and_then(|c| cells::text_of(c.as_ref(), e));
                let time = st
                    .column_by_name("time")
                    .and_then(|c| cells::int_of(c.as_ref(), e));
                let ea = st
                    .column_by_name("attributes")
                    .map(|c| cells::attrs_of(c.as_ref(), e))
                    .unwrap_or_default();
                events.push(json!({
                    "name": name,
                    "at_ms": time.map(|t| ms(t.saturating_sub(tree.start))),
                    "attributes": Value::Object(ea.into_iter().take(20).map(|(k, v)| (k, v.map_or(Value::Null, |v| Value::String(clip(&v, 300))))).collect()),
                }));
            }
        }
    }
    let span_logs: Vec<Value> = logs
        .iter()
        .filter(|l| l.span_id == Some(n.span_id))
        .take(10)
        .map(|l| json!({"time": rfc3339(l.time), "severity": l.severity, "body": clip(&l.body, 300)}))
        .collect();
    json!({
        "span_id": hex(&n.span_id),
        "service": clip(&n.service, 100),
        "name": clip(&n.name, 200),
        "kind": n.kind,
        "status": n.status_code,
        "status_message": n.status_message.as_deref().map(|m| clip(m, 300)),
        "start": rfc3339(n.start),
        "duration_ms": ms(n.duration_ns),
        "self_ms": ms(n.self_ns),
        "attributes": attrs("attributes"),
        "resource": attrs("resource_attributes"),
        "events": events,
        "logs": span_logs,
    })
}

fn get_critical_path(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        trace_id: String,
        limit: Option<u64>,
    }
    let a: A = take("get_critical_path", args)?;
    let n = limit(a.limit, 20, 200, "span")?;
    let (_, tree) = span_tree(tools, &a.trace_id)?;
    let path = tree.critical_path();
    let mut on: Vec<usize> = path.spans.clone();
    on.sort_by(|x, y| {
        path.contribution[*y]
            .cmp(&path.contribution[*x])
            .then(x.cmp(y))
    });
    let mut head = Map::new();
    head.insert(
        "trace_id".into(),
        Value::String(hex(&trace_id(&a.trace_id)?)),
    );
    head.insert("total_ms".into(), json!(ms(path.total_ns())));
    head.insert("spans_on_path".into(), json!(path.spans.len()));
    head.insert("stretches".into(), json!(path.segments.len()));
    head.insert(
        "by_service".into(),
        Value::Array(
            path.by_service(&tree)
                .into_iter()
                .take(20)
                .map(|(s, t)| json!({"service": s, "ms": ms(t), "share": (path.share(t) * 1000.0).round() / 1000.0}))
                .collect(),
        ),
    );
    head.insert(
        "columns".into(),
        json!(["span_id", "service", "name", "ms_on_path", "share"]),
    );
    let page: Vec<Value> = on
        .iter()
        .skip(paging.offset)
        .take(n + 1)
        .map(|&i| {
            let node = &tree.nodes[i];
            let c = path.contribution[i];
            json!([
                hex(&node.span_id),
                clip(&node.service, 100),
                clip(&node.name, 100),
                ms(c),
                (path.share(c) * 1000.0).round() / 1000.0
            ])
        })
        .collect();
    let more = page.len() > n;
    let page = page.into_iter().take(n).collect();
    Ok(paging.fit(head, "spans", page, more))
}

async fn search_logs(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        query: Option<String>,
        service: Option<String>,
        min_severity: Option<String>,
        trace_id: Option<String>,
        limit: Option<u64>,
        since: Option<String>,
        end: Option<String>,
    }
    let a: A = take("search_logs", args)?;
    let n = limit(a.limit, 50, 200, "record")?;
    let w = window(
        tools,
        Signal::Logs,
        a.since.as_deref(),
        a.end.as_deref(),
        paging,
    )?;
    let mut conds = vec![w.sql(), search_predicate(a.query.as_deref(), Target::Logs)?];
    if let Some(s) = &a.service {
        conds.push(format!("service_name = {}", sql_string_literal(s)));
    }
    if let Some(level) = &a.min_severity {
        let lower = crate::sql::search::LEVELS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(level.trim()))
            .map(|(_, n)| *n)
            .ok_or_else(|| {
                bad(format!(
                    "min_severity {level:?}: one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL"
                ))
            })?;
        conds.push(format!("severity_number >= {lower}"));
    }
    if let Some(t) = &a.trace_id {
        conds.push(format!("trace_id = '{}'", hex(&trace_id(t)?)));
    }
    let b = query(
        tools,
        &format!(
            "SELECT time, CAST(service_name AS VARCHAR) AS service, severity_text, severity_number, \
             body, trace_id, span_id FROM logs WHERE {} \
             ORDER BY time DESC, trace_id, span_id, body LIMIT {} OFFSET {}",
            conds.join(" AND "),
            n + 1,
            paging.offset
        ),
    )
    .await?;
    let mut items: Vec<Value> = rows(&b)
        .map(|(b, r)| {
            let sev = cells::text(b, "severity_text", r);
            let sev = if sev.is_empty() {
                crate::severity_name(cells::int(b, "severity_number", r).unwrap_or(0) as i32)
                    .to_string()
            } else {
                sev
            };
            let t = cells::text(b, "trace_id", r);
            let s = cells::text(b, "span_id", r);
            json!({
                "time": rfc3339(cells::int(b, "time", r).unwrap_or(0)),
                "service": cells::text(b, "service", r),
                "severity": sev,
                "body": clip(&cells::text(b, "body", r), 300),
                "trace_id": (!t.is_empty()).then_some(t),
                "span_id": (!s.is_empty()).then_some(s),
            })
        })
        .collect();
    let more = items.len() > n;
    items.truncate(n);
    let mut head = Map::new();
    head.insert("window".into(), window_json(&w));
    Ok(paging.fit(head, "logs", items, more))
}

async fn log_patterns(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        service: Option<String>,
        limit: Option<u64>,
        since: Option<String>,
        end: Option<String>,
    }
    let a: A = take("log_patterns", args)?;
    let n = limit(a.limit, 20, 100, "template")?;
    let w = window(
        tools,
        Signal::Logs,
        a.since.as_deref().or(Some("15m")),
        a.end.as_deref(),
        paging,
    )?;
    let (Some(start), Some(end)) = (w.start, w.end) else {
        return Err(bad(
            "log_patterns needs a bounded window: since cannot be `all`",
        ));
    };
    let filter = match &a.service {
        Some(s) => format!("WHERE service_name = {}", sql_string_literal(s)),
        None => String::new(),
    };
    let b = query(
        tools,
        &format!(
            "SELECT CAST(service_name AS VARCHAR) AS service, template, count, baseline_count, \
             change, status, example FROM log_patterns({}, {}) {filter} LIMIT {} OFFSET {}",
            sql_timestamp_literal(start),
            sql_timestamp_literal(end),
            n + 1,
            paging.offset
        ),
    )
    .await?;
    let mut items: Vec<Value> = rows(&b)
        .map(|(b, r)| {
            json!({
                "service": cells::text(b, "service", r),
                "template": clip(&cells::text(b, "template", r), 300),
                "count": cells::int(b, "count", r),
                "baseline_count": cells::int(b, "baseline_count", r),
                "change": cells::float(b, "change", r).map(|c| (c * 100.0).round() / 100.0),
                "status": cells::text(b, "status", r),
                "example": clip(&cells::text(b, "example", r), 200),
            })
        })
        .collect();
    let more = items.len() > n;
    items.truncate(n);
    let mut head = Map::new();
    head.insert("window".into(), window_json(&w));
    Ok(paging.fit(head, "patterns", items, more))
}

/// A cell as JSON: numbers and booleans as such, everything else as (clipped) text.
fn cell(c: &dyn Array, row: usize) -> Value {
    if c.is_null(row) {
        return Value::Null;
    }
    match c.data_type() {
        DataType::Boolean => Value::Bool(c.as_boolean().value(row)),
        t if t.is_integer() => cells::int_of(c, row).map_or(Value::Null, |v| json!(v)),
        t if t.is_floating() => {
            let v = crate::arrow::compute::cast(&c.slice(row, 1), &DataType::Float64)
                .ok()
                .map(|a| {
                    a.as_primitive::<crate::arrow::datatypes::Float64Type>()
                        .value(0)
                });
            match v {
                Some(v) if v.is_finite() => json!(v),
                Some(v) => Value::String(v.to_string()),
                None => Value::Null,
            }
        }
        _ => cells::text_of(c, row).map_or(Value::Null, |s| Value::String(clip(&s, 500))),
    }
}

async fn run_sql(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        sql: String,
        limit: Option<u64>,
    }
    let a: A = take("run_sql", args)?;
    let n = limit(a.limit, 100, 1000, "row")?;
    let session = tools.db.session().map_err(failed)?;
    let df = session.read_only_dataframe(&a.sql).await.map_err(failed)?;
    let columns: Vec<Value> = df
        .schema()
        .fields()
        .iter()
        .map(|f| json!([clip(f.name(), 100), clip(&f.data_type().to_string(), 60)]))
        .collect();
    let b = df
        .limit(paging.offset, Some(n + 1))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let mut items: Vec<Value> = rows(&b)
        .map(|(b, r)| Value::Array(b.columns().iter().map(|c| cell(c.as_ref(), r)).collect()))
        .collect();
    let more = items.len() > n;
    items.truncate(n);
    let mut head = Map::new();
    head.insert("columns".into(), Value::Array(columns));
    Ok(paging.fit(head, "rows", items, more))
}

fn alert_json(a: &crate::alert::Alert) -> Value {
    json!({
        "time": rfc3339(a.time),
        "rule": a.rule,
        "state": a.state.as_str(),
        "labels": Value::Object(
            a.labels
                .iter()
                .take(30)
                .map(|(k, v)| (clip(k, 100), Value::String(clip(v, 200))))
                .collect()
        ),
        "value": a.value.is_finite().then_some(a.value),
        "started": a.started.map(rfc3339),
        "fired": a.fired.map(rfc3339),
        "ended": a.ended.map(rfc3339),
        "summary": clip(&a.summary, 300),
        "error": a.error.as_deref().map(|e| clip(e, 300)),
        "fingerprint": a.fingerprint,
    })
}

async fn list_alerts(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        since: Option<String>,
        limit: Option<u64>,
    }
    let a: A = take("list_alerts", args)?;
    let n = limit(a.limit, 50, 500, "change")?;
    let since = crate::sql::search::parse_duration_ns(a.since.as_deref().unwrap_or("24h"))
        .map_err(|e| bad(format!("since: {e}")))?;
    let current = crate::alert::current_async(&tools.db)
        .await
        .map_err(failed)?;
    let from = crate::alert::now_ns().saturating_sub(since);
    let mut recent = crate::alert::history_async(&tools.db, Some(from), paging.offset + n + 1)
        .await
        .map_err(failed)?;
    // Newest first, this page.
    recent.reverse();
    let page: Vec<Value> = recent.iter().skip(paging.offset).map(alert_json).collect();
    let more = page.len() > n;
    let page: Vec<Value> = page.into_iter().take(n).collect();
    let mut head = Map::new();
    head.insert(
        "current".into(),
        Value::Array(current.iter().take(100).map(alert_json).collect()),
    );
    if current.len() > 100 {
        head.insert(
            "current_note".into(),
            json!(format!("{} current alerts; 100 shown", current.len())),
        );
    }
    Ok(paging.fit(head, "changes", page, more))
}

async fn diagnose(
    tools: &Tools,
    args: Map<String, Value>,
    paging: &Paging,
) -> Result<Value, ToolError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        since: Option<String>,
        end: Option<String>,
    }
    let a: A = take("diagnose", args)?;
    let w = window(
        tools,
        Signal::Spans,
        a.since.as_deref(),
        a.end.as_deref(),
        paging,
    )?;
    let session = tools.db.session().map_err(failed)?;
    let range = (w.start.is_some() || w.end.is_some()).then(|| w.range());
    let d = crate::diagnose::diagnose(session, range, &crate::diagnose::DiagnoseOptions::default())
        .await
        .map_err(failed)?;
    let mut head = Map::new();
    head.insert("window".into(), window_json(&w));
    head.insert(
        "anomaly".into(),
        d.anomaly.as_ref().map_or(Value::Null, |x| {
            json!({
                "kind": x.kind.to_string(),
                "start": rfc3339(x.start),
                "end": rfc3339(x.end),
                "baseline_error_rate": x.baseline_error_rate,
                "peak_error_rate": x.peak_error_rate,
                "baseline_p99_ms": x.baseline_p99_ms,
                "peak_p99_ms": x.peak_p99_ms,
            })
        }),
    );
    head.insert(
        "root_cause".into(),
        d.root_cause.as_ref().map_or(Value::Null, |c| {
            json!({"service": c.service, "operation": c.operation, "callee_inferred": c.callee_inferred})
        }),
    );
    head.insert(
        "example_trace".into(),
        json!(d.example_trace.map(|t| hex(&t))),
    );
    head.insert(
        "services".into(),
        Value::Array(
            d.services
                .iter()
                .take(10)
                .map(|s| json!({"service": s.service, "spans": s.spans, "errors": s.errors, "p99_ms": s.p99_ms}))
                .collect(),
        ),
    );
    head.insert(
        "critical_path".into(),
        Value::Array(
            d.critical_path
                .iter()
                .take(10)
                .map(|p| json!({"service": p.service, "operation": p.operation, "ms": ms(p.critical_ns), "share": (p.share * 1000.0).round() / 1000.0}))
                .collect(),
        ),
    );
    head.insert(
        "log_patterns".into(),
        Value::Array(
            d.log_patterns
                .iter()
                .take(8)
                .map(|p| json!({"service": p.service, "template": clip(&p.template, 200), "count": p.count, "baseline_count": p.baseline_count, "status": p.status}))
                .collect(),
        ),
    );
    head.insert(
        "error_logs".into(),
        Value::Array(
            d.logs
                .iter()
                .take(8)
                .map(|l| json!({"time": rfc3339(l.time), "service": l.service, "severity": l.severity, "body": clip(&l.body, 300), "trace_id": l.trace_id.map(|t| hex(&t))}))
                .collect(),
        ),
    );
    head.insert(
        "notes".into(),
        json!(
            d.notes
                .iter()
                .take(10)
                .map(|n| clip(n, 300))
                .collect::<Vec<_>>()
        ),
    );
    // The summary, line by line, as much as fits.
    let lines: Vec<Value> = d
        .summary()
        .lines()
        .skip(paging.offset)
        .map(|l| Value::String(clip(l, 400)))
        .collect();
    Ok(paging.fit(head, "summary", lines, false))
}
