//! The alerting and MCP benchmark (`scry-bench --agents STORE`): over an existing store
//! (such as the harness's 10M spans, opened read-only), the query of each built-in alert
//! rule as one evaluation at the store's newest time runs it, and each MCP tool with the
//! arguments an agent would start with; p50 and p99 over `runs` calls after one warm-up,
//! and the size of each tool's result. `docs/benchmarks.md` says what each number means.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use scrydb::alert::{RuleSet, render_expr};
use scrydb::mcp::{McpOptions, Tools};
use scrydb::sql::ids::hex;
use scrydb::{Db, Options, Signal};
use serde_json::{Map, Value, json};

const BUILTINS: &str = r#"
[[builtin]]
kind = "error_rate_jump"
[[builtin]]
kind = "latency_jump"
[[builtin]]
kind = "probe_down"
[[builtin]]
kind = "log_surge"
"#;

fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T, String>) -> Result<(f64, f64, T), String> {
    let mut last = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        last = f()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = crate::harness::percentile(&mut times.clone(), 0.5);
    let p99 = crate::harness::percentile(&mut times, 0.99);
    Ok((p50, p99, last))
}

/// Runs the benchmark over `store` and writes the results to `json`.
pub fn run(store: &Path, runs: usize, json_path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let db = Arc::new(Db::open_read_only(store, Options::default())?);
    let newest = db
        .snapshot()
        .newest_time(Signal::Spans)?
        .ok_or("the store has no spans")?;
    let mut out = Vec::new();
    println!(
        "{:<40} {:>9} {:>9} {:>9}",
        "alert rule (one evaluation's query)", "p50 ms", "p99 ms", "rows"
    );
    let set = RuleSet::parse(BUILTINS, "built-ins")?;
    for (_, rule) in set.rules() {
        let sql = render_expr(&rule.expr, newest + 1)?;
        let (p50, p99, rows) = time(runs, || {
            db.sql_blocking(&sql)
                .map(|b| b.iter().map(|b| b.num_rows()).sum::<usize>())
                .map_err(|e| e.to_string())
        })?;
        println!("{:<40} {p50:>9.1} {p99:>9.1} {rows:>9}", rule.name);
        out.push(json!({"alert_rule": rule.name, "p50_ms": p50, "p99_ms": p99, "rows": rows, "runs": runs}));
    }
    let tools = Tools::new(db.clone(), McpOptions::default());
    let b = db.sql_blocking(&format!(
        "SELECT trace_id FROM spans WHERE time >= to_timestamp_nanos({}) AND parent_span_id IS NULL \
         ORDER BY duration_ns DESC LIMIT 1",
        newest - 60_000_000_000
    ))?;
    let trace = b
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| {
            use scrydb::arrow::array::AsArray;
            hex(b.column(0).as_fixed_size_binary().value(0))
        })
        .ok_or("no root span in the last minute")?;
    let calls: Vec<(&str, Value)> = vec![
        ("get_schema", json!({})),
        ("search_traces", json!({"errors_only": true})),
        ("search_traces", json!({"query": "timeout", "since": "15m"})),
        ("get_trace", json!({"trace_id": trace})),
        ("get_critical_path", json!({"trace_id": trace})),
        (
            "search_logs",
            json!({"min_severity": "ERROR", "since": "15m"}),
        ),
        ("log_patterns", json!({})),
        (
            "run_sql",
            json!({"sql": "SELECT CAST(service_name AS VARCHAR) AS service, sum(count) AS spans, sum(errors) AS errors FROM span_metrics GROUP BY 1 ORDER BY 2 DESC"}),
        ),
        ("list_alerts", json!({})),
        ("diagnose", json!({"since": "15m"})),
    ];
    println!();
    println!(
        "{:<40} {:>9} {:>9} {:>9}",
        "MCP tool", "p50 ms", "p99 ms", "bytes"
    );
    for (tool, a) in calls {
        let args: Map<String, Value> = match &a {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let (p50, p99, v) = time(runs, || {
            tools
                .call_blocking(tool, args.clone())
                .map_err(|e| format!("{tool} {a}: {e}"))
        })?;
        let bytes = v.to_string().len();
        let label = format!(
            "{tool} {}",
            a.to_string().chars().take(30).collect::<String>()
        );
        println!("{label:<40} {p50:>9.1} {p99:>9.1} {bytes:>9}");
        out.push(json!({"tool": tool, "args": a, "p50_ms": p50, "p99_ms": p99, "bytes": bytes, "runs": runs}));
    }
    std::fs::write(json_path, serde_json::to_vec_pretty(&out)?)?;
    Ok(())
}
