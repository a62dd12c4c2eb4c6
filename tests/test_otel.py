"""
``CTXGUARD_OTEL``: each violation as a span event and a counter increment,
checked with the OpenTelemetry SDK's in-memory exporter and metric reader.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from flask import Flask, request
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.test.globals_test import (
    reset_metrics_globals,
    reset_trace_globals,
)

from flask_ctxguard import ConfigurationError, ContaminationError, CtxGuard


@pytest.fixture(name="spans")
def _spans():
    """The global tracer provider, exporting to memory; reset afterwards."""
    reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    reset_trace_globals()


@pytest.fixture(name="reader")
def _reader():
    """The global meter provider, read in memory; reset afterwards."""
    reset_metrics_globals()
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    yield reader
    reset_metrics_globals()


def buggy_app(**config: Any) -> Flask:
    """
    An app whose '/remember' view reads the previous request (CG103),
    inside a span, and whose '/plain' view does the same outside any span.
    """
    app = Flask("otel")
    app.config.update({"CTXGUARD_MODE": "log", **config})
    CtxGuard(app)
    cache: list[Any] = []
    tracer = trace.get_tracer("tests")

    def read_previous() -> str | None:
        previous = cache[-1].path if cache else None
        cache[:] = [request._get_current_object()]
        return previous

    @app.get("/remember")
    def remember() -> dict[str, Any]:
        with tracer.start_as_current_span("GET /remember"):
            return {"previous": read_previous()}

    @app.get("/plain")
    def plain() -> dict[str, Any]:
        return {"previous": read_previous()}

    return app


def counted(reader: InMemoryMetricReader) -> dict[tuple[Any, ...], int]:
    """The 'ctxguard.violations' points by attributes, from our meter."""
    points: dict[tuple[Any, ...], int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != "flask_ctxguard":
                continue
            for metric in scope.metrics:
                assert "ctxguard.violations" == metric.name
                for point in metric.data.data_points:
                    key = tuple(sorted(point.attributes.items()))
                    points[key] = point.value
    return points


def events_of(spans: InMemorySpanExporter) -> list[dict[str, Any]]:
    """The ctxguard span events of every finished span."""
    return [
        {"span": span.name, "name": event.name, **dict(event.attributes)}
        for span in spans.get_finished_spans()
        for event in span.events
        if event.name.startswith("ctxguard.")
    ]


CG103 = (("app", "otel"), ("code", "CG103"), ("kind", "cross-request-access"))


class TestOtel:
    def test_violation_is_a_span_event_and_a_counter_point(
        self, spans, reader
    ):
        """A CG103 adds a span event to the current span and counts 1."""
        client = buggy_app(CTXGUARD_OTEL=True).test_client()

        client.get("/remember")
        client.get("/remember")

        (event,) = events_of(spans)
        assert {
            "span": "GET /remember",
            "name": "ctxguard.contamination",
            "ctxguard.code": "CG103",
            "ctxguard.kind": "cross-request-access",
            "ctxguard.subject": "request",
        } == {k: v for k, v in event.items() if "site" not in k}
        assert event["ctxguard.access_site"].startswith("tests/test_otel.py:")
        assert event["ctxguard.origin_site"].startswith("tests/test_otel.py:")
        assert {CG103: 1} == counted(reader)

    def test_repeats_within_one_span_are_one_event(self, spans, reader):
        """
        Six reads of a kept request within one request's span are one span
        event (one finding), and six counter points.
        """
        app = buggy_app(CTXGUARD_OTEL=True)
        tracer = trace.get_tracer("tests")
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            kept.append(request._get_current_object())
            return ""

        @app.get("/read")
        def read() -> str:
            with tracer.start_as_current_span("GET /read"):
                return "".join(kept[0].path for _ in range(6))

        client = app.test_client()
        client.get("/keep")
        client.get("/read")
        client.get("/read")

        assert [("GET /read", "CG103"), ("GET /read", "CG103")] == [
            (event["span"], event["ctxguard.code"])
            for event in events_of(spans)
        ]
        assert {CG103: 12} == counted(reader)

    def test_counter_counts_every_violation(self, spans, reader):
        """Every violation counts, also those the log rate-limits."""
        client = buggy_app(CTXGUARD_OTEL=True).test_client()

        for _ in range(6):
            client.get("/remember")

        assert {CG103: 5} == counted(reader)
        assert 5 == len(events_of(spans))

    def test_without_a_recording_span_only_counts(self, spans, reader):
        """Outside any span, the violation is counted and nothing fails."""
        client = buggy_app(CTXGUARD_OTEL=True).test_client()

        client.get("/plain")
        response = client.get("/plain")

        assert 200 == response.status_code
        assert [] == events_of(spans)
        assert {CG103: 1} == counted(reader)

    def test_raise_mode_records_before_raising(self, spans, reader):
        """In raise mode the span event and count are made before the error."""
        app = buggy_app(CTXGUARD_OTEL=True, CTXGUARD_MODE="raise")
        app.testing = True
        client = app.test_client()
        client.get("/remember")

        with pytest.raises(ContaminationError):
            client.get("/remember")

        assert ["CG103"] == [e["ctxguard.code"] for e in events_of(spans)]
        assert {CG103: 1} == counted(reader)

    def test_off_by_default(self, spans, reader):
        """
        Without CTXGUARD_OTEL nothing reaches OpenTelemetry; with it, it does.
        """
        quiet = buggy_app().test_client()
        loud = buggy_app(CTXGUARD_OTEL=True).test_client()

        quiet.get("/remember")
        quiet.get("/remember")
        silent_events, silent_points = events_of(spans), counted(reader)
        loud.get("/remember")
        loud.get("/remember")

        assert ([], {}) == (silent_events, silent_points)
        assert {CG103: 1} == counted(reader)

    def test_failing_span_does_not_break_the_request(self, reader, events):
        """
        A span that raises is reported once as internal-error; the request goes
        on.
        """

        class BrokenSpan(trace.NonRecordingSpan):
            def is_recording(self) -> bool:
                return True

            def add_event(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("exporter down")

        app = buggy_app(CTXGUARD_OTEL=True)

        @app.get("/broken")
        def broken() -> dict[str, Any]:
            with trace.use_span(BrokenSpan(trace.INVALID_SPAN_CONTEXT)):
                return app.view_functions["plain"]()

        client = app.test_client()
        responses = [client.get("/broken") for _ in range(3)]

        assert [200, 200, 200] == [r.status_code for r in responses]
        errors = [e for e in events if e["event"] == "internal-error"]
        assert 1 == len(errors)
        assert "sending a violation to OpenTelemetry" == errors[0]["where"]


class TestConfig:
    def test_bad_value_fails_init_app(self):
        """A value that is not a bool fails init_app naming the key."""
        app = Flask("otel")
        app.config["CTXGUARD_OTEL"] = "yes"

        with pytest.raises(ConfigurationError) as info:
            CtxGuard(app)

        assert "CTXGUARD_OTEL must be True or False; got 'yes'." == str(
            info.value
        )

    def test_default_is_written_to_config(self):
        """init_app shows the default False in app.config."""
        app = Flask("otel")

        CtxGuard(app)

        assert app.config["CTXGUARD_OTEL"] is False

    def test_missing_api_fails_init_app(self, monkeypatch):
        """
        With the API not installed, CTXGUARD_OTEL fails init_app with the fix.
        """
        monkeypatch.setitem(sys.modules, "opentelemetry", None)
        monkeypatch.delitem(
            sys.modules, "flask_ctxguard._reporting.otel", raising=False
        )
        app = Flask("otel")
        app.config["CTXGUARD_OTEL"] = True

        with pytest.raises(ConfigurationError, match=r"\[otel\]'"):
            CtxGuard(app)

    @pytest.mark.parametrize(
        ("otel", "imported"),
        [
            (False, "False False"),
            (True, "True False"),
        ],
    )
    def test_only_the_api_is_imported_and_only_when_on(self, otel, imported):
        """Off imports no OpenTelemetry; on imports the API, never the SDK."""
        code = f"""
import sys
from flask import Flask, request
from flask_ctxguard import CtxGuard
app = Flask("otel")
app.config.update(CTXGUARD_MODE="log", CTXGUARD_OTEL={otel})
guard = CtxGuard(app)
kept = []
@app.get("/")
def view():
    if kept:
        kept[0].path
    kept[:] = [request._get_current_object()]
    return "ok"
client = app.test_client()
client.get("/")
client.get("/")
assert [v.code for v in guard.violations] == ["CG103"]
sys.stderr.flush()
print(
    "opentelemetry.trace" in sys.modules,
    any(name.startswith("opentelemetry.sdk") for name in sys.modules),
)
"""
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

        assert imported == result.stdout.strip().splitlines()[-1]
