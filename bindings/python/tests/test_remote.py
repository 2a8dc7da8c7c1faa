"""Stores in S3-compatible object storage from Python: moto's S3 server on loopback
(tests/py/s3_server.py, from the same venv), two writers in their prefixes, a reader of
one, and one view of both."""

import json
import os
import subprocess
import sys

import pytest

import scrydb
from conftest import REPO, spans_table


@pytest.fixture()
def s3(monkeypatch):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "tests", "py", "s3_server.py"), "py-test"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    endpoints = json.loads(proc.stdout.readline())
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoints["s3"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield endpoints
    proc.stdin.close()
    proc.wait(timeout=10)


def count(db):
    return db.sql("SELECT count(*) AS n FROM spans").column("n")[0].as_py()


def test_writers_in_object_storage_read_as_one_store(s3, tmp_path):
    sizes = {"a": 40, "b": 24}
    for name, n in sizes.items():
        with scrydb.open(tmp_path / name, remote=f"s3://py-test/fleet/{name}") as db:
            db.ingest("spans", spans_table(n, start=1000 * ord(name)))
        # Another directory (another host) reads what the writer committed at close.
        with scrydb.open(
            tmp_path / f"reader-{name}", read_only=True, remote=f"s3://py-test/fleet/{name}"
        ) as db:
            assert count(db) == n
    with scrydb.open(
        tmp_path / "view", read_only=True, writers_under="s3://py-test/fleet"
    ) as db:
        assert count(db) == sum(sizes.values())
    with scrydb.open(
        tmp_path / "view2",
        read_only=True,
        remote=["s3://py-test/fleet/a", "s3://py-test/fleet/b"],
    ) as db:
        assert count(db) == sum(sizes.values())


def test_bad_remote_arguments_are_refused(s3, tmp_path):
    with pytest.raises(scrydb.InvalidOptions, match="s3://"):
        scrydb.open(tmp_path / "x", remote="gs://nope/x")
    with pytest.raises(scrydb.InvalidInput, match="read_only=True"):
        scrydb.open(tmp_path / "y", remote=["s3://py-test/a", "s3://py-test/b"])
