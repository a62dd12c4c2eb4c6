"""
The guard observes structlog's binds and clears without changing what
structlog does.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
import structlog.contextvars
from flask import Flask
from structlog.contextvars import (
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    get_contextvars,
    merge_contextvars,
    reset_contextvars,
    unbind_contextvars,
)

from flask_ctxguard import CtxGuard
from flask_ctxguard._rules.structlog_binds import observe_structlog
from tests.helpers import TIMEOUT, pooled


def _merged() -> dict[str, Any]:
    return merge_contextvars(None, "info", {"event": "e"})


def _structlog_calls() -> list[dict[str, Any]]:
    """What structlog's context holds after each of its calls."""
    seen = []
    clear_contextvars()
    tokens = bind_contextvars(a=1, b="two")
    seen.append(_merged())
    with bound_contextvars(b="inner", c=3):
        seen.append(_merged())
    seen.append(_merged())
    unbind_contextvars("a")
    seen.append(_merged())
    reset_contextvars(**tokens)
    seen.append(get_contextvars())
    bind_contextvars(d=[4])
    clear_contextvars()
    seen.append(_merged())
    return seen


class TestStructlogUnchanged:
    def test_every_call_does_what_structlog_does(self):
        """bind, bound, unbind, reset, clear and merge give the very same
        events with the guard observing them as structlog documents."""
        expected = [
            {"event": "e", "a": 1, "b": "two"},
            {"event": "e", "a": 1, "b": "inner", "c": 3},
            {"event": "e", "a": 1, "b": "two"},
            {"event": "e", "b": "two"},
            {},
            {"event": "e"},
        ]

        observed = observe_structlog()
        results: list[Any] = []
        # In a thread of its own: a context of its own.
        thread = threading.Thread(
            target=lambda: results.extend(_structlog_calls())
        )
        thread.start()
        thread.join(TIMEOUT)

        assert True is observed
        assert expected == results

    def test_installing_is_idempotent_and_thread_safe(self):
        """Many threads installing at once leave one observer in place,
        holding every variable structlog had."""
        bind_contextvars(before_install=1)
        barrier = threading.Barrier(8)
        outcomes: list[bool] = []

        def install() -> None:
            barrier.wait(TIMEOUT)
            outcomes.append(observe_structlog())

        threads = [threading.Thread(target=install) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        first = structlog.contextvars._CONTEXT_VARS
        observe_structlog()

        assert [True] * 8 == outcomes
        assert first is structlog.contextvars._CONTEXT_VARS
        assert "structlog_before_install" in first
        assert {"before_install": 1} == {
            k: v for k, v in get_contextvars().items() if k == "before_install"
        }
        clear_contextvars()


class TestObservedVerdicts:
    def _app(self, bind: Any) -> tuple[Flask, CtxGuard]:
        app = Flask("observed")
        app.config["CTXGUARD_MODE"] = "log"
        app.before_request(bind)

        @app.get("/")
        def index() -> str:
            return str(get_contextvars().get("user", "-"))

        return app, CtxGuard(app)

    def test_a_middleware_binding_before_the_request_is_its_own(self):
        """A WSGI middleware that clears and binds the user before Flask
        pushes the request's context binds for that request: the very
        object an earlier request's view bound is not a leak."""
        users = {"ada": "user " + "ada"}

        def login() -> None:
            from flask import request

            name = request.args.get("login")
            if name:
                bind_contextvars(user=users[name])

        app, guard = self._app(login)
        inner = app.wsgi_app

        def middleware(environ: Any, start_response: Any) -> Any:
            clear_contextvars()
            name = environ.get("HTTP_X_USER")
            if name:
                bind_contextvars(user=users[name])
            return inner(environ, start_response)

        app.wsgi_app = middleware  # type: ignore[method-assign]

        replies = pooled(
            app, [("/?login=ada", {}), ("/", {"X-User": "ada"}), ("/", {})]
        )

        assert [b"user ada", b"user ada", b"-"] == [r[1] for r in replies]
        assert [] == guard.violations

    def test_an_untouched_small_int_is_still_a_leak(self):
        """A user id that is a small int, bound by one request only, is
        reported in the next: observed, not guessed from the value."""

        def bind() -> None:
            from flask import request

            if request.args.get("login"):
                bind_contextvars(user=7)

        app, guard = self._app(bind)

        pooled(app, [("/?login=1", {}), ("/", {})])

        assert [("CG106", "ContextVar structlog_user")] == [
            (v.code, v.subject) for v in guard.violations
        ]
