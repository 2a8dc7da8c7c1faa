"""The DuckDB side of the search benchmark (`scry-bench --search N`,
benches/src/search_bench.rs): the same log records and the same searches.

Input (stdin, JSON): {"dir": store directory, "db_file": path for a native DuckDB database,
"runs": n, "searches": [{"name", "sql" (the search with ILIKE), "fts" (words, or null),
"extra" (the ILIKE predicate, applied with fts to keep the answer exact)}]}.
DuckDB loads the store's logs segments into a native table (its fastest form), then runs
each search with ILIKE; with the `fts` extension (PyPI `duckdb-ext-fts` of DuckDB's
version) it also builds a full-text index over `body` and runs each word search through
`match_bm25` (all words required; the ILIKE predicate then confirms phrases).
Output (stdout, JSON): load and fts build seconds, per search p50/p99 milliseconds.
"""
import json
import os
import sys
import time

import duckdb


def pct(v, p):
    v = sorted(v)
    return v[round((len(v) - 1) * p)]


def timed(con, sql, runs):
    ms = []
    rows = None
    for _ in range(runs):
        t = time.perf_counter()
        rows = con.execute(sql).fetchall()
        ms.append(1000 * (time.perf_counter() - t))
    return {"p50": pct(ms, 0.5), "p99": pct(ms, 0.99)}, rows


def fts_extension():
    """The path of the fts extension file of DuckDB's version, from its PyPI package
    (`duckdb_ext/extensions/v<version>/<platform>/fts.duckdb_extension`), or None."""
    for d in sys.path:
        root = os.path.join(d, "duckdb_ext", "extensions", f"v{duckdb.__version__}")
        if os.path.isdir(root):
            for platform in os.listdir(root):
                path = os.path.join(root, platform, "fts.duckdb_extension")
                if os.path.exists(path):
                    return path
    return None


def main():
    req = json.load(sys.stdin)
    runs = req["runs"]
    out = {"version": duckdb.__version__, "searches": {}}
    if os.path.exists(req["db_file"]):
        os.remove(req["db_file"])
    con = duckdb.connect(req["db_file"])
    con.execute(f"SET threads = {os.cpu_count()}")
    t = time.perf_counter()
    con.execute(
        "CREATE TABLE logs AS SELECT row_number() OVER () AS id, * "
        f"FROM read_parquet('{req['dir']}/logs/*/*.parquet')"
    )
    con.execute("CHECKPOINT")
    out["native_load_seconds"] = time.perf_counter() - t
    for s in req["searches"]:
        ms, _ = timed(con, s["sql"], runs)
        n = con.execute(f"SELECT count(*) FROM logs WHERE {s['extra']}").fetchone()[0]
        out["searches"][s["name"]] = {"ilike_ms": ms, "matches": n}

    ext = fts_extension()
    if ext is None:
        out["fts_error"] = "duckdb-ext-fts of this DuckDB version is not installed"
    else:
        try:
            con.execute(f"LOAD '{ext}'")
            t = time.perf_counter()
            con.execute("PRAGMA create_fts_index('logs', 'id', 'body', stemmer='none', stopwords='none', lower=1, strip_accents=0)")
            out["fts_build_seconds"] = time.perf_counter() - t
            for s in req["searches"]:
                if not s["fts"]:
                    continue
                words = s["fts"].replace("'", "''")
                sql = (
                    "SELECT time, service_name, body, trace_id FROM ("
                    f"SELECT *, fts_main_logs.match_bm25(id, '{words}', conjunctive := 1) AS score FROM logs"
                    f") WHERE score IS NOT NULL AND {s['extra']} ORDER BY time DESC LIMIT 100"
                )
                ms, _ = timed(con, sql, runs)
                out["searches"][s["name"]]["fts_ms"] = ms
        except duckdb.Error as e:
            out["fts_error"] = str(e)
    con.close()
    os.remove(req["db_file"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
