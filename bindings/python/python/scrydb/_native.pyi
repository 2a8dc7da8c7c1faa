"""Type stubs of the native module (the Rust side of `scrydb`)."""

import os
from datetime import timedelta
from typing import Any, Dict, List, Optional, Union

import pyarrow as pa

__version__: str

Seconds = Union[int, float, timedelta]
PathLike = Union[str, "os.PathLike[str]"]

class Error(Exception): ...

class InvalidInput(Error):
    signal: Optional[str]
    column: Optional[str]
    row: Optional[int]

class InvalidOptions(InvalidInput):
    option: str

class QueryError(Error): ...
class ResourcesExhausted(QueryError): ...

class IoError(Error):
    op: str
    path: str

class Corrupted(Error):
    path: str
    offset: Optional[int]

class UnsupportedVersion(Error):
    path: str
    found: int
    supported: int

class TooLarge(Error): ...

class Locked(Error):
    path: str
    holder: Optional[str]

class Poisoned(Error):
    reason: str

class Closed(Error): ...

class ReadOnly(Error):
    path: str

class NotAStore(Error):
    path: str

class Trace:
    @property
    def trace_id(self) -> str: ...
    @property
    def spans(self) -> pa.Table: ...
    @property
    def logs(self) -> pa.Table: ...
    @property
    def metrics(self) -> pa.Table: ...
    def tree(self) -> List[Dict[str, Any]]: ...
    def __bool__(self) -> bool: ...
    def __len__(self) -> int: ...
    def _repr_html_(self) -> str: ...

class Db:
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def read_only(self) -> bool: ...
    def sql(self, query: str, *, ids: str = "bytes") -> pa.Table: ...
    def sql_reader(self, query: str, *, ids: str = "bytes") -> pa.RecordBatchReader: ...
    def search(
        self,
        query: str,
        *,
        spans: bool = False,
        start: Optional[int] = None,
        end: Optional[int] = None,
        limit: int = 100,
        ids: str = "bytes",
    ) -> pa.Table: ...
    def trace(self, trace_id: Union[str, bytes]) -> Trace: ...
    def ingest(self, signal: str, data: Any) -> int: ...
    def ingest_otlp(
        self, data: Union[bytes, PathLike], *, signal: Optional[str] = None
    ) -> Dict[str, Any]: ...
    def diagnose(
        self, *, start: Optional[int] = None, end: Optional[int] = None
    ) -> Dict[str, Any]: ...
    def flush(self) -> None: ...
    def compact(self) -> Dict[str, int]: ...
    def retain(
        self, *, older_than: Optional[Seconds] = None, max_bytes: Optional[int] = None
    ) -> Dict[str, int]: ...
    def stats(self) -> pa.Table: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Db": ...
    def __exit__(self, *args: Any) -> bool: ...

def tune_allocator() -> bool:
    """Raise glibc malloc's trim threshold for ScryDB's reads (opt-in, process-wide);
    ``False`` where it does not apply. See docs/python.md."""
    ...

def open(
    path: PathLike,
    *,
    read_only: bool = False,
    durability: str = "sync",
    partition: Optional[Seconds] = None,
    memtable_size: Optional[int] = None,
    retention: Optional[Seconds] = None,
    max_bytes: Optional[int] = None,
    keep_interesting: Optional[Seconds] = None,
    compaction: bool = True,
    remote: Optional[Union[str, List[str]]] = None,
    writers_under: Optional[str] = None,
    cache_bytes: Optional[int] = None,
    take_over: bool = False,
) -> Db: ...
