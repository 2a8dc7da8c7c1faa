"""The pytest fixture: spans emitted through the real OpenTelemetry SDK land in ScryDB."""

from opentelemetry import trace

# Kept from one test to the next, as instrumented modules do.
TRACER = trace.get_tracer("shop")


def checkout(fail):
    tracer = TRACER
    with tracer.start_as_current_span("checkout") as span:
        span.set_attribute("cart.items", 3)
        with tracer.start_as_current_span("charge card") as child:
            if fail:
                child.set_status(trace.Status(trace.StatusCode.ERROR, "card declined"))


def test_the_fixture_collects_the_spans_code_emits(scrydb_spans):
    checkout(fail=False)
    checkout(fail=True)
    t = scrydb_spans.sql(
        "SELECT name, status_code, count(*) AS n FROM spans GROUP BY name, status_code "
        "ORDER BY name, status_code"
    )
    assert t.to_pylist() == [
        {"name": "charge card", "status_code": "ERROR", "n": 1},
        {"name": "charge card", "status_code": "UNSET", "n": 1},
        {"name": "checkout", "status_code": "UNSET", "n": 2},
    ]
    # Parent links and one trace per call.
    pairs = scrydb_spans.sql(
        "SELECT c.name AS child, p.name AS parent FROM spans c JOIN spans p "
        "ON c.parent_span_id = p.span_id AND c.trace_id = p.trace_id"
    )
    assert pairs.to_pylist() == [{"child": "charge card", "parent": "checkout"}] * 2
    tid = scrydb_spans.sql(
        "SELECT trace_id FROM spans WHERE status_code = 'ERROR'"
    ).column("trace_id")[0].as_py()
    tr = scrydb_spans.db.trace(tid)
    assert [n["name"] for n in tr.tree()] == ["checkout", "charge card"]
    assert scrydb_spans.exporter.last_result["rejected"] == 0


def test_a_second_test_sees_only_its_own_spans_through_the_same_tracer(scrydb_spans):
    checkout(fail=True)
    t = scrydb_spans.sql("SELECT count(*) AS n FROM spans")
    assert t.column("n")[0].as_py() == 2
