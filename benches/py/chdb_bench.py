"""The chDB side of the benchmark harness (`scry-bench`, benches/src/harness.rs): ClickHouse
(embedded, PyPI `chdb`) with the OpenTelemetry Collector ClickHouse exporter's table layout,
loaded with the same data, asked the same questions.

Tables, as the exporter creates them (exporter/clickhouseexporter, `otel_traces`,
`otel_logs`, `otel_metrics_histogram`): MergeTree ordered by service / operation / time,
a bloom filter skip index on `TraceId` (hex string, as the exporter writes it), bloom
filters on attribute keys and values, ZSTD(1) codecs, Delta for timestamps.

Input (stdin, JSON): {"dir": store directory, "db_dir": chDB data directory,
"queries": {name: SQL}, "present": [hex ids], "absent": [hex ids], "runs": n}.
Output (stdout, JSON): query seconds (median of runs), trace lookup latencies (ms), load
seconds and rows per table, bytes on disk per table (data + skip indexes).
"""
import json
import shutil
import statistics
import sys
import time

from chdb import session

TRACES = """
CREATE TABLE otel_traces (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

LOGS = """
CREATE TABLE otel_logs (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree()
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

HISTOGRAMS = """
CREATE TABLE otel_metrics_histogram (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

# ScryDB's enumerations to the exporter's spellings (traceutil.SpanKindStr / StatusCodeStr).
KIND = "multiIf(kind = 'SERVER', 'Server', kind = 'CLIENT', 'Client', kind = 'PRODUCER', 'Producer', kind = 'CONSUMER', 'Consumer', kind = 'INTERNAL', 'Internal', 'Unspecified')"
STATUS = "multiIf(status_code = 'ERROR', 'Error', status_code = 'OK', 'Ok', 'Unset')"
ATTRS = "CAST(mapApply((k, v) -> (k, ifNull(v, '')), {0}), 'Map(LowCardinality(String), String)')"


def load(s, src):
    spans = f"file('{src}/spans/*/*.parquet', Parquet)"
    s.query(f"""INSERT INTO otel_traces SELECT
        time, lower(hex(trace_id)), lower(hex(span_id)), ifNull(lower(hex(parent_span_id)), ''),
        ifNull(trace_state, ''), name, {KIND}, service_name,
        {ATTRS.format('resource_attributes')}, ifNull(scope_name, ''), ifNull(scope_version, ''),
        {ATTRS.format('attributes')}, toUInt64(greatest(duration_ns, 0)), {STATUS},
        ifNull(status_message, ''),
        arrayMap(e -> assumeNotNull(e.time), events),
        arrayMap(e -> ifNull(e.name, ''), events),
        arrayMap(e -> {ATTRS.format('e.attributes')}, events),
        arrayMap(l -> lower(hex(ifNull(l.trace_id, ''))), links),
        arrayMap(l -> lower(hex(ifNull(l.span_id, ''))), links),
        arrayMap(l -> ifNull(l.trace_state, ''), links),
        arrayMap(l -> {ATTRS.format('l.attributes')}, links)
        FROM {spans}""")
    logs = f"file('{src}/logs/*/*.parquet', Parquet)"
    s.query(f"""INSERT INTO otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText,
        SeverityNumber, ServiceName, Body, ResourceAttributes, ScopeName, ScopeVersion, LogAttributes)
        SELECT time, ifNull(lower(hex(trace_id)), ''), ifNull(lower(hex(span_id)), ''),
        toUInt8(ifNull(flags, 0) % 256), ifNull(toString(severity_text), ''),
        toUInt8(greatest(ifNull(severity_number, 0), 0)), service_name, ifNull(body, ''),
        {ATTRS.format('resource_attributes')}, ifNull(scope_name, ''), ifNull(scope_version, ''),
        {ATTRS.format('attributes')}
        FROM {logs}""")
    metrics = f"file('{src}/metrics/*/*.parquet', Parquet)"
    s.query(f"""INSERT INTO otel_metrics_histogram SELECT
        {ATTRS.format('resource_attributes')}, service_name, name, ifNull(description, ''),
        ifNull(unit, ''), {ATTRS.format('attributes')}, ifNull(start_time, time), time,
        ifNull(count, 0), ifNull(sum, 0), ifNull(bucket_counts, []), ifNull(explicit_bounds, []),
        ifNull(min, 0), ifNull(max, 0),
        multiIf(aggregation_temporality = 'DELTA', 1, aggregation_temporality = 'CUMULATIVE', 2, 0)
        FROM {metrics} WHERE metric_type = 'histogram'""")


def timed(s, sql):
    t = time.perf_counter()
    s.query(sql, "Null")
    return time.perf_counter() - t


def main():
    req = json.load(sys.stdin)
    shutil.rmtree(req["db_dir"], ignore_errors=True)
    s = session.Session(req["db_dir"])
    out = {"version": s.query("SELECT version()", "CSV").data().strip().strip('"')}
    for ddl in (TRACES, LOGS, HISTOGRAMS):
        s.query(ddl)
    start = time.perf_counter()
    load(s, req["dir"])
    s.query("OPTIMIZE TABLE otel_traces FINAL")
    s.query("OPTIMIZE TABLE otel_logs FINAL")
    s.query("OPTIMIZE TABLE otel_metrics_histogram FINAL")
    out["load_seconds"] = time.perf_counter() - start
    sizes = s.query(
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active "
        "AND database = currentDatabase() GROUP BY table",
        "JSONCompact",
    ).data()
    out["tables"] = {t: {"rows": int(r), "bytes": int(b)} for t, r, b in json.loads(sizes)["data"]}
    out["queries"] = {}
    for name, sql in req["queries"].items():
        timed(s, sql)  # warm-up
        out["queries"][name] = statistics.median(timed(s, sql) for _ in range(req["runs"]))
    for key, ids in (("lookup_present_ms", req["present"]), ("lookup_absent_ms", req["absent"])):
        out[key] = [1000 * timed(s, f"SELECT * FROM otel_traces WHERE TraceId = '{h}'") for h in ids]
    s.close()
    shutil.rmtree(req["db_dir"], ignore_errors=True)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
