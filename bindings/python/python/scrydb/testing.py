"""Assert on your own telemetry: collect the spans your code emits through the
OpenTelemetry Python SDK into a temporary ScryDB store, and query them with SQL.

With the package installed, pytest finds the ``scrydb_spans`` fixture by itself (entry
point ``pytest11``)::

    def test_checkout_calls_payment(scrydb_spans):
        checkout()                      # instrumented with the OpenTelemetry API
        t = scrydb_spans.sql("SELECT name FROM spans WHERE status_code = 'ERROR'")
        assert t.num_rows == 0

Without pytest, :class:`ScryDBSpanExporter` is an ordinary SDK span exporter that writes
into an open :class:`scrydb.Db`.
"""

from __future__ import annotations

import tempfile
from typing import Optional, Sequence

import scrydb

try:  # The SDK is needed only by what is below, not by `import scrydb`.
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
except ImportError as e:  # pragma: no cover - depends on the environment
    _SDK_ERROR: Optional[ImportError] = e
    SpanExporter = object  # type: ignore[misc,assignment]
else:
    _SDK_ERROR = None

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]


def _require_sdk() -> None:
    if _SDK_ERROR is not None:
        raise ImportError(
            "scrydb.testing needs the OpenTelemetry SDK: pip install "
            "opentelemetry-sdk opentelemetry-exporter-otlp-proto-common"
        ) from _SDK_ERROR


class ScryDBSpanExporter(SpanExporter):  # type: ignore[misc,valid-type]
    """An OpenTelemetry SDK span exporter that stores spans in a ScryDB database.

    Spans are encoded as OTLP protobuf (the SDK's own encoder) and stored with
    :meth:`scrydb.Db.ingest_otlp`; an export that ScryDB rejects in part still stores the
    valid spans and reports ``FAILURE``, so the SDK logs it.
    """

    def __init__(self, db: "scrydb.Db") -> None:
        _require_sdk()
        self.db = db
        self.last_result: Optional[dict] = None

    def export(self, spans: "Sequence[ReadableSpan]") -> "SpanExportResult":
        if not spans:
            return SpanExportResult.SUCCESS
        payload = encode_spans(spans).SerializeToString()
        try:
            self.last_result = self.db.ingest_otlp(payload, signal="spans")
        except scrydb.Error:
            return SpanExportResult.FAILURE
        if self.last_result["rejected"] or self.last_result["undecodable"]:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class SpanCollector:
    """What the ``scrydb_spans`` fixture gives a test: a tracer provider whose spans go into
    a temporary store, and that store.

    Attributes:
        db: the :class:`scrydb.Db` the spans go to.
        provider: an SDK ``TracerProvider`` exporting every ended span at once.
        exporter: the :class:`ScryDBSpanExporter` writing them.
    """

    def __init__(self, db: "scrydb.Db", provider: "Optional[TracerProvider]" = None) -> None:
        _require_sdk()
        self.db = db
        self.exporter = ScryDBSpanExporter(db)
        self._own_provider = provider is None
        if provider is None:
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.provider = provider

    def tracer(self, name: str = "test"):
        """A tracer of the provider (``opentelemetry.trace.Tracer``)."""
        return self.provider.get_tracer(name)

    def sql(self, query: str, *, ids: str = "hex"):
        """Runs SQL over the spans collected so far (ids as hex by default)."""
        self.provider.force_flush()
        return self.db.sql(query, ids=ids)

    def spans(self):
        """Every collected span, oldest first, as a ``pyarrow.Table`` (ids as hex)."""
        return self.sql("SELECT * FROM spans ORDER BY time")

    def close(self) -> None:
        if self._own_provider:
            self.provider.shutdown()
        self.db.close()


class _Router(SpanProcessor if _SDK_ERROR is None else object):  # type: ignore[misc]
    """The span processor of the process-wide provider the fixture installs once: it
    exports each ended span to the exporter of the test that is running (none between
    tests). Tracers that code keeps from one test to the next (module-level tracers,
    OpenTelemetry's proxy tracers) stay bound to this provider, so every test sees its own
    spans."""

    def __init__(self) -> None:
        self.target: "Optional[ScryDBSpanExporter]" = None

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span) -> None:
        target = self.target
        if target is not None and span.context is not None and span.context.trace_flags.sampled:
            target.export((span,))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_ROUTER: "Optional[_Router]" = None
_PROVIDER = None


def _shared_provider():
    """The process-wide provider (created and made global on first use): the global one
    when the process already set an SDK provider (the router is added to it), else a new
    one."""
    global _ROUTER, _PROVIDER
    if _PROVIDER is None:
        from opentelemetry import trace

        _ROUTER = _Router()
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            current.add_span_processor(_ROUTER)
            _PROVIDER = current
        else:
            _PROVIDER = TracerProvider()
            _PROVIDER.add_span_processor(_ROUTER)
            trace.set_tracer_provider(_PROVIDER)
    return _PROVIDER


if pytest is not None:

    @pytest.fixture
    def scrydb_spans():
        """Collects the spans the test emits through the OpenTelemetry API into a
        temporary ScryDB store (a :class:`SpanCollector`). The fixture makes one SDK
        tracer provider global for the process (or joins the SDK provider already set), so
        code that calls ``opentelemetry.trace.get_tracer(...)`` — at import or at call
        time — is captured with no change; spans ended outside a test go nowhere."""
        _require_sdk()
        provider = _shared_provider()
        with tempfile.TemporaryDirectory(prefix="scrydb-spans-") as d:
            collector = SpanCollector(scrydb.open(d, durability="nosync"), provider)
            assert _ROUTER is not None
            _ROUTER.target = collector.exporter
            try:
                yield collector
            finally:
                _ROUTER.target = None
                collector.close()
