//! The MCP server: a scripted client (the official Rust SDK's) over stdio (`scry mcp` as a
//! child process) and over streamable HTTP (`/mcp` on `scry serve`) calls every tool
//! against a generated store with an injected fault; `diagnose` names the cause; byte caps
//! and cursors hold on huge traces and results; bad arguments are tool errors that say
//! what is wrong.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{FixedSizeBinaryArray, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use scrydb::mcp::{McpOptions, TOOLS, ToolError, Tools};
use scrydb::{Db, Options, Signal};
use scrydb_workload::{Fault, FaultKind, Workload, WorkloadOptions};
use serde_json::{Map, Value, json};

use crate::common::BASE;

/// A minute of the shop with an error burst, flushed and closed.
fn shop(dir: &Path) -> Fault {
    let db = Db::open(dir, Options::default()).expect("open");
    let workload = Workload::new(WorkloadOptions {
        seed: 1,
        seconds: 60,
        traces_per_second: 8,
        fault: Some(FaultKind::ErrorBurst),
        ..Default::default()
    });
    let truth = workload.fault().cloned().expect("a fault");
    crate::common::ingest_workload(&db, workload);
    db.close().expect("close");
    truth
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The JSON of a successful call.
fn ok_json(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let text = &r.content[0].as_text().expect("text").text;
    serde_json::from_str(text).expect("a JSON result")
}

fn err_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "{r:?}");
    r.content[0].as_text().expect("text").text.clone()
}

async fn call(c: &RunningService<RoleClient, ()>, name: &'static str, a: Value) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new(name).with_arguments(args(a)))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every tool, called as an agent would, with what it must say about the shop.
async fn script(c: &RunningService<RoleClient, ()>, fault: &Fault) {
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .expect("tools/list")
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, TOOLS.map(|t| t.name.to_string()));

    let schema = ok_json(&call(c, "get_schema", json!({})).await);
    let tables: Vec<&str> = schema["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["table"].as_str().expect("name"))
        .collect();
    assert_eq!(
        tables,
        ["alerts", "logs", "metrics", "span_metrics", "spans"]
    );

    let d = ok_json(&call(c, "diagnose", json!({})).await);
    assert_eq!(d["root_cause"]["service"], fault.service, "{d}");
    assert_eq!(d["root_cause"]["operation"], fault.operation, "{d}");
    let example = d["example_trace"]
        .as_str()
        .expect("an example trace")
        .to_string();

    let t = ok_json(
        &call(
            c,
            "search_traces",
            json!({"service": fault.service, "errors_only": true, "limit": 5}),
        )
        .await,
    );
    let traces = t["traces"].as_array().expect("traces");
    assert_eq!(traces.len(), 5, "{t}");
    assert!(traces.iter().all(|x| x["errors"].as_i64() > Some(0)), "{t}");
    assert_eq!(t["truncated"], true, "more than five failed");
    let next = ok_json(
        &call(c, "search_traces", json!({"service": fault.service, "errors_only": true, "limit": 5, "cursor": t["cursor"]})).await,
    );
    let first: Vec<&Value> = traces.iter().map(|x| &x["trace_id"]).collect();
    assert!(
        next["traces"]
            .as_array()
            .expect("page 2")
            .iter()
            .all(|x| !first.contains(&&x["trace_id"]))
    );

    let tr = ok_json(&call(c, "get_trace", json!({"trace_id": example})).await);
    let spans = tr["spans"].as_array().expect("spans");
    assert_eq!(
        spans.len() as u64,
        tr["span_count"].as_u64().expect("count")
    );
    assert!(
        spans
            .iter()
            .any(|s| s[3] == fault.service && s[7] == "ERROR"),
        "{tr}"
    );
    let failing = spans
        .iter()
        .find(|s| s[3] == fault.service && s[7] == "ERROR")
        .expect("a failing span")[2]
        .clone();
    let detailed = ok_json(
        &call(
            c,
            "get_trace",
            json!({"trace_id": example, "span_ids": [failing]}),
        )
        .await,
    );
    let detail = &detailed["details"][0];
    assert_eq!(detail["status"], "ERROR");
    assert!(
        detail["attributes"]
            .as_object()
            .is_some_and(|a| !a.is_empty()),
        "{detail}"
    );
    assert!(
        detail["resource"]["service.name"] == fault.service,
        "{detail}"
    );

    let cp = ok_json(&call(c, "get_critical_path", json!({"trace_id": example})).await);
    assert!(cp["total_ms"].as_f64().expect("total") > 0.0);
    assert!(!cp["by_service"].as_array().expect("services").is_empty());

    let logs = ok_json(
        &call(
            c,
            "search_logs",
            json!({"service": fault.service, "min_severity": "ERROR", "limit": 3}),
        )
        .await,
    );
    let lines = logs["logs"].as_array().expect("logs");
    assert_eq!(lines.len(), 3, "{logs}");
    assert!(
        lines.iter().all(|l| l["severity"]
            .as_str()
            .is_some_and(|s| s.starts_with("ERROR"))),
        "{logs}"
    );

    let p = ok_json(&call(c, "log_patterns", json!({"since": "1m"})).await);
    assert!(
        !p["patterns"].as_array().expect("patterns").is_empty(),
        "{p}"
    );

    let sql = ok_json(
        &call(
            c,
            "run_sql",
            json!({"sql": "SELECT count(*) AS n FROM spans WHERE status_code = 'ERROR'"}),
        )
        .await,
    );
    assert_eq!(sql["columns"][0][0], "n");
    assert!(sql["rows"][0][0].as_i64() > Some(0), "{sql}");
    let refused = err_text(&call(c, "run_sql", json!({"sql": "DROP TABLE spans"})).await);
    assert!(refused.contains("only queries are allowed"), "{refused}");

    let alerts = ok_json(&call(c, "list_alerts", json!({})).await);
    assert_eq!(alerts["current"], json!([]));

    // Bad arguments are tool errors that say which.
    let e = err_text(&call(c, "search_traces", json!({"servce": "x"})).await);
    assert!(e.contains("unknown field `servce`"), "{e}");
    let e = err_text(&call(c, "get_trace", json!({"trace_id": "xyz"})).await);
    assert!(e.contains("trace_id"), "{e}");
    let e = err_text(&call(c, "search_logs", json!({"query": "service:"})).await);
    assert!(e.contains("query"), "{e}");
    let e = c
        .call_tool(CallToolRequestParams::new("drop_everything"))
        .await
        .expect_err("an unknown tool is a protocol error");
    assert!(e.to_string().contains("drop_everything"), "{e}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_client_over_stdio_calls_every_tool_and_diagnose_names_the_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = shop(dir.path());
    runtime().block_on(async {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_scry"));
        cmd.arg("--db").arg(dir.path()).arg("mcp");
        let transport = rmcp::transport::TokioChildProcess::new(cmd).expect("spawn scry mcp");
        let client = ().serve(transport).await.expect("initialize");
        let info = client.peer_info().expect("server info");
        assert_eq!(
            info.server_info.as_ref().map(|i| i.name.as_str()),
            Some("scrydb")
        );
        script(&client, &fault).await;
        client.cancel().await.expect("close");
    });
}

#[test]
fn a_client_over_streamable_http_on_scry_serve_needs_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = shop(dir.path());
    let db = Arc::new(Db::open(dir.path(), Options::default()).expect("open"));
    let mut opts = scrydb::server::ServeOptions::default();
    opts.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    opts.http_addr = "127.0.0.1:0".parse().expect("addr");
    opts.self_metrics_every = None;
    opts.token = Some("s3cret".into());
    let server = scrydb::server::Server::start(db.clone(), opts).expect("serve");
    let url = format!("http://{}/mcp", server.http_addr());
    runtime().block_on(async {
        use rmcp::transport::StreamableHttpClientTransport;
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        let without = StreamableHttpClientTransport::from_uri(url.clone());
        assert!(().serve(without).await.is_err(), "no token, no session");
        let with = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header("s3cret"),
        );
        let client = ().serve(with).await.expect("initialize");
        script(&client, &fault).await;
        client.cancel().await.expect("close");
    });
    server.shutdown().expect("shutdown");
    // `--no-mcp` (mcp = None): no endpoint.
    let mut opts = scrydb::server::ServeOptions::default();
    opts.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    opts.http_addr = "127.0.0.1:0".parse().expect("addr");
    opts.self_metrics_every = None;
    opts.mcp = None;
    let server = scrydb::server::Server::start(db.clone(), opts).expect("serve");
    let (status, _, _) = crate::common::http(
        server.http_addr(),
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        b"{}",
    );
    assert_eq!(status, 404);
    server.shutdown().expect("shutdown");
}

/// One trace of `n` spans nested in a chain (each the only child of the one before), so
/// that every span is on the critical path, in a store of its own.
fn chain(dir: &Path, n: usize) -> String {
    let trace = [9u8; 16];
    let ts = |v: Vec<i64>| Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"));
    let starts: Vec<i64> = (0..n as i64).map(|i| BASE + i * 1_000).collect();
    let ends: Vec<i64> = (0..n as i64)
        .map(|i| BASE + 10_000_000_000 - i * 1_000)
        .collect();
    let ids: Vec<[u8; 8]> = (1..=n as u64).map(u64::to_be_bytes).collect();
    let parents: Vec<Option<[u8; 8]>> = (0..n as u64)
        .map(|i| (i > 0).then(|| i.to_be_bytes()))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "end_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            ts(starts),
            ts(ends),
            Arc::new(
                FixedSizeBinaryArray::try_from_iter(std::iter::repeat_n(trace, n)).expect("ids"),
            ),
            Arc::new(FixedSizeBinaryArray::try_from_iter(ids.into_iter()).expect("ids")),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(parents.into_iter(), 8)
                    .expect("ids"),
            ),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("svc-{}", i % 7)),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("step {i} of a long recursive resolution")),
            )),
        ],
    )
    .expect("batch");
    let db = Db::open(dir, Options::default()).expect("open");
    db.append(Signal::Spans, &batch).expect("append");
    db.close().expect("close");
    scrydb::sql::ids::hex(&trace)
}

fn tools(dir: &Path) -> Tools {
    Tools::new(
        Arc::new(Db::open_read_only(dir, Options::default()).expect("open")),
        McpOptions::default(),
    )
}

/// Calls `tool` following cursors to the end; every page within the cap. The pages' `key`
/// lists, concatenated.
fn all_pages(t: &Tools, tool: &str, a: Value, key: &str) -> (Vec<Value>, usize) {
    let cap = t.options().max_bytes;
    let mut out = Vec::new();
    let mut pages = 0;
    let mut a = args(a);
    loop {
        let v = t.call_blocking(tool, a.clone()).expect(tool);
        let size = v.to_string().len();
        assert!(size <= cap, "{tool}: a page of {size} bytes");
        pages += 1;
        out.extend(v[key].as_array().expect("a list").iter().cloned());
        match v.get("cursor") {
            Some(c) => {
                assert_eq!(v["truncated"], true);
                a.insert("cursor".into(), c.clone());
            }
            None => return (out, pages),
        }
    }
}

#[test]
fn caps_and_cursors_hold_on_huge_traces_and_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = chain(dir.path(), 1_800);
    let t = tools(dir.path());

    // A 1,800-span critical path: one capped page, then the rest by cursor.
    let first = t
        .call_blocking(
            "get_critical_path",
            args(json!({"trace_id": id, "limit": 200})),
        )
        .expect("critical path");
    assert!(
        first.to_string().len() <= 24_000,
        "{}",
        first.to_string().len()
    );
    assert_eq!(first["spans_on_path"], 1_800);
    assert_eq!(first["truncated"], true);
    let (path, pages) = all_pages(
        &t,
        "get_critical_path",
        json!({"trace_id": id, "limit": 200}),
        "spans",
    );
    assert_eq!(path.len(), 1_800);
    assert!(pages >= 9, "{pages}");
    let mut ids: Vec<&str> = path.iter().map(|s| s[0].as_str().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1_800, "every span once");

    // The trace's topology, paged within the cap, each span once, in tree order.
    let (spans, pages) = all_pages(&t, "get_trace", json!({"trace_id": id}), "spans");
    assert_eq!(spans.len(), 1_800);
    assert!(pages > 1);
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s[0], i, "in order");
    }
    // A smaller cap asked for, honoured.
    let small = t
        .call_blocking(
            "get_trace",
            args(json!({"trace_id": id, "max_bytes": 2048})),
        )
        .expect("small");
    assert!(
        small.to_string().len() <= 2048,
        "{}",
        small.to_string().len()
    );

    // At the smallest cap, every page still fits and the cursors always move on.
    let (tables, pages) = {
        let mut a = args(json!({"max_bytes": 1024}));
        let mut tables = Vec::new();
        let mut pages = 0;
        loop {
            let v = t.call_blocking("get_schema", a.clone()).expect("schema");
            assert!(v.to_string().len() <= 1024, "{}", v.to_string().len());
            pages += 1;
            assert!(pages < 50, "the cursor moves on");
            tables.extend(v["tables"].as_array().expect("tables").iter().cloned());
            match v.get("cursor") {
                Some(c) => {
                    a.insert("cursor".into(), c.clone());
                }
                None => break (tables, pages),
            }
        }
    };
    assert_eq!(
        tables.len(),
        5,
        "one item per table, each whole or noted: {tables:?}"
    );
    assert!(pages >= 5);

    // SQL results page the same way, within the cap however wide the cells.
    let (rows, _) = all_pages(
        &t,
        "run_sql",
        json!({"sql": "SELECT span_id, name, repeat(name, 40) AS wide FROM spans ORDER BY time", "limit": 1000}),
        "rows",
    );
    assert_eq!(rows.len(), 1_800);
    assert!(
        rows.iter()
            .all(|r| r[2].as_str().expect("text").chars().count() <= 501)
    );

    // Cursors belong to their arguments; limits are checked.
    let e = t
        .call_blocking(
            "get_trace",
            args(json!({"trace_id": "0".repeat(31) + "1", "cursor": first["cursor"]})),
        )
        .expect_err("a cursor of another call");
    assert!(matches!(e, ToolError::BadArguments(_)), "{e}");
    for (tool, a, says) in [
        (
            "run_sql",
            json!({"sql": "SELECT 1", "limit": 5000}),
            "above 1000",
        ),
        (
            "get_trace",
            json!({"trace_id": id, "max_bytes": 100}),
            "below 1024",
        ),
        (
            "get_trace",
            json!({"trace_id": id, "cursor": "zzz"}),
            "not one this server gave",
        ),
        (
            "get_trace",
            json!({"trace_id": "0".repeat(32)}),
            "no spans of trace",
        ),
        ("search_traces", json!({"since": "forever"}), "window"),
        ("log_patterns", json!({"since": "all"}), "bounded window"),
    ] {
        let e = t.call_blocking(tool, args(a)).expect_err(tool).to_string();
        assert!(e.contains(says), "{tool}: {e}");
    }

    // The time limit cancels a query.
    let mut slow = McpOptions::default();
    slow.timeout = std::time::Duration::from_millis(1);
    let t = Tools::new(t.db().clone(), slow);
    let e = t
        .call_blocking(
            "run_sql",
            args(json!({"sql": "SELECT count(*) FROM spans a, spans b, spans c"})),
        )
        .expect_err("too slow");
    assert!(matches!(e, ToolError::TooSlow(_)), "{e}");
}
