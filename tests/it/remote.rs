//! Stores in S3-compatible object storage, against a real S3 server on loopback (moto's,
//! started by `tests/py/s3_server.py` from the test venv) with a proxy in front of it that
//! fails or stalls requests on command: a writer's segments, indexes and manifest in
//! object storage, its lease and conditional manifest commits, the cache, retention
//! deleting objects, failures and timeouts, a view of many writers, and DuckDB reading the
//! same objects.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use arrow::array::RecordBatch;
use scrydb::remote::{RemoteOptions, RemoteStore, S3Options, View};
use scrydb::{Db, Signal};

use crate::common::*;

pub const BUCKET: &str = "scry-test";

/// The S3 server and its fault proxy; stopped when dropped.
pub struct S3 {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// moto's endpoint.
    pub direct: String,
    /// The proxy's endpoint.
    pub proxy: String,
}

impl S3 {
    pub fn start() -> S3 {
        let python = std::env::var_os("SCRY_PYTHON").unwrap_or_else(|| {
            panic!(
                "the object-storage tests need moto's S3 server from the test venv: run them \
                 with tests/run.sh, which installs it into target/venv, or set SCRY_PYTHON"
            )
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/s3_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(BUCKET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tests/py/s3_server.py");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the endpoints");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("s3_server.py printed {line:?}: {e}"));
        S3 {
            stdin: child.stdin.take(),
            child,
            stdout,
            direct: v["s3"].as_str().expect("s3").to_string(),
            proxy: v["proxy"].as_str().expect("proxy").to_string(),
        }
    }

    /// Sends a fault command (see s3_server.py) and waits for its answer.
    pub fn command(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{cmd}").expect("send");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        line.trim().to_string()
    }

    /// Options reaching the server through the proxy, with short limits.
    pub fn options(&self) -> S3Options {
        let mut o = S3Options::default();
        o.endpoint = Some(self.proxy.clone());
        o.access_key_id = Some("test".into());
        o.secret_access_key = Some("test".into());
        o.timeout = Duration::from_secs(5);
        o.connect_timeout = Duration::from_secs(2);
        o.max_retries = 3;
        o.retry_timeout = Duration::from_secs(30);
        o
    }

    pub fn store(&self, prefix: &str) -> RemoteStore {
        RemoteStore::s3(&format!("s3://{BUCKET}/{prefix}"), &self.options()).expect("store")
    }

    pub fn store_with(&self, prefix: &str, o: &S3Options) -> RemoteStore {
        RemoteStore::s3(&format!("s3://{BUCKET}/{prefix}"), o).expect("store")
    }

    /// Object keys under `prefix`, read directly from the server.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store = self.store("").object_store();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let p = object_store::path::Path::from(prefix);
        let mut keys: Vec<String> = rt
            .block_on(store.list(Some(&p)).try_collect::<Vec<_>>())
            .expect("list")
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn remote_opts() -> RemoteOptions {
    RemoteOptions::default()
}

/// Spans, logs and metrics over two hourly partitions, in `parts` flushes.
fn batches(seed: u64) -> Vec<(Signal, RecordBatch)> {
    let mut out = Vec::new();
    for i in 0..2u64 {
        let base = BASE + i as i64 * HOUR;
        out.push((Signal::Spans, synth(Signal::Spans, seed + i, 2000, base)));
        out.push((Signal::Logs, synth(Signal::Logs, seed + i, 1000, base)));
        out.push((Signal::Metrics, synth(Signal::Metrics, seed + i, 200, base)));
    }
    out
}

fn write(db: &Db, data: &[(Signal, RecordBatch)]) {
    for (s, b) in data {
        db.append(*s, b).expect("append");
        db.flush().expect("flush");
    }
}

fn all_rows(db: &Db) -> Vec<Vec<String>> {
    [Signal::Spans, Signal::Logs, Signal::Metrics]
        .into_iter()
        .map(|s| rows(&scan(db, s)))
        .collect()
}

fn sql(db: &Db, q: &str) -> Vec<String> {
    rows(&db.sql_blocking(q).expect(q))
}

const QUERIES: &[&str] = &[
    "SELECT service_name, count(*), sum(duration_ns) FROM spans GROUP BY service_name",
    "SELECT count(*) FROM logs l JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id",
    "SELECT name, count(*) FROM metrics GROUP BY name",
];

#[test]
fn a_writer_keeps_its_segments_in_object_storage() {
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let data = batches(1);
    // The same rows in a local store, to compare with.
    let plain = tempfile::tempdir().expect("tempdir");
    let reference = open(plain.path());
    write(&reference, &data);

    let dir = local.path().join("w");
    let db = Db::open_remote(&dir, s3.store("one"), remote_opts(), small_opts()).expect("open");
    write(&db, &data);
    assert_eq!(all_rows(&db), all_rows(&reference));
    for q in QUERIES {
        assert_eq!(sql(&db, q), sql(&reference, q), "{q}");
    }
    // Segments, their side files and the manifest are objects; locally only the log, the
    // lock and the cache.
    let keys = s3.keys("one");
    let segs = db.snapshot().segments(Signal::Spans, None);
    assert!(!segs.is_empty());
    for seg in &segs {
        for ext in ["parquet", "tidx", "rollup", "sidx"] {
            let key = format!("one/{}", seg.path.replace(".parquet", &format!(".{ext}")));
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }
    drop(segs);
    let manifests: Vec<_> = keys.iter().filter(|k| k.contains("MANIFEST-")).collect();
    assert_eq!(manifests.len(), 1, "{keys:?}");
    assert!(
        keys.contains(&"one/LOCK".to_string()),
        "the writer's lease: {keys:?}"
    );
    assert!(!dir.join("spans").exists() && !dir.join("MANIFEST-").exists());
    assert!(dir.join("wal").is_dir() && dir.join("cache").is_dir());

    // A trace is found through the per-segment index, as in a local store.
    let id = first_trace_id(&data[0].1);
    let want = reference.trace(id).expect("trace");
    let got = db.trace(id).expect("trace");
    assert_eq!(rows(&got.spans), rows(&want.spans));
    assert_eq!(rows(&got.logs), rows(&want.logs));

    // A second writer on the prefix is refused while the first holds its lease.
    let other = local.path().join("other");
    let err = Db::open_remote(&other, s3.store("one"), remote_opts(), small_opts())
        .expect_err("second writer");
    let msg = err.to_string();
    assert!(
        msg.contains("held by another writer") && msg.contains("s3://scry-test/one/LOCK"),
        "{msg}"
    );

    // A reader from another directory (another host) reads what was committed, even with
    // a cache of zero bytes (every read a GET).
    let mut no_cache = RemoteOptions::default();
    no_cache.cache_bytes = 0;
    let reader = Db::open_remote_read_only(
        local.path().join("reader"),
        s3.store("one"),
        no_cache,
        small_opts(),
    )
    .expect("reader");
    assert_eq!(all_rows(&reader), all_rows(&reference));
    assert_eq!(
        rows(&reader.trace(id).expect("trace").spans),
        rows(&want.spans)
    );
    drop(reader);

    // Compaction replaces objects; retention deletes them.
    db.compact().expect("compact");
    assert_eq!(all_rows(&db), all_rows(&reference));
    let before = s3.keys("one").len();
    let stats = db.drop_partitions_before(BASE + HOUR).expect("retention");
    assert!(stats.segments > 0, "{stats:?}");
    // The files are deleted once no snapshot reads them (the SQL session keeps its last
    // statement's until the next one).
    sql(&db, "SELECT count(*) FROM spans");
    let mut after = s3.keys("one");
    for _ in 0..100 {
        if after.iter().all(|k| !k.contains("20251125T000000Z")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = s3.keys("one");
    }
    assert!(after.len() < before, "{before} -> {after:?}");
    assert!(
        after.iter().all(|k| !k.contains("20251125T000000Z")),
        "the first hour's objects are gone: {after:?}"
    );
    let kept = all_rows(&db);
    db.close().expect("close");
    assert!(
        !s3.keys("one").contains(&"one/LOCK".to_string()),
        "close releases the lease"
    );

    // Reopened from the same directory, and then from an empty one (a new host: only
    // object storage), the store reads the same.
    let db = Db::open_remote(&dir, s3.store("one"), remote_opts(), small_opts()).expect("reopen");
    assert_eq!(all_rows(&db), kept);
    db.close().expect("close");
    let db = Db::open_remote(&other, s3.store("one"), remote_opts(), small_opts())
        .expect("open from a new directory");
    assert_eq!(all_rows(&db), kept);
    db.close().expect("close");
}

#[test]
fn a_crashed_writer_takes_its_lease_back_and_a_second_writer_cannot_lose_rows() {
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (local.path().join("a"), local.path().join("b"));
    let a = Db::open_remote(&a_dir, s3.store("shared"), remote_opts(), small_opts()).expect("a");
    write(&a, &batches(10)[..1]);
    // A process that dies without closing leaves its lease; the same directory takes it
    // back (a restart), another needs take_over.
    std::mem::forget(a);
    let a = Db::open_remote(&a_dir, s3.store("shared"), remote_opts(), small_opts());
    // The forgotten handle still holds the local lock in this process.
    assert!(a.is_err());
    let mut take = RemoteOptions::default();
    take.take_over = true;
    let b =
        Db::open_remote(&b_dir, s3.store("shared"), take.clone(), small_opts()).expect("take over");
    // Now two writers share the prefix (the misuse take_over warns about). Opening takes
    // the store over with a manifest of its own, so the last to open — c — is the one
    // whose commits go through; b's flush is refused and b keeps its rows in its log.
    let c_dir = local.path().join("c");
    let c = Db::open_remote(&c_dir, s3.store("shared"), take, small_opts()).expect("c");
    let b_rows = synth(Signal::Spans, 30, 500, BASE);
    b.append(Signal::Spans, &b_rows)
        .expect("append is acknowledged by the log");
    let err = b.flush().expect_err("b's commit must be refused");
    let msg = format!("{err}");
    assert!(
        msg.contains("another writer is") && msg.contains("s3://scry-test/shared"),
        "{msg}"
    );
    let c_rows = batches(20);
    write(&c, &c_rows[..2]);
    // c's segments (and a's) are all named by the current manifest.
    let c_spans = count(&scan(&c, Signal::Spans));
    assert_eq!(
        c_spans,
        batches(10)[0].1.num_rows() + c_rows[0].1.num_rows()
    );
    c.close().expect("close c");
    drop(b);
    // b's directory, reopened once c is gone, replays its whole log onto the newest
    // manifest: every writer's rows are there, none twice.
    let mut take = RemoteOptions::default();
    take.take_over = true;
    let b =
        Db::open_remote(&b_dir, s3.store("shared"), take.clone(), small_opts()).expect("reopen b");
    b.flush().expect("flush");
    assert_eq!(count(&scan(&b, Signal::Spans)), c_spans + b_rows.num_rows());
    // A restart after that commit (not foreign any more) replays nothing twice.
    b.close().expect("close");
    let b = Db::open_remote(&b_dir, s3.store("shared"), take, small_opts()).expect("again");
    assert_eq!(count(&scan(&b, Signal::Spans)), c_spans + b_rows.num_rows());
    b.close().expect("close");
    // A directory bound to one store refuses another.
    let err = Db::open_remote(&b_dir, s3.store("elsewhere"), remote_opts(), small_opts())
        .expect_err("bound to shared");
    assert!(
        err.to_string()
            .contains("give each store its own local directory"),
        "{err}"
    );
}

#[test]
fn failing_and_stalling_requests() {
    let mut s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let dir = local.path().join("w");
    let mut o = s3.options();
    o.timeout = Duration::from_secs(1);
    o.max_retries = 2;
    o.retry_timeout = Duration::from_secs(10);
    let store = s3.store_with("faulty", &o);
    let db = Db::open_remote(&dir, store.clone(), remote_opts(), small_opts()).expect("open");
    let data = batches(40);

    // A 503 and a stalled request are retried: the flush succeeds.
    assert_eq!(s3.command("fail 1 PUT"), "ok");
    assert_eq!(s3.command("stall 1 3 PUT"), "ok");
    write(&db, &data[..1]);
    assert_eq!(count(&scan(&db, Signal::Spans)), data[0].1.num_rows());

    // A server that keeps failing: the flush fails naming the object, nothing is lost.
    assert_eq!(s3.command("fail 1000 PUT"), "ok");
    db.append(Signal::Logs, &data[1].1).expect("append");
    let started = std::time::Instant::now();
    let err = db.flush().expect_err("flush against a failing server");
    let msg = err.to_string();
    assert!(msg.contains("s3://scry-test/faulty/"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the retry limits"
    );
    // Reads of committed data still work.
    assert_eq!(count(&scan(&db, Signal::Spans)), data[0].1.num_rows());
    drop(db);
    assert_eq!(s3.command("clear"), "ok");
    let db = Db::open_remote(&dir, store.clone(), remote_opts(), small_opts()).expect("reopen");
    db.flush().expect("flush");
    assert_eq!(count(&scan(&db, Signal::Logs)), data[1].1.num_rows());

    // Reads that stall past the request timeout are retried; reads that always fail end
    // with an error naming the object, within the retry limits.
    let mut no_cache = RemoteOptions::default();
    no_cache.cache_bytes = 0;
    let reader = Db::open_remote_read_only(local.path().join("r"), store, no_cache, small_opts())
        .expect("reader");
    assert_eq!(s3.command("stall 1 3 GET /scry-test/faulty/spans"), "ok");
    assert_eq!(count(&scan(&reader, Signal::Spans)), data[0].1.num_rows());
    assert_eq!(s3.command("fail 1000 GET /scry-test/faulty/spans"), "ok");
    let started = std::time::Instant::now();
    let err = reader
        .snapshot()
        .scan(Signal::Spans, None)
        .expect_err("failing reads");
    assert!(
        err.to_string().contains("s3://scry-test/faulty/spans/"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s3.command("clear"), "ok");
    db.close().expect("close");
}

/// Splits a spans batch into `n` interleaved parts: every trace's spans end up spread
/// over the parts.
fn split(batch: &RecordBatch, n: usize) -> Vec<RecordBatch> {
    (0..n)
        .map(|k| {
            let idx: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|i| *i as usize % n == k)
                .collect();
            let idx = arrow::array::UInt32Array::from(idx);
            let cols = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::take(c, &idx, None).expect("take"))
                .collect();
            RecordBatch::try_new(batch.schema(), cols).expect("batch")
        })
        .collect()
}

#[test]
fn many_writers_read_as_one_store() {
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let all_spans = synth(Signal::Spans, 50, 3000, BASE);
    let logs = synth(Signal::Logs, 50, 1500, BASE + HOUR);
    let parts = split(&all_spans, 3);
    let mut writers = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let db = Db::open_remote(
            local.path().join(format!("w{i}")),
            s3.store(&format!("fleet/host-{i}")),
            remote_opts(),
            small_opts(),
        )
        .expect("writer");
        db.append(Signal::Spans, part).expect("append");
        db.flush().expect("flush");
        writers.push(db);
    }
    writers[1].append(Signal::Logs, &logs).expect("append");
    writers[1].flush().expect("flush");
    // The same rows in one local store.
    let plain = tempfile::tempdir().expect("tempdir");
    let reference = open(plain.path());
    reference.append(Signal::Spans, &all_spans).expect("append");
    reference.append(Signal::Logs, &logs).expect("append");
    reference.flush().expect("flush");

    let view = Db::open_view(
        local.path().join("view"),
        &View::new().writers_under(s3.store("fleet")),
        remote_opts(),
        small_opts(),
    )
    .expect("view");
    assert!(view.is_read_only());
    assert_eq!(all_rows(&view), all_rows(&reference));
    for q in QUERIES {
        assert_eq!(sql(&view, q), sql(&reference, q), "{q}");
    }
    // A trace whose spans three writers stored is found whole, through each segment's
    // index.
    for id in trace_ids(&all_spans).into_iter().step_by(97) {
        let got = view.trace(id).expect("trace");
        let want = reference.trace(id).expect("trace");
        assert_eq!(rows(&got.spans), rows(&want.spans));
        assert_eq!(rows(&got.logs), rows(&want.logs));
        assert!(got.rows(Signal::Spans) > 0);
    }
    // Time pruning still works per segment.
    let hour0 = view.snapshot().segments(
        Signal::Spans,
        Some(scrydb::TimeRange::new(BASE + 2 * HOUR, BASE + 3 * HOUR)),
    );
    assert!(hour0.is_empty());

    // A writer's new commit, and a writer that starts later, show up at the next refresh.
    let more = synth(Signal::Spans, 60, 400, BASE + 2 * HOUR);
    writers[0].append(Signal::Spans, &more).expect("append");
    writers[0].flush().expect("flush");
    let late = Db::open_remote(
        local.path().join("w-late"),
        s3.store("fleet/host-late"),
        remote_opts(),
        small_opts(),
    )
    .expect("late writer");
    late.append(Signal::Spans, &more).expect("append");
    late.flush().expect("flush");
    view.refresh().expect("refresh");
    assert_eq!(
        count(&scan(&view, Signal::Spans)),
        all_spans.num_rows() + 2 * more.num_rows()
    );
    // Retention by one writer removes its segments from the view.
    writers[0]
        .drop_partitions_before(BASE + 3 * HOUR)
        .expect("retention");
    view.refresh().expect("refresh");
    let n = count(&scan(&view, Signal::Spans));
    assert_eq!(
        n,
        all_spans.num_rows() - parts[0].num_rows() + more.num_rows()
    );

    // An explicit list of prefixes, including a local store, is a view too.
    let view2 = Db::open_view(
        local.path().join("view2"),
        &View::new()
            .remote(s3.store("fleet/host-1"))
            .remote(s3.store("fleet/host-2"))
            .local(plain.path()),
        remote_opts(),
        small_opts(),
    )
    .expect("view2");
    assert_eq!(
        count(&scan(&view2, Signal::Spans)),
        parts[1].num_rows() + parts[2].num_rows() + all_spans.num_rows()
    );
    let err = Db::open_view(
        local.path().join("view3"),
        &View::new(),
        remote_opts(),
        small_opts(),
    )
    .expect_err("empty view");
    assert!(err.to_string().contains("at least one store"), "{err}");
    for w in writers {
        w.close().expect("close");
    }
    late.close().expect("close");
}

/// DuckDB (from PyPI, with the httpfs extension of the matching PyPI package) reads the
/// same objects: the live segments the manifest names.
#[test]
fn duckdb_reads_the_same_objects() {
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let db = Db::open_remote(
        local.path().join("w"),
        s3.store("duck"),
        remote_opts(),
        small_opts(),
    )
    .expect("open");
    write(&db, &batches(70));
    let files: Vec<String> = db
        .snapshot()
        .segments(Signal::Spans, None)
        .iter()
        .map(|s| format!("s3://{BUCKET}/duck/{}", s.path))
        .collect();
    let want: Vec<i64> = [
        "SELECT count(*) FROM spans",
        "SELECT sum(duration_ns) FROM spans",
        "SELECT count(DISTINCT service_name) FROM spans",
    ]
    .iter()
    .map(|q| single_i64(&db.sql_blocking(q).expect(q)))
    .collect();
    let python = std::env::var_os("SCRY_PYTHON").expect("SCRY_PYTHON (tests/run.sh sets it)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/duckdb_s3.py");
    let endpoint = s3.direct.trim_start_matches("http://").to_string();
    let out = Command::new(python)
        .arg(script)
        .arg(&endpoint)
        .args(&files)
        .output()
        .expect("run duckdb_s3.py");
    assert!(
        out.status.success(),
        "duckdb_s3.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert_eq!(
        got, want,
        "DuckDB vs ScryDB: count, sum of durations, services"
    );
    db.close().expect("close");
}

/// `scry` with `--remote` and `--writers-under`: two writers ingest into their prefixes,
/// `scry sql` reads one of them, and both as one view.
#[test]
fn the_cli_writes_and_reads_object_storage() {
    let s3 = S3::start();
    let local = tempfile::tempdir().expect("tempdir");
    let scry = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_scry"))
            .args(args)
            .env("AWS_ENDPOINT_URL", &s3.direct)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("SCRY_DB")
            .env_remove("SCRY_REMOTE")
            .output()
            .expect("scry runs");
        let (ok, stdout, stderr) = (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(ok, "scry {args:?} failed: {stderr}");
        stdout
    };
    let mut totals = 0;
    for (i, n) in [(0, 3000), (1, 2000)] {
        let db = local.path().join(format!("w{i}"));
        let url = format!("s3://{BUCKET}/cli/host-{i}");
        scry(&[
            "synth",
            "--db",
            db.to_str().expect("utf-8"),
            "--remote",
            &url,
            "--spans",
            &n.to_string(),
            "--seed",
            &i.to_string(),
        ]);
        totals += n;
        let got = scry(&[
            "sql",
            "--db",
            local.path().join(format!("r{i}")).to_str().expect("utf-8"),
            "--remote",
            &url,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM spans",
        ]);
        assert!(got.contains(&n.to_string()), "{got}");
    }
    let got = scry(&[
        "sql",
        "--db",
        local.path().join("view").to_str().expect("utf-8"),
        "--writers-under",
        &format!("s3://{BUCKET}/cli"),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM spans",
    ]);
    assert!(got.contains(&totals.to_string()), "{got}");
    // A view is read-only, and local-only commands say so.
    let out = Command::new(env!("CARGO_BIN_EXE_scry"))
        .args(["tail", "--remote", "s3://scry-test/cli/host-0"])
        .output()
        .expect("scry runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("local directory only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
