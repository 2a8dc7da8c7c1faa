"""The Python API end to end: round trips, zero copy, streaming, traces, OTLP, errors,
threads."""

import gc
import os
import subprocess
import sys
import threading

import pyarrow as pa
import pytest

import scrydb
from conftest import BASE, REPO, spans_table


def test_ingest_then_sql_round_trips_and_survives_reopen(tmp_path):
    path = tmp_path / "s"
    with scrydb.open(path) as db:
        assert db.ingest("spans", spans_table(100)) == 100
        t = db.sql("SELECT name, count(*) AS n FROM spans GROUP BY name ORDER BY name")
        assert isinstance(t, pa.Table)
        assert t.to_pydict() == {"name": ["op0", "op1", "op2"], "n": [34, 33, 33]}
    assert db.closed
    with scrydb.open(path, read_only=True) as db:
        ids = db.sql("SELECT trace_id, span_id FROM spans ORDER BY span_id LIMIT 1")
        assert ids.schema.field("trace_id").type == pa.binary(16)
        assert ids.column("trace_id")[0].as_py() == (1).to_bytes(16, "big")
        hexed = db.sql("SELECT trace_id FROM spans ORDER BY span_id LIMIT 1", ids="hex")
        assert hexed.column("trace_id")[0].as_py() == "%032x" % 1
        # An empty result keeps its schema.
        empty = db.sql("SELECT trace_id, name FROM spans WHERE false", ids="hex")
        assert empty.num_rows == 0 and empty.schema.names == ["trace_id", "name"]
        assert empty.schema.field("trace_id").type == pa.string()


def test_ingest_takes_record_batches_readers_and_c_stream_objects(db):
    t = spans_table(30)
    assert db.ingest("spans", t.to_batches()[0]) == 30
    assert db.ingest("spans", spans_table(20, start=30).to_reader()) == 20

    class Stream:  # Only the PyCapsule protocol.
        def __arrow_c_stream__(self, requested_schema=None):
            return spans_table(10, start=50).__arrow_c_stream__(requested_schema)

    assert db.ingest("spans", Stream()) == 10
    assert db.sql("SELECT count(*) AS n FROM spans").column("n")[0].as_py() == 60


def test_large_results_are_not_copied_into_pyarrow(db):
    db.ingest("spans", spans_table(200_000))
    db.flush()
    gc.collect()
    before = pa.total_allocated_bytes()
    t = db.sql("SELECT time, trace_id, span_id, name FROM spans")
    assert t.num_rows == 200_000
    # The columns (about 200_000 * 40 bytes) live in buffers ScryDB allocated and handed
    # over through the C data interface; pyarrow's own pool allocated (nearly) nothing.
    grown = pa.total_allocated_bytes() - before
    assert grown < 1_000_000, grown
    buf = t.column("trace_id").chunk(0).buffers()[1]
    assert buf.size >= 16 * t.column("trace_id").chunk(0).__len__()


def test_sql_reader_streams_batches(db):
    db.ingest("spans", spans_table(50_000))
    r = db.sql_reader("SELECT span_id, name FROM spans", ids="hex")
    assert isinstance(r, pa.RecordBatchReader)
    assert r.schema.field("span_id").type == pa.string()
    rows = 0
    batches = 0
    for b in r:
        rows += b.num_rows
        batches += 1
    assert rows == 50_000 and batches > 1


def test_trace_lookup_gives_tables_tree_and_html(db):
    errors = lambda i: "ERROR" if i == 5 else "OK"  # noqa: E731
    db.ingest("spans", spans_table(40, status_of=errors))
    t = db.trace("%032x" % 2)
    assert t and len(t) == 4 and t.trace_id == "%032x" % 2
    assert t.spans.num_rows == 4 and t.logs.num_rows == 0
    assert db.trace((2).to_bytes(16, "big")).spans.num_rows == 4
    tree = t.tree()
    # No parent ids here: four roots, by start time.
    assert [n["depth"] for n in tree] == [0, 0, 0, 0]
    assert [n["start"] for n in tree] == sorted(n["start"] for n in tree)
    assert {n["status_code"] for n in tree} == {"ERROR", "OK"}
    # Four roots: the path explains the longest, which has no children.
    path = t.critical_path()
    assert path.num_rows == 1
    longest = max(n["duration_ns"] for n in tree)
    assert path.column("critical_ns").to_pylist() == [longest]
    assert path.column("step").to_pylist() == [1]
    html = t._repr_html_()
    assert "op0" in html and "#d9534f" in html and "<script" not in html
    assert not db.trace("%032x" % 999)
    with pytest.raises(scrydb.InvalidInput):
        db.trace("not hex")


def test_compare_ranks_what_the_selection_has_more_of(db):
    # Errors are every 10th span, all of operation op1 (names cycle op0, op1, op2 otherwise).
    db.ingest("spans", spans_table(
        60,
        status_of=lambda i: "ERROR" if i % 10 == 0 else "OK",
        name_of=lambda i: "op1" if i % 10 == 0 else f"op{i % 3}",
    ))
    t = db.compare("status_code = 'ERROR'", limit=3)
    rows = t.to_pylist()
    assert [(r["dimension"], r["value"]) for r in rows[:2]] == [
        ("status_code", "ERROR"), ("name", "op1")]
    assert rows[0]["selection_count"] == 6 and rows[0]["baseline_count"] == 0
    assert rows[0]["score"] == 1.0
    assert t.num_rows <= 3
    # An explicit baseline, and a predicate that does not plan.
    assert db.compare("status_code = 'ERROR'", "name = 'op1'").num_rows >= 1
    with pytest.raises(scrydb.QueryError):
        db.compare("nosuchcolumn = 1")


def test_ingest_otlp_reports_rejected_records_with_positions(db, tmp_path):
    r = db.ingest_otlp(os.path.join(REPO, "tests/fixtures/otlp/trace.json"))
    assert r["accepted"] > 0 and r["rejected"] == 0 and r["problems"] == []
    bad = (
        b'{"resourceSpans":[{"scopeSpans":[{"spans":['
        b'{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",'
        b'"name":"ok","startTimeUnixNano":"1764028800000000000","endTimeUnixNano":"1764028800000001000"},'
        b'{"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b175",'
        b'"name":"bad","startTimeUnixNano":"1764028800000000000","endTimeUnixNano":"1764028800000001000"}'
        b"]}]}]}"
    )
    r = db.ingest_otlp(bad)
    assert (r["accepted"], r["rejected"]) == (1, 1), r
    (p,) = r["problems"]
    assert p["kind"] == "rejected" and p["signal"] == "spans"
    assert "spans[1]" in p["errors"][0]["location"], p
    r = db.ingest_otlp(b"{not json")
    assert r["undecodable"] == 1 and r["problems"][0]["kind"] == "undecodable"


def test_errors_are_typed_and_say_where(tmp_path, db):
    bad = spans_table(3).set_column(
        6, "status_code", pa.array(["OK", "MAYBE", "OK"])
    )
    with pytest.raises(scrydb.InvalidInput) as e:
        db.ingest("spans", bad)
    assert (e.value.signal, e.value.column, e.value.row) == ("spans", "status_code", 1)
    assert isinstance(e.value, scrydb.Error)
    with pytest.raises(scrydb.InvalidInput):
        db.ingest("traces", spans_table(1))
    with pytest.raises(scrydb.QueryError):
        db.sql("SELECT nope FROM spans")
    with pytest.raises(scrydb.InvalidOptions) as e:
        scrydb.open(tmp_path / "o", partition=3600, retention=60)
    assert e.value.option == "retention"
    with pytest.raises(scrydb.InvalidInput):
        scrydb.open(tmp_path / "o", durability="sometimes")
    with pytest.raises(scrydb.NotAStore):
        scrydb.open(tmp_path / "empty", read_only=True)
    ro = scrydb.open(db.path, read_only=True)
    with pytest.raises(scrydb.ReadOnly):
        ro.ingest("spans", spans_table(1))
    ro.close()
    d = scrydb.open(tmp_path / "c")
    d.close()
    d.close()
    with pytest.raises(scrydb.Closed):
        d.sql("SELECT 1")


def test_a_second_writer_process_gets_locked(db):
    code = (
        "import scrydb, sys\n"
        "try:\n"
        "    scrydb.open(sys.argv[1])\n"
        "except scrydb.Locked as e:\n"
        "    print('LOCKED', e.holder is not None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, db.path], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "LOCKED True", out


def test_a_damaged_segment_raises_corrupted_naming_it(tmp_path):
    path = tmp_path / "s"
    with scrydb.open(path) as db:
        db.ingest("spans", spans_table(1000))
    seg = next(
        os.path.join(d, f)
        for d, _, fs in os.walk(path / "spans")
        for f in fs
        if f.endswith(".parquet")
    )
    with open(seg, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    with scrydb.open(path, read_only=True) as db:
        with pytest.raises(scrydb.Corrupted) as e:
            db.sql("SELECT count(*), max(name) FROM spans")
        assert os.path.basename(seg) in str(e.value)


def test_threads_query_while_one_ingests(db):
    stop = threading.Event()
    seen = []
    failures = []

    def reader():
        while not stop.is_set():
            try:
                n = db.sql("SELECT count(*) AS n FROM spans").column("n")[0].as_py()
                seen.append(n)
            except Exception as e:  # noqa: BLE001 - reported below
                failures.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for k in range(20):
        db.ingest("spans", spans_table(500, start=k * 500))
    stop.set()
    for t in threads:
        t.join()
    assert not failures, failures
    # Every count a reader saw is a whole number of batches, and never went down per thread.
    assert all(n % 500 == 0 for n in seen)
    assert db.sql("SELECT count(*) AS n FROM spans").column("n")[0].as_py() == 10_000


def test_diagnose_and_stats_return_plain_values(db):
    db.ingest("spans", spans_table(100))
    db.flush()
    d = db.diagnose()
    assert isinstance(d["summary"], str) and "anomaly" in d and isinstance(d["queries"], list)
    assert isinstance(d["critical_path"], list) and isinstance(d["differences"], list)
    s = db.stats()
    assert s.num_rows >= 1 and "kept_traces" in s.schema.names
    c = db.compact()
    assert set(c) == {"merges", "segments_in", "rows", "bytes_in", "bytes_out"}
    assert db.retain(older_than=3600 * 24 * 365 * 100) == {"segments": 0, "rows": 0, "bytes": 0}


def test_io_errors_and_future_formats_are_typed(tmp_path):
    (tmp_path / "file").write_bytes(b"not a directory")
    with pytest.raises(scrydb.IoError) as e:
        scrydb.open(tmp_path / "file" / "store")
    assert "file" in str(e.value.path) and e.value.op
    # A manifest that says it is of format version 2 (its checksum made right again).
    import zlib

    path = tmp_path / "s"
    with scrydb.open(path) as db:
        db.ingest("spans", spans_table(10))
    (manifest,) = [p for p in path.iterdir() if p.name.startswith("MANIFEST-")]
    b = bytearray(manifest.read_bytes())
    b[8:12] = (2).to_bytes(4, "little")
    b[-4:] = zlib.crc32(bytes(b[:-4])).to_bytes(4, "little")
    manifest.write_bytes(bytes(b))
    with pytest.raises(scrydb.UnsupportedVersion) as e:
        scrydb.open(path)
    assert (e.value.found, e.value.supported) == (2, 1)


def test_the_waterfall_draws_a_span_at_the_very_end(db):
    ts = pa.timestamp("ns", tz="UTC")
    tid = (77).to_bytes(16, "big")
    t = pa.table(
        {
            "time": pa.array([BASE, BASE + 99_990_000], ts),
            "end_time": pa.array([BASE + 100_000_000, BASE + 99_995_000], ts),
            "trace_id": pa.array([tid, tid], pa.binary(16)),
            "span_id": pa.array([b"\x00" * 7 + b"\x01", b"\x00" * 7 + b"\x02"], pa.binary(8)),
            "parent_span_id": pa.array([None, b"\x00" * 7 + b"\x01"], pa.binary(8)),
            "service_name": pa.array(["svc", "svc"]),
            "name": pa.array(["root", "last"]),
        }
    )
    db.ingest("spans", t)
    html = db.trace(tid)._repr_html_()
    assert "last" in html and "root" in html


def test_refused_arguments_carry_empty_location_attributes(db):
    with pytest.raises(scrydb.InvalidInput) as e:
        db.ingest("traces", spans_table(1))
    assert (e.value.signal, e.value.column, e.value.row) == (None, None, None)
    with pytest.raises(scrydb.InvalidInput) as e:
        db.sql("SELECT 1", ids="base64")
    assert e.value.column is None


def test_tune_allocator_applies_on_glibc_and_lookups_still_answer(db):
    import platform

    applied = scrydb.tune_allocator()
    assert isinstance(applied, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied, "mallopt(M_TRIM_THRESHOLD) applies under glibc"
    assert db.ingest("spans", spans_table(40)) == 40
    db.flush()
    assert db.sql("SELECT count(*) AS n FROM spans").column("n")[0].as_py() == 40


def test_search_finds_terms_newest_first_and_names_bad_queries(db):
    names = lambda i: ["GET /cart", "POST /checkout", "charge card"][i % 3]  # noqa: E731
    db.ingest("spans", spans_table(300, name_of=names, status_of=lambda i: "ERROR" if i % 10 == 0 else "OK"))
    t = db.search("cart -card", spans=True, limit=5, ids="hex")
    assert t.num_rows == 5
    assert set(t.column("name").to_pylist()) == {"GET /cart"}
    times = t.column("time").to_pylist()
    assert times == sorted(times, reverse=True)
    # Span 297 is the newest "GET /cart" (297 % 3 == 0).
    assert t.column("span_id")[0].as_py() == "%016x" % 298
    errors = db.search("status:error checkout", spans=True, limit=1000)
    assert errors.num_rows == len([i for i in range(300) if i % 10 == 0 and i % 3 == 1])
    window = db.search("cart", spans=True, start=BASE, end=BASE + 30_000_000, limit=1000)
    assert window.num_rows == 10
    with pytest.raises(scrydb.QueryError, match="column 6: unclosed parenthesis"):
        db.search("cart (x", spans=True)


def test_log_patterns_group_lines_and_compare_windows(db):
    ts = pa.timestamp("ns", tz="UTC")
    minute = 60_000_000_000
    rows = []
    # Before: connections accepted; during: the same, plus a new failure.
    for i in range(60):
        rows.append((BASE + i * 1_000_000_000, "db", f"accepted connection from 10.0.0.{i % 9} port {4000 + i}"))
    for i in range(60):
        t = BASE + minute + i * 1_000_000_000
        rows.append((t, "db", f"accepted connection from 10.0.1.{i % 7} port {5000 + i}"))
        if i % 3 == 0:
            rows.append((t, "db", f"could not write block {i * 17} of relation base/{i}: No space left on device"))
    db.ingest("logs", pa.table({
        "time": pa.array([r[0] for r in rows], ts),
        "service_name": [r[1] for r in rows],
        "body": [r[2] for r in rows],
    }))
    t = db.log_patterns(BASE + minute, BASE + 2 * minute)
    got = list(zip(t.column("status").to_pylist(), t.column("template").to_pylist(),
                   t.column("count").to_pylist(), t.column("baseline_count").to_pylist()))
    assert got == [
        ("new", "could not write block <*> of relation <*>: No space left on device", 20, 0),
        ("steady", "accepted connection from <*> port <*>", 60, 60),
    ]
    # The same through SQL, with an explicit baseline.
    s = db.sql(f"SELECT status, count FROM log_patterns({BASE + minute}, {BASE + 2 * minute}, {BASE}, {BASE + minute})")
    assert s.column("count").to_pylist() == [20, 60]
    with pytest.raises(ValueError, match="start must be before end"):
        db.log_patterns(BASE, BASE)
    with pytest.raises(ValueError, match="both"):
        db.log_patterns(BASE, BASE + 1, baseline_start=BASE)
