"""
The app the server tests serve, in-process or in a server's own process.

Clean endpoints return the caller's own data, gathered from every place a
request's data lives: the session, ``g``, a ContextVar set in
``before_request`` and reset in ``teardown_request``, structlog's context
(cleared and bound at every request start), and the request itself. A
response that is not its own request's shows up as a mismatch.

Buggy endpoints answer 200 while contaminating: ``/buggy/remember`` keeps
the last request object in a cache and reads the previous one (CG103);
``/buggy/tenant`` sets a ContextVar and never resets it, so the next
request that its worker thread serves holds it throughout (CG106).

``gunicorn 'tests.serverapp:gunicorn_app()'`` builds the guarded app with
structlog rendering JSON lines to stderr: workers are processes of their
own, and those lines are what the test reads.
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
from typing import Any

import structlog
from flask import Flask, g, request, session

from flask_ctxguard import CtxGuard

#: Set in before_request, reset in teardown_request: clean.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
#: Set by /buggy/tenant and never reset: the bug.
TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")


def create_app(name: str = "serverapp") -> Flask:
    """
    The app, unguarded; ``SERVERAPP_*`` environment variables configure it.
    """
    app = Flask(name)
    app.config.update(
        SECRET_KEY="serverapp",
        CTXGUARD_MODE=os.environ.get("SERVERAPP_CTXGUARD_MODE", "log"),
    )
    # The bug of /buggy/remember: a cache of the last request object.
    cache: list[Any] = []
    cache_lock = threading.Lock()

    @app.before_request
    def start_request() -> None:
        # A constant default ('-' for /login, which has no id) is common in
        # real apps: two such requests on one worker thread bind the very
        # same object again after clearing it.
        rid = request.args.get("rid", "-")
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(rid=rid)
        g.user = session.get("user")
        g.request_id_token = REQUEST_ID.set(rid)

    @app.teardown_request
    def end_request(exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            REQUEST_ID.reset(token)

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        return user

    @app.get("/me")
    def me() -> str:
        return json.dumps(
            {
                "user": session.get("user"),
                "g_user": g.user,
                "rid": request.args["rid"],
                "var": REQUEST_ID.get(),
                "log_rid": structlog.contextvars.get_contextvars()["rid"],
                "client": request.headers.get("X-Client"),
                "pid": os.getpid(),
            }
        )

    @app.get("/buggy/remember")
    def remember() -> str:
        with cache_lock:
            previous = cache[0] if cache else None
            cache[:] = [request._get_current_object()]  # type: ignore[attr-defined]
        # Another request's object, read here: CG103.
        seen = None if previous is None else previous.args.get("rid")
        return f"previous {seen}"

    @app.get("/buggy/tenant")
    def set_tenant() -> str:
        TENANT.set(request.args.get("t", "-"))  # never reset: CG106
        return "tenant set"

    return app


class LineLogger:
    """
    Writes each rendered event to stderr as one line in one ``os.write``.

    Several worker processes share one stderr pipe: a line written in one
    call (of at most ``PIPE_BUF`` bytes) is never interleaved with another
    process's, where ``print()`` writes the newline separately.
    """

    def msg(self, message: str) -> None:
        os.write(sys.stderr.fileno(), f"{message}\n".encode())

    debug = info = warning = error = critical = exception = log = msg


def configure_json_logs() -> None:
    """structlog renders JSON lines to stderr, one per event."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=lambda *args: LineLogger(),
        cache_logger_on_first_use=False,
    )


def gunicorn_app() -> Flask:
    """The guarded app a gunicorn worker serves, logging JSON to stderr."""
    configure_json_logs()
    app = create_app()
    CtxGuard(app)
    # The test starts its clients once every worker has built its app.
    structlog.get_logger("serverapp").info("worker-ready", pid=os.getpid())
    return app
