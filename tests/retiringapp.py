"""
The app test_retiring.py serves in a server's own process (gunicorn's
gthread workers, gevent's WSGIServer), where the test cannot spy on the
guard: the app counts it for the test.

Every switch of a request's class at its end is counted (the path of the
request switched), by wrapping ``_lifecycle._set_attribute``, the one
function the guard switches requests with, and so is every switch of a
request's own g to its escaped class (``_g.switch_class``).
``/use/<name>`` is an ordinary request, and so is ``/stream/<name>``,
whose context is popped when the server closes the response;
``/keep/<name>`` keeps its request object in a module list, as a buggy
view would; ``/_read_kept`` reads each request
kept since the last call from a thread of its own, after its request
ended (CG102); ``/_retiring`` answers what the guard did, as JSON.

``gunicorn 'tests.retiringapp:gunicorn_app()'`` builds it with structlog
rendering JSON lines to stderr, as `tests.serverapp` does.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import structlog
from flask import Flask, g, request, session, stream_with_context

from flask_ctxguard import CtxGuard
from flask_ctxguard._guard import g as _g
from flask_ctxguard._guard import lifecycle as _lifecycle
from flask_ctxguard._guard.request import is_guarded_request_class
from tests.helpers import TIMEOUT
from tests.serverapp import configure_json_logs

#: The requests /keep kept; /_read_kept reads the ones not read yet.
KEPT: list[Any] = []
#: The path of each request whose class was switched at its end.
SWITCHED: list[str] = []


def count_switches() -> None:
    """
    Count every class switch of a request from now on, by its path, and
    of a request's own g to its escaped class ("g" and its path).
    """
    set_attribute = _lifecycle._set_attribute
    switch_class = _g.switch_class

    def counting(obj: Any, name: str, value: Any) -> None:
        if name == "__class__" and is_guarded_request_class(value):
            # From its __dict__: reading it would be checked.
            SWITCHED.append(vars(obj).get("path", "?"))
        set_attribute(obj, name, value)

    def counting_g(obj: Any, cls: type) -> bool:
        switched = switch_class(obj, cls)
        if switched:
            record = _g.g_record(obj)
            SWITCHED.append(f"g {getattr(record, 'path', '?')}")
        return switched

    _lifecycle._set_attribute = counting
    _g.switch_class = counting_g


def read_later(kept: Any) -> Any:
    """*kept*'s ``q`` argument, read from a thread of its own."""
    seen: list[Any] = []
    reader = threading.Thread(target=lambda: seen.append(kept.args.get("q")))
    reader.start()
    reader.join(timeout=TIMEOUT)
    return seen[0] if seen else "not read"


def add_request_views(app: Flask, kept: list[Any]) -> None:
    """
    The views whose requests end ordinarily (``/use/<name>``,
    ``/stream/<name>``) and the one that keeps its request in *kept*
    (``/keep/<name>``).
    """

    @app.get("/use/<name>")
    def use(name: str) -> str:
        session["user"] = name
        g.user = "anonymous"
        g.user = name  # replaced: counted, and nothing else holds g
        return f"{request.path} {request.args.get('q')} {session['user']}"

    @app.get("/stream/<name>")
    def stream(name: str) -> Any:
        # Popped when the server closes the response, not in wsgi_app.
        return stream_with_context(iter([name, request.args["q"]]))

    @app.get("/keep/<name>")
    def keep(name: str) -> str:
        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return name


def create_app() -> tuple[Flask, CtxGuard]:
    """The guarded app, in log mode, with its switches counted."""
    count_switches()
    app = Flask("retiringapp")
    app.config.update(SECRET_KEY="retiring", CTXGUARD_MODE="log")
    guard = CtxGuard(app)
    read = [0]
    add_request_views(app, KEPT)

    @app.get("/_read_kept")
    def read_kept() -> str:
        fresh, read[0] = KEPT[read[0] :], len(KEPT)
        return json.dumps([read_later(kept) for kept in fresh])

    @app.get("/_retiring")
    def retiring() -> str:
        return json.dumps(
            {
                "switched": SWITCHED,
                "refs_at_close": _lifecycle.REFS_AT_CLOSE,
                "learnt": _lifecycle._refs_at_close,
                "codes": [v.code for v in guard.violations],
                "python": sys.version.split()[0],
                "pid": os.getpid(),
            }
        )

    return app, guard


def gunicorn_app() -> Flask:
    """The app a gunicorn worker serves, logging JSON to stderr."""
    configure_json_logs()
    app, _ = create_app()
    # The test starts its requests once the worker has built its app.
    structlog.get_logger("retiringapp").info("worker-ready", pid=os.getpid())
    return app
