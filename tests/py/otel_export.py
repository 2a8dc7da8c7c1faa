"""Exports spans, logs and metrics to a ScryDB OTLP receiver with the official OpenTelemetry SDK.

Called by the Rust integration tests (with $SCRY_PYTHON, the virtual environment tests/run.sh
builds from tests/requirements.txt) against a running `scry serve`, to check that what a stock
OpenTelemetry SDK sends over OTLP/gRPC and OTLP/HTTP-protobuf all arrives.

Usage: otel_export.py --transport grpc|http --endpoint URL --run-id ID [--token TOKEN]
                      [--spans N] [--logs N]
--endpoint is the receiver's base URL, e.g. http://127.0.0.1:4317 (gRPC) or
http://127.0.0.1:4318 (HTTP; /v1/traces, /v1/logs and /v1/metrics are appended).
--token sends `authorization: Bearer TOKEN` with every export.

Sent, all with resource service.name=sdk-<transport>, scry.run_id=<run id>,
deployment.environment=test:
- spans: N traces (default 5), each a SERVER span "GET /checkout" with a CLIENT child "charge"
  and an INTERNAL grandchild "db.query", each with attributes http.route="/checkout",
  run.index=i, ratio=0.5, flag=true, tags=["a", "b"]. The "charge" span of trace 0 has status
  ERROR "card declined" and an event "retry" with attempt=2.
- logs: M records (default 5), body "log <i> of <run id>", severity WARN for i=0 else INFO,
  attribute log.index=i, inside trace 0's root span (so they carry its trace and span ids).
- metrics: counter scry.test.requests (3 x 1, route=/checkout) and histogram scry.test.latency
  (unit ms; 5, 50, 500), exported once.
Output (stdout, one line of JSON): {"transport", "run_id", "service", "trace_ids": [32 lowercase
hex, ...], "spans": count, "logs": count, "metric_names": [...], "error_trace_id"}. Exit status
0 only if every export succeeded; otherwise a message on stderr and exit status 1. Each export
is retried on transient errors (connection refused, gRPC UNAVAILABLE, HTTP 429/502/503/504) for
up to 10 seconds; other errors (e.g. HTTP 401, gRPC UNAUTHENTICATED) fail at once. OTEL_*
environment variables are ignored, so that only the command line decides what is sent.
"""
import argparse
import json
import math
import os
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

TIMEOUT_SECONDS = 10
METRIC_NAMES = ["scry.test.requests", "scry.test.latency"]


def exporters(transport, endpoint, token):
    """The span, log and metric exporters for `transport`, sending to `endpoint`."""
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # gRPC metadata keys must be lowercase.
        headers = (("authorization", f"Bearer {token}"),) if token else None
        kw = dict(endpoint=endpoint, insecure=True, headers=headers, timeout=TIMEOUT_SECONDS)
        return OTLPSpanExporter(**kw), OTLPLogExporter(**kw), OTLPMetricExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    headers = {"authorization": f"Bearer {token}"} if token else None
    kw = dict(headers=headers, timeout=TIMEOUT_SECONDS)
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", **kw),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", **kw),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", **kw),
    )


def checked(exporter, name, failures):
    """Makes `exporter` append to `failures` when an export does not succeed.

    The SDK's processors and readers swallow export failures (their force_flush returns True
    whatever the exporter said), so this is how the script learns of them.
    """
    export = exporter.export

    def wrapper(*args, **kwargs):
        try:
            result = export(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - reported, then the script fails
            failures.append(f"{name} export raised {e!r}")
            raise
        if getattr(result, "name", None) != "SUCCESS":
            failures.append(f"{name} export returned {result!r}")
        return result

    exporter.export = wrapper
    return exporter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--token")
    ap.add_argument("--spans", type=int, default=5, help="number of traces (3 spans each)")
    ap.add_argument("--logs", type=int, default=5)
    args = ap.parse_args()
    if args.spans < 1 or args.logs < 0:
        ap.error("--spans must be at least 1 and --logs at least 0")

    for k in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[k]
    service = f"sdk-{args.transport}"
    resource = Resource.create(
        {"service.name": service, "scry.run_id": args.run_id, "deployment.environment": "test"}
    )
    failures = []
    span_exp, log_exp, metric_exp = exporters(args.transport, args.endpoint, args.token)
    checked(span_exp, "span", failures)
    checked(log_exp, "log", failures)
    checked(metric_exp, "metric", failures)

    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exp))
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exp))
    # An infinite interval means no background collection: the metrics are exported exactly
    # once, by force_flush below (and not again at shutdown).
    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=math.inf)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[reader], shutdown_on_exit=False
    )

    tracer = tracer_provider.get_tracer("scry.test.otel_export")
    otel_logger = logger_provider.get_logger("scry.test.otel_export")
    meter = meter_provider.get_meter("scry.test.otel_export")

    trace_ids = []
    for i in range(args.spans):
        attrs = {
            "http.route": "/checkout",
            "run.index": i,
            "ratio": 0.5,
            "flag": True,
            "tags": ["a", "b"],
        }
        with tracer.start_as_current_span(
            "GET /checkout", kind=SpanKind.SERVER, attributes=attrs
        ) as root:
            trace_ids.append(format(root.get_span_context().trace_id, "032x"))
            if i == 0:
                for j in range(args.logs):
                    otel_logger.emit(
                        timestamp=time.time_ns(),
                        severity_number=SeverityNumber.WARN if j == 0 else SeverityNumber.INFO,
                        severity_text="WARN" if j == 0 else "INFO",
                        body=f"log {j} of {args.run_id}",
                        attributes={"log.index": j},
                    )
            with tracer.start_as_current_span(
                "charge", kind=SpanKind.CLIENT, attributes=attrs
            ) as child:
                with tracer.start_as_current_span(
                    "db.query", kind=SpanKind.INTERNAL, attributes=attrs
                ):
                    pass
                if i == 0:
                    child.add_event("retry", {"attempt": 2})
                    child.set_status(Status(StatusCode.ERROR, "card declined"))

    requests = meter.create_counter("scry.test.requests")
    for _ in range(3):
        requests.add(1, {"route": "/checkout"})
    latency = meter.create_histogram("scry.test.latency", unit="ms")
    for v in (5, 50, 500):
        latency.record(v)

    timeout_ms = (TIMEOUT_SECONDS + 5) * 1000
    try:
        flushed = {
            "spans": tracer_provider.force_flush(timeout_ms),
            "logs": logger_provider.force_flush(timeout_ms),
            "metrics": meter_provider.force_flush(timeout_ms),
        }
        tracer_provider.shutdown()
        logger_provider.shutdown()
        meter_provider.shutdown()
    except Exception as e:  # noqa: BLE001
        failures.append(f"flush or shutdown raised {e!r}")
        flushed = {}
    failures += [f"force_flush of {k} returned False" for k, ok in flushed.items() if not ok]
    if failures:
        for f in failures:
            print(f"otel_export: {f}", file=sys.stderr)
        sys.exit(1)

    json.dump(
        {
            "transport": args.transport,
            "run_id": args.run_id,
            "service": service,
            "trace_ids": trace_ids,
            "spans": 3 * args.spans,
            "logs": args.logs,
            "metric_names": METRIC_NAMES,
            "error_trace_id": trace_ids[0],
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
