//! Helpers shared by the integration tests.

use std::io::{Read, Write};
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use scrydb::{Db, Durability, Options, Signal};
use scrydb_workload::synth::{self, Rng};

/// 2025-11-25T00:00:00Z in ns.
pub const BASE: i64 = 1_764_028_800_000_000_000;
pub const HOUR: i64 = 3_600_000_000_000;

/// Options for tests: small memtable, fast.
pub fn small_opts() -> Options {
    Options::default()
        .memtable_size(256 << 10)
        .durability(Durability::Sync)
}

pub fn open(dir: &Path) -> Db {
    Db::open(dir, small_opts()).expect("open")
}

/// Every row of every batch rendered as one string, sorted: equal multisets of rows give
/// equal vectors, whatever the batch boundaries and row order.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = formatted(batches, true);
    out.sort();
    out
}

/// Each row's values joined by `|`, in the order returned.
pub fn values(batches: &[RecordBatch]) -> Vec<String> {
    formatted(batches, false)
}

fn formatted(batches: &[RecordBatch], named: bool) -> Vec<String> {
    let opts = FormatOptions::default().with_null("∅");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable"))
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .zip(&fmts)
                .map(|(f, x)| {
                    if named {
                        format!("{}={}", f.name(), x.value(r))
                    } else {
                        x.value(r).to_string()
                    }
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// `batch` with its column `name` replaced by `column` (same type).
pub fn with_column(batch: &RecordBatch, name: &str, column: arrow::array::ArrayRef) -> RecordBatch {
    let at = batch.schema().index_of(name).expect("the column exists");
    let mut cols = batch.columns().to_vec();
    cols[at] = column;
    RecordBatch::try_new(batch.schema(), cols).expect("same type")
}

pub fn count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// All rows of a signal through a fresh snapshot.
pub fn scan(db: &Db, signal: Signal) -> Vec<RecordBatch> {
    db.snapshot().scan(signal, None).expect("scan")
}

pub fn synth(signal: Signal, seed: u64, n: usize, base: i64) -> RecordBatch {
    synth::batch(signal, &mut Rng::new(seed), n, base)
}

/// Copies a directory tree (a store, a fixture) into `to`, which must exist.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Every file under `dir`, at any depth (directories are not listed).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The trace id of every row of a spans or logs batch (an all-zero id for a null one).
pub fn trace_ids(batch: &RecordBatch) -> Vec<[u8; 16]> {
    let ids = batch
        .column_by_name("trace_id")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
        })
        .expect("trace ids");
    (0..batch.num_rows())
        .map(|i| ids.value(i).try_into().expect("16 bytes"))
        .collect()
}

/// The trace id of the first row of a spans batch.
pub fn first_trace_id(spans: &RecordBatch) -> [u8; 16] {
    trace_ids(spans)[0]
}

/// The one BIGINT value of a one-row, one-column result (`SELECT count(*) ...`).
pub fn single_i64(batches: &[RecordBatch]) -> i64 {
    use arrow::array::AsArray;
    assert_eq!(count(batches), 1, "one row expected");
    batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

/// Runs the `scry` binary with `args`: (success, stdout, stderr).
pub fn run_scry<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scry"))
        .args(args)
        .output()
        .expect("scry runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rows as column name → displayed value (`∅` for null), in time order.
pub fn cells(batches: &[RecordBatch]) -> Vec<std::collections::BTreeMap<String, String>> {
    let opts = FormatOptions::default().with_null("∅");
    let mut out = Vec::new();
    for b in batches {
        let times = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampNanosecondType>(
            b.column(0),
        );
        for r in 0..b.num_rows() {
            let mut row = std::collections::BTreeMap::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                let fmt = ArrayFormatter::try_new(c.as_ref(), &opts).expect("formattable");
                row.insert(f.name().clone(), fmt.value(r).to_string());
            }
            row.insert("time_ns".into(), times.value(r).to_string());
            out.push(row);
        }
    }
    out.sort_by_key(|r| (r["time_ns"].clone(), r["name"].clone()));
    out
}

/// Asserts that `row` (from [`cells`]) has each of `want`'s column values.
pub fn assert_row(row: &std::collections::BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (col, value) in want {
        assert_eq!(
            row.get(*col).map(String::as_str),
            Some(*value),
            "column {col} of {row:#?}"
        );
    }
}

/// `descendants('true', 'true')` over `db`'s spans: every ancestor pair, with how many
/// traces' trees were read from their segment and how many were built.
pub fn all_descendants(db: &scrydb::Db) -> scrydb::sql::structure::Related {
    let session = scrydb::sql::Session::new(db.reader()).expect("session");
    scrydb::sql::block_on(scrydb::sql::structure::relate(
        &session,
        scrydb::sql::structure::Relation::Descendants,
        "true",
        "true",
    ))
    .expect("descendants")
}

/// An HTTP answer: status, headers (lowercase names), body.
pub type Answer = (u16, std::collections::BTreeMap<String, String>, Vec<u8>);

/// One HTTP/1.1 request on a new connection: status, headers (lowercase names), body.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: no HTTP answer: {e}"))
}

/// [`http`], or why no answer came (the server is gone).
pub fn try_http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // The server may answer (and close) before reading a body it refuses.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, raw[split + 4..].to_vec()))
}

/// Stores every chunk of `workload` (traces, logs, metrics) through the file ingester.
pub fn ingest_workload(db: &Db, workload: scrydb_workload::Workload) {
    use scrydb::otlp::Request;
    let mut ingester =
        scrydb::otlp::ingest::Ingester::new(db, scrydb::otlp::ingest::IngestOptions::default());
    for chunk in workload {
        for r in [
            Request::Traces(chunk.traces),
            Request::Logs(chunk.logs),
            Request::Metrics(chunk.metrics),
        ] {
            ingester.ingest_request(&r).expect("ingest");
        }
    }
    ingester.finish();
}
