from __future__ import annotations

import json
import logging

import pytest
import structlog
from flask import Flask, g
from structlog.testing import capture_logs

import flask_ctxguard
from flask_ctxguard import (
    RULES,
    ContaminationError,
    CtxGuard,
    RequestTag,
    Violation,
    contamination_detected,
)
from tests._compat import needs_shared_g
from tests.helpers import add_g_user_views, is_library_path, share_g


def _tag(token, path):
    return RequestTag(
        token=token,
        thread_id=7,
        thread_name="MainThread",
        method="GET",
        path=path,
        endpoint=path.strip("/").split("/")[0] or "index",
        started=0.0,
    )


def _violation(**changes):
    fields = {
        "code": "CG101",
        "kind": "g-leak",
        "message": (
            "'g.user' was read during GET /me (request 3f9a-7, thread"
            " 'MainThread') but was set during GET /login/alice (request"
            " 3f9a-6)."
        ),
        "subject": "g.user",
        "origin": _tag("3f9a-6", "/login/alice"),
        "accessor": _tag("3f9a-7", "/me"),
        "thread": "MainThread",
        "origin_site": "app/views.py:12 in login",
        "access_site": "app/views.py:31 in me",
        "hint": RULES["CG101"].hint,
        "value_type": "User",
        "app": "app",
    }
    fields.update(changes)
    return Violation(**fields)


def _leaky_app(**config):
    """An app whose /get reads g.user set by /set/<name>: CG101 when an
    app context is pushed around both requests."""
    app = Flask("leaky")
    app.config.update(SECRET_KEY="k", **config)
    add_g_user_views(app)
    return app


class TestRules:
    def test_codes_and_kinds(self):
        """The rule table is docs/rules.md's, code for code."""
        assert {
            "CG101": "g-leak",
            "CG102": "stale-access",
            "CG103": "cross-request-access",
            "CG104": "cross-thread-access",
            "CG105": "context-leak",
            "CG106": "contextvar-leak",
        } == {code: rule.kind for code, rule in RULES.items()}

    def test_docs_url(self):
        """Every rule links its page on the docs site."""
        assert (
            "https://flask-ctxguard.readthedocs.io/en/latest/rules/cg104.html"
            == RULES["CG104"].docs
        )


class TestViolation:
    def test_str_reads_like_a_sanitizer_report(self):
        """str(v): what, value type, both sites, the fix, the docs."""
        assert (
            "CG101 g-leak: 'g.user' was read during GET /me (request"
            " 3f9a-7, thread 'MainThread') but was set during GET"
            " /login/alice (request 3f9a-6).\n"
            "  value: User\n"
            "  read at: app/views.py:31 in me\n"
            "  set at:  app/views.py:12 in login\n"
            f"  fix: {RULES['CG101'].hint}\n"
            "  docs: https://flask-ctxguard.readthedocs.io/en/latest/rules/"
            "cg101.html (offline: 'python -m flask_ctxguard explain CG101')"
        ) == str(_violation())

    def test_str_with_stacks(self):
        """Full stacks, when kept, follow the short report."""
        text = str(_violation(access_stack='  File "a.py", line 1, in f\n'))

        assert text.endswith(
            '  read at (stack):\n      File "a.py", line 1, in f'
        )

    def test_to_dict_is_json_safe(self):
        """to_dict() holds every field and survives json.dumps."""
        data = json.loads(json.dumps(_violation().to_dict()))

        assert "CG101" == data["code"]
        assert "3f9a-6" == data["origin"]["token"]
        assert "/me" == data["accessor"]["path"]
        assert data["value"] is None
        assert {
            "code",
            "kind",
            "subject",
            "message",
            "origin",
            "accessor",
            "origin_site",
            "access_site",
            "origin_stack",
            "access_stack",
            "hint",
            "docs",
            "app",
            "thread",
            "timestamp",
            "value_type",
            "value",
        } == set(data)

    def test_accessor_outside_requests_is_a_thread(self):
        """A violation outside any request names the thread instead."""
        fields = _violation(accessor=None, thread="audit").log_fields()

        assert {"thread": "audit"} == fields["accessor"]

    def test_immutable(self):
        """Violations are frozen values."""
        violation = _violation()

        with pytest.raises(AttributeError):
            violation.code = "CG102"  # type: ignore[misc]


class TestStructuredLog:
    @needs_shared_g
    def test_one_event_per_violation(self):
        """A violation is one 'contamination' warning with the documented
        keys (docs/logs.md)."""
        app = _leaky_app(CTXGUARD_MODE="log")
        CtxGuard(app)

        with capture_logs() as logs:
            share_g(app)

        assert 1 == len(logs)
        event = logs[0]
        assert "contamination" == event["event"]
        assert "warning" == event["log_level"]
        assert "CG101" == event["code"]
        assert "g-leak" == event["kind"]
        assert "g.user" == event["subject"]
        assert "/set/alice" == event["origin"]["path"]
        assert "/get" == event["accessor"]["path"]
        assert "MainThread" == event["accessor"]["thread"]
        assert event["origin_site"].endswith("in set_user")
        assert event["access_site"].endswith("in get_user")
        assert "leaky" == event["app"]
        assert "str" == event["value_type"]
        assert "value" not in event
        assert "alice" not in json.dumps(event, default=str).replace(
            "/set/alice", ""
        )

    @needs_shared_g
    def test_error_level_in_raise_mode(self):
        """In raise mode the event is logged at error level."""
        app = _leaky_app(CTXGUARD_MODE="raise", TESTING=True)
        CtxGuard(app)

        with capture_logs() as logs, pytest.raises(ContaminationError):
            share_g(app)

        assert ["error"] == [e["log_level"] for e in logs]

    @needs_shared_g
    def test_values_only_when_asked(self):
        """CTXGUARD_LOG_VALUES adds a short repr of the leaked value."""
        app = _leaky_app(CTXGUARD_MODE="log", CTXGUARD_LOG_VALUES=True)
        CtxGuard(app)

        with capture_logs() as logs:
            share_g(app)

        assert "'alice'" == logs[0]["value"]

    @needs_shared_g
    def test_stacks_only_when_asked(self):
        """CTXGUARD_STACKS adds both full stacks to the event."""
        app = _leaky_app(CTXGUARD_MODE="log", CTXGUARD_STACKS=True)
        CtxGuard(app)

        with capture_logs() as logs:
            share_g(app)

        assert "in get_user" in logs[0]["access_stack"]
        assert "in set_user" in logs[0]["origin_stack"]

    @needs_shared_g
    def test_no_stacks_by_default(self):
        """Without CTXGUARD_STACKS only the first user frame is kept."""
        app = _leaky_app(CTXGUARD_MODE="log")
        CtxGuard(app)

        with capture_logs() as logs:
            share_g(app)

        assert "access_stack" not in logs[0]
        assert "origin_stack" not in logs[0]

    @needs_shared_g
    def test_never_configures_structlog(self):
        """The app's structlog configuration applies to our events."""
        seen = []

        def spy(logger, method_name, event_dict):
            seen.append(event_dict["event"])
            raise structlog.DropEvent

        structlog.configure(processors=[spy])
        app = _leaky_app(CTXGUARD_MODE="log")
        CtxGuard(app)

        share_g(app)

        assert ["contamination"] == seen
        assert [spy] == structlog.get_config()["processors"]


class TestRateLimit:
    @needs_shared_g
    def test_repeats_are_counted_not_flooded(self):
        """3000 identical violations: every one kept, few logged."""
        app = _leaky_app(CTXGUARD_MODE="log", CTXGUARD_MAX_VIOLATIONS=5000)
        guard = CtxGuard(app)

        with capture_logs() as logs:
            share_g(app, gets=3000)

        assert 3000 == len(guard.violations)
        assert len(logs) <= 100
        counts = [e.get("repeats", 1) for e in logs]
        assert [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048] == counts

    @needs_shared_g
    def test_different_sites_are_logged_separately(self):
        """Each (code, subject, sites) is rate-limited on its own."""
        app = _leaky_app(CTXGUARD_MODE="log")

        @app.route("/other")
        def other():
            return str(g.get("user"))

        CtxGuard(app)

        with capture_logs() as logs, app.app_context():
            client = app.test_client()
            client.get("/set/alice")
            client.get("/get")
            client.get("/other")

        assert [None, None] == [e.get("repeats") for e in logs]

    @needs_shared_g
    def test_buffer_is_bounded(self):
        """guard.violations keeps only the newest CTXGUARD_MAX_VIOLATIONS."""
        app = _leaky_app(CTXGUARD_MODE="log", CTXGUARD_MAX_VIOLATIONS=3)
        guard = CtxGuard(app)

        share_g(app, gets=10)

        timestamps = [v.timestamp for v in guard.violations]
        assert sorted(timestamps) == timestamps
        assert 3 == len(timestamps)

    @needs_shared_g
    def test_clear(self):
        """guard.clear() forgets every violation and every repeat count."""
        app = _leaky_app(CTXGUARD_MODE="log")
        guard = CtxGuard(app)
        share_g(app)
        before = [v.code for v in guard.violations]

        guard.clear()
        cleared = list(guard.violations)
        with capture_logs() as logs:
            share_g(app)

        assert ["CG101"] == before
        assert [] == cleared
        assert ["CG101"] == [v.code for v in guard.violations]
        assert [None] == [e.get("repeats") for e in logs]


class TestSignal:
    @needs_shared_g
    def test_sent_for_every_violation(self):
        """contamination_detected is sent with the app and the violation."""
        app = _leaky_app(CTXGUARD_MODE="log")
        guard = CtxGuard(app)
        received = []

        def receiver(sender, violation):
            received.append((sender, violation))

        with contamination_detected.connected_to(receiver):
            share_g(app, gets=3)

        assert [(app, v) for v in guard.violations] == received
        assert 3 == len(received)

    @needs_shared_g
    def test_sent_in_raise_mode_before_raising(self):
        """In raise mode receivers still see the violation."""
        app = _leaky_app(CTXGUARD_MODE="raise", TESTING=True)
        CtxGuard(app)
        received = []

        def receiver(sender, violation):
            received.append(violation.code)

        with (
            contamination_detected.connected_to(receiver),
            pytest.raises(ContaminationError),
        ):
            share_g(app)

        assert ["CG101"] == received


class TestModes:
    @needs_shared_g
    def test_raise_at_the_offending_access(self):
        """Raise mode raises ContaminationError at the line that read."""
        app = _leaky_app(CTXGUARD_MODE="raise", TESTING=True)
        CtxGuard(app)

        with pytest.raises(ContaminationError) as excinfo:
            share_g(app)

        assert isinstance(excinfo.value, RuntimeError)
        assert "CG101" == excinfo.value.violation.code
        assert str(excinfo.value) == str(excinfo.value.violation)
        frames = [entry.name for entry in excinfo.traceback]
        user = [
            e
            for e in excinfo.traceback
            if not is_library_path(e.path, flask_ctxguard)
        ]
        assert "get_user" in frames
        assert "get_user" == user[-1].name

    @needs_shared_g
    def test_collecting_suspends_raise_mode(self):
        """Within Reporter.collecting() raise mode collects, then raises."""
        app = _leaky_app(CTXGUARD_MODE="raise", TESTING=True)
        guard = CtxGuard(app)
        reporter = app.extensions["ctxguard"].reporter

        with reporter.collecting():
            assert not reporter.raising
            responses = share_g(app)

        assert [b"alice"] == [r.data for r in responses]
        assert ["CG101"] == [v.code for v in guard.violations]
        assert reporter.raising
        with pytest.raises(ContaminationError):
            share_g(app)

    @needs_shared_g
    def test_collecting_blocks_nest(self):
        """Raise mode returns only when the last collecting() block closes."""
        app = _leaky_app(CTXGUARD_MODE="raise", TESTING=True)
        CtxGuard(app)
        reporter = app.extensions["ctxguard"].reporter
        outer = reporter.collecting()
        inner = reporter.collecting()

        outer.__enter__()
        inner.__enter__()
        outer.__exit__(None, None, None)  # overlapping, not nested
        still_collecting = share_g(app)
        inner.__exit__(None, None, None)

        assert [b"alice"] == [r.data for r in still_collecting]
        assert "raise" == reporter.settings.mode
        with pytest.raises(ContaminationError):
            share_g(app)

    @needs_shared_g
    def test_log_mode_is_transparent(self):
        """Log mode returns exactly what bare Flask returns."""
        bare = share_g(_leaky_app())
        app = _leaky_app(CTXGUARD_MODE="log")
        guard = CtxGuard(app)

        guarded = share_g(app)

        assert [(r.status, r.data) for r in bare] == [
            (r.status, r.data) for r in guarded
        ]
        assert [b"alice"] == [r.data for r in guarded]
        assert ["CG101"] == [v.code for v in guard.violations]

    @needs_shared_g
    def test_off_installs_nothing(self):
        """Off mode leaves the app's classes and handlers untouched."""
        app = _leaky_app(CTXGUARD_MODE="off")
        request_class = app.request_class
        g_class = app.app_ctx_globals_class
        guard = CtxGuard(app)

        share_g(app)

        assert request_class is app.request_class
        assert g_class is app.app_ctx_globals_class
        assert {} == dict(app.before_request_funcs)
        assert [] == guard.violations

        control = _leaky_app(CTXGUARD_MODE="log")
        control_guard = CtxGuard(control)
        share_g(control)

        assert ["CG101"] == [v.code for v in control_guard.violations]

    @needs_shared_g
    def test_ignore_by_code_and_subject(self):
        """CTXGUARD_IGNORE drops codes, subjects and subject patterns, and
        nothing else."""
        for ignore in (["CG101"], ["g.user"], ["g.*"]):
            app = _leaky_app(CTXGUARD_MODE="raise", CTXGUARD_IGNORE=ignore)
            guard = CtxGuard(app)

            share_g(app)

            assert [] == guard.violations

        for ignore in (["CG102"], ["g.other"], ["request*"]):
            app = _leaky_app(CTXGUARD_MODE="log", CTXGUARD_IGNORE=ignore)
            guard = CtxGuard(app)

            share_g(app)

            assert ["CG101"] == [v.code for v in guard.violations], ignore


class TestContainment:
    @needs_shared_g
    def test_raising_log_pipeline(self, caplog):
        """A structlog pipeline that raises: the request is unaffected,
        the failure is reported once at error level."""

        def broken(logger, method_name, event_dict):
            raise RuntimeError("pipeline down")

        structlog.configure(processors=[broken])
        app = _leaky_app(CTXGUARD_MODE="log")
        guard = CtxGuard(app)

        with caplog.at_level(logging.ERROR, logger="flask_ctxguard"):
            responses = share_g(app, gets=3)

        assert [b"alice"] * 3 == [r.data for r in responses]
        assert 3 == len(guard.violations)
        errors = [r for r in caplog.records if r.name == "flask_ctxguard"]
        assert 1 == len(errors)
        assert "logging a violation failed" in errors[0].getMessage()
        assert "pipeline down" == str(errors[0].exc_info[1])

    @needs_shared_g
    def test_raising_receiver(self):
        """A signal receiver that raises does not break the request."""
        app = _leaky_app(CTXGUARD_MODE="log")
        guard = CtxGuard(app)

        def receiver(sender, violation):
            raise RuntimeError("receiver down")

        with (
            contamination_detected.connected_to(receiver),
            capture_logs() as logs,
        ):
            responses = share_g(app, gets=2)

        assert [b"alice"] * 2 == [r.data for r in responses]
        assert 2 == len(guard.violations)
        internal = [e for e in logs if e["event"] == "internal-error"]
        assert 1 == len(internal)
        assert "error" == internal[0]["log_level"]
        assert "a contamination_detected receiver" == internal[0]["where"]

    def test_internal_error_is_contained(self, monkeypatch):
        """A bug inside the guard is logged once; requests go on."""
        from flask_ctxguard._guard import lifecycle as _lifecycle

        def broken(*args, **kwargs):
            raise RuntimeError("guard bug")

        monkeypatch.setattr(_lifecycle, "RequestRecord", broken)
        app = _leaky_app(CTXGUARD_MODE="log")
        CtxGuard(app)
        client = app.test_client()

        with capture_logs() as logs:
            responses = [client.get("/set/bob") for _ in range(3)]

        assert [b"bob"] * 3 == [r.data for r in responses]
        internal = [e for e in logs if e["event"] == "internal-error"]
        assert 1 == len(internal)
        assert "starting to guard a request" == internal[0]["where"]
        assert isinstance(internal[0]["exc_info"], RuntimeError)
