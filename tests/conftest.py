from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
import structlog
from flask import Flask

from flask_ctxguard import CtxGuard
from flask_ctxguard._core.flaskcompat import app_ctx_var as _cv_app
from flask_ctxguard._core.flaskcompat import request_ctx_var as _cv_request
from flask_ctxguard._guard import g as _g
from flask_ctxguard._guard import lifecycle as _lifecycle
from flask_ctxguard._guard.request import is_guarded_request_class

# The shared helpers' asserts explain a failure as a test's own do: pytest
# rewrites the asserts of other modules only if told before they are
# imported.
pytest.register_assert_rewrite("tests.helpers", "tests.pytester_helpers")

from tests.helpers import KEPT, TIMEOUT  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_structlog():
    """Every test starts with structlog's defaults (structlog's own way)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _leak_detector():
    """No test may leave a request or app context pushed (Flask's way)."""
    yield
    leaks = []
    while (ctx := _cv_request.get(None)) is not None:
        leaks.append(ctx)
        ctx.pop()
    while (ctx := _cv_app.get(None)) is not None:
        leaks.append(ctx)
        ctx.pop()
    assert leaks == []


@pytest.fixture(autouse=True)
def _forget_kept():
    """What a test's views kept ('tests.helpers.KEPT') dies with the test."""
    yield
    KEPT.clear()


@pytest.fixture(name="switches")
def _switches(monkeypatch):
    """
    Every class switch of a request at its end, by class; the reference
    count that decides it starts from its known value.
    """
    seen: list[type] = []
    set_attribute = _lifecycle._set_attribute

    def spy(obj, name, value):
        if name == "__class__" and is_guarded_request_class(value):
            seen.append(value)
        set_attribute(obj, name, value)

    monkeypatch.setattr(_lifecycle, "_set_attribute", spy)
    monkeypatch.setattr(_lifecycle, "_refs_at_close", _lifecycle.REFS_AT_CLOSE)
    return seen


@pytest.fixture(name="escapes")
def _escapes(monkeypatch):
    """Every switch of a request's own g to its escaped class, by class."""
    seen: list[type] = []
    switch_class = _g.switch_class

    def spy(obj, cls):
        switched = switch_class(obj, cls)
        if switched:
            seen.append(cls)
        return switched

    monkeypatch.setattr(_g, "switch_class", spy)
    return seen


@pytest.fixture(name="events")
def _events():
    """
    Every structlog event as a dict, collected from any thread
    (structlog's ``capture_logs`` is not thread-safe).
    """
    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def collect(logger, method_name, event_dict):
        with lock:
            events.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.processors.add_log_level, collect]
    )
    return events


@pytest.fixture(name="rendered")
def _rendered():
    """Every structlog event as the JSON line an app would write."""
    lines: list[str] = []
    lock = threading.Lock()

    def keep(logger, method_name, line):
        with lock:
            lines.append(line)
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
            keep,
        ]
    )
    return lines


@pytest.fixture(name="no_thread_left")
def _no_thread_left():
    """
    The test leaves no server, pool, reader or client thread running (used
    by the server tests and, autouse, by the scenario corpus).
    """
    before = set(threading.enumerate())
    yield
    # An idle worker of an executor nobody references (asgiref's, under
    # Flask 2.3) exits once the executor is collected.
    gc.collect()
    left = [t for t in threading.enumerate() if t not in before]
    for thread in left:
        thread.join(timeout=TIMEOUT)

    assert [] == [t.name for t in left if t.is_alive()]


@pytest.fixture(name="app")
def _app():
    """A fresh app per test, in log mode unless the test says otherwise."""
    app = Flask("guarded")
    app.config.update(SECRET_KEY="test", CTXGUARD_MODE="log")
    return app


@pytest.fixture(name="guard")
def _guard(app):
    return CtxGuard(app)


@pytest.fixture(name="client")
def _client(app, guard):
    return app.test_client()


@pytest.fixture(name="ourtester")
def _ourtester(pytester, monkeypatch):
    """
    A pytester with the classic ini and the inner app module 'shop'.

    The inner run is not on CI, wherever the suite runs: pytest prints a
    failure's whole message in its short summary on CI and cuts it to the
    terminal elsewhere. The tests of that difference set ``CI`` themselves.
    """
    from tests.pytester_helpers import APP, write_ini

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    write_ini(pytester)
    pytester.makepyfile(shop=APP)
    return pytester
