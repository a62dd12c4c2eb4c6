"""
The guard under faults: a log pipeline or a signal receiver that raises
or blocks changes no response and loses no violation.
"""

from __future__ import annotations

import logging
import threading

import flask
import pytest
import structlog
from flask import g, request, session

from flask_ctxguard import (
    CtxGuard,
    contamination_detected,
)
from tests._compat import needs_shared_g
from tests.helpers import (
    TIMEOUT,
    Worker,
    buggy_app,
    codes,
    drive_bugs,
    drop_event,
    found,
    reply,
)


def healthy_run() -> tuple[list[tuple[int, bytes]], list[tuple[str, str]]]:
    """
    What `drive_bugs` gives with a bare app, and what a guard finds with a
    healthy log pipeline: the reference for the faulty ones.
    """
    bare = drive_bugs(buggy_app())
    structlog.configure(processors=[drop_event])
    app = buggy_app()
    guard = CtxGuard(app)
    drive_bugs(app)
    reported = found(guard)
    # Each bug, at least once: the tenant stays set for every later request.
    assert {
        ("CG101", "g.value"),
        ("CG103", "request"),
        ("CG106", "ContextVar tenant"),
    } == set(reported)
    return bare, reported


class TestFaults:
    @needs_shared_g
    def test_raising_log_pipeline(self, caplog):
        """
        A structlog pipeline that raises on every event: responses are
        those of the bare app, every violation is still kept, and the guard
        says once, on the stdlib logger, that logging failed.
        """
        bare, reported = healthy_run()

        def broken(logger, method_name, event_dict):
            raise RuntimeError("pipeline down")

        structlog.configure(processors=[broken])
        app = buggy_app()
        guard = CtxGuard(app)

        with caplog.at_level(logging.ERROR, logger="flask_ctxguard"):
            guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        records = [r for r in caplog.records if r.name == "flask_ctxguard"]
        assert [
            (
                "ERROR",
                "flask_ctxguard: logging a violation failed; the guard"
                " carries on and the request is unaffected. This is"
                " reported once.",
            )
        ] == [(r.levelname, r.getMessage()) for r in records]
        assert "pipeline down" == str(records[0].exc_info[1])

    @needs_shared_g
    def test_pipeline_failing_for_contamination_events(self, events):
        """
        A pipeline that only fails on 'contamination' events: the failure is
        one 'internal-error' event at error level, with the exception.
        """
        collect = structlog.get_config()["processors"][-1]
        bare, reported = healthy_run()

        def fussy(logger, method_name, event_dict):
            if event_dict["event"] == "contamination":
                raise ValueError("cannot render")
            return event_dict

        structlog.configure(
            processors=[structlog.processors.add_log_level, fussy, collect]
        )
        app = buggy_app()
        guard = CtxGuard(app)

        guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        assert [("internal-error", "error", "logging a violation")] == [
            (e["event"], e["level"], e["where"]) for e in events
        ]
        assert isinstance(events[0]["exc_info"], ValueError)

    @needs_shared_g
    def test_raising_receiver_and_pipeline(self, caplog):
        """
        A raising receiver and a raising pipeline together: requests are
        unaffected and each failure is said once.
        """
        bare, reported = healthy_run()

        def broken(logger, method_name, event_dict):
            raise RuntimeError("pipeline down")

        def receiver(sender, violation):
            raise KeyError("receiver down")

        structlog.configure(processors=[broken])
        app = buggy_app()
        guard = CtxGuard(app)

        with (
            caplog.at_level(logging.ERROR, logger="flask_ctxguard"),
            contamination_detected.connected_to(receiver),
        ):
            guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        said = sorted(
            r.getMessage().split(";")[0]
            for r in caplog.records
            if r.name == "flask_ctxguard"
        )
        assert [
            "flask_ctxguard: a contamination_detected receiver failed",
            "flask_ctxguard: logging a violation failed",
        ] == said

    @needs_shared_g
    def test_pipeline_reading_the_current_request(self, events):
        """
        An app's log processor that adds the current request's path, 'g'
        and session to every event runs inside the guard's reports (also
        those made while a request closes): it sees its own request, and
        nothing more is reported or fails.
        """
        collect = structlog.get_config()["processors"][-1]
        bare, reported = healthy_run()

        def add_request(logger, method_name, event_dict):
            if flask.has_request_context():
                event_dict["path"] = request.path
                event_dict["user"] = g.get("user")
                event_dict["session_user"] = session.get("user")
            return event_dict

        structlog.configure(processors=[add_request, collect])
        app = buggy_app()
        guard = CtxGuard(app)

        guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        assert {"contamination"} == {e["event"] for e in events}
        cg106 = [e for e in events if e["code"] == "CG106"]
        assert [e["accessor"]["path"] for e in cg106] == [
            e["path"] for e in cg106
        ]

    @pytest.mark.parametrize("sink", ["log pipeline", "signal receiver"])
    def test_blocked_sink_blocks_nobody_else(self, sink):
        """
        While a log pipeline (or receiver) blocks in one request's report,
        another thread's report completes, and so do clean requests, which
        log nothing: the guard holds no lock while it reports.
        """
        app = buggy_app()
        guard = CtxGuard(app)
        entered, release = threading.Event(), threading.Event()
        calls: list[str] = []

        def block_first_reporter() -> None:
            name = threading.current_thread().name
            calls.append(name)
            if name == "blocked-reporter":
                entered.set()
                release.wait(TIMEOUT)

        def processor(logger, method_name, event_dict):
            if sink == "log pipeline":
                block_first_reporter()
            raise structlog.DropEvent

        def receiver(sender, violation):
            if sink == "signal receiver":
                block_first_reporter()

        structlog.configure(processors=[processor])
        app.test_client().get("/keep?n=0")

        def peek() -> tuple[int, bytes]:
            return reply(app.test_client().get("/peek"))

        def clean() -> list[tuple[int, bytes]]:
            client = app.test_client()
            return [reply(client.get(f"/clean/cy?n={n}")) for n in range(50)]

        blocked = Worker(peek, "blocked-reporter")
        other = Worker(peek, "other-reporter")
        cleaner = Worker(clean, "clean-client")
        with contamination_detected.connected_to(receiver):
            blocked.start()
            try:
                assert entered.wait(TIMEOUT)
                other.start()
                cleaner.start()
                other.join(TIMEOUT)
                cleaner.join(TIMEOUT)
                others_done = not other.is_alive() and not cleaner.is_alive()
                still_blocked = blocked.is_alive()
            finally:
                release.set()
            outcome = blocked.outcome()

        assert (True, True) == (others_done, still_blocked)
        assert (200, b"peeked 0") == outcome
        assert (200, b"peeked 0") == other.outcome()
        assert [(200, f"cy cy {n}".encode()) for n in range(50)] == (
            cleaner.outcome()
        )
        assert ["CG103", "CG103"] == codes(guard)
        assert ["blocked-reporter", "other-reporter"] == sorted(calls)
