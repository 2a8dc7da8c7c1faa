"""Runs SQL queries on DuckDB over a ScryDB store's own Parquet files.

Input (stdin, JSON): {"dir": "<store directory>", "queries": ["SQL", ...]}.
The views spans, logs and metrics read <dir>/<table>/*/*.parquet (spans with end_time
computed, as segments of format 2 do not store it).
Output (stdout, JSON): {"results": [[row, ...], ...], "seconds": [t, ...]} where each row is
a list of values (numbers, strings, null); blobs are lowercase hex.
"""
import json
import sys
import time

import duckdb


# Columns segments do not store (format 2, docs/format.md): computed as ScryDB computes them
# (DuckDB keeps timestamps with a time zone to the microsecond).
DERIVED = {"spans": ", time + to_microseconds(duration_ns // 1000) AS end_time"}


def value(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)


def main():
    req = json.load(sys.stdin)
    con = duckdb.connect()
    for table in ("spans", "logs", "metrics"):
        con.execute(
            f"CREATE VIEW {table} AS SELECT *{DERIVED.get(table, '')} "
            f"FROM read_parquet('{req['dir']}/{table}/*/*.parquet')"
        )
    results, seconds = [], []
    for q in req["queries"]:
        t = time.perf_counter()
        rows = con.execute(q).fetchall()
        seconds.append(time.perf_counter() - t)
        results.append([[value(v) for v in row] for row in rows])
    json.dump({"results": results, "seconds": seconds}, sys.stdout)


if __name__ == "__main__":
    main()
