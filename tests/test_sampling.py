"""
CTXGUARD_SAMPLE_RATE: guarding a random share of requests.

The decision draws from the ``random`` module, so the tests seed it: each
run sees the same requests sampled, and each test still fails if a
detection that sampling must keep is lost.
"""

from __future__ import annotations

import contextvars
import gc
import json
import math
import pathlib
import random
import weakref
from typing import Any

import pytest
from flask import Flask, g, request, session
from structlog.testing import capture_logs

from flask_ctxguard import ConfigurationError, CtxGuard, Violation, _cli

TENANT: contextvars.ContextVar[object] = contextvars.ContextVar(
    "sampling_tenant"
)


@pytest.fixture(autouse=True)
def _seeded():
    state = random.getstate()
    random.seed(15)
    yield
    random.setstate(state)


def _app(rate: float, **config: Any) -> Flask:
    app = Flask("sampled")
    app.secret_key = "sampling"
    app.config.update(CTXGUARD_SAMPLE_RATE=rate, **config)
    return app


def _run_isolated(function: Any) -> Any:
    """Run *function* in a context of its own, as a fresh worker thread."""
    return contextvars.Context().run(function)


def _logs_of_kept_requests(rate: float) -> list[dict[str, Any]]:
    """The log events of 20 kept requests read later, at *rate*."""
    app = _app(rate)
    CtxGuard(app)
    kept: list[Any] = []

    @app.get("/keep")
    def keep() -> str:
        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return "kept"

    client = app.test_client()
    for _ in range(20):
        client.get("/keep")
    with capture_logs() as logs:
        for kept_request in kept:
            kept_request.args.to_dict()
    return logs


class TestSetting:
    def test_default_guards_every_request(self):
        """The default rate is 1.0: every request is guarded."""
        app = Flask("default")
        guard = CtxGuard(app)
        seen = []

        @app.get("/")
        def index() -> str:
            seen.append(guard.current() is not None)
            return "ok"

        client = app.test_client()
        for _ in range(20):
            client.get("/")

        assert 1.0 == app.config["CTXGUARD_SAMPLE_RATE"]
        assert [True] * 20 == seen

    @pytest.mark.parametrize(
        "rate", [0, 0.0, -0.5, 1.01, 2, "0.1", True, None, math.nan]
    )
    def test_bad_rate_fails_init_app(self, rate):
        """A rate outside (0, 1], or not a number, fails init_app."""
        with pytest.raises(
            ConfigurationError,
            match=r"^CTXGUARD_SAMPLE_RATE must be a number greater than 0"
            r" and at most 1, the share of requests to guard \(such as 0.01"
            r" for one in a hundred\); got ",
        ):
            CtxGuard(_app(rate))

    @pytest.mark.parametrize("rate", [1, 0.5, 1e-6])
    def test_good_rates_are_accepted(self, rate):
        """An int 1 and any fraction in (0, 1] are accepted."""
        app = _app(rate)
        CtxGuard(app)

        assert rate == app.config["CTXGUARD_SAMPLE_RATE"]


class TestSampledRequests:
    def test_about_the_rate_is_guarded(self):
        """At rate 0.25 about a quarter of the requests are guarded, and
        an unsampled request is Flask's own, with nothing of the guard."""
        app = _app(0.25)
        guard = CtxGuard(app)
        seen: list[tuple[bool, bool]] = []

        @app.get("/")
        def index() -> str:
            guarded = guard.current() is not None
            plain = type(request._get_current_object()) is Flask.request_class  # type: ignore[attr-defined]
            seen.append((guarded, plain))
            return "ok"

        client = app.test_client()
        for _ in range(400):
            client.get("/")
        guarded = sum(1 for was, _ in seen if was)

        assert 60 < guarded < 140
        assert all(was != plain for was, plain in seen)
        assert [] == guard.violations

    def test_the_classes_of_sampled_requests_are_made_once(self):
        """The request, session and g classes sampled requests are
        switched to are made by init_app and kept for the app: a garbage
        collection between sampled requests does not make them again."""
        app = _app(0.5)
        guard = CtxGuard(app)
        seen: list[tuple[weakref.ref[type], ...]] = []

        @app.get("/")
        def index() -> str:
            session["visits"] = session.get("visits", 0) + 1
            g.user = "ada"
            if guard.current() is not None:
                objects = (request, session, g)
                seen.append(
                    tuple(
                        weakref.ref(type(o._get_current_object()))  # type: ignore[attr-defined]
                        for o in objects
                    )
                )
            return "ok"

        client = app.test_client()
        for _ in range(40):
            client.get("/")
            gc.collect()

        assert len(seen) > 10
        assert 1 == len(set(seen))
        assert all(ref() is not None for ref in seen[0])
        assert [] == guard.violations

    def test_kept_request_of_a_sampled_request_is_caught(self):
        """A request object kept from a sampled request is reported when
        used later; one kept from an unsampled request is not."""
        app = _app(0.5)
        guard = CtxGuard(app)
        kept: list[tuple[Any, bool]] = []

        @app.get("/keep")
        def keep() -> str:
            kept.append(
                (
                    request._get_current_object(),  # type: ignore[attr-defined]
                    guard.current() is not None,
                )
            )
            return "kept"

        client = app.test_client()
        for _ in range(40):
            client.get("/keep")
        for kept_request, _ in kept:
            assert {} == kept_request.args.to_dict()
        sampled = sum(1 for _, was in kept if was)

        assert 0 < sampled < 40
        assert ["CG102"] * sampled == [v.code for v in guard.violations]

    def test_kept_request_used_by_an_unsampled_request(self):
        """A sampled request's object used during an unsampled request is
        CG103, naming no accessor."""
        app = _app(0.5)
        guard = CtxGuard(app)
        last: list[Any] = []

        @app.get("/chain")
        def chain() -> str:
            previous = last[0].args.get("n", "") if last else ""
            last[:] = [request._get_current_object()]  # type: ignore[attr-defined]
            return previous

        client = app.test_client()
        for n in range(40):
            client.get(f"/chain?n={n}")
        unnamed = [v for v in guard.violations if v.accessor is None]

        assert guard.violations
        assert {"CG103"} == {v.code for v in guard.violations}
        assert unnamed
        assert "one that was not sampled" in unnamed[0].message

    def test_session_and_g_of_a_sampled_request_are_guarded(self):
        """A sampled request's session and g are checked too: kept and
        read later, they are CG102."""
        app = _app(0.5)
        guard = CtxGuard(app)
        kept: list[tuple[Any, Any, bool]] = []

        @app.get("/both")
        def both() -> str:
            session["user"] = "ada"
            g.user = "ada"
            kept.append(
                (
                    session._get_current_object(),  # type: ignore[attr-defined]
                    g._get_current_object(),  # type: ignore[attr-defined]
                    guard.current() is not None,
                )
            )
            return "ok"

        client = app.test_client()
        for _ in range(20):
            client.get("/both")
        for kept_session, kept_g, _ in kept:
            assert ("ada", "ada") == (kept_session["user"], kept_g.user)
        sampled = sum(1 for *_, was in kept if was)

        assert 0 < sampled < 20
        assert [("CG102", "session"), ("CG102", "g")] * sampled == [
            (v.code, v.subject) for v in guard.violations
        ]

    def test_every_log_event_carries_the_rate(self):
        """Each 'contamination' event states the sample rate."""
        logs = _logs_of_kept_requests(0.5)

        assert logs
        assert {0.5} == {event["sample_rate"] for event in logs}


def _tenant_violations(*, reset: bool) -> list[Violation]:
    """
    The violations of 60 logins that set a ContextVar (and *reset* it, or
    not), each followed by a page that does not, at a rate of 0.5.
    """
    app = _app(0.5)
    guard = CtxGuard(app)

    @app.get("/login/<name>")
    def login(name: str) -> str:
        token = TENANT.set(object())
        if reset:
            TENANT.reset(token)
        return name

    @app.get("/page")
    def page() -> str:
        return "page"

    def drive() -> None:
        client = app.test_client()
        for n in range(60):
            client.get(f"/login/u{n}")
            client.get("/page")

    _run_isolated(drive)
    return guard.violations


class TestSampledContextVars:
    def test_var_left_by_any_request_is_caught(self):
        """A ContextVar left set is reported when a later sampled request
        holds it: with its origin if that request was sampled, as unknown
        if not; a request that resets it is never reported."""
        violations = _tenant_violations(reset=False)
        known = [v for v in violations if v.origin is not None]
        unknown = [v for v in violations if v.origin is None]

        assert {"CG106"} == {v.code for v in violations}
        assert {"/page"} == {v.accessor.path for v in violations}
        assert known
        assert all(v.origin.path.startswith("/login/u") for v in known)
        assert unknown
        assert "which request is unknown" in unknown[0].message
        assert "CTXGUARD_SAMPLE_RATE = 0.5" in unknown[0].message

    def test_var_reset_by_each_request_is_silent(self):
        """Requests that set and reset a ContextVar are not reported under
        sampling; the positive control, left set, is."""
        silent = _tenant_violations(reset=True)
        control = _tenant_violations(reset=False)

        assert [] == [v.code for v in silent]
        assert "CG106" in [v.code for v in control]


def _binding_violations(*, clear: bool) -> list[Violation]:
    """
    The violations of 60 logins that bind a cached user's id into
    structlog's context (after clearing it, or not), each followed by a
    page that binds nothing, at a rate of 0.5.
    """
    from structlog.contextvars import bind_contextvars, clear_contextvars

    app = _app(0.5)
    guard = CtxGuard(app)
    users = {f"u{n}": f"user u{n}" for n in range(60)}

    @app.before_request
    def bind_log_context() -> None:
        if clear:
            clear_contextvars()
        name = request.path.rpartition("/")[2]
        if name in users:
            bind_contextvars(user_id=users[name])

    @app.get("/login/<name>")
    def login(name: str) -> str:
        return name

    @app.get("/page")
    def page() -> str:
        return "page"

    def drive() -> None:
        client = app.test_client()
        for n in range(60):
            client.get(f"/login/u{n}")
            client.get("/page")

    _run_isolated(drive)
    return guard.violations


class TestSampledStructlog:
    def test_a_binding_left_by_an_unsampled_request_is_caught(self):
        """Without the clear, a user id an unsampled login bound is CG106
        with an unknown origin in the next sampled page; with the clear,
        nothing is reported."""
        leaked = _binding_violations(clear=False)
        cleared = _binding_violations(clear=True)

        assert {"ContextVar structlog_user_id"} == {v.subject for v in leaked}
        assert any(v.origin is None for v in leaked)
        assert [] == cleared


class TestRecurringBugs:
    def test_both_recurring_bugs_are_reported_at_one_percent(self):
        """At rate 0.01 an app whose bugs recur on every request (a kept
        request read by the next one, a ContextVar left set) is reported
        for both within 3,000 requests, and for nothing else."""
        app = _app(0.01)
        guard = CtxGuard(app)
        last: list[Any] = []

        @app.before_request
        def remember_user() -> None:
            g.user = request.args.get("user", "anonymous")
            session["visits"] = session.get("visits", 0) + 1

        @app.get("/login/<name>")
        def login(name: str) -> str:
            TENANT.set(object())  # never reset
            return name

        @app.get("/page")
        def page() -> str:
            previous = last[0].path if last else "-"
            last[:] = [request._get_current_object()]  # type: ignore[attr-defined]
            return f"{g.user} after {previous}"

        def drive() -> None:
            client = app.test_client()
            for n in range(1500):
                client.get(f"/login/u{n}?user=u{n}")
                client.get(f"/page?user=u{n}")

        _run_isolated(drive)
        codes = {v.code for v in guard.violations}

        assert {"CG103", "CG106"} == codes
        assert {"request"} == {
            v.subject for v in guard.violations if v.code == "CG103"
        }
        assert {"ContextVar sampling_tenant"} == {
            v.subject for v in guard.violations if v.code == "CG106"
        }

    def test_clean_app_is_silent_at_one_percent(self):
        """The same app without its two bugs reports nothing at rate 0.01;
        the positive control above reports both."""
        app = _app(0.01)
        guard = CtxGuard(app)
        seen: list[bool] = []

        @app.before_request
        def remember_user() -> None:
            g.user = request.args.get("user", "anonymous")
            session["visits"] = session.get("visits", 0) + 1
            seen.append(guard.current() is not None)

        @app.get("/login/<name>")
        def login(name: str) -> str:
            token = TENANT.set(object())
            TENANT.reset(token)
            return name

        @app.get("/page")
        def page() -> str:
            return f"{g.user} {request.path}"

        def drive() -> None:
            client = app.test_client()
            for n in range(1500):
                client.get(f"/login/u{n}?user=u{n}")
                client.get(f"/page?user=u{n}")

        _run_isolated(drive)

        assert any(seen)
        assert [] == guard.violations


def _write_sampled_log(path: pathlib.Path, rate: float) -> None:
    """Write the JSON log of kept requests read later, at *rate*."""
    path.write_text(
        "".join(
            json.dumps({**event, "event": "contamination"}, default=str) + "\n"
            for event in _logs_of_kept_requests(rate)
        )
    )


class TestReportCommand:
    def test_report_header_states_the_rate(self, tmp_path, capsys):
        """The report of a sampled app's log says it was sampled, and at
        which rate, in its header and its JSON."""
        log = tmp_path / "app.log"
        _write_sampled_log(log, 0.5)

        status = _cli.main(["report", str(log)])
        text = capsys.readouterr().out
        _cli.main(["report", "--format", "json", str(log)])
        data = json.loads(capsys.readouterr().out)

        assert 1 == status
        assert "Sampled: CTXGUARD_SAMPLE_RATE 0.5." in text
        assert [0.5] == data["sample_rates"]

    def test_unsampled_report_has_no_rate(self, tmp_path, capsys):
        """A log of an app guarding every request gets no sampling line;
        the sampled log above does (the positive control)."""
        log = tmp_path / "app.log"
        _write_sampled_log(log, 1.0)

        status = _cli.main(["report", "--format", "json", str(log)])
        data = json.loads(capsys.readouterr().out)

        assert 1 == status
        assert data["findings"]
        assert "sample_rates" not in data
