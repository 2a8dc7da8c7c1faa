"""The DuckDB side of the benchmark harness (`scry-bench`, benches/src/harness.rs): the same
data and the same questions.

Input (stdin, JSON): {"dir": store directory, "db_file": path for a native DuckDB database,
"queries": {name: SQL}, "present": [hex ids], "absent": [hex ids], "runs": n}.
DuckDB reads the store's own Parquet files (views), and loads them into native tables.
Output (stdout, JSON): per mode ("parquet", "native"): query seconds (median of runs),
trace lookup latencies; plus the native load time, rows and file size (also with the spans
table alone).
"""
import json
import os
import statistics
import sys
import time

import duckdb

TABLES = ("spans", "logs", "metrics")


def timed(con, sql, params=None):
    t = time.perf_counter()
    con.execute(sql, params or []).fetchall()
    return time.perf_counter() - t


def run_mode(con, req):
    out = {"queries": {}, "lookup_present_ms": [], "lookup_absent_ms": []}
    for name, sql in req["queries"].items():
        times = [timed(con, sql) for _ in range(req["runs"])]
        out["queries"][name] = statistics.median(times)
    for key, ids in (("lookup_present_ms", req["present"]), ("lookup_absent_ms", req["absent"])):
        for h in ids:
            out[key].append(1000 * timed(con, "SELECT * FROM spans WHERE trace_id = unhex(?)", [h]))
    return out


def select(req, table):
    """The rows of a ScryDB table from its segment files, with the columns segments do not
    store (format 2, docs/format.md) computed: DuckDB's tables hold every column."""
    derived = ", time + to_microseconds(duration_ns // 1000) AS end_time" if table == "spans" else ""
    return f"SELECT *{derived} FROM read_parquet('{req['dir']}/{table}/*/*.parquet')"


def main():
    req = json.load(sys.stdin)
    result = {"version": duckdb.__version__}
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS {select(req, t)}")
    result["parquet"] = run_mode(con, req)
    con.close()

    if os.path.exists(req["db_file"]):
        os.remove(req["db_file"])
    con = duckdb.connect(req["db_file"])
    load = {}
    for t in TABLES:
        start = time.perf_counter()
        con.execute(f"CREATE TABLE {t} AS {select(req, t)}")
        load[t] = time.perf_counter() - start
        if t == "spans":
            # The file with the spans table alone: DuckDB's bytes for the spans.
            con.execute("CHECKPOINT")
            result["native_spans_file_bytes"] = os.path.getsize(req["db_file"])
    con.execute("CHECKPOINT")
    result["native_load_seconds"] = load
    result["native_file_bytes"] = os.path.getsize(req["db_file"])
    result["native"] = run_mode(con, req)
    con.close()
    os.remove(req["db_file"])
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
