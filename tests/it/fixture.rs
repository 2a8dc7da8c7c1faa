//! A database of each on-disk format version is checked in: segments of every signal with
//! their trace indexes (`.tidx`), a manifest, and a log with unflushed frames. Each must
//! keep opening, with every row as it was and its indexes used, in every later version.
//!
//! - `tests/fixtures/v1`: the first format. Its segments predate the trace index; their
//!   `.tidx` files (index format 1) were added afterwards by
//!   `scrydb::index::build_for_segment` (what `scry reindex` runs), leaving every other file
//!   as it was. It has no span rollups: they are computed from its rows.
//! - `tests/fixtures/v2`: trace index format 2 and span rollups (`.rollup`, format 1).
//! - `tests/fixtures/v3`: segment format 2 (span segments do not store `end_time`).
//! - `tests/fixtures/v4`: term indexes (`.sidx`, format 1) beside span and log segments.
//!   Earlier fixtures have none: searches scan them until `scry reindex` writes them.
//! - `tests/fixtures/v5`: log patterns (`.lpat`, format 1) beside log segments. Earlier
//!   fixtures have none: `log_patterns` mines their rows until `scry reindex` writes them.
//! - `tests/fixtures/v6`: term index format 2 (event names, numeric attribute ranges).
//!   The format 1 indexes of v4 and v5 answer every other search; `scry reindex` rewrites
//!   them.
//! - `tests/fixtures/v7`: segment format 3 (span segments store each span's place in its
//!   trace's tree). Earlier span segments have none: structural functions build the trees
//!   from their spans.
//!
//! Write a new one (only when introducing a new format version, into a new folder) with
//! `SCRY_WRITE_FIXTURE=v<N> cargo test --test it fixture`.

use std::path::{Path, PathBuf};

use scrydb::{Db, Options, Signal};

use crate::common::*;

fn fixture_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{version}"))
}

fn expected_path(version: &str, signal: Signal) -> PathBuf {
    fixture_dir(version).join(format!("expected-{}.txt", signal.name()))
}

#[test]
fn write_fixture() {
    let Ok(version) = std::env::var("SCRY_WRITE_FIXTURE") else {
        return;
    };
    let out = fixture_dir(&version).join("db");
    let _ = std::fs::remove_dir_all(fixture_dir(&version));
    std::fs::create_dir_all(&out).expect("mkdir");
    let live = tempfile::tempdir().expect("tempdir");
    let db = Db::open(live.path(), Options::default()).expect("open");
    let mut all: Vec<(Signal, Vec<arrow::array::RecordBatch>)> =
        Signal::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for (i, (s, batches)) in all.iter_mut().enumerate() {
        // Enough spans for a segment of several checked blocks (segment format 2).
        let n = if *s == Signal::Spans { 400 } else { 20 };
        let b = synth(*s, 100 + i as u64, n, BASE - 2 * HOUR);
        db.append(*s, &b).expect("append");
        batches.push(b);
    }
    db.flush().expect("flush");
    for (i, (s, batches)) in all.iter_mut().enumerate() {
        let b = synth(*s, 200 + i as u64, 5, BASE);
        db.append(*s, &b).expect("append");
        batches.push(b);
    }
    // Copy while open: the second round is only in the log.
    copy_dir(live.path(), &out);
    std::fs::remove_file(out.join("LOCK")).expect("no lock in the fixture");
    for (s, batches) in &all {
        std::fs::write(expected_path(&version, *s), rows(batches).join("\n"))
            .expect("write expected");
    }
    drop(db);
}

#[test]
fn version_1_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v1", true);
}

#[test]
fn version_2_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v2", false);
}

#[test]
fn version_3_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v3", false);
}

#[test]
fn version_4_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v4", false);
}

#[test]
fn version_5_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v5", false);
}

#[test]
fn version_6_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v6", false);
}

#[test]
fn version_7_fixture_opens_with_every_row() {
    fixture_opens_with_every_row("v7", false);
}

/// Every (trace, descendant, ancestor, distance) of the spans in `batches`, from the tree
/// [`scrydb::structure::TraceShape`] builds per trace.
fn descendant_pairs(
    batches: &[arrow::array::RecordBatch],
) -> std::collections::BTreeSet<scrydb::sql::structure::Pair> {
    use arrow::array::{Array, AsArray};
    let mut by_trace: std::collections::HashMap<[u8; 16], Vec<scrydb::structure::SpanLink>> =
        std::collections::HashMap::new();
    for b in batches {
        let id = |name: &str| {
            b.column_by_name(name)
                .expect("column")
                .as_fixed_size_binary()
                .clone()
        };
        let ns = |name: &str| {
            arrow::compute::cast(
                b.column_by_name(name).expect("column"),
                &arrow::datatypes::DataType::Int64,
            )
            .expect("cast")
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone()
        };
        let (trace, span, parent) = (id("trace_id"), id("span_id"), id("parent_span_id"));
        let (start, end) = (ns("time"), ns("end_time"));
        for r in 0..b.num_rows() {
            by_trace
                .entry(trace.value(r).try_into().expect("16 bytes"))
                .or_default()
                .push(scrydb::structure::SpanLink {
                    span_id: span.value(r).try_into().expect("8 bytes"),
                    parent_span_id: parent
                        .is_valid(r)
                        .then(|| parent.value(r).try_into().expect("8 bytes")),
                    start: start.value(r),
                    end: end.value(r),
                });
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for (trace, links) in by_trace {
        let shape = scrydb::structure::TraceShape::of(&links);
        for d in 0..links.len() {
            for a in shape.ancestors(d) {
                out.insert(scrydb::sql::structure::Pair {
                    trace_id: trace,
                    span_id: links[d].span_id,
                    anchor_span_id: links[a].span_id,
                    distance: (shape.nodes[d].depth - shape.nodes[a].depth) as u32,
                });
            }
        }
    }
    out
}

fn fixture_opens_with_every_row(version: &str, without_rollups: bool) {
    // Term indexes of the current format (2); v4 and v5 have format 1 ones.
    let with_term_indexes = !matches!(version, "v1" | "v2" | "v3" | "v4" | "v5");
    let with_patterns = !matches!(version, "v1" | "v2" | "v3" | "v4");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_dir(version).join("db"), dir.path());
    let db = open(dir.path());
    let snap = db.snapshot();
    for s in Signal::ALL {
        assert!(snap.stats(s).segments >= 1, "{s} has segments");
        assert!(snap.stats(s).memtable_rows > 0, "{s} has log-only rows");
        let want = std::fs::read_to_string(expected_path(version, s)).expect("expected rows");
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(rows(&snap.scan(s, None).expect("scan")), want, "{s}");
    }
    let report = db.verify().expect("verify");
    assert!(report.is_ok(), "the fixture verifies: {:?}", report.damaged);
    // The span rollups (from the files, or computed from the rows) match the spans.
    let groups = |sql: &str| rows(&db.sql_blocking(sql).expect("sql"));
    assert_eq!(
        groups(
            "SELECT service_name, name, date_bin(interval '10 seconds', time) AS t, \
             sum(count) AS n, sum(duration_sum_ns) AS d FROM span_metrics GROUP BY 1, 2, 3"
        ),
        groups(
            "SELECT service_name, name, date_bin(interval '10 seconds', time) AS t, \
             count(*) AS n, sum(duration_ns) AS d FROM spans GROUP BY 1, 2, 3"
        )
    );

    // SQL reads end_time (stored by format 1 segments, computed for format 2 ones) as
    // time + duration_ns, in projections and in filters.
    assert_eq!(
        groups("SELECT CAST(end_time AS BIGINT) AS e, name FROM spans"),
        groups("SELECT CAST(time AS BIGINT) + duration_ns AS e, name FROM spans")
    );
    let late =
        "CAST(time AS BIGINT) + duration_ns > (SELECT median(CAST(end_time AS BIGINT)) FROM spans)";
    assert_eq!(
        groups(
            "SELECT span_id FROM spans WHERE end_time > \
             (SELECT to_timestamp_nanos(median(CAST(end_time AS BIGINT))) FROM spans)"
        ),
        groups(&format!("SELECT span_id FROM spans WHERE {late}"))
    );

    // Log patterns count every log row once, from pattern files or mined from the rows.
    let all = scrydb::TimeRange::all();
    let logs = count(&snap.scan(Signal::Logs, None).expect("scan")) as u64;
    let patterns = snap.log_patterns(all, None).expect("patterns");
    assert_eq!(patterns.iter().map(|p| p.count).sum::<u64>(), logs);

    // Searches answer the same before and after the term indexes exist.
    let search =
        "SELECT * FROM logs WHERE matches(body, 'handled') OR attributes['thread.id'] = '3'";
    let before = groups(search);
    assert!(!before.is_empty());
    // Event names and numeric ranges (term index format 2) too.
    let span_search = "SELECT span_id FROM spans WHERE matches(events, 'exception') \
         OR TRY_CAST(attributes['http.response.status_code'] AS DOUBLE) >= 500 \
         OR CAST(attributes['net.peer.port'] AS BIGINT) < 2000";
    let spans_before = groups(span_search);
    assert!(!spans_before.is_empty());

    // Every segment's index is there and usable, and lookups go through it. A store from
    // before span rollups gets them written by the rebuild, one from before term indexes
    // gets those.
    let span_segments = snap.segments(Signal::Spans, None).len();
    let log_segments = snap.segments(Signal::Logs, None).len();
    let searchable = span_segments + log_segments;
    assert_eq!(
        db.rebuild_indexes(false).expect("reindex"),
        if without_rollups { span_segments } else { 0 }
            + if with_term_indexes { 0 } else { searchable }
            + if with_patterns { 0 } else { log_segments },
        "no index to rebuild"
    );
    for s in [Signal::Spans, Signal::Logs] {
        for seg in snap.segments(s, None) {
            assert!(
                snap.index_cache()
                    .term_index(&scrydb::io::StdFs, snap.dir(), &seg)
                    .is_some(),
                "{} has a usable term index",
                seg.path
            );
        }
    }
    let session = scrydb::sql::Session::new(db.reader()).expect("session");
    // Structural functions: from the trees span segments store (format 3), built from the
    // spans for earlier ones; the same pairs either way.
    let related = all_descendants(&db);
    let want = descendant_pairs(&snap.scan(Signal::Spans, None).expect("scan"));
    assert!(!want.is_empty(), "the fixture's spans have descendants");
    assert_eq!(
        related
            .pairs
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        want
    );
    let stores_trees = !matches!(version, "v1" | "v2" | "v3" | "v4" | "v5" | "v6");
    assert_eq!(related.stored_trees > 0, stores_trees, "{related:?}");
    assert_eq!(rows(&session.sql_blocking(search).expect("search")), before);
    assert_eq!(
        rows(&session.sql_blocking(span_search).expect("search")),
        spans_before
    );
    assert_eq!(
        db.snapshot().log_patterns(all, None).expect("patterns"),
        patterns
    );
    for s in Signal::ALL {
        for seg in snap.segments(s, None) {
            assert!(
                snap.index_cache()
                    .index(&scrydb::io::StdFs, snap.dir(), &seg)
                    .is_some(),
                "{} has a usable index",
                seg.path
            );
        }
    }
    let seg = snap.segments(Signal::Spans, None).remove(0);
    let id = first_trace_id(&snap.read_segment(&seg, None).expect("read")[0]);
    let positions = snap.index_rows(&seg, &[id]).expect("index answers");
    assert!(!positions.is_empty(), "the index finds the trace");
    let with_index = snap.trace_rows(Signal::Spans, &[id], true).expect("lookup");
    let without = snap.trace_rows(Signal::Spans, &[id], false).expect("scan");
    assert_eq!(rows(&with_index), rows(&without));
    assert_eq!(count(&with_index), positions.len() as usize);
    db.close().expect("close");
}

/// The fixture's segments predate minute-first sorting (same format version, rows ordered
/// by time first): compacting them with new segments still gives every row once, in the
/// current order, with working trace lookups.
#[test]
fn version_1_fixture_compacts_with_new_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_dir("v1").join("db"), dir.path());
    let db = open(dir.path());
    // New rows in the fixture's partition (2025-11-24T22:00Z) become new segments beside
    // the fixture's.
    let partition = 1_764_021_600_000_000_000;
    for s in [Signal::Spans, Signal::Logs] {
        db.append(s, &synth(s, 5, 500, partition + 60_000_000_000))
            .expect("append");
    }
    db.flush().expect("flush");
    let before: Vec<Vec<String>> = Signal::ALL
        .iter()
        .map(|s| rows(&db.snapshot().scan(*s, None).expect("scan")))
        .collect();
    let stats = db.compact().expect("compact");
    assert!(stats.merges >= 1, "{stats:?}");
    let snap = db.snapshot();
    for (s, want) in Signal::ALL.iter().zip(&before) {
        assert_eq!(&rows(&snap.scan(*s, None).expect("scan")), want, "{s}");
    }
    for seg in snap.segments(Signal::Spans, None) {
        let batches = snap.read_segment(&seg, None).expect("read");
        for id in trace_ids(&batches[0]).into_iter().take(20) {
            let with_index = snap.trace_rows(Signal::Spans, &[id], true).expect("lookup");
            let without = snap.trace_rows(Signal::Spans, &[id], false).expect("scan");
            assert_eq!(rows(&with_index), rows(&without));
        }
    }
    assert!(db.verify().expect("verify").is_ok());
    drop(snap);
    db.close().expect("close");
}
