//! The search benchmark (`scry-bench --search N`): `N` log records with realistic bodies
//! ([`scrydb_workload::logtext`]: web, HDFS, SSH, kernel and application lines) ingested
//! twice — with term indexes and without — then searched through SQL with the index, with
//! a scan, and on DuckDB (native table: `ILIKE`, and the `fts` extension when its PyPI
//! package is installed). Prints a table and writes JSON; `docs/benchmarks.md` says what
//! each number means.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use scrydb::sql::{Session, SessionOptions};
use scrydb::{Db, Options, Signal};
use scrydb_workload::Rng;
use scrydb_workload::synth::realistic_logs;
use serde_json::{Value, json};

/// What to run.
#[derive(Debug, Clone)]
pub struct SearchArgs {
    /// Log records to ingest.
    pub logs: usize,
    /// Seed of the data.
    pub seed: u64,
    /// Where the JSON results go.
    pub json: PathBuf,
    /// Whether to run the DuckDB side.
    pub duckdb: bool,
    /// Runs of each query (p50 and p99 over them).
    pub runs: usize,
}

/// Rows per generated batch (one append each).
const BATCH: usize = 100_000;
/// The data spans two hours: batch `i` starts at `BASE + i × SPREAD / batches`.
const SPREAD_NS: i64 = 2 * 3_600_000_000_000;
const BASE: i64 = scrydb_workload::BASE_NS;

/// One search: its predicate in ScryDB SQL and in DuckDB SQL (`ILIKE`, and an `fts`
/// condition when the search is by words).
struct Search {
    name: &'static str,
    scry: String,
    duckdb: String,
    /// Words for DuckDB's `fts` (`match_bm25` with all words required), if it applies.
    fts: Option<String>,
}

fn searches(rare: &str, latest: i64) -> Vec<Search> {
    let recent = latest - 10 * 60 * 1_000_000_000;
    vec![
        Search {
            name: "rare term",
            scry: format!("matches(body, '{rare}')"),
            duckdb: format!("body ILIKE '%{rare}%'"),
            fts: Some(rare.to_string()),
        },
        Search {
            name: "common term",
            scry: "matches(body, 'block')".into(),
            duckdb: "body ILIKE '%block%'".into(),
            fts: Some("block".into()),
        },
        Search {
            name: "phrase",
            scry: "matches(body, 'connection refused')".into(),
            duckdb: "body ILIKE '%connection refused%'".into(),
            fts: Some("connection refused".into()),
        },
        Search {
            name: "key=value",
            scry: "attributes['thread.id'] = '7'".into(),
            duckdb: "attributes['thread.id'] = '7'".into(),
            fts: None,
        },
        Search {
            name: "numeric range",
            scry: "TRY_CAST(attributes['thread.id'] AS DOUBLE) >= 63".into(),
            duckdb: "TRY_CAST(attributes['thread.id'] AS DOUBLE) >= 63".into(),
            fts: None,
        },
        Search {
            name: "term + time range + service",
            scry: format!(
                "matches(body, 'insufficient funds') AND time >= to_timestamp_nanos({recent}) \
                 AND service_name = 'checkout'"
            ),
            duckdb: format!(
                "body ILIKE '%insufficient funds%' AND time >= make_timestamp({}) \
                 AND service_name = 'checkout'",
                recent / 1000
            ),
            fts: Some("insufficient funds".into()),
        },
    ]
}

/// The search as users run it: newest first, at most 100 rows.
fn search_sql(predicate: &str) -> String {
    format!(
        "SELECT time, service_name, body, trace_id FROM logs WHERE {predicate} \
         ORDER BY time DESC LIMIT 100"
    )
}

fn count_sql(predicate: &str) -> String {
    format!("SELECT count(*) FROM logs WHERE {predicate}")
}

/// Ingests `batches` into a fresh store at `dir` (term indexes and log patterns on or
/// off); returns the seconds from the first append to the end of the final flush.
fn ingest(
    dir: &Path,
    batches: &[RecordBatch],
    term_index: bool,
    log_patterns: bool,
) -> Result<f64, scrydb::Error> {
    let _ = std::fs::remove_dir_all(dir);
    let db = Db::open(
        dir,
        Options::default()
            .term_index(term_index)
            .log_patterns(log_patterns)
            .compaction(false),
    )?;
    let t = Instant::now();
    for b in batches {
        db.append(Signal::Logs, b)?;
    }
    db.flush()?;
    let secs = t.elapsed().as_secs_f64();
    db.close()?;
    Ok(secs)
}

/// Pattern mining alone: the miner's time per record over every line, and its grouping
/// accuracy against the true (service, template) of each line — mined whole, and mined in
/// pieces of 128k lines (one miner per segment) merged as a query merges them.
fn mine(
    batches: &[RecordBatch],
    truth: &[(String, usize)],
) -> Result<Value, Box<dyn std::error::Error>> {
    use scrydb::search::patterns::{Merger, Miner, grouping_accuracy};
    const PIECE: usize = 128 * 1024;
    let mut whole = Miner::new();
    let mut ids = Vec::with_capacity(truth.len());
    let mut builder = scrydb::search::log_patterns::PatternBuilder::new();
    let mut pieces: Vec<scrydb::search::log_patterns::SegmentPatterns> = Vec::new();
    let (mut mine_s, mut build_s) = (0.0, 0.0);
    for b in batches {
        let service = arrow::compute::cast(
            b.column_by_name("service_name").expect("service_name"),
            &arrow::datatypes::DataType::Utf8,
        )?;
        let service = service.as_string::<i32>();
        let body = b.column_by_name("body").expect("body").as_string::<i32>();
        let t = Instant::now();
        for r in 0..b.num_rows() {
            ids.push(whole.add(service.value(r), body.value(r)));
        }
        mine_s += t.elapsed().as_secs_f64();
        // The flush's work: mining plus per-template summaries and row templates, in
        // segments of 128k rows, encoded.
        let t = Instant::now();
        builder.add(b)?;
        if builder.rows() as usize >= PIECE {
            let done = std::mem::take(&mut builder).finish();
            done.encode()?;
            pieces.push(done);
        }
        build_s += t.elapsed().as_secs_f64();
    }
    if builder.rows() > 0 {
        pieces.push(builder.finish());
    }
    let truth: Vec<(&str, usize)> = truth.iter().map(|(s, t)| (s.as_str(), *t)).collect();
    let whole_ga = grouping_accuracy(&ids, &truth);
    let mut merger = Merger::new();
    let mut merged = Vec::with_capacity(truth.len());
    for p in &pieces {
        let to: Vec<u32> = p
            .templates
            .iter()
            .map(|t| merger.add(&t.service, &t.template))
            .collect();
        merged.extend(p.rows.iter().map(|&id| to[id as usize]));
    }
    let pieces_ga = grouping_accuracy(&merged, &truth);
    let n = truth.len() as f64;
    println!(
        "log pattern mining alone: {:.2} µs per record (with summaries and encoding {:.2} µs); \
         grouping accuracy {whole_ga:.4} mined whole ({} templates), {pieces_ga:.4} mined in \
         {} pieces of {PIECE} and merged ({} templates)",
        mine_s * 1e6 / n,
        build_s * 1e6 / n,
        whole.len(),
        pieces.len(),
        merger.miner().len()
    );
    Ok(json!({
        "mine_us_per_record": mine_s * 1e6 / n,
        "build_us_per_record": build_s * 1e6 / n,
        "grouping_accuracy_whole": whole_ga,
        "grouping_accuracy_pieces_merged": pieces_ga,
        "templates_whole": whole.len(),
        "templates_merged": merger.miner().len(),
        "pieces": pieces.len(),
        "true_groups": truth.iter().collect::<std::collections::HashSet<_>>().len(),
    }))
}

fn timed(session: &Session, sql: &str, runs: usize) -> Result<(Vec<f64>, usize), String> {
    let mut ms = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = session
            .sql_blocking(sql)
            .map_err(|e| format!("{sql}: {e}"))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        rows = out.iter().map(RecordBatch::num_rows).sum();
    }
    Ok((ms, rows))
}

fn pct(v: &[f64], p: f64) -> f64 {
    crate::harness::percentile(&mut v.to_vec(), p)
}

fn count_of(session: &Session, sql: &str) -> Result<i64, String> {
    let out = session
        .sql_blocking(sql)
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(out[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0))
}

/// Runs the search benchmark in `dir` (two stores are made under it).
pub fn run(dir: &Path, a: &SearchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let n_batches = a.logs.div_ceil(BATCH);
    println!("generating {} log records ({n_batches} batches)...", a.logs);
    let mut rng = Rng::new(a.seed);
    let mut batches = Vec::with_capacity(n_batches);
    // Each row's true group for pattern mining: (service, template).
    let mut truth: Vec<(String, usize)> = Vec::with_capacity(a.logs);
    let mut rare = None;
    for i in 0..n_batches {
        let n = BATCH.min(a.logs - i * BATCH);
        let base = BASE + SPREAD_NS / n_batches as i64 * i as i64;
        let (b, templates) = realistic_logs(&mut rng, n, base);
        let service = arrow::compute::cast(
            b.column_by_name("service_name").expect("service_name"),
            &arrow::datatypes::DataType::Utf8,
        )?;
        let service = service.as_string::<i32>();
        truth.extend(
            templates
                .into_iter()
                .enumerate()
                .map(|(r, t)| (service.value(r).to_string(), t)),
        );
        if rare.is_none() && i == n_batches / 2 {
            // The number of a block id of one row, half-way through: the "find this id"
            // search.
            let body = b.column_by_name("body").expect("body").as_string::<i32>();
            rare = (0..b.num_rows())
                .filter_map(|r| {
                    scrydb::search::tokens(body.value(r))
                        .find(|t| t.len() >= 15 && t.bytes().all(|c| c.is_ascii_digit()))
                })
                .next()
                .map(str::to_string);
        }
        batches.push(b);
    }
    let rare = rare.ok_or("no block id generated")?;
    // The last ten minutes of the data.
    let latest = BASE + SPREAD_NS / n_batches as i64 * (n_batches as i64 - 1) + 1_000_000_000;

    // What building the index costs by itself, per record: tokenizing and collecting the
    // terms of segments of 128k rows, then encoding their files.
    let (mut add_s, mut encode_s, mut index_bytes) = (0.0, 0.0, 0usize);
    let mut builder = scrydb::search::index::TermIndexBuilder::new(Signal::Logs);
    for (i, b) in batches.iter().enumerate() {
        let t = Instant::now();
        builder.add(b)?;
        add_s += t.elapsed().as_secs_f64();
        if builder.rows() >= 128 * 1024 || i + 1 == batches.len() {
            let t = Instant::now();
            index_bytes += builder.encode()?.len();
            encode_s += t.elapsed().as_secs_f64();
            builder = scrydb::search::index::TermIndexBuilder::new(Signal::Logs);
        }
    }
    println!(
        "term index build alone: {:.2} µs per record collecting terms, {:.2} µs encoding \
         ({index_bytes} bytes)",
        add_s * 1e6 / a.logs as f64,
        encode_s * 1e6 / a.logs as f64
    );

    let patterns = mine(&batches, &truth)?;

    let plain_dir = dir.join("without-term-index");
    let plain_secs = ingest(&plain_dir, &batches, false, false)?;
    let terms_dir = dir.join("term-index-only");
    let terms_secs = ingest(&terms_dir, &batches, true, false)?;
    let _ = std::fs::remove_dir_all(&terms_dir);
    let indexed_dir = dir.join("with-term-index");
    let indexed_secs = ingest(&indexed_dir, &batches, true, true)?;
    drop(batches);
    let rate = |s: f64| a.logs as f64 / s;
    let parquet = crate::harness::files_size(&indexed_dir.join("logs"), "parquet");
    let sidx = crate::harness::files_size(&indexed_dir.join("logs"), "sidx");
    let lpat = crate::harness::files_size(&indexed_dir.join("logs"), "lpat");
    println!(
        "ingest (append + flush, {} records): without term index or log patterns {:.0} \
         records/s, with the term index {:.0} records/s ({:+.1}%), with both {:.0} records/s \
         ({:+.1}%)",
        a.logs,
        rate(plain_secs),
        rate(terms_secs),
        (rate(terms_secs) / rate(plain_secs) - 1.0) * 100.0,
        rate(indexed_secs),
        (rate(indexed_secs) / rate(plain_secs) - 1.0) * 100.0
    );
    println!(
        "log patterns: {lpat} bytes, {:.2} bytes per record",
        lpat as f64 / a.logs as f64
    );
    println!(
        "term index: {sidx} bytes, {:.2} bytes per record, {:.1}% of the segments' {parquet} bytes",
        sidx as f64 / a.logs as f64,
        sidx as f64 * 100.0 / parquet.max(1) as f64
    );

    let db = Db::open(&indexed_dir, Options::default().compaction(false))?;
    let indexed = Session::new(db.reader())?;
    let scanned = Session::with_options(
        db.reader(),
        SessionOptions {
            term_index: false,
            ..SessionOptions::default()
        },
    )?;
    let mut results = Vec::new();
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "search (newest 100)", "matches", "index p50", "index p99", "scan p50", "scan p99"
    );
    for s in searches(&rare, latest) {
        let matches = count_of(&indexed, &count_sql(&s.scry))?;
        let want = count_of(&scanned, &count_sql(&s.scry))?;
        if matches != want {
            return Err(format!(
                "{}: {matches} matches with the index, {want} without",
                s.name
            )
            .into());
        }
        let sql = search_sql(&s.scry);
        let (with, _) = timed(&indexed, &sql, a.runs)?;
        let (without, _) = timed(&scanned, &sql, a.runs.min(5))?;
        let (count_ms, _) = timed(&indexed, &count_sql(&s.scry), a.runs.min(5))?;
        println!(
            "{:<30} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            s.name,
            matches,
            pct(&with, 0.5),
            pct(&with, 0.99),
            pct(&without, 0.5),
            pct(&without, 0.99)
        );
        results.push(json!({
            "name": s.name,
            "scry_sql": sql,
            "matches": matches,
            "index_ms": {"p50": pct(&with, 0.5), "p99": pct(&with, 0.99)},
            "scan_ms": {"p50": pct(&without, 0.5), "p99": pct(&without, 0.99)},
            "count_all_with_index_ms_p50": pct(&count_ms, 0.5),
        }));
    }
    // log_patterns over the last 10 minutes, the last hour (windows that straddle
    // segments: their `time` columns are read) and all the data, each against the window
    // before; the first run reads the pattern files, later ones find them in memory.
    let mut pattern_queries = Vec::new();
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10}",
        "log_patterns", "templates", "first ms", "p50 ms", "p99 ms"
    );
    for (name, start) in [
        ("last 10 minutes", latest - 600_000_000_000),
        ("last hour", latest - 3_600_000_000_000),
        ("all 2 hours", BASE - 1),
    ] {
        let sql = format!("SELECT * FROM log_patterns({start}, {})", latest + 1);
        let (first, _) = timed(&indexed, &sql, 1)?;
        let (ms, rows) = timed(&indexed, &sql, a.runs.min(10))?;
        println!(
            "{:<30} {:>9} {:>10.1} {:>10.1} {:>10.1}",
            name,
            rows,
            first[0],
            pct(&ms, 0.5),
            pct(&ms, 0.99)
        );
        pattern_queries.push(json!({
            "name": name,
            "sql": sql,
            "templates": rows,
            "first_ms": first[0],
            "ms": {"p50": pct(&ms, 0.5), "p99": pct(&ms, 0.99)},
        }));
    }
    drop((indexed, scanned));
    db.close()?;

    let duck = if a.duckdb {
        let input = json!({
            "dir": std::path::absolute(&indexed_dir)?,
            "db_file": std::path::absolute(dir.join("duckdb-search.duckdb"))?,
            "runs": a.runs,
            "searches": searches(&rare, latest).iter().map(|s| json!({
                "name": s.name,
                "sql": search_sql(&s.duckdb),
                "fts": s.fts,
                "extra": s.duckdb,
            })).collect::<Vec<_>>(),
        });
        crate::harness::run_python("search_bench.py", &input)?
    } else {
        None
    };
    if let Some(d) = &duck {
        println!("DuckDB {}:", d["version"].as_str().unwrap_or("?"));
        if let Some(load) = d["native_load_seconds"].as_f64() {
            println!("  native load: {load:.1} s");
        }
        match d["fts_build_seconds"].as_f64() {
            Some(s) => println!("  fts index build: {s:.1} s"),
            None => println!("  fts: {}", d["fts_error"].as_str().unwrap_or("not run")),
        }
        for r in &results {
            let name = r["name"].as_str().unwrap_or_default();
            let q = &d["searches"][name];
            println!(
                "  {:<30} ILIKE p50 {:>8.1} ms p99 {:>8.1} ms (matches {}); fts p50 {} ms",
                name,
                q["ilike_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                q["ilike_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                q["matches"],
                q["fts_ms"]["p50"]
                    .as_f64()
                    .map_or("-".to_string(), |v| format!("{v:.1}")),
            );
        }
    }
    let out: Value = json!({
        "logs": a.logs,
        "seed": a.seed,
        "runs": a.runs,
        "machine_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "index_build_us_per_record": {"collect": add_s * 1e6 / a.logs as f64, "encode": encode_s * 1e6 / a.logs as f64},
        "ingest_records_per_s": {
            "without_term_index_or_patterns": rate(plain_secs),
            "with_term_index": rate(terms_secs),
            "with_term_index_and_patterns": rate(indexed_secs),
        },
        "log_patterns": {
            "mining": patterns,
            "pattern_file_bytes": lpat,
            "pattern_file_bytes_per_record": lpat as f64 / a.logs as f64,
            "queries": pattern_queries,
        },
        "term_index_bytes": sidx,
        "segment_bytes": parquet,
        "term_index_bytes_per_record": sidx as f64 / a.logs as f64,
        "term_index_share_of_segments": sidx as f64 / parquet.max(1) as f64,
        "searches": results,
        "duckdb": duck,
    });
    std::fs::write(&a.json, serde_json::to_string_pretty(&out)?)?;
    println!("results in {}", a.json.display());
    Ok(())
}
