"""
A newcomer's app, as written from the README's quick start: two bugs.

- ``/login/<name>`` binds the user with structlog's ``bind_contextvars()``
  and nothing ever clears it: every later request its worker thread serves
  holds that user (CG106), whatever its endpoint, routed or not.
- ``/export`` streams a CSV whose generator keeps the real request and
  reads it after the request ended, without ``stream_with_context``
  (CG102).

``gunicorn 'tests.newcomerapp:create_app()'`` serves it with structlog
rendering JSON lines to stderr (``worker-ready`` once the app is built).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import structlog
from flask import Flask, Response, request

from flask_ctxguard import CtxGuard


def create_app() -> Flask:
    """The newcomer's app, guarded, logging JSON lines to stderr."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    app = Flask("newcomer")
    CtxGuard(app)

    @app.get("/login/<name>")
    def login(name: str) -> str:
        structlog.contextvars.bind_contextvars(user_id=name)  # the CG106 bug
        return f"hello {name}"

    @app.get("/")
    def index() -> str:
        return "index"

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/items/<int:item>")
    def item(item: int) -> str:
        return f"item {item}"

    @app.get("/export")  # the kept request's view
    def export() -> Response:
        kept = request._get_current_object()  # type: ignore[attr-defined]

        def rows() -> Iterator[str]:
            yield "path\n"
            # The bug: the request is read after it ended.
            yield f"{kept.path}\n"  # the CG102 bug

        return Response(rows(), mimetype="text/csv")

    structlog.get_logger("newcomer").info("worker-ready", pid=os.getpid())
    return app
