//! Crash recovery for real: a child process ingesting batches (flushing, compacting and
//! applying retention all the while) is killed with SIGKILL at random moments, many times;
//! after each reopen every batch the child acknowledged is there exactly once, and no half
//! batch is visible.
//!
//! `SCRY_CRASH_ITERS` sets the number of kills (default 10, for CI); run it longer with e.g.
//! `SCRY_CRASH_ITERS=500 cargo test --test it crash -- --nocapture`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use scrydb::{Db, Signal};
use scrydb_workload::Rng;

use crate::common::*;

const CHILD_ENV: &str = "SCRY_CRASH_CHILD_DIR";
const START_ENV: &str = "SCRY_CRASH_CHILD_START";

/// Rows in batch `k` (deterministic, so a reader can tell a whole batch from a part).
fn rows_in(k: u64) -> usize {
    1 + (k.wrapping_mul(7919) % 200) as usize
}

/// Batch `k`: spans whose `name` is `b<k>`.
fn batch(k: u64) -> RecordBatch {
    let b = synth(
        Signal::Spans,
        k,
        rows_in(k),
        BASE + (k as i64 % 500) * 60_000_000_000,
    );
    let idx = b.schema().index_of("name").expect("name");
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    cols[idx] = Arc::new(StringArray::from(vec![format!("b{k}"); b.num_rows()]));
    RecordBatch::try_new(b.schema(), cols).expect("batch")
}

/// The child: ingests batches from `START` on until killed, printing `ACK k` after each
/// acknowledged append. Does nothing when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV)
        .expect("start")
        .parse()
        .expect("number");
    // A small memtable so that flushes (and their crash windows) happen all the time, and
    // background compaction every 20 ms so that merges (and theirs) do too: the batches'
    // partitions (of 2025) are closed, so every second small segment is merged.
    // Retention (at open, and on demand every 20 ms) drops the logs, which are written
    // into partitions of 2000, while the spans' partitions of 2025 stay.
    let db = Db::open(
        &dir,
        small_opts()
            .memtable_size(128 << 10)
            .compaction_interval(Duration::from_millis(20))
            .retention(Some(RETAIN)),
    )
    .expect("child open");
    std::thread::scope(|s| {
        s.spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(20));
                db.retain(Some(RETAIN), None).expect("child retain");
            }
        });
        for k in start.. {
            if k % 5 == 0 {
                // Interleave another signal so that flushes write several files.
                let at = OLD + (k as i64 % 100) * HOUR;
                db.append(Signal::Logs, &synth(Signal::Logs, k, 50, at))
                    .expect("append logs");
            }
            db.append(Signal::Spans, &batch(k)).expect("child append");
            println!("ACK {k}");
        }
    });
}

/// Where the child's logs go: partitions of 2000-01-01, older than [`RETAIN`].
const OLD: i64 = 946_684_800_000_000_000;
/// The child's retention: ten years.
const RETAIN: Duration = Duration::from_secs(10 * 365 * 86_400);

fn batches_in_store(db: &Db) -> HashMap<u64, usize> {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for b in scan(db, Signal::Spans) {
        let names = b.column_by_name("name").expect("name");
        let names = names.as_string::<i32>();
        for r in 0..b.num_rows() {
            let k: u64 = names.value(r)[1..].parse().expect("b<k>");
            *seen.entry(k).or_default() += 1;
        }
    }
    seen
}

#[test]
fn kill_9_during_ingest_loses_no_acknowledged_batch() {
    let iters: u64 = std::env::var("SCRY_CRASH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Rng::new(0xC0FFEE);
    let mut acked: BTreeMap<u64, ()> = BTreeMap::new();
    let mut start = 0u64;
    let mut total_kills = 0;
    for iter in 0..iters {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(START_ENV, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut ks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line
                    .strip_prefix("ACK ")
                    .and_then(|k| k.parse::<u64>().ok())
                {
                    ks.push(k);
                }
            }
            ks
        });
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        total_kills += 1;
        let got_acks = reader.join().expect("reader");
        for k in &got_acks {
            acked.insert(*k, ());
        }

        let db = open(dir.path());
        let seen = batches_in_store(&db);
        for k in acked.keys() {
            assert_eq!(
                seen.get(k).copied(),
                Some(rows_in(*k)),
                "iteration {iter}: acknowledged batch {k} is missing or incomplete"
            );
        }
        for (k, n) in &seen {
            assert_eq!(
                *n,
                rows_in(*k),
                "iteration {iter}: batch {k} is partly visible"
            );
        }
        let last = seen.keys().max().copied().unwrap_or(start);
        // Alternate between closing cleanly (flush) and leaving recovery to the next child.
        if iter % 2 == 0 {
            db.close().expect("close");
        } else {
            drop(db);
        }
        start = start
            .max(last + 1)
            .max(got_acks.last().map_or(0, |k| k + 1))
            + 1_000;
    }
    // Whatever retention had not dropped yet when a child was killed goes now.
    let db = Db::open(dir.path(), small_opts().retention(Some(RETAIN))).expect("open");
    db.retain(Some(RETAIN), None).expect("retain");
    assert_eq!(count(&scan(&db, Signal::Logs)), 0, "old logs all dropped");
    let seen = batches_in_store(&db);
    for k in acked.keys() {
        assert_eq!(
            seen.get(k).copied(),
            Some(rows_in(*k)),
            "batch {k} after retention"
        );
    }
    db.close().expect("close");
    assert!(
        acked.len() > iters as usize,
        "children acknowledged too little to test anything ({} batches)",
        acked.len()
    );
    eprintln!(
        "crash test: {total_kills} kills, {} acknowledged batches all recovered",
        acked.len()
    );
}
