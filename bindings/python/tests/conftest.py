"""Shared helpers of the Python tests (run by tests/run.sh with the module built by
`maturin develop`)."""

import os

import pyarrow as pa
import pytest

import scrydb

# 2025-11-25T00:00:00Z, in ns.
BASE = 1_764_028_800_000_000_000
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def spans_table(n, *, start=0, trace_of=lambda i: i // 4, name_of=lambda i: f"op{i % 3}",
                status_of=lambda i: "OK", base=BASE):
    """`n` spans with the columns a spans batch needs (the rest are filled by ScryDB):
    span `start + i` is in trace `trace_of(i)`, 1 ms after the previous one, 0.5 ms long."""
    ids = [start + i for i in range(n)]
    time = [base + k * 1_000_000 for k in ids]
    ts = pa.timestamp("ns", tz="UTC")
    return pa.table(
        {
            "time": pa.array(time, ts),
            "end_time": pa.array([t + 500_000 for t in time], ts),
            "trace_id": pa.array(
                [(trace_of(k) + 1).to_bytes(16, "big") for k in ids], pa.binary(16)
            ),
            "span_id": pa.array([(k + 1).to_bytes(8, "big") for k in ids], pa.binary(8)),
            "service_name": pa.array(["svc"] * n),
            "name": pa.array([name_of(k) for k in ids]),
            "status_code": pa.array([status_of(k) for k in ids]),
        }
    )


@pytest.fixture
def db(tmp_path):
    d = scrydb.open(tmp_path / "store", durability="nosync")
    yield d
    d.close()
