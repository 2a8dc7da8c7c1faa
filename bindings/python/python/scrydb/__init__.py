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
    tune_allocator,
)
from ._native import open  # noqa: A004 - `scrydb.open`, like `sqlite3.connect`

__all__ = [
    "open",
    "tune_allocator",
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
