"""ScryDB: an embedded columnar database for OpenTelemetry spans, logs and metrics.

Open a directory with :func:`open`; query it with SQL (results are ``pyarrow.Table``),
look up traces, ingest Arrow data or OTLP files. No server: the database lives in the
calling process, like ``sqlite3`` or ``duckdb``. See docs/python.md.
"""

from ._native import (  # noqa: F401
    Closed,
    Corrupted,
    Db,
    Error,
    InvalidInput,
    InvalidOptions,
    IoError,
    Locked,
    NotAStore,
    Poisoned,
    QueryError,
    ReadOnly,
    ResourcesExhausted,
    TooLarge,
    Trace,
    UnsupportedVersion,
    __version__,
)
from ._native import open as _open

__all__ = [
    "open",
    "Db",
    "Trace",
    "Error",
    "InvalidInput",
    "InvalidOptions",
    "QueryError",
    "ResourcesExhausted",
    "IoError",
    "Corrupted",
    "UnsupportedVersion",
    "TooLarge",
    "Locked",
    "Poisoned",
    "Closed",
    "ReadOnly",
    "NotAStore",
]


def open(
    path,
    *,
    read_only=False,
    durability="sync",
    partition=None,
    memtable_size=None,
    retention=None,
    max_bytes=None,
    keep_interesting=None,
    compaction=True,
):
    """Open (creating if needed) the ScryDB database in directory ``path``.

    One process writes a directory at a time (another gets :class:`Locked`); any number
    may open it ``read_only=True`` beside the writer and see what it acknowledged.

    Args:
        path: the database directory (``str`` or ``os.PathLike``).
        read_only: change nothing; refuse writes. A directory without a store raises
            :class:`NotAStore`.
        durability: what an acknowledged write survives: ``"sync"`` (power loss; the
            default), ``"periodic"`` (fsync every second), ``"nosync"`` (a crash of this
            process only).
        partition: width of a time partition, seconds or ``timedelta`` (default 1 hour).
        memtable_size: bytes of rows held in memory before they are written to a segment
            (default 64 MiB).
        retention: drop time partitions older than this (seconds or ``timedelta``).
        max_bytes: disk budget for segments and indexes; oldest partitions go first.
        keep_interesting: keep traces with errors, slow spans, WARN+ logs or exemplars
            this much longer than ``retention`` (or instead of dropping for ``max_bytes``).
        compaction: merge small segments in the background (default ``True``).

    Returns:
        A :class:`Db`, usable as a context manager (``with scrydb.open(p) as db:``).
    """
    return _open(
        path,
        read_only=read_only,
        durability=durability,
        partition=partition,
        memtable_size=memtable_size,
        retention=retention,
        max_bytes=max_bytes,
        keep_interesting=keep_interesting,
        compaction=compaction,
    )
